//! The gate's storage: per-run summaries (its history), gates and their runs, runs a final gate
//! failed, and gate settings. Free functions over `&mut DbConn`, called inside actor
//! transactions; each names the index it reads.

use diesel::dsl::{exists, not};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::schema::{
    backfill_state, baselines, failed_runs, gate_benchmarks, gate_runs, gate_settings, gates,
    run_stats,
};
use super::DbConn;
use crate::domain::summary::RunSummary;

/// One run of one metric of a stored baseline version.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = run_stats)]
pub(crate) struct RunStatRow {
    pub baseline_id: String,
    pub metric: String,
    pub project: String,
    pub benchmark: String,
    pub runner: String,
    pub run_id: String,
    pub git_sha: Option<String>,
    #[serde(with = "crate::db::float")]
    pub center: f64,
    #[serde(with = "crate::db::float")]
    pub within_sd: f64,
    pub n: i64,
    #[serde(with = "crate::db::float")]
    pub resolution: f64,
    pub created_at: i64,
    /// A final gate failed this run: not history.
    pub failed: bool,
    /// Its version was deleted: not history.
    pub deleted: bool,
}

/// A stored run whose summaries become `run_stats` rows (upload, a gate's record, back-fill).
pub(crate) struct StoredRun<'a> {
    pub baseline_id: &'a str,
    pub project: &'a str,
    pub benchmark: &'a str,
    pub git_sha: Option<&'a str>,
    pub created_at: i64,
    pub runner: &'a str,
    pub run_id: &'a str,
    pub failed: bool,
    pub deleted: bool,
}

impl StoredRun<'_> {
    /// One row per summarised metric.
    pub(crate) fn rows(&self, summaries: &[(&'static str, RunSummary)]) -> Vec<RunStatRow> {
        summaries
            .iter()
            .map(|(metric, s)| RunStatRow {
                baseline_id: self.baseline_id.to_owned(),
                metric: (*metric).to_owned(),
                project: self.project.to_owned(),
                benchmark: self.benchmark.to_owned(),
                runner: self.runner.to_owned(),
                run_id: self.run_id.to_owned(),
                git_sha: self.git_sha.map(str::to_owned),
                center: s.center,
                within_sd: s.within_sd,
                n: i64::from(s.n),
                resolution: s.resolution,
                created_at: self.created_at,
                failed: self.failed,
                deleted: self.deleted,
            })
            .collect()
    }
}

/// A history point as the gate reads it.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct HistoryRow {
    pub git_sha: Option<String>,
    pub center: f64,
    pub within_sd: f64,
    pub n: i64,
    pub resolution: f64,
}

/// Inserts a run's summaries, on the concrete backend (`MultiConnection` has no batch insert):
/// on PostgreSQL one multi-row `INSERT`, on SQLite one cached single-row statement per row.
pub(crate) fn insert_run_stats(conn: &mut DbConn, rows: &[RunStatRow]) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    match conn {
        // One round trip for all of them.
        DbConn::Pg(c) => {
            diesel::insert_into(run_stats::table)
                .values(rows)
                .execute(c)?;
        }
        // A row at a time: one prepared statement, where a multi-row insert is built and
        // prepared anew for each count of rows. The columns are bound one by one, as in
        // `baselines::insert` (which says why), so the statement is found by its type: every
        // upload runs it once per metric.
        DbConn::Sqlite(c) => {
            for r in rows {
                // Every field named: a column added to the row cannot be left out here.
                let RunStatRow {
                    baseline_id,
                    metric,
                    project,
                    benchmark,
                    runner,
                    run_id,
                    git_sha,
                    center,
                    within_sd,
                    n,
                    resolution,
                    created_at,
                    failed,
                    deleted,
                } = r;
                diesel::insert_into(run_stats::table)
                    .values((
                        run_stats::baseline_id.eq(baseline_id),
                        run_stats::metric.eq(metric),
                        run_stats::project.eq(project),
                        run_stats::benchmark.eq(benchmark),
                        run_stats::runner.eq(runner),
                        run_stats::run_id.eq(run_id),
                        run_stats::git_sha.eq(git_sha.as_deref()),
                        run_stats::center.eq(*center),
                        run_stats::within_sd.eq(*within_sd),
                        run_stats::n.eq(*n),
                        run_stats::resolution.eq(*resolution),
                        run_stats::created_at.eq(*created_at),
                        run_stats::failed.eq(*failed),
                        run_stats::deleted.eq(*deleted),
                    ))
                    .execute(c)?;
            }
        }
    }
    Ok(())
}

