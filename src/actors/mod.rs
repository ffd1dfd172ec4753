//! Actors that own the database pools. Handlers never touch Diesel: they send an [`Op`] through
//! [`Shards`], which bounds the work in flight, picks the actor (a reader, or the writer shard of
//! the project) and waits with a timeout.
//!
//! Each store runs as `SyncArbiter`s: a pool of reader threads, and `N` single-threaded writer
//! shards. A project's writes always hash to the same shard, so they are applied one at a time,
//! in arrival order, while other projects proceed in parallel. Across replicas the database is the
//! arbiter (unique indexes, transactions); the shards only avoid needless contention.

pub(crate) mod alerts;
pub(crate) mod baseline_store;
pub(crate) mod changepoints;
pub(crate) mod dashboard;
pub(crate) mod decision_ledger;
mod error;
pub(crate) mod fleet_analyzer;
pub(crate) mod gate;
pub(crate) mod group_commit;
pub(crate) mod key_store;
pub(crate) mod retention;
pub(crate) mod verdict_log;
pub(crate) mod writes;

pub(crate) use error::StoreError;

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use actix::dev::{MessageResponse, OneshotSender};
use actix::prelude::*;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Who asked for a change, for the audit log.
#[derive(Debug, Clone)]
pub(crate) struct Initiator {
    /// The principal's id (an API key id, `jwt:…`, `oidc:…`, or `operator` for the CLI).
    pub principal_id: String,
    /// The request's ids: the audit log stores the server's, and the client's beside it.
    pub request_id: crate::request_id::RequestRef,
}

/// One use case run by a store actor, typically inside one transaction.
pub(crate) trait Op<S>: Send + 'static {
    type Output: Send + 'static;
    fn run(self, store: &mut S) -> Self::Output;
}

/// An [`Op`] in a mailbox. It carries its admission permit, so the bound on in-flight work holds
/// until the actor has actually run it, even when the sender has already timed out.
pub(crate) struct Job<M, S> {
    op: M,
    _permit: OwnedSemaphorePermit,
    /// Counts the message in the mailbox-depth gauge until the actor takes it.
    queued: crate::metrics::QueueGuard,
    _store: PhantomData<fn() -> S>,
}

impl<M: Op<S>, S: 'static> Message for Job<M, S> {
    type Result = JobResult<M::Output>;
}

/// Lets any `Send` value be an actor reply.
pub(crate) struct JobResult<T>(pub T);

impl<A: Actor, M: Message<Result = JobResult<T>>, T: 'static> MessageResponse<A, M>
    for JobResult<T>
{
    fn handle(self, _ctx: &mut A::Context, tx: Option<OneshotSender<M::Result>>) {
        if let Some(tx) = tx {
            let _ = tx.send(self);
        }
    }
}

/// Declares `$store` a sync actor that runs every [`Op`] sent to it.
#[macro_export]
macro_rules! store_actor {
    ($store:ty) => {
        impl actix::Actor for $store {
            type Context = actix::SyncContext<Self>;
        }
        impl<M: $crate::actors::Op<$store>> actix::Handler<$crate::actors::Job<M, $store>>
            for $store
        {
            type Result = $crate::actors::JobResult<M::Output>;
            fn handle(
                &mut self,
                job: $crate::actors::Job<M, $store>,
                _ctx: &mut Self::Context,
            ) -> Self::Result {
                $crate::actors::JobResult(job.into_op().run(self))
            }
        }
    };
}

impl<M, S> Job<M, S> {
    /// Takes the operation out; the message leaves the mailbox-depth count here.
    pub(crate) fn into_op(self) -> M {
        drop(self.queued);
        self.op
    }
}

/// Readers and writer shards of one store, with admission control and timeouts.
pub(crate) struct Shards<S: Actor<Context = SyncContext<S>>> {
    name: &'static str,
    readers: Addr<S>,
    writers: Vec<Addr<S>>,
    limiter: Arc<Semaphore>,
    timeout: Duration,
}

impl<S: Actor<Context = SyncContext<S>>> Clone for Shards<S> {
    fn clone(&self) -> Self {
        Self {
            name: self.name,
            readers: self.readers.clone(),
            writers: self.writers.clone(),
            limiter: self.limiter.clone(),
            timeout: self.timeout,
        }
    }
}

/// FNV-1a: a stable hash, so a project maps to the same shard in every process.
fn shard_of(key: &str, n: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % n as u64) as usize
}

