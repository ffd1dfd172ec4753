//! The statistical gate over real HTTP on every backend: decisions from each benchmark's
//! history, confirmation attempts, recording, settings, failed runs kept out of history, and
//! every bad input.

mod common;

use common::*;

const G: &str = "/api/v1/projects/proj/gates";
const BENCHES: usize = 8;

/// A run-to-run wobble of about ±2 %, different for each run and benchmark.
fn wobble(run: usize, bench: usize) -> f64 {
    1.0 + (((run * 7 + bench * 3) % 5) as f64 - 2.0) * 0.01
}

fn bench(b: usize) -> String {
    format!("bench-{b}")
}

fn level(b: usize) -> f64 {
    100.0 + 40.0 * b as f64
}

/// `runs` history runs of every benchmark, uploaded as baselines (one commit each).
fn seed_history(s: &Server, runs: usize) {
    for r in 0..runs {
        for b in 0..BENCHES {
            let rec = receipt_with_samples(
                &bench(b),
                &format!("hist-{r}-{b}"),
                &jittered_samples(level(b) * wobble(r, b), r + b),
            );
            let mut body = upload_body(&bench(b), None, &rec);
            body["git_sha"] = json!(format!("sha{r:03}"));
            expect(
                s.post(CONTRIB, "/api/v1/projects/proj/baselines", &body),
                201,
            );
        }
    }
}

/// A gate request: every benchmark at its usual level, `slow` ones `factor` slower.
fn gate_body(tag: &str, slow: &[usize], factor: f64) -> Value {
    let runs: Vec<Value> = (0..BENCHES)
        .map(|b| {
            let f = if slow.contains(&b) { factor } else { 1.0 };
            json!({
                "benchmark": bench(b),
                "receipt": receipt_with_samples(&bench(b), &format!("{tag}-{b}"), &jittered_samples(level(b) * f, b + 99)),
            })
        })
        .collect();
    json!({"runs": runs, "git_ref": "refs/heads/feature", "git_sha": format!("{tag}-sha")})
}

