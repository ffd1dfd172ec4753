//! Retention: soft-deleted baseline versions, verdicts, gates and decisions older than a cut-off
//! are purged by the store that owns each, a bounded batch per message, so the writer (on
//! SQLite, the process's one write connection) is never held for long and clients' writes
//! interleave between batches. Live baselines are never purged by age.

use std::time::Duration;

use serde::Serialize;

use super::baseline_store::BaselineStore;
use super::decision_ledger::DecisionLedger;
use super::gate::GateStore;
use super::verdict_log::VerdictLog;
use super::{Initiator, Op, Shards, StoreError};
use crate::db::audit::{self, AuditEntry};
use crate::db::retention as q;
use crate::db::{try_lock, write_tx, Exclusive};
use crate::domain::time::now_micros;

/// Rows one batch deletes at most (per table): a few milliseconds of the writer.
pub(crate) const BATCH: i64 = 50;

/// What a cleanup deleted, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct Purged {
    /// Soft-deleted baseline versions (with their tags and run summaries).
    pub baselines: u64,
    pub verdicts: u64,
    /// Gates, with their runs.
    pub gates: u64,
    pub decisions: u64,
}

/// One batch: at most `limit` rows older than `before`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cutoff {
    pub before: i64,
    pub limit: i64,
}

macro_rules! purge_op {
    ($name:ident, $store:ty, $f:path) => {
        /// One batch of its table's rows older than the cut-off; answers how many.
        pub(crate) struct $name(pub Cutoff);

        impl Op<$store> for $name {
            type Output = Result<usize, StoreError>;
            fn run(self, s: &mut $store) -> Self::Output {
                let mut c = s.conn()?;
                write_tx(&mut c, |c| {
                    // Another replica is purging: leave it the rows (this cleanup ends here).
                    if !try_lock(c, Exclusive::Retention)? {
                        return Ok(0);
                    }
                    Ok($f(c, self.0.before, self.0.limit)?)
                })
            }
        }
    };
}

purge_op!(
    PurgeDeletedBaselines,
    BaselineStore,
    q::purge_deleted_baselines
);
purge_op!(PurgeVerdicts, VerdictLog, q::purge_verdicts);
purge_op!(PurgeGates, GateStore, q::purge_gates);
purge_op!(PurgeDecisions, DecisionLedger, q::purge_decisions);

/// Records a finished cleanup in the audit log, with its counts.
pub(crate) struct AuditCleanup {
    pub purged: Purged,
    pub older_than_days: u32,
    pub actor: Initiator,
}

impl Op<BaselineStore> for AuditCleanup {
    type Output = Result<(), StoreError>;
    fn run(self, s: &mut BaselineStore) -> Self::Output {
        let mut c = s.conn()?;
        write_tx(&mut c, |c| {
            let mut extra = serde_json::Map::new();
            extra.insert("older_than_days".into(), self.older_than_days.into());
            extra.insert(
                "deleted".into(),
                serde_json::to_value(self.purged).unwrap_or_default(),
            );
            audit::insert(
                c,
                AuditEntry {
                    actor: &self.actor.principal_id,
                    action: "delete",
                    resource_type: "retention",
                    resource_id: "cleanup",
                    project: "*",
                    request_id: &self.actor.request_id,
                    extra,
                },
                now_micros(),
            )?;
            Ok(())
        })
    }
}

/// The stores a cleanup purges.
pub(crate) struct Stores<'a> {
    pub baselines: &'a Shards<BaselineStore>,
    pub verdicts: &'a Shards<VerdictLog>,
    pub gates: &'a Shards<GateStore>,
    pub decisions: &'a Shards<DecisionLedger>,
}

/// Pause between batches, at least: the writer is free for clients this long.
const BREATHE: Duration = Duration::from_millis(5);
/// And at least this many times the last batch's duration: a cleanup holds the writer at most a
/// fifth of the time, so clients' writes queued behind a batch drain before the next one.
const YIELD_FACTOR: u32 = 4;

/// One shard key for every batch: a cleanup is one sequence of batches on one writer.
const SHARD_KEY: &str = "retention";

/// Sends batches until one deletes fewer than a full batch; answers the total.
async fn drain<S, M>(shards: &Shards<S>, op: impl Fn() -> M) -> Result<u64, StoreError>
where
    S: actix::Actor<Context = actix::SyncContext<S>> + actix::Handler<super::Job<M, S>>,
    M: Op<S, Output = Result<usize, StoreError>>,
{
    let mut total = 0;
    loop {
        let started = std::time::Instant::now();
        let n = shards.write(SHARD_KEY, op()).await??;
        total += n as u64;
        if (n as i64) < BATCH {
            return Ok(total);
        }
        tokio::time::sleep(BREATHE.max(started.elapsed() * YIELD_FACTOR)).await;
    }
}

/// Purges everything older than `older_than_days` days, batch by batch, then audits the counts
/// (when anything was deleted). Live baselines are never purged by age, nor the newest version
/// of a benchmark.
pub(crate) async fn cleanup(
    stores: Stores<'_>,
    older_than_days: u32,
    actor: Initiator,
) -> Result<Purged, StoreError> {
    let before = now_micros().saturating_sub(i64::from(older_than_days) * 86_400_000_000);
    let cut = Cutoff {
        before,
        limit: BATCH,
    };
    let purged = Purged {
        baselines: drain(stores.baselines, || PurgeDeletedBaselines(cut)).await?,
        verdicts: drain(stores.verdicts, || PurgeVerdicts(cut)).await?,
        gates: drain(stores.gates, || PurgeGates(cut)).await?,
        decisions: drain(stores.decisions, || PurgeDecisions(cut)).await?,
    };
    if purged != Purged::default() {
        stores
            .baselines
            .write(
                SHARD_KEY,
                AuditCleanup {
                    purged,
                    older_than_days,
                    actor,
                },
            )
            .await??;
    }
    Ok(purged)
}
