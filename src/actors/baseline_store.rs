//! The baseline store: uploads, reads, soft deletes and promotes (contract §4).

use crate::api::{etag_of, UploadResponse};
use crate::db::alerts::{self, QuarantineRow};
use crate::db::audit::{self, AuditEntry};
use crate::db::baselines::{self as q, BaselineRow, ListFilter, SummaryRow};
use crate::db::gates::{self, RunStatRow, StoredRun};
use crate::db::notify::Invalidator;
use crate::db::{read_tx, write_tx, DbConn, DbError, DbPool, PooledConn, WalSync};
use crate::domain::access::BenchFilter;
use crate::domain::names::{BenchmarkName, ProjectName, Version};
use crate::domain::summary::RunSummary;
use crate::domain::time::{now_micros, to_rfc3339};
use crate::domain::version;
use crate::store_actor;

use super::group_commit::GroupStore;
use super::{Initiator, Op, StoreError};

pub(crate) struct BaselineStore {
    pool: DbPool,
    /// Every write drops the latest answers it may change (on every replica) before it is
    /// acknowledged.
    pub(super) inv: Invalidator,
}

store_actor!(BaselineStore);

impl GroupStore for BaselineStore {
    fn conn(&self) -> Result<PooledConn, StoreError> {
        BaselineStore::conn(self)
    }
    fn wal_sync(&self) -> Option<&WalSync> {
        self.pool.wal_sync()
    }
}

impl BaselineStore {
    pub(crate) fn new(pool: DbPool, inv: Invalidator) -> Self {
        Self { pool, inv }
    }
    pub(crate) fn conn(&self) -> Result<PooledConn, StoreError> {
        Ok(self.pool.get().map_err(DbError::from)?)
    }
}

/// The health probe: `SELECT 1` on a pooled connection, waiting for a connection no longer
/// than `PROBE_TIMEOUT` so that a dead database reports quickly.
pub(crate) struct Probe;

pub(crate) const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

impl Op<BaselineStore> for Probe {
    type Output = Result<(), StoreError>;
    fn run(self, s: &mut BaselineStore) -> Self::Output {
        let mut c = s.pool.get_timeout(PROBE_TIMEOUT).map_err(DbError::from)?;
        Ok(crate::db::probe(&mut c)?)
    }
}

pub(crate) struct GetLatest {
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

pub(crate) struct GetVersion {
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

pub(crate) struct ListBaselines {
    pub filter: ListFilter,
    /// The caller's benchmark restriction: rows of other benchmarks are not visible, and the
    /// total counts only visible rows.
    pub visible: Option<BenchFilter>,
}

impl Op<BaselineStore> for ListBaselines {
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

pub(crate) struct Upload {
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
    /// `(Idempotency-Key, sha256 of the request body)`; records are the caller's own
    /// (`actor.principal_id`) and last 24 hours.
    pub idempotency: Option<(String, String)>,
    /// The run's summaries for the gate's history, its `run.id` and runner class.
    pub run: RunFacts,
    pub actor: Initiator,
}

/// What the gate keeps of a stored run: one summary per metric.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunFacts {
    pub run_id: String,
    /// Runner class (`domain::receipt::runner_class`).
    pub runner: String,
    pub summaries: Vec<(&'static str, RunSummary)>,
}

impl RunFacts {
    /// The `run_stats` rows of this run stored as `row` (`failed`: a final gate failed the run).
    pub(crate) fn rows(&self, row: &BaselineRow, failed: bool) -> Vec<RunStatRow> {
        StoredRun {
            baseline_id: &row.id,
            project: &row.project,
            benchmark: &row.benchmark,
            git_sha: row.git_sha.as_deref(),
            created_at: row.created_at,
            runner: &self.runner,
            run_id: &self.run_id,
            failed,
            deleted: false,
        }
        .rows(&self.summaries)
    }
}

pub(crate) struct UploadOutcome {
    pub response: UploadResponse,
    /// True when an earlier upload with the same Idempotency-Key and body is being replayed.
    pub replayed: bool,
}

impl Upload {
    /// A run a final gate failed is stored but quarantined: never served as latest, not
    /// promotable until its alert is triaged (an `invalid` alert has already released it).
    fn quarantine(
        &self,
        c: &mut DbConn,
        row: &BaselineRow,
        failing_gate: Option<String>,
        now: i64,
    ) -> Result<Option<QuarantineRow>, StoreError> {
        let Some(gate_id) = failing_gate else {
            return Ok(None);
        };
        let alert = alerts::alert_of_gate(c, &gate_id, &row.benchmark)?;
        if alert.as_ref().is_some_and(|a| a.status == "invalid") {
            return Ok(None);
        }
        let held = QuarantineRow {
            baseline_id: row.id.clone(),
            project: row.project.clone(),
            benchmark: row.benchmark.clone(),
            gate_id,
            alert_id: alert.map(|a| a.id),
            created_at: now,
        };
        alerts::insert_quarantine(c, &held)?;
        Ok(Some(held))
    }