fn verdict_of(gate: &Value, b: usize) -> &Value {
    gate["benchmarks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["benchmark"] == bench(b).as_str())
        .unwrap_or_else(|| panic!("no verdict for {}: {gate}", bench(b)))
}

fn gate_decides_from_history(b: Backend) {
    let s = Server::start(b);
    seed_history(&s, 12);
    // Nothing changed: pass, final, nothing to confirm.
    let r = s.post(CONTRIB, G, &gate_body("same", &[], 1.0));
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let g = expect(r, 201);
    assert_eq!(g["schema"], "perfgate.gate.v1");
    assert_eq!(g["project"], "proj");
    assert_eq!(g["status"], "pass", "{g:#}");
    assert_eq!(g["final"], true);
    assert_eq!(g["attempt"], 1);
    assert_eq!(g["max_attempts"], 3);
    assert!(g["confirm"].is_null());
    assert_eq!(g["suite"]["metric"], "wall_ms");
    assert_eq!(g["suite"]["status"], "pass", "{g:#}");
    assert_eq!(g["benchmarks"].as_array().unwrap().len(), BENCHES);
    let v = verdict_of(&g, 3);
    assert_eq!(v["status"], "pass");
    assert_eq!(v["metric"], "wall_ms");
    assert_eq!(v["history_runs"], 12);
    assert!(v["effect_pct"].as_f64().unwrap().abs() < 5.0, "{v}");
    assert_eq!(location, format!("{G}/{}", g["id"].as_str().unwrap()));
    assert_eq!(expect(s.get(VIEWER, &location), 200), g);

    // One benchmark 25 % slower: it fails, the others pass, the run as a whole passes.
    let g = expect(s.post(CONTRIB, G, &gate_body("slow", &[2], 1.25)), 201);
    assert_eq!(g["status"], "fail", "{g:#}");
    assert_eq!(g["final"], true);
    let v = verdict_of(&g, 2);
    assert_eq!(v["status"], "fail", "{v}");
    let effect = v["effect_pct"].as_f64().unwrap();
    assert!((15.0..35.0).contains(&effect), "{v}");
    let ci = v["ci95_pct"].as_array().unwrap();
    assert!(
        ci[0].as_f64().unwrap() < effect && effect < ci[1].as_f64().unwrap(),
        "{v}"
    );
    assert!(v["q"].as_f64().unwrap() <= 0.03, "{v}");
    assert!(v["reason"].as_str().unwrap().contains("slower"), "{v}");
    assert_eq!(verdict_of(&g, 5)["status"], "pass");
    assert_eq!(g["suite"]["status"], "pass");

    // Everything 12 % slower: no benchmark stands out, the suite does.
    let g = expect(
        s.post(
            CONTRIB,
            G,
            &gate_body("all", &(0..BENCHES).collect::<Vec<_>>(), 1.12),
        ),
        201,
    );
    assert_ne!(g["suite"]["status"], "pass", "{g:#}");
    assert!(g["suite"]["shift_pct"].as_f64().unwrap() > 8.0, "{g:#}");
    assert_ne!(g["status"], "pass");

    // Lists: newest first, filtered by status and git ref, paged.
    let l = expect(s.get(VIEWER, &format!("{G}?limit=2")), 200);
    assert_eq!(l["pagination"]["total"], 3);
    assert_eq!(l["gates"].as_array().unwrap().len(), 2);
    assert_eq!(l["gates"][0]["id"], g["id"]);
    let l = expect(s.get(VIEWER, &format!("{G}?status=fail")), 200);
    assert!(l["gates"]
        .as_array()
        .unwrap()
        .iter()
        .all(|g| g["status"] == "fail"));
    let l = expect(s.get(VIEWER, &format!("{G}?git_ref=refs/heads/other")), 200);
    assert_eq!(l["pagination"]["total"], 0);
}

fn short_history_is_skipped(b: Backend) {
    let s = Server::start(b);
    seed_history(&s, 3);
    let g = expect(s.post(CONTRIB, G, &gate_body("new", &[1], 1.5)), 201);
    let v = verdict_of(&g, 1);
    assert_eq!(v["status"], "skip", "{v}");
    assert_eq!(v["history_runs"], 3);
    assert!(v["reason"].as_str().unwrap().contains("history"), "{v}");
    // Skip counts as pass.
    assert_eq!(g["status"], "pass", "{g:#}");
    // A benchmark never seen before: skipped too, never a 500.
    let body = json!({"runs": [{"benchmark": "brand-new", "receipt": receipt_with_samples("brand-new", "n-1", &jittered_samples(50.0, 1))}]});
    let g = expect(s.post(CONTRIB, G, &body), 201);
    assert_eq!(g["benchmarks"][0]["status"], "skip");
    assert_eq!(g["benchmarks"][0]["history_runs"], 0);
}

fn confirmation_attempts(b: Backend) {
    let s = Server::start(b);
    seed_history(&s, 12);
    let settings = json!({"confirm_before_fail": true, "max_attempts": 3});
    expect(
        s.http
            .put(s.url("/api/v1/projects/proj/gate-settings"))
            .bearer_auth(ADMIN)
            .json(&settings)
            .send()
            .unwrap(),
        200,
    );
    let g = expect(s.post(CONTRIB, G, &gate_body("c1", &[4], 1.3)), 201);
    assert_eq!(g["status"], "inconclusive", "{g:#}");
    assert_eq!(g["final"], false);
    let c = &g["confirm"];
    assert_eq!(c["attempt"], 2);
    assert!(
        c["benchmarks"]
            .as_array()
            .unwrap()
            .contains(&json!("bench-4")),
        "{c}"
    );
    let post_to = c["post_to"].as_str().unwrap().to_owned();
    assert_eq!(
        post_to,
        format!("{G}/{}/attempts", g["id"].as_str().unwrap())
    );
    assert!(c["deadline"].as_str().is_some());
    // The same receipts again are not new evidence: nothing changes.
    let again = json!({"runs": gate_body("c1", &[4], 1.3)["runs"]});
    let same = expect(s.post(CONTRIB, &post_to, &again), 200);
    assert_eq!(same["attempt"], 1);
    // A fresh confirmation run with the same slowdown settles it, also when its id is one
    // another benchmark's run had (a run is its benchmark's and its id's).
    let mut next = json!({"runs": gate_body("c2", &[4], 1.3)["runs"]});
    next["runs"][4]["receipt"]["run"]["id"] = json!("c1-0");
    let g2 = expect(s.post(CONTRIB, &post_to, &next), 200);
    assert_eq!(g2["attempt"], 2);
    assert_eq!(g2["final"], true, "{g2:#}");
    assert_eq!(g2["status"], "fail");
    assert_eq!(verdict_of(&g2, 4)["status"], "fail");
    assert!(g2["confirm"].is_null());
    // A final gate takes no more attempts.
    let more = json!({"runs": gate_body("c3", &[4], 1.3)["runs"]});
    expect_error(s.post(CONTRIB, &post_to, &more), 409, "conflict");
    expect_error(
        s.post(CONTRIB, &format!("{G}/{}/attempts", "0".repeat(32)), &more),
        404,
        "not_found",
    );
    // The failed run never enters bench-4's history, even when uploaded as a baseline (the
    // published CLI uploads after comparing).
    let failed = gate_body("c1", &[4], 1.3)["runs"][4]["receipt"].clone();
    expect(s.upload(CONTRIB, "proj", "bench-4", None, &failed), 201);
    expect(
        s.http
            .put(s.url("/api/v1/projects/proj/gate-settings"))
            .bearer_auth(ADMIN)
            .json(&json!({}))
            .send()
            .unwrap(),
        200,
    );
    let g3 = expect(s.post(CONTRIB, G, &gate_body("after", &[], 1.0)), 201);
    assert_eq!(verdict_of(&g3, 4)["history_runs"], 12, "{g3:#}");
    assert_eq!(verdict_of(&g3, 4)["status"], "pass", "{g3:#}");
    // The gate and the attempt are in the audit log.
    let a = expect(s.get(ADMIN, "/api/v1/audit?resource_type=gate"), 200);
    assert!(a["pagination"]["total"].as_i64().unwrap() >= 3, "{a}");
}

fn record_stores_passing_runs(b: Backend) {
    let s = Server::start(b);
    seed_history(&s, 8);
    let mut body = gate_body("rec", &[], 1.0);
    body["record"] = json!(true);
    let g = expect(s.post(CONTRIB, G, &body), 201);
    assert_eq!(g["status"], "pass", "{g:#}");
    let recorded = g["recorded"].as_array().unwrap();
    assert_eq!(recorded.len(), BENCHES);
    let v = recorded[0]["version"].as_str().unwrap();
    let latest = expect(
        s.get(
            VIEWER,
            &format!(
                "/api/v1/projects/proj/baselines/{}/latest",
                recorded[0]["benchmark"].as_str().unwrap()
            ),
        ),
        200,
    );
    assert_eq!(latest["version"], v);
    assert_eq!(latest["git_sha"], "rec-sha");
    assert_eq!(latest["receipt"]["run"]["id"], "rec-0");
    // A source the published client can read (it knows upload, promote, migrate, rollback).
    assert_eq!(latest["source"], "upload", "{latest}");
    // The recorded runs are history now.
    let g = expect(s.post(CONTRIB, G, &gate_body("later", &[], 1.0)), 201);
    assert_eq!(verdict_of(&g, 0)["history_runs"], 9);
    // A failing gate records nothing.
    let mut body = gate_body("bad", &[1], 1.4);
    body["record"] = json!(true);
    let g = expect(s.post(CONTRIB, G, &body), 201);
    assert_eq!(g["status"], "fail");
    assert_eq!(g["recorded"], json!([]));
    let h = expect(
        s.get(VIEWER, "/api/v1/projects/proj/benchmarks/bench-1/history"),
        200,
    );
    assert_eq!(h["pagination"]["total"], 9, "{h}");
}

fn settings_are_admin_only_and_audited(b: Backend) {
    let s = Server::start(b);
    let path = "/api/v1/projects/proj/gate-settings";
    let d = expect(s.get(VIEWER, path), 200);
    assert_eq!(d["q"], 0.03);
    assert_eq!(d["min_effect_pct"], 5.0);
    assert_eq!(d["max_attempts"], 3);
    assert_eq!(d["history_runs"], 60);
    assert_eq!(d["min_history_runs"], 5);
    assert_eq!(d["metrics"], json!(["wall_ms"]));
    let put = |key: &str, body: Value| {
        s.http
            .put(s.url(path))
            .bearer_auth(key)
            .json(&body)
            .send()
            .unwrap()
    };
    let new = json!({"min_effect_pct": 8, "overrides": {"bench-1": {"min_effect_pct": 20}}});
    expect_error(put(CONTRIB, new.clone()), 403, "forbidden");
    expect_error(put(OTHER_ADMIN, new.clone()), 403, "forbidden");
    let v = expect(put(ADMIN, new), 200);
    assert_eq!(v["min_effect_pct"], 8.0);
    assert_eq!(v["overrides"]["bench-1"]["min_effect_pct"], 20.0);
    assert_eq!(expect(s.get(VIEWER, path), 200), v);
    let e = expect_error(put(ADMIN, json!({"q": 2})), 400, "invalid_input");
    assert_eq!(e["details"]["field"], "q");
    let e = expect_error(
        put(ADMIN, json!({"metrics": ["speed"]})),
        400,
        "invalid_input",
    );
    assert_eq!(e["details"]["field"], "metrics");
    expect_error(put(ADMIN, json!({"unknown": 1})), 422, "invalid_input");
    // The fields as an array (serde's positional form) are not a settings object.
    // Nor is an override given that way, inside an object.
    let e = expect_error(
        put(ADMIN, json!({"overrides": {"bench-1": [20]}})),
        422,
        "invalid_input",
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("invalid type: sequence"),
        "{e}"
    );
    for body in [json!([0.5, 0]), json!([])] {
        let e = expect_error(put(ADMIN, body), 422, "invalid_input");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("invalid type: sequence, expected struct GateSettings"),
            "{e}"
        );
    }
    assert_eq!(expect(s.get(VIEWER, path), 200), v, "nothing changed");
    let a = expect(
        s.get(ADMIN, "/api/v1/audit?resource_type=gate_settings"),
        200,
    );
    assert_eq!(a["pagination"]["total"], 1, "{a}");
    assert_eq!(a["events"][0]["action"], "update");
}

