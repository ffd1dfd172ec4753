//! Group commit of writes: every upload and verdict goes through [`GroupCommit::submit`], in
//! one queue (`super::writes`), so one commit holds both kinds.
//!
//! A handler queues its write for the project's writer shard and then sends a [`Flush`] through
//! the shard's mailbox; the first flush to run takes every write queued for the shard so far and
//! commits them in **one** transaction (one fsync), each write in a savepoint of its own, so a
//! conflict or a bad row fails only its own request. On SQLite the batch first goes without
//! savepoints, and only a batch in which a write failed is applied again with them (see
//! [`Flush`]'s `run`). Every request is answered once that commit is
//! durable, without waiting for its own flush, which runs later and commits what was queued
//! since (or finds nothing).
//!
//! A commit delay, in the spirit of PostgreSQL's `commit_delay`/`commit_siblings`: when writes
//! come in a stream (another write is between its request head and the queue, or the shard
//! committed less than [`STREAM_GAP`] ago), a flush keeps gathering while writes keep joining,
//! until none has joined for [`QUIET`], as many as in its previous commit are queued with none on
//! its way, or [`GATHER`] has passed. A lone write commits at once. The rules are the pure
//! [`Gathering`] state machine, unit-tested below. A store whose WAL a syncer flushes (a SQLite
//! file, `db::wal_sync`) does not gather: there the commit does not wait for the disk, and the
//! syncer's one fsync already answers every commit made before it began.
//!
//! Per write, a commit costs its fsync, its WAL frame headers and the pages it shares with its
//! neighbours (the newest leaf of each time-ordered index): a batch pays them once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use diesel::Connection;

use actix::{Actor, Handler, SyncContext};

use super::{Job, Op, Shards, StoreError};
use crate::db::notify::AckWait;
use crate::db::{write_tx, DbConn, DbError, PooledConn, WalSync};

/// The longest a flush waits for other writes to join its commit.
pub(crate) const GATHER: Duration = Duration::from_millis(2);
/// A flush stops gathering when no write has joined for this long.
pub(crate) const QUIET: Duration = Duration::from_micros(200);
/// Writes closer together than this count as a stream.
pub(crate) const STREAM_GAP: Duration = Duration::from_millis(2);

/// What a flush does next while gathering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Take what is queued and commit it.
    Take,
    /// Wait for another item (or for this instant, whichever comes first).
    WaitUntil(Instant),
}

/// The gathering rules of one flush, free of clocks and locks: the caller feeds it the time,
/// the queue length and the number of requests on their way.
#[derive(Debug, Clone)]
pub(crate) struct Gathering {
    deadline: Instant,
    seen: usize,
    quiet_until: Instant,
    /// As many as the previous commit held: a stream of N clients tends to bring N per commit,
    /// so once that many are queued and none is on its way, waiting longer only adds latency.
    expected: usize,
    stream: bool,
}

impl Gathering {
    /// `last` is when this shard last took a batch and how large it was.
    pub(crate) fn new(started: Instant, last: Option<(Instant, usize)>, arriving: usize) -> Self {
        let stream = arriving > 0
            || last.is_some_and(|(t, _)| started.saturating_duration_since(t) < STREAM_GAP);
        Self {
            deadline: started + GATHER,
            seen: 0,
            quiet_until: started + QUIET,
            expected: last.map_or(usize::MAX, |(_, n)| n.max(2)),
            stream,
        }
    }

    pub(crate) fn step(&mut self, now: Instant, queued: usize, arriving: usize) -> Step {
        if !self.stream {
            return Step::Take;
        }
        if queued > self.seen {
            if self.seen > 0 {
                self.quiet_until = now + QUIET;
            }
            self.seen = queued;
        }
        let until = if arriving > 0 {
            self.deadline
        } else if queued >= self.expected {
            return Step::Take;
        } else {
            self.quiet_until.min(self.deadline)
        };
        if now >= until {
            Step::Take
        } else {
            Step::WaitUntil(until)
        }
    }
}

/// Items waiting for their shard's next commit, and the requests on their way to it.
pub(crate) struct GatherQueue<T> {
    state: Mutex<QueueState<T>>,
    /// Signalled when an item is queued or a request stops arriving.
    changed: Condvar,
    /// Requests between their head and their place in the queue.
    arriving: AtomicUsize,
}

