//! Wiring: storage, actors, the actix-web app, and the server's lifecycle.

use std::sync::Arc;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::middleware::{from_fn, Condition};
use actix_web::{web, App, HttpServer};
use tokio::sync::Semaphore;

use crate::actors::baseline_store::BaselineStore;
use crate::actors::dashboard::DashboardReader;
use crate::actors::decision_ledger::DecisionLedger;
use crate::actors::fleet_analyzer::FleetAnalyzer;
use crate::actors::gate::GateStore;
use crate::actors::group_commit::GroupCommit;
use crate::actors::key_store::{ensure_bootstrap_key, Bootstrap, KeyStore};
use crate::actors::verdict_log::VerdictLog;
use crate::actors::Shards;
use crate::auth::jwt::JwtVerifier;
use crate::auth::key_source::{reload_loop, ConfiguredKeys, KeySource};
use crate::auth::keys::parse_static_keys;
use crate::auth::oidc::{providers_from_config, refresh_loop};
use crate::cache::LatestCache;
use crate::config::{redact_url, ServerConfig, StorageBackend};
use crate::db::notify::{spawn_listener, Invalidator};
use crate::db::{Storage, StorageOptions, StorePools};
use crate::middleware::request_context;
use crate::routes;
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("storage: {0}")]
    Storage(#[from] crate::db::DbError),
    #[error("could not listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server thread stopped unexpectedly")]
    Crashed,
}

