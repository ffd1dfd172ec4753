//! Verdict queries.

use diesel::dsl::count_star;
use diesel::prelude::*;

use super::schema::{verdict_counts, verdicts};
use super::DbConn;
use crate::on_backend;

type Db = <DbConn as Connection>::Backend;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize, serde::Deserialize)]
#[diesel(table_name = verdicts)]
pub struct VerdictRow {
    pub id: String,
    pub project: String,
    pub benchmark: String,
    pub run_id: String,
    pub status: String,
    pub counts: String,
    pub reasons: String,
    pub git_ref: Option<String>,
    pub git_sha: Option<String>,
    pub wall_ms_cv: Option<f64>,
    pub flakiness_score: Option<f64>,
    pub created_at: i64,
}

/// Inserts a verdict and counts it.
pub(crate) fn insert(conn: &mut DbConn, row: &VerdictRow) -> QueryResult<()> {
    diesel::insert_into(verdicts::table)
        .values(row)
        .execute(conn)?;
    on_backend!(conn, c => diesel::insert_into(verdict_counts::table)
        .values((
            verdict_counts::project.eq(&row.project),
            verdict_counts::benchmark.eq(&row.benchmark),
            verdict_counts::status.eq(&row.status),
            verdict_counts::n.eq(1i64),
        ))
        .on_conflict((verdict_counts::project, verdict_counts::benchmark, verdict_counts::status))
        .do_update()
        .set(verdict_counts::n.eq(verdict_counts::n + 1))
        .execute(c))?;
    Ok(())
}

/// `wall_ms_cv` of the `n` newest verdicts of a benchmark, newest first (index range scan).
pub(crate) fn recent_cvs(
    conn: &mut DbConn,
    project: &str,
    benchmark: &str,
    n: i64,
) -> QueryResult<Vec<Option<f64>>> {
    verdicts::table
        .filter(verdicts::project.eq(project))
        .filter(verdicts::benchmark.eq(benchmark))
        .order((verdicts::created_at.desc(), verdicts::id.desc()))
        .limit(n)
        .select(verdicts::wall_ms_cv)
        .load(conn)
}

pub(crate) fn find(conn: &mut DbConn, project: &str, id: &str) -> QueryResult<Option<VerdictRow>> {
    verdicts::table
        .filter(verdicts::project.eq(project))
        .filter(verdicts::id.eq(id))
        .select(VerdictRow::as_select())
        .first(conn)
        .optional()
}

#[derive(Debug, Clone, Default)]
pub(crate) struct VerdictFilter {
    pub project: String,
    pub benchmark: Option<String>,
    /// Benchmarks a restricted caller may see.
    pub allowed_benchmarks: Option<Vec<String>>,
    pub status: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub limit: i64,
    pub offset: i64,
}

fn filtered(f: &VerdictFilter) -> verdicts::BoxedQuery<'static, Db> {
    let mut q = verdicts::table
        .filter(verdicts::project.eq(f.project.clone()))
        .into_boxed();
    if let Some(b) = &f.benchmark {
        q = q.filter(verdicts::benchmark.eq(b.clone()));
    }
    if let Some(a) = &f.allowed_benchmarks {
        q = q.filter(verdicts::benchmark.eq_any(a.clone()));
    }
    if let Some(s) = &f.status {
        q = q.filter(verdicts::status.eq(s.clone()));
    }
    if let Some(s) = f.since {
        q = q.filter(verdicts::created_at.ge(s));
    }
    if let Some(u) = f.until {
        q = q.filter(verdicts::created_at.le(u));
    }
    q
}

/// One page, newest first, and the filtered total.
pub(crate) fn list(conn: &mut DbConn, f: &VerdictFilter) -> QueryResult<(Vec<VerdictRow>, i64)> {
    if matches!(&f.allowed_benchmarks, Some(a) if a.is_empty()) {
        return Ok((Vec::new(), 0));
    }
    let total: i64 = if f.since.is_none() && f.until.is_none() {
        // Only benchmark/status filters: the maintained counts answer without a scan.
        let mut q = verdict_counts::table
            .filter(verdict_counts::project.eq(f.project.clone()))
            .into_boxed();
        if let Some(b) = &f.benchmark {
            q = q.filter(verdict_counts::benchmark.eq(b.clone()));
        }
        if let Some(a) = &f.allowed_benchmarks {
            q = q.filter(verdict_counts::benchmark.eq_any(a.clone()));
        }
        if let Some(st) = &f.status {
            q = q.filter(verdict_counts::status.eq(st.clone()));
        }
        q.select(verdict_counts::n)
            .load::<i64>(conn)?
            .into_iter()
            .sum()
    } else {
        filtered(f).select(count_star()).first(conn)?
    };
    if total <= f.offset {
        return Ok((Vec::new(), total));
    }
    let rows = filtered(f)
        .order((verdicts::created_at.desc(), verdicts::id.desc()))
        .limit(f.limit)
        .offset(f.offset)
        .select(VerdictRow::as_select())
        .load(conn)?;
    Ok((rows, total))
}

