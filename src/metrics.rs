//! Prometheus metrics, served as text at `/metrics`.
//!
//! Every label value comes from a closed set: route *templates* (never raw paths), the HTTP
//! methods the server routes, status codes, actor names and fixed reasons, so label cardinality
//! stays bounded whatever URLs clients send.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub(crate) struct Metrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub http_in_flight: IntGauge,
    pub mailbox_depth: IntGaugeVec,
    pub message_duration: HistogramVec,
    pub pool_connections: IntGaugeVec,
    pub pool_wait: HistogramVec,
    pub storage_errors: IntCounterVec,
    pub uploads: IntCounterVec,
    pub verdicts: IntCounterVec,
    pub auth_failures: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub limit_rejections: IntCounterVec,
    pub change_point_pass: prometheus::Histogram,
    pub change_point_runs: prometheus::IntCounter,
    pub change_point_alerts: IntCounterVec,
    pub group_commit_size: HistogramVec,
    pub latest_cache: IntCounterVec,
    pub latest_early: prometheus::IntCounter,
    pub cache_listener_connected: IntGauge,
    pub cache_ack_waits: IntCounterVec,
    pub cache_ack_wait: prometheus::Histogram,
    pub sqlite_wal_frames: IntGauge,
    pub sqlite_wal_final_copies: IntCounterVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0,
];

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new_custom(Some("perfgate".into()), None)?;
    let m = Metrics {
        http_requests: IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by method, route template and status",
            ),
            &["method", "route", "status"],
        )?,
        http_duration: HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "route", "status"],
        )?,
        http_in_flight: IntGauge::new("http_requests_in_flight", "HTTP requests being served")?,
        mailbox_depth: IntGaugeVec::new(
            Opts::new(
                "actor_mailbox_depth",
                "Messages waiting in an actor's mailbox",
            ),
            &["actor"],
        )?,
        message_duration: HistogramVec::new(
            HistogramOpts::new(
                "actor_message_duration_seconds",
                "Time from sending a message to an actor to its reply",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["actor"],
        )?,
        pool_connections: IntGaugeVec::new(
            Opts::new(
                "db_pool_connections",
                "Database pool connections by owning store, pool and state",
            ),
            &["store", "pool", "state"],
        )?,
        pool_wait: HistogramVec::new(
            HistogramOpts::new(
                "db_pool_wait_seconds",
                "Time spent waiting for a pooled connection",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["store", "pool"],
        )?,
        storage_errors: IntCounterVec::new(
            Opts::new("storage_errors_total", "Storage failures by kind"),
            &["kind"],
        )?,
        uploads: IntCounterVec::new(
            Opts::new("baseline_uploads_total", "Baseline uploads by outcome"),
            &["outcome"],
        )?,
        verdicts: IntCounterVec::new(
            Opts::new("verdicts_total", "Verdicts recorded by status"),
            &["status"],
        )?,
        auth_failures: IntCounterVec::new(
            Opts::new("auth_failures_total", "Refused credentials by reason"),
            &["reason"],
        )?,
        rate_limited: IntCounterVec::new(
            Opts::new(
                "rate_limited_total",
                "Requests refused by the per-credential rate limit",
            ),
            &["kind"],
        )?,
        limit_rejections: IntCounterVec::new(
            Opts::new(
                "request_limit_rejections_total",
                "Requests refused by a size or depth limit",
            ),
            &["limit"],
        )?,
        change_point_pass: prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "change_point_pass_seconds",
                "How long one change-point pass held its write transaction",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?,
        change_point_runs: prometheus::IntCounter::new(
            "change_point_runs_total",
            "Runs read by change-point passes",
        )?,
        change_point_alerts: IntCounterVec::new(
            Opts::new(
                "change_point_alerts_total",
                "Alerts opened or marked fixed by change points",
            ),
            &["action"],
        )?,
        group_commit_size: HistogramVec::new(
            HistogramOpts::new(
                "group_commit_writes",
                "Writes per group commit (one transaction, one fsync), by kind",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
            &["kind"],
        )?,
        latest_cache: IntCounterVec::new(
            Opts::new(
                "latest_cache_requests_total",
                "GET latest lookups in the cache of rendered answers: hit, miss, or off (the cache is switched off: PostgreSQL without its listener, or outside its lease)",
            ),
            &["result"],
        )?,
        latest_early: prometheus::IntCounter::new(
            "latest_early_answers_total",
            "Cache hits of GET latest answered before routing (a configured or cached database key, no Origin, no % escape; counted in latest_cache_requests_total too)",
        )?,
        cache_listener_connected: IntGauge::new(
            "cache_listener_connected",
            "1 while this replica's PostgreSQL cache listener is connected and listening (its cache serves), else 0",
        )?,
        cache_ack_waits: IntCounterVec::new(
            Opts::new(
                "cache_ack_waits_total",
                "Writes that waited for the other replicas' cache listeners to drop what they changed, by outcome (acked; lease: a lost listener's lease waited out; timeout)",
            ),
            &["outcome"],
        )?,
        cache_ack_wait: prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "cache_ack_wait_seconds",
                "Time a committed write waited for the other replicas' cache listeners",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?,
        sqlite_wal_frames: IntGauge::new(
            "sqlite_wal_frames",
            "SQLite: pages in the WAL at the checkpointer's last round (it restarts from 0 once wholly copied)",
        )?,
        sqlite_wal_final_copies: IntCounterVec::new(
            Opts::new(
                "sqlite_wal_final_copies_total",
                "SQLite: the checkpointer's final copies under the write turn, by outcome (done: the WAL restarts; partial: a reader still needed WAL pages; skipped: the writers outpaced the copy)",
            ),
            &["outcome"],
        )?,
        registry,
    };
    m.registry.register(Box::new(m.http_requests.clone()))?;
    m.registry.register(Box::new(m.http_duration.clone()))?;
    m.registry.register(Box::new(m.http_in_flight.clone()))?;
    m.registry.register(Box::new(m.mailbox_depth.clone()))?;
    m.registry.register(Box::new(m.message_duration.clone()))?;
    m.registry.register(Box::new(m.pool_connections.clone()))?;
    m.registry.register(Box::new(m.pool_wait.clone()))?;
    m.registry.register(Box::new(m.storage_errors.clone()))?;
    m.registry.register(Box::new(m.uploads.clone()))?;
    m.registry.register(Box::new(m.verdicts.clone()))?;
    m.registry.register(Box::new(m.auth_failures.clone()))?;
    m.registry.register(Box::new(m.rate_limited.clone()))?;
    m.registry.register(Box::new(m.limit_rejections.clone()))?;
    m.registry.register(Box::new(m.change_point_pass.clone()))?;
    m.registry.register(Box::new(m.change_point_runs.clone()))?;
    m.registry
        .register(Box::new(m.change_point_alerts.clone()))?;
    m.registry.register(Box::new(m.group_commit_size.clone()))?;
    m.registry.register(Box::new(m.latest_cache.clone()))?;
    m.registry.register(Box::new(m.latest_early.clone()))?;
    m.registry
        .register(Box::new(m.cache_listener_connected.clone()))?;
    m.registry.register(Box::new(m.cache_ack_waits.clone()))?;
    m.registry.register(Box::new(m.cache_ack_wait.clone()))?;
    m.registry.register(Box::new(m.sqlite_wal_frames.clone()))?;
    m.registry
        .register(Box::new(m.sqlite_wal_final_copies.clone()))?;
    Ok(m)
}

pub(crate) static METRICS: LazyLock<Metrics> =
    LazyLock::new(|| build().expect("metric definitions are static and valid"));

/// A method label from a closed set.
pub(crate) fn method_label(m: &actix_web::http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "DELETE" => "DELETE",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

/// [`observe_request`] for a route template known for the whole run: the labelled counter and
/// histogram are looked up once per thread and kept (no label hashing per request).
pub(crate) fn observe_static_route(
    method: &'static str,
    route: &'static str,
    status: u16,
    elapsed: Duration,
) {
    type Handles = (prometheus::IntCounter, prometheus::Histogram);
    thread_local! {
        static HANDLES: std::cell::RefCell<std::collections::HashMap<(usize, usize, usize, u16), Handles>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }
    // Static strings are identified by address and length.
    let key = (
        method.as_ptr() as usize,
        route.as_ptr() as usize,
        route.len(),
        status,
    );
    HANDLES.with(|h| {
        let mut h = h.borrow_mut();
        let (count, duration) = h.entry(key).or_insert_with(|| {
            let status = status.to_string();
            let labels = [method, route, status.as_str()];
            (
                METRICS.http_requests.with_label_values(&labels),
                METRICS.http_duration.with_label_values(&labels),
            )
        });
        count.inc();
        duration.observe(elapsed.as_secs_f64());
    });
}

pub(crate) fn observe_request(method: &'static str, route: &str, status: u16, elapsed: Duration) {
    let status = status.to_string();
    let labels = [method, route, status.as_str()];
    METRICS.http_requests.with_label_values(&labels).inc();
    METRICS
        .http_duration
        .with_label_values(&labels)
        .observe(elapsed.as_secs_f64());
}

/// One change-point pass: its duration, the runs it read, the alerts it opened and fixed.
pub(crate) fn change_point_pass(elapsed: Duration, runs: usize, opened: usize, fixed: usize) {
    let m = &*METRICS;
    m.change_point_pass.observe(elapsed.as_secs_f64());
    m.change_point_runs.inc_by(runs as u64);
    m.change_point_alerts
        .with_label_values(&["opened"])
        .inc_by(opened as u64);
    m.change_point_alerts
        .with_label_values(&["fixed"])
        .inc_by(fixed as u64);
}

/// One GET latest lookup in the cache: `hit`, `miss` or `off`.
pub(crate) fn latest_cache(result: &'static str) {
    static COUNTERS: LazyLock<[prometheus::IntCounter; 3]> = LazyLock::new(|| {
        ["hit", "miss", "off"].map(|r| METRICS.latest_cache.with_label_values(&[r]))
    });
    let i = match result {
        "hit" => 0,
        "miss" => 1,
        _ => 2,
    };
    COUNTERS[i].inc();
}

/// A committed write's wait for the other replicas' cache listeners.
/// `outcome`: `acked` (every listener acknowledged), `lease` (a listener was gone and its lease
/// was waited out), `timeout`.
pub(crate) fn cache_ack_wait(elapsed: Duration, outcome: &'static str) {
    let m = &*METRICS;
    m.cache_ack_wait.observe(elapsed.as_secs_f64());
    m.cache_ack_waits.with_label_values(&[outcome]).inc();
}

pub(crate) fn auth_failure(reason: &'static str) {
    METRICS.auth_failures.with_label_values(&[reason]).inc();
}

/// Counts a queued message until it is dropped (when the actor starts on it).
pub(crate) struct QueueGuard(&'static str);

impl QueueGuard {
    pub(crate) fn new(actor: &'static str) -> Self {
        METRICS.mailbox_depth.with_label_values(&[actor]).inc();
        QueueGuard(actor)
    }
}

impl Drop for QueueGuard {
    fn drop(&mut self) {
        METRICS.mailbox_depth.with_label_values(&[self.0]).dec();
    }
}

/// Connections of one pool, sampled when `/metrics` is read.
pub(crate) struct PoolGauge {
    pub(crate) store: &'static str,
    pub(crate) name: &'static str,
    pub(crate) idle: u32,
    pub(crate) in_use: u32,
    pub(crate) max: u32,
}

/// The text exposition, with the pool gauges given.
pub(crate) fn render(pools: &[PoolGauge]) -> String {
    for p in pools {
        for (kind, n) in [("idle", p.idle), ("in_use", p.in_use), ("max", p.max)] {
            METRICS
                .pool_connections
                .with_label_values(&[p.store, p.name, kind])
                .set(i64::from(n));
        }
    }
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&METRICS.registry.gather(), &mut buf) {
        log::error!("encoding metrics: {e}");
    }
    String::from_utf8(buf).unwrap_or_default()
}