/// Runs the server until SIGTERM or Ctrl-C. Brings up its own actix `System` (on a thread of
/// its own) when called outside one, e.g. from a plain `#[tokio::main]`.
pub async fn run_server(config: ServerConfig) -> Result<(), ServerError> {
    if actix::System::try_current().is_some() {
        return serve(config).await;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("perfgate-server".into())
        .spawn(move || {
            let r = actix_web::rt::System::new().block_on(serve(config));
            let _ = tx.send(r);
        })?;
    rx.await.map_err(|_| ServerError::Crashed)?
}

async fn serve(config: ServerConfig) -> Result<(), ServerError> {
    crate::logging::init(&config.log_level, config.effective_log_format());
    // Embedded callers may set `local` without `ServerConfig::load`: its defaults now.
    let address_given = config.port.is_some() || config.bind != ServerConfig::default().bind;
    let config = config.resolve_local(address_given, &|k| std::env::var_os(k))?;
    config.validate()?;
    let backend = config.backend()?;
    let static_keys = parse_static_keys(&config.api_key_specs())
        .map_err(|e| crate::config::ConfigError(e.to_string()))?;
    let have_static_keys = !static_keys.is_empty();
    // The keys document: one that does not load stops start-up (a reload keeps the old keys).
    let key_source = KeySource::from_config(&config);
    let (document, loaded) = match key_source.clone() {
        Some(src) => {
            let (fingerprint, keys) =
                actix_web::rt::task::spawn_blocking(move || src.load_fingerprinted())
                    .await
                    .map_err(|_| ServerError::Crashed)?;
            (Some(keys.map_err(crate::config::ConfigError)?), fingerprint)
        }
        None => (None, Err(String::new())),
    };
    if let (Some(src), Some(doc)) = (&key_source, &document) {
        log::info!("{} API keys from {}", doc.len(), src.describe());
        crate::auth::key_source::log_expired(doc);
    }
    let configured_keys = Arc::new(
        ConfiguredKeys::new(static_keys, document)
            .map_err(|e| crate::config::ConfigError(format!("keys document: {e}")))?,
    );
    // SIGHUP reloads the document; registered now, so that one arriving early reloads rather
    // than ending the process. Without a document SIGHUP keeps its default meaning.
    if let Some(src) = key_source.clone() {
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        actix_web::rt::spawn(reload_loop(configured_keys.clone(), src, loaded, hangup));
    }
    let addr = config.socket_addr()?;
    let timeout = config.request_timeout();

    // SQLite has one writer per file: all writes go through one connection (and one shard);
    // PostgreSQL gets a writer connection per shard.
    let (readers, write_shards) = match backend {
        StorageBackend::Postgres => {
            let fitted = crate::db::fit_connections(
                config.pg_max_connections,
                config.read_pool_size,
                config.write_shards,
                pg_connections,
            )
            .ok_or_else(|| {
                crate::config::ConfigError(format!(
                    "pg_max_connections = {} is too few: the stores need at least {}",
                    config.pg_max_connections,
                    pg_connections(1, 1)
                ))
            })?;
            if fitted != (config.read_pool_size, config.write_shards) {
                log::info!(
                    "pg_max_connections = {}: {} reader(s) per store and {} writer shard(s)",
                    config.pg_max_connections,
                    fitted.0,
                    fitted.1
                );
            }
            fitted
        }
        _ => (config.read_pool_size, 1),
    };
    let opts = StorageOptions {
        backend,
        url: match backend {
            StorageBackend::Postgres => {
                config.database_url_exposed().unwrap_or_default().to_owned()
            }
            _ => config.sqlite_file().to_string_lossy().into_owned(),
        },
        // The general pools serve start-up work (migrations, the bootstrap key). On SQLite the
        // general write pool is the process's one write connection, which every store's
        // writer shares (see `Storage::pools`).
        read_pool_size: 1,
        write_pool_size: 1,
        // A pool that cannot hand out a connection within a few seconds is down or saturated:
        // fail fast with 503 rather than holding the request for the whole timeout.
        connect_timeout: match backend {
            StorageBackend::Postgres => timeout.min(Duration::from_secs(config.pg_acquire_timeout)),
            _ => timeout.min(Duration::from_secs(5)),
        },
        // Lock waits end well before the request's deadline, so a write either commits while
        // the client still waits for it or fails (and rolls back) before the client gets 503.
        busy_timeout: match (backend, config.pg_statement_timeout) {
            (StorageBackend::Postgres, Some(secs)) => Duration::from_secs(secs),
            _ => timeout.mul_f64(0.8),
        },
        sqlite_synchronous: "FULL",
        sqlite_heap_limit: config.sqlite_heap_limit(),
        pg: crate::db::PgPoolOptions {
            min_idle: config.pg_min_connections,
            idle_timeout: (config.pg_idle_timeout > 0)
                .then(|| Duration::from_secs(config.pg_idle_timeout)),
            max_lifetime: (config.pg_max_lifetime > 0)
                .then(|| Duration::from_secs(config.pg_max_lifetime)),
        },
    };
    let pg_url = (backend == StorageBackend::Postgres).then(|| opts.url.clone());
    let shown_url = match backend {
        StorageBackend::Memory => "in-memory".to_owned(),
        _ => redact_url(&opts.url),
    };
    log::info!("opening {} storage at {shown_url}", backend.as_str());
    let jwt = JwtVerifier::from_config(&config)?;
    let oidc = providers_from_config(&config)?;
    // Built only for OIDC: the client's TLS set-up (the web PKI roots) is memory a server
    // without providers would hold for nothing.
    let jwks_client = if oidc.is_empty() {
        None
    } else {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .user_agent(concat!("perfgate-server/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ServerError::Io(std::io::Error::other(e)))?;
        actix_web::rt::spawn(refresh_loop(
            oidc.clone(),
            client.clone(),
            Duration::from_secs(config.jwks_refresh_interval),
        ));
        Some(client)
    };
    let need_bootstrap = !have_static_keys && key_source.is_none() && !config.has_token_auth();
    let sqlite_file = config.sqlite_file();
    if config.local && backend == StorageBackend::Sqlite {
        create_private_dir(&sqlite_file)?;
    }
    let (storage, pools, bootstrap_key, owner) = actix_web::rt::task::spawn_blocking(move || {
        let storage = Storage::open(opts)?;
        // SQLite: this process becomes the file's only writer for as long as it runs (the cache
        // of latest answers depends on it), before it writes anything (a bootstrap key).
        // Memory is process-local; PostgreSQL replicas invalidate each other (`db::notify`).
        let owner = match backend {
            StorageBackend::Sqlite => Some(crate::db::SqliteOwner::acquire(&sqlite_file)?),
            _ => None,
        };
        let key = if need_bootstrap {
            let mut c = storage.write_pool.get()?;
            Some(ensure_bootstrap_key(&mut c)?)
        } else {
            None
        };
        // Each store owns its pools: as many reader connections as reader threads, and a
        // writer connection per writer shard. Keys are written through one shard ("keys").
        let pools = StorePoolSet {
            baselines: storage.pools("baseline_store", readers, write_shards)?,
            verdicts: storage.pools("verdict_log", readers, write_shards)?,
            decisions: storage.pools("decision_ledger", readers, write_shards)?,
            fleet: storage.pools("fleet_analyzer", readers, write_shards)?,
            keys: storage.pools("key_store", readers, 1)?,
            gates: storage.pools("gate", readers, write_shards)?,
            dashboard: storage.pools("dashboard", readers, 0)?,
        };
        Ok::<_, crate::db::DbError>((storage, pools, key, owner))
    })
    .await
    .map_err(|_| ServerError::Crashed)??;
    let bootstrap_key = match bootstrap_key {
        Some(Bootstrap::Created(key)) => Some(key),
        // Local mode hands the data to the local user anyway; only keys and the audit log need
        // a key, which `perfgate-server keys create` makes (the start-up lines say so).
        Some(Bootstrap::Refused) if config.local => None,
        Some(Bootstrap::Refused) => {
            return Err(crate::config::ConfigError(format!(
                "no credentials configured and the database ({shown_url}) holds data but no API key: refusing to create a bootstrap admin key for it; configure --api-keys (or a token issuer), or create a key with 'perfgate-server keys create'"
            ))
            .into())
        }
        Some(Bootstrap::HasKeys) | None => None,
    };
    spawn_backfill(storage.write_pool.clone());
    spawn_idempotency_expiry(storage.write_pool.clone());
    let _owner = owner;
    // PostgreSQL: other replicas write too. The cache starts off; this replica's listener
    // turns it on once it hears their invalidations (see `db::notify`).
    let (latest_cache, invalidator, _listener) = match (&pg_url, backend) {
        (Some(url), StorageBackend::Postgres) => {
            let cache = Arc::new(LatestCache::leased(config.latest_cache_bytes()));
            let inv = Invalidator::replicated(cache.clone());
            let listener = spawn_listener(url.clone(), &inv)?;
            (cache, inv, Some(listener))
        }
        _ => {
            let cache = Arc::new(LatestCache::new(true, config.latest_cache_bytes()));
            (cache.clone(), Invalidator::local(cache), None)
        }
    };

    let limiter = Arc::new(Semaphore::new(config.max_in_flight));
    let read_threads = readers as usize;
    // Held until shutdown: for `memory`, its keeper connection is the database.
    let storage = std::rc::Rc::new(storage);
    let all_pools = pools.all();
    let start = StoreStarter {
        read_threads,
        write_shards: write_shards as usize,
        limiter: &limiter,
        timeout,
    };
    let inv = invalidator.clone();
    let baselines = start.store("baseline_store", pools.baselines, move |pool| {
        BaselineStore::new(pool, inv.clone())
    });
    // Database keys are cached on a SQLite file, whose readers never wait for its writer (see
    // `auth::key_cache`), on the key store's read pool.
    let key_cache = match backend {
        StorageBackend::Sqlite => Some(crate::auth::key_cache::KeyCache::new(
            pools.keys.read.clone(),
        )),
        StorageBackend::Memory | StorageBackend::Postgres => None,
    };
    let keys = start.store("key_store", pools.keys, KeyStore::new);
    let verdicts = start.store("verdict_log", pools.verdicts, VerdictLog::new);
    let decisions = start.store("decision_ledger", pools.decisions, DecisionLedger::new);
    let fleet = start.store("fleet_analyzer", pools.fleet, FleetAnalyzer::new);
    let dashboard = start.store("dashboard", pools.dashboard, DashboardReader::new);
    let inv = invalidator;
    let gates = start.store("gate", pools.gates, move |pool| {
        GateStore::new(pool, inv.clone())
    });

    // Waivers that ran out reopen their alerts.
    let expiry = gates.clone();
    actix_web::rt::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            match expiry
                .write("waivers", crate::actors::alerts::ExpireWaivers)
                .await
            {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => log::info!("{n} waivers expired: their alerts are open again"),
                Ok(Err(e)) => log::warn!("waiver expiry: {e}"),
                Err(e) => log::warn!("waiver expiry: {e}"),
            }
        }
    });
    // Change points: a bounded pass at a time, the next one at once while runs wait.
    if config.change_point_interval_ms > 0 {
        let scanner = gates.clone();
        let interval = Duration::from_millis(config.change_point_interval_ms);
        let delay =
            i64::try_from(config.change_point_delay_ms.saturating_mul(1000)).unwrap_or(i64::MAX);
        let process_started = crate::domain::time::now_micros();
        let on_sqlite = backend != crate::db::StorageBackend::Postgres;
        actix_web::rt::spawn(async move {
            let mut sizer = crate::actors::changepoints::PassSizer::new(CHANGE_POINT_PASS_TARGET);
            let memo = std::sync::Arc::default();
            loop {
                tokio::time::sleep(interval).await;
                loop {
                    let plan = crate::actors::changepoints::PlanChangePoints {
                        delay_micros: delay,
                        max_runs: sizer.runs(),
                        process_started,
                        memo: std::sync::Arc::clone(&memo),
                    };
                    let started = std::time::Instant::now();
                    let r = match change_point_pass(&scanner, plan).await {
                        Ok(Some(r)) => r,
                        Ok(None) => break,
                        Err(e) => {
                            log::warn!("change points: {e}");
                            break;
                        }
                    };
                    crate::metrics::change_point_pass(
                        r.busy,
                        r.runs,
                        r.alerts_opened,
                        r.alerts_fixed,
                    );
                    if r.alerts_opened + r.alerts_fixed > 0 {
                        log::info!(
                            "change points: {} alerts opened, {} fixed ({} runs, {} series)",
                            r.alerts_opened,
                            r.alerts_fixed,
                            r.runs,
                            r.series
                        );
                    }
                    sizer.observe(r.runs, r.busy);
                    if !r.more {
                        break;
                    }
                    // Catching up. While clients write (they took SQLite write turns during a
                    // short first rest), rest longer so that they keep most of the machine and
                    // the writer; while none do, go on.
                    // (PostgreSQL has no such turn to watch: there a pass always rests as long
                    // as it ran.)
                    if !on_sqlite {
                        tokio::time::sleep(started.elapsed().max(CHANGE_POINT_MIN_REST)).await;
                        continue;
                    }
                    let turns = crate::db::sqlite_write_turns();
                    tokio::time::sleep(CHANGE_POINT_MIN_REST).await;
                    if crate::db::sqlite_write_turns() != turns {
                        let rest = started.elapsed() * CHANGE_POINT_REST_FACTOR;
                        tokio::time::sleep(rest.saturating_sub(CHANGE_POINT_MIN_REST)).await;
                    }
                }
            }
        });
    }
    let limiter = rate_limiter(&config);
    if let Some(l) = &limiter {
        // Forget idle credentials now and then, so the table stays small.
        let l = l.clone();
        actix_web::rt::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                l.retain_recent();
            }
        });
    }
    // Retention: purge what is older than `retention_days`, a minute after start, then hourly.
    if config.retention_days > 0 {
        let (b, v, g, d) = (
            baselines.clone(),
            verdicts.clone(),
            gates.clone(),
            decisions.clone(),
        );
        let days = config.retention_days;
        actix_web::rt::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            loop {
                let stores = crate::actors::retention::Stores {
                    baselines: &b,
                    verdicts: &v,
                    gates: &g,
                    decisions: &d,
                };
                let actor = crate::actors::Initiator {
                    principal_id: "system:retention".into(),
                    request_id: "retention".into(),
                };
                match crate::actors::retention::cleanup(stores, days, actor).await {
                    Ok(p) if p == Default::default() => {}
                    Ok(p) => log::info!(
                        "retention ({days} days): purged {} deleted versions, {} verdicts, {} gates, {} decisions",
                        p.baselines,
                        p.verdicts,
                        p.gates,
                        p.decisions
                    ),
                    Err(e) => log::warn!("retention: {e}"),
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        });
    }
    let state = web::Data::new(AppState {
        config: config.clone(),
        backend,
        writes: GroupCommit::new(baselines.clone()),
        baselines,
        latest_cache,
        keys,
        verdicts,
        decisions,
        fleet,
        gates,
        dashboard,
        configured_keys,
        key_cache,
        jwt,
        oidc,
        jwks_client,
        limiter,
        pools: all_pools,
    });
    let cors = config.serves_cors();
    let max_body = config.max_body_bytes;
    let static_dir = config.static_dir.clone();
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(max_body))
            .app_data(routes::json::path_config())
            .configure(|c| routes::configure(c, static_dir.clone()))
            .default_service(web::to(routes::not_found))
            .wrap(Condition::new(cors, cors_layer()))
            .wrap(from_fn(request_context))
    })
    .shutdown_timeout(config.shutdown_timeout)
    // A client dribbling its request head is cut off after client_timeout (actix answers 408);
    // a dribbled body is cut off by the JSON extractor's own deadline.
    .client_request_timeout(Duration::from_secs(config.client_timeout))
    .client_disconnect_timeout(Duration::from_secs(2))
    .max_connections(config.max_connections);
    if config.workers > 0 {
        server = server.workers(config.workers);
    }
    let server = match server.bind(addr) {
        Ok(s) => s,
        Err(source) => {
            // The key exists now: it must be shown even though this start fails.
            if let Some(key) = &bootstrap_key {
                eprintln!("{}", first_run_guide(key, None));
            }
            return Err(ServerError::Bind {
                addr: addr.to_string(),
                source,
            });
        }
    };
    let addrs = server.addrs();
    // Local mode answers without credentials: never on an address another host can reach.
    if config.local {
        if let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            return Err(crate::config::ConfigError(format!(
                "local mode listens on loopback only, but the server is bound to {a}"
            ))
            .into());
        }
    }
    let dashboard = addrs.first().map(|a| dashboard_url(*a));
    for a in &addrs {
        log::info!(
            "perfgate-server {} listening on http://{a} (dashboard: {})",
            routes::health::SERVER_VERSION,
            dashboard_url(*a)
        );
    }
    if config.local {
        // On stderr, outside the logger: what a person at this machine needs to get going
        // (and the bootstrap key, the only time it is ever shown).
        eprintln!(
            "{}",
            local_guide(&LocalGuide {
                dashboard: dashboard.as_deref().unwrap_or_default(),
                database: &shown_url,
                key: bootstrap_key.as_deref(),
            })
        );
    } else if let Some(key) = &bootstrap_key {
        // Printed once, on stderr, outside the logger: the only time this key is ever shown.
        eprintln!("{}", first_run_guide(key, dashboard.as_deref()));
    }
    server.run().await?;
    log::info!("shut down: in-flight requests finished, closing storage");
    drop(storage);
    crate::logging::flush();
    Ok(())
}

