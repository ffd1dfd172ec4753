//! Retention over real HTTP: `DELETE /api/v1/admin/cleanup` purges soft-deleted versions,
//! verdicts, gates and decisions older than the cut-off (rows are aged in the database by the
//! test), never a live baseline nor a benchmark's newest version, keeps counts in step, audits
//! the counts, and refuses what it must.

mod common;

use common::*;
use diesel::connection::SimpleConnection;
use diesel::Connection;

const DAY_US: i64 = 86_400_000_000;

fn verdict(bench: &str, status: &str) -> Value {
    json!({
        "benchmark": bench, "run_id": "run-1", "status": status,
        "counts": {"pass": 1, "warn": 0, "fail": 0, "skip": 0}, "reasons": [],
        "git_ref": null, "git_sha": null,
    })
}

/// Runs `sql` against the server's database (SQLite file or PostgreSQL).
fn age(s: &Server, sql: &str) {
    match &s.backend {
        Backend::Postgres(url) => diesel::PgConnection::establish(url)
            .unwrap()
            .batch_execute(sql)
            .unwrap(),
        _ => diesel::SqliteConnection::establish(&s.dir.join("perfgate.db").to_string_lossy())
            .unwrap()
            .batch_execute(&format!("PRAGMA busy_timeout = 5000; {sql}"))
            .unwrap(),
    }
}

fn cleanup_purges_old_rows(b: Backend) {
    let s = Server::start(b);
    let receipt = fixture("run-bench-a-1.json");
    for v in ["v1", "v2", "v3"] {
        expect(s.upload(CONTRIB, "proj", "a", Some(v), &receipt), 201);
    }
    expect(s.upload(CONTRIB, "proj", "b", Some("v1"), &receipt), 201);
    // Deleted: a/v1 (old), a/v3 (a's newest: kept), b/v1 (b's only version: kept).
    for (bench, v) in [("a", "v1"), ("a", "v3"), ("b", "v1")] {
        expect(
            s.delete(
                ADMIN,
                &format!("/api/v1/projects/proj/baselines/{bench}/versions/{v}"),
            ),
            200,
        );
    }
    for status in ["pass", "fail", "pass"] {
        expect(
            s.post(
                CONTRIB,
                "/api/v1/projects/proj/verdicts",
                &verdict("a", status),
            ),
            201,
        );
    }
    let mut gate_receipt = receipt.clone();
    gate_receipt["bench"]["name"] = json!("a");
    let runs = json!([{"benchmark": "a", "receipt": gate_receipt}]);
    expect(
        s.post(
            CONTRIB,
            "/api/v1/projects/proj/gates",
            &json!({"runs": runs}),
        ),
        201,
    );
    expect(
        s.post(
            CONTRIB,
            "/api/v1/projects/proj/decisions",
            &json!({"tradeoff": fixture("tradeoff-accepted.json")}),
        ),
        201,
    );
    // Everything is 400 days old, except one verdict (the newest) and the live versions' ages
    // (irrelevant: live versions are never purged by age).
    let old = 400 * DAY_US;
    age(
        &s,
        &format!(
            "UPDATE baselines SET created_at = created_at - {old}, deleted_at = deleted_at - {old} WHERE deleted_at IS NOT NULL;
             UPDATE verdicts SET created_at = created_at - {old} WHERE id <> (SELECT MAX(id) FROM verdicts);
             UPDATE gates SET created_at = created_at - {old}, deadline = deadline - {old};
             UPDATE decisions SET created_at = created_at - {old};"
        ),
    );
    // a/v3 stays the newest of `a` after aging: age a/v2 (live) too.
    age(
        &s,
        &format!("UPDATE baselines SET created_at = created_at - {} WHERE version = 'v2' AND benchmark = 'a';", old + DAY_US),
    );
    let r = expect(
        s.delete(ADMIN, "/api/v1/admin/cleanup?older_than_days=30"),
        200,
    );
    assert_eq!(r["older_than_days"], 30);
    assert_eq!(
        r["deleted"],
        json!({"baselines": 1, "verdicts": 2, "gates": 1, "decisions": 1}),
        "{r}"
    );
    // The live version and the newest deleted one are untouched; counts follow the purge.
    expect(
        s.get(VIEWER, "/api/v1/projects/proj/baselines/a/versions/v2"),
        200,
    );
    let v = expect(s.get(VIEWER, "/api/v1/projects/proj/verdicts"), 200);
    assert_eq!(v["pagination"]["total"], 1, "{v}");
    assert_eq!(v["verdicts"].as_array().unwrap().len(), 1);
    let g = expect(s.get(VIEWER, "/api/v1/projects/proj/gates"), 200);
    assert_eq!(g["gates"], json!([]), "{g}");
    let d = expect(s.get(VIEWER, "/api/v1/projects/proj/decisions"), 200);
    assert_eq!(d["decisions"], json!([]), "{d}");
    let a = expect(s.get(ADMIN, "/api/v1/audit?resource_type=retention"), 200);
    assert_eq!(a["pagination"]["total"], 1, "{a}");
    let text = a.to_string();
    assert!(
        text.contains("older_than_days") && text.contains("\"verdicts\":2"),
        "{a}"
    );
    // Nothing left to purge: zeros, and no second audit event.
    let r = expect(
        s.delete(ADMIN, "/api/v1/admin/cleanup?older_than_days=30"),
        200,
    );
    assert_eq!(
        r["deleted"],
        json!({"baselines": 0, "verdicts": 0, "gates": 0, "decisions": 0})
    );
    let a = expect(s.get(ADMIN, "/api/v1/audit?resource_type=retention"), 200);
    assert_eq!(a["pagination"]["total"], 1);
    // a/v3 (a's newest) survives even a cleanup of everything older than a day.
    age(
        &s,
        &format!("UPDATE baselines SET deleted_at = deleted_at - {old} WHERE version = 'v3';"),
    );
    let r = expect(
        s.delete(ADMIN, "/api/v1/admin/cleanup?older_than_days=1"),
        200,
    );
    assert_eq!(r["deleted"]["baselines"], 0, "{r}");
}

