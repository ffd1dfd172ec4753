//! `export` and `import`: every table as JSON lines, between any two backends.
//!
//! Export streams each table with a row cursor (`load_iter`), so memory stays constant whatever
//! the database size. Import reads lines one at a time and inserts them in batches with
//! `ON CONFLICT DO NOTHING`, so running it twice changes nothing. Keys travel as hashes only.
//! The derived counters (`benchmarks`, `verdict_counts`) are recomputed from the imported rows at
//! the end, so they stay exact even when the target already held data. The gate's tables travel
//! too (run summaries, gates and their runs, settings, alerts, quarantine, change points), so a
//! moved server judges, triages and keeps regressed runs out of `latest` as before.

use std::io::{BufRead, Write};

use diesel::connection::{DefaultLoadingMode, SimpleConnection};
use diesel::prelude::*;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::db::alerts::{AlertRow, QuarantineRow};
use crate::db::audit::AuditRow;
use crate::db::baselines::BaselineRow;
use crate::db::changepoints::{PointRow as ChangePointRow, SeriesState as CpSeriesRow};
use crate::db::decisions::DecisionRow;
use crate::db::fleet::{EventRow, GroupRow, MemberRow};
use crate::db::gates::{GateRow, GateRunRow, RunStatRow};
use crate::db::keys::KeyRow;
use crate::db::schema::{
    alerts, api_keys, audit_events, backfill_state, baseline_tags, baselines, benchmarks,
    change_points, cp_series, decision_rules, decisions, dependency_events, failed_runs,
    fleet_groups, fleet_members, gate_runs, gate_settings, gates, idempotency_keys, quarantine,
    run_shifts, run_stats, verdict_counts, verdicts,
};
use crate::db::verdicts::VerdictRow;
use crate::db::{write_tx, DbConn};
use crate::on_backend;

pub(crate) const FORMAT: &str = "perfgate-export";
/// Version of the export format (the header line's `version`).
pub(crate) const FORMAT_VERSION: u32 = 1;
const BATCH: usize = 500;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = baseline_tags)]
pub struct TagRow {
    pub baseline_id: String,
    pub tag: String,
}

/// A row of `benchmarks`: a benchmark and its live baseline count.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = benchmarks)]
pub struct BenchmarkCountRow {
    pub project: String,
    pub benchmark: String,
    pub baseline_count: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A row of `idempotency_keys`, whole.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = idempotency_keys)]
pub struct IdempotencyKeyRow {
    pub project: String,
    /// Exports made before records were scoped to their caller have none: such records match
    /// no caller (and would have expired by now).
    #[serde(default)]
    pub principal: String,
    pub idem_key: String,
    pub request_hash: String,
    pub baseline_id: String,
    pub response: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = verdict_counts)]
pub struct VerdictCountRow {
    pub project: String,
    pub benchmark: String,
    pub status: String,
    pub n: i64,
}

/// A row of `decision_rules`: one accepted rule of a decision.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = decision_rules)]
pub struct DecisionRuleRow {
    pub decision_id: String,
    pub project: String,
    pub rule: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = failed_runs)]
pub struct FailedRunRow {
    pub project: String,
    pub benchmark: String,
    pub run_id: String,
    pub gate_id: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = gate_settings)]
pub struct GateSettingsRow {
    pub project: String,
    pub settings: String,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = run_shifts)]
pub struct RunShiftRow {
    pub project: String,
    pub runner: String,
    pub metric: String,
    pub git_sha: String,
    #[serde(with = "crate::db::float")]
    pub shift: f64,
    pub benchmarks: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = backfill_state)]
pub struct BackfillRow {
    pub task: String,
    pub position: String,
    pub done: bool,
}

#[derive(Serialize)]
struct Header {
    format: &'static str,
    version: u32,
    exported_at: String,
}

#[derive(Serialize)]
struct Line<'a, T> {
    table: &'a str,
    row: &'a T,
}