/// The dashboard's address for a listening socket: a wildcard bind is reached on loopback.
fn dashboard_url(a: std::net::SocketAddr) -> String {
    let host = match a.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    };
    format!("http://{host}:{}/", a.port())
}

/// What a first start prints on stderr: where the dashboard is and the bootstrap key, as a
/// short guide rather than log lines.
fn first_run_guide(key: &str, dashboard: Option<&str>) -> String {
    let open = match dashboard {
        Some(url) => format!(
            "\n  perfgate-server {} is ready.\n\n  Dashboard:  {url}  (sign in with the key below)\n",
            routes::health::SERVER_VERSION
        ),
        None => String::new(),
    };
    format!(
        "{open}\n  No credentials configured: created a bootstrap admin key (shown only once):\n\n    {key}\n\n  Use it as 'Authorization: Bearer <key>' (perfgate CLI: PERFGATE_API_KEY). Only its hash is stored.\n"
    )
}

/// What local mode prints on start: the mode, the dashboard, the API the CLI's `--local-db`
/// posts to, the database, and how keys and the audit log are reached.
struct LocalGuide<'a> {
    /// `http://127.0.0.1:8484/`.
    dashboard: &'a str,
    /// The database as shown (password redacted).
    database: &'a str,
    /// The bootstrap key created by this start, if one was.
    key: Option<&'a str>,
}