/// Distinct benchmark names with verdicts in a project (to apply a caller's benchmark filter).
pub(crate) fn benchmark_names(conn: &mut DbConn, project: &str) -> QueryResult<Vec<String>> {
    verdict_counts::table
        .filter(verdict_counts::project.eq(project))
        .select(verdict_counts::benchmark)
        .distinct()
        .load(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testdb::on_each_backend;

    fn verdict(id: &str, benchmark: &str, status: &str, cv: Option<f64>, at: i64) -> VerdictRow {
        VerdictRow {
            id: id.into(),
            project: "p".into(),
            benchmark: benchmark.into(),
            run_id: format!("run-{id}"),
            status: status.into(),
            counts: r#"{"pass":1}"#.into(),
            reasons: "[]".into(),
            git_ref: None,
            git_sha: None,
            wall_ms_cv: cv,
            flakiness_score: Some(0.25),
            created_at: at,
        }
    }

    fn filter() -> VerdictFilter {
        VerdictFilter {
            project: "p".into(),
            limit: 100,
            ..VerdictFilter::default()
        }
    }

    fn ids(c: &mut DbConn, f: VerdictFilter) -> (Vec<String>, i64) {
        let (rows, total) = list(c, &f).unwrap();
        (rows.into_iter().map(|r| r.id).collect(), total)
    }

    fn seed(c: &mut DbConn) {
        for v in [
            verdict("v1", "a", "pass", Some(0.1), 10),
            verdict("v2", "a", "fail", None, 20),
            verdict("v3", "b", "pass", Some(0.3), 30),
            verdict("v4", "a", "pass", Some(0.4), 40),
            verdict("v5", "c", "warn", Some(0.5), 50),
        ] {
            insert(c, &v).unwrap();
        }
        let mut elsewhere = verdict("x1", "a", "pass", None, 60);
        elsewhere.project = "q".into();
        insert(c, &elsewhere).unwrap();
    }

    #[test]
    fn insert_find_and_recent_cvs() {
        on_each_backend(|c, be| {
            seed(c);
            let v = find(c, "p", "v3").unwrap().unwrap();
            assert_eq!(
                (v.benchmark.as_str(), v.status.as_str(), v.wall_ms_cv),
                ("b", "pass", Some(0.3)),
                "{be}"
            );
            assert_eq!(v.counts, r#"{"pass":1}"#, "{be}");
            assert!(
                find(c, "q", "v3").unwrap().is_none(),
                "other project ({be})"
            );
            assert!(find(c, "p", "nope").unwrap().is_none(), "{be}");
            assert_eq!(
                recent_cvs(c, "p", "a", 2).unwrap(),
                [Some(0.4), None],
                "newest first ({be})"
            );
            assert_eq!(recent_cvs(c, "p", "a", 10).unwrap().len(), 3, "{be}");
            let mut names = benchmark_names(c, "p").unwrap();
            names.sort();
            assert_eq!(names, ["a", "b", "c"], "{be}");
        });
    }

    #[test]
    fn list_filters_and_pages() {
        on_each_backend(|c, be| {
            seed(c);
            assert_eq!(
                ids(c, filter()),
                (["v5", "v4", "v3", "v2", "v1"].map(String::from).to_vec(), 5),
                "newest first ({be})"
            );
            let page = ids(
                c,
                VerdictFilter {
                    limit: 2,
                    offset: 2,
                    ..filter()
                },
            );
            assert_eq!(page, (vec!["v3".into(), "v2".into()], 5), "{be}");
            let past = ids(
                c,
                VerdictFilter {
                    offset: 5,
                    ..filter()
                },
            );
            assert_eq!(past, (vec![], 5), "{be}");
            // Benchmark and status: totals from the maintained counts.
            let a_pass = ids(
                c,
                VerdictFilter {
                    benchmark: Some("a".into()),
                    status: Some("pass".into()),
                    ..filter()
                },
            );
            assert_eq!(a_pass, (vec!["v4".into(), "v1".into()], 2), "{be}");
            let allowed = ids(
                c,
                VerdictFilter {
                    allowed_benchmarks: Some(vec!["b".into(), "c".into()]),
                    ..filter()
                },
            );
            assert_eq!(allowed, (vec!["v5".into(), "v3".into()], 2), "{be}");
            let none = ids(
                c,
                VerdictFilter {
                    allowed_benchmarks: Some(vec![]),
                    ..filter()
                },
            );
            assert_eq!(none, (vec![], 0), "{be}");
            // A time window: totals counted over the rows.
            let window = ids(
                c,
                VerdictFilter {
                    since: Some(20),
                    until: Some(40),
                    status: Some("pass".into()),
                    ..filter()
                },
            );
            assert_eq!(window, (vec!["v4".into(), "v3".into()], 2), "{be}");
        });
    }
}
