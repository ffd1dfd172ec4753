//! Change points' storage: the common shift of each CI run, where each series' incremental scan
//! stands, and the points found. Free functions over `&mut DbConn`, called inside the change-point
//! pass's transaction; each names the index it reads.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::gates::{backfill_position, set_backfill_position, BACKFILL_TASK};
use super::schema::{alerts, baselines, change_points, cp_series, run_shifts, run_stats};
use super::DbConn;

/// Position of the change-point pass: runs stored at or before it have been scanned.
pub(crate) const WATERMARK_TASK: &str = "change_points";
/// Changes that landed before this instant (the history a server had when change points were
/// first enabled) are shown but not alerted on.
pub(crate) const ALERTS_SINCE_TASK: &str = "change_point_alerts_since";

/// One (project, benchmark, metric, runner class) series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SeriesKey {
    pub project: String,
    pub benchmark: String,
    pub metric: String,
    pub runner: String,
}

/// Whether the start-up back-fill of run summaries has finished (until then, old runs may still
/// appear behind the pass's watermark).
pub(crate) fn run_stats_complete(conn: &mut DbConn) -> QueryResult<bool> {
    Ok(backfill_position(conn, BACKFILL_TASK)?.is_some_and(|(_, done)| done))
}

pub(crate) fn watermark(conn: &mut DbConn) -> QueryResult<i64> {
    Ok(backfill_position(conn, WATERMARK_TASK)?
        .and_then(|(p, _)| p.parse().ok())
        .unwrap_or(i64::MIN))
}

pub(crate) fn set_watermark(conn: &mut DbConn, t: i64) -> QueryResult<()> {
    set_backfill_position(conn, WATERMARK_TASK, &t.to_string(), false)
}

/// From when changes are alerted on, once the first pass set it.
pub(crate) fn stored_alerts_since(conn: &mut DbConn) -> QueryResult<Option<i64>> {
    Ok(backfill_position(conn, ALERTS_SINCE_TASK)?.and_then(|(p, _)| p.parse().ok()))
}

/// From when changes are alerted on: set once, by the first pass, to `default`.
pub(crate) fn alerts_since(conn: &mut DbConn, default: i64) -> QueryResult<i64> {
    if let Some(t) = stored_alerts_since(conn)? {
        return Ok(t);
    }
    set_backfill_position(conn, ALERTS_SINCE_TASK, &default.to_string(), true)?;
    Ok(default)
}

/// A run stored since the last pass.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct NewRun {
    pub project: String,
    pub benchmark: String,
    pub metric: String,
    pub runner: String,
    pub git_sha: Option<String>,
    pub created_at: i64,
}

/// Live runs stored in `(after, upto]`, oldest first, at most `limit` (`run_stats_created_idx`).
pub(crate) fn new_runs(
    conn: &mut DbConn,
    after: i64,
    upto: i64,
    limit: i64,
) -> QueryResult<Vec<NewRun>> {
    run_stats::table
        .filter(run_stats::created_at.gt(after))
        .filter(run_stats::created_at.le(upto))
        .filter(run_stats::deleted.eq(false))
        .order(run_stats::created_at.asc())
        .limit(limit)
        .select((
            run_stats::project,
            run_stats::benchmark,
            run_stats::metric,
            run_stats::runner,
            run_stats::git_sha,
            run_stats::created_at,
        ))
        .load(conn)
}

/// A run of a series, as the scan reads it.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct SeriesRun {
    pub baseline_id: String,
    pub git_sha: Option<String>,
    pub center: f64,
    pub created_at: i64,
}

/// The members of one CI run: every live run of commit `sha` on `runner` (`run_stats_group_idx`).
pub(crate) fn group_members(
    conn: &mut DbConn,
    project: &str,
    runner: &str,
    metric: &str,
    sha: &str,
) -> QueryResult<Vec<(String, SeriesRun)>> {
    run_stats::table
        .filter(run_stats::project.eq(project))
        .filter(run_stats::runner.eq(runner))
        .filter(run_stats::metric.eq(metric))
        .filter(run_stats::git_sha.eq(sha))
        .filter(run_stats::deleted.eq(false))
        .select((
            run_stats::benchmark,
            (
                run_stats::baseline_id,
                run_stats::git_sha,
                run_stats::center,
                run_stats::created_at,
            ),
        ))
        .load(conn)
}

/// How many run rows commit `sha` has on `runner` for `metric`, deleted ones included, and the
/// newest one's `created_at`: both change whenever a run joins or leaves the CI run for good.
pub(crate) fn group_rows(
    conn: &mut DbConn,
    project: &str,
    runner: &str,
    metric: &str,
    sha: &str,
) -> QueryResult<(i64, Option<i64>)> {
    run_stats::table
        .filter(run_stats::project.eq(project))
        .filter(run_stats::runner.eq(runner))
        .filter(run_stats::metric.eq(metric))
        .filter(run_stats::git_sha.eq(sha))
        .select((
            diesel::dsl::count_star(),
            diesel::dsl::max(run_stats::created_at),
        ))
        .get_result(conn)
}