fn bad_gate_requests(b: Backend) {
    let s = Server::start(b);
    let ok = gate_body("x", &[], 1.0);
    let field_of = |r| expect_error(r, 400, "invalid_input")["details"]["field"].clone();

    // A receipt that does not fit: 422 naming the field, as on upload.
    let mut body = ok.clone();
    body["runs"][0]["receipt"]["schema"] = json!("perfgate.compare.v1");
    assert_eq!(
        expect_error(s.post(CONTRIB, G, &body), 422, "invalid_input")["details"]["field"],
        "runs[0].receipt.schema"
    );
    let mut body = ok.clone();
    body["runs"][0]["receipt"]["run"]["id"] = json!("a\u{0}b");
    assert_eq!(
        expect_error(s.post(CONTRIB, G, &body), 422, "invalid_input")["details"]["field"],
        "runs[0].receipt.run.id"
    );
    let mut body = ok.clone();
    body["runs"][1]["benchmark"] = json!("bench-zz");
    assert_eq!(
        field_of(s.post(CONTRIB, G, &body)),
        "runs[1].receipt.bench.name"
    );
    let mut body = ok.clone();
    body["runs"][1] = body["runs"][0].clone();
    assert_eq!(field_of(s.post(CONTRIB, G, &body)), "runs");
    let mut body = ok.clone();
    body["metrics"] = json!(["speed"]);
    assert_eq!(field_of(s.post(CONTRIB, G, &body)), "metrics");
    assert_eq!(field_of(s.post(CONTRIB, G, &json!({"runs": []}))), "runs");
    let mut body = ok.clone();
    body["runner"] = json!("has space");
    assert_eq!(field_of(s.post(CONTRIB, G, &body)), "runner");
    let mut body = ok.clone();
    body["runs"][0]["benchmark"] = json!("Bad Name");
    assert_eq!(field_of(s.post(CONTRIB, G, &body)), "benchmark");
    expect_error(
        s.post(CONTRIB, "/api/v1/projects/bad%20name/gates", &ok),
        400,
        "invalid_input",
    );
    // Missing receipt: the wrong shape.
    expect_error(
        s.post(CONTRIB, G, &json!({"runs": [{"benchmark": "bench-0"}]})),
        422,
        "invalid_input",
    );
    // Permissions: viewers read, the benchmark filter applies to every run.
    expect_error(s.post(VIEWER, G, &ok), 403, "forbidden");
    // RESTRICTED may write benchmarks matching bench-.* only.
    let mut wider = ok.clone();
    wider["runs"].as_array_mut().unwrap().push(json!({
        "benchmark": "zeta",
        "receipt": receipt_with_samples("zeta", "z-1", &jittered_samples(10.0, 1)),
    }));
    expect_error(s.post(RESTRICTED, G, &wider), 403, "forbidden");
    expect(s.post(RESTRICTED, G, &ok), 201);
    expect_error(s.post(OTHER_ADMIN, G, &ok), 403, "forbidden");
    expect_error(
        s.get("pg_live_unknownunknownunknownunknown0000", G),
        401,
        "unauthorized",
    );
    expect_error(s.get(VIEWER, &format!("{G}/not-an-id")), 404, "not_found");
    expect_error(
        s.get(VIEWER, &format!("{G}?status=maybe")),
        400,
        "invalid_input",
    );
    expect_error(s.get(VIEWER, &format!("{G}?limit=0")), 400, "invalid_input");
}