fn local_guide(g: &LocalGuide<'_>) -> String {
    let api = format!("{}api/v1", g.dashboard);
    let cli = if api == "http://127.0.0.1:8484/api/v1" {
        "perfgate run --local-db … and perfgate check --local-db … post here".to_owned()
    } else {
        format!("perfgate run --local-db … posts here with PERFGATE_LOCAL_DB={api}")
    };
    let keys = match g.key {
        Some(key) => format!(
            "  Keys and the audit log still need an admin key: created one (shown only once):\n\n    {key}\n\n  Use it as 'Authorization: Bearer <key>'; only its hash is stored.\n"
        ),
        None => format!(
            "  Keys and the audit log still need an admin API key (one you hold, or\n  'perfgate-server keys create --database-url {} --role admin').\n",
            g.database
        ),
    };
    format!(
        "\n  perfgate-server {} is ready in local mode: one user, this machine only.\n\n  Dashboard:  {}  (no sign-in needed)\n  API:        {api}  (no credential needed)\n              {cli}\n  Database:   {}\n\n{keys}",
        routes::health::SERVER_VERSION,
        g.dashboard,
        g.database,
    )
}

/// Creates the directory of local mode's database when missing, readable by its owner only.
fn create_private_dir(db_file: &std::path::Path) -> Result<(), ServerError> {
    let Some(dir) = db_file.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| {
        ServerError::Config(crate::config::ConfigError(format!(
            "local mode: cannot create the data directory {}: {e}",
            dir.display()
        )))
    })
}

