//! The verdict log (contract §5): verdicts with their flakiness score, and their history.

use crate::db::audit::{self, AuditEntry};
use crate::db::verdicts::{self as q, VerdictFilter, VerdictRow};
use crate::db::{read_tx, DbConn, DbPool, PooledConn};
use crate::domain::access::BenchFilter;
use crate::domain::flakiness;
use crate::domain::time::now_micros;
use crate::store_actor;

use super::{Initiator, Op, StoreError};
use crate::db::DbError;

pub(crate) struct VerdictLog {
    pool: DbPool,
}

store_actor!(VerdictLog);

impl VerdictLog {
    pub(crate) fn new(pool: DbPool) -> Self {
        Self { pool }
    }
    pub(super) fn conn(&self) -> Result<PooledConn, StoreError> {
        Ok(self.pool.get().map_err(DbError::from)?)
    }
}

/// A validated verdict; id, score and time are assigned here.
pub(crate) struct NewVerdict {
    pub project: String,
    pub benchmark: String,
    pub run_id: String,
    pub status: String,
    pub counts_json: String,
    pub reasons_json: String,
    pub git_ref: Option<String>,
    pub git_sha: Option<String>,
    pub wall_ms_cv: Option<f64>,
}

pub(crate) struct Submit {
    pub verdict: NewVerdict,
    pub actor: Initiator,
}

/// Verdicts are group-committed with uploads (see `super::group_commit`), each in a savepoint
/// of its own (on SQLite only once a write of the batch has failed).
impl Submit {
    /// A verdict locks its benchmark's count of its status.
    pub(super) fn lock_cmp(&self, other: &Self) -> std::cmp::Ordering {
        let (a, b) = (&self.verdict, &other.verdict);
        // Projects share benchmark names: the project is part of every locked row's key.
        (&a.project, &a.benchmark, &a.status).cmp(&(&b.project, &b.benchmark, &b.status))
    }

    pub(super) fn apply(&self, c: &mut DbConn) -> Result<VerdictRow, StoreError> {
        let v = &self.verdict;
        // The history is read in the writer's transaction: verdicts of one project are
        // applied one at a time (in a batch, in its order), so the score sees every
        // earlier verdict.
        let stored = q::recent_cvs(c, &v.project, &v.benchmark, flakiness::HISTORY)?;
        let now = now_micros();
        let row = VerdictRow {
            id: crate::domain::ids::row_id(),
            flakiness_score: flakiness::score(v.wall_ms_cv, &stored),
            project: v.project.clone(),
            benchmark: v.benchmark.clone(),
            run_id: v.run_id.clone(),
            status: v.status.clone(),
            counts: v.counts_json.clone(),
            reasons: v.reasons_json.clone(),
            git_ref: v.git_ref.clone(),
            git_sha: v.git_sha.clone(),
            wall_ms_cv: v.wall_ms_cv,
            created_at: now,
        };
        q::insert(c, &row)?;
        let mut extra = serde_json::Map::new();
        extra.insert("benchmark".into(), row.benchmark.clone().into());
        extra.insert("status".into(), row.status.clone().into());
        extra.insert("run_id".into(), row.run_id.clone().into());
        audit::insert(
            c,
            AuditEntry {
                actor: &self.actor.principal_id,
                action: "create",
                resource_type: "verdict",
                resource_id: &row.id,
                project: &row.project,
                request_id: &self.actor.request_id,
                extra,
            },
            now,
        )?;
        Ok(row)
    }
}

pub(crate) struct ListVerdicts {
    pub filter: VerdictFilter,
    pub visible: Option<BenchFilter>,
}

impl Op<VerdictLog> for ListVerdicts {
    type Output = Result<(Vec<VerdictRow>, i64), StoreError>;
    fn run(mut self, s: &mut VerdictLog) -> Self::Output {
        let mut c = s.conn()?;
        read_tx(&mut c, |c| {
            if let Some(f) = &self.visible {
                let names = q::benchmark_names(c, &self.filter.project)?;
                self.filter.allowed_benchmarks = Some(f.visible(names));
            }
            Ok(q::list(c, &self.filter)?)
        })
    }
}

pub(crate) struct Get {
    pub project: String,
    pub id: String,
}

impl Op<VerdictLog> for Get {
    type Output = Result<Option<VerdictRow>, StoreError>;
    fn run(self, s: &mut VerdictLog) -> Self::Output {
        let mut c = s.conn()?;
        Ok(q::find(&mut c, &self.project, &self.id)?)
    }
}