impl<S: Actor<Context = SyncContext<S>>> Shards<S> {
    pub(crate) fn start(
        name: &'static str,
        reader_threads: usize,
        writer_shards: usize,
        factory: impl Fn() -> S + Send + Sync + Clone + 'static,
        limiter: Arc<Semaphore>,
        timeout: Duration,
    ) -> Self {
        let readers = SyncArbiter::start(reader_threads.max(1), factory.clone());
        Self {
            name,
            readers,
            writers: Self::writer_shards(writer_shards, factory),
            limiter,
            timeout,
        }
    }

    /// `n` single-threaded writer shards, each with an actor of its own.
    pub(crate) fn writer_shards(
        n: usize,
        factory: impl Fn() -> S + Send + Sync + Clone + 'static,
    ) -> Vec<Addr<S>> {
        (0..n)
            .map(|_| SyncArbiter::start(1, factory.clone()))
            .collect()
    }

    /// Gives these readers writer shards (started with a pool of their own).
    pub(crate) fn with_writers(mut self, writers: Vec<Addr<S>>) -> Self {
        self.writers = writers;
        self
    }

    pub(crate) async fn read<M>(&self, op: M) -> Result<M::Output, StoreError>
    where
        M: Op<S>,
        S: Handler<Job<M, S>>,
    {
        self.send(&self.readers, op, self.timeout).await
    }

    /// A read with its own deadline (the health probe answers fast even when storage hangs).
    pub(crate) async fn read_within<M>(
        &self,
        op: M,
        timeout: Duration,
    ) -> Result<M::Output, StoreError>
    where
        M: Op<S>,
        S: Handler<Job<M, S>>,
    {
        self.send(&self.readers, op, timeout).await
    }

    /// The writer shard that owns `shard_key` (the project).
    pub(crate) fn shard_index(&self, shard_key: &str) -> usize {
        shard_of(shard_key, self.writers.len().max(1))
    }

    /// Sends a mutation to the writer shard that owns `shard_key` (the project).
    pub(crate) async fn write<M>(&self, shard_key: &str, op: M) -> Result<M::Output, StoreError>
    where
        M: Op<S>,
        S: Handler<Job<M, S>>,
    {
        self.write_admitted(shard_key, op, self.admit()?).await
    }

    /// A place among the work in flight, or 503 `unavailable` when there is none.
    pub(crate) fn admit(&self) -> Result<OwnedSemaphorePermit, StoreError> {
        self.limiter.clone().try_acquire_owned().map_err(|_| {
            log::warn!("{}: too much work in flight, refusing request", self.name);
            StoreError::Unavailable("Server is overloaded; retry shortly".into())
        })
    }

    /// [`write`](Self::write) with its place among the work in flight already taken.
    pub(crate) async fn write_admitted<M>(
        &self,
        shard_key: &str,
        op: M,
        permit: OwnedSemaphorePermit,
    ) -> Result<M::Output, StoreError>
    where
        M: Op<S>,
        S: Handler<Job<M, S>>,
    {
        let addr = &self.writers[shard_of(shard_key, self.writers.len())];
        self.send_admitted(addr, op, permit, self.timeout).await
    }

    async fn send<M>(
        &self,
        addr: &Addr<S>,
        op: M,
        timeout: Duration,
    ) -> Result<M::Output, StoreError>
    where
        M: Op<S>,
        S: Handler<Job<M, S>>,
    {
        let permit = self.admit()?;
        self.send_admitted(addr, op, permit, timeout).await
    }

    /// How long a request waits for this store.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn send_admitted<M>(
        &self,
        addr: &Addr<S>,
        op: M,
        permit: OwnedSemaphorePermit,
        timeout: Duration,
    ) -> Result<M::Output, StoreError>
    where
        M: Op<S>,
        S: Handler<Job<M, S>>,
    {
        let job = Job {
            op,
            _permit: permit,
            queued: crate::metrics::QueueGuard::new(self.name),
            _store: PhantomData,
        };
        let started = std::time::Instant::now();
        let result = addr.send(job).timeout(timeout).await;
        crate::metrics::METRICS
            .message_duration
            .with_label_values(&[self.name])
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(JobResult(out)) => Ok(out),
            Err(MailboxError::Timeout) => {
                log::warn!("{}: no answer within {:?}", self.name, timeout);
                Err(StoreError::Timeout(timeout))
            }
            Err(MailboxError::Closed) => {
                Err(StoreError::Unavailable("Storage is shutting down".into()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shard_is_stable_and_spread() {
        assert_eq!(super::shard_of("proj", 4), super::shard_of("proj", 4));
        let used: std::collections::HashSet<_> = (0..64)
            .map(|i| super::shard_of(&format!("p{i}"), 4))
            .collect();
        assert_eq!(used.len(), 4);
    }
}
