//! The baseline store: uploads, reads, soft deletes and promotes (contract §4).

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::api::{etag_of, UploadResponse};
use crate::auth::BenchFilter;
use crate::cache::LatestCache;
use crate::db::audit::{self, AuditEntry};
use crate::db::baselines::{self as q, BaselineRow, ListFilter, SummaryRow};
use diesel::Connection;

use crate::db::{read_tx, write_tx, DbPool, PooledConn};
use crate::domain::names::{BenchmarkName, ProjectName, Version};
use crate::domain::time::{now_micros, to_rfc3339};
use crate::domain::version;
use crate::error::{ApiError, DbError};
use crate::store_actor;

use super::Op;

pub struct BaselineStore {
    pool: DbPool,
    /// Invalidated here, by every write, before the write is acknowledged.
    cache: Arc<LatestCache>,
}

store_actor!(BaselineStore);

impl BaselineStore {
    pub fn new(pool: DbPool, cache: Arc<LatestCache>) -> Self {
        Self { pool, cache }
    }
    pub(crate) fn conn(&self) -> Result<PooledConn, StoreError> {
        Ok(self.pool.get().map_err(DbError::from)?)
    }
}

/// Outcomes a handler must tell apart; everything else is a storage failure.
#[derive(Debug)]
pub enum StoreError {
    NotFound(String),
    Conflict(String),
    /// Storage failed for a whole group commit (answered 503; nothing of it was stored).
    Unavailable(String),
    Db(DbError),
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        StoreError::Db(e)
    }
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        StoreError::Db(DbError::Diesel(e))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::not_found(m),
            StoreError::Conflict(m) => ApiError::conflict(m),
            StoreError::Unavailable(m) => ApiError::unavailable(m),
            StoreError::Db(e) => e.into(),
        }
    }
}

/// Who did it, for the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    pub principal_id: String,
    pub request_id: String,
}

/// The health probe: `SELECT 1` on a pooled connection, waiting for a connection no longer
/// than `PROBE_TIMEOUT` so that a dead database reports quickly.
pub struct Probe;

pub const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

impl Op<BaselineStore> for Probe {
    type Output = Result<(), DbError>;
    fn run(self, s: &mut BaselineStore) -> Self::Output {
        let mut c = s.pool.get_timeout(PROBE_TIMEOUT)?;
        crate::db::probe(&mut c)
    }
}

pub struct GetLatest {
    pub project: ProjectName,
    pub benchmark: BenchmarkName,
}

impl Op<BaselineStore> for GetLatest {
    type Output = Result<Option<BaselineRow>, StoreError>;
    fn run(self, s: &mut BaselineStore) -> Self::Output {
        let mut c = s.conn()?;
        Ok(q::latest(
            &mut c,
            self.project.as_str(),
            self.benchmark.as_str(),
        )?)
    }
}

pub struct GetVersion {
    pub project: ProjectName,
    pub benchmark: BenchmarkName,
    pub version: Version,
}

impl Op<BaselineStore> for GetVersion {
    type Output = Result<Option<BaselineRow>, StoreError>;
    fn run(self, s: &mut BaselineStore) -> Self::Output {
        let mut c = s.conn()?;
        let row = q::find_version(
            &mut c,
            self.project.as_str(),
            self.benchmark.as_str(),
            self.version.as_str(),
        )?;
        Ok(row.filter(|r| r.deleted_at.is_none()))
    }
}

pub struct List {
    pub filter: ListFilter,
    /// The caller's benchmark restriction: rows of other benchmarks are not visible, and the
    /// total counts only visible rows.
    pub visible: Option<BenchFilter>,
}