/// How many live runs were stored in `(after, upto]` (`run_stats_created_idx`).
pub(crate) fn count_new_runs(conn: &mut DbConn, after: i64, upto: i64) -> QueryResult<i64> {
    run_stats::table
        .filter(run_stats::created_at.gt(after))
        .filter(run_stats::created_at.le(upto))
        .filter(run_stats::deleted.eq(false))
        .count()
        .get_result(conn)
}

/// The live runs of one series (`run_stats_series_idx`), as a query to narrow.
fn live_runs_of(key: &SeriesKey) -> run_stats::BoxedQuery<'_, Db> {
    run_stats::table
        .filter(run_stats::project.eq(&key.project))
        .filter(run_stats::benchmark.eq(&key.benchmark))
        .filter(run_stats::metric.eq(&key.metric))
        .filter(run_stats::runner.eq(&key.runner))
        .filter(run_stats::deleted.eq(false))
        .into_boxed()
}

type Db = <DbConn as Connection>::Backend;

/// The newest `limit` live runs of a series stored before `(created_at, baseline_id)`, newest
/// first (`run_stats_series_idx`).
pub(crate) fn runs_before(
    conn: &mut DbConn,
    key: &SeriesKey,
    created_at: i64,
    baseline_id: &str,
    limit: i64,
) -> QueryResult<Vec<SeriesRun>> {
    live_runs_of(key)
        .filter(
            run_stats::created_at
                .lt(created_at)
                .or(run_stats::created_at
                    .eq(created_at)
                    .and(run_stats::baseline_id.lt(baseline_id))),
        )
        .order((run_stats::created_at.desc(), run_stats::baseline_id.desc()))
        .limit(limit)
        .select((
            run_stats::baseline_id,
            run_stats::git_sha,
            run_stats::center,
            run_stats::created_at,
        ))
        .load(conn)
}

/// The live runs of a series from `(created_at, baseline_id)` on, up to `upto`, oldest first
/// (`run_stats_series_idx`).
pub(crate) fn runs_from(
    conn: &mut DbConn,
    key: &SeriesKey,
    created_at: i64,
    baseline_id: &str,
    upto: i64,
) -> QueryResult<Vec<SeriesRun>> {
    live_runs_of(key)
        .filter(run_stats::created_at.le(upto))
        .filter(
            run_stats::created_at
                .gt(created_at)
                .or(run_stats::created_at
                    .eq(created_at)
                    .and(run_stats::baseline_id.ge(baseline_id))),
        )
        .order((run_stats::created_at.asc(), run_stats::baseline_id.asc()))
        .select((
            run_stats::baseline_id,
            run_stats::git_sha,
            run_stats::center,
            run_stats::created_at,
        ))
        .load(conn)
}

/// Stored common shifts of the given commits (primary key).
pub(crate) fn shifts_of(
    conn: &mut DbConn,
    project: &str,
    runner: &str,
    metric: &str,
    shas: &[String],
) -> QueryResult<Vec<(String, f64)>> {
    if shas.is_empty() {
        return Ok(Vec::new());
    }
    run_shifts::table
        .filter(run_shifts::project.eq(project))
        .filter(run_shifts::runner.eq(runner))
        .filter(run_shifts::metric.eq(metric))
        .filter(run_shifts::git_sha.eq_any(shas))
        .select((run_shifts::git_sha, run_shifts::shift))
        .load(conn)
}

