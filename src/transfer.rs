//! `export` and `import`: every table as JSON lines, between any two backends.
//!
//! Export streams each table with a row cursor (`load_iter`), so memory stays constant whatever
//! the database size. Import reads lines one at a time and inserts them in batches with
//! `ON CONFLICT DO NOTHING`, so running it twice changes nothing. Keys travel as hashes only.
//! The derived counters (`benchmarks`, `verdict_counts`) are recomputed from the imported rows at
//! the end, so they stay exact even when the target already held data.

use std::io::{BufRead, Write};

use diesel::connection::{DefaultLoadingMode, SimpleConnection};
use diesel::prelude::*;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::db::audit::AuditRow;
use crate::db::baselines::BaselineRow;
use crate::db::decisions::DecisionRow;
use crate::db::fleet::{EventRow, GroupRow, MemberRow};
use crate::db::keys::KeyRow;
use crate::db::schema::{
    api_keys, audit_events, baseline_tags, baselines, benchmarks, decision_rules, decisions,
    dependency_events, fleet_groups, fleet_members, idempotency_keys, verdict_counts, verdicts,
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
    rebuild_counters(conn)?;
    pb.finish_and_clear();
    Ok(n)
}

/// Recomputes the maintained counters from the rows they count (the same SQL on both backends).
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
             ON CONFLICT (project, benchmark, status) DO UPDATE SET n = excluded.n;",
        )?;
        // Replicas serving this PostgreSQL database drop their caches of latest answers.
        crate::db::notify::announce_everything(c)
    })?;
    Ok(())
}