struct QueueState<T> {
    shards: HashMap<usize, Vec<T>>,
    /// When each shard last took a batch, and how large it was.
    last_take: HashMap<usize, (Instant, usize)>,
}

impl<T> Default for GatherQueue<T> {
    fn default() -> Self {
        Self {
            state: Mutex::new(QueueState {
                shards: HashMap::new(),
                last_take: HashMap::new(),
            }),
            changed: Condvar::new(),
            arriving: AtomicUsize::new(0),
        }
    }
}

/// Counts one request as arriving, from its head until it is queued or dropped.
pub(crate) struct Arriving<T>(Arc<GatherQueue<T>>);

impl<T> Drop for Arriving<T> {
    fn drop(&mut self) {
        self.0.arriving.fetch_sub(1, Ordering::AcqRel);
        // Under the lock, so a flush between its check and its wait cannot miss the signal.
        drop(self.0.lock());
        self.0.changed.notify_all();
    }
}

impl<T> GatherQueue<T> {
    /// Marks a request as on its way to the queue.
    pub(crate) fn arriving(self: &Arc<Self>) -> Arriving<T> {
        self.arriving.fetch_add(1, Ordering::AcqRel);
        Arriving(self.clone())
    }

    fn lock(&self) -> MutexGuard<'_, QueueState<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn push(&self, shard: usize, item: T) {
        self.lock().shards.entry(shard).or_default().push(item);
        self.changed.notify_all();
    }

    /// Takes what is queued for `shard`, gathering first when `gather` and items come in a
    /// stream. Empty when an earlier flush already took this caller's item.
    pub(crate) fn take(&self, shard: usize, gather: bool) -> Vec<T> {
        let started = Instant::now();
        let mut q = self.lock();
        let queued = |q: &QueueState<T>| q.shards.get(&shard).map_or(0, Vec::len);
        if queued(&q) == 0 {
            return Vec::new();
        }
        if gather {
            let arriving = || self.arriving.load(Ordering::Acquire);
            let last = q.last_take.get(&shard).copied();
            let mut gathering = Gathering::new(started, last, arriving());
            while let Step::WaitUntil(until) =
                gathering.step(Instant::now(), queued(&q), arriving())
            {
                let wait = until.saturating_duration_since(Instant::now());
                q = match self.changed.wait_timeout(q, wait) {
                    Ok((q, _)) => q,
                    Err(e) => e.into_inner().0,
                };
            }
        }
        let batch = q
            .shards
            .get_mut(&shard)
            .map(std::mem::take)
            .unwrap_or_default();
        q.last_take.insert(shard, (Instant::now(), batch.len()));
        batch
    }
}

/// A write that can share its commit with other writes (`super::writes::Write`: an upload or a
/// verdict).
pub(crate) trait Batched: Send + Sized + 'static {
    /// The store whose writer shards commit it.
    type Store: Actor<Context = SyncContext<Self::Store>>
        + GroupStore
        + Handler<Job<Flush<Self>, Self::Store>>;
    type Output: Send + 'static;
    /// The `kind` label of the `perfgate_group_commit_writes` histogram.
    fn kind(&self) -> &'static str;

    /// The order in which a batch applies its writes. One order for every batch on every
    /// replica: two replicas committing batches that lock the same rows in different orders
    /// would deadlock on PostgreSQL (and wait out `deadlock_timeout`). The sort is stable, so
    /// writes that compare equal keep their arrival order.
    fn lock_cmp(&self, other: &Self) -> std::cmp::Ordering;

    /// The write's statements, inside the batch's transaction: on SQLite first without a
    /// savepoint, and again in one should a write of the batch fail, so `apply` may run twice
    /// and must have no effect outside the transaction; it must not carry on after a failed
    /// statement either (its error ends the attempt).
    fn apply(&self, c: &mut DbConn) -> Result<Self::Output, StoreError>;

    /// Called after [`apply`](Self::apply) failed on a unique index (its savepoint rolled back):
    /// a write racing another replica can often still answer (say, with the winner's row).
    fn after_unique_violation(
        &self,
        c: &mut DbConn,
        e: DbError,
    ) -> Result<Self::Output, StoreError> {
        let _ = c;
        Err(StoreError::Db(e))
    }

    /// Runs last inside the batch's transaction, once every write has been applied (`results`
    /// in the batch's order): announces what the commit changes to other replicas (PostgreSQL
    /// `NOTIFY`, see `db::notify`). What it returns is handed to [`after_commit`](Self::after_commit).
    fn before_commit(
        store: &mut Self::Store,
        c: &mut DbConn,
        batch: &[Self],
        results: &[Result<Self::Output, StoreError>],
    ) -> Result<Option<AckWait>, StoreError> {
        let _ = (store, c, batch, results);
        Ok(None)
    }

    /// Runs after the batch's transaction ended (committed or not), before any write of it is
    /// answered: drops what caches hold of the rows it may have changed, and waits for other
    /// replicas to have dropped theirs. `c` is the writer's connection, idle.
    fn after_commit(
        store: &mut Self::Store,
        c: &mut DbConn,
        batch: &[Self],
        committed: bool,
        announced: Option<AckWait>,
    ) {
        let _ = (store, c, batch, committed, announced);
    }
}