/// A contributor and a viewer restricted to bench-0 … bench-3.
const LOW_WRITER: &str = "pg_live_lowwriterlowwriterlowwriterlow01";
const LOW_READER: &str = "pg_live_lowreaderlowreaderlowreaderlow01";

/// Only the benchmarks `keep` of a gate request.
fn only(mut body: Value, keep: &[usize]) -> Value {
    let runs: Vec<Value> = body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| keep.iter().any(|b| r["benchmark"] == bench(*b).as_str()))
        .cloned()
        .collect();
    body["runs"] = json!(runs);
    body
}

fn gate_ids(list: &Value) -> Vec<&str> {
    list["gates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect()
}

/// A caller restricted to some benchmarks sees only gates whose every benchmark it may read,
/// cannot decide a gate over benchmarks it may not write, sees only its benchmarks' settings
/// overrides, and cannot name a hidden alert as a duplicate.
fn restricted_callers_see_and_decide_only_their_benchmarks(b: Backend) {
    let mut args = Vec::new();
    for k in standard_keys().into_iter().chain([
        format!("contributor:{LOW_WRITER}:proj:bench-[0-3]"),
        format!("viewer:{LOW_READER}:proj:bench-[0-3]"),
    ]) {
        args.push("--api-keys".to_owned());
        args.push(k);
    }
    let s = Server::start_with(b, &args);
    seed_history(&s, 12);
    let put = |body: Value| {
        s.http
            .put(s.url("/api/v1/projects/proj/gate-settings"))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .unwrap()
    };
    expect(
        put(json!({"confirm_before_fail": true,
            "overrides": {"bench-1": {"min_effect_pct": 4.0}, "bench-6": {"min_effect_pct": 7.0}}})),
        200,
    );
    let settings = "/api/v1/projects/proj/gate-settings";
    let all = expect(s.get(VIEWER, settings), 200);
    assert_eq!(all["overrides"].as_object().unwrap().len(), 2, "{all}");
    let low = expect(s.get(LOW_READER, settings), 200);
    assert_eq!(
        low["overrides"],
        json!({"bench-1": {"min_effect_pct": 4.0}}),
        "{low}"
    );

    // One gate over hidden benchmarks only, one over all of them (a hidden one suspect).
    let hidden = expect(
        s.post(CONTRIB, G, &only(gate_body("h1", &[6], 1.3), &[5, 6])),
        201,
    );
    assert_eq!(hidden["status"], "inconclusive", "{hidden:#}");
    let mixed = expect(s.post(CONTRIB, G, &gate_body("m1", &[4], 1.3)), 201);
    assert_eq!(mixed["status"], "inconclusive", "{mixed:#}");
    let (hid, mid) = (
        hidden["id"].as_str().unwrap().to_owned(),
        mixed["id"].as_str().unwrap().to_owned(),
    );
    // A gate's status, suite and confirmation are decided over all its benchmarks: a caller
    // that may not read every one of them does not see the gate at all (the mixed gate's
    // `inconclusive` is bench-4's doing, which the restricted keys may not read).
    for key in [LOW_READER, LOW_WRITER] {
        for id in [&hid, &mid] {
            expect_error(s.get(key, &format!("{G}/{id}")), 404, "not_found");
        }
        let l = expect(s.get(key, G), 200);
        assert_eq!(gate_ids(&l), Vec::<&str>::new(), "{l:#}");
        assert_eq!(l["pagination"]["total"], 0, "{l:#}");
        let l = expect(s.get(key, &format!("{G}?status=inconclusive")), 200);
        assert_eq!(l["pagination"]["total"], 0, "{l:#}");
    }
    let l = expect(s.get(VIEWER, G), 200);
    assert_eq!(l["pagination"]["total"], 2, "{l:#}");

    // An attempt re-decides the whole gate: a gate the caller cannot read whole is not found
    // for it, even with runs of benchmarks it may write.
    let visible_runs = json!({"runs": only(gate_body("m2", &[], 1.0), &[0, 1])["runs"]});
    for id in [&hid, &mid] {
        expect_error(
            s.post(LOW_WRITER, &format!("{G}/{id}/attempts"), &visible_runs),
            404,
            "not_found",
        );
    }
    // That check is made before the body is read: a malformed body changes nothing.
    let r = s.send_raw(
        LOW_WRITER,
        "POST",
        &format!("{G}/{mid}/attempts"),
        "application/json",
        "{",
    );
    expect_error(r, 404, "not_found");
    // Runs of a benchmark the gate never held confirm nothing.
    let e = expect_error(
        s.post(
            CONTRIB,
            &format!("{G}/{hid}/attempts"),
            &json!({"runs": only(gate_body("h2", &[], 1.0), &[5, 7])["runs"]}),
        ),
        400,
        "invalid_input",
    );
    assert_eq!(e["details"]["field"], "runs[1].benchmark", "{e}");
    // Nothing was decided by the refused attempts.
    for id in [&hid, &mid] {
        let g = expect(s.get(VIEWER, &format!("{G}/{id}")), 200);
        assert_eq!(g["attempt"], 1, "{g:#}");
        assert_eq!(g["final"], false, "{g:#}");
    }
    // Its own gates, over its own benchmarks, are the restricted writer's to decide.
    let own = expect(
        s.post(
            LOW_WRITER,
            G,
            &only(gate_body("o1", &[], 1.0), &[0, 1, 2, 3]),
        ),
        201,
    );
    assert_eq!(own["status"], "pass", "{own:#}");
    let own_id = own["id"].as_str().unwrap();
    let l = expect(s.get(LOW_READER, G), 200);
    assert_eq!(gate_ids(&l), [own_id], "{l:#}");
    assert_eq!(l["pagination"]["total"], 1, "{l:#}");
    let g = expect(s.get(LOW_READER, &format!("{G}/{own_id}")), 200);
    assert_eq!(g["benchmarks"].as_array().unwrap().len(), 4, "{g:#}");

    // Alerts: a hidden benchmark's alert is no duplicate target for a restricted caller.
    expect(put(json!({})), 200);
    let failed = expect(s.post(CONTRIB, G, &gate_body("f1", &[1, 5], 1.3)), 201);
    assert_eq!(failed["status"], "fail", "{failed:#}");
    let alerts = expect(
        s.get(
            VIEWER,
            &format!(
                "/api/v1/projects/proj/alerts?gate_id={}",
                failed["id"].as_str().unwrap()
            ),
        ),
        200,
    );
    let alert_of = |b: &str| {
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["benchmark"] == b)
            .unwrap_or_else(|| panic!("no alert of {b}: {alerts:#}"))["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (visible_alert, hidden_alert) = (alert_of("bench-1"), alert_of("bench-5"));
    expect_error(
        transition(
            &s,
            LOW_WRITER,
            &visible_alert,
            json!({"to": "duplicate", "duplicate_of": hidden_alert}),
        ),
        409,
        "conflict",
    );
    let a = expect(
        transition(
            &s,
            CONTRIB,
            &visible_alert,
            json!({"to": "duplicate", "duplicate_of": hidden_alert}),
        ),
        200,
    );
    assert_eq!(a["duplicate_of"].as_str(), Some(hidden_alert.as_str()));
}

backend_tests!(
    restricted_callers_see_and_decide_only_their_benchmarks,
    gate_decides_from_history,
    short_history_is_skipped,
    confirmation_attempts,
    record_stores_passing_runs,
    settings_are_admin_only_and_audited,
    bad_gate_requests,
    alerts_triage_and_quarantine,
);

/// The `gate` command CI runs: exit codes, the table, the step summary, and the attempt loop.
#[test]
fn gate_command_runs_the_loop() {
    let s = Server::start(Backend::Sqlite);
    seed_history(&s, 12);
    let dir = temp_dir("gate-cli");
    let write = |tag: &str, slow: &[usize], factor: f64| -> Vec<String> {
        let body = gate_body(tag, slow, factor);
        body["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let p = dir.join(format!("{tag}-{}.json", r["benchmark"].as_str().unwrap()));
                std::fs::write(&p, r["receipt"].to_string()).unwrap();
                p.display().to_string()
            })
            .collect()
    };
    let summary = dir.join("summary.md");
    // A table row: benchmark, metric, status, then the effect.
    let row = |out: &str, b: &str, status: &str| {
        out.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() > 3 && w[0] == b && w[1] == "wall_ms" && w[2] == status
        })
    };
    let run = |files: &[String], extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_perfgate-server"))
            .args([
                "gate",
                "--url",
                &format!("{}/api/v1", s.base),
                "--project",
                "proj",
            ])
            .args(["--git-sha", "cli-sha"])
            .args(extra)
            .args(files)
            .env("PERFGATE_API_KEY", CONTRIB)
            .env("GITHUB_STEP_SUMMARY", &summary)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&write("ok", &[], 1.0), &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(row(&out, "bench-0", "pass"), "{out}");
    assert!(out.contains(": pass (attempt 1 of 3, final)"), "{out}");
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains("### Performance gate: pass"), "{md}");
    assert!(md.contains("| `bench-7` | wall_ms | **pass** |"), "{md}");

    let (code, out, err) = run(&write("bad", &[6], 1.3), &[]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(row(&out, "bench-6", "fail"), "{out}");

    // Confirm before failing: exit 3 with the line to run next, then the attempt settles it.
    expect(
        s.http
            .put(s.url("/api/v1/projects/proj/gate-settings"))
            .bearer_auth(ADMIN)
            .json(&json!({"confirm_before_fail": true}))
            .send()
            .unwrap(),
        200,
    );
    let (code, out, err) = run(&write("maybe", &[6], 1.3), &[]);
    assert_eq!(code, Some(3), "{out}{err}");
    let id = out
        .split("--attempt-of ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no --attempt-of line: {out}"))
        .to_owned();
    let (code, out, err) = run(&write("again", &[6], 1.3), &["--attempt-of", &id]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("(attempt 2 of 3, final)"), "{out}");

    // Errors exit 2 with one line.
    let (code, _, err) = run(&write("x", &[], 1.0), &["--metric", "speed"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("400") && err.contains("metric"), "{err}");
    let (code, _, err) = run(&[dir.join("missing.json").display().to_string()], &[]);
    assert_eq!(code, Some(2), "{err}");
}