impl Op<BaselineStore> for List {
    type Output = Result<(Vec<SummaryRow>, i64), StoreError>;
    fn run(mut self, s: &mut BaselineStore) -> Self::Output {
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

pub struct Upload {
    pub project: ProjectName,
    pub benchmark: BenchmarkName,
    pub version: Option<Version>,
    pub git_ref: Option<String>,
    pub git_sha: Option<String>,
    /// Receipt JSON exactly as it will be stored and served.
    pub receipt: String,
    pub wall_ms_median: i64,
    /// `{"metric": median}` of the receipt's stats.
    pub medians_json: String,
    pub metadata_json: String,
    pub tags: Vec<String>,
    /// `(Idempotency-Key, sha256 of the request body)`.
    pub idempotency: Option<(String, String)>,
    pub actor: Actor,
}

pub struct UploadOutcome {
    pub response: UploadResponse,
    /// True when an earlier upload with the same Idempotency-Key and body is being replayed.
    pub replayed: bool,
}

impl Upload {
    fn replay(&self, c: &mut crate::db::DbConn) -> Result<Option<UploadOutcome>, StoreError> {
        let Some((key, hash)) = &self.idempotency else {
            return Ok(None);
        };
        match q::find_idempotency(c, self.project.as_str(), key)? {
            None => Ok(None),
            Some(row) if &row.request_hash == hash => Ok(Some(UploadOutcome {
                response: serde_json::from_str(&row.response).map_err(DbError::from)?,
                replayed: true,
            })),
            Some(_) => Err(StoreError::Conflict(format!(
                "Idempotency-Key '{key}' was already used with a different request body"
            ))),
        }
    }
}

impl Upload {
    /// The upload's statements, inside the caller's transaction.
    fn apply(&self, c: &mut crate::db::DbConn) -> Result<UploadOutcome, StoreError> {
        {
            if let Some(done) = self.replay(c)? {
                return Ok(done);
            }
            let now = now_micros();
            let project = self.project.as_str();
            let benchmark = self.benchmark.as_str();
            let version = match &self.version {
                Some(v) => {
                    if q::version_taken(c, project, benchmark, v.as_str())? {
                        return Err(StoreError::Conflict(format!("{benchmark}/{v}")));
                    }
                    v.clone()
                }
                None => loop {
                    let v = version::generate(now);
                    if !q::version_taken(c, project, benchmark, v.as_str())? {
                        break v;
                    }
                },
            };
            let content_hash = hex::encode(Sha256::digest(self.receipt.as_bytes()));
            let row = BaselineRow {
                id: crate::domain::ids::row_id(),
                project: project.to_owned(),
                benchmark: benchmark.to_owned(),
                version: version.as_str().to_owned(),
                git_ref: self.git_ref.clone(),
                git_sha: self.git_sha.clone(),
                receipt: self.receipt.clone(),
                metadata: self.metadata_json.clone(),
                tags: serde_json::to_string(&self.tags).map_err(DbError::from)?,
                content_hash,
                source: "upload".into(),
                promoted_from: None,
                wall_ms_median: Some(self.wall_ms_median),
                medians: self.medians_json.clone(),
                created_at: now,
                updated_at: now,
                deleted_at: None,
            };
            q::insert(c, &row, &self.tags)?;
            let response = UploadResponse {
                id: row.id.clone(),
                benchmark: row.benchmark.clone(),
                version: row.version.clone(),
                created_at: to_rfc3339(now),
                etag: etag_of(&row.content_hash),
            };
            let mut extra = serde_json::Map::new();
            extra.insert("benchmark".into(), benchmark.into());
            extra.insert("version".into(), row.version.clone().into());
            audit::insert(
                c,
                AuditEntry {
                    actor: &self.actor.principal_id,
                    action: "create",
                    resource_type: "baseline",
                    resource_id: &row.id,
                    project,
                    request_id: &self.actor.request_id,
                    extra,
                },
                now,
            )?;
            if let Some((key, hash)) = &self.idempotency {
                let body = serde_json::to_string(&response).map_err(DbError::from)?;
                q::insert_idempotency(c, project, key, hash, &row.id, &body, now)?;
            }
            Ok(UploadOutcome {
                response,
                replayed: false,
            })
        }
    }

    /// Another replica won the race for this version (or this Idempotency-Key): the unique
    /// index refused our insert. A retry with the same key gets the first answer.
    fn after_unique_violation(
        &self,
        c: &mut crate::db::DbConn,
    ) -> Result<UploadOutcome, StoreError> {
        if let Some(done) = self.replay(c)? {
            return Ok(done);
        }
        let v = self.version.as_ref().map(|v| v.as_str()).unwrap_or("?");
        Err(StoreError::Conflict(format!("{}/{v}", self.benchmark)))
    }
}

impl Op<BaselineStore> for Upload {
    type Output = Result<UploadOutcome, StoreError>;
    fn run(self, s: &mut BaselineStore) -> Self::Output {
        let mut c = s.conn()?;
        let result = write_tx(&mut c, |c| self.apply(c));
        s.cache
            .invalidate(self.project.as_str(), self.benchmark.as_str());
        match result {
            Err(StoreError::Db(e)) if e.is_unique_violation() => {
                read_tx(&mut c, |c| self.after_unique_violation(c))
            }
            other => other,
        }
    }
}

type UploadReply = tokio::sync::oneshot::Sender<Result<UploadOutcome, StoreError>>;

/// Group commit of uploads. A handler queues its upload for the project's writer shard and then
/// sends a [`FlushUploads`] through the shard's mailbox; the first flush to run takes every
/// upload queued for the shard so far and commits them in **one** transaction (one fsync), each
/// in a savepoint of its own, so a conflict or a bad row fails only its own request. Every
/// request is answered only after that commit. Later flushes find their upload already done.
///
/// A commit delay, in the spirit of PostgreSQL's `commit_delay`/`commit_siblings`: when uploads
/// come in a stream (another upload is between its request head and the queue, or the shard
/// committed less than [`STREAM_GAP`] ago), a flush keeps gathering while uploads keep joining,
/// until none has joined for [`QUIET`], as many as in its previous commit are queued with none on
/// its way, or [`GATHER`] has passed. A lone upload commits at once.
/// Per upload, a commit costs its fsync, its WAL frame headers and the pages it shares with its
/// neighbours (the newest leaf of each time-ordered index): a batch pays them once.
#[derive(Default)]
pub struct UploadQueue {
    state: std::sync::Mutex<QueueState>,
    /// Signalled when an upload is queued or stops arriving.
    changed: std::sync::Condvar,
    /// Upload requests between their head and their place in the queue.
    arriving: std::sync::atomic::AtomicUsize,
}

type Pending = Vec<(Upload, UploadReply)>;

#[derive(Default)]
struct QueueState {
    shards: std::collections::HashMap<usize, Pending>,
    /// When each shard last took a batch, and how large it was.
    last_take: std::collections::HashMap<usize, (std::time::Instant, usize)>,
}

/// The longest a flush waits for other uploads to join its commit.
pub const GATHER: std::time::Duration = std::time::Duration::from_millis(2);
/// A flush stops gathering when no upload has joined for this long.
pub const QUIET: std::time::Duration = std::time::Duration::from_micros(200);
/// Uploads closer together than this count as a stream.
pub const STREAM_GAP: std::time::Duration = std::time::Duration::from_millis(2);

/// Counts one upload request as arriving, from its head until it is queued or dropped.
pub struct ArrivingUpload(Arc<UploadQueue>);

impl Drop for ArrivingUpload {
    fn drop(&mut self) {
        self.0
            .arriving
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        // Under the lock, so a flush between its check and its wait cannot miss the signal.
        drop(self.0.lock());
        self.0.changed.notify_all();
    }
}

impl UploadQueue {
    /// Marks an upload request as on its way (taken by the request-context middleware).
    pub fn arriving(self: &Arc<Self>) -> ArrivingUpload {
        self.arriving
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        ArrivingUpload(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `upload` for `shard`; its outcome arrives on the returned receiver once a flush of
    /// that shard has committed it.
    pub fn push(
        &self,
        shard: usize,
        upload: Upload,
    ) -> tokio::sync::oneshot::Receiver<Result<UploadOutcome, StoreError>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.lock()
            .shards
            .entry(shard)
            .or_default()
            .push((upload, tx));
        self.changed.notify_all();
        rx
    }

    /// Takes what is queued for `shard`, gathering first when uploads come in a stream.
    fn take(&self, shard: usize) -> Pending {
        use std::time::Instant;
        let started = Instant::now();
        let mut q = self.lock();
        let queued = |q: &QueueState| q.shards.get(&shard).map_or(0, Vec::len);
        if queued(&q) == 0 {
            // An earlier flush committed this one's upload.
            return Vec::new();
        }
        let arriving = || self.arriving.load(std::sync::atomic::Ordering::Acquire);
        let last = q.last_take.get(&shard).copied();
        let stream =
            arriving() > 0 || last.is_some_and(|(t, _)| started.duration_since(t) < STREAM_GAP);
        // A stream of N clients tends to bring N uploads per commit: once as many as last time
        // are queued and none is on its way, waiting longer only adds latency.
        let expected = last.map_or(usize::MAX, |(_, n)| n.max(2));
        if stream {
            let deadline = started + GATHER;
            let mut seen = queued(&q);
            let mut quiet_until = started + QUIET;
            loop {
                let now = Instant::now();
                let n = queued(&q);
                if n > seen {
                    seen = n;
                    quiet_until = now + QUIET;
                }
                let until = if arriving() > 0 {
                    deadline
                } else if n >= expected {
                    break;
                } else {
                    quiet_until.min(deadline)
                };
                if now >= until {
                    break;
                }
                q = match self.changed.wait_timeout(q, until - now) {
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

/// Commits the uploads queued for one writer shard (see [`UploadQueue`]).
pub struct FlushUploads {
    pub queue: Arc<UploadQueue>,
    pub shard: usize,
}

impl Op<BaselineStore> for FlushUploads {
    type Output = ();
    fn run(self, s: &mut BaselineStore) {
        let mut batch = self.queue.take(self.shard);
        if batch.is_empty() {
            return;
        }
        // One lock order for every batch on every replica: an upload locks its benchmark's row
        // (the live count), so two replicas committing batches that share benchmarks in
        // different orders would deadlock on PostgreSQL (and wait out `deadlock_timeout`).
        batch.sort_by(|(a, _), (b, _)| {
            (a.benchmark.as_str(), a.version.as_ref().map(|v| v.as_str()))
                .cmp(&(b.benchmark.as_str(), b.version.as_ref().map(|v| v.as_str())))
        });
        let mut c = match s.conn() {
            Ok(c) => c,
            Err(e) => {
                let msg = ApiError::from(e).message;
                for (_, reply) in batch {
                    let _ = reply.send(Err(StoreError::Unavailable(msg.clone())));
                }
                return;
            }
        };
        let mut results = Vec::with_capacity(batch.len());
        let committed = write_tx(&mut c, |c| {
            for (upload, _) in &batch {
                // A savepoint per upload: its failure rolls back only its own statements.
                let r = match c.transaction(|c| upload.apply(c)) {
                    Err(StoreError::Db(e)) if e.is_unique_violation() => {
                        upload.after_unique_violation(c)
                    }
                    other => other,
                };
                results.push(r);
            }
            Ok::<(), StoreError>(())
        });
        for (upload, _) in &batch {
            s.cache
                .invalidate(upload.project.as_str(), upload.benchmark.as_str());
        }
        match committed {
            Ok(()) => {
                for ((_, reply), r) in batch.into_iter().zip(results) {
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                let err = ApiError::from(e);
                log::warn!(
                    "group commit of {} uploads failed: {}",
                    batch.len(),
                    err.message
                );
                for (_, reply) in batch {
                    let _ = reply.send(Err(StoreError::Unavailable(err.message.clone())));
                }
            }
        }
    }
}

pub struct Delete {
    pub project: ProjectName,
    pub benchmark: BenchmarkName,
    pub version: Version,
    pub actor: Actor,
}

pub struct Deleted {
    pub deleted_at: i64,
}

impl Op<BaselineStore> for Delete {
    type Output = Result<Deleted, StoreError>;
    fn run(self, s: &mut BaselineStore) -> Self::Output {
        let mut c = s.conn()?;
        let result = write_tx(&mut c, |c| {
            let now = now_micros();
            let (p, b, v) = (
                self.project.as_str(),
                self.benchmark.as_str(),
                self.version.as_str(),
            );
            let Some(id) = q::soft_delete(c, p, b, v, now)? else {
                return Err(StoreError::NotFound(format!("Baseline {b}/{v} not found")));
            };
            let mut extra = serde_json::Map::new();
            extra.insert("benchmark".into(), b.into());
            extra.insert("version".into(), v.into());
            audit::insert(
                c,
                AuditEntry {
                    actor: &self.actor.principal_id,
                    action: "delete",
                    resource_type: "baseline",
                    resource_id: &id,
                    project: p,
                    request_id: &self.actor.request_id,
                    extra,
                },
                now,
            )?;
            Ok(Deleted { deleted_at: now })
        });
        s.cache
            .invalidate(self.project.as_str(), self.benchmark.as_str());
        result
    }
}

pub struct Promote {
    pub project: ProjectName,
    pub benchmark: BenchmarkName,
    pub from_version: Version,
    pub to_version: Version,
    pub git_ref: Option<String>,
    pub git_sha: Option<String>,
    pub tags: Vec<String>,
    pub normalize: bool,
    pub actor: Actor,
}

pub struct Promoted {
    pub id: String,
    pub created_at: i64,
}

impl Op<BaselineStore> for Promote {
    type Output = Result<Promoted, StoreError>;
    fn run(self, s: &mut BaselineStore) -> Self::Output {
        let mut c = s.conn()?;
        let (p, b) = (self.project.as_str(), self.benchmark.as_str());
        let result = write_tx(&mut c, |c| {
            let source = q::find_version(c, p, b, self.from_version.as_str())?
                .filter(|r| r.deleted_at.is_none())
                .ok_or_else(|| {
                    StoreError::NotFound(format!("Baseline {b}/{} not found", self.from_version))
                })?;
            if q::version_taken(c, p, b, self.to_version.as_str())? {
                return Err(StoreError::Conflict(format!("{b}/{}", self.to_version)));
            }
            let receipt = if self.normalize {
                crate::domain::receipt::normalize(&source.receipt).map_err(DbError::from)?
            } else {
                source.receipt.clone()
            };
            let now = now_micros();
            let row = BaselineRow {
                id: crate::domain::ids::row_id(),
                project: p.to_owned(),
                benchmark: b.to_owned(),
                version: self.to_version.as_str().to_owned(),
                git_ref: self.git_ref.clone().or(source.git_ref.clone()),
                git_sha: self.git_sha.clone().or(source.git_sha.clone()),
                content_hash: hex::encode(Sha256::digest(receipt.as_bytes())),
                receipt,
                metadata: source.metadata.clone(),
                tags: serde_json::to_string(&self.tags).map_err(DbError::from)?,
                source: "promote".into(),
                promoted_from: Some(source.version.clone()),
                wall_ms_median: source.wall_ms_median,
                medians: source.medians.clone(),
                created_at: now,
                updated_at: now,
                deleted_at: None,
            };
            q::insert(c, &row, &self.tags)?;
            let mut extra = serde_json::Map::new();
            extra.insert("benchmark".into(), b.into());
            extra.insert("from_version".into(), source.version.clone().into());
            extra.insert("to_version".into(), row.version.clone().into());
            audit::insert(
                c,
                AuditEntry {
                    actor: &self.actor.principal_id,
                    action: "promote",
                    resource_type: "baseline",
                    resource_id: &row.id,
                    project: p,
                    request_id: &self.actor.request_id,
                    extra,
                },
                now,
            )?;
            Ok(Promoted {
                id: row.id,
                created_at: now,
            })
        });
        s.cache.invalidate(p, b);
        match result {
            // Two replicas promoting to one target: the unique index picks the winner.
            Err(StoreError::Db(e)) if e.is_unique_violation() => {
                Err(StoreError::Conflict(format!("{b}/{}", self.to_version)))
            }
            other => other,
        }
    }
}

/// Stat medians of the newest `window` live versions, newest first (one index range scan; the
/// receipts themselves are not read).
pub struct RecentMedians {
    pub project: ProjectName,
    pub benchmark: BenchmarkName,
    pub window: i64,
}

impl Op<BaselineStore> for RecentMedians {
    type Output = Result<Vec<String>, StoreError>;
    fn run(self, s: &mut BaselineStore) -> Self::Output {
        let mut c = s.conn()?;
        Ok(q::recent_medians(
            &mut c,
            self.project.as_str(),
            self.benchmark.as_str(),
            self.window,
        )?)
    }
}