/// The most PostgreSQL connections one replica opens with `readers` reader connections per store
/// and `shards` writer shards, as `serve` builds its pools: the general read and write pools
/// (start-up work, back-fills), a reader pool for each of the 7 stores, a writer per shard for
/// the 5 stores that write through shards, the key store's one writer, and the cache listener's
/// dedicated connection (outside the pools: `db::notify`).
fn pg_connections(readers: u32, shards: u32) -> u32 {
    const GENERAL: u32 = 2;
    const READING_STORES: u32 = 7;
    const SHARDED_WRITING_STORES: u32 = 5;
    const KEY_WRITER: u32 = 1;
    const CACHE_LISTENER: u32 = 1;
    GENERAL
        + READING_STORES * readers
        + SHARDED_WRITING_STORES * shards
        + KEY_WRITER
        + CACHE_LISTENER
}

/// One change-point pass: planned on a reader, applied on the writer. None when there was
/// nothing to write (no new run, older runs still being summarised) or the plan went stale.
async fn change_point_pass(
    scanner: &Shards<GateStore>,
    plan: crate::actors::changepoints::PlanChangePoints,
) -> Result<Option<crate::actors::changepoints::ScanReport>, crate::actors::StoreError> {
    let Some(plan) = scanner.read(plan).await?? else {
        return Ok(None);
    };
    if plan.is_empty() {
        return Ok(None);
    }
    let apply = crate::actors::changepoints::ApplyChangePoints { plan };
    scanner.write("change_points", apply).await?
}

