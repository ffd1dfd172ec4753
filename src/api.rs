//! Wire types (contract shapes), kept apart from row types.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::db::baselines::{BaselineRow, SummaryRow};
use crate::domain::time::to_rfc3339;

pub(crate) const BASELINE_SCHEMA_V1: &str = "perfgate.baseline.v1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub(crate) struct UploadResponse {
    pub id: String,
    pub benchmark: String,
    pub version: String,
    pub created_at: String,
    pub etag: String,
    /// The run was failed by a final gate: stored, but never served as latest and not
    /// promotable until its alert is triaged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quarantined: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct PromoteResponse {
    pub id: String,
    pub benchmark: String,
    pub version: String,
    pub promoted_from: String,
    pub promoted_at: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct DeleteResponse {
    pub deleted: bool,
    pub id: String,
    pub benchmark: String,
    pub version: String,
    pub deleted_at: String,
}

pub(crate) fn etag_of(content_hash: &str) -> String {
    format!("\"sha256:{content_hash}\"")
}

pub(crate) fn raw(s: &str) -> &RawValue {
    // Stored JSON was produced or validated by this server; a corrupt row degrades to null
    // rather than breaking the whole response.
    serde_json::from_str::<&RawValue>(s).unwrap_or_else(|_| {
        log::error!("stored JSON column is not valid JSON");
        serde_json::from_str::<&RawValue>("null").expect("null is JSON")
    })
}

/// The full record of latest/version, with the stored receipt bytes embedded verbatim.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct BaselineRecord<'a> {
    #[schema(value_type = String)]
    schema: &'static str,
    id: &'a str,
    project: &'a str,
    benchmark: &'a str,
    version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    git_ref: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    git_sha: Option<&'a str>,
    #[schema(value_type = Object)]
    receipt: &'a RawValue,
    #[schema(value_type = Object)]
    metadata: &'a RawValue,
    #[schema(value_type = Vec<String>)]
    tags: &'a RawValue,
    created_at: String,
    updated_at: String,
    content_hash: &'a str,
    source: &'a str,
    deleted: bool,
}

