//! Process-level behaviour: configuration layering and errors, bootstrap key, logging,
//! shutdown, overload and timeouts.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_perfgate-server"));
    for (k, _) in std::env::vars() {
        if k.starts_with("PERFGATE_") {
            c.env_remove(k);
        }
    }
    c
}

/// Runs the binary expecting it to refuse to start; returns stderr.
fn refused(args: &[&str], envs: &[(&str, &str)]) -> String {
    let dir = temp_dir("cfg");
    let out = bin()
        .args(args)
        .args(["--port", &free_port().to_string()])
        .envs(envs.iter().copied())
        .current_dir(&dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "expected exit 2, stderr: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn bad_configuration_stops_startup_with_one_line() {
    let secret = "pg_live_supersecretsupersecretsupersecret99";
    let e = refused(&["--api-keys", &format!("root:{secret}")], &[]);
    assert!(e.contains("unknown role"), "{e}");
    assert!(!e.contains("supersecret"), "secret leaked: {e}");
    let e = refused(&["--api-keys", "admin:pg_live_short"], &[]);
    assert!(e.contains("malformed key") && !e.contains("short"), "{e}");
    let e = refused(
        &["--api-keys", &format!("admin:{secret}:proj:(unclosed")],
        &[],
    );
    assert!(
        e.contains("invalid benchmark regex") && !e.contains("supersecret"),
        "{e}"
    );
    let e = refused(&["--api-keys", &format!("admin:{secret}:bad/proj")], &[]);
    assert!(e.contains("project"), "{e}");
    let e = refused(&["--storage-type", "postgres"], &[]);
    assert!(e.contains("database-url"), "{e}");
    let e = refused(&["--storage-type", "memory", "--read-pool-size", "0"], &[]);
    assert!(e.contains("read_pool_size"), "{e}");
    let e = refused(
        &["--storage-type", "memory"],
        &[("PERFGATE_TIMEOUT", "soon")],
    );
    assert!(
        e.to_lowercase().contains("timeout") && e.contains("PERFGATE_"),
        "{e}"
    );
    // Unknown keys in the TOML file are refused.
    let dir = temp_dir("toml");
    let f = dir.join("bad.toml");
    std::fs::write(&f, "storage_type = \"memory\"\nstorage_typo = 1\n").unwrap();
    let e = refused(&["--config", f.to_str().unwrap()], &[]);
    assert!(e.contains("storage_typo"), "{e}");
    let e = refused(&["--config", "/nonexistent/perfgate.toml"], &[]);
    assert!(e.contains("does not exist"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn configuration_layers_toml_env_flags() {
    let dir = temp_dir("layers");
    let port = free_port();
    let f = dir.join("perfgate.toml");
    // The file sets the key and a wrong port; the environment fixes the port; a flag sets the
    // storage type.
    std::fs::write(
        &f,
        format!("bind = \"127.0.0.1:1\"\nstorage_type = \"sqlite\"\napi_keys = [\"admin:{ADMIN}\"]\nlog_format = \"pretty\"\n"),
    )
    .unwrap();
    let mut child = bin()
        .args(["--config", f.to_str().unwrap(), "--storage-type", "memory"])
        .env("PERFGATE_PORT", port.to_string())
        .env("PERFGATE_UNRELATED_SETTING", "ignored")
        .current_dir(&dir)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = Client::new();
    let mut ok = None;
    for _ in 0..200 {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/api/v1/info"))
            .send()
        {
            ok = Some(r.json::<Value>().unwrap());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let info = ok.expect("server did not start on the env port");
    assert_eq!(info["storage"], "memory", "flag wins over file");
    let r = http
        .get(format!(
            "http://127.0.0.1:{port}/api/v1/projects/p/baselines"
        ))
        .bearer_auth(ADMIN)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "key from the TOML file");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !dir.join("perfgate.db").exists(),
        "sqlite from the file was overridden"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn api_keys_from_environment() {
    let mut s = Server::start_with(Backend::Memory, &[]);
    s.kill();
    let port = free_port();
    let mut child = bin()
        .args(["--storage-type", "memory", "--port", &port.to_string()])
        .env(
            "PERFGATE_API_KEYS",
            format!("admin:{ADMIN} viewer:{VIEWER}"),
        )
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = Client::new();
    let mut status = 0;
    for _ in 0..200 {
        if let Ok(r) = http
            .get(format!(
                "http://127.0.0.1:{port}/api/v1/projects/p/baselines"
            ))
            .bearer_auth(VIEWER)
            .send()
        {
            status = r.status().as_u16();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200);
}

fn bootstrap_key(log: &str) -> Option<String> {
    log.split_whitespace()
        .find(|w| w.starts_with("pg_live_") && w.len() == 40)
        .map(str::to_owned)
}

#[test]
fn bootstrap_admin_key_is_printed_once_and_persisted() {
    let mut s = Server::start_with(Backend::Sqlite, &[]);
    let log = s.log();
    let key = bootstrap_key(&log).unwrap_or_else(|| panic!("no bootstrap key in:\n{log}"));
    assert_eq!(log.matches(&key).count(), 1, "printed exactly once");
    // The first screen is a guide: the dashboard's real address next to the key.
    let dashboard = format!("Dashboard:  http://127.0.0.1:{}/", s.port);
    let at = log
        .find(&dashboard)
        .unwrap_or_else(|| panic!("no {dashboard:?} in:\n{log}"));
    assert!(at < log.find(&key).unwrap(), "{log}");
    expect(
        s.upload(
            &key,
            "proj",
            "bench-a",
            Some("v1"),
            &fixture("run-bench-a-1.json"),
        ),
        201,
    );
    expect_error(
        s.get(ADMIN, "/api/v1/projects/proj/baselines"),
        401,
        "unauthorized",
    );
    s.restart();
    let log = s.log();
    assert_eq!(
        log.matches("pg_live_").count(),
        1,
        "no second key on restart:\n{log}"
    );
    expect(
        s.get(&key, "/api/v1/projects/proj/baselines/bench-a/latest"),
        200,
    );
    // Configured keys mean no bootstrap key.
    let s2 = Server::start(Backend::Memory);
    assert!(bootstrap_key(&s2.log()).is_none());
}

#[test]
fn json_logs_carry_request_ids_and_no_secrets() {
    let s = Server::start_with(
        Backend::Sqlite,
        &[
            "--api-keys".into(),
            format!("admin:{ADMIN}"),
            "--log-level".into(),
            "trace".into(),
        ],
    );
    let r = s
        .http
        .post(s.url("/api/v1/projects/proj/baselines"))
        .bearer_auth(ADMIN)
        .header("x-request-id", "trace-me-42")
        .json(&upload_body(
            "bench-a",
            Some("v1"),
            &fixture("run-bench-a-1.json"),
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    expect_error(
        s.get(
            "pg_live_wrongwrongwrongwrongwrongwrong12",
            "/api/v1/projects/p/baselines",
        ),
        401,
        "unauthorized",
    );
    std::thread::sleep(Duration::from_millis(200));
    let log = s.log();
    let mut access = None;
    // No --log-format, stderr a file (not a terminal): JSON lines only.
    assert!(log.lines().count() > 2, "{log}");
    for line in log.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(
            v["ts"].is_string() && v["level"].is_string() && v["msg"].is_string(),
            "{line}"
        );
        if v["target"] == "access" && v["request_id"] == "trace-me-42" {
            access = Some(v);
        }
    }
    let access = access.unwrap_or_else(|| panic!("no access line:\n{log}"));
    assert_eq!(access["method"], "POST");
    assert_eq!(access["route"], "/api/v1/projects/{project}/baselines");
    assert_eq!(access["status"], 201);
    assert!(access["duration_ms"].is_number());
    assert!(!log.contains(ADMIN), "API key in the log");
    assert!(
        !log.contains("pg_live_wrongwrong"),
        "presented key in the log"
    );
}

/// SIGTERM with an upload in flight (its head and half its body received): the server stops
/// accepting connections at once, still answers that upload 201, logs its shutdown and exits 0;
/// what it acknowledged, before the signal and while draining, is there after a restart.
#[test]
fn sigterm_drains_in_flight_requests_then_exits() {
    use std::io::{ErrorKind, Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;

    let mut s = Server::start(Backend::Sqlite);
    let receipt = fixture("run-bench-a-1.json");
    expect(
        s.upload(ADMIN, "proj", "bench-a", Some("v1"), &receipt),
        201,
    );
    let body = serde_json::to_vec(&upload_body("bench-a", Some("v2"), &receipt)).unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    let mut inflight = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    inflight
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        inflight,
        "POST /api/v1/projects/proj/baselines HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Authorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    inflight.write_all(first).unwrap();
    inflight.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));

    s.send_sigterm();
    // New connections are refused while the upload is still being received.
    let t0 = Instant::now();
    loop {
        match TcpStream::connect(("127.0.0.1", s.port)) {
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
                break;
            }
            Ok(_) => {
                assert!(
                    t0.elapsed() < Duration::from_secs(5),
                    "still accepting connections 5 s after SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    // The upload in flight completes and is acknowledged.
    inflight.write_all(rest).unwrap();
    let mut response = String::new();
    inflight.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 201"),
        "in-flight upload: {response}\n{}",
        s.log()
    );

    assert_eq!(
        s.wait_exit(Duration::from_secs(30)),
        Some(0),
        "clean exit:\n{}",
        s.log()
    );
    let log = s.log();
    assert!(
        log.contains("shut down: in-flight requests finished, closing storage"),
        "{log}"
    );
    s.restart();
    for v in ["v1", "v2"] {
        expect(
            s.get(
                ADMIN,
                &format!("/api/v1/projects/proj/baselines/bench-a/versions/{v}"),
            ),
            200,
        );
    }
}

#[test]
fn overload_answers_503_with_retry_after() {
    let s = Arc::new(Server::start_with(
        Backend::Sqlite,
        &[
            "--api-keys".into(),
            format!("admin:{ADMIN}"),
            "--max-in-flight".into(),
            "1".into(),
        ],
    ));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut seen = (0, 0);
                for _ in 0..25 {
                    let r = s.get(ADMIN, "/api/v1/projects/proj/baselines");
                    match r.status().as_u16() {
                        200 => seen.0 += 1,
                        503 => {
                            assert_eq!(r.headers()["retry-after"], "1");
                            let v = expect_error(r, 503, "unavailable");
                            assert!(v["message"].as_str().unwrap().contains("overloaded"));
                            seen.1 += 1;
                        }
                        other => panic!("unexpected status {other}"),
                    }
                }
                seen
            })
        })
        .collect();
    let (ok, refused) = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    assert!(ok > 0, "some requests are served");
    assert!(
        refused > 0,
        "400 concurrent requests through a bound of 1 must see 503s"
    );
}

#[test]
fn storage_timeout_answers_503_and_loses_nothing() {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    let s = Server::start_with(
        Backend::Sqlite,
        &[
            "--api-keys".into(),
            format!("admin:{ADMIN}"),
            "--timeout".into(),
            "1".into(),
        ],
    );
    let receipt = fixture("run-bench-a-1.json");
    expect(
        s.upload(ADMIN, "proj", "bench-a", Some("v1"), &receipt),
        201,
    );
    // Another process holds the SQLite write lock.
    let mut blocker =
        diesel::SqliteConnection::establish(s.dir.join("perfgate.db").to_str().unwrap()).unwrap();
    blocker.batch_execute("BEGIN IMMEDIATE").unwrap();
    let r = s.upload(ADMIN, "proj", "bench-a", Some("v2"), &receipt);
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().unwrap();
    assert!(v["code"] == "timeout" || v["code"] == "unavailable", "{v}");
    // Reads still work while the writer waits (WAL).
    expect(
        s.get(ADMIN, "/api/v1/projects/proj/baselines/bench-a/latest"),
        200,
    );
    blocker.batch_execute("ROLLBACK").unwrap();
    // The client retries, as the CLI does after a 503.
    let mut status = 0;
    for _ in 0..20 {
        status = s
            .upload(ADMIN, "proj", "bench-a", Some("v2"), &receipt)
            .status()
            .as_u16();
        if status == 201 || status == 409 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(status == 201 || status == 409, "retry ended with {status}");
    expect(
        s.get(ADMIN, "/api/v1/projects/proj/baselines/bench-a/versions/v2"),
        200,
    );
}

/// The database disappears under a running server (dropped, its connections killed): /health
/// says `degraded`, and data endpoints, reads and writes alike, answer what a client can act on:
/// 503 `unavailable` with `Retry-After`, never 500, and no SQL in the message.
#[test]
fn storage_gone_answers_503_unavailable() {
    let Some(Backend::Postgres(url)) = Backend::postgres() else {
        return;
    };
    let s = Server::start(Backend::Postgres(url.clone()));
    expect(s.http.get(s.url("/health")).send().unwrap(), 200);
    let name = url.rsplit('/').next().unwrap();
    let base = common::pg::base_url().unwrap();
    use diesel::{Connection, RunQueryDsl};
    let mut c = diesel::PgConnection::establish(&base).unwrap();
    diesel::sql_query(format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut c)
        .unwrap();
    let r = s.http.get(s.url("/health")).send().unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    let v: Value = r.json().unwrap();
    assert_eq!(v["status"], "degraded");
    assert_eq!(v["storage"]["status"], "unhealthy");
    let receipt = fixture("run-bench-a-1.json");
    let answers = [
        s.get(ADMIN, "/api/v1/projects/proj/baselines"),
        s.get(ADMIN, "/api/v1/projects/proj/baselines/bench-a/latest"),
        s.upload(ADMIN, "proj", "bench-a", Some("v1"), &receipt),
        s.post(
            CONTRIB,
            "/api/v1/projects/proj/verdicts",
            &json!({"benchmark": "bench-a", "run_id": "r", "status": "pass",
                    "counts": {"pass": 1, "warn": 0, "fail": 0, "skip": 0}, "reasons": []}),
        ),
    ];
    for r in answers {
        assert_eq!(r.headers()["retry-after"], "1");
        let v = expect_error(r, 503, "unavailable");
        let msg = v["message"].as_str().unwrap().to_lowercase();
        assert!(
            !msg.contains("select") && !msg.contains("database \""),
            "{v}"
        );
    }
}

/// On a SQLite file the checkpointer reports the WAL's length once something was committed.
#[test]
fn sqlite_reports_its_wal_length() {
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
    let t0 = std::time::Instant::now();
    while metric(&s, "perfgate_sqlite_wal_frames") == 0.0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the WAL's length was never reported:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn metrics_use_route_templates_and_bounded_labels() {
    let s = Server::start(Backend::Memory);
    let receipt = fixture("run-bench-a-1.json");
    expect(
        s.upload(ADMIN, "proj", "bench-a", Some("v1"), &receipt),
        201,
    );
    expect_error(
        s.upload(ADMIN, "proj", "bench-a", Some("v1"), &receipt),
        409,
        "conflict",
    );
    expect(
        s.get(VIEWER, "/api/v1/projects/proj/baselines/bench-a/latest"),
        200,
    );
    expect(
        s.post(
            CONTRIB,
            "/api/v1/projects/proj/verdicts",
            &json!({"benchmark": "bench-a", "run_id": "r", "status": "warn",
                    "counts": {"pass": 0, "warn": 1, "fail": 0, "skip": 0}, "reasons": []}),
        ),
        201,
    );
    expect(s.get(VIEWER, "/api/v1/projects/proj/verdicts"), 200);
    expect_error(
        s.http
            .get(s.url("/api/v1/projects/proj/baselines"))
            .send()
            .unwrap(),
        401,
        "unauthorized",
    );
    expect_error(
        s.get(
            "pg_live_nobodynobodynobodynobodynobody12",
            "/api/v1/projects/proj/baselines",
        ),
        401,
        "unauthorized",
    );
    // Many distinct URLs, including unknown ones, must not create label values.
    for i in 0..40 {
        let _ = s.get(
            VIEWER,
            &format!("/api/v1/projects/p{i}/baselines/b{i}/latest"),
        );
        let _ = s.get(VIEWER, &format!("/random/{i}/path?x={i}"));
    }
    let r = s.http.get(s.url("/metrics")).send().unwrap();
    assert_eq!(r.status(), 200, "metrics are open");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().unwrap();
    let has = |needle: &str| text.lines().any(|l| l.starts_with(needle));
    assert!(
        has(
            r#"perfgate_http_requests_total{method="GET",route="/api/v1/projects/{project}/baselines/{benchmark:.+}/latest",status="200"}"#
        ),
        "{text}"
    );
    assert!(
        has(r#"perfgate_http_requests_total{method="GET",route="<unmatched>",status="404"} 40"#),
        "{text}"
    );
    assert!(has(
        r#"perfgate_http_request_duration_seconds_bucket{method="POST",route="/api/v1/projects/{project}/baselines",status="201""#
    ));
    assert!(has("perfgate_http_requests_in_flight"));
    assert!(has(
        r#"perfgate_actor_mailbox_depth{actor="baseline_store"}"#
    ));
    assert!(has(
        r#"perfgate_actor_message_duration_seconds_count{actor="baseline_store"}"#
    ));
    // The verdict was committed by the baseline store's writer (one queue for uploads and
    // verdicts); the list was read by the verdict log.
    assert!(has(
        r#"perfgate_actor_message_duration_seconds_count{actor="verdict_log"}"#
    ));
    assert!(
        has(r#"perfgate_group_commit_writes_count{kind="upload"} 2"#)
            && has(r#"perfgate_group_commit_writes_count{kind="verdict"} 1"#),
        "{text}"
    );
    // Every store owns its pools: the baseline store's readers have as many connections as
    // reader threads (the harness runs 2), and the writes waited on a pool of their own.
    let line = |name: &str, labels: &[&str]| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
    };
    assert_eq!(
        line(
            "perfgate_db_pool_connections",
            &[
                r#"store="baseline_store""#,
                r#"pool="read""#,
                r#"state="max""#
            ]
        )
        .and_then(|l| l.rsplit(' ').next()),
        Some("2"),
        "{text}"
    );
    for store in ["verdict_log", "fleet_analyzer", "key_store", "dashboard"] {
        assert!(
            line(
                "perfgate_db_pool_connections",
                &[&format!("store=\"{store}\""), r#"pool="read""#]
            )
            .is_some(),
            "no read pool of {store}: {text}"
        );
    }
    assert!(
        line("perfgate_db_pool_wait_seconds_count", &[r#"pool="write""#]).is_some(),
        "{text}"
    );
    assert!(has(
        r#"perfgate_baseline_uploads_total{outcome="created"} 1"#
    ));
    assert!(has(
        r#"perfgate_baseline_uploads_total{outcome="conflict"} 1"#
    ));
    assert!(has(r#"perfgate_verdicts_total{status="warn"} 1"#));
    assert!(has(r#"perfgate_auth_failures_total{reason="missing"} 1"#));
    assert!(has(
        r#"perfgate_auth_failures_total{reason="unknown_key"} 1"#
    ));
    assert!(
        !text.contains("random/"),
        "raw paths must never become labels"
    );
    assert!(
        !text.contains("p17"),
        "raw path segments must never become labels"
    );
    let series = text
        .lines()
        .filter(|l| l.starts_with("perfgate_http_requests_total{"))
        .count();
    assert!(series < 12, "bounded label sets: {series}");
}

#[test]
fn openapi_document_matches_the_router_both_ways() {
    use std::collections::BTreeSet;
    let s = Server::start(Backend::Memory);
    let r = s.http.get(s.url("/api/v1/openapi.json")).send().unwrap();
    assert_eq!(r.status(), 200, "the document is open");
    let doc: Value = r.json().unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = BTreeSet::new();
    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if ["get", "post", "put", "patch", "delete", "head", "options"]
                .contains(&method.as_str())
            {
                documented.insert((method.to_uppercase(), path.clone()));
                let id = op["operationId"].as_str().unwrap().to_owned();
                assert!(
                    operation_ids.insert(id.clone()),
                    "duplicate operationId {id}"
                );
            }
        }
    }
    let routed: BTreeSet<(String, String)> =
        perfgate_server::routes::routes().into_iter().collect();
    assert_eq!(
        documented.difference(&routed).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented but not routed"
    );
    assert_eq!(
        routed.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "routed but not documented"
    );
    // Every documented route answers on the real server (401/200/4xx, never "no route" or 405).
    for (method, path) in &documented {
        let url = path
            .replace("{project}", "proj")
            .replace("{benchmark}", "bench-a")
            .replace("{version}", "v1")
            .replace("{id}", "00000000000000000000000000000000")
            .replace("{dep}", "serde");
        let req = match method.as_str() {
            "GET" => s.http.get(s.url(&url)),
            "POST" => s.http.post(s.url(&url)),
            "DELETE" => s.http.delete(s.url(&url)),
            "PUT" => s.http.put(s.url(&url)),
            m => panic!("{m}"),
        };
        let r = req.send().unwrap();
        let status = r.status().as_u16();
        let body = r.text().unwrap();
        assert_ne!(status, 405, "{method} {path}");
        assert!(
            !body.contains("No route for"),
            "{method} {path} is not routed: {body}"
        );
    }
    // The wire types are described.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "BaselineRecord",
        "UploadBody",
        "UploadResponse",
        "ErrorBody",
        "FleetAlert",
        "VerdictRecord",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

/// Regression: the document described `tags`, `reasons` and `counts` as plain objects while the
/// server answers arrays (schemathesis: "Response violates schema").
#[test]
fn documented_response_shapes_match_real_responses() {
    let s = Server::start(Backend::Memory);
    let doc: Value = expect(
        s.http.get(s.url("/api/v1/openapi.json")).send().unwrap(),
        200,
    );
    let mut body = upload_body("bench-a", Some("v1"), &fixture("run-bench-a-1.json"));
    body["tags"] = json!(["release"]);
    body["metadata"] = json!({"k": "v"});
    let up = expect(s.post(ADMIN, "/api/v1/projects/proj/baselines", &body), 201);
    check_shape(&doc, "UploadResponse", &up, "upload");
    let latest = expect(
        s.get(ADMIN, "/api/v1/projects/proj/baselines/bench-a/latest"),
        200,
    );
    check_shape(&doc, "BaselineRecord", &latest, "latest");
    let list = expect(s.get(ADMIN, "/api/v1/projects/proj/baselines"), 200);
    check_shape(&doc, "BaselineSummary", &list["baselines"][0], "list");
    check_shape(&doc, "Pagination", &list["pagination"], "list");
    let verdict = expect(
        s.post(
            ADMIN,
            "/api/v1/projects/proj/verdicts",
            &json!({"benchmark": "bench-a", "run_id": "r1", "status": "warn",
                "counts": {"pass": 1, "warn": 1, "fail": 0, "skip": 0}, "reasons": ["slower"]}),
        ),
        201,
    );
    check_shape(&doc, "VerdictRecord", &verdict, "verdict");
    // The upload body's receipt is described in full: a perfgate.run.v1 receipt.
    assert_eq!(
        doc["components"]["schemas"]["UploadBody"]["properties"]["receipt"]["$ref"],
        "#/components/schemas/RunReceipt"
    );
    check_shape(
        &doc,
        "RunReceipt",
        &fixture("run-bench-a-1.json"),
        "fixture",
    );
}

#[test]
fn per_credential_rate_limit_answers_429_with_retry_after() {
    let s = Server::start_with(
        Backend::Memory,
        &[
            "--api-keys".into(),
            format!("admin:{ADMIN}"),
            "--api-keys".into(),
            format!("viewer:{VIEWER}"),
            "--rate-limit".into(),
            "2".into(),
            "--rate-limit-burst".into(),
            "5".into(),
        ],
    );
    let mut codes = Vec::new();
    let mut limited = None;
    for _ in 0..12 {
        let r = s.get(ADMIN, "/api/v1/projects/proj/baselines");
        codes.push(r.status().as_u16());
        if r.status() == 429 && limited.is_none() {
            let retry: u32 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(retry >= 1);
            limited = Some(expect_error(r, 429, "rate_limited"));
        }
    }
    assert!(
        codes[..5].iter().all(|c| *c == 200),
        "the burst passes: {codes:?}"
    );
    assert!(limited.is_some(), "beyond the burst: 429: {codes:?}");
    // Another credential has its own bucket; open endpoints are not limited.
    expect(s.get(VIEWER, "/api/v1/projects/proj/baselines"), 200);
    expect(s.http.get(s.url("/health")).send().unwrap(), 200);
    let m = s
        .http
        .get(s.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        m.lines()
            .any(|l| l.starts_with(r#"perfgate_rate_limited_total{kind="credential"}"#)),
        "{m}"
    );
}

#[test]
fn size_and_depth_limits_answer_json_errors() {
    let s = Server::start_with(
        Backend::Memory,
        &[
            "--api-keys".into(),
            format!("admin:{ADMIN}"),
            "--max-url-bytes".into(),
            "512".into(),
            "--max-header-bytes".into(),
            "2048".into(),
            "--max-json-depth".into(),
            "16".into(),
        ],
    );
    let long = format!(
        "/api/v1/projects/proj/baselines?benchmark={}",
        "a".repeat(600)
    );
    let e = expect_error(s.get(ADMIN, &long), 414, "invalid_input");
    assert!(e["message"].as_str().unwrap().contains("URL"));
    // Every operation documents the rejections that come before its handler.
    let doc: Value = expect(
        s.http.get(s.url("/api/v1/openapi.json")).send().unwrap(),
        200,
    );
    let mut ops = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops += 1;
            let responses = op["responses"].as_object().unwrap();
            let mut expected = vec!["400", "414", "431"];
            if responses.contains_key("401") {
                expected.push("429");
            }
            if op.get("requestBody").is_some() {
                expected.extend(["408", "413"]);
            }
            for status in expected {
                assert_eq!(
                    responses[status]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
        }
    }
    assert!(ops > 40, "{ops}");
    assert!(
        doc["paths"]["/api/v1/projects/{project}/decisions"]["get"]["responses"]["429"]["headers"]
            ["Retry-After"]["required"]
            .as_bool()
            .unwrap()
    );
    let r = s
        .http
        .get(s.url("/api/v1/projects/proj/baselines"))
        .bearer_auth(ADMIN)
        .header("x-padding", "p".repeat(3000))
        .send()
        .unwrap();
    expect_error(r, 431, "invalid_input");
    // A request head the HTTP layer cannot parse: its empty 400, and a log line at INFO, not
    // ERROR (the client's mistake, not the server's).
    {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let _ = c.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        let mut line = None;
        for _ in 0..50 {
            line = s
                .log()
                .lines()
                .find(|l| l.contains("request parse error"))
                .map(str::to_owned);
            if line.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let line = line.expect("the parse error is logged");
        assert!(line.contains(r#""level":"INFO""#), "{line}");
    }
    // Nesting deeper than the cap is refused before parsing; within the cap it is fine.
    let deep = format!(
        "{{\"benchmark\":\"bench-a\",\"receipt\":{}1{}}}",
        "[".repeat(20),
        "]".repeat(20)
    );
    let r = s
        .http
        .post(s.url("/api/v1/projects/proj/baselines"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .unwrap();
    let e = expect_error(r, 400, "invalid_input");
    assert!(e["message"].as_str().unwrap().contains("nesting"), "{e}");
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
    // Nothing was stored by the refused requests.
    let l = expect(s.get(ADMIN, "/api/v1/projects/proj/baselines"), 200);
    assert_eq!(l["pagination"]["total"], 1);
}

#[test]
fn slow_clients_are_cut_off() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;
    let s = Server::start_with(
        Backend::Memory,
        &[
            "--api-keys".into(),
            format!("admin:{ADMIN}"),
            "--client-timeout".into(),
            "1".into(),
        ],
    );
    let addr = format!("127.0.0.1:{}", s.port);
    let read_all = |mut c: TcpStream| {
        c.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
        let mut buf = Vec::new();
        let _ = c.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    };
    // A request head that never completes.
    let t0 = Instant::now();
    let mut head = TcpStream::connect(&addr).unwrap();
    head.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let answer = read_all(head);
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "head cut off: {:?}",
        t0.elapsed()
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    // A body that never completes: 408 with the JSON error.
    let t0 = Instant::now();
    let mut body = TcpStream::connect(&addr).unwrap();
    write!(
        body,
        "POST /api/v1/projects/proj/baselines HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"benchmark\":"
    )
    .unwrap();
    // Other clients are served meanwhile.
    expect(s.http.get(s.url("/health")).send().unwrap(), 200);
    let answer = read_all(body);
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "body cut off: {:?}",
        t0.elapsed()
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"timeout""#), "{answer}");
}

#[test]
fn no_secret_reaches_the_logs_at_trace_level() {
    const SECRET: &str = "jwt-secret-jwt-secret-jwt-secret-0123";
    let (backend, password) = match Backend::postgres() {
        Some(Backend::Postgres(url)) => (
            Backend::Postgres(url.replacen("postgres@", "postgres:hunter2pass@", 1)),
            Some("hunter2pass"),
        ),
        _ => (Backend::Sqlite, None),
    };
    let s = Server::start_with(
        backend,
        &[
            "--api-keys".into(),
            format!("admin:{ADMIN}"),
            "--jwt-secret".into(),
            SECRET.into(),
            "--log-level".into(),
            "trace".into(),
        ],
    );
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
    let token = perfgate_server::ops::token(&perfgate_server::ops::TokenRequest {
        secret: SECRET,
        sub: "ci",
        project: "proj",
        scopes: "read",
        issuer: None,
        audience: None,
        ttl: Duration::from_secs(600),
    })
    .unwrap();
    let r = s
        .http
        .get(s.url("/api/v1/projects/proj/baselines"))
        .header("authorization", format!("Token {token}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let created = expect(
        s.post(
            ADMIN,
            "/api/v1/keys",
            &json!({"description": "d", "role": "viewer", "project": "*"}),
        ),
        201,
    );
    let new_key = created["key"].as_str().unwrap().to_owned();
    expect(s.get(&new_key, "/api/v1/projects/proj/baselines"), 200);
    expect_error(
        s.get(
            "pg_live_wrongwrongwrongwrongwrongwrong99",
            "/api/v1/projects/proj/baselines",
        ),
        401,
        "unauthorized",
    );
    let r = s
        .http
        .get(s.url("/api/v1/projects/proj/baselines"))
        .header("authorization", "Token not.a.jwt")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    std::thread::sleep(Duration::from_millis(200));
    let log = s.log();
    assert!(log.lines().count() > 10, "trace logging is on");
    for (what, secret) in [
        ("API key", ADMIN),
        ("JWT secret", SECRET),
        ("JWT", token.as_str()),
        ("created key", new_key.as_str()),
        ("presented key", "pg_live_wrongwrongwrongwrongwrongwrong99"),
    ] {
        assert!(!log.contains(secret), "{what} found in the log");
    }
    if let Some(p) = password {
        assert!(!log.contains(p), "database password found in the log");
    }
}

#[test]
fn connection_cap_holds_extra_clients_until_a_slot_frees() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let mut s = Server::start_with(
        Backend::Memory,
        &[
            "--api-keys".into(),
            format!("admin:{ADMIN}"),
            "--max-connections".into(),
            "2".into(),
        ],
    );
    // Drop the harness client's pooled connection so that it holds no slot.
    s.http = Client::builder().pool_max_idle_per_host(0).build().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // Two workers with two slots each: four idle keep-alive connections fill them.
    let addr = format!("127.0.0.1:{}", s.port);
    let open = |wait: Duration| {
        let mut c = TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(wait)).unwrap();
        c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 512];
        let n = c.read(&mut buf).unwrap_or(0);
        (
            c,
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        )
    };
    let mut held = Vec::new();
    for i in 0..4 {
        let (c, ok) = open(Duration::from_secs(10));
        assert!(ok, "connection {i} is within the cap and is served");
        held.push(c);
    }
    // A fifth client waits in the listen backlog: no answer while every slot is taken.
    let (mut extra, served) = open(Duration::from_millis(1500));
    assert!(!served, "beyond the cap a new connection is not served");
    // Freeing slots lets it through.
    held.clear();
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 512];
    let n = extra.read(&mut buf).unwrap_or(0);
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "served once a slot frees"
    );
}
