//! The state every handler shares: configuration, the store actors, credentials and caches.

use std::sync::Arc;

use crate::actors::baseline_store::BaselineStore;
use crate::actors::dashboard::DashboardReader;
use crate::actors::decision_ledger::DecisionLedger;
use crate::actors::fleet_analyzer::FleetAnalyzer;
use crate::actors::gate::GateStore;
use crate::actors::group_commit::GroupCommit;
use crate::actors::key_store::KeyStore;
use crate::actors::verdict_log::VerdictLog;
use crate::actors::Shards;
use crate::auth::jwt::JwtVerifier;
use crate::auth::key_source::ConfiguredKeys;
use crate::auth::oidc::Provider;
use crate::cache::LatestCache;
use crate::config::{ServerConfig, StorageBackend};

/// Shared by every handler.
pub(crate) struct AppState {
    pub config: ServerConfig,
    pub backend: StorageBackend,
    pub baselines: Shards<BaselineStore>,
    /// Rendered GET latest answers (see [`crate::cache`]).
    pub latest_cache: Arc<LatestCache>,
    /// The baseline store's writer shards with the uploads and verdicts waiting for their
    /// group commit.
    pub writes: GroupCommit<crate::actors::writes::Write>,
    pub keys: Shards<KeyStore>,
    pub verdicts: Shards<VerdictLog>,
    /// The decision ledger (`perfgate decision upload|history|latest|debt|export|prune`).
    pub decisions: Shards<DecisionLedger>,
    pub fleet: Shards<FleetAnalyzer>,
    /// `--api-keys` and the keys document, by SHA-256 of the key (reloadable).
    pub configured_keys: Arc<ConfiguredKeys>,
    /// Database keys that authenticated, on SQLite (see [`crate::auth::key_cache`]).
    pub key_cache: Option<crate::auth::key_cache::KeyCache>,
    /// HS256 JWTs, when `--jwt-secret` is set.
    pub jwt: Option<JwtVerifier>,
    /// OIDC providers (GitHub, GitLab, custom).
    pub oidc: Vec<Arc<Provider>>,
    /// HTTP client for JWKS, when OIDC providers are configured. No idle pooling: fetches are
    /// rare and may come from any worker's runtime, so no connection outlives the runtime that
    /// opened it.
    pub jwks_client: Option<reqwest::Client>,
    /// Per-credential token buckets (`rate_limit`), keyed by principal id.
    pub limiter: Option<Arc<governor::DefaultKeyedRateLimiter<String>>>,
    /// Gates and their settings.
    pub gates: Shards<GateStore>,
    /// Dashboard reads (projects, benchmark tables, history): a reader of its own.
    pub dashboard: Shards<DashboardReader>,
    /// Every store's pools, for the gauges at `/metrics`.
    pub pools: Vec<crate::db::DbPool>,
}