impl<'a> BaselineRecord<'a> {
    pub(crate) fn from_row(r: &'a BaselineRow) -> Self {
        Self {
            schema: BASELINE_SCHEMA_V1,
            id: &r.id,
            project: &r.project,
            benchmark: &r.benchmark,
            version: &r.version,
            git_ref: r.git_ref.as_deref(),
            git_sha: r.git_sha.as_deref(),
            receipt: raw(&r.receipt),
            metadata: raw(&r.metadata),
            tags: raw(&r.tags),
            created_at: to_rfc3339(r.created_at),
            updated_at: to_rfc3339(r.updated_at),
            content_hash: &r.content_hash,
            source: &r.source,
            deleted: r.deleted_at.is_some(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct BaselineSummary<'a> {
    id: &'a str,
    benchmark: &'a str,
    version: &'a str,
    created_at: String,
    git_ref: Option<&'a str>,
    git_sha: Option<&'a str>,
    #[schema(value_type = Vec<String>)]
    tags: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    receipt: Option<&'a RawValue>,
}

impl<'a> BaselineSummary<'a> {
    pub(crate) fn from_row(r: &'a SummaryRow) -> Self {
        Self {
            id: &r.id,
            benchmark: &r.benchmark,
            version: &r.version,
            created_at: to_rfc3339(r.created_at),
            git_ref: r.git_ref.as_deref(),
            git_sha: r.git_sha.as_deref(),
            tags: raw(&r.tags),
            receipt: r.receipt.as_deref().map(raw),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Pagination {
    pub total: u64,
    pub offset: u64,
    pub limit: u32,
    pub has_more: bool,
}

impl Pagination {
    pub(crate) fn new(total: i64, offset: i64, limit: i64, returned: usize) -> Self {
        let total = total.max(0) as u64;
        let offset = offset.max(0) as u64;
        Self {
            total,
            offset,
            limit: limit as u32,
            has_more: offset + (returned as u64) < total,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ListBaselinesResponse<'a> {
    pub baselines: Vec<BaselineSummary<'a>>,
    pub pagination: Pagination,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyEntry {
    pub id: String,
    pub key_prefix: String,
    pub description: String,
    pub role: String,
    pub project: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

impl KeyEntry {
    pub fn from_row(r: &crate::db::keys::KeyRow) -> Self {
        Self {
            id: r.id.clone(),
            key_prefix: r.key_prefix.clone(),
            description: r.description.clone(),
            role: r.role.clone(),
            project: r.project.clone(),
            pattern: r.pattern.clone(),
            created_at: to_rfc3339(r.created_at),
            expires_at: r.expires_at.map(to_rfc3339),
            revoked_at: r.revoked_at.map(to_rfc3339),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CreateKeyResponse {
    pub id: String,
    pub key: String,
    pub description: String,
    pub role: String,
    pub project: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AuditEvent<'a> {
    pub id: &'a str,
    pub timestamp: String,
    pub actor: &'a str,
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    pub project: &'a str,
    #[schema(value_type = Object)]
    pub metadata: &'a RawValue,
}

impl<'a> AuditEvent<'a> {
    pub(crate) fn from_row(r: &'a crate::db::audit::AuditRow) -> Self {
        Self {
            id: &r.id,
            timestamp: to_rfc3339(r.ts),
            actor: &r.actor,
            action: &r.action,
            resource_type: &r.resource_type,
            resource_id: &r.resource_id,
            project: &r.project,
            metadata: raw(&r.metadata),
        }
    }
}

pub(crate) const VERDICT_SCHEMA_V1: &str = "perfgate.verdict.v1";
pub(crate) const DEPENDENCY_EVENT_SCHEMA_V1: &str = "perfgate.dependency_event.v1";
pub(crate) const FLEET_ALERT_SCHEMA_V1: &str = "perfgate.fleet_alert.v1";

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct VerdictRecord<'a> {
    #[schema(value_type = String)]
    schema: &'static str,
    id: &'a str,
    project: &'a str,
    benchmark: &'a str,
    run_id: &'a str,
    status: &'a str,
    #[schema(value_type = Counts)]
    counts: &'a RawValue,
    #[schema(value_type = Vec<String>)]
    reasons: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    git_ref: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    git_sha: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wall_ms_cv: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flakiness_score: Option<f64>,
    created_at: String,
}

impl<'a> VerdictRecord<'a> {
    pub(crate) fn from_row(r: &'a crate::db::verdicts::VerdictRow) -> Self {
        Self {
            schema: VERDICT_SCHEMA_V1,
            id: &r.id,
            project: &r.project,
            benchmark: &r.benchmark,
            run_id: &r.run_id,
            status: &r.status,
            counts: raw(&r.counts),
            reasons: raw(&r.reasons),
            git_ref: r.git_ref.as_deref(),
            git_sha: r.git_sha.as_deref(),
            wall_ms_cv: r.wall_ms_cv,
            flakiness_score: r.flakiness_score,
            created_at: to_rfc3339(r.created_at),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DependencyEvent<'a> {
    #[schema(value_type = String)]
    schema: &'static str,
    id: &'a str,
    project: &'a str,
    benchmark: &'a str,
    dep_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_version: Option<&'a str>,
    metric: &'a str,
    delta_pct: f64,
    created_at: String,
}

impl<'a> DependencyEvent<'a> {
    pub(crate) fn from_row(r: &'a crate::db::fleet::EventRow) -> Self {
        Self {
            schema: DEPENDENCY_EVENT_SCHEMA_V1,
            id: &r.id,
            project: &r.project,
            benchmark: &r.benchmark,
            dep_name: &r.dep_name,
            old_version: r.old_version.as_deref(),
            new_version: r.new_version.as_deref(),
            metric: &r.metric,
            delta_pct: r.delta_pct,
            created_at: to_rfc3339(r.created_at),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AffectedProject<'a> {
    project: &'a str,
    benchmark: &'a str,
    metric: &'a str,
    delta_pct: f64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct FleetAlert<'a> {
    #[schema(value_type = String)]
    schema: &'static str,
    id: &'a str,
    dependency: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_version: Option<&'a str>,
    affected_projects: Vec<AffectedProject<'a>>,
    confidence: f64,
    avg_delta_pct: f64,
    first_seen: String,
}

impl<'a> FleetAlert<'a> {
    pub(crate) fn from_alert(a: &'a crate::domain::fleet::Alert) -> Self {
        Self {
            schema: FLEET_ALERT_SCHEMA_V1,
            id: &a.id,
            dependency: &a.dependency,
            old_version: a.old_version.as_deref(),
            new_version: a.new_version.as_deref(),
            affected_projects: a
                .entries
                .iter()
                .map(|e| AffectedProject {
                    project: &e.project,
                    benchmark: &e.benchmark,
                    metric: &e.metric,
                    delta_pct: e.delta_pct,
                })
                .collect(),
            confidence: a.confidence,
            avg_delta_pct: a.avg_delta_pct,
            first_seen: to_rfc3339(a.first_seen),
        }
    }
}

/// Check counts of a verdict (contract §5).
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Counts {
    pub pass: u32,
    pub warn: u32,
    pub fail: u32,
    pub skip: u32,
}

/// `GET /health` and `/api/v1/health`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct HealthResponse {
    /// `healthy` (200) or `degraded` (503)
    pub status: &'static str,
    pub version: &'static str,
    pub storage: StorageHealth,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct StorageHealth {
    pub backend: &'static str,
    /// `healthy` or `unhealthy`
    pub status: &'static str,
}

/// `GET /api/v1/info`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct InfoResponse<'a> {
    pub version: &'static str,
    pub storage: &'static str,
    /// True on a server started with `--local`: requests without a credential act as the local
    /// user (admin of every project); keys and the audit log still need a key.
    pub local_mode: bool,
    pub auth: AuthInfo<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AuthInfo<'a> {
    pub api_keys: bool,
    pub jwt: bool,
    pub oidc_providers: Vec<&'a str>,
}

/// `GET …/baselines/{benchmark}/trend`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TrendResponse {
    pub project: String,
    pub benchmark: String,
    pub analysis: Option<crate::domain::trend::Analysis>,
    pub spark: String,
    pub data_points: usize,
    pub values: Vec<f64>,
}

/// `GET …/verdicts`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ListVerdictsResponse<'a> {
    pub verdicts: Vec<VerdictRecord<'a>>,
    pub pagination: Pagination,
}

pub(crate) const DECISION_RECORD_SCHEMA_V1: &str = "perfgate.decision_record.v1";

/// A `perfgate.decision_record.v1`: what the ledger keeps of an uploaded decision, with the
/// receipts embedded exactly as uploaded (optional fields left out when absent).
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DecisionRecord<'a> {
    #[schema(value_type = String)]
    schema: &'static str,
    id: &'a str,
    project: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scenario: Option<&'a str>,
    #[schema(value_type = crate::domain::decision::DecisionStatus)]
    status: &'a str,
    #[schema(value_type = crate::domain::decision::DecisionStatus)]
    verdict: &'a str,
    #[schema(value_type = Vec<String>)]
    accepted_rules: &'a RawValue,
    review_required: bool,
    #[schema(value_type = Vec<String>)]
    review_reasons: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    git_ref: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    git_sha: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::domain::decision::ScenarioReceipt>)]
    scenario_receipt: Option<&'a RawValue>,
    #[schema(value_type = crate::domain::decision::TradeoffReceipt)]
    tradeoff_receipt: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::domain::decision::DecisionArtifactIndex>)]
    artifact_index: Option<&'a RawValue>,
    created_at: String,
}

impl<'a> DecisionRecord<'a> {
    pub(crate) fn from_row(r: &'a crate::db::decisions::DecisionRow) -> Self {
        Self {
            schema: DECISION_RECORD_SCHEMA_V1,
            id: &r.id,
            project: &r.project,
            scenario: r.scenario.as_deref(),
            status: &r.status,
            verdict: &r.verdict,
            accepted_rules: raw(&r.accepted_rules),
            review_required: r.review_required,
            review_reasons: raw(&r.review_reasons),
            git_ref: r.git_ref.as_deref(),
            git_sha: r.git_sha.as_deref(),
            scenario_receipt: r.scenario_receipt.as_deref().map(raw),
            tradeoff_receipt: raw(&r.tradeoff_receipt),
            artifact_index: r.artifact_index.as_deref().map(raw),
            created_at: to_rfc3339(r.created_at),
        }
    }
}

/// `GET …/decisions`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ListDecisionsResponse<'a> {
    pub decisions: Vec<DecisionRecord<'a>>,
    pub pagination: Pagination,
}

/// `POST …/decisions/prune`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct PruneDecisionsResponse {
    pub project: String,
    pub older_than: String,
    pub dry_run: bool,
    /// Decisions created before `older_than`.
    pub matched: u64,
    /// Decisions deleted (0 on a dry run).
    pub deleted: u64,
    /// The matched decisions, oldest first.
    pub decision_ids: Vec<String>,
}

/// `GET /api/v1/keys`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ListKeysResponse {
    pub keys: Vec<KeyEntry>,
}

/// `DELETE /api/v1/keys/{id}`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RevokeKeyResponse {
    pub id: String,
    pub revoked_at: Option<String>,
}

/// `GET /api/v1/audit`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ListAuditResponse<'a> {
    pub events: Vec<AuditEvent<'a>>,
    pub pagination: Pagination,
}

/// `POST /api/v1/fleet/dependency-event`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RecordedResponse {
    pub recorded: usize,
}

/// `GET /api/v1/fleet/alerts`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ListAlertsResponse<'a> {
    pub alerts: Vec<FleetAlert<'a>>,
}

/// `GET /api/v1/fleet/dependency/{dep}/impact`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ImpactResponse<'a> {
    pub dependency: String,
    pub events: Vec<DependencyEvent<'a>>,
    pub project_count: i64,
    pub avg_delta_pct: f64,
}

