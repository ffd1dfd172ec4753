//! Read models for the dashboard: the project picker, a project's benchmark table and one
//! benchmark's history. Every query walks an index (`benchmarks` primary key,
//! `baselines_latest_idx`, `verdicts_benchmark_idx`, `verdicts_project_idx`) and reads a bounded
//! number of rows per benchmark, so the cost follows the number of benchmarks shown, not the
//! history length.

use diesel::dsl::{exists, not};
use diesel::prelude::*;

use super::baselines::live_newest_first;
use super::schema::{baselines, benchmarks, quarantine, verdict_counts, verdicts};
use super::DbConn;

/// One row of the `benchmarks` table: a benchmark and its live baseline count.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct BenchmarkCount {
    pub project: String,
    pub benchmark: String,
    pub baselines: i64,
    pub updated_at: i64,
}

/// Every `(project, benchmark)` with baselines or verdicts, optionally of one project; sorted
/// by project, then benchmark. Benchmarks known only from verdicts have 0 baselines.
pub(crate) fn benchmark_counts(
    conn: &mut DbConn,
    project: Option<&str>,
) -> QueryResult<Vec<BenchmarkCount>> {
    let mut q = benchmarks::table
        .select((
            benchmarks::project,
            benchmarks::benchmark,
            benchmarks::baseline_count,
            benchmarks::updated_at,
        ))
        .into_boxed();
    let mut v = verdict_counts::table
        .select((verdict_counts::project, verdict_counts::benchmark))
        .distinct()
        .into_boxed();
    if let Some(p) = project {
        q = q.filter(benchmarks::project.eq(p.to_owned()));
        v = v.filter(verdict_counts::project.eq(p.to_owned()));
    }
    let mut rows: Vec<BenchmarkCount> = q.load(conn)?;
    rows.retain(|r| r.baselines > 0);
    let known: std::collections::HashSet<(String, String)> = rows
        .iter()
        .map(|r| (r.project.clone(), r.benchmark.clone()))
        .collect();
    for (project, benchmark) in v.load::<(String, String)>(conn)? {
        if !known.contains(&(project.clone(), benchmark.clone())) {
            rows.push(BenchmarkCount {
                project,
                benchmark,
                baselines: 0,
                updated_at: 0,
            });
        }
    }
    rows.sort_by(|a, b| (&a.project, &a.benchmark).cmp(&(&b.project, &b.benchmark)));
    Ok(rows)
}

/// Number of verdicts per `(project, benchmark)`, optionally of one project (from the
/// maintained per-status counts).
pub(crate) fn verdict_totals(
    conn: &mut DbConn,
    project: Option<&str>,
) -> QueryResult<std::collections::HashMap<(String, String), i64>> {
    let mut q = verdict_counts::table
        .select((
            verdict_counts::project,
            verdict_counts::benchmark,
            verdict_counts::n,
        ))
        .into_boxed();
    if let Some(p) = project {
        q = q.filter(verdict_counts::project.eq(p.to_owned()));
    }
    let mut out = std::collections::HashMap::new();
    for (p, b, n) in q.load::<(String, String, i64)>(conn)? {
        *out.entry((p, b)).or_insert(0) += n;
    }
    Ok(out)
}

/// Time of the newest verdict of a project, or of one benchmark.
pub(crate) fn last_verdict_at(
    conn: &mut DbConn,
    project: &str,
    benchmark: Option<&str>,
) -> QueryResult<Option<i64>> {
    let mut q = verdicts::table
        .filter(verdicts::project.eq(project.to_owned()))
        .into_boxed();
    if let Some(b) = benchmark {
        q = q.filter(verdicts::benchmark.eq(b.to_owned()));
    }
    q.order((verdicts::created_at.desc(), verdicts::id.desc()))
        .select(verdicts::created_at)
        .first(conn)
        .optional()
}

/// A version as the benchmark table and its sparkline need it.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct RecentVersion {
    pub version: String,
    pub created_at: i64,
    pub wall_ms_median: Option<i64>,
    pub source: String,
    /// A final gate failed this run: it is never the latest.
    pub quarantined: bool,
}