/// A store that hands its writer connection to a group commit.
pub(crate) trait GroupStore {
    fn conn(&self) -> Result<PooledConn, StoreError>;

    /// On a SQLite file, the syncer that flushes the WAL after a commit made without flushing
    /// it, and answers the commit's writes then (see `db::wal_sync`).
    fn wal_sync(&self) -> Option<&WalSync> {
        None
    }
}

type Reply<T> = tokio::sync::oneshot::Sender<Result<<T as Batched>::Output, StoreError>>;
type Pending<T> = (T, Reply<T>);

/// A write request on its way to the queue (see [`GroupCommit::arriving`]).
pub(crate) type ArrivingWrite<T> = Arriving<Pending<T>>;

/// A store's writer shards with the writes of one kind waiting for their group commit.
pub(crate) struct GroupCommit<T: Batched> {
    store: Shards<T::Store>,
    queue: Arc<GatherQueue<Pending<T>>>,
}

impl<T: Batched> Clone for GroupCommit<T> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            queue: self.queue.clone(),
        }
    }
}

impl<T: Batched> GroupCommit<T> {
    pub(crate) fn new(store: Shards<T::Store>) -> Self {
        Self {
            store,
            queue: Arc::default(),
        }
    }

    /// Counts a write request as on its way from its request head (the route's extractor
    /// takes it), so a flush can wait for it.
    pub(crate) fn arriving(&self) -> ArrivingWrite<T> {
        self.queue.arriving()
    }

    /// Applies `write` in the next group commit of the writer shard of `project` and answers
    /// once that commit is durable. `arrival` stops counting once the write is queued.
    pub(crate) async fn submit(
        &self,
        project: &str,
        write: T,
        arrival: Option<ArrivingWrite<T>>,
    ) -> Result<T::Output, StoreError> {
        let shard = self.store.shard_index(project);
        // Admitted before it is queued: a write refused as overload (503) is never stored by
        // another request's flush.
        let permit = self.store.admit()?;
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        self.queue.push(shard, (write, tx));
        drop(arrival);
        let flush = Flush {
            queue: self.queue.clone(),
            shard,
        };
        // Every queued write has a flush of its own behind it in the writer's mailbox, but the
        // one that commits it is often an earlier one (a flush takes all that is queued). The
        // answer comes once that commit is durable; this request's own flush still runs later
        // and commits what was queued since, without this request waiting for it.
        let flushed = self.store.write_admitted(project, flush, permit);
        tokio::pin!(flushed);
        tokio::select! {
            // Polled first, so the flush is in the mailbox before this request waits at all.
            biased;
            done = &mut flushed => {
                done?;
                // This write was queued before its flush was sent, so that flush or an earlier
                // one took it: it is answered, or will be once its commit is flushed to disk
                // (`db::wal_sync`). A dropped reply means it was not stored.
                match tokio::time::timeout(self.store.timeout(), rx).await {
                    Ok(answer) => answer.unwrap_or_else(|_| Err(unanswered())),
                    // Committed, but its flush has not ended: stored or not is not known yet.
                    Err(_) => Err(StoreError::Timeout(self.store.timeout())),
                }
            }
            answer = &mut rx => answer.unwrap_or_else(|_| Err(unanswered())),
        }
    }
}

fn unanswered() -> StoreError {
    StoreError::Internal("group commit ended without answering a write".into())
}

/// Commits the writes queued for one writer shard.
pub(crate) struct Flush<T: Batched> {
    queue: Arc<GatherQueue<Pending<T>>>,
    shard: usize,
}

