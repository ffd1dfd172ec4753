//! Retention: rows older than a cut-off, purged a bounded batch at a time (oldest first), with
//! what depends on them. Each function deletes at most `limit` rows of its table and answers
//! how many; the caller commits between batches so no transaction holds the write lock long.

use std::collections::BTreeMap;

use diesel::dsl::exists;
use diesel::prelude::*;

use super::schema::{
    baseline_tags, baselines, decision_rules, decisions, gate_runs, gates, idempotency_keys,
    quarantine, run_stats, verdict_counts, verdicts,
};
use super::DbConn;

/// Versions deleted before `before`, except the newest version of their benchmark (whose name
/// and number the next upload continues from): the rows, their tags, run summaries, quarantine
/// entries and idempotency records (`baselines_deleted_idx`).
pub(crate) fn purge_deleted_baselines(
    conn: &mut DbConn,
    before: i64,
    limit: i64,
) -> QueryResult<usize> {
    let newer = diesel::alias!(baselines as newer);
    let ids: Vec<String> = baselines::table
        .filter(baselines::deleted_at.lt(before))
        .filter(exists(
            newer
                .filter(newer.field(baselines::project).eq(baselines::project))
                .filter(newer.field(baselines::benchmark).eq(baselines::benchmark))
                .filter(newer.field(baselines::created_at).gt(baselines::created_at)),
        ))
        .order(baselines::deleted_at.asc())
        .limit(limit)
        .select(baselines::id)
        .load(conn)?;
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::delete(baseline_tags::table.filter(baseline_tags::baseline_id.eq_any(&ids)))
        .execute(conn)?;
    diesel::delete(run_stats::table.filter(run_stats::baseline_id.eq_any(&ids))).execute(conn)?;
    diesel::delete(quarantine::table.filter(quarantine::baseline_id.eq_any(&ids))).execute(conn)?;
    diesel::delete(idempotency_keys::table.filter(idempotency_keys::baseline_id.eq_any(&ids)))
        .execute(conn)?;
    diesel::delete(baselines::table.filter(baselines::id.eq_any(&ids))).execute(conn)
}

/// Verdicts recorded before `before`, with the per-benchmark counts kept in step
/// (`verdicts_created_idx`).
pub(crate) fn purge_verdicts(conn: &mut DbConn, before: i64, limit: i64) -> QueryResult<usize> {
    let rows: Vec<(String, String, String, String)> = verdicts::table
        .filter(verdicts::created_at.lt(before))
        .order(verdicts::created_at.asc())
        .limit(limit)
        .select((
            verdicts::id,
            verdicts::project,
            verdicts::benchmark,
            verdicts::status,
        ))
        .load(conn)?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut counts: BTreeMap<(&str, &str, &str), i64> = BTreeMap::new();
    for (_, p, b, s) in &rows {
        *counts
            .entry((p.as_str(), b.as_str(), s.as_str()))
            .or_default() += 1;
    }
    for ((p, b, s), n) in counts {
        let key = verdict_counts::table
            .filter(verdict_counts::project.eq(p))
            .filter(verdict_counts::benchmark.eq(b))
            .filter(verdict_counts::status.eq(s));
        diesel::update(key)
            .set(verdict_counts::n.eq(verdict_counts::n - n))
            .execute(conn)?;
        diesel::delete(key.filter(verdict_counts::n.le(0))).execute(conn)?;
    }
    let ids: Vec<&String> = rows.iter().map(|(id, ..)| id).collect();
    diesel::delete(verdicts::table.filter(verdicts::id.eq_any(ids))).execute(conn)
}

/// Gates opened before `before` that are final or past their deadline (a gate still waiting
/// for a confirmation attempt stays), with their runs (`gates_created_idx`). Alerts and
/// failed-run marks outlive them: an alert is triaged on its own, and a failed run stays out of
/// history.
pub(crate) fn purge_gates(conn: &mut DbConn, before: i64, limit: i64) -> QueryResult<usize> {
    let ids: Vec<String> = gates::table
        .filter(gates::created_at.lt(before))
        .filter(gates::is_final.eq(true).or(gates::deadline.lt(before)))
        .order(gates::created_at.asc())
        .limit(limit)
        .select(gates::id)
        .load(conn)?;
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::delete(gate_runs::table.filter(gate_runs::gate_id.eq_any(&ids))).execute(conn)?;
    diesel::delete(gates::table.filter(gates::id.eq_any(&ids))).execute(conn)
}

/// Decisions recorded before `before`, with their rule rows (`decisions_created_idx`).
pub(crate) fn purge_decisions(conn: &mut DbConn, before: i64, limit: i64) -> QueryResult<usize> {
    let ids: Vec<String> = decisions::table
        .filter(decisions::created_at.lt(before))
        .order(decisions::created_at.asc())
        .limit(limit)
        .select(decisions::id)
        .load(conn)?;
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::delete(decision_rules::table.filter(decision_rules::decision_id.eq_any(&ids)))
        .execute(conn)?;
    diesel::delete(decisions::table.filter(decisions::id.eq_any(&ids))).execute(conn)
}
