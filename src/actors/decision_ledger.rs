//! The decision ledger: structured performance decisions (`perfgate.tradeoff.v1` receipts with
//! their scenario receipt and artifact index) recorded per project, listed, and pruned by age.

use crate::db::audit::{self, AuditEntry};
use crate::db::decisions::{self as q, DecisionFilter, DecisionRow};
use crate::db::{read_tx, write_tx, DbError, DbPool, PooledConn};
use crate::domain::time::{now_micros, to_rfc3339};
use crate::store_actor;

use super::{Initiator, Op, StoreError};

pub(crate) struct DecisionLedger {
    pool: DbPool,
}

store_actor!(DecisionLedger);

impl DecisionLedger {
    pub(crate) fn new(pool: DbPool) -> Self {
        Self { pool }
    }
    pub(super) fn conn(&self) -> Result<PooledConn, StoreError> {
        Ok(self.pool.get().map_err(DbError::from)?)
    }
}

/// A validated decision; id and time are assigned here.
pub(crate) struct NewDecision {
    pub project: String,
    pub scenario: Option<String>,
    pub status: &'static str,
    pub verdict: &'static str,
    pub accepted_rules: Vec<String>,
    pub review_required: bool,
    pub review_reasons: Vec<String>,
    pub git_ref: Option<String>,
    pub git_sha: Option<String>,
    pub tradeoff_receipt: String,
    pub scenario_receipt: Option<String>,
    pub artifact_index: Option<String>,
}

pub(crate) struct Record {
    pub decision: NewDecision,
    pub actor: Initiator,
}

impl Op<DecisionLedger> for Record {
    type Output = Result<DecisionRow, StoreError>;
    fn run(self, s: &mut DecisionLedger) -> Self::Output {
        let mut c = s.conn()?;
        let d = self.decision;
        let to_json = |v: &Vec<String>| serde_json::Value::from(v.clone()).to_string();
        write_tx(&mut c, |c| {
            let now = now_micros();
            let row = DecisionRow {
                id: crate::domain::ids::row_id(),
                project: d.project,
                scenario: d.scenario,
                status: d.status.to_owned(),
                verdict: d.verdict.to_owned(),
                accepted_rules: to_json(&d.accepted_rules),
                accepted: !d.accepted_rules.is_empty(),
                review_required: d.review_required,
                review_reasons: to_json(&d.review_reasons),
                git_ref: d.git_ref,
                git_sha: d.git_sha,
                tradeoff_receipt: d.tradeoff_receipt,
                scenario_receipt: d.scenario_receipt,
                artifact_index: d.artifact_index,
                created_at: now,
            };
            q::insert(c, &row, &d.accepted_rules)?;
            let mut extra = serde_json::Map::new();
            extra.insert("scenario".into(), row.scenario.clone().into());
            extra.insert("status".into(), row.status.clone().into());
            extra.insert("verdict".into(), row.verdict.clone().into());
            extra.insert("review_required".into(), row.review_required.into());
            extra.insert("accepted_rules".into(), d.accepted_rules.into());
            audit::insert(
                c,
                AuditEntry {
                    actor: &self.actor.principal_id,
                    action: "create",
                    resource_type: "decision",
                    resource_id: &row.id,
                    project: &row.project,
                    request_id: &self.actor.request_id,
                    extra,
                },
                now,
            )?;
            Ok(row)
        })
    }
}

pub(crate) struct ListDecisions {
    pub filter: DecisionFilter,
}

impl Op<DecisionLedger> for ListDecisions {
    type Output = Result<(Vec<DecisionRow>, i64), StoreError>;
    fn run(self, s: &mut DecisionLedger) -> Self::Output {
        let mut c = s.conn()?;
        read_tx(&mut c, |c| Ok(q::list(c, &self.filter)?))
    }
}

pub(crate) struct Latest {
    pub project: String,
}

impl Op<DecisionLedger> for Latest {
    type Output = Result<Option<DecisionRow>, StoreError>;
    fn run(self, s: &mut DecisionLedger) -> Self::Output {
        let mut c = s.conn()?;
        Ok(q::latest(&mut c, &self.project)?)
    }
}

pub(crate) struct Get {
    pub project: String,
    pub id: String,
}

impl Op<DecisionLedger> for Get {
    type Output = Result<Option<DecisionRow>, StoreError>;
    fn run(self, s: &mut DecisionLedger) -> Self::Output {
        let mut c = s.conn()?;
        Ok(q::find(&mut c, &self.project, &self.id)?)
    }
}

/// Removes a project's decisions created before `cutoff`. A dry run only reports them (and is
/// sent to a reader); a real one deletes them and writes one audit event in the same
/// transaction.
pub(crate) struct Prune {
    pub project: String,
    /// Microseconds since the epoch.
    pub cutoff: i64,
    pub dry_run: bool,
    pub actor: Initiator,
}

/// What a prune matched, and how many decisions it deleted.
pub(crate) struct Pruned {
    pub decision_ids: Vec<String>,
    pub deleted: usize,
}

impl Op<DecisionLedger> for Prune {
    type Output = Result<Pruned, StoreError>;
    fn run(self, s: &mut DecisionLedger) -> Self::Output {
        let mut c = s.conn()?;
        if self.dry_run {
            let decision_ids = read_tx(&mut c, |c| q::older_than(c, &self.project, self.cutoff))
                .map_err(DbError::from)?;
            return Ok(Pruned {
                decision_ids,
                deleted: 0,
            });
        }
        write_tx(&mut c, |c| {
            let decision_ids = q::older_than(c, &self.project, self.cutoff)?;
            let deleted = q::delete(c, &self.project, &decision_ids)?;
            let mut extra = serde_json::Map::new();
            extra.insert("older_than".into(), to_rfc3339(self.cutoff).into());
            extra.insert("matched".into(), decision_ids.len().into());
            extra.insert("deleted".into(), deleted.into());
            extra.insert("decision_ids".into(), decision_ids.clone().into());
            audit::insert(
                c,
                AuditEntry {
                    actor: &self.actor.principal_id,
                    action: "delete",
                    resource_type: "decision",
                    resource_id: &self.project,
                    project: &self.project,
                    request_id: &self.actor.request_id,
                    extra,
                },
                now_micros(),
            )?;
            Ok(Pruned {
                decision_ids,
                deleted,
            })
        })
    }
}