impl<T: Batched> Op<T::Store> for Flush<T> {
    type Output = ();
    fn run(self, s: &mut T::Store) {
        // Where a syncer flushes the WAL, the commit does not wait for the disk (unless the
        // PRAGMA below fails, a slower path only) and the syncer already answers every commit
        // made before its fsync began in one go: gathering would only hold the writer idle (`bench/ab.sh`, five alternated rounds with and without it:
        // verdicts +9 %, more in every round; uploads and the mix within 1 %, p99 alike).
        let wal_sync = s.wal_sync().cloned();
        let mut batch = self.queue.take(self.shard, wal_sync.is_none());
        if batch.is_empty() {
            return;
        }
        batch.sort_by(|(a, _), (b, _)| a.lock_cmp(b));
        observe_kinds(&batch);
        if let Some(failed) = wal_sync.as_ref().and_then(WalSync::failed) {
            // Since a flush failed, nothing is stored: what is committed now could not be told
            // apart from what that flush lost, and a retried write would be stored twice.
            let replies = batch.into_iter().map(|(_, reply)| reply);
            return fail_all::<T>(replies, || StoreError::Unavailable(failed.clone()));
        }
        let mut c = match s.conn() {
            Ok(c) => c,
            Err(e) => return answer_all(batch, &e),
        };
        let (writes, replies): (Vec<T>, Vec<Reply<T>>) = batch.into_iter().unzip();
        // On a SQLite file the commit writes its WAL frames without flushing them, and the
        // syncer answers once it has (see `db::wal_sync`): this thread goes on to the next batch
        // meanwhile. Should the PRAGMA fail, the commit flushes as every other one does.
        let wal_sync = wal_sync.filter(|_| synchronous(&mut c, "NORMAL"));
        let mut results = Vec::with_capacity(writes.len());
        let mut announced = None;
        // On SQLite, first the whole batch without savepoints: inside one, SQLite copies every
        // page a write touches to its sub-journal before changing it. Should a write fail, that
        // transaction is rolled back and the batch applied again with a savepoint per write;
        // the write that failed is answered with its error and not applied again (it would
        // fail the same way: the writes before it are the same), unless its error was a unique
        // index's, which `after_unique_violation` may still answer. PostgreSQL keeps a savepoint
        // per write: there a failed statement aborts the whole transaction, and a write that
        // waited out `lock_timeout` must not hold up the others' commit for another one.
        let mut failed_at = None;
        let mut skip = None;
        let mut committed = None;
        if matches!(&*c, DbConn::Sqlite(_)) {
            let first = write_tx(&mut c, |c| {
                for (i, write) in writes.iter().enumerate() {
                    match write.apply(c) {
                        Ok(out) => results.push(Ok(out)),
                        Err(e) => {
                            failed_at = Some(i);
                            return Err(e);
                        }
                    }
                }
                announced = T::before_commit(s, c, &writes, &results)?;
                Ok::<(), StoreError>(())
            });
            // A write failed (`failed_at`), or else the commit itself or `before_commit`.
            match (first, failed_at) {
                (Ok(()), _) => committed = Some(Ok(())),
                (Err(e), None) => committed = Some(Err(e)),
                (Err(StoreError::Db(e)), Some(_)) if e.is_unique_violation() => {}
                (Err(e), Some(k)) => skip = Some((k, e)),
            }
        }
        let committed = match committed {
            Some(r) => r,
            None => {
                results.clear();
                write_tx(&mut c, |c| {
                    for (i, write) in writes.iter().enumerate() {
                        if skip.as_ref().is_some_and(|(k, _)| *k == i) {
                            if let Some((_, e)) = skip.take() {
                                results.push(Err(e));
                            }
                            continue;
                        }
                        // A savepoint per write: its failure rolls back only its own statements.
                        let r = match c.transaction(|c| write.apply(c)) {
                            Err(StoreError::Db(e)) if e.is_unique_violation() => {
                                write.after_unique_violation(c, e)
                            }
                            other => other,
                        };
                        results.push(r);
                    }
                    announced = T::before_commit(s, c, &writes, &results)?;
                    Ok::<(), StoreError>(())
                })
            }
        };
        if let Some(w) = &wal_sync {
            // The writer's other commits (promotions, keys, audit) flush inside the commit, as
            // ever. The connection goes back to the pool that every store's writer shares, so
            // should the setting not come back, nothing more may be written with it: this stops
            // the process, whose every acknowledged write is on disk, rather than acknowledge
            // writes that are not.
            if !synchronous(&mut c, w.restore()) && !synchronous(&mut c, w.restore()) {
                log::error!("the writer cannot restore PRAGMA synchronous; stopping");
                crate::logging::flush();
                std::process::abort();
            }
        }
        T::after_commit(s, &mut c, &writes, committed.is_ok(), announced);
        match (committed, wal_sync) {
            (Ok(()), Some(w)) => w.after_sync(Box::new(move |flushed| match flushed {
                Ok(()) => answer::<T>(replies, results),
                Err(e) => fail_all::<T>(replies, || StoreError::Unavailable(e.clone())),
            })),
            (Ok(()), None) => answer::<T>(replies, results),
            (Err(e), _) => {
                log::warn!("group commit of {} writes failed: {e}", replies.len());
                fail_all::<T>(replies, || e.for_each_of_batch());
            }
        }
    }
}