    fn replay(&self, c: &mut DbConn) -> Result<Option<UploadOutcome>, StoreError> {
        let Some((key, hash)) = &self.idempotency else {
            return Ok(None);
        };
        let not_before = now_micros() - q::IDEMPOTENCY_TTL_MICROS;
        let principal = &self.actor.principal_id;
        match q::find_idempotency(c, self.project.as_str(), principal, key, not_before)? {
            None => Ok(None),
            Some(row) if &row.request_hash == hash => {
                let response: UploadResponse =
                    serde_json::from_str(&row.response).map_err(DbError::from)?;
                // Answer what is true now: a baseline deleted since is not "created".
                let live = q::find_version(
                    c,
                    self.project.as_str(),
                    &response.benchmark,
                    &response.version,
                )?
                .is_some_and(|r| r.deleted_at.is_none() && r.id == response.id);
                if !live {
                    return Err(StoreError::Conflict(format!(
                        "Idempotency-Key '{key}': baseline {}/{} stored by the first request has been deleted since",
                        response.benchmark, response.version
                    )));
                }
                Ok(Some(UploadOutcome {
                    response,
                    replayed: true,
                }))
            }
            Some(_) => Err(StoreError::Conflict(format!(
                "Idempotency-Key '{key}' was already used with a different request body"
            ))),
        }
    }
}

impl Upload {
    /// The upload's statements, inside the caller's transaction.
    fn statements(&self, c: &mut DbConn) -> Result<UploadOutcome, StoreError> {
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
            let content_hash = crate::domain::digest::sha256_hex(self.receipt.as_bytes());
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
            let failing_gate = alerts::failing_gate(c, project, benchmark, &self.run.run_id)?;
            gates::insert_run_stats(c, &self.run.rows(&row, failing_gate.is_some()))?;
            let held = self.quarantine(c, &row, failing_gate, now)?;
            let response = UploadResponse {
                id: row.id.clone(),
                benchmark: row.benchmark.clone(),
                version: row.version.clone(),
                created_at: to_rfc3339(now),
                etag: etag_of(&row.content_hash),
                quarantined: held.is_some(),
                gate_id: held.as_ref().map(|h| h.gate_id.clone()),
                alert_id: held.and_then(|h| h.alert_id),
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
                q::insert_idempotency(
                    c,
                    project,
                    &self.actor.principal_id,
                    key,
                    hash,
                    &row.id,
                    &body,
                    now,
                )?;
            }
            Ok(UploadOutcome {
                response,
                replayed: false,
            })
        }
    }
}

/// What the group commit (`super::writes`) asks of an upload.
impl Upload {
    /// An upload locks its benchmark's row (the live count).
    pub(super) fn lock_cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Projects share benchmark names: (project, benchmark) names the locked row.
        let (a, b) = (&self.version, &other.version);
        (self.project.as_str(), self.benchmark.as_str())
            .cmp(&(other.project.as_str(), other.benchmark.as_str()))
            .then_with(|| {
                a.as_ref()
                    .map(|v| v.as_str())
                    .cmp(&b.as_ref().map(|v| v.as_str()))
            })
    }