/// Which history a gate reads for one benchmark.
pub(crate) struct Series<'a> {
    pub project: &'a str,
    pub benchmark: &'a str,
    pub metric: &'a str,
    pub runner: &'a str,
    /// Only runs stored at or before this instant (a pull request's merge base).
    pub until: Option<i64>,
    /// Only runs stored after this instant (the benchmark's last accepted change).
    pub since: Option<i64>,
    /// The runs being judged (by `run.id`) are not their own history.
    pub exclude_runs: &'a [String],
    pub limit: i64,
}

/// The newest `limit` runs of a series, newest first: live versions only, runs a final gate
/// failed left out (flags on the row). One range scan of `run_stats_series_idx`.
pub(crate) fn history(conn: &mut DbConn, s: &Series<'_>) -> QueryResult<Vec<HistoryRow>> {
    let mut q = run_stats::table
        .filter(run_stats::project.eq(s.project))
        .filter(run_stats::benchmark.eq(s.benchmark))
        .filter(run_stats::metric.eq(s.metric))
        .filter(run_stats::runner.eq(s.runner))
        .filter(run_stats::failed.eq(false))
        .filter(run_stats::deleted.eq(false))
        .into_boxed();
    if let Some(t) = s.until {
        q = q.filter(run_stats::created_at.le(t));
    }
    if let Some(t) = s.since {
        q = q.filter(run_stats::created_at.gt(t));
    }
    if !s.exclude_runs.is_empty() {
        q = q.filter(run_stats::run_id.ne_all(s.exclude_runs));
    }
    q.order((run_stats::created_at.desc(), run_stats::baseline_id.desc()))
        .limit(s.limit)
        .select((
            run_stats::git_sha,
            run_stats::center,
            run_stats::within_sd,
            run_stats::n,
            run_stats::resolution,
        ))
        .load(conn)
}