/// One (benchmark, metric) verdict of a gate.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct GateBenchmark {
    pub benchmark: String,
    pub metric: String,
    /// `pass`, `warn`, `fail`, `inconclusive` or `skip`
    pub status: String,
    /// Change against the benchmark's history, percent; positive = worse.
    pub effect_pct: f64,
    pub ci95_pct: [f64; 2],
    pub p: f64,
    pub q: f64,
    pub history_runs: usize,
    pub reason: String,
}

/// The verdict on a run's common shift (everything slower or faster together).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct GateSuite {
    pub metric: String,
    pub shift_pct: f64,
    pub ci95_pct: [f64; 2],
    pub p: f64,
    pub status: String,
    pub reason: String,
}

/// The confirmation run a gate asks for.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct GateConfirm {
    /// The attempt the rerun will be.
    pub attempt: i64,
    /// The suspects; rerun the whole suite on a fresh runner, these with `repeat` samples.
    pub benchmarks: Vec<String>,
    pub repeat: std::collections::BTreeMap<String, u32>,
    pub post_to: String,
    pub deadline: String,
}

/// A baseline version a gate recorded (`record: true`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct GateRecorded {
    pub benchmark: String,
    pub version: String,
}

/// The decision part of a gate, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct GateResult {
    /// The suite verdict of the first metric.
    pub suite: GateSuite,
    /// One suite verdict per metric.
    pub suites: Vec<GateSuite>,
    pub benchmarks: Vec<GateBenchmark>,
    pub confirm: Option<GateConfirm>,
    #[serde(default)]
    pub recorded: Vec<GateRecorded>,
}