#[derive(Deserialize)]
struct InLine {
    table: String,
    row: serde_json::Value,
}

fn progress(label: &str) -> ProgressBar {
    // Drawn only when stderr is a terminal; hidden in pipes and CI logs.
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} {pos} rows ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.set_message(label.to_owned());
    pb
}

type IoErr = Box<dyn std::error::Error + Send + Sync>;

macro_rules! export_table {
    ($conn:expr, $out:expr, $pb:expr, $name:literal, $table:path, $row:ty, $order:expr) => {{
        $pb.set_message($name);
        let mut n = 0u64;
        on_backend!($conn, c => {
            let rows = $table
                .select(<$row>::as_select())
                .order($order)
                .load_iter::<$row, DefaultLoadingMode>(c)?;
            for r in rows {
                let r = r?;
                serde_json::to_writer(&mut *$out, &Line { table: $name, row: &r })?;
                $out.write_all(b"\n")?;
                n += 1;
                $pb.inc(1);
            }
        });
        n
    }};
}

/// Writes the whole database as JSON lines; returns the number of rows.
pub(crate) fn export(conn: &mut DbConn, out: &mut impl Write) -> Result<u64, IoErr> {
    let pb = progress("exporting");
    serde_json::to_writer(
        &mut *out,
        &Header {
            format: FORMAT,
            version: FORMAT_VERSION,
            exported_at: crate::domain::time::to_rfc3339(crate::domain::time::now_micros()),
        },
    )?;
    out.write_all(b"\n")?;
    let mut total = 0;
    // Parents before children (baseline_tags references baselines).
    total += export_table!(
        conn,
        out,
        pb,
        "api_keys",
        api_keys::table,
        KeyRow,
        api_keys::id
    );
    total += export_table!(
        conn,
        out,
        pb,
        "audit_events",
        audit_events::table,
        AuditRow,
        audit_events::id
    );
    total += export_table!(
        conn,
        out,
        pb,
        "baselines",
        baselines::table,
        BaselineRow,
        baselines::id
    );
    total += export_table!(
        conn,
        out,
        pb,
        "baseline_tags",
        baseline_tags::table,
        TagRow,
        (baseline_tags::baseline_id, baseline_tags::tag)
    );
    total += export_table!(
        conn,
        out,
        pb,
        "benchmarks",
        benchmarks::table,
        BenchmarkCountRow,
        (benchmarks::project, benchmarks::benchmark)
    );
    total += export_table!(
        conn,
        out,
        pb,
        "idempotency_keys",
        idempotency_keys::table,
        IdempotencyKeyRow,
        (
            idempotency_keys::project,
            idempotency_keys::principal,
            idempotency_keys::idem_key
        )
    );
    total += export_table!(
        conn,
        out,
        pb,
        "verdicts",
        verdicts::table,
        VerdictRow,
        verdicts::id
    );
    total += export_table!(
        conn,
        out,
        pb,
        "verdict_counts",
        verdict_counts::table,
        VerdictCountRow,
        (
            verdict_counts::project,
            verdict_counts::benchmark,
            verdict_counts::status
        )
    );
    total += export_table!(
        conn,
        out,
        pb,
        "decisions",
        decisions::table,
        DecisionRow,
        decisions::id
    );
    total += export_table!(
        conn,
        out,
        pb,
        "decision_rules",
        decision_rules::table,
        DecisionRuleRow,
        (decision_rules::decision_id, decision_rules::rule)
    );
    total += export_table!(
        conn,
        out,
        pb,
        "dependency_events",
        dependency_events::table,
        EventRow,
        dependency_events::id
    );
    total += export_table!(
        conn,
        out,
        pb,
        "fleet_groups",
        fleet_groups::table,
        GroupRow,
        fleet_groups::group_key
    );
    total += export_table!(
        conn,
        out,
        pb,
        "fleet_members",
        fleet_members::table,
        MemberRow,
        (
            fleet_members::group_key,
            fleet_members::project,
            fleet_members::benchmark
        )
    );
    total += export_table!(
        conn,
        out,
        pb,
        "run_stats",
        run_stats::table,
        RunStatRow,
        (run_stats::baseline_id, run_stats::metric)
    );
    total += export_table!(conn, out, pb, "gates", gates::table, GateRow, gates::id);
    total += export_table!(
        conn,
        out,
        pb,
        "gate_runs",
        gate_runs::table,
        GateRunRow,
        (gate_runs::gate_id, gate_runs::attempt, gate_runs::benchmark)
    );
    total += export_table!(
        conn,
        out,
        pb,
        "failed_runs",
        failed_runs::table,
        FailedRunRow,
        (
            failed_runs::project,
            failed_runs::benchmark,
            failed_runs::run_id
        )
    );
    total += export_table!(
        conn,
        out,
        pb,
        "gate_settings",
        gate_settings::table,
        GateSettingsRow,
        gate_settings::project
    );
    total += export_table!(conn, out, pb, "alerts", alerts::table, AlertRow, alerts::id);
    total += export_table!(
        conn,
        out,
        pb,
        "quarantine",
        quarantine::table,
        QuarantineRow,
        quarantine::baseline_id
    );
    total += export_table!(
        conn,
        out,
        pb,
        "run_shifts",
        run_shifts::table,
        RunShiftRow,
        (
            run_shifts::project,
            run_shifts::runner,
            run_shifts::metric,
            run_shifts::git_sha
        )
    );
    total += export_table!(
        conn,
        out,
        pb,
        "cp_series",
        cp_series::table,
        CpSeriesRow,
        (
            cp_series::project,
            cp_series::benchmark,
            cp_series::metric,
            cp_series::runner
        )
    );
    total += export_table!(
        conn,
        out,
        pb,
        "change_points",
        change_points::table,
        ChangePointRow,
        change_points::id
    );
    total += export_table!(
        conn,
        out,
        pb,
        "backfill_state",
        backfill_state::table,
        BackfillRow,
        backfill_state::task
    );
    out.flush()?;
    pb.finish_and_clear();
    Ok(total)
}

