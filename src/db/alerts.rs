//! Alerts, waivers and quarantined versions: free functions over `&mut DbConn`, called inside
//! actor transactions; each names the index it reads.

use diesel::dsl::count_star;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::schema::{alerts, baselines, failed_runs, quarantine};
use super::DbConn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, Serialize, Deserialize)]
#[diesel(table_name = alerts, treat_none_as_null = true)]
pub(crate) struct AlertRow {
    pub id: String,
    pub project: String,
    pub benchmark: String,
    pub metric: String,
    /// `gate` (a final gate failed the benchmark).
    pub source: String,
    pub gate_id: Option<String>,
    pub status: String,
    #[serde(with = "crate::db::float")]
    pub change_pct: f64,
    pub git_sha: Option<String>,
    pub previous_git_sha: Option<String>,
    pub reason: Option<String>,
    pub link: Option<String>,
    pub duplicate_of: Option<String>,
    pub waiver_owner: Option<String>,
    #[serde(with = "crate::db::float::option")]
    pub waiver_max_change_pct: Option<f64>,
    pub waiver_expires_at: Option<i64>,
    pub triaged_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub(crate) fn insert_alert(conn: &mut DbConn, row: &AlertRow) -> QueryResult<()> {
    diesel::insert_into(alerts::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// Writes `row` over the alert only if it is still as it was read (`was`: its status and
/// `updated_at` then); answers whether it was. Every change of an alert goes through here, so
/// two writers that read the same state (two replicas triaging at once, a triage racing the
/// waiver expiry or a change point) cannot both apply their step: on PostgreSQL the second
/// UPDATE waits for the first's commit, then finds the row changed and writes nothing.
pub(crate) fn update_alert(
    conn: &mut DbConn,
    row: &AlertRow,
    was: (&str, i64),
) -> QueryResult<bool> {
    let n = diesel::update(
        alerts::table
            .find(&row.id)
            .filter(alerts::status.eq(was.0))
            .filter(alerts::updated_at.eq(was.1)),
    )
    .set(row)
    .execute(conn)?;
    Ok(n == 1)
}

/// An alert of `project` (primary key).
pub(crate) fn find_alert(
    conn: &mut DbConn,
    project: &str,
    id: &str,
) -> QueryResult<Option<AlertRow>> {
    alerts::table
        .find(id)
        .filter(alerts::project.eq(project))
        .select(AlertRow::as_select())
        .first(conn)
        .optional()
}

/// The alert a gate opened for one benchmark (`alerts_gate_idx`).
pub(crate) fn alert_of_gate(
    conn: &mut DbConn,
    gate_id: &str,
    benchmark: &str,
) -> QueryResult<Option<AlertRow>> {
    alerts::table
        .filter(alerts::gate_id.eq(gate_id))
        .filter(alerts::benchmark.eq(benchmark))
        .order(alerts::created_at.asc())
        .select(AlertRow::as_select())
        .first(conn)
        .optional()
}

#[derive(Debug, Clone, Default)]
pub(crate) struct AlertFilter {
    pub project: String,
    pub status: Option<String>,
    pub benchmark: Option<String>,
    pub gate_id: Option<String>,
    /// Set for principals restricted by a benchmark filter: only these names are visible.
    pub allowed_benchmarks: Option<Vec<String>>,
    pub limit: i64,
    pub offset: i64,
}

/// A page of alerts, newest first, and the total (`alerts_project_idx`).
pub(crate) fn list_alerts(conn: &mut DbConn, f: &AlertFilter) -> QueryResult<(Vec<AlertRow>, i64)> {
    let filtered = || {
        let mut q = alerts::table
            .filter(alerts::project.eq(f.project.clone()))
            .into_boxed();
        if let Some(s) = &f.status {
            q = q.filter(alerts::status.eq(s.clone()));
        }
        if let Some(b) = &f.benchmark {
            q = q.filter(alerts::benchmark.eq(b.clone()));
        }
        if let Some(g) = &f.gate_id {
            q = q.filter(alerts::gate_id.eq(g.clone()));
        }
        if let Some(names) = &f.allowed_benchmarks {
            q = q.filter(alerts::benchmark.eq_any(names.clone()));
        }
        q
    };
    let total: i64 = filtered().count().get_result(conn)?;
    let rows = filtered()
        .order((alerts::created_at.desc(), alerts::id.desc()))
        .limit(f.limit)
        .offset(f.offset)
        .select(AlertRow::as_select())
        .load(conn)?;
    Ok((rows, total))
}

/// The benchmark's waiver in force: its newest `expected` alert of `metric` whose waiver has not
/// expired (`alerts_benchmark_idx`).
pub(crate) fn active_waiver(
    conn: &mut DbConn,
    project: &str,
    benchmark: &str,
    metric: &str,
    now: i64,
) -> QueryResult<Option<AlertRow>> {
    alerts::table
        .filter(alerts::project.eq(project))
        .filter(alerts::benchmark.eq(benchmark))
        .filter(alerts::metric.eq(metric))
        .filter(alerts::status.eq("expected"))
        .filter(alerts::waiver_expires_at.gt(now))
        .order(alerts::waiver_expires_at.desc())
        .select(AlertRow::as_select())
        .first(conn)
        .optional()
}

#[derive(Debug, Clone, Default)]
pub(crate) struct WaiverFilter {
    pub project: String,
    pub benchmark: Option<String>,
    /// Also waivers that ran out (their alert reopened and not triaged again since).
    pub include_expired: bool,
    pub now: i64,
    /// Set for principals restricted by a benchmark filter: only these names are visible.
    pub allowed_benchmarks: Option<Vec<String>>,
    pub limit: i64,
    pub offset: i64,
}

/// A page of a project's waivers, soonest expiry first, and the total
/// (`alerts_project_waiver_idx`). A waiver in force belongs to an `expected` alert and has not
/// expired; an expired one stays on its alert until the alert is triaged again.
pub(crate) fn list_waivers(
    conn: &mut DbConn,
    f: &WaiverFilter,
) -> QueryResult<(Vec<AlertRow>, i64)> {
    let filtered = || {
        let mut q = alerts::table
            .filter(alerts::project.eq(f.project.clone()))
            .filter(alerts::waiver_expires_at.is_not_null())
            .into_boxed();
        if !f.include_expired {
            q = q
                .filter(alerts::status.eq("expected"))
                .filter(alerts::waiver_expires_at.gt(f.now));
        }
        if let Some(b) = &f.benchmark {
            q = q.filter(alerts::benchmark.eq(b.clone()));
        }
        if let Some(names) = &f.allowed_benchmarks {
            q = q.filter(alerts::benchmark.eq_any(names.clone()));
        }
        q
    };
    let total: i64 = filtered().count().get_result(conn)?;
    if total <= f.offset {
        return Ok((Vec::new(), total));
    }
    let rows = filtered()
        .order((alerts::waiver_expires_at.asc(), alerts::id.asc()))
        .limit(f.limit)
        .offset(f.offset)
        .select(AlertRow::as_select())
        .load(conn)?;
    Ok((rows, total))
}

/// `expected` alerts whose waiver ran out (`alerts_waiver_idx`), at most `limit`.
pub(crate) fn expired_waivers(
    conn: &mut DbConn,
    now: i64,
    limit: i64,
) -> QueryResult<Vec<AlertRow>> {
    alerts::table
        .filter(alerts::status.eq("expected"))
        .filter(alerts::waiver_expires_at.le(now))
        .order(alerts::waiver_expires_at.asc())
        .limit(limit)
        .select(AlertRow::as_select())
        .load(conn)
}

/// Alerts per (benchmark, status) of a project (`alerts_benchmark_idx`).
pub(crate) fn counts(conn: &mut DbConn, project: &str) -> QueryResult<Vec<(String, String, i64)>> {
    alerts::table
        .filter(alerts::project.eq(project))
        .group_by((alerts::benchmark, alerts::status))
        .select((alerts::benchmark, alerts::status, count_star()))
        .order(alerts::benchmark.asc())
        .load(conn)
}

/// The runs a gate failed for one benchmark re-enter its history (an accepted regression).
pub(crate) fn unmark_failed(
    conn: &mut DbConn,
    project: &str,
    benchmark: &str,
    gate_id: &str,
) -> QueryResult<usize> {
    let of_gate = failed_runs::table
        .filter(failed_runs::project.eq(project))
        .filter(failed_runs::benchmark.eq(benchmark))
        .filter(failed_runs::gate_id.eq(gate_id));
    let runs: Vec<String> = of_gate.select(failed_runs::run_id).load(conn)?;
    for r in &runs {
        super::gates::set_failed(conn, project, benchmark, r, false)?;
    }
    diesel::delete(of_gate).execute(conn)
}

/// The gate that failed this run of a benchmark, if one did (primary key).
pub(crate) fn failing_gate(
    conn: &mut DbConn,
    project: &str,
    benchmark: &str,
    run_id: &str,
) -> QueryResult<Option<String>> {
    // On the concrete connection: every upload asks (see `baselines::version_taken`).
    crate::on_backend!(conn, c => failed_runs::table
        .find((project, benchmark, run_id))
        .select(failed_runs::gate_id)
        .first(c)
        .optional())
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = quarantine)]
pub(crate) struct QuarantineRow {
    pub baseline_id: String,
    pub project: String,
    pub benchmark: String,
    pub gate_id: String,
    pub alert_id: Option<String>,
    pub created_at: i64,
}

pub(crate) fn insert_quarantine(conn: &mut DbConn, row: &QuarantineRow) -> QueryResult<()> {
    diesel::insert_into(quarantine::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// Why a version is quarantined, if it is (primary key).
pub(crate) fn quarantine_of(
    conn: &mut DbConn,
    baseline_id: &str,
) -> QueryResult<Option<QuarantineRow>> {
    quarantine::table
        .find(baseline_id)
        .select(QuarantineRow::as_select())
        .first(conn)
        .optional()
}

/// Which of these versions are quarantined (primary-key lookups).
pub(crate) fn quarantined_among(conn: &mut DbConn, ids: &[String]) -> QueryResult<Vec<String>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    quarantine::table
        .filter(quarantine::baseline_id.eq_any(ids))
        .select(quarantine::baseline_id)
        .load(conn)
}

/// Ends the quarantine of every version held by an alert; returns their (project, benchmark)
/// (`quarantine_alert_idx`).
pub(crate) fn release(conn: &mut DbConn, alert_id: &str) -> QueryResult<Vec<(String, String)>> {
    let held: Vec<(String, String)> = quarantine::table
        .filter(quarantine::alert_id.eq(alert_id))
        .select((quarantine::project, quarantine::benchmark))
        .load(conn)?;
    diesel::delete(quarantine::table.filter(quarantine::alert_id.eq(alert_id))).execute(conn)?;
    Ok(held)
}

/// An alert of a benchmark and metric raised for one of the commits `shas`, if any
/// (`alerts_benchmark_idx`): a change point in that range is the same change.
pub(crate) fn alert_for_commits(
    conn: &mut DbConn,
    project: &str,
    benchmark: &str,
    metric: &str,
    shas: &[String],
) -> QueryResult<Option<String>> {
    if shas.is_empty() {
        return Ok(None);
    }
    alerts::table
        .filter(alerts::project.eq(project))
        .filter(alerts::benchmark.eq(benchmark))
        .filter(alerts::metric.eq(metric))
        .filter(alerts::git_sha.eq_any(shas))
        .order(alerts::created_at.asc())
        .select(alerts::id)
        .first(conn)
        .optional()
}

/// Regression alerts of a benchmark and metric still open (`untriaged` or `acknowledged`) that
/// were opened before `before` (`alerts_benchmark_idx`).
pub(crate) fn open_before(
    conn: &mut DbConn,
    project: &str,
    benchmark: &str,
    metric: &str,
    before: i64,
) -> QueryResult<Vec<AlertRow>> {
    alerts::table
        .filter(alerts::project.eq(project))
        .filter(alerts::benchmark.eq(benchmark))
        .filter(alerts::metric.eq(metric))
        .filter(alerts::status.eq_any(["untriaged", "acknowledged"]))
        .filter(alerts::created_at.lt(before))
        .select(AlertRow::as_select())
        .load(conn)
}

/// The live versions an alert holds in quarantine, oldest first (`quarantine_alert_idx`, then
/// primary-key lookups).
pub(crate) fn quarantined_versions(
    conn: &mut DbConn,
    alert_id: &str,
) -> QueryResult<Vec<(String, String, i64)>> {
    let ids: Vec<String> = quarantine::table
        .filter(quarantine::alert_id.eq(alert_id))
        .select(quarantine::baseline_id)
        .load(conn)?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    baselines::table
        .filter(baselines::id.eq_any(ids))
        .filter(baselines::deleted_at.is_null())
        .order((baselines::created_at.asc(), baselines::id.asc()))
        .select((
            baselines::benchmark,
            baselines::version,
            baselines::created_at,
        ))
        .load(conn)
}