/// A gate (`perfgate.gate.v1`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct GateResponse {
    /// `perfgate.gate.v1`
    pub schema: &'static str,
    pub id: String,
    pub project: String,
    /// `pass`, `warn`, `fail` or `inconclusive`
    pub status: String,
    #[serde(rename = "final")]
    pub is_final: bool,
    pub attempt: i64,
    pub max_attempts: i64,
    pub created_at: String,
    pub updated_at: String,
    pub git_ref: Option<String>,
    pub git_sha: Option<String>,
    pub base_sha: Option<String>,
    pub runner: Option<String>,
    pub record: bool,
    pub metrics: Vec<String>,
    #[serde(flatten)]
    pub result: GateResult,
}

/// `GET …/gates`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ListGatesResponse {
    pub gates: Vec<GateResponse>,
    pub pagination: Pagination,
}

/// A point where the level of a benchmark's series moved (`GET …/change-points`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct ChangePointRecord {
    pub id: String,
    /// Position in the series (oldest run = 0) of the first run at the new level.
    pub index: i64,
    /// The baseline version of that run (null once the version is deleted).
    pub version: Option<String>,
    /// The commit of the first run at the new level: the end of the range to bisect.
    pub git_sha: Option<String>,
    /// The commit of the run before it: the start of the range.
    pub previous_git_sha: Option<String>,
    /// When the first run at the new level was stored.
    pub created_at: String,
    /// The level before and after, in the metric's unit (the runs' shared runner shift removed).
    pub level_before: f64,
    pub level_after: f64,
    /// 100 · (level_after / level_before − 1): positive = the metric went up.
    pub change_pct: f64,
    /// Two-sided p-value of the change.
    pub p: f64,
    /// `provisional` until 3 runs are at the new level, then `confirmed`.
    pub status: &'static str,
    /// `strong` (p ≤ 10⁻⁴) or `weak` (p ≤ 10⁻³: shown, never alerted on).
    pub strength: &'static str,
    /// Final: enough runs follow it that it will not move or vanish.
    pub settled: bool,
    /// The runner class of the series.
    pub runner: String,
    /// The alert of this change (a regression that was alerted on), if any.
    pub alert_id: Option<String>,
}

