//! Running for real: two replicas on one PostgreSQL, graceful shutdown during a stream of
//! uploads, and a PostgreSQL outage with recovery.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use common::*;

const P: &str = "/api/v1/projects/proj/baselines";

fn receipt() -> Value {
    fixture("run-bench-a-1.json")
}

#[test]
fn two_replicas_behave_like_one_server() {
    // Both start at the same moment: migrations must run once, under the advisory lock.
    let Some((url, servers)) = two_replicas() else {
        return;
    };
    {
        use diesel::{Connection, RunQueryDsl};
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut c = diesel::PgConnection::establish(&url).unwrap();
        let applied: N = diesel::sql_query("SELECT COUNT(*) AS n FROM __diesel_schema_migrations")
            .get_result(&mut c)
            .unwrap();
        let dirs = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
            .unwrap()
            .count() as i64;
        assert_eq!(applied.n, dirs, "each migration applied exactly once");
    }
    for s in &servers {
        assert!(!s.log().contains("migration failed"), "{}", s.log());
    }

    // Concurrent uploads through both replicas: nothing lost, nothing duplicated.
    let n = 24;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let s = servers[i % 2].clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let v = (i % 3 == 0).then(|| format!("v{i}"));
                let r = s.upload(ADMIN, "proj", "bench-a", v.as_deref(), &receipt());
                expect(r, 201)["version"].as_str().unwrap().to_owned()
            })
        })
        .collect();
    let versions: HashSet<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(versions.len(), n);
    for s in &servers {
        let l = expect(s.get(VIEWER, &format!("{P}?limit=100")), 200);
        assert_eq!(l["pagination"]["total"], n);
        let listed = listed_versions(&l);
        assert_eq!(listed, versions);
    }
    // The same explicit version through both replicas at once: one 201, one 409.
    let barrier = Arc::new(Barrier::new(2));
    let codes: Vec<u16> = (0..2)
        .map(|i| {
            let s = servers[i].clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                s.upload(ADMIN, "proj", "bench-a", Some("same"), &receipt())
                    .status()
                    .as_u16()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let mut sorted = codes.clone();
    sorted.sort();
    assert_eq!(sorted, [201, 409]);

    // Promotes to one target through both replicas: exactly one winner.
    let promoters = 8;
    let barrier = Arc::new(Barrier::new(promoters));
    let mut codes: Vec<u16> = (0..promoters)
        .map(|i| {
            let s = servers[i % 2].clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                s.post(
                    PROMOTER,
                    &format!("{P}/bench-a/promote"),
                    &json!({"from_version": "v0", "to_version": "release", "tags": []}),
                )
                .status()
                .as_u16()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    codes.sort();
    assert_eq!(codes, [201, 409, 409, 409, 409, 409, 409, 409]);
    for s in &servers {
        assert_eq!(
            expect(s.get(VIEWER, &format!("{P}/bench-a/latest")), 200)["version"],
            "release"
        );
    }

    // A key revoked on one replica is refused by the other at once.
    let k = expect(
        servers[0].post(
            ADMIN,
            "/api/v1/keys",
            &json!({"description": "r", "role": "viewer", "project": "*"}),
        ),
        201,
    );
    let key = k["key"].as_str().unwrap();
    expect(servers[1].get(key, P), 200);
    expect(
        servers[1].delete(
            ADMIN,
            &format!("/api/v1/keys/{}", k["id"].as_str().unwrap()),
        ),
        200,
    );
    expect_error(servers[0].get(key, P), 401, "unauthorized");

    // Fleet aggregates stay exact when two replicas record the same upgrade at once.
    let barrier = Arc::new(Barrier::new(10));
    let handles: Vec<_> = (0..10)
        .map(|i| {
            let s = servers[i % 2].clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let body = json!({
                    "project": format!("p{i}"), "benchmark": "bench-a", "metric": "wall_ms",
                    "delta_pct": 10.0 + i as f64,
                    "dependency_changes": [
                        {"name": "serde", "old_version": "1", "new_version": "2"},
                        {"name": "tokio", "old_version": "1", "new_version": "2"},
                    ],
                });
                expect(s.post(ADMIN, "/api/v1/fleet/dependency-event", &body), 201);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let a = expect(servers[0].get(ADMIN, "/api/v1/fleet/alerts"), 200);
    let alerts = a["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2);
    for alert in alerts {
        assert_eq!(
            alert["affected_projects"].as_array().unwrap().len(),
            10,
            "{alert}"
        );
        assert!((alert["avg_delta_pct"].as_f64().unwrap() - 14.5).abs() < 1e-9);
    }
}

/// Group commits on two replicas lock benchmark rows; batches that share benchmarks must take
/// them in one order, or PostgreSQL aborts one with "deadlock detected" (a 503 after a second).
/// Projects share benchmark names (`bench-0` of `dl0` and of `dl1` are two rows) and a writer
/// shard can hold several projects.
#[test]
fn replicas_committing_the_same_benchmarks_do_not_deadlock() {
    let Some((_, servers)) = two_replicas() else {
        return;
    };
    let (threads, rounds, benchmarks, projects) = (16, 12, 4, 3);
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let s = servers[i % 2].clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                for k in 0..rounds {
                    // Half the clients walk the benchmarks upwards, half downwards.
                    let b = if i % 4 < 2 {
                        k % benchmarks
                    } else {
                        benchmarks - 1 - k % benchmarks
                    };
                    let r = s.upload(
                        ADMIN,
                        &format!("dl{}", (i + k) % projects),
                        &format!("bench-{b}"),
                        Some(&format!("t{i}-{k}")),
                        &receipt(),
                    );
                    expect(r, 201);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let stored: u64 = (0..projects)
        .map(|p| {
            let l = expect(
                servers[0].get(VIEWER, &format!("/api/v1/projects/dl{p}/baselines?limit=1")),
                200,
            );
            l["pagination"]["total"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(stored, (threads * rounds) as u64);
    for s in &servers {
        assert!(!s.log().contains("deadlock"), "{}", s.log());
    }
}

/// SIGTERM while uploads stream in: every acknowledged upload is stored, and the process exits
/// within the grace period with status 0.
fn graceful_shutdown_loses_no_acknowledged_upload(b: Backend) {
    let mut s = Server::start(b);
    let base = s.base.clone();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let (acked, stop, base) = (acked.clone(), stop.clone(), base.clone());
            std::thread::spawn(move || {
                let http = Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) && i < 2000 {
                    let v = format!("t{t}-{i}");
                    i += 1;
                    let r = http
                        .post(format!("{base}{P}"))
                        .bearer_auth(ADMIN)
                        .json(&upload_body("bench-a", Some(&v), &receipt()))
                        .send();
                    match r {
                        Ok(r) if r.status() == 201 => acked.lock().unwrap().push(v),
                        Ok(r) if r.status().is_server_error() => {
                            panic!("5xx during shutdown: {}", r.status())
                        }
                        Ok(_) => {}
                        Err(_) => break, // connection refused or closed: the server is going
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    let t0 = Instant::now();
    let code = s.terminate();
    let took = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(code, Some(0), "clean exit:\n{}", s.log());
    assert!(
        took < Duration::from_secs(30),
        "exit within the grace period: {took:?}"
    );
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty(), "uploads were flowing");
    // New connections are refused once the server is gone.
    assert!(s.http.get(format!("{base}/health")).send().is_err());
    s.restart();
    let l = expect(s.get(ADMIN, &format!("{P}?limit=1")), 200);
    assert!(l["pagination"]["total"].as_u64().unwrap() >= acked.len() as u64);
    for v in &acked {
        expect(s.get(ADMIN, &format!("{P}/bench-a/versions/{v}")), 200);
    }
}

#[test]
fn graceful_shutdown_sqlite() {
    graceful_shutdown_loses_no_acknowledged_upload(Backend::Sqlite);
}

#[test]
fn graceful_shutdown_postgres() {
    if let Some(b) = Backend::postgres() {
        graceful_shutdown_loses_no_acknowledged_upload(b);
    }
}

/// The database stops mid-run: requests get 503 (not 500, not a hang) and /health 503; when it
/// comes back the server recovers by itself and no acknowledged write is lost.
#[test]
fn postgres_outage_and_recovery() {
    let Some(cluster) = common::pg::dedicated_cluster() else {
        return;
    };
    let mut s = Server::start_with(
        Backend::Postgres(cluster.url.clone()),
        &[
            "--api-keys".into(),
            format!("admin:{ADMIN}"),
            "--timeout".into(),
            "3".into(),
        ],
    );
    expect(
        s.upload(ADMIN, "proj", "bench-a", Some("before"), &receipt()),
        201,
    );
    cluster.stop();
    for _ in 0..3 {
        let t0 = Instant::now();
        let r = s.upload(ADMIN, "proj", "bench-a", Some("during"), &receipt());
        let took = t0.elapsed();
        assert_eq!(r.status(), 503, "storage down answers 503");
        assert!(r.headers().contains_key("retry-after"));
        let v: Value = r.json().unwrap();
        assert!(v["code"] == "unavailable" || v["code"] == "timeout", "{v}");
        assert!(
            took < Duration::from_secs(3 + 5),
            "answered within the request timeout: {took:?}"
        );
        let r = s.get(ADMIN, &format!("{P}/bench-a/latest"));
        assert_eq!(r.status(), 503);
    }
    let h = s.http.get(s.url("/health")).send().unwrap();
    assert_eq!(h.status(), 503);
    assert_eq!(h.json::<Value>().unwrap()["status"], "degraded");
    cluster.start();
    // Recovery without a restart.
    let t0 = Instant::now();
    loop {
        let r = s.upload(ADMIN, "proj", "bench-a", Some("after"), &receipt());
        if r.status() == 201 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "did not recover: {}",
            r.status()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    expect(s.http.get(s.url("/health")).send().unwrap(), 200);
    expect(s.get(ADMIN, &format!("{P}/bench-a/versions/before")), 200);
    let l = expect(s.get(ADMIN, P), 200);
    let versions: Vec<&str> = l["baselines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["version"].as_str().unwrap())
        .collect();
    assert!(
        versions.contains(&"before") && versions.contains(&"after"),
        "{versions:?}"
    );
    // A 503'd write was not acknowledged; if it landed anyway it is whole, never half.
    s.kill();
}

/// Clients on both replicas take the same step on one alert at once: exactly one is applied and
/// audited, the others get 409 (each replica read `untriaged`; the second UPDATE must find the
/// row changed, not overwrite it).
#[test]
fn replicas_triaging_one_alert_at_once_apply_one_step() {
    let Some((_, servers)) = two_replicas() else {
        return;
    };
    let g = seed_failed_gate(&servers[0]);
    assert_eq!(g["status"], "fail", "{g:#}");
    let list = expect(
        servers[1].get(VIEWER, "/api/v1/projects/proj/alerts?benchmark=core-x"),
        200,
    );
    let id = list["alerts"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/projects/proj/alerts/{id}/transitions");
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (s, path, barrier) = (servers[i % 2].clone(), path.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let r = s.post(ADMIN, &path, &json!({"to": "acknowledged"}));
                let status = r.status().as_u16();
                let body: Value = r.json().unwrap();
                (status, body)
            })
        })
        .collect();
    let answers: Vec<(u16, Value)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = answers.iter().filter(|(st, _)| *st == 200).count();
    assert_eq!(ok, 1, "{answers:?}");
    for (st, body) in &answers {
        if *st != 200 {
            assert_eq!(*st, 409, "{body}");
            assert_eq!(body["code"], "conflict", "{body}");
        }
    }
    let d = expect(
        servers[0].get(VIEWER, &format!("/api/v1/projects/proj/alerts/{id}")),
        200,
    );
    assert_eq!(d["status"], "acknowledged", "{d:#}");
    let steps = d["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["action"] == "update")
        .count();
    assert_eq!(steps, 1, "{d:#}");
}