/// How long one change-point pass may hold the write turn while it catches up (its size adapts
/// to this, see [`crate::actors::changepoints::PassSizer`]).
const CHANGE_POINT_PASS_TARGET: Duration = Duration::from_millis(4);
/// While catching up under client writes, a pass is followed by a rest of this many times its
/// duration: change points then take at most a quarter of the writer's time.
const CHANGE_POINT_REST_FACTOR: u32 = 3;
/// The rest between passes while no client writes (and the first part of every rest, long
/// enough to learn whether clients write).
const CHANGE_POINT_MIN_REST: Duration = Duration::from_millis(2);

/// Summarises, in the background and in small batches, the runs of baselines stored before the
/// gate's `run_stats` table existed, so a gate finds their history. Each batch is one short write
/// transaction, so clients' writes wait at most one batch.
fn spawn_backfill(pool: crate::db::DbPool) {
    let spawned = std::thread::Builder::new()
        .name("run-stats-backfill".into())
        .spawn(move || loop {
            let step = pool
                .get()
                .map_err(crate::db::DbError::from)
                .and_then(|mut c| {
                    crate::db::write_tx(&mut c, |c| crate::db::gates::backfill_run_stats(c, 200))
                        .map_err(crate::db::DbError::from)
                });
            match step {
                Ok(true) => return,
                Ok(false) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => {
                    log::warn!("run summary back-fill paused: {e}");
                    std::thread::sleep(Duration::from_secs(5));
                }
            }
        });
    if let Err(e) = spawned {
        log::warn!("could not start the run summary back-fill: {e}");
    }
}