/// `GET /api/v1/projects/{project}/benchmarks/{benchmark}/change-points`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct ChangePointsResponse {
    pub project: String,
    pub benchmark: String,
    pub metric: String,
    /// Whether change points are tracked for this metric: the metrics the project's gate judges
    /// (gate settings `metrics`, `wall_ms` by default). An untracked metric has no points.
    pub tracked: bool,
    /// Oldest first, per runner class.
    pub change_points: Vec<ChangePointRecord>,
}

/// A waiver of an `expected` alert.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct WaiverRecord {
    pub owner: String,
    pub max_change_pct: f64,
    pub expires_at: String,
}

/// An alert (`perfgate.alert.v1`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct AlertRecord {
    pub id: String,
    pub project: String,
    pub benchmark: String,
    pub metric: String,
    /// `gate`: a final gate failed the benchmark; `change_point`: a confirmed regression change
    /// point no gate failed (a slow creep, or runs uploaded without a gate).
    pub source: String,
    pub gate_id: Option<String>,
    /// `untriaged`, `acknowledged`, `invalid`, `expected`, `duplicate` or `fixed`
    pub status: String,
    pub change_pct: f64,
    pub git_sha: Option<String>,
    pub previous_git_sha: Option<String>,
    pub reason: Option<String>,
    pub link: Option<String>,
    pub duplicate_of: Option<String>,
    pub waiver: Option<WaiverRecord>,
    pub triaged_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The states this alert may move to.
    pub transitions: Vec<&'static str>,
}

impl AlertRecord {
    pub(crate) fn from_row(r: crate::db::alerts::AlertRow) -> Self {
        let transitions = crate::domain::triage::AlertStatus::parse(&r.status)
            .map(|s| s.allowed().into_iter().map(|t| t.as_str()).collect())
            .unwrap_or_default();
        let waiver = match (r.waiver_owner, r.waiver_max_change_pct, r.waiver_expires_at) {
            (Some(owner), Some(max_change_pct), Some(t)) => Some(WaiverRecord {
                owner,
                max_change_pct,
                expires_at: to_rfc3339(t),
            }),
            _ => None,
        };
        AlertRecord {
            id: r.id,
            project: r.project,
            benchmark: r.benchmark,
            metric: r.metric,
            source: r.source,
            gate_id: r.gate_id,
            status: r.status,
            change_pct: r.change_pct,
            git_sha: r.git_sha,
            previous_git_sha: r.previous_git_sha,
            reason: r.reason,
            link: r.link,
            duplicate_of: r.duplicate_of,
            waiver,
            triaged_by: r.triaged_by,
            created_at: to_rfc3339(r.created_at),
            updated_at: to_rfc3339(r.updated_at),
            transitions,
        }
    }
}