/// Stores a CI run's common shift once; a commit run again later keeps its first estimate.
#[allow(clippy::too_many_arguments)]
pub(crate) fn insert_shift(
    conn: &mut DbConn,
    project: &str,
    runner: &str,
    metric: &str,
    sha: &str,
    shift: f64,
    benchmarks: i64,
    now: i64,
) -> QueryResult<()> {
    let exists: i64 = run_shifts::table
        .filter(run_shifts::project.eq(project))
        .filter(run_shifts::runner.eq(runner))
        .filter(run_shifts::metric.eq(metric))
        .filter(run_shifts::git_sha.eq(sha))
        .count()
        .get_result(conn)?;
    if exists == 0 {
        diesel::insert_into(run_shifts::table)
            .values((
                run_shifts::project.eq(project),
                run_shifts::runner.eq(runner),
                run_shifts::metric.eq(metric),
                run_shifts::git_sha.eq(sha),
                run_shifts::shift.eq(shift),
                run_shifts::benchmarks.eq(benchmarks),
                run_shifts::created_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Where a series' scan stands.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = cp_series)]
pub(crate) struct SeriesState {
    pub project: String,
    pub benchmark: String,
    pub metric: String,
    pub runner: String,
    /// Index in the series of the run the next update starts from.
    pub resume_index: i64,
    pub resume_created_at: i64,
    pub resume_baseline_id: String,
    /// Runs in the series at the last update.
    pub runs: i64,
    pub updated_at: i64,
}

pub(crate) fn series_state(conn: &mut DbConn, k: &SeriesKey) -> QueryResult<Option<SeriesState>> {
    cp_series::table
        .find((&k.project, &k.benchmark, &k.metric, &k.runner))
        .select(SeriesState::as_select())
        .first(conn)
        .optional()
}

pub(crate) fn save_series_state(conn: &mut DbConn, s: &SeriesState) -> QueryResult<()> {
    diesel::delete(cp_series::table.find((&s.project, &s.benchmark, &s.metric, &s.runner)))
        .execute(conn)?;
    diesel::insert_into(cp_series::table)
        .values(s)
        .execute(conn)?;
    Ok(())
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = change_points)]
pub(crate) struct PointRow {
    pub id: String,
    pub project: String,
    pub benchmark: String,
    pub metric: String,
    pub runner: String,
    pub idx: i64,
    pub baseline_id: String,
    pub git_sha: Option<String>,
    pub previous_git_sha: Option<String>,
    pub run_created_at: i64,
    #[serde(with = "crate::db::float")]
    pub level_before: f64,
    #[serde(with = "crate::db::float")]
    pub level_after: f64,
    #[serde(with = "crate::db::float")]
    pub change_pct: f64,
    #[serde(with = "crate::db::float")]
    pub p: f64,
    pub strong: bool,
    /// Final: it will not move or vanish.
    pub settled: bool,
    pub alert_id: Option<String>,
    /// When it was first found.
    pub created_at: i64,
}

/// The filter "this series" on `change_points` (a macro: the expression's type is unwieldy).
macro_rules! of_series {
    ($k:expr) => {
        change_points::project
            .eq($k.project.as_str())
            .and(change_points::benchmark.eq($k.benchmark.as_str()))
            .and(change_points::metric.eq($k.metric.as_str()))
            .and(change_points::runner.eq($k.runner.as_str()))
    };
}

/// The unsettled points of a series (`change_points_series_idx`).
pub(crate) fn pending_points(conn: &mut DbConn, k: &SeriesKey) -> QueryResult<Vec<PointRow>> {
    change_points::table
        .filter(of_series!(k))
        .filter(change_points::settled.eq(false))
        .order(change_points::idx.asc())
        .select(PointRow::as_select())
        .load(conn)
}

pub(crate) fn delete_pending(conn: &mut DbConn, k: &SeriesKey) -> QueryResult<()> {
    diesel::delete(
        change_points::table
            .filter(of_series!(k))
            .filter(change_points::settled.eq(false)),
    )
    .execute(conn)?;
    Ok(())
}

pub(crate) fn insert_point(conn: &mut DbConn, row: &PointRow) -> QueryResult<()> {
    diesel::insert_into(change_points::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// A point with its version (when the version still exists).
pub(crate) type PointWithVersion = (PointRow, Option<String>);

/// The points of one benchmark and metric, every runner class or one, oldest first
/// (`change_points_series_idx`).
pub(crate) fn list_points(
    conn: &mut DbConn,
    project: &str,
    benchmark: &str,
    metric: &str,
    runner: Option<&str>,
) -> QueryResult<Vec<PointWithVersion>> {
    let mut q = change_points::table
        .left_join(baselines::table.on(baselines::id.eq(change_points::baseline_id)))
        .filter(change_points::project.eq(project))
        .filter(change_points::benchmark.eq(benchmark))
        .filter(change_points::metric.eq(metric))
        .into_boxed();
    if let Some(r) = runner {
        q = q.filter(change_points::runner.eq(r));
    }
    q.order((
        change_points::runner.asc(),
        change_points::idx.asc(),
        change_points::id.asc(),
    ))
    .select((PointRow::as_select(), baselines::version.nullable()))
    .load(conn)
}

/// When the newest accepted change of each benchmark landed: the run of its newest point whose
/// alert was triaged `expected` (`change_points_alert_idx` via the alert's primary key).
pub(crate) fn accepted_changes(
    conn: &mut DbConn,
    project: &str,
    metric: &str,
    runner: &str,
    benchmarks: &[&str],
) -> QueryResult<Vec<(String, i64)>> {
    if benchmarks.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(String, i64)> = change_points::table
        .inner_join(alerts::table.on(alerts::id.nullable().eq(change_points::alert_id)))
        .filter(change_points::project.eq(project))
        .filter(change_points::metric.eq(metric))
        .filter(change_points::runner.eq(runner))
        .filter(change_points::benchmark.eq_any(benchmarks))
        .filter(alerts::status.eq("expected"))
        .select((change_points::benchmark, change_points::run_created_at))
        .load(conn)?;
    let mut newest: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    for (b, t) in rows {
        let e = newest.entry(b).or_insert(t);
        *e = (*e).max(t);
    }
    Ok(newest.into_iter().collect())
}