/// Rows waiting to be inserted, one buffer per table (only one is non-empty at a time).
#[derive(Default)]
struct Pending {
    table: Option<String>,
    keys: Vec<KeyRow>,
    audit: Vec<AuditRow>,
    baselines: Vec<BaselineRow>,
    tags: Vec<TagRow>,
    benchmarks: Vec<BenchmarkCountRow>,
    idempotency: Vec<IdempotencyKeyRow>,
    verdicts: Vec<VerdictRow>,
    verdict_counts: Vec<VerdictCountRow>,
    decisions: Vec<DecisionRow>,
    decision_rules: Vec<DecisionRuleRow>,
    events: Vec<EventRow>,
    groups: Vec<GroupRow>,
    members: Vec<MemberRow>,
    run_stats: Vec<RunStatRow>,
    gates: Vec<GateRow>,
    gate_runs: Vec<GateRunRow>,
    failed_runs: Vec<FailedRunRow>,
    gate_settings: Vec<GateSettingsRow>,
    alerts: Vec<AlertRow>,
    quarantine: Vec<QuarantineRow>,
    run_shifts: Vec<RunShiftRow>,
    cp_series: Vec<CpSeriesRow>,
    change_points: Vec<ChangePointRow>,
    backfill: Vec<BackfillRow>,
    len: usize,
}

macro_rules! insert_ignore {
    ($conn:expr, $table:path, $rows:expr) => {{
        let rows = std::mem::take(&mut $rows);
        if !rows.is_empty() {
            write_tx($conn, |conn| {
                // One statement per row: SQLite has no batch insert with ON CONFLICT in Diesel;
                // the transaction per batch keeps it fast.
                on_backend!(conn, c => {
                    for row in &rows {
                        diesel::insert_into($table)
                            .values(row)
                            .on_conflict_do_nothing()
                            .execute(c)?;
                    }
                });
                Ok::<_, diesel::result::Error>(())
            })?;
        }
    }};
}

