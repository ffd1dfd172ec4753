//! `export` / `import`: a populated SQLite database moved to PostgreSQL (and to another SQLite
//! file) answers every API call exactly as before; importing twice changes nothing.

mod common;

use std::process::{Command, Stdio};

use common::*;

const P: &str = "/api/v1/projects/proj/baselines";

fn cli(args: &[&str], stdin: Option<&std::path::Path>) -> (Option<i32>, Vec<u8>, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_perfgate-server"));
    c.args(args).env_remove("PERFGATE_DATABASE_URL");
    if let Some(f) = stdin {
        c.stdin(Stdio::from(std::fs::File::open(f).unwrap()));
    }
    let out = c.output().unwrap();
    (
        out.status.code(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `runs` uploads of `bench` around 100 ms, each from a commit of its own (a gate's history).
fn upload_history(s: &Server, bench: &str, runs: usize) {
    for run in 0..runs {
        let mut body = upload_body(
            bench,
            None,
            &leveled_receipt(bench, &format!("h{run}"), 100.0, run),
        );
        body["git_sha"] = json!(format!("sha{run}"));
        expect(s.post(CONTRIB, P, &body), 201);
    }
}

fn populate(s: &Server) -> String {
    let r1 = fixture("run-bench-a-1.json");
    let r2 = fixture("run-bench-a-2.json");
    for (i, (bench, r)) in [
        ("bench-a", &r1),
        ("bench-a", &r2),
        ("render/md", &r1),
        ("bench-b", &r2),
    ]
    .iter()
    .enumerate()
    {
        let mut body = upload_body(bench, Some(&format!("v{i}")), r);
        body["tags"] = json!(["nightly", format!("t{i}")]);
        body["metadata"] = json!({"runner": format!("r{i}")});
        body["git_ref"] = json!("refs/heads/main");
        let r = s
            .http
            .post(s.url(P))
            .bearer_auth(ADMIN)
            .header("idempotency-key", format!("idem-{i}"))
            .json(&body)
            .send()
            .unwrap();
        expect(r, 201);
    }
    expect(s.upload(ADMIN, "other", "bench-z", None, &r1), 201);
    expect(
        s.post(
            ADMIN,
            &format!("{P}/bench-a/promote"),
            &json!({"from_version": "v0", "to_version": "stable", "tags": ["release"]}),
        ),
        201,
    );
    expect(s.delete(ADMIN, &format!("{P}/bench-a/versions/v1")), 200);
    for (bench, status, cv) in [
        ("bench-a", "pass", 0.1),
        ("bench-a", "fail", 0.5),
        ("bench-b", "warn", 0.2),
    ] {
        let v = json!({"benchmark": bench, "run_id": "r", "status": status,
                       "counts": {"pass": 1, "warn": 0, "fail": 0, "skip": 0}, "reasons": ["x"], "wall_ms_cv": cv});
        expect(s.post(CONTRIB, "/api/v1/projects/proj/verdicts", &v), 201);
    }
    for tradeoff in ["tradeoff-accepted.json", "tradeoff-rejected.json"] {
        let d = json!({"tradeoff": fixture(tradeoff), "scenario": fixture("scenario-checkout.json"),
                       "artifact_index": fixture("decision-index.json"), "git_sha": "abc"});
        expect(s.post(CONTRIB, "/api/v1/projects/proj/decisions", &d), 201);
    }
    for (p, d) in [("proj", 10.0), ("other", 20.0), ("third", -1.0)] {
        let e = json!({"project": p, "benchmark": "bench-a", "metric": "wall_ms", "delta_pct": d,
                       "dependency_changes": [{"name": "serde", "old_version": "1.0", "new_version": "1.1"}]});
        expect(s.post(ADMIN, "/api/v1/fleet/dependency-event", &e), 201);
    }
    // The gate's state: a history, a failed gate (an alert), the failed run uploaded (held in
    // quarantine), the alert triaged with a waiver, and a project setting.
    upload_history(s, "gx", 10);
    let slow = leveled_receipt("gx", "slow", 180.0, 99);
    let g = expect(
        s.post(
            CONTRIB,
            "/api/v1/projects/proj/gates",
            &json!({"runs": [{"benchmark": "gx", "receipt": slow}], "git_sha": "slowsha"}),
        ),
        201,
    );
    assert_eq!(g["status"], "fail", "{g:#}");
    // A gate a benchmark-restricted caller sees (its list reads the gates' benchmark names,
    // which an import rebuilds).
    expect(
        s.post(
            RESTRICTED,
            "/api/v1/projects/proj/gates",
            &json!({"runs": [{"benchmark": "bench-b", "receipt": leveled_receipt("bench-b", "g", 100.0, 1)}]}),
        ),
        201,
    );
    let up = expect(s.upload(CONTRIB, "proj", "gx", Some("slow-v"), &slow), 201);
    assert_eq!(up["quarantined"], true, "{up}");
    let alert = up["alert_id"].as_str().unwrap();
    expect(
        s.post(
            PROMOTER,
            &format!("/api/v1/projects/proj/alerts/{alert}/transitions"),
            &json!({"to": "expected", "reason": "slower by design", "link": "https://issues.example/1"}),
        ),
        200,
    );
    expect(
        s.put(
            ADMIN,
            "/api/v1/projects/proj/gate-settings",
            &json!({"history_runs": 40}),
        ),
        200,
    );
    let k = expect(
        s.post(
            ADMIN,
            "/api/v1/keys",
            &json!({"description": "moves", "role": "viewer", "project": "proj"}),
        ),
        201,
    );
    let gone = expect(
        s.post(
            ADMIN,
            "/api/v1/keys",
            &json!({"description": "gone", "role": "viewer", "project": "*"}),
        ),
        201,
    );
    expect(
        s.delete(
            ADMIN,
            &format!("/api/v1/keys/{}", gone["id"].as_str().unwrap()),
        ),
        200,
    );
    k["key"].as_str().unwrap().to_owned()
}

/// Every read answer that should survive the move.
fn snapshot(s: &Server) -> Vec<(String, String)> {
    let paths = [
        format!("{P}?include_receipt=true&limit=200"),
        format!("{P}?tags=nightly"),
        "/api/v1/projects/other/baselines".to_owned(),
        format!("{P}/bench-a/latest"),
        format!("{P}/render/md/latest"),
        format!("{P}/bench-a/versions/v0"),
        format!("{P}/bench-a/versions/stable"),
        format!("{P}/bench-a/versions/v1"),
        format!("{P}/bench-a/trend?metric=wall_ms"),
        "/api/v1/projects/proj/verdicts".to_owned(),
        "/api/v1/projects/proj/verdicts?benchmark=bench-a".to_owned(),
        "/api/v1/projects/proj/decisions".to_owned(),
        "/api/v1/projects/proj/decisions?rule=wall-for-rss".to_owned(),
        "/api/v1/projects/proj/decisions/latest".to_owned(),
        "/api/v1/fleet/alerts?min_affected=1".to_owned(),
        "/api/v1/fleet/dependency/serde/impact".to_owned(),
        "/api/v1/audit?resource_type=all&limit=1000".to_owned(),
        format!("{P}/gx/latest"),
        format!("{P}/gx/versions/slow-v"),
        "/api/v1/projects/proj/gates".to_owned(),
        "/api/v1/projects/proj/alerts".to_owned(),
        "/api/v1/projects/proj/alert-stats".to_owned(),
        "/api/v1/projects/proj/waivers".to_owned(),
        "/api/v1/projects/proj/gate-settings".to_owned(),
        "/api/v1/projects/proj/benchmarks/gx/history".to_owned(),
        "/api/v1/projects/proj/benchmarks/gx/change-points".to_owned(),
        "/api/v1/projects/proj/benchmarks".to_owned(),
        "/api/v1/keys".to_owned(),
    ];
    // The restricted caller's view of the gates (one gate of the two above).
    let restricted = "/api/v1/projects/proj/gates#restricted".to_owned();
    paths
        .iter()
        .chain([&restricted])
        .map(|p| {
            let (path, key) = match p.strip_suffix("#restricted") {
                Some(path) => (path, RESTRICTED),
                None => (p.as_str(), ADMIN),
            };
            let r = s
                .http
                .get(s.url(path))
                .bearer_auth(key)
                .header("x-request-id", "snapshot")
                .send()
                .unwrap();
            (
                p.clone(),
                format!("{} {}", r.status().as_u16(), r.text().unwrap()),
            )
        })
        .collect()
}

/// `export` of the server's SQLite file: the dump's text.
fn export(s: &Server) -> String {
    let db = s.dir.join("perfgate.db");
    let (code, out, err) = cli(&["export", "--database-url", db.to_str().unwrap()], None);
    assert_eq!(code, Some(0), "export: {err}");
    String::from_utf8(out).unwrap()
}

fn check_move(target: Backend) {
    let mut src = Server::start(Backend::Sqlite);
    let moved_key = populate(&src);
    let before = snapshot(&src);
    let (_, gates) = before.last().unwrap();
    assert!(
        gates.starts_with("200 ") && gates.contains(r#""total":1"#),
        "the restricted caller sees one gate: {gates}"
    );
    src.kill();
    let dump = src.dir.join("dump.jsonl");
    let lines = export(&src);
    std::fs::write(&dump, &lines).unwrap();
    assert!(lines.lines().next().unwrap().contains("perfgate-export"));
    assert!(!lines.contains(&moved_key), "keys travel as hashes only");

    let target_url = match &target {
        Backend::Postgres(url) => url.clone(),
        _ => src.dir.join("target.db").to_string_lossy().into_owned(),
    };
    for round in 0..2 {
        let (code, _, err) = cli(&["import", "--database-url", &target_url], Some(&dump));
        assert_eq!(code, Some(0), "import round {round}: {err}");
    }
    let dst = match target {
        Backend::Postgres(url) => Server::start(Backend::Postgres(url)),
        _ => Server::start(Backend::SqliteAt(target_url.clone())),
    };
    let after = snapshot(&dst);
    for ((path, a), (_, b)) in before.iter().zip(&after) {
        assert_eq!(a, b, "answer to {path} changed after the move");
    }
    expect(dst.get(&moved_key, P), 200);
    // New writes keep working on the target (counters and uniqueness intact).
    expect_error(
        dst.upload(
            ADMIN,
            "proj",
            "bench-a",
            Some("v1"),
            &fixture("run-bench-a-1.json"),
        ),
        409,
        "conflict",
    );
    expect(
        dst.upload(
            ADMIN,
            "proj",
            "bench-a",
            Some("v9"),
            &fixture("run-bench-a-1.json"),
        ),
        201,
    );
    let l = expect(dst.get(ADMIN, &format!("{P}?benchmark=bench-a")), 200);
    assert_eq!(l["pagination"]["total"], 3);
}

#[test]
fn sqlite_to_postgres_answers_identically() {
    if let Some(pg) = Backend::postgres() {
        check_move(pg);
    }
}

#[test]
fn sqlite_to_sqlite_answers_identically() {
    check_move(Backend::Sqlite);
}

#[test]
fn import_refuses_foreign_input() {
    let dir = temp_dir("bad-import");
    let f = dir.join("bad.jsonl");
    std::fs::write(&f, "{\"hello\": 1}\n").unwrap();
    let db = dir.join("t.db");
    let (code, _, err) = cli(
        &["import", "--database-url", db.to_str().unwrap()],
        Some(&f),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not a perfgate-server export"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Exports of older servers hold versions a gate recorded with source `gate`, which the
/// published client cannot read: import stores them as uploads.
#[test]
fn import_gives_recorded_versions_a_contract_source() {
    let mut src = Server::start(Backend::Sqlite);
    expect(
        src.upload(
            ADMIN,
            "proj",
            "bench-a",
            Some("v1"),
            &fixture("run-bench-a-1.json"),
        ),
        201,
    );
    src.kill();
    let old = export(&src);
    assert!(old.contains(r#""source":"upload""#), "{old}");
    let dump = src.dir.join("old.jsonl");
    std::fs::write(
        &dump,
        old.replace(r#""source":"upload""#, r#""source":"gate""#),
    )
    .unwrap();
    let target = src.dir.join("target.db").to_string_lossy().into_owned();
    let (code, _, err) = cli(&["import", "--database-url", &target], Some(&dump));
    assert_eq!(code, Some(0), "{err}");
    let dst = Server::start(Backend::SqliteAt(target));
    let latest = expect(dst.get(ADMIN, &format!("{P}/bench-a/latest")), 200);
    assert_eq!(latest["source"], "upload", "{latest}");
}

/// The server caches answers of the SQLite file it serves, so it must be the file's only writer
/// process: a second server and `import` are refused while it runs; read-only and key commands
/// still work.
#[test]
fn one_server_per_sqlite_file() {
    let s = Server::start(Backend::Sqlite);
    expect(
        s.upload(
            ADMIN,
            "proj",
            "bench-a",
            Some("v1"),
            &fixture("run-bench-a-1.json"),
        ),
        201,
    );
    let db = s.dir.join("perfgate.db");
    let db = db.to_str().unwrap();
    let dump = s.dir.join("dump.jsonl");
    std::fs::write(&dump, export(&s)).unwrap(); // export still works
    let (code, _, err) = cli(&["import", "--database-url", db], Some(&dump));
    assert_ne!(code, Some(0), "import next to a running server must fail");
    assert!(err.contains("in use by another perfgate-server"), "{err}");
    let (code, _, err) = cli(&["keys", "list", "--database-url", db], None);
    assert_eq!(code, Some(0), "key commands still work: {err}");

    let port = free_port().to_string();
    let mut second = Command::new(env!("CARGO_BIN_EXE_perfgate-server"))
        .args(["--storage-type", "sqlite", "--database-url", db])
        .args(["--bind", "127.0.0.1", "--port", &port])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(st) = second.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > std::time::Duration::from_secs(30) {
            let _ = second.kill();
            panic!("a second server on the same SQLite file kept running");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("in use by another perfgate-server"), "{err}");
    // The first server is unaffected.
    assert_eq!(
        expect(s.get(ADMIN, &format!("{P}/bench-a/latest")), 200)["version"],
        "v1"
    );
}

/// An export without run summaries (an older server's) imported into a database whose server
/// already ran: the next start summarises the imported baselines, so the gate judges them
/// against their history rather than finding none.
#[test]
fn imported_baselines_get_run_summaries() {
    let mut src = Server::start(Backend::Sqlite);
    upload_history(&src, "gx", 10);
    src.kill();
    let older: String = export(&src)
        .lines()
        .filter(|l| {
            !l.contains(r#""table":"run_stats""#) && !l.contains(r#""table":"backfill_state""#)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let dump = src.dir.join("older.jsonl");
    std::fs::write(&dump, older).unwrap();
    let target = src.dir.join("target.db").to_string_lossy().into_owned();
    // The target's server has run once (its start-up fill finished on an empty database).
    let mut first = Server::start(Backend::SqliteAt(target.clone()));
    first.kill();
    let (code, _, err) = cli(&["import", "--database-url", &target], Some(&dump));
    assert_eq!(code, Some(0), "{err}");
    let dst = Server::start(Backend::SqliteAt(target));
    let slow = leveled_receipt("gx", "slow", 180.0, 99);
    let body = json!({"runs": [{"benchmark": "gx", "receipt": slow}], "git_sha": "slowsha"});
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        // The fill runs in the background after start-up.
        let g = expect(dst.post(CONTRIB, "/api/v1/projects/proj/gates", &body), 201);
        if g["status"] == "fail" {
            assert_eq!(g["benchmarks"][0]["history_runs"], 10, "{g:#}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no history after import: {g:#}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