    pub(super) fn apply(&self, c: &mut DbConn) -> Result<UploadOutcome, StoreError> {
        self.statements(c)
    }

    /// Another replica won the race for this version (or this Idempotency-Key): the unique
    /// index refused our insert. A retry with the same key gets the first answer.
    pub(super) fn after_unique_violation(
        &self,
        c: &mut DbConn,
    ) -> Result<UploadOutcome, StoreError> {
        if let Some(done) = self.replay(c)? {
            return Ok(done);
        }
        let v = self.version.as_ref().map(|v| v.as_str()).unwrap_or("?");
        Err(StoreError::Conflict(format!("{}/{v}", self.benchmark)))
    }

    /// The latest answer this upload may change.
    pub(super) fn pair(&self) -> (&str, &str) {
        (self.project.as_str(), self.benchmark.as_str())
    }
}

pub(crate) struct Delete {
    pub project: ProjectName,
    pub benchmark: BenchmarkName,
    pub version: Version,
    pub actor: Initiator,
}

pub(crate) struct Deleted {
    pub deleted_at: i64,
}

impl Op<BaselineStore> for Delete {
    type Output = Result<Deleted, StoreError>;
    fn run(self, s: &mut BaselineStore) -> Self::Output {
        let mut c = s.conn()?;
        let pair = [(self.project.as_str(), self.benchmark.as_str())];
        let mut wait = None;
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
            wait = s.inv.announce(c, &pair)?;
            Ok(Deleted { deleted_at: now })
        });
        s.inv.settle(&mut c, &pair, result.is_ok(), wait);
        result
    }
}

pub(crate) struct Promote {
    pub project: ProjectName,
    pub benchmark: BenchmarkName,
    pub from_version: Version,
    pub to_version: Version,
    pub git_ref: Option<String>,
    pub git_sha: Option<String>,
    pub tags: Vec<String>,
    pub normalize: bool,
    /// An admin's reason for promoting a quarantined version anyway (audited).
    pub override_reason: Option<String>,
    pub actor: Initiator,
}

pub(crate) struct Promoted {
    pub id: String,
    pub created_at: i64,
}

impl Op<BaselineStore> for Promote {
    type Output = Result<Promoted, StoreError>;
    fn run(self, s: &mut BaselineStore) -> Self::Output {
        let mut c = s.conn()?;
        let (p, b) = (self.project.as_str(), self.benchmark.as_str());
        let mut wait = None;
        let result = write_tx(&mut c, |c| {
            let source = q::find_version(c, p, b, self.from_version.as_str())?
                .filter(|r| r.deleted_at.is_none())
                .ok_or_else(|| {
                    StoreError::NotFound(format!("Baseline {b}/{} not found", self.from_version))
                })?;
            let held = alerts::quarantine_of(c, &source.id)?;
            if let (Some(h), None) = (&held, &self.override_reason) {
                return Err(StoreError::Conflict(format!(
                    "Baseline {b}/{} is quarantined: gate {} failed its run (alert {}); triage the alert as expected or invalid, or an admin may promote it with an override reason",
                    self.from_version,
                    h.gate_id,
                    h.alert_id.as_deref().unwrap_or("none")
                )));
            }
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
                content_hash: crate::domain::digest::sha256_hex(receipt.as_bytes()),
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
            if let (Some(h), Some(reason)) = (&held, &self.override_reason) {
                extra.insert("override_reason".into(), reason.clone().into());
                extra.insert("quarantined_by_gate".into(), h.gate_id.clone().into());
            }
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
            wait = s.inv.announce(c, &[(p, b)])?;
            Ok(Promoted {
                id: row.id,
                created_at: now,
            })
        });
        s.inv.settle(&mut c, &[(p, b)], result.is_ok(), wait);
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
pub(crate) struct RecentMedians {
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