fn transition(s: &Server, key: &str, id: &str, body: Value) -> Response {
    s.post(
        key,
        &format!("/api/v1/projects/proj/alerts/{id}/transitions"),
        &body,
    )
}

/// A failed gate opens an alert; the failed run uploaded as a baseline is quarantined (never
/// latest, not promotable) until the alert is triaged; `expected` carries a waiver the next gate
/// honours; transitions are checked by state and role, and audited.
fn alerts_triage_and_quarantine(b: Backend) {
    let s = Server::start(b);
    seed_history(&s, 12);
    let g = expect(s.post(CONTRIB, G, &gate_body("slow", &[2], 1.3)), 201);
    assert_eq!(verdict_of(&g, 2)["status"], "fail", "{g:#}");
    let list = expect(s.get(VIEWER, "/api/v1/projects/proj/alerts"), 200);
    assert_eq!(list["pagination"]["total"], 1, "{list}");
    let a = &list["alerts"][0];
    assert_eq!(a["benchmark"], "bench-2");
    assert_eq!(a["metric"], "wall_ms");
    assert_eq!(a["status"], "untriaged");
    assert_eq!(a["gate_id"], g["id"]);
    assert_eq!(a["git_sha"], "slow-sha");
    assert!(a["change_pct"].as_f64().unwrap() > 15.0, "{a}");
    let id = a["id"].as_str().unwrap().to_owned();
    // The alert alone, as the list has it, plus its audit trail and quarantined versions.
    let mut one = expect(
        s.get(VIEWER, &format!("/api/v1/projects/proj/alerts/{id}")),
        200,
    );
    let extra = one.as_object_mut().unwrap();
    assert_eq!(extra.remove("history").unwrap()[0]["action"], "create");
    assert_eq!(extra.remove("quarantined").unwrap(), json!([]));
    assert_eq!(one, *a);

    // The published CLI uploads the run it just compared: stored, but quarantined.
    let latest_before = expect(
        s.get(VIEWER, "/api/v1/projects/proj/baselines/bench-2/latest"),
        200,
    );
    let failed = gate_body("slow", &[2], 1.3)["runs"][2]["receipt"].clone();
    let up = expect(
        s.upload(CONTRIB, "proj", "bench-2", Some("slow-v"), &failed),
        201,
    );
    assert_eq!(up["quarantined"], true, "{up}");
    assert_eq!(up["gate_id"], g["id"]);
    assert_eq!(up["alert_id"].as_str(), Some(id.as_str()));
    let latest = expect(
        s.get(VIEWER, "/api/v1/projects/proj/baselines/bench-2/latest"),
        200,
    );
    assert_eq!(
        latest["version"], latest_before["version"],
        "a quarantined run is never latest"
    );
    let h = expect(
        s.get(
            VIEWER,
            "/api/v1/projects/proj/benchmarks/bench-2/history?limit=1",
        ),
        200,
    );
    assert_eq!(h["versions"][0]["version"], "slow-v");
    assert_eq!(h["versions"][0]["quarantined"], true);
    // The dashboard's benchmark table agrees with GET latest.
    let table = expect(s.get(VIEWER, "/api/v1/projects/proj/benchmarks"), 200);
    let row = table["benchmarks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["benchmark"] == "bench-2")
        .unwrap_or_else(|| panic!("{table:#}"));
    assert_eq!(row["latest"]["version"], latest_before["version"], "{row}");
    // A normal upload is not quarantined.
    let ok = expect(
        s.upload(
            CONTRIB,
            "proj",
            "bench-3",
            Some("fine"),
            &gate_body("fine", &[], 1.0)["runs"][3]["receipt"],
        ),
        201,
    );
    assert!(ok.get("quarantined").is_none(), "{ok}");

    // Promoting it needs triage, or an admin's override with a reason.
    let promote = |key: &str, body: Value| {
        s.post(
            key,
            "/api/v1/projects/proj/baselines/bench-2/promote",
            &body,
        )
    };
    let e = expect_error(
        promote(
            PROMOTER,
            json!({"from_version": "slow-v", "to_version": "p1"}),
        ),
        409,
        "conflict",
    );
    assert!(e["message"].as_str().unwrap().contains(&id), "{e}");
    expect_error(
        promote(
            PROMOTER,
            json!({"from_version": "slow-v", "to_version": "p1", "override": {"reason": "hotfix"}}),
        ),
        403,
        "forbidden",
    );
    expect_error(
        promote(
            ADMIN,
            json!({"from_version": "slow-v", "to_version": "p1", "override": {"reason": " "}}),
        ),
        400,
        "invalid_input",
    );
    // Unicode whitespace is blank too, and the document's pattern says so (schemathesis sent
    // "\u00a0", which a pattern written with `\s` let through under Python's `re.ASCII`).
    let blank = "\u{a0}\u{3000} \u{2028}";
    let e = expect_error(
        promote(
            ADMIN,
            json!({"from_version": "slow-v", "to_version": "p1", "override": {"reason": blank}}),
        ),
        400,
        "invalid_input",
    );
    assert_eq!(e["details"]["field"], "override.reason", "{e}");
    let doc = expect(s.get(ADMIN, "/api/v1/openapi.json"), 200);
    let reason = &doc["components"]["schemas"]["PromoteOverride"]["properties"]["reason"];
    let pattern = reason["pattern"].as_str().expect("a pattern");
    assert!(!pattern.contains(r"\s"), "{pattern}");
    let re = regex::Regex::new(pattern).unwrap();
    assert!(!re.is_match(blank) && !re.is_match("\u{a0}") && !re.is_match(" "));
    assert!(re.is_match("release blocker") && re.is_match("\u{a0}fix\u{a0}"));
    expect(
        promote(
            ADMIN,
            json!({"from_version": "slow-v", "to_version": "p1", "override": {"reason": "release blocker"}}),
        ),
        201,
    );
    let au = expect(s.get(ADMIN, "/api/v1/audit?action=promote"), 200);
    assert!(au.to_string().contains("release blocker"), "{au}");

    // Transitions: by state and by role.
    expect_error(
        transition(&s, VIEWER, &id, json!({"to": "acknowledged"})),
        403,
        "forbidden",
    );
    let e = expect_error(
        transition(&s, CONTRIB, &id, json!({"to": "closed"})),
        400,
        "invalid_input",
    );
    assert_eq!(e["details"]["field"], "to");
    expect_error(
        transition(
            &s,
            CONTRIB,
            &id,
            json!({"to": "invalid", "reason": "noise"}),
        ),
        403,
        "forbidden",
    );
    let e = expect_error(
        transition(&s, PROMOTER, &id, json!({"to": "invalid"})),
        400,
        "invalid_input",
    );
    assert_eq!(e["details"]["field"], "reason");
    let a = expect(
        transition(
            &s,
            CONTRIB,
            &id,
            json!({"to": "acknowledged", "link": "https://issues.example/42"}),
        ),
        200,
    );
    assert_eq!(a["status"], "acknowledged");
    assert_eq!(a["link"], "https://issues.example/42");
    let e = expect_error(
        transition(
            &s,
            PROMOTER,
            &id,
            json!({"to": "expected", "reason": "x", "expires_at": "2020-01-01T00:00:00Z"}),
        ),
        400,
        "invalid_input",
    );
    assert_eq!(e["details"]["field"], "expires_at");
    let a = expect(
        transition(
            &s,
            PROMOTER,
            &id,
            json!({"to": "expected", "reason": "the new parser is slower by design"}),
        ),
        200,
    );
    assert_eq!(a["status"], "expected");
    let w = &a["waiver"];
    assert!(w["max_change_pct"].as_f64().unwrap() > 15.0, "{a}");
    assert!(w["expires_at"].as_str().is_some());
    assert_eq!(a["transitions"], json!(["untriaged"]));
    // Accepted: the quarantine is over (the admin's promoted copy p1 is the newest version).
    let h = expect(
        s.get(
            VIEWER,
            "/api/v1/projects/proj/benchmarks/bench-2/history?limit=2",
        ),
        200,
    );
    assert_eq!(h["versions"][0]["version"], "p1");
    assert_eq!(h["versions"][1]["version"], "slow-v");
    assert_eq!(h["versions"][1]["quarantined"], false, "{h}");
    expect(
        s.delete(ADMIN, "/api/v1/projects/proj/baselines/bench-2/versions/p1"),
        200,
    );
    let latest = expect(
        s.get(VIEWER, "/api/v1/projects/proj/baselines/bench-2/latest"),
        200,
    );
    assert_eq!(latest["version"], "slow-v");
    // The waiver holds: the same slowdown does not fail the next gate.
    let g2 = expect(s.post(CONTRIB, G, &gate_body("slow2", &[2], 1.3)), 201);
    assert_ne!(verdict_of(&g2, 2)["status"], "fail", "{g2:#}");
    // Not from here: the allowed states are named.
    let e = expect_error(
        transition(&s, CONTRIB, &id, json!({"to": "acknowledged"})),
        409,
        "conflict",
    );
    assert!(e["message"].as_str().unwrap().contains("untriaged"), "{e}");
    // Only an admin reopens.
    expect_error(
        transition(&s, PROMOTER, &id, json!({"to": "untriaged"})),
        403,
        "forbidden",
    );
    let a = expect(transition(&s, ADMIN, &id, json!({"to": "untriaged"})), 200);
    assert!(a["waiver"].is_null());

    // A second alert marked as a duplicate of the first.
    let g3 = expect(s.post(CONTRIB, G, &gate_body("slow3", &[5], 1.35)), 201);
    assert_eq!(verdict_of(&g3, 5)["status"], "fail", "{g3:#}");
    let l = expect(
        s.get(
            VIEWER,
            &format!(
                "/api/v1/projects/proj/alerts?gate_id={}",
                g3["id"].as_str().unwrap()
            ),
        ),
        200,
    );
    let id2 = l["alerts"][0]["id"].as_str().unwrap().to_owned();
    let e = expect_error(
        transition(&s, CONTRIB, &id2, json!({"to": "duplicate"})),
        400,
        "invalid_input",
    );
    assert_eq!(e["details"]["field"], "duplicate_of");
    expect_error(
        transition(
            &s,
            CONTRIB,
            &id2,
            json!({"to": "duplicate", "duplicate_of": "0".repeat(32)}),
        ),
        409,
        "conflict",
    );
    let a = expect(
        transition(
            &s,
            CONTRIB,
            &id2,
            json!({"to": "duplicate", "duplicate_of": id}),
        ),
        200,
    );
    assert_eq!(a["duplicate_of"].as_str(), Some(id.as_str()));
    let l = expect(
        s.get(VIEWER, "/api/v1/projects/proj/alerts?status=duplicate"),
        200,
    );
    assert_eq!(l["pagination"]["total"], 1);
    expect_error(
        s.get(VIEWER, "/api/v1/projects/proj/alerts?status=closed"),
        400,
        "invalid_input",
    );
    expect_error(
        s.get(
            VIEWER,
            &format!("/api/v1/projects/proj/alerts/{}", "0".repeat(32)),
        ),
        404,
        "not_found",
    );

    let st = expect(s.get(VIEWER, "/api/v1/projects/proj/alert-stats"), 200);
    let b2 = st["benchmarks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["benchmark"] == "bench-2")
        .unwrap();
    assert_eq!(b2["counts"]["untriaged"], 1, "{st}");
    // Every transition is in the audit log with its actor, states and reason.
    let au = expect(
        s.get(ADMIN, "/api/v1/audit?resource_type=alert&limit=100"),
        200,
    );
    let text = au.to_string();
    assert!(text.contains("the new parser is slower by design"), "{au}");
    assert!(au["pagination"]["total"].as_i64().unwrap() >= 6, "{au}");
}
