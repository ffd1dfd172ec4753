//! An alert's audit trail (with the alert) and the project's waivers, over real HTTP on every
//! backend: what a reader of the alert sees, oldest first; waivers soonest expiry first, expired
//! ones on request; benchmark-restricted keys, other projects and bad input.

mod common;

use chrono::{SecondsFormat, Utc};
use common::*;

const A: &str = "/api/v1/projects/proj/alerts";
const W: &str = "/api/v1/projects/proj/waivers";
fn whoami(s: &Server, key: &str) -> String {
    expect(s.get(key, "/api/v1/whoami"), 200)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn alert_of(s: &Server, bench: &str) -> Value {
    let l = expect(s.get(VIEWER, &format!("{A}?benchmark={bench}")), 200);
    assert_eq!(l["pagination"]["total"], 1, "{l}");
    l["alerts"][0].clone()
}

fn transition(s: &Server, key: &str, id: &str, body: Value) -> Value {
    expect(s.post(key, &format!("{A}/{id}/transitions"), &body), 200)
}

fn in_days(days: i64) -> String {
    (Utc::now() + chrono::Duration::days(days)).to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The fields of a history entry, and nothing else of the audit row (request ids, metadata).
fn keys_of(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

fn alert_history_and_waivers(b: Backend) {
    let s = Server::start(b);
    let g = seed_failed_gate(&s);
    assert_eq!(g["status"], "fail", "{g:#}");
    let (contrib, promoter, admin) = (whoami(&s, CONTRIB), whoami(&s, PROMOTER), whoami(&s, ADMIN));
    let core = alert_of(&s, "core-x");
    let bb = alert_of(&s, "bench-b");
    let core_id = core["id"].as_str().unwrap().to_owned();
    let bb_id = bb["id"].as_str().unwrap().to_owned();

    // Opened by the gate: one `create` event by the gate's caller, nothing quarantined yet.
    let d = expect(s.get(VIEWER, &format!("{A}/{core_id}")), 200);
    for field in [
        "id",
        "status",
        "benchmark",
        "change_pct",
        "transitions",
        "waiver",
    ] {
        assert_eq!(d[field], core[field], "{field}: {d:#}");
    }
    let h = d["history"].as_array().unwrap();
    assert_eq!(h.len(), 1, "{d:#}");
    assert_eq!(h[0]["action"], "create");
    assert_eq!(h[0]["actor"], contrib.as_str());
    assert!(h[0]["from"].is_null());
    assert_eq!(h[0]["to"], "untriaged");
    assert_eq!(h[0]["gate_id"], g["id"]);
    assert!(
        (h[0]["change_pct"].as_f64().unwrap() - core["change_pct"].as_f64().unwrap()).abs() < 1e-9,
        "{d:#}"
    );
    assert!(h[0]["at"].as_str().unwrap().ends_with('Z'), "{d:#}");
    assert_eq!(
        keys_of(&h[0]),
        [
            "action",
            "actor",
            "at",
            "change_pct",
            "duplicate_of",
            "from",
            "gate_id",
            "link",
            "reason",
            "to",
            "waiver"
        ]
    );
    assert_eq!(d["quarantined"], json!([]));

    // The failed run uploaded as a baseline is held by the alert.
    let failed = gate_body()["runs"][5]["receipt"].clone();
    let up = expect(
        s.upload(CONTRIB, "proj", "core-x", Some("slow-v"), &failed),
        201,
    );
    assert_eq!(up["alert_id"].as_str(), Some(core_id.as_str()), "{up}");
    let d = expect(s.get(VIEWER, &format!("{A}/{core_id}")), 200);
    assert_eq!(d["quarantined"].as_array().unwrap().len(), 1, "{d:#}");
    assert_eq!(d["quarantined"][0]["benchmark"], "core-x");
    assert_eq!(d["quarantined"][0]["version"], "slow-v");

    // Acknowledged with a link, then accepted with a waiver: three events, oldest first.
    transition(
        &s,
        CONTRIB,
        &core_id,
        json!({"to": "acknowledged", "link": "https://issues.example/9"}),
    );
    let core_exp = in_days(20);
    let a = transition(
        &s,
        PROMOTER,
        &core_id,
        json!({"to": "expected", "reason": "new tokenizer, slower by design", "owner": "team-core",
            "max_change_pct": 40.0, "expires_at": core_exp}),
    );
    assert_eq!(a["waiver"]["expires_at"], core_exp.as_str());
    let d = expect(s.get(VIEWER, &format!("{A}/{core_id}")), 200);
    let h = d["history"].as_array().unwrap();
    assert_eq!(h.len(), 3, "{d:#}");
    assert_eq!(
        (&h[1]["actor"], &h[1]["from"], &h[1]["to"], &h[1]["link"]),
        (
            &json!(contrib),
            &json!("untriaged"),
            &json!("acknowledged"),
            &json!("https://issues.example/9")
        ),
        "{d:#}"
    );
    assert!(
        h[1]["waiver"].is_null() && h[1]["reason"].is_null(),
        "{d:#}"
    );
    assert_eq!(h[2]["actor"], promoter.as_str());
    assert_eq!(h[2]["action"], "update");
    assert_eq!(h[2]["from"], "acknowledged");
    assert_eq!(h[2]["to"], "expected");
    assert_eq!(h[2]["reason"], "new tokenizer, slower by design");
    assert_eq!(
        h[2]["waiver"],
        json!({"owner": "team-core", "max_change_pct": 40.0, "expires_at": core_exp})
    );
    assert!(
        h[0]["at"].as_str() <= h[1]["at"].as_str() && h[1]["at"].as_str() <= h[2]["at"].as_str(),
        "{d:#}"
    );
    assert_eq!(
        d["quarantined"],
        json!([]),
        "accepted: the quarantine is over"
    );
    assert_eq!(d["waiver"], h[2]["waiver"]);

    // The second alert accepted with a sooner expiry and the default owner and change.
    let bb_exp = in_days(5);
    transition(
        &s,
        PROMOTER,
        &bb_id,
        json!({"to": "expected", "reason": "known", "expires_at": bb_exp}),
    );

    // Waivers: soonest expiry first, with their alert's facts.
    let w = expect(s.get(VIEWER, W), 200);
    assert_eq!(w["pagination"]["total"], 2, "{w:#}");
    let list = w["waivers"].as_array().unwrap();
    assert_eq!(list[0]["alert_id"], bb_id.as_str());
    assert_eq!(list[0]["owner"], promoter.as_str());
    assert_eq!(list[0]["max_change_pct"], bb["change_pct"]);
    assert_eq!(list[0]["expires_at"], bb_exp.as_str());
    assert_eq!(
        list[1],
        json!({
            "alert_id": core_id, "benchmark": "core-x", "metric": "wall_ms", "owner": "team-core",
            "max_change_pct": 40.0, "expires_at": core_exp, "expired": false, "status": "expected",
            "reason": "new tokenizer, slower by design", "change_pct": core["change_pct"],
            "gate_id": g["id"], "git_sha": "slow-sha", "triaged_by": promoter,
        })
    );
    let page = expect(s.get(VIEWER, &format!("{W}?limit=1&offset=1")), 200);
    assert_eq!(page["waivers"][0]["alert_id"], core_id.as_str());
    assert_eq!(page["pagination"]["total"], 2);
    let one = expect(s.get(VIEWER, &format!("{W}?benchmark=bench-b")), 200);
    assert_eq!(one["pagination"]["total"], 1);
    assert_eq!(one["waivers"][0]["alert_id"], bb_id.as_str());

    // A key restricted to `bench-.*` sees neither core-x's waiver nor its alert.
    let r = expect(s.get(RESTRICTED, W), 200);
    assert_eq!(r["pagination"]["total"], 1, "{r:#}");
    assert_eq!(r["waivers"][0]["alert_id"], bb_id.as_str());
    let r = expect(s.get(RESTRICTED, &format!("{W}?benchmark=core-x")), 200);
    assert_eq!(r["waivers"], json!([]));
    expect_error(
        s.get(RESTRICTED, &format!("{A}/{core_id}")),
        404,
        "not_found",
    );
    let d = expect(s.get(RESTRICTED, &format!("{A}/{bb_id}")), 200);
    assert_eq!(d["history"].as_array().unwrap().len(), 2, "{d:#}");
    // Another project's admin, and no credential.
    expect_error(s.get(OTHER_ADMIN, W), 403, "forbidden");
    expect_error(
        s.get(OTHER_ADMIN, &format!("{A}/{core_id}")),
        403,
        "forbidden",
    );
    expect_error(s.http.get(s.url(W)).send().unwrap(), 401, "unauthorized");
    expect_error(
        s.http.get(s.url(&format!("{A}/{core_id}"))).send().unwrap(),
        401,
        "unauthorized",
    );

    // Reopened by an admin: the waiver is gone from both lists, the trail has a fourth step.
    let a = transition(&s, ADMIN, &core_id, json!({"to": "untriaged"}));
    assert!(a["waiver"].is_null());
    let d = expect(s.get(VIEWER, &format!("{A}/{core_id}")), 200);
    let h = d["history"].as_array().unwrap();
    assert_eq!(h.len(), 4, "{d:#}");
    assert_eq!(
        (&h[3]["actor"], &h[3]["from"], &h[3]["to"]),
        (&json!(admin), &json!("expected"), &json!("untriaged"))
    );
    for q in ["", "?include_expired=true"] {
        let w = expect(s.get(VIEWER, &format!("{W}{q}")), 200);
        assert_eq!(w["pagination"]["total"], 1, "{q}: {w:#}");
        assert_eq!(w["waivers"][0]["alert_id"], bb_id.as_str());
    }

    // A waiver that runs out leaves the list of those in force, and is flagged expired.
    let short =
        (Utc::now() + chrono::Duration::seconds(2)).to_rfc3339_opts(SecondsFormat::Micros, true);
    transition(
        &s,
        PROMOTER,
        &core_id,
        json!({"to": "expected", "reason": "short", "expires_at": short}),
    );
    let w = expect(s.get(VIEWER, W), 200);
    assert_eq!(w["pagination"]["total"], 2, "{w:#}");
    assert_eq!(
        w["waivers"][0]["alert_id"],
        core_id.as_str(),
        "soonest first"
    );
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let w = expect(s.get(VIEWER, W), 200);
    assert_eq!(w["pagination"]["total"], 1, "{w:#}");
    assert_eq!(w["waivers"][0]["alert_id"], bb_id.as_str());
    let w = expect(s.get(VIEWER, &format!("{W}?include_expired=true")), 200);
    assert_eq!(w["pagination"]["total"], 2, "{w:#}");
    let expired = &w["waivers"][0];
    assert_eq!(expired["alert_id"], core_id.as_str(), "{w:#}");
    assert_eq!(expired["expired"], true);
    assert_eq!(expired["reason"], "short");
    assert!(
        ["expected", "untriaged"].contains(&expired["status"].as_str().unwrap()),
        "the expiry task reopens it within a minute: {expired}"
    );
    assert_eq!(w["waivers"][1]["expired"], false);

    // The answers are the documented shapes.
    let doc = expect(
        s.http.get(s.url("/api/v1/openapi.json")).send().unwrap(),
        200,
    );
    check_shape(&doc, "ListWaiversResponse", &w, "waivers");
    assert_eq!(w["waivers"].as_array().unwrap().len(), 2);
    let d = expect(s.get(VIEWER, &format!("{A}/{core_id}")), 200);
    check_shape(&doc, "AlertDetail", &d, "alert");
    assert!(d["history"].as_array().unwrap().len() >= 5, "{d:#}");

    // Bad input: the contract's error, with the status of the other alert routes.
    for q in [
        "?include_expired=maybe",
        "?limit=0",
        "?offset=-1",
        "?benchmark=..",
        "?benchmark=a%20b",
    ] {
        let e = expect_error(s.get(VIEWER, &format!("{W}{q}")), 400, "invalid_input");
        assert!(!e["message"].as_str().unwrap().is_empty(), "{q}");
    }
    let w = expect(s.get(VIEWER, &format!("{W}?limit=100000")), 200);
    assert_eq!(w["pagination"]["limit"], 200, "capped: {w}");
    expect_error(
        s.get(VIEWER, "/api/v1/projects/bad%20name/waivers"),
        400,
        "invalid_input",
    );
    for id in ["not-an-id", "0123456789ABCDEF0123456789ABCDEF", "00"] {
        expect_error(s.get(VIEWER, &format!("{A}/{id}")), 404, "not_found");
    }
    expect_error(
        s.get(VIEWER, &format!("{A}/{}", "0".repeat(32))),
        404,
        "not_found",
    );
    // An alert is found only in its own project.
    expect_error(
        s.get(
            RESTRICTED,
            &format!("/api/v1/projects/other/alerts/{bb_id}"),
        ),
        403,
        "forbidden",
    );
    expect_error(
        s.get(VIEWER, &format!("/api/v1/projects/other/alerts/{bb_id}")),
        404,
        "not_found",
    );
    let r = s
        .http
        .post(s.url(W))
        .bearer_auth(ADMIN)
        .json(&json!({}))
        .send()
        .unwrap();
    expect_error(r, 405, "method_not_allowed");
}

backend_tests!(
    alert_history_and_waivers,
    huge_regressions_and_bad_triage_input
);

/// A regression far beyond 1000 % (a run 50× slower) is accepted with the defaults: the waiver
/// covers the alert's whole change and the next gate warns instead of failing. Triage input that
/// names no alert or no web address is refused, naming the field, and changes nothing.
fn huge_regressions_and_bad_triage_input(b: Backend) {
    let s = Server::start(b);
    for run in 0..12 {
        let mut body = upload_body(
            "huge",
            None,
            &leveled_receipt("huge", &format!("h-{run}"), level(0, run), run),
        );
        body["git_sha"] = json!(format!("sha{run:03}"));
        expect(
            s.post(CONTRIB, "/api/v1/projects/proj/baselines", &body),
            201,
        );
    }
    let gate = |n: usize| {
        let r = leveled_receipt("huge", &format!("slow-{n}"), 5_000.0, n);
        let body =
            json!({"runs": [{"benchmark": "huge", "receipt": r}], "git_sha": format!("slow{n}")});
        expect(s.post(CONTRIB, "/api/v1/projects/proj/gates", &body), 201)
    };
    let g = gate(0);
    assert_eq!(g["status"], "fail", "{g:#}");
    let a = alert_of(&s, "huge");
    let id = a["id"].as_str().unwrap();
    let change = a["change_pct"].as_f64().unwrap();
    assert!(change > 1000.0, "{a:#}");

    let url = format!("{A}/{id}/transitions");
    for (body, field) in [
        (
            json!({"to": "acknowledged", "link": "javascript:alert(1)"}),
            "link",
        ),
        (
            json!({"to": "acknowledged", "link": "https://x.example/a b"}),
            "link",
        ),
        (
            json!({"to": "duplicate", "duplicate_of": "xyz"}),
            "duplicate_of",
        ),
        (
            json!({"to": "expected", "reason": "r", "max_change_pct": -1.0}),
            "max_change_pct",
        ),
    ] {
        let e = expect_error(s.post(ADMIN, &url, &body), 400, "invalid_input");
        assert_eq!(e["details"]["field"], field, "{body}: {e}");
    }
    assert_eq!(alert_of(&s, "huge")["status"], "untriaged");

    transition(
        &s,
        CONTRIB,
        id,
        json!({"to": "acknowledged", "link": "HTTPS://issues.example/7"}),
    );
    let t = transition(
        &s,
        PROMOTER,
        id,
        json!({"to": "expected", "reason": "50x by design"}),
    );
    assert_eq!(t["status"], "expected", "{t:#}");
    assert_eq!(
        t["waiver"]["max_change_pct"].as_f64(),
        Some(change),
        "{t:#}"
    );
    let g = gate(1);
    assert_eq!(g["status"], "warn", "{g:#}");
    let reason = g["benchmarks"][0]["reason"].as_str().unwrap();
    assert!(reason.contains(id), "{g:#}");
}