/// When the newest run of a benchmark recorded for commit `sha` was stored (`run_stats_sha_idx`).
pub(crate) fn stored_at_sha(
    conn: &mut DbConn,
    project: &str,
    benchmark: &str,
    sha: &str,
) -> QueryResult<Option<i64>> {
    run_stats::table
        .filter(run_stats::project.eq(project))
        .filter(run_stats::benchmark.eq(benchmark))
        .filter(run_stats::git_sha.eq(sha))
        .order(run_stats::created_at.desc())
        .select(run_stats::created_at)
        .first(conn)
        .optional()
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, Serialize, Deserialize)]
#[diesel(table_name = gates)]
pub(crate) struct GateRow {
    pub id: String,
    pub project: String,
    pub status: String,
    pub is_final: bool,
    pub attempt: i64,
    pub max_attempts: i64,
    pub git_ref: Option<String>,
    pub git_sha: Option<String>,
    pub base_sha: Option<String>,
    pub runner: Option<String>,
    pub record: bool,
    /// JSON array of metric names.
    pub metrics: String,
    /// JSON of the settings the gate decided with.
    pub settings: String,
    /// JSON of the decision (suite, benchmarks, confirm).
    pub result: String,
    pub deadline: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

pub(crate) fn insert_gate(conn: &mut DbConn, row: &GateRow) -> QueryResult<()> {
    diesel::insert_into(gates::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// Rewrites the decision of a gate after an attempt.
pub(crate) fn update_gate(conn: &mut DbConn, row: &GateRow) -> QueryResult<()> {
    diesel::update(gates::table.find(&row.id))
        .set(row)
        .execute(conn)?;
    Ok(())
}

/// A gate of `project` (primary key).
pub(crate) fn find_gate(
    conn: &mut DbConn,
    project: &str,
    id: &str,
) -> QueryResult<Option<GateRow>> {
    gates::table
        .find(id)
        .filter(gates::project.eq(project))
        .select(GateRow::as_select())
        .first(conn)
        .optional()
}

#[derive(Debug, Clone, Default)]
pub(crate) struct GateFilter {
    pub project: String,
    pub status: Option<String>,
    pub git_ref: Option<String>,
    /// Leaves out every gate holding a run of one of these benchmarks (those a
    /// benchmark-restricted caller may not read); empty = every gate.
    pub hidden_benchmarks: Vec<String>,
    pub limit: i64,
    pub offset: i64,
}

/// Every benchmark that some gate of `project` has held a run of (for a restricted caller's
/// view; `gate_benchmarks`' primary key). Names whose gates are gone may be among them.
pub(crate) fn gate_benchmarks(conn: &mut DbConn, project: &str) -> QueryResult<Vec<String>> {
    gate_benchmarks::table
        .filter(gate_benchmarks::project.eq(project))
        .select(gate_benchmarks::benchmark)
        .order(gate_benchmarks::benchmark)
        .load(conn)
}

/// A page of gates, newest first, and the total (`gates_project_idx`).
pub(crate) fn list_gates(conn: &mut DbConn, f: &GateFilter) -> QueryResult<(Vec<GateRow>, i64)> {
    let filtered = || {
        let mut q = gates::table
            .filter(gates::project.eq(f.project.clone()))
            .into_boxed();
        if let Some(s) = &f.status {
            q = q.filter(gates::status.eq(s.clone()));
        }
        if let Some(r) = &f.git_ref {
            q = q.filter(gates::git_ref.eq(r.clone()));
        }
        if !f.hidden_benchmarks.is_empty() {
            q = q.filter(not(exists(
                gate_runs::table
                    .filter(gate_runs::gate_id.eq(gates::id))
                    .filter(gate_runs::benchmark.eq_any(f.hidden_benchmarks.clone())),
            )));
        }
        q
    };
    let total: i64 = filtered().count().get_result(conn)?;
    let rows = filtered()
        .order((gates::created_at.desc(), gates::id.desc()))
        .limit(f.limit)
        .offset(f.offset)
        .select(GateRow::as_select())
        .load(conn)?;
    Ok((rows, total))
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = gate_runs)]
pub(crate) struct GateRunRow {
    pub gate_id: String,
    pub attempt: i64,
    pub benchmark: String,
    pub run_id: String,
    pub runner: String,
    pub receipt: String,
    /// JSON `{metric: {center, within_sd, n, resolution}}`.
    pub summaries: String,
    pub created_at: i64,
}

/// Stores runs of a gate of `project`, and notes their benchmarks in `gate_benchmarks`.
pub(crate) fn insert_gate_runs(
    conn: &mut DbConn,
    project: &str,
    rows: &[GateRunRow],
) -> QueryResult<()> {
    for r in rows {
        diesel::insert_into(gate_runs::table)
            .values(r)
            .execute(conn)?;
    }
    let mut names: Vec<&str> = rows.iter().map(|r| r.benchmark.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for benchmark in names {
        crate::on_backend!(conn, c => diesel::insert_into(gate_benchmarks::table)
            .values((
                gate_benchmarks::project.eq(project),
                gate_benchmarks::benchmark.eq(benchmark),
            ))
            .on_conflict_do_nothing()
            .execute(c))?;
    }
    Ok(())
}

/// Every run of a gate, by attempt (primary key range).
pub(crate) fn gate_runs_of(conn: &mut DbConn, gate_id: &str) -> QueryResult<Vec<GateRunRow>> {
    gate_runs::table
        .filter(gate_runs::gate_id.eq(gate_id))
        .order((gate_runs::attempt.asc(), gate_runs::benchmark.asc()))
        .select(GateRunRow::as_select())
        .load(conn)
}

/// Whether a benchmark's run of this id was already submitted to this gate (`gate_runs_run_idx`).
pub(crate) fn gate_has_run(
    conn: &mut DbConn,
    gate_id: &str,
    benchmark: &str,
    run_id: &str,
) -> QueryResult<bool> {
    diesel::select(exists(
        gate_runs::table
            .filter(gate_runs::gate_id.eq(gate_id))
            .filter(gate_runs::run_id.eq(run_id))
            .filter(gate_runs::benchmark.eq(benchmark)),
    ))
    .get_result(conn)
}

/// Marks runs of a benchmark as failed by a final gate (and their summaries as not history); a
/// run already marked stays as it is.
pub(crate) fn mark_failed(
    conn: &mut DbConn,
    project: &str,
    benchmark: &str,
    run_id: &str,
    gate_id: &str,
    now: i64,
) -> QueryResult<()> {
    let taken: bool = diesel::select(exists(
        failed_runs::table.find((project, benchmark, run_id)),
    ))
    .get_result(conn)?;
    if !taken {
        diesel::insert_into(failed_runs::table)
            .values((
                failed_runs::project.eq(project),
                failed_runs::benchmark.eq(benchmark),
                failed_runs::run_id.eq(run_id),
                failed_runs::gate_id.eq(gate_id),
                failed_runs::created_at.eq(now),
            ))
            .execute(conn)?;
    }
    set_failed(conn, project, benchmark, run_id, true)
}

/// Sets the `failed` flag of a run's summaries (`run_stats_run_idx`).
pub(crate) fn set_failed(
    conn: &mut DbConn,
    project: &str,
    benchmark: &str,
    run_id: &str,
    failed: bool,
) -> QueryResult<()> {
    diesel::update(
        run_stats::table
            .filter(run_stats::project.eq(project))
            .filter(run_stats::benchmark.eq(benchmark))
            .filter(run_stats::run_id.eq(run_id)),
    )
    .set(run_stats::failed.eq(failed))
    .execute(conn)?;
    Ok(())
}

/// A deleted version's summaries leave the history (primary-key prefix).
pub(crate) fn mark_deleted(conn: &mut DbConn, baseline_id: &str) -> QueryResult<()> {
    diesel::update(run_stats::table.filter(run_stats::baseline_id.eq(baseline_id)))
        .set(run_stats::deleted.eq(true))
        .execute(conn)?;
    Ok(())
}

/// A project's gate settings document, if it has one.
pub(crate) fn settings_of(conn: &mut DbConn, project: &str) -> QueryResult<Option<String>> {
    gate_settings::table
        .find(project)
        .select(gate_settings::settings)
        .first(conn)
        .optional()
}

/// Stores a project's gate settings (delete then insert: no upsert DSL across backends; the
/// caller's transaction and the project's writer shard order concurrent changes).
pub(crate) fn put_settings(
    conn: &mut DbConn,
    project: &str,
    settings: &str,
    now: i64,
) -> QueryResult<()> {
    diesel::delete(gate_settings::table.find(project)).execute(conn)?;
    diesel::insert_into(gate_settings::table)
        .values((
            gate_settings::project.eq(project),
            gate_settings::settings.eq(settings),
            gate_settings::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// The back-fill of `run_stats` for baselines stored before the table existed.
pub(crate) const BACKFILL_TASK: &str = "run_stats";

/// Summarises one batch of baselines that have no run summary yet; `Ok(true)` once nothing is
/// left. Runs in the caller's write transaction; the position is kept, so a restart resumes.
pub(crate) fn backfill_run_stats(conn: &mut DbConn, batch: i64) -> QueryResult<bool> {
    let (after, done) = backfill_position(conn, BACKFILL_TASK)?.unwrap_or_default();
    if done {
        return Ok(true);
    }
    let rows = baselines_without_stats(conn, &after, batch)?;
    let Some(last) = rows.last().map(|r| r.id.clone()) else {
        set_backfill_position(conn, BACKFILL_TASK, &after, true)?;
        return Ok(true);
    };
    for UnsummarisedRow {
        id,
        project,
        benchmark,
        git_sha,
        receipt,
        created_at,
        deleted_at,
    } in &rows
    {
        // A receipt the server accepted once is valid; one that no longer parses is skipped.
        let Ok(s) = crate::domain::receipt::validate_stored(receipt) else {
            continue;
        };
        let runner = crate::domain::receipt::runner_class(&s.host_class, None);
        let failed: bool = diesel::select(exists(failed_runs::table.find((
            project.as_str(),
            benchmark.as_str(),
            s.run_id.as_str(),
        ))))
        .get_result(conn)?;
        let stats = StoredRun {
            baseline_id: id,
            project,
            benchmark,
            git_sha: git_sha.as_deref(),
            created_at: *created_at,
            runner: &runner,
            run_id: &s.run_id,
            failed,
            deleted: deleted_at.is_some(),
        }
        .rows(&s.runs);
        insert_run_stats(conn, &stats)?;
    }
    let finished = (rows.len() as i64) < batch;
    set_backfill_position(conn, BACKFILL_TASK, &last, finished)?;
    Ok(finished)
}

/// Where a back-fill task stands: `(position, done)`.
pub(crate) fn backfill_position(
    conn: &mut DbConn,
    task: &str,
) -> QueryResult<Option<(String, bool)>> {
    backfill_state::table
        .find(task)
        .select((backfill_state::position, backfill_state::done))
        .first(conn)
        .optional()
}

pub(crate) fn set_backfill_position(
    conn: &mut DbConn,
    task: &str,
    position: &str,
    done: bool,
) -> QueryResult<()> {
    diesel::delete(backfill_state::table.find(task)).execute(conn)?;
    diesel::insert_into(backfill_state::table)
        .values((
            backfill_state::task.eq(task),
            backfill_state::position.eq(position),
            backfill_state::done.eq(done),
        ))
        .execute(conn)?;
    Ok(())
}

/// A baseline version without run summaries.
#[derive(Debug, Queryable)]
struct UnsummarisedRow {
    id: String,
    project: String,
    benchmark: String,
    git_sha: Option<String>,
    receipt: String,
    created_at: i64,
    deleted_at: Option<i64>,
}

/// Baseline versions after `after` (by id) that have no run summary yet, with their receipt
/// and what a summary row needs (primary-key order; the anti-join is a primary-key lookup).
fn baselines_without_stats(
    conn: &mut DbConn,
    after: &str,
    limit: i64,
) -> QueryResult<Vec<UnsummarisedRow>> {
    baselines::table
        .filter(baselines::id.gt(after))
        .filter(baselines::source.ne("promote"))
        .filter(not(exists(
            run_stats::table.filter(run_stats::baseline_id.eq(baselines::id)),
        )))
        .order(baselines::id.asc())
        .limit(limit)
        .select((
            baselines::id,
            baselines::project,
            baselines::benchmark,
            baselines::git_sha,
            baselines::receipt,
            baselines::created_at,
            baselines::deleted_at,
        ))
        .load(conn)
}