/// `GET …/alerts`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ListAlertRecordsResponse {
    pub alerts: Vec<AlertRecord>,
    pub pagination: Pagination,
}

/// One benchmark's alerts by state, its false-alarm rate and hint.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct BenchmarkAlertStats {
    pub benchmark: String,
    pub counts: std::collections::BTreeMap<&'static str, u64>,
    /// Share of triaged alerts marked `invalid` (noise).
    pub invalid_rate: f64,
    pub hint: Option<String>,
}

/// `GET …/alert-stats`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AlertStatsResponse {
    pub benchmarks: Vec<BenchmarkAlertStats>,
}

/// One step in an alert's audit trail: its opening or a transition, by whom and why.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct AlertEvent {
    pub at: String,
    /// Who did it: a key id, `jwt:<sub>`, `oidc:<issuer>:<sub>`, or `system:waiver-expiry`.
    pub actor: String,
    /// `create` (a final gate opened the alert) or `update` (a transition).
    pub action: String,
    /// The state before (none for `create`).
    pub from: Option<String>,
    /// The state after.
    pub to: Option<String>,
    pub reason: Option<String>,
    pub link: Option<String>,
    pub duplicate_of: Option<String>,
    /// The waiver granted by a move to `expected`.
    pub waiver: Option<WaiverRecord>,
    /// `create`: the gate that failed the benchmark, and the change it measured.
    pub gate_id: Option<String>,
    pub change_pct: Option<f64>,
}

impl AlertEvent {
    /// Only these fields of an audit row are shown to readers of the alert (audit rows are
    /// otherwise for admins).
    pub(crate) fn from_audit(r: crate::db::audit::AuditRow) -> Self {
        let meta: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&r.metadata).unwrap_or_default();
        let text = |k: &str| meta.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let create = r.action == "create";
        let waiver = match (
            text("waiver_owner"),
            meta.get("waiver_max_change_pct").and_then(|v| v.as_f64()),
            text("waiver_expires_at"),
        ) {
            (Some(owner), Some(max_change_pct), Some(expires_at)) => Some(WaiverRecord {
                owner,
                max_change_pct,
                expires_at,
            }),
            _ => None,
        };
        AlertEvent {
            at: to_rfc3339(r.ts),
            actor: r.actor,
            from: text("from"),
            to: if create {
                Some(
                    crate::domain::triage::AlertStatus::Untriaged
                        .as_str()
                        .to_owned(),
                )
            } else {
                text("to")
            },
            reason: text("reason"),
            link: text("link"),
            duplicate_of: text("duplicate_of"),
            waiver,
            gate_id: text("gate_id"),
            change_pct: meta.get("change_pct").and_then(|v| v.as_f64()),
            action: r.action,
        }
    }
}

/// A baseline version an alert holds in quarantine.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct QuarantinedVersion {
    pub benchmark: String,
    pub version: String,
    pub created_at: String,
}

/// `GET …/alerts/{id}`: the alert, its audit trail (oldest first, the newest 200 events) and
/// the versions it holds in quarantine.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct AlertDetail {
    #[serde(flatten)]
    pub alert: AlertRecord,
    pub history: Vec<AlertEvent>,
    pub quarantined: Vec<QuarantinedVersion>,
}

impl AlertDetail {
    /// `quarantined`: (benchmark, version, created_at) of each version.
    pub(crate) fn new(
        alert: crate::db::alerts::AlertRow,
        history: Vec<crate::db::audit::AuditRow>,
        quarantined: Vec<(String, String, i64)>,
    ) -> Self {
        AlertDetail {
            alert: AlertRecord::from_row(alert),
            history: history.into_iter().map(AlertEvent::from_audit).collect(),
            quarantined: quarantined
                .into_iter()
                .map(|(benchmark, version, t)| QuarantinedVersion {
                    benchmark,
                    version,
                    created_at: to_rfc3339(t),
                })
                .collect(),
        }
    }
}