/// The newest `n` live versions of a benchmark, newest first, quarantined ones included (the
/// sparkline shows the slow run).
pub(crate) fn recent_versions(
    conn: &mut DbConn,
    project: &str,
    benchmark: &str,
    n: i64,
) -> QueryResult<Vec<RecentVersion>> {
    live_newest_first(project, benchmark)
        .limit(n)
        .select((
            baselines::version,
            baselines::created_at,
            baselines::wall_ms_median,
            baselines::source,
            exists(quarantine::table.filter(quarantine::baseline_id.eq(baselines::id))),
        ))
        .load(conn)
}

/// The version GET latest serves: the newest live one not quarantined
/// ([`super::baselines::latest`]).
pub(crate) fn latest_version(
    conn: &mut DbConn,
    project: &str,
    benchmark: &str,
) -> QueryResult<Option<RecentVersion>> {
    live_newest_first(project, benchmark)
        .filter(not(exists(
            quarantine::table.filter(quarantine::baseline_id.eq(baselines::id)),
        )))
        .select((
            baselines::version,
            baselines::created_at,
            baselines::wall_ms_median,
            baselines::source,
            false.into_sql::<diesel::sql_types::Bool>(),
        ))
        .first(conn)
        .optional()
}

/// The newest verdict of a benchmark.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub(crate) struct LastVerdict {
    pub id: String,
    pub status: String,
    pub created_at: i64,
    pub flakiness_score: Option<f64>,
}

pub(crate) fn last_verdict(
    conn: &mut DbConn,
    project: &str,
    benchmark: &str,
) -> QueryResult<Option<LastVerdict>> {
    verdicts::table
        .filter(verdicts::project.eq(project))
        .filter(verdicts::benchmark.eq(benchmark))
        .order((verdicts::created_at.desc(), verdicts::id.desc()))
        .select((
            verdicts::id,
            verdicts::status,
            verdicts::created_at,
            verdicts::flakiness_score,
        ))
        .first(conn)
        .optional()
}

/// One version of a benchmark's history, with its receipt (stored text, never re-parsed here).
#[derive(Debug, Clone, Queryable)]
pub(crate) struct HistoryRow {
    pub id: String,
    pub version: String,
    pub git_ref: Option<String>,
    pub git_sha: Option<String>,
    pub receipt: String,
    pub tags: String,
    pub content_hash: String,
    pub source: String,
    pub promoted_from: Option<String>,
    pub created_at: i64,
}