impl Pending {
    fn push(&mut self, line: InLine) -> Result<(), IoErr> {
        let v = line.row;
        match line.table.as_str() {
            "api_keys" => self.keys.push(serde_json::from_value(v)?),
            "audit_events" => self.audit.push(serde_json::from_value(v)?),
            "baselines" => {
                let mut row: BaselineRow = serde_json::from_value(v)?;
                // Exports of older servers hold versions a gate recorded as `gate`, which the
                // published client cannot read: a gate's recording is an upload.
                if row.source == "gate" {
                    row.source = "upload".into();
                }
                self.baselines.push(row)
            }
            "baseline_tags" => self.tags.push(serde_json::from_value(v)?),
            "benchmarks" => self.benchmarks.push(serde_json::from_value(v)?),
            "idempotency_keys" => self.idempotency.push(serde_json::from_value(v)?),
            "verdicts" => self.verdicts.push(serde_json::from_value(v)?),
            "verdict_counts" => self.verdict_counts.push(serde_json::from_value(v)?),
            "decisions" => self.decisions.push(serde_json::from_value(v)?),
            "decision_rules" => self.decision_rules.push(serde_json::from_value(v)?),
            "dependency_events" => self.events.push(serde_json::from_value(v)?),
            "fleet_groups" => self.groups.push(serde_json::from_value(v)?),
            "fleet_members" => self.members.push(serde_json::from_value(v)?),
            "run_stats" => self.run_stats.push(serde_json::from_value(v)?),
            "gates" => self.gates.push(serde_json::from_value(v)?),
            "gate_runs" => self.gate_runs.push(serde_json::from_value(v)?),
            "failed_runs" => self.failed_runs.push(serde_json::from_value(v)?),
            "gate_settings" => self.gate_settings.push(serde_json::from_value(v)?),
            "alerts" => self.alerts.push(serde_json::from_value(v)?),
            "quarantine" => self.quarantine.push(serde_json::from_value(v)?),
            "run_shifts" => self.run_shifts.push(serde_json::from_value(v)?),
            "cp_series" => self.cp_series.push(serde_json::from_value(v)?),
            "change_points" => self.change_points.push(serde_json::from_value(v)?),
            "backfill_state" => self.backfill.push(serde_json::from_value(v)?),
            other => return Err(format!("unknown table {other:?} in the export").into()),
        }
        self.len += 1;
        Ok(())
    }

    fn flush(&mut self, conn: &mut DbConn) -> Result<(), IoErr> {
        insert_ignore!(conn, api_keys::table, self.keys);
        insert_ignore!(conn, audit_events::table, self.audit);
        insert_ignore!(conn, baselines::table, self.baselines);
        insert_ignore!(conn, baseline_tags::table, self.tags);
        // Counters are rebuilt from the rows at the end; inserting them is harmless.
        insert_ignore!(conn, benchmarks::table, self.benchmarks);
        insert_ignore!(conn, idempotency_keys::table, self.idempotency);
        insert_ignore!(conn, verdicts::table, self.verdicts);
        insert_ignore!(conn, verdict_counts::table, self.verdict_counts);
        insert_ignore!(conn, decisions::table, self.decisions);
        insert_ignore!(conn, decision_rules::table, self.decision_rules);
        insert_ignore!(conn, dependency_events::table, self.events);
        insert_ignore!(conn, fleet_groups::table, self.groups);
        insert_ignore!(conn, fleet_members::table, self.members);
        insert_ignore!(conn, run_stats::table, self.run_stats);
        insert_ignore!(conn, gates::table, self.gates);
        insert_ignore!(conn, gate_runs::table, self.gate_runs);
        insert_ignore!(conn, failed_runs::table, self.failed_runs);
        insert_ignore!(conn, gate_settings::table, self.gate_settings);
        insert_ignore!(conn, alerts::table, self.alerts);
        insert_ignore!(conn, quarantine::table, self.quarantine);
        insert_ignore!(conn, run_shifts::table, self.run_shifts);
        insert_ignore!(conn, cp_series::table, self.cp_series);
        insert_ignore!(conn, change_points::table, self.change_points);
        merge_progress(conn, std::mem::take(&mut self.backfill))?;
        self.len = 0;
        Ok(())
    }
}