/// Answers every write of a batch with an error of its own.
fn fail_all<T: Batched>(replies: impl IntoIterator<Item = Reply<T>>, e: impl Fn() -> StoreError) {
    for reply in replies {
        let _ = reply.send(Err(e()));
    }
}

/// Sends each write its result.
fn answer<T: Batched>(replies: Vec<Reply<T>>, results: Vec<Result<T::Output, StoreError>>) {
    for (reply, r) in replies.into_iter().zip(results) {
        let _ = reply.send(r);
    }
}

/// `PRAGMA synchronous = value` on a SQLite connection; false if it failed.
fn synchronous(c: &mut DbConn, value: &str) -> bool {
    use diesel::connection::SimpleConnection;
    match c.batch_execute(&format!("PRAGMA synchronous = {value}")) {
        Ok(()) => true,
        Err(e) => {
            log::error!("PRAGMA synchronous = {value} failed on the writer: {e}");
            false
        }
    }
}

/// Observes, for each kind of write in a commit, how many of that kind it holds.
fn observe_kinds<T: Batched>(batch: &[Pending<T>]) {
    let mut runs: Vec<(&'static str, usize)> = Vec::new();
    for (w, _) in batch {
        match runs.iter_mut().find(|(k, _)| *k == w.kind()) {
            Some((_, n)) => *n += 1,
            None => runs.push((w.kind(), 1)),
        }
    }
    for (kind, n) in runs {
        crate::metrics::METRICS
            .group_commit_size
            .with_label_values(&[kind])
            .observe(n as f64);
    }
}

/// Nothing of the batch was stored: every request gets 503 (or the storage error's own answer).
fn answer_all<T: Batched>(batch: Vec<Pending<T>>, e: &StoreError) {
    fail_all::<T>(batch.into_iter().map(|(_, reply)| reply), || {
        e.for_each_of_batch()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, micros: u64) -> Instant {
        base + Duration::from_micros(micros)
    }

    #[test]
    fn a_lone_upload_commits_at_once() {
        let t0 = Instant::now();
        let mut g = Gathering::new(t0, None, 0);
        assert_eq!(g.step(t0, 1, 0), Step::Take);
        // The last commit was long ago: not a stream either.
        let mut g = Gathering::new(at(t0, 10_000), Some((t0, 8)), 0);
        assert_eq!(g.step(at(t0, 10_000), 1, 0), Step::Take);
    }

    #[test]
    fn a_stream_waits_for_the_quiet_time() {
        let t0 = Instant::now();
        // One upload is still on its way: wait up to the gathering cap.
        let mut g = Gathering::new(t0, None, 1);
        assert_eq!(g.step(t0, 1, 1), Step::WaitUntil(t0 + GATHER));
        // It joined and nothing else is arriving: wait for the quiet time after the join.
        let joined = at(t0, 150);
        assert_eq!(g.step(joined, 2, 0), Step::WaitUntil(joined + QUIET));
        // Nobody joined within the quiet time: commit.
        assert_eq!(g.step(joined + QUIET, 2, 0), Step::Take);
    }

    #[test]
    fn gathering_is_capped() {
        let t0 = Instant::now();
        let mut g = Gathering::new(t0, None, 1);
        // Requests keep arriving for ever: the cap ends the wait.
        assert_eq!(g.step(at(t0, 1_000), 3, 1), Step::WaitUntil(t0 + GATHER));
        assert_eq!(g.step(t0 + GATHER, 4, 1), Step::Take);
        // Joins keep the quiet time moving, but never past the cap.
        let mut g = Gathering::new(t0, Some((at(t0, 0), 100)), 0);
        assert_eq!(g.step(t0, 1, 0), Step::WaitUntil(t0 + QUIET));
        let late = at(t0, 1_900);
        assert_eq!(g.step(late, 2, 0), Step::WaitUntil(t0 + GATHER));
    }

    #[test]
    fn as_many_as_last_time_commits_without_waiting() {
        let t0 = Instant::now();
        // The previous commit, 1 ms ago, held 4 uploads.
        let mut g = Gathering::new(at(t0, 1_000), Some((t0, 4)), 0);
        let now = at(t0, 1_000);
        assert_eq!(g.step(now, 3, 0), Step::WaitUntil(now + QUIET));
        assert_eq!(g.step(at(t0, 1_050), 4, 0), Step::Take);
        // …unless another one is on its way.
        let mut g = Gathering::new(now, Some((t0, 4)), 0);
        assert_eq!(g.step(now, 4, 1), Step::WaitUntil(now + GATHER));
        // A previous batch of one still expects two.
        let mut g = Gathering::new(now, Some((t0, 1)), 0);
        assert!(matches!(g.step(now, 1, 0), Step::WaitUntil(_)));
        assert_eq!(g.step(now, 2, 0), Step::Take);
    }

    #[test]
    fn the_queue_hands_each_item_out_once() {
        let q: Arc<GatherQueue<u32>> = Arc::default();
        q.push(0, 1);
        q.push(1, 2);
        q.push(0, 3);
        assert_eq!(q.take(0, true), vec![1, 3]);
        assert!(q.take(0, true).is_empty());
        assert_eq!(q.take(1, false), vec![2]);
        let a = q.arriving();
        assert_eq!(q.arriving.load(Ordering::Acquire), 1);
        drop(a);
        assert_eq!(q.arriving.load(Ordering::Acquire), 0);
    }
}

#[cfg(test)]
mod answer_tests {
    use super::*;
    use crate::actors::Op;
    use std::future::Future;
    use std::pin::pin;
    use std::sync::atomic::AtomicBool;
    use std::task::{Context, Poll};

    struct Store {
        pool: crate::db::DbPool,
        sync: Option<WalSync>,
    }
    crate::store_actor!(Store);

    impl GroupStore for Store {
        fn conn(&self) -> Result<PooledConn, StoreError> {
            self.pool
                .get()
                .map_err(|e| StoreError::Internal(e.to_string()))
        }
        fn wal_sync(&self) -> Option<&WalSync> {
            self.sync.as_ref()
        }
    }

    struct W(u32);
    /// What the writer applied, in order.
    static APPLIED: Mutex<Vec<u32>> = Mutex::new(Vec::new());
    impl Batched for W {
        type Store = Store;
        type Output = u32;
        fn kind(&self) -> &'static str {
            "test"
        }
        fn lock_cmp(&self, other: &Self) -> std::cmp::Ordering {
            self.0.cmp(&other.0)
        }
        /// Writes whose number ends in 99 fail.
        fn apply(&self, c: &mut DbConn) -> Result<u32, StoreError> {
            APPLIED.lock().unwrap().push(self.0);
            if (600..700).contains(&self.0) {
                SEEN.lock().unwrap().push((self.0, synchronous_of(c)));
            }
            if self.0 % 100 == 99 {
                return Err(StoreError::Conflict(format!("write {}", self.0)));
            }
            Ok(self.0)
        }
    }

    /// Holds the writer until the test lets go.
    struct Hold(std::sync::mpsc::Receiver<()>);
    impl Op<Store> for Hold {
        type Output = ();
        fn run(self, _: &mut Store) {
            let _ = self.0.recv();
        }
    }

    /// Keeps the writer busy for a while, then says it is done.
    struct Busy(Arc<AtomicBool>);
    impl Op<Store> for Busy {
        type Output = ();
        fn run(self, _: &mut Store) {
            std::thread::sleep(Duration::from_secs(1));
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// One writer on a private in-memory database, with `places` for work in flight.
    fn writer(places: usize) -> Shards<Store> {
        writer_with(places, None)
    }

    fn writer_with(places: usize, sync: Option<WalSync>) -> Shards<Store> {
        let pool = crate::db::memory_test_pool();
        Shards::start(
            "test",
            1,
            1,
            move || Store {
                pool: pool.clone(),
                sync: sync.clone(),
            },
            Arc::new(tokio::sync::Semaphore::new(places)),
            Duration::from_secs(30),
        )
    }

    /// Polls once, so what the future does before its first wait (queueing a write, sending a
    /// flush) happens now, in this order.
    fn start<F: Future>(f: std::pin::Pin<&mut F>) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(matches!(f.poll(&mut cx), Poll::Pending));
    }

    /// `PRAGMA synchronous` as each write numbered 600-699 saw it when applied.
    static SEEN: Mutex<Vec<(u32, i32)>> = Mutex::new(Vec::new());

    /// `PRAGMA synchronous` of a connection (1: NORMAL, 2: FULL).
    fn synchronous_of(c: &mut DbConn) -> i32 {
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            synchronous: i32,
        }
        diesel::sql_query("PRAGMA synchronous")
            .get_result::<Row>(c)
            .unwrap()
            .synchronous
    }

    /// The writer's `PRAGMA synchronous`, between commits.
    struct Synchronous;
    impl Op<Store> for Synchronous {
        type Output = i32;
        fn run(self, s: &mut Store) -> i32 {
            synchronous_of(&mut s.conn().unwrap())
        }
    }

    /// After a failed flush, the writer answers 503 and applies nothing more.
    #[test]
    fn after_a_failed_flush_nothing_more_is_stored() {
        let owner = WalSync::for_test(|| Err(std::io::Error::other("EIO")));
        actix_web::rt::System::new().block_on(async {
            let shards = writer_with(64, Some(owner.sync().clone()));
            let commits = GroupCommit::<W>::new(shards.clone());
            let first = commits.submit("f", W(701), None).await;
            assert!(matches!(&first, Err(StoreError::Unavailable(m)) if m.contains("EIO")));
            let later = commits.submit("f", W(702), None).await;
            assert!(matches!(&later, Err(StoreError::Unavailable(m)) if m.contains("restart")));
            let applied = APPLIED.lock().unwrap().clone();
            assert!(
                applied.contains(&701) && !applied.contains(&702),
                "{applied:?}"
            );
        });
    }

    /// With a WAL syncer, a commit is answered once the flush that follows it has ended, and the
    /// writer goes on meanwhile: it commits the next write while the first one's flush runs, and
    /// its connection is back to `synchronous = FULL` for its other work.
    #[test]
    fn a_commit_is_answered_after_its_flush_and_the_writer_goes_on() {
        let (go, gate) = std::sync::mpsc::channel::<()>();
        let (started, flushes) = std::sync::mpsc::channel::<()>();
        let gate = Mutex::new(gate);
        let owner: crate::db::WalSyncOwner = WalSync::for_test(move || {
            let _ = started.send(());
            // Bounded: a failed assertion must not leave this waiting for ever.
            gate.lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| std::io::Error::other("test over"))
        });
        actix_web::rt::System::new().block_on(async {
            let shards = writer_with(64, Some(owner.sync().clone()));
            let commits = GroupCommit::<W>::new(shards.clone());
            let mut a = pin!(commits.submit("s", W(601), None));
            start(a.as_mut());
            // A's commit is done and its flush has started, but is held.
            let wait = Duration::from_secs(5);
            let flushes = Arc::new(Mutex::new(flushes));
            let f = flushes.clone();
            let first =
                actix_web::rt::task::spawn_blocking(move || f.lock().unwrap().recv_timeout(wait));
            first.await.unwrap().expect("a flush starts");
            // The writer is free: B commits, and the connection is back to FULL.
            let mut b = pin!(commits.submit("s", W(602), None));
            start(b.as_mut());
            assert_eq!(shards.write("s", Synchronous).await.unwrap(), 2);
            assert!(APPLIED.lock().unwrap().contains(&602));
            let mut cx = Context::from_waker(std::task::Waker::noop());
            assert!(
                a.as_mut().poll(&mut cx).is_pending(),
                "answered before its flush"
            );
            go.send(()).unwrap();
            assert_eq!(a.as_mut().await.unwrap(), 601);
            // Its commit did not flush: NORMAL while it was applied.
            assert!(SEEN.lock().unwrap().contains(&(601, 1)));
            // B needs a flush of its own, begun after its commit.
            let f = flushes.clone();
            let second =
                actix_web::rt::task::spawn_blocking(move || f.lock().unwrap().recv_timeout(wait));
            second.await.unwrap().expect("a second flush starts");
            assert!(
                b.as_mut().poll(&mut cx).is_pending(),
                "answered by an earlier flush"
            );
            go.send(()).unwrap();
            assert_eq!(b.as_mut().await.unwrap(), 602);
        });
        drop(owner);
    }

    /// X's flush sits behind other work in the writer's mailbox, but A's flush commits X with
    /// A: X is answered when that commit is done, not once the writer reaches X's own flush.
    #[test]
    fn a_write_is_answered_by_the_commit_that_stores_it() {
        actix_web::rt::System::new().block_on(async {
            let shards = writer(64);
            let commits = GroupCommit::<W>::new(shards.clone());
            let (release, held) = std::sync::mpsc::channel();
            let done = Arc::new(AtomicBool::new(false));

            let mut hold = pin!(shards.write("p", Hold(held)));
            start(hold.as_mut());
            let mut a = pin!(commits.submit("p", W(1), None));
            start(a.as_mut());
            let mut busy = pin!(shards.write("p", Busy(done.clone())));
            start(busy.as_mut());
            let mut x = pin!(commits.submit("p", W(2), None));
            start(x.as_mut());
            // Mailbox: hold, A's flush, busy, X's flush. Queue: A, X.
            release.send(()).unwrap();

            assert_eq!(x.as_mut().await.unwrap(), 2);
            assert!(
                !done.load(Ordering::SeqCst),
                "X's answer waited for the writer's later work"
            );
            assert_eq!(a.as_mut().await.unwrap(), 1);
            busy.as_mut().await.unwrap();
            hold.as_mut().await.unwrap();
        });
    }

    /// On SQLite a batch first goes without savepoints. A write that fails there is answered
    /// with its error and not applied again; the others are applied again (in savepoints) and
    /// answered with what they stored.
    #[test]
    fn a_failed_write_fails_alone_and_is_not_applied_again() {
        actix_web::rt::System::new().block_on(async {
            let shards = writer(64);
            let commits = GroupCommit::<W>::new(shards.clone());
            let (release, held) = std::sync::mpsc::channel();
            let mut hold = pin!(shards.write("r", Hold(held)));
            start(hold.as_mut());
            let mut bad = pin!(commits.submit("r", W(499), None));
            start(bad.as_mut());
            let mut a = pin!(commits.submit("r", W(401), None));
            start(a.as_mut());
            let mut b = pin!(commits.submit("r", W(402), None));
            start(b.as_mut());
            // Mailbox: hold, then the three flushes; the first takes all three.
            release.send(()).unwrap();

            assert!(matches!(bad.as_mut().await, Err(StoreError::Conflict(_))));
            assert_eq!(a.as_mut().await.unwrap(), 401);
            assert_eq!(b.as_mut().await.unwrap(), 402);
            hold.as_mut().await.unwrap();
            let applied: Vec<u32> = APPLIED
                .lock()
                .unwrap()
                .iter()
                .copied()
                .filter(|n| (400..500).contains(n))
                .collect();
            // In lock order: the first attempt stops at 499; the second skips it.
            assert_eq!(applied, [401, 402, 499, 401, 402]);
        });
    }

    /// With no room for more work in flight, a write is refused (503) before it is queued, so
    /// the next write's flush does not store it after its request heard 503.
    #[test]
    fn a_write_refused_as_overload_is_not_stored() {
        actix_web::rt::System::new().block_on(async {
            let shards = writer(1);
            let commits = GroupCommit::<W>::new(shards.clone());
            let (release, held) = std::sync::mpsc::channel();
            let mut hold = pin!(shards.write("q", Hold(held)));
            start(hold.as_mut());
            let refused = commits.submit("q", W(30), None).await;
            assert!(
                matches!(refused, Err(StoreError::Unavailable(_))),
                "expected 503 unavailable"
            );
            release.send(()).unwrap();
            hold.as_mut().await.unwrap();
            assert_eq!(commits.submit("q", W(31), None).await.unwrap(), 31);
            let applied = APPLIED.lock().unwrap().clone();
            assert!(applied.contains(&31), "{applied:?}");
            assert!(
                !applied.contains(&30),
                "a refused write was stored: {applied:?}"
            );
        });
    }
}
