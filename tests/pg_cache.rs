//! The cache of GET latest answers on PostgreSQL: two replicas on one database, each caching,
//! invalidated across replicas by LISTEN/NOTIFY. A read that starts after an acknowledged write
//! on one replica never sees the old answer on the other.

mod common;

use std::time::{Duration, Instant};

use common::*;

const P: &str = "/api/v1/projects/proj/baselines";

fn receipt() -> Value {
    fixture("run-bench-a-1.json")
}

fn wait_listening(s: &Server) {
    let t0 = Instant::now();
    while metric(s, "perfgate_cache_listener_connected") != 1.0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the cache listener did not connect:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const HIT: &str = "perfgate_latest_cache_requests_total{result=\"hit\"}";
const OFF: &str = "perfgate_latest_cache_requests_total{result=\"off\"}";

/// GET latest as (status, body); the body as JSON for 200.
fn latest(s: &Server, bench: &str) -> (u16, Value) {
    let r = s.get(VIEWER, &format!("{P}/{bench}/latest"));
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn version_of(s: &Server, bench: &str, v: &str) -> Value {
    expect(s.get(VIEWER, &format!("{P}/{bench}/versions/{v}")), 200)
}

#[test]
fn a_write_on_one_replica_is_seen_at_once_on_the_other() {
    let Some((_, servers)) = two_replicas() else {
        return;
    };
    let (a, b) = (&servers[0], &servers[1]);
    wait_listening(a);
    wait_listening(b);
    let bench = "bench-a";
    let mut live: Vec<String> = Vec::new();
    let hits_before = metric(b, HIT);
    for i in 0..200 {
        // B caches the current answer (a second GET is served from its cache).
        let (status, before) = latest(b, bench);
        let (again_status, again) = latest(b, bench);
        assert_eq!(
            (again_status, &again["version"]),
            (status, &before["version"]),
            "iteration {i}"
        );
        let expected_version = match i % 4 {
            // Promote the newest version to a new one, on A.
            2 if !live.is_empty() => {
                let from = live.last().unwrap().clone();
                let to = format!("rel-{i}");
                expect(
                    a.post(
                        PROMOTER,
                        &format!("{P}/{bench}/promote"),
                        &json!({"from_version": from, "to_version": to, "tags": []}),
                    ),
                    201,
                );
                live.push(to.clone());
                Some(to)
            }
            // Delete the newest version, on A: the one before becomes latest (or none).
            3 if !live.is_empty() => {
                let v = live.pop().unwrap();
                expect(a.delete(ADMIN, &format!("{P}/{bench}/versions/{v}")), 200);
                live.last().cloned()
            }
            // Upload a new version, on A.
            _ => {
                let v = format!("v{i}");
                expect(a.upload(ADMIN, "proj", bench, Some(&v), &receipt()), 201);
                live.push(v.clone());
                Some(v)
            }
        };
        // At once, on B: the new answer, status and body.
        let (status, body) = latest(b, bench);
        match &expected_version {
            Some(v) => {
                assert_eq!(status, 200, "iteration {i}: {body}");
                assert_eq!(body["version"], v.as_str(), "iteration {i}");
                assert_eq!(body, version_of(a, bench, v), "iteration {i}");
            }
            None => assert_eq!(status, 404, "iteration {i}: {body}"),
        }
    }
    assert!(
        metric(b, HIT) - hits_before >= 150.0,
        "B served from its cache: {} hits",
        metric(b, HIT) - hits_before
    );
    let (sum, n) = (
        metric(a, "perfgate_cache_ack_wait_seconds_sum"),
        metric(a, "perfgate_cache_ack_wait_seconds_count"),
    );
    assert!(n >= 150.0, "A's writes waited for B's listener: {n}");
    eprintln!(
        "ack waits on A: {n} waits, mean {:.3} ms",
        sum / n.max(1.0) * 1000.0
    );
    for s in &servers {
        assert_eq!(
            metric(s, "perfgate_cache_ack_waits_total{outcome=\"timeout\"}"),
            0.0,
            "{}",
            s.log()
        );
    }
}

/// Concurrent uploads on one replica commit together (a group commit names several benchmarks,
/// with one wait): the other replica sees every one at once.
#[test]
fn many_benchmarks_in_one_commit_reach_the_other_replica() {
    let Some((_, servers)) = two_replicas() else {
        return;
    };
    let (a, b) = (servers[0].clone(), servers[1].clone());
    wait_listening(&a);
    wait_listening(&b);
    let n = 24;
    for k in 0..n {
        expect(
            a.upload(
                ADMIN,
                "proj",
                &format!("bench-{k}"),
                Some("old"),
                &receipt(),
            ),
            201,
        );
        // Cached on B.
        latest(&b, &format!("bench-{k}"));
        assert_eq!(latest(&b, &format!("bench-{k}")).1["version"], "old");
    }
    // Concurrent uploads on A: group commits name several benchmarks each.
    let handles: Vec<_> = (0..n)
        .map(|k| {
            let a = a.clone();
            std::thread::spawn(move || {
                expect(
                    a.upload(
                        ADMIN,
                        "proj",
                        &format!("bench-{k}"),
                        Some("new"),
                        &receipt(),
                    ),
                    201,
                );
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for k in 0..n {
        assert_eq!(
            latest(&b, &format!("bench-{k}")).1["version"],
            "new",
            "bench-{k}"
        );
    }
}

/// Killing a listener's backend turns that replica's cache off until it reconnects; answers
/// stay right meanwhile, and the loss and the reconnection are logged once each.
#[test]
fn a_lost_listener_turns_the_cache_off_until_it_reconnects() {
    let Some((url, servers)) = two_replicas() else {
        return;
    };
    let (a, b) = (&servers[0], &servers[1]);
    wait_listening(a);
    wait_listening(b);
    let bench = "bench-a";
    expect(a.upload(ADMIN, "proj", bench, Some("v0"), &receipt()), 201);
    latest(b, bench);
    let hits = metric(b, HIT);
    assert_eq!(latest(b, bench).1["version"], "v0");
    assert!(metric(b, HIT) > hits, "served from the cache");

    use diesel::{Connection, RunQueryDsl};
    let mut admin = diesel::PgConnection::establish(&url).unwrap();
    let kill = |c: &mut diesel::PgConnection| {
        diesel::sql_query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'perfgate-cache-listener' AND datname = current_database()",
        )
        .execute(c)
        .unwrap();
    };
    // Kill the listeners again and again for a while: every answer is right. A reader on B
    // meanwhile sees B answer without its cache while its listener reconnects.
    let off_before = metric(b, OFF);
    let t0 = Instant::now();
    let reader = {
        let b = b.clone();
        std::thread::spawn(move || {
            while t0.elapsed() < Duration::from_millis(1500) {
                let (status, body) = latest(&b, bench);
                assert_eq!(status, 200);
                assert!(body["version"].as_str().is_some_and(|v| v.starts_with('v')));
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let mut i = 1;
    while t0.elapsed() < Duration::from_millis(1500) {
        kill(&mut admin);
        let v = format!("v{i}");
        i += 1;
        expect(a.upload(ADMIN, "proj", bench, Some(&v), &receipt()), 201);
        let (status, body) = latest(b, bench);
        assert_eq!(status, 200);
        assert_eq!(body["version"], v.as_str());
        let (_, again) = latest(b, bench);
        assert_eq!(again["version"], v.as_str());
    }
    reader.join().unwrap();
    assert!(
        metric(b, OFF) > off_before,
        "B answered without its cache while its listener was down"
    );
    // Left alone, the listeners come back and B caches again.
    wait_listening(a);
    wait_listening(b);
    let v = format!("v{i}");
    expect(a.upload(ADMIN, "proj", bench, Some(&v), &receipt()), 201);
    assert_eq!(latest(b, bench).1["version"], v.as_str());
    let hits = metric(b, HIT);
    assert_eq!(latest(b, bench).1["version"], v.as_str());
    assert!(metric(b, HIT) > hits, "cached again after reconnecting");
    // And a write after the reconnection still reaches B at once.
    expect(
        a.upload(ADMIN, "proj", bench, Some("final"), &receipt()),
        201,
    );
    assert_eq!(latest(b, bench).1["version"], "final");
    let log = b.log();
    assert!(log.contains("cache listener lost its connection"), "{log}");
    assert!(log.contains("cache listener reconnected"), "{log}");
}