/// The newest `limit` live versions of a benchmark after `offset`, newest first, and the number
/// of live versions.
pub(crate) fn history(
    conn: &mut DbConn,
    project: &str,
    benchmark: &str,
    limit: i64,
    offset: i64,
) -> QueryResult<(Vec<HistoryRow>, i64)> {
    let live = || {
        baselines::table
            .filter(baselines::project.eq(project))
            .filter(baselines::benchmark.eq(benchmark))
            .filter(baselines::deleted_at.is_null())
    };
    let total: i64 = live().count().get_result(conn)?;
    let rows = live_newest_first(project, benchmark)
        .limit(limit)
        .offset(offset)
        .select((
            baselines::id,
            baselines::version,
            baselines::git_ref,
            baselines::git_sha,
            baselines::receipt,
            baselines::tags,
            baselines::content_hash,
            baselines::source,
            baselines::promoted_from,
            baselines::created_at,
        ))
        .load(conn)?;
    Ok((rows, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::baselines::{self, BaselineRow};
    use crate::db::testdb::on_each_backend;
    use crate::db::verdicts::{self, VerdictRow};

    fn baseline(c: &mut DbConn, project: &str, benchmark: &str, version: &str, at: i64) {
        let row = BaselineRow {
            id: format!("{project}|{benchmark}|{version}"),
            project: project.into(),
            benchmark: benchmark.into(),
            version: version.into(),
            git_ref: Some("main".into()),
            git_sha: None,
            receipt: format!(r#"{{"at":{at}}}"#),
            metadata: "{}".into(),
            tags: r#"["t"]"#.into(),
            content_hash: format!("hash-{at}"),
            source: if version == "stable" {
                "promote"
            } else {
                "upload"
            }
            .into(),
            promoted_from: (version == "stable").then(|| "v1".to_owned()),
            wall_ms_median: Some(at * 10),
            medians: "{}".into(),
            created_at: at,
            updated_at: at,
            deleted_at: None,
        };
        baselines::insert(c, &row, &[]).unwrap();
    }

    fn verdict(c: &mut DbConn, id: &str, benchmark: &str, status: &str, at: i64) {
        let row = VerdictRow {
            id: id.into(),
            project: "p".into(),
            benchmark: benchmark.into(),
            run_id: "r".into(),
            status: status.into(),
            counts: "{}".into(),
            reasons: "[]".into(),
            git_ref: None,
            git_sha: None,
            wall_ms_cv: None,
            flakiness_score: Some(at as f64 / 100.0),
            created_at: at,
        };
        verdicts::insert(c, &row).unwrap();
    }

    fn seed(c: &mut DbConn) {
        baseline(c, "p", "a", "v1", 10);
        baseline(c, "p", "a", "stable", 20);
        baseline(c, "p", "b", "v1", 30);
        baselines::soft_delete(c, "p", "b", "v1", 35).unwrap();
        baseline(c, "q", "a", "v1", 5);
        verdict(c, "d1", "a", "pass", 40);
        verdict(c, "d2", "a", "fail", 50);
        verdict(c, "d3", "c", "warn", 60);
    }

    #[test]
    fn benchmark_counts_and_verdict_totals() {
        on_each_backend(|c, be| {
            seed(c);
            let counts = |c: &mut DbConn, p| -> Vec<(String, String, i64, i64)> {
                benchmark_counts(c, p)
                    .unwrap()
                    .into_iter()
                    .map(|r| (r.project, r.benchmark, r.baselines, r.updated_at))
                    .collect()
            };
            // `b` has no live version and no verdict; `c` only verdicts.
            assert_eq!(
                counts(c, Some("p")),
                [
                    ("p".into(), "a".into(), 2, 20),
                    ("p".into(), "c".into(), 0, 0)
                ],
                "{be}"
            );
            assert_eq!(counts(c, None).len(), 3, "{be}");
            assert_eq!(counts(c, None)[2].0, "q", "sorted by project ({be})");
            let totals = verdict_totals(c, Some("p")).unwrap();
            assert_eq!(totals.len(), 2, "{be}");
            assert_eq!(totals[&("p".to_owned(), "a".to_owned())], 2, "{be}");
            assert_eq!(totals[&("p".to_owned(), "c".to_owned())], 1, "{be}");
            assert!(verdict_totals(c, Some("q")).unwrap().is_empty(), "{be}");
        });
    }

    #[test]
    fn newest_versions_verdicts_and_history() {
        on_each_backend(|c, be| {
            seed(c);
            assert_eq!(last_verdict_at(c, "p", None).unwrap(), Some(60), "{be}");
            assert_eq!(
                last_verdict_at(c, "p", Some("a")).unwrap(),
                Some(50),
                "{be}"
            );
            assert_eq!(last_verdict_at(c, "q", None).unwrap(), None, "{be}");
            assert_eq!(
                last_verdict(c, "p", "a").unwrap(),
                Some(LastVerdict {
                    id: "d2".into(),
                    status: "fail".into(),
                    created_at: 50,
                    flakiness_score: Some(0.5),
                }),
                "{be}"
            );
            assert_eq!(last_verdict(c, "p", "b").unwrap(), None, "{be}");

            let recent = recent_versions(c, "p", "a", 1).unwrap();
            assert_eq!(recent.len(), 1, "{be}");
            assert_eq!(
                (
                    recent[0].version.as_str(),
                    recent[0].created_at,
                    recent[0].wall_ms_median,
                    recent[0].source.as_str()
                ),
                ("stable", 20, Some(200), "promote"),
                "{be}"
            );
            assert!(recent_versions(c, "p", "b", 5).unwrap().is_empty(), "{be}");

            let (rows, total) = history(c, "p", "a", 1, 1).unwrap();
            assert_eq!(total, 2, "{be}");
            assert_eq!(rows.len(), 1, "{be}");
            let h = &rows[0];
            assert_eq!(
                (
                    h.id.as_str(),
                    h.version.as_str(),
                    h.receipt.as_str(),
                    h.git_ref.as_deref()
                ),
                ("p|a|v1", "v1", r#"{"at":10}"#, Some("main")),
                "{be}"
            );
            let (rows, total) = history(c, "p", "a", 10, 0).unwrap();
            assert_eq!(total, 2, "{be}");
            assert_eq!(rows[0].promoted_from.as_deref(), Some("v1"), "{be}");
            let (rows, total) = history(c, "p", "b", 10, 0).unwrap();
            assert_eq!(
                (rows.len(), total),
                (0, 0),
                "deleted versions are gone ({be})"
            );
        });
    }
}
