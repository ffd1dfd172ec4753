//! PostgreSQL as managed services run it: TLS from the database URL (`sslmode`, `sslrootcert`)
//! against a throwaway cluster with a self-signed CA, the `--pg-*` pool settings, and secrets of
//! the URL kept out of the log.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use diesel::{Connection, PgConnection, RunQueryDsl};

#[derive(diesel::QueryableByName)]
struct N {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn count(url: &str, sql: &str) -> i64 {
    let mut c = PgConnection::establish(url).unwrap();
    diesel::sql_query(sql).get_result::<N>(&mut c).unwrap().n
}

fn key_args() -> Vec<String> {
    standard_keys()
        .into_iter()
        .flat_map(|k| ["--api-keys".to_owned(), k])
        .collect()
}

#[test]
fn tls_verify_full_connects_with_the_right_ca_only() {
    let Some(t) = pg::tls_cluster() else { return };
    let base = &t.cluster.url;
    let ok = format!("{base}?sslmode=verify-full&sslrootcert={}", t.ca.display());
    let s = Server::start_with(Backend::Postgres(ok.clone()), &key_args());
    expect(
        s.upload(CONTRIB, "proj", "tls", None, &fixture("run-bench-a-1.json")),
        201,
    );
    expect(
        s.get(VIEWER, "/api/v1/projects/proj/baselines/tls/latest"),
        200,
    );
    // Every session of the server is encrypted.
    let sql = "SELECT COUNT(*) AS n FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
               WHERE datname = 'postgres' AND pid <> pg_backend_pid()";
    let all = count(&ok, sql);
    let plain = count(&ok, &format!("{sql} AND NOT ssl"));
    assert!(all >= 2, "the server's sessions: {all}");
    assert_eq!(plain, 0, "unencrypted sessions");
    // The cache listener's own connection honours the same URL: it is there, encrypted.
    let listener = format!("{sql} AND ssl AND application_name = 'perfgate-cache-listener'");
    let t0 = Instant::now();
    while count(&ok, &listener) != 1 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no encrypted cache listener:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(s);

    // A CA that did not sign the server's certificate: refused at start-up, saying why.
    let wrong = format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        t.wrong_ca.display()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_perfgate-server"))
        .args(["--database-url", &wrong, "--port", &free_port().to_string()])
        .args(key_args())
        .env_remove("PERFGATE_DATABASE_URL")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with the wrong CA: {err}");
    assert!(err.contains("certificate verify failed"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // sslmode=require: encrypted without verification; the URL's secrets stay out of the log.
    let (prefix, rest) = base.split_once("postgres@").unwrap();
    let secret = format!("{prefix}postgres:s3cretpw@{rest}?sslmode=require&sslpassword=hunter2");
    let s = Server::start_with(Backend::Postgres(secret), &key_args());
    expect(
        s.get(VIEWER, "/api/v1/projects/proj/baselines/tls/latest"),
        200,
    );
    let log = s.log();
    assert!(log.contains("opening postgres storage at"), "{log}");
    assert!(
        !log.contains("s3cretpw") && !log.contains("hunter2"),
        "{log}"
    );
}

#[test]
fn pool_settings_bound_the_connections() {
    let Some(Backend::Postgres(url)) = Backend::postgres() else {
        return;
    };
    let db = url.rsplit('/').next().unwrap().to_owned();
    let mut args = key_args();
    args.extend(
        [
            "--pg-max-connections",
            "16",
            "--pg-min-connections",
            "1",
            "--pg-acquire-timeout",
            "3",
            "--pg-statement-timeout",
            "5",
        ]
        .map(String::from),
    );
    let s = Server::start_with(Backend::Postgres(url.clone()), &args);
    assert!(
        s.log()
            .contains("1 reader(s) per store and 1 writer shard(s)"),
        "{}",
        s.log()
    );
    // Load from many clients at once: uploads and reads.
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let base = s.base.clone();
            std::thread::spawn(move || {
                let http = Client::new();
                for j in 0..10 {
                    let body = upload_body(
                        &format!("b{}", (i + j) % 5),
                        None,
                        &fixture("run-bench-a-1.json"),
                    );
                    let r = http
                        .post(format!("{base}/api/v1/projects/proj/baselines"))
                        .bearer_auth(CONTRIB)
                        .json(&body)
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), 201);
                    let r = http
                        .get(format!(
                            "{base}/api/v1/projects/proj/baselines/b{}/latest",
                            j % 5
                        ))
                        .bearer_auth(VIEWER)
                        .send()
                        .unwrap();
                    assert!(r.status() == 200 || r.status() == 404, "{}", r.status());
                }
            })
        })
        .collect();
    let start = Instant::now();
    let mut most = 0;
    // One connection for every look: a connection per look would leave the previous one's
    // backend, still exiting, in the count.
    let mut watcher = PgConnection::establish(&url).unwrap();
    let sql = format!(
        "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"
    );
    while threads.iter().any(|t| !t.is_finished()) && start.elapsed() < Duration::from_secs(60) {
        let n = diesel::sql_query(&sql)
            .get_result::<N>(&mut watcher)
            .unwrap()
            .n;
        most = most.max(n);
        std::thread::sleep(Duration::from_millis(20));
    }
    for t in threads {
        t.join().unwrap();
    }
    assert!(most >= 1, "connections seen: {most}");
    assert!(most <= 16, "at most --pg-max-connections: {most}");
}

#[test]
fn too_small_a_connection_budget_is_refused() {
    let Some(Backend::Postgres(url)) = Backend::postgres() else {
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_perfgate-server"))
        .args(["--database-url", &url, "--port", &free_port().to_string()])
        .args(["--pg-max-connections", "14"])
        .args(key_args())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("pg_max_connections = 14 is too few") && err.contains("16"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