/// Reads JSON lines (as written by [`export`]) and inserts every row that is not there yet.
/// Returns the number of rows read.
pub(crate) fn import(conn: &mut DbConn, input: impl BufRead) -> Result<u64, IoErr> {
    let pb = progress("importing");
    let mut pending = Pending::default();
    let mut n = 0u64;
    let mut position_imported = false;
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        if i == 0 {
            let h: serde_json::Value = serde_json::from_str(&line)?;
            if h.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
                return Err("not a perfgate-server export (missing header line)".into());
            }
            if h.get("version").and_then(|v| v.as_u64()) != Some(u64::from(FORMAT_VERSION)) {
                return Err(format!(
                    "unsupported export version (this server reads {FORMAT_VERSION})"
                )
                .into());
            }
            continue;
        }
        let parsed: InLine =
            serde_json::from_str(&line).map_err(|e| format!("line {}: {e}", i + 1))?;
        position_imported |= parsed.table == "backfill_state"
            && parsed.row.get("task").and_then(|t| t.as_str())
                == Some(crate::db::changepoints::WATERMARK_TASK);
        if pending.table.as_deref() != Some(parsed.table.as_str()) {
            // Tables arrive in dependency order: finish one before starting the next.
            pending.flush(conn)?;
            pending.table = Some(parsed.table.clone());
            pb.set_message(format!("importing {}", parsed.table));
        }
        pending
            .push(parsed)
            .map_err(|e| format!("line {}: {e}", i + 1))?;
        if pending.len >= BATCH {
            pending.flush(conn)?;
        }
        n += 1;
        pb.inc(1);
    }
    pending.flush(conn)?;
    restart_fill(conn, position_imported)?;
    rebuild_counters(conn)?;
    pb.finish_and_clear();
    Ok(n)
}

/// The background passes' progress (`backfill_state`) is the server's own, merged rather than
/// copied: the change-point pass's position and the start of its alerts take the earlier of the
/// two (imported runs behind the target's position would never be scanned); the start-up fill of
/// run summaries is redone by [`restart_fill`].
fn merge_progress(conn: &mut DbConn, rows: Vec<BackfillRow>) -> Result<(), IoErr> {
    use crate::db::changepoints::{ALERTS_SINCE_TASK, WATERMARK_TASK};
    use crate::db::gates::{backfill_position, set_backfill_position};
    if rows.is_empty() {
        return Ok(());
    }
    write_tx(conn, |c| {
        for row in &rows {
            if row.task != WATERMARK_TASK && row.task != ALERTS_SINCE_TASK {
                continue;
            }
            let Ok(imported) = row.position.parse::<i64>() else {
                continue;
            };
            let merged = match backfill_position(c, &row.task)? {
                Some((p, _)) => p.parse::<i64>().map_or(imported, |p| p.min(imported)),
                None => imported,
            };
            set_backfill_position(c, &row.task, &merged.to_string(), row.done)?;
        }
        Ok::<_, diesel::result::Error>(())
    })?;
    Ok(())
}

/// After an import: the start-up fill of run summaries runs again at the next start (it picks the
/// baselines that have none, such as those of an export without them), and without an imported
/// position the change-point pass starts over from the oldest run.
fn restart_fill(conn: &mut DbConn, position_imported: bool) -> Result<(), IoErr> {
    use crate::db::changepoints::WATERMARK_TASK;
    use crate::db::gates::BACKFILL_TASK;
    write_tx(conn, |c| {
        diesel::delete(backfill_state::table.find(BACKFILL_TASK)).execute(c)?;
        if !position_imported {
            diesel::delete(backfill_state::table.find(WATERMARK_TASK)).execute(c)?;
        }
        Ok::<_, diesel::result::Error>(())
    })?;
    Ok(())
}