/// A waiver: an accepted regression of one benchmark and metric, and the alert it came with.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct WaiverEntry {
    pub alert_id: String,
    pub benchmark: String,
    pub metric: String,
    pub owner: String,
    /// The slowdown (percent) the gate accepts while the waiver holds.
    pub max_change_pct: f64,
    pub expires_at: String,
    /// The waiver ran out (its alert is open again, or reopens within a minute).
    pub expired: bool,
    /// The alert's state: `expected` while the waiver holds.
    pub status: String,
    /// Why the regression was accepted.
    pub reason: Option<String>,
    /// The change the failing gate measured.
    pub change_pct: f64,
    pub gate_id: Option<String>,
    pub git_sha: Option<String>,
    /// Who granted the waiver.
    pub triaged_by: Option<String>,
}

impl WaiverEntry {
    /// `None` for an alert without a waiver.
    pub(crate) fn from_row(r: crate::db::alerts::AlertRow, now: i64) -> Option<Self> {
        let (owner, max_change_pct, t) = (
            r.waiver_owner?,
            r.waiver_max_change_pct?,
            r.waiver_expires_at?,
        );
        Some(WaiverEntry {
            alert_id: r.id,
            benchmark: r.benchmark,
            metric: r.metric,
            owner,
            max_change_pct,
            expires_at: to_rfc3339(t),
            expired: t <= now,
            status: r.status,
            reason: r.reason,
            change_pct: r.change_pct,
            gate_id: r.gate_id,
            git_sha: r.git_sha,
            triaged_by: r.triaged_by,
        })
    }
}

/// `GET …/waivers`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ListWaiversResponse {
    pub waivers: Vec<WaiverEntry>,
    pub pagination: Pagination,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::audit::AuditRow;

    fn row(action: &str, actor: &str, meta: serde_json::Value) -> AuditRow {
        AuditRow {
            id: "e1".into(),
            ts: 1_800_000_000_000_000,
            actor: actor.into(),
            action: action.into(),
            resource_type: "alert".into(),
            resource_id: "a1".into(),
            project: "p".into(),
            metadata: meta.to_string(),
        }
    }

    #[test]
    fn alert_events_from_audit_rows_show_only_the_triage_fields() {
        let open = AlertEvent::from_audit(row(
            "create",
            "key-1",
            serde_json::json!({"gate_id": "g1", "change_pct": 31.5, "benchmark": "b", "metric": "wall_ms", "request_id": "r1", "client_request_id": "c1"}),
        ));
        assert_eq!(
            serde_json::to_value(&open).unwrap(),
            serde_json::json!({"at": "2027-01-15T08:00:00.000000Z", "actor": "key-1", "action": "create",
                "from": null, "to": "untriaged", "reason": null, "link": null, "duplicate_of": null,
                "waiver": null, "gate_id": "g1", "change_pct": 31.5})
        );
        let accept = AlertEvent::from_audit(row(
            "update",
            "key-2",
            serde_json::json!({"from": "acknowledged", "to": "expected", "reason": "by design",
                "waiver_owner": "team", "waiver_max_change_pct": 40.0,
                "waiver_expires_at": "2027-02-01T00:00:00.000000Z", "request_id": "r2"}),
        ));
        let w = accept.waiver.as_ref().unwrap();
        assert_eq!(
            (w.owner.as_str(), w.max_change_pct, w.expires_at.as_str()),
            ("team", 40.0, "2027-02-01T00:00:00.000000Z")
        );
        assert_eq!(accept.from.as_deref(), Some("acknowledged"));
        assert_eq!(accept.to.as_deref(), Some("expected"));
        assert_eq!(accept.reason.as_deref(), Some("by design"));
        let expiry = AlertEvent::from_audit(row(
            "update",
            "system:waiver-expiry",
            serde_json::json!({"from": "expected", "to": "untriaged", "reason": "the waiver expired"}),
        ));
        assert_eq!(expiry.actor, "system:waiver-expiry");
        assert!(expiry.waiver.is_none() && expiry.gate_id.is_none());
        // Metadata that is not an object shows the bare step.
        let odd = AlertEvent::from_audit(AuditRow {
            metadata: "[]".into(),
            ..row("update", "k", serde_json::json!({}))
        });
        assert!(odd.from.is_none() && odd.to.is_none() && odd.reason.is_none());
    }
}
