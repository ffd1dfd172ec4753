//! Change points over real HTTP on every backend: a background pass finds where each
//! benchmark's level moved (with the CI run's common shift removed), names the commit range,
//! opens an alert for a confirmed regression no gate failed, re-centres the gate's history on an
//! accepted change, and marks an alert fixed when a later change restores the level.

mod common;

use std::time::{Duration, Instant};

use common::*;

const BENCHES: usize = 8;
/// bench-2 regresses by 15% at this run, and comes back at `BACK`.
const STEP2: usize = 20;
const BACK: usize = 40;
/// core/parse regresses by 12% at this run, for good.
const STEP5: usize = 22;

fn name(b: usize) -> String {
    if b == 5 {
        "core/parse".to_owned()
    } else {
        format!("bench-{b}")
    }
}

/// Level of benchmark `b` in run `r`: its own level, a ±2% wobble of its own, a ±3% shift the
/// whole CI run shares (the runner), and the steps.
fn level(b: usize, r: usize) -> f64 {
    let own = 1.0 + (((r * 7 + b * 3) % 5) as f64 - 2.0) * 0.01;
    let runner = 1.0 + (((r * 13) % 7) as f64 - 3.0) * 0.01;
    let step = match b {
        2 if (STEP2..BACK).contains(&r) => 1.15,
        5 if r >= STEP5 => 1.12,
        _ => 1.0,
    };
    (100.0 + 40.0 * b as f64) * own * runner * step
}

fn sha(r: usize) -> String {
    format!("{r:03}0000000000000000000000000000000000000")
}

fn upload_runs(s: &Server, runs: std::ops::Range<usize>) {
    for r in runs {
        for b in 0..BENCHES {
            let rec = leveled_receipt(&name(b), &format!("run-{r}-{b}"), level(b, r), r + b);
            let mut body = upload_body(&name(b), None, &rec);
            body["git_sha"] = json!(sha(r));
            expect(
                s.post(CONTRIB, "/api/v1/projects/proj/baselines", &body),
                201,
            );
        }
    }
}

fn points_url(bench: &str) -> String {
    format!("/api/v1/projects/proj/benchmarks/{bench}/change-points?metric=wall_ms")
}