/// Recomputes the maintained counters from the rows they count, and the gates' benchmark names
/// from their runs (the same SQL on both backends).
fn rebuild_counters(conn: &mut DbConn) -> Result<(), IoErr> {
    write_tx(conn, |c| {
        c.batch_execute(
            "INSERT INTO benchmarks (project, benchmark, baseline_count, created_at, updated_at) \
             SELECT project, benchmark, \
                    SUM(CASE WHEN deleted_at IS NULL THEN 1 ELSE 0 END), MIN(created_at), MAX(updated_at) \
             FROM baselines GROUP BY project, benchmark \
             ON CONFLICT (project, benchmark) DO UPDATE SET baseline_count = excluded.baseline_count; \
             INSERT INTO verdict_counts (project, benchmark, status, n) \
             SELECT project, benchmark, status, COUNT(*) FROM verdicts GROUP BY project, benchmark, status \
             ON CONFLICT (project, benchmark, status) DO UPDATE SET n = excluded.n; \
             INSERT INTO gate_benchmarks (project, benchmark) \
             SELECT DISTINCT g.project, r.benchmark FROM gate_runs r JOIN gates g ON g.id = r.gate_id \
             WHERE true ON CONFLICT (project, benchmark) DO NOTHING; \
             WITH expected AS ( \
                 SELECT r.baseline_id, r.metric, \
                        EXISTS (SELECT 1 FROM failed_runs f WHERE f.project = r.project \
                            AND f.benchmark = r.benchmark AND f.run_id = r.run_id) AS failed, \
                        EXISTS (SELECT 1 FROM baselines b WHERE b.id = r.baseline_id \
                            AND b.deleted_at IS NOT NULL) AS deleted \
                 FROM run_stats r) \
             UPDATE run_stats SET failed = e.failed, deleted = e.deleted FROM expected e \
             WHERE e.baseline_id = run_stats.baseline_id AND e.metric = run_stats.metric \
               AND (run_stats.failed <> e.failed OR run_stats.deleted <> e.deleted);",
        )?;
        // Replicas serving this PostgreSQL database drop their caches of latest answers.
        crate::db::notify::announce_everything(c)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_numbers_travel_as_strings() {
        let row = RunShiftRow {
            project: "p".into(),
            runner: "r".into(),
            metric: "wall_ms".into(),
            git_sha: "s".into(),
            shift: f64::NEG_INFINITY,
            benchmarks: 1,
            created_at: 0,
        };
        let text = serde_json::to_string(&row).unwrap();
        assert!(text.contains(r#""shift":"-inf""#), "{text}");
        let back: RunShiftRow = serde_json::from_str(&text).unwrap();
        assert_eq!(back.shift, f64::NEG_INFINITY);
        for (v, wire) in [(f64::INFINITY, r#""inf""#), (1.5, "1.5")] {
            let shifted = RunShiftRow {
                shift: v,
                ..back.clone()
            };
            let text = serde_json::to_string(&shifted).unwrap();
            assert!(text.contains(&format!(r#""shift":{wire}"#)), "{text}");
            let again: RunShiftRow = serde_json::from_str(&text).unwrap();
            assert_eq!(again.shift, v);
        }
        let nan = serde_json::to_string(&RunShiftRow {
            shift: f64::NAN,
            ..back.clone()
        })
        .unwrap();
        let again: RunShiftRow = serde_json::from_str(&nan).unwrap();
        assert!(again.shift.is_nan());
        let bad = text.replace(r#""shift":"-inf""#, r#""shift":"huge""#);
        assert!(serde_json::from_str::<RunShiftRow>(&bad).is_err());
    }
}