/// Forgets `Idempotency-Key` records older than 24 hours, at start-up and then hourly (one
/// short write transaction each; lookups ignore expired records meanwhile).
fn spawn_idempotency_expiry(pool: crate::db::DbPool) {
    let spawned = std::thread::Builder::new()
        .name("idempotency-expiry".into())
        .spawn(move || loop {
            let before =
                crate::domain::time::now_micros() - crate::db::baselines::IDEMPOTENCY_TTL_MICROS;
            let swept = pool
                .get()
                .map_err(crate::db::DbError::from)
                .and_then(|mut c| {
                    crate::db::write_tx(&mut c, |c| {
                        crate::db::baselines::expire_idempotency(c, before)
                    })
                    .map_err(crate::db::DbError::from)
                });
            match swept {
                Ok(n) if n > 0 => log::info!("forgot {n} expired Idempotency-Key records"),
                Ok(_) => {}
                Err(e) => log::warn!("Idempotency-Key expiry failed (retried in an hour): {e}"),
            }
            std::thread::sleep(Duration::from_secs(3600));
        });
    if let Err(e) = spawned {
        log::warn!("could not start the Idempotency-Key expiry: {e}");
    }
}

fn rate_limiter(cfg: &ServerConfig) -> Option<Arc<governor::DefaultKeyedRateLimiter<String>>> {
    let rate = std::num::NonZeroU32::new(cfg.rate_limit)?;
    let burst = cfg
        .rate_limit_burst
        .and_then(std::num::NonZeroU32::new)
        .unwrap_or(rate);
    let quota = governor::Quota::per_second(rate).allow_burst(burst);
    Some(Arc::new(governor::RateLimiter::dashmap(quota)))
}

/// The pools of every store, opened together at start-up.
struct StorePoolSet {
    baselines: StorePools,
    verdicts: StorePools,
    decisions: StorePools,
    fleet: StorePools,
    keys: StorePools,
    gates: StorePools,
    dashboard: StorePools,
}

impl StorePoolSet {
    /// Every distinct pool, for the gauges at `/metrics` (SQLite's shared writer once).
    fn all(&self) -> Vec<crate::db::DbPool> {
        let mut out: Vec<crate::db::DbPool> = Vec::new();
        for p in [
            &self.baselines,
            &self.verdicts,
            &self.decisions,
            &self.fleet,
            &self.keys,
            &self.gates,
            &self.dashboard,
        ] {
            out.push(p.read.clone());
            if let Some(w) = &p.write {
                if !out
                    .iter()
                    .any(|o| o.owner() == w.owner() && o.name() == w.name())
                {
                    out.push(w.clone());
                }
            }
        }
        out
    }
}

/// Starts one store's reader threads (on its read pool) and writer shards (on its write pool).
struct StoreStarter<'a> {
    read_threads: usize,
    write_shards: usize,
    limiter: &'a Arc<Semaphore>,
    timeout: Duration,
}

impl StoreStarter<'_> {
    fn store<S>(
        &self,
        name: &'static str,
        pools: StorePools,
        new: impl Fn(crate::db::DbPool) -> S + Clone + Send + Sync + 'static,
    ) -> Shards<S>
    where
        S: actix::Actor<Context = actix::SyncContext<S>>,
    {
        let new_w = new.clone();
        let r = pools.read;
        let readers = Shards::start(
            name,
            self.read_threads,
            0,
            move || new(r.clone()),
            self.limiter.clone(),
            self.timeout,
        );
        let Some(w) = pools.write else {
            return readers;
        };
        readers.with_writers(Shards::writer_shards(self.write_shards, move || {
            new_w(w.clone())
        }))
    }
}

fn cors_layer() -> Cors {
    Cors::default()
        .allow_any_origin()
        .allow_any_method()
        .allow_any_header()
        .expose_headers(crate::middleware::CORS_EXPOSED)
        .max_age(3600)
}
