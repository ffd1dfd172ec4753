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