/// Polls (bounded: 30 s) until `done` holds for the answer of `url`.
fn wait_for(s: &Server, url: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let v = expect(s.get(ADMIN, url), 200);
        if done(&v) {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: not reached in 30 s; last answer {v:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn strong(v: &Value) -> Vec<Value> {
    v["change_points"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["strength"] == "strong")
        .cloned()
        .collect()
}

fn alerts_of(s: &Server, bench: &str) -> Vec<Value> {
    let l = expect(
        s.get(
            VIEWER,
            &format!("/api/v1/projects/proj/alerts?benchmark={bench}&limit=50"),
        ),
        200,
    );
    l["alerts"].as_array().unwrap().clone()
}

/// The standard keys, with a pass every `interval_ms` over runs stored `delay_ms` ago.
fn pass_args(interval_ms: u64, delay_ms: u64) -> Vec<String> {
    let mut args: Vec<String> = standard_keys()
        .into_iter()
        .flat_map(|k| ["--api-keys".to_owned(), k])
        .collect();
    args.extend([
        "--change-point-interval-ms".to_owned(),
        interval_ms.to_string(),
        "--change-point-delay-ms".to_owned(),
        delay_ms.to_string(),
    ]);
    args
}

fn change_points_and_alerts(b: Backend) {
    let s = Server::start_with(b, &pass_args(100, 0));
    upload_runs(&s, 0..BACK);

    // bench-2: +15% at run 20, found at its commit, confirmed and settled.
    let v = wait_for(&s, &points_url("bench-2"), "bench-2's step", |v| {
        strong(v).iter().any(|p| p["settled"] == true)
    });
    assert_eq!(v["project"], "proj");
    assert_eq!(v["benchmark"], "bench-2");
    assert_eq!(v["metric"], "wall_ms");
    assert_eq!(v["tracked"], true);
    let p = &strong(&v)[0];
    assert_eq!(strong(&v).len(), 1, "{v:#}");
    assert_eq!(p["index"], STEP2, "{v:#}");
    assert_eq!(p["git_sha"].as_str(), Some(sha(STEP2).as_str()), "{v:#}");
    assert_eq!(
        p["previous_git_sha"].as_str(),
        Some(sha(STEP2 - 1).as_str()),
        "{v:#}"
    );
    assert_eq!(p["status"], "confirmed");
    let change = p["change_pct"].as_f64().unwrap();
    assert!((12.0..18.0).contains(&change), "{v:#}");
    let (before, after) = (
        p["level_before"].as_f64().unwrap(),
        p["level_after"].as_f64().unwrap(),
    );
    assert!((170.0..190.0).contains(&before) && after > before, "{v:#}");
    assert!(p["p"].as_f64().unwrap() <= 1e-4, "{v:#}");
    assert!(p["version"].is_string(), "{v:#}");
    assert!(p["created_at"].as_str().unwrap().ends_with('Z'), "{v:#}");
    let alert_id = p["alert_id"]
        .as_str()
        .expect("an alert for the regression")
        .to_owned();

    // Its alert: from the change point (no gate ran), with the commit range to bisect.
    let a = expect(
        s.get(VIEWER, &format!("/api/v1/projects/proj/alerts/{alert_id}")),
        200,
    );
    assert_eq!(a["source"], "change_point", "{a:#}");
    assert_eq!(a["benchmark"], "bench-2");
    assert_eq!(a["status"], "untriaged");
    assert_eq!(a["git_sha"].as_str(), Some(sha(STEP2).as_str()));
    assert_eq!(
        a["previous_git_sha"].as_str(),
        Some(sha(STEP2 - 1).as_str())
    );
    assert!(
        (12.0..18.0).contains(&a["change_pct"].as_f64().unwrap()),
        "{a:#}"
    );

    // core/parse (a name with a slash): +12% at run 22.
    let v5 = wait_for(&s, &points_url("core/parse"), "core/parse's step", |v| {
        strong(v).iter().any(|p| p["alert_id"].is_string())
    });
    let p5 = &strong(&v5)[0];
    assert_eq!(p5["index"], STEP5, "{v5:#}");
    let alert5 = p5["alert_id"].as_str().unwrap().to_owned();

    // The unchanged benchmarks have no strong point: the runner's ±3% shift is removed.
    for b in [0, 1, 3, 4, 6, 7] {
        let v = expect(s.get(VIEWER, &points_url(&name(b))), 200);
        assert!(strong(&v).is_empty(), "{}: {v:#}", name(b));
        assert!(alerts_of(&s, &name(b)).is_empty(), "{}", name(b));
    }
    // One alert per change, however many passes saw it.
    assert_eq!(alerts_of(&s, "bench-2").len(), 1);

    // Accepting core/parse's change re-centres its gate history on the change.
    expect(
        s.post(
            PROMOTER,
            &format!("/api/v1/projects/proj/alerts/{alert5}/transitions"),
            &json!({"to": "expected", "reason": "the new tokenizer trades speed for accuracy",
                    "owner": "parser-team", "max_change_pct": 15.0}),
        ),
        200,
    );
    let runs: Vec<Value> = (0..BENCHES)
        .map(|b| {
            json!({"benchmark": name(b),
                   "receipt": leveled_receipt(&name(b), &format!("gate-{b}"), level(b, BACK - 1), b + 7)})
        })
        .collect();
    let g = expect(
        s.post(
            CONTRIB,
            "/api/v1/projects/proj/gates",
            &json!({"runs": runs, "git_sha": "feed000000000000000000000000000000000000"}),
        ),
        201,
    );
    let v5 = g["benchmarks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["benchmark"] == "core/parse")
        .unwrap()
        .clone();
    assert_eq!(v5["history_runs"], BACK - STEP5, "{g:#}");
    assert_eq!(v5["status"], "pass", "{g:#}");

    // bench-2 is acknowledged; when it comes back to its old level, its alert is fixed.
    expect(
        s.post(
            CONTRIB,
            &format!("/api/v1/projects/proj/alerts/{alert_id}/transitions"),
            &json!({"to": "acknowledged", "link": "https://issues.example/42"}),
        ),
        200,
    );
    upload_runs(&s, BACK..BACK + 20);
    let a = wait_for(
        &s,
        &format!("/api/v1/projects/proj/alerts/{alert_id}"),
        "bench-2's alert fixed",
        |a| a["status"] == "fixed",
    );
    assert!(a["reason"].as_str().unwrap().contains("restored"), "{a:#}");
    let v = expect(s.get(VIEWER, &points_url("bench-2")), 200);
    let back: Vec<Value> = strong(&v)
        .into_iter()
        .filter(|p| p["change_pct"].as_f64().unwrap() < 0.0)
        .collect();
    assert_eq!(back.len(), 1, "{v:#}");
    assert!(
        back[0]["index"].as_i64().unwrap().abs_diff(BACK as i64) <= 1,
        "{v:#}"
    );
    assert!(
        back[0]["alert_id"].is_null(),
        "improvements open no alert: {v:#}"
    );
    let au = expect(
        s.get(
            ADMIN,
            "/api/v1/audit?resource_type=alert&actor=system:change-points&limit=50",
        ),
        200,
    );
    let fixed = au["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["resource_id"] == alert_id.as_str() && e.to_string().contains("fixed"));
    assert!(fixed, "{au:#}");

    // Authorization and bad input.
    expect_error(
        s.get(
            "pg_live_unknownunknownunknownunknown0000",
            &points_url("bench-2"),
        ),
        401,
        "unauthorized",
    );
    expect(s.get(RESTRICTED, &points_url("bench-2")), 200);
    expect_error(
        s.get(RESTRICTED, &points_url("core/parse")),
        403,
        "forbidden",
    );
    expect_error(s.get(OTHER_ADMIN, &points_url("bench-2")), 403, "forbidden");
    expect_error(
        s.get(
            VIEWER,
            "/api/v1/projects/proj/benchmarks/bench-2/change-points?metric=speed",
        ),
        400,
        "invalid_input",
    );
    expect_error(
        s.get(
            VIEWER,
            "/api/v1/projects/proj/benchmarks/bench-2/change-points?runner=%01",
        ),
        400,
        "invalid_input",
    );
    // Another runner class, or a benchmark never seen: no points.
    let v = expect(
        s.get(
            VIEWER,
            "/api/v1/projects/proj/benchmarks/bench-2/change-points?runner=arm64",
        ),
        200,
    );
    assert_eq!(v["change_points"], json!([]));
    let v = expect(s.get(VIEWER, &points_url("never-seen")), 200);
    assert_eq!(v["change_points"], json!([]));
    // Only the metrics the project's gate judges are tracked (wall_ms by default).
    let v = expect(
        s.get(
            VIEWER,
            "/api/v1/projects/proj/benchmarks/bench-2/change-points?metric=cpu_ms",
        ),
        200,
    );
    assert_eq!(v["tracked"], false);
    assert_eq!(v["change_points"], json!([]));
}

backend_tests!(change_points_and_alerts);

/// Two replicas on one PostgreSQL both run passes, every 50 ms, over runs uploaded through both:
/// a pass plans on a reader and writes only if no other pass moved the watermark meanwhile, so
/// each stored run is read by exactly one applied pass and each change is found once. (Runs
/// become due 2 s after they were stored: a pass's window closes only on runs whose commits
/// have landed, as with the default 30 s.)
#[test]
fn two_replicas_scan_each_run_once() {
    let Some(Backend::Postgres(url)) = Backend::postgres() else {
        return;
    };
    let args = pass_args(50, 2000);
    let replicas = [
        Server::start_with(Backend::Postgres(url.clone()), &args),
        Server::start_with(Backend::Postgres(url.clone()), &args),
    ];
    for r in 0..STEP2 + 10 {
        upload_runs(&replicas[r % 2], r..r + 1);
    }
    let stored = {
        use diesel::Connection;
        stored_runs(&mut diesel::PgConnection::establish(&url).unwrap())
    };
    assert!(stored >= (BENCHES * (STEP2 + 10)) as i64, "{stored}");
    let read = || -> i64 {
        replicas
            .iter()
            .map(|s| metric(s, "perfgate_change_point_runs_total") as i64)
            .sum()
    };
    each_run_read_once(stored, read);
    for s in &replicas {
        let v = expect(s.get(ADMIN, &points_url("bench-2")), 200);
        let found = strong(&v);
        assert_eq!(found.len(), 1, "{v:#}");
        assert_eq!(found[0]["index"], STEP2, "{v:#}");
    }
    let alerts: Vec<Value> = alerts_of(&replicas[0], "bench-2")
        .into_iter()
        .filter(|a| a["source"] == "change_point")
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
}

/// On SQLite a pass reads each run exactly once even with no delay, while uploads from four
/// clients commit around it: a run whose time was taken before a plan was read and whose commit
/// came after makes the plan stale (its range's count changed), so the plan is made again.
#[test]
fn sqlite_passes_read_each_run_once_under_concurrent_uploads() {
    let s = std::sync::Arc::new(Server::start_with(Backend::Sqlite, &pass_args(20, 0)));
    let uploaders: Vec<_> = (0..4)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for r in (t..STEP2).step_by(4) {
                    upload_runs(&s, r..r + 1);
                }
            })
        })
        .collect();
    for u in uploaders {
        u.join().unwrap();
    }
    let stored = {
        use diesel::Connection;
        let path = s.dir.join("perfgate.db");
        stored_runs(&mut diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap())
    };
    assert!(stored >= (BENCHES * STEP2) as i64, "{stored}");
    each_run_read_once(stored, || {
        metric(&s, "perfgate_change_point_runs_total") as i64
    });
}

#[derive(diesel::QueryableByName)]
struct Rows {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// The rows of `run_stats` (one per stored run and metric), read straight from the database.
fn stored_runs<C>(c: &mut C) -> i64
where
    C: diesel::Connection,
    diesel::query_builder::SqlQuery: diesel::query_dsl::LoadQuery<'static, C, Rows>,
{
    use diesel::RunQueryDsl;
    diesel::sql_query("SELECT COUNT(*) AS n FROM run_stats")
        .get_result::<Rows>(c)
        .unwrap()
        .n
}

/// Waits (bounded: 30 s) until the runs read by applied passes (`read`) reach the `stored`
/// ones, then checks, after a few more passes, that none was read twice.
fn each_run_read_once(stored: i64, read: impl Fn() -> i64) {
    let start = Instant::now();
    while read() < stored {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "passes read {} of {stored} runs in 30 s",
            read()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(read(), stored, "runs read by the applied passes");
}
