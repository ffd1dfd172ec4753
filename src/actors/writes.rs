//! The writes that share group commits ([`super::group_commit`]): uploads and verdicts. Both
//! kinds wait in one queue per writer shard (the baseline store's), so a commit holds whatever
//! of either kind is queued: one transaction and one fsync where CI traffic, which sends both,
//! would otherwise pay two commits, each waiting for the other's on the shared write connection
//! (SQLite's one writer; a shard's connection on PostgreSQL).

use super::baseline_store::{BaselineStore, Upload, UploadOutcome};
use super::group_commit::{ArrivingWrite, Batched, GroupCommit};
use super::verdict_log::Submit;
use super::StoreError;
use crate::db::notify::AckWait;
use crate::db::verdicts::VerdictRow;
use crate::db::{DbConn, DbError};

/// A write waiting for its group commit.
pub(crate) enum Write {
    Upload(Box<Upload>),
    Verdict(Box<Submit>),
}

/// What a write stored, answered once its commit is durable.
pub(crate) enum Written {
    Upload(UploadOutcome),
    Verdict(VerdictRow),
}

impl Write {
    /// The latest answer an upload may change (none for a verdict).
    fn pair(&self) -> Option<(&str, &str)> {
        match self {
            Write::Upload(u) => Some(u.pair()),
            Write::Verdict(_) => None,
        }
    }
}

impl Batched for Write {
    type Store = BaselineStore;
    type Output = Written;

    fn kind(&self) -> &'static str {
        match self {
            Write::Upload(_) => "upload",
            Write::Verdict(_) => "verdict",
        }
    }

    /// Uploads first, then verdicts, each kind in its own order: the two kinds lock different
    /// rows, and every batch on every replica takes them in this one order.
    fn lock_cmp(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering::{Greater, Less};
        match (self, other) {
            (Write::Upload(a), Write::Upload(b)) => a.lock_cmp(b),
            (Write::Verdict(a), Write::Verdict(b)) => a.lock_cmp(b),
            (Write::Upload(_), Write::Verdict(_)) => Less,
            (Write::Verdict(_), Write::Upload(_)) => Greater,
        }
    }

    fn apply(&self, c: &mut DbConn) -> Result<Written, StoreError> {
        match self {
            Write::Upload(u) => u.apply(c).map(Written::Upload),
            Write::Verdict(v) => v.apply(c).map(Written::Verdict),
        }
    }

    fn after_unique_violation(&self, c: &mut DbConn, e: DbError) -> Result<Written, StoreError> {
        match self {
            Write::Upload(u) => u.after_unique_violation(c).map(Written::Upload),
            // A verdict's only unique index is its fresh id: nothing to answer instead.
            Write::Verdict(_) => Err(StoreError::Db(e)),
        }
    }

    /// One announcement (and one wait) for the whole commit, naming the latest answers its
    /// uploads stored. A commit of verdicts only announces nothing.
    fn before_commit(
        store: &mut BaselineStore,
        c: &mut DbConn,
        batch: &[Self],
        results: &[Result<Written, StoreError>],
    ) -> Result<Option<AckWait>, StoreError> {
        let stored: Vec<(&str, &str)> = batch
            .iter()
            .zip(results)
            .filter(|(_, r)| matches!(r, Ok(Written::Upload(o)) if !o.replayed))
            .filter_map(|(w, _)| w.pair())
            .collect();
        Ok(store.inv.announce(c, &stored)?)
    }

    fn after_commit(
        store: &mut BaselineStore,
        c: &mut DbConn,
        batch: &[Self],
        committed: bool,
        announced: Option<AckWait>,
    ) {
        let touched: Vec<(&str, &str)> = batch.iter().filter_map(Write::pair).collect();
        store.inv.settle(c, &touched, committed, announced);
    }
}

/// The write of another kind came back: the queue answers each write with its own result, so
/// this is a bug, reported as a 500 rather than a panic.
fn mismatch() -> StoreError {
    StoreError::Internal("group commit answered a write with another kind's result".into())
}

impl GroupCommit<Write> {
    /// Stores `upload` in the next group commit of its project's writer shard.
    pub(crate) async fn upload(
        &self,
        project: &str,
        upload: Upload,
        arrival: Option<ArrivingWrite<Write>>,
    ) -> Result<UploadOutcome, StoreError> {
        match self
            .submit(project, Write::Upload(Box::new(upload)), arrival)
            .await?
        {
            Written::Upload(o) => Ok(o),
            Written::Verdict(_) => Err(mismatch()),
        }
    }

    /// Stores `verdict` in the next group commit of its project's writer shard.
    pub(crate) async fn verdict(
        &self,
        project: &str,
        verdict: Submit,
        arrival: Option<ArrivingWrite<Write>>,
    ) -> Result<VerdictRow, StoreError> {
        match self
            .submit(project, Write::Verdict(Box::new(verdict)), arrival)
            .await?
        {
            Written::Verdict(v) => Ok(v),
            Written::Upload(_) => Err(mismatch()),
        }
    }
}