fn cleanup_refuses(b: Backend) {
    let s = Server::start(b);
    let url = "/api/v1/admin/cleanup?older_than_days=30";
    expect_error(s.delete(VIEWER, url), 403, "forbidden");
    expect_error(s.delete(PROMOTER, url), 403, "forbidden");
    // An admin of one project cannot purge every project's data.
    expect_error(s.delete(OTHER_ADMIN, url), 403, "forbidden");
    expect_error(
        s.delete("pg_live_unknownunknownunknownunknown0000", url),
        401,
        "unauthorized",
    );
    for bad in ["0", "-1", "36501", "abc", "1.5"] {
        expect_error(
            s.delete(
                ADMIN,
                &format!("/api/v1/admin/cleanup?older_than_days={bad}"),
            ),
            400,
            "invalid_input",
        );
    }
    // The cut-off is always explicit.
    let e = expect_error(
        s.delete(ADMIN, "/api/v1/admin/cleanup"),
        400,
        "invalid_input",
    );
    assert!(e.to_string().contains("older_than_days"), "{e}");
    expect_error(
        s.get(ADMIN, "/api/v1/admin/cleanup"),
        405,
        "method_not_allowed",
    );
}

mod sqlite_files {
    #[test]
    fn cleanup_purges_old_rows() {
        super::cleanup_purges_old_rows(super::Backend::Sqlite)
    }
}
mod postgres_database {
    #[test]
    fn cleanup_purges_old_rows() {
        if let Some(b) = super::Backend::postgres() {
            super::cleanup_purges_old_rows(b)
        }
    }
}
backend_tests!(cleanup_refuses);
