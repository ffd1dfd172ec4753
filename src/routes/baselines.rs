//! Baseline routes (contract §4).

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::json::{JsonBody, Query};
use super::query::{parse_limit, parse_offset, parse_time};
use super::Arrival;
use crate::actors::baseline_store::{
    Delete, GetLatest, GetVersion, ListBaselines, Promote, RecentMedians, RunFacts, Upload,
};
use crate::actors::{Initiator, StoreError};
use crate::api::TrendResponse;
use crate::api::{
    etag_of, BaselineRecord, BaselineSummary, DeleteResponse, ListBaselinesResponse, Pagination,
    PromoteResponse,
};
use crate::auth::{Gate, Principal, Scope};
use crate::cache::CachedLatest;
use crate::db::baselines::{BaselineRow, ListFilter};
use crate::domain::names::{check_not_blank, check_text, BenchmarkName, ProjectName, Version};
use crate::domain::receipt;
use crate::domain::requests;
use crate::domain::time::to_rfc3339;
use crate::error::ApiError;
use crate::request_id::current_request_id;
use crate::state::AppState;

/// Characters escaped in a `Location` path segment.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

fn version_location(project: &str, benchmark: &str, version: &str) -> String {
    // `.` and `..` are valid versions but would be resolved as dot-segments by clients.
    let v = match version {
        "." => "%2E".to_owned(),
        ".." => "%2E%2E".to_owned(),
        v => utf8_percent_encode(v, SEGMENT).to_string(),
    };
    format!("/api/v1/projects/{project}/baselines/{benchmark}/versions/{v}")
}

fn initiator(p: &Principal) -> Initiator {
    Initiator {
        principal_id: p.id.clone(),
        request_id: current_request_id(),
    }
}

/// `If-None-Match` matches `etag` (weak comparison, lists and `*` allowed).
fn not_modified(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// The `200` answer of latest/version, rendered once (and kept by the latest cache).
fn render_record(row: &BaselineRow) -> Result<Arc<CachedLatest>, ApiError> {
    let etag_str = etag_of(&row.content_hash);
    let etag = HeaderValue::from_str(&etag_str).map_err(|_| ApiError::internal())?;
    match serde_json::to_vec(&BaselineRecord::from_row(row)) {
        Ok(body) => Ok(Arc::new(CachedLatest {
            etag,
            etag_str,
            body: body.into(),
        })),
        Err(e) => {
            log::error!("could not render baseline {}: {e}", row.id);
            Err(ApiError::internal())
        }
    }
}

fn record_response(req: &HttpRequest, r: &CachedLatest) -> HttpResponse {
    if not_modified(req, &r.etag_str) {
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, r.etag.clone()))
            .finish();
    }
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .insert_header((header::ETAG, r.etag.clone()))
        .body(r.body.clone())
}

/// The route GET latest is registered under (`routes::api_routes!`): the access log's and the
/// metrics' label of the answers [`cached_latest`] gives before routing.
pub(crate) const LATEST_ROUTE: super::RouteTemplate =
    super::RouteTemplate("/api/v1/projects/{project}/baselines/{benchmark:.+}/latest");

/// GET latest answered before routing, when the answer is in the latest cache and the caller
/// holds a configured key, or a database key the key cache holds (SQLite), that may read it:
/// what every CI job asks, without the router, the
/// extractors and the handler. The answer is the one [`latest`] gives from the cache, byte for
/// byte. Anything else is `None` and takes the ordinary path, which answers it (and counts the
/// lookup, a refusal or a rate limit) once: a path with `%` escapes (the router decodes them), a
/// name the cache holds no answer for (invalid names included: it holds valid ones only), a
/// credential that is neither a configured key nor a cached database key, a caller without
/// read access, an empty token bucket.
pub(crate) fn cached_latest(
    req: &actix_web::dev::ServiceRequest,
    state: &AppState,
) -> Option<HttpResponse> {
    // HEAD arrives here as GET (`middleware::request_context`). A browser's request (`Origin`)
    // goes through CORS.
    if req.method() != actix_web::http::Method::GET || req.headers().contains_key(header::ORIGIN) {
        return None;
    }
    let path = req.path();
    if path.contains('%') {
        return None;
    }
    // `/projects/{project}/baselines/{benchmark:.+}/latest`, `{project}` being `[^/]+`.
    let (project, rest) = path
        .strip_prefix("/api/v1/projects/")?
        .strip_suffix("/latest")?
        .split_once('/')?;
    let benchmark = rest.strip_prefix("baselines/")?;
    let hit = state.latest_cache.peek(project, benchmark)?;
    crate::auth::extract::with_known_key(state, req.request(), |p| {
        p.check(crate::auth::Access::Project {
            scope: Scope::Read,
            project,
            benchmark: Some(benchmark),
        })
        .ok()?;
        match &state.limiter {
            Some(l) => l.check_key(&p.id).ok(),
            None => Some(()),
        }
    })?;
    crate::metrics::latest_cache("hit");
    crate::metrics::METRICS.latest_early.inc();
    Some(record_response(req.request(), &hit))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct UploadBody {
    benchmark: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    git_ref: Option<String>,
    #[serde(default)]
    git_sha: Option<String>,
    /// A `perfgate.run.v1` receipt, stored byte for byte.
    #[schema(value_type = crate::domain::receipt::RunReceipt)]
    receipt: Box<RawValue>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    normalize: Option<bool>,
}

#[utoipa::path(post, operation_id = "baselines_upload", path = "/api/v1/projects/{project}/baselines", tag = "baselines", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name"), ("Idempotency-Key" = Option<String>, Header, description = "Retry key: the same key and body return the first 201")),
    request_body = UploadBody,
    responses((status = 201, description = "Stored", body = crate::api::UploadResponse), (status = 409, description = "Version exists", body = crate::openapi::ErrorBody), (status = 413, description = "Body too large", body = crate::openapi::ErrorBody), (status = 415, description = "Not JSON", body = crate::openapi::ErrorBody), (status = 422, description = "Wrong shape or receipt", body = crate::openapi::ErrorBody), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn upload(
    arrival: Arrival,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    body: JsonBody<UploadBody>,
) -> Result<HttpResponse, ApiError> {
    let project = ProjectName::parse(&path)?;
    principal.authorize(Scope::Write, project.as_str(), None)?;
    let (b, bytes) = body.parse_with_bytes()?;
    let benchmark = BenchmarkName::parse(&b.benchmark)?;
    principal.authorize(Scope::Write, project.as_str(), Some(benchmark.as_str()))?;
    let version = b.version.as_deref().map(Version::parse).transpose()?;
    requests::check_git(b.git_ref.as_deref(), b.git_sha.as_deref())?;
    let tags = b.tags.unwrap_or_default();
    requests::check_tags(&tags)?;
    let metadata = b.metadata.unwrap_or_default();
    requests::check_metadata(&metadata)?;
    let summary = receipt::validate(b.receipt.get()).map_err(|e| {
        ApiError::unprocessable(e.to_string()).with_details(serde_json::json!({ "field": e.field }))
    })?;
    let receipt = if b.normalize.unwrap_or(false) {
        receipt::normalize(b.receipt.get())
            .map_err(|e| ApiError::unprocessable(format!("Invalid receipt: {e}")))?
    } else {
        b.receipt.get().to_owned()
    };
    let mut keys = req.headers().get_all("idempotency-key");
    let idempotency = match keys.next() {
        None => None,
        // Two keys name two retries: which one this is, the client did not say.
        Some(_) if keys.next().is_some() => {
            return Err(crate::domain::names::NameError::new(
                "Idempotency-Key",
                "sent more than once",
            )
            .into())
        }
        Some(v) => {
            let key = requests::check_idempotency_key(v.to_str().ok())?;
            Some((key.to_owned(), crate::domain::digest::sha256_hex(&bytes)))
        }
    };
    let metadata_json = serde_json::to_string(&metadata).map_err(|_| ApiError::internal())?;
    let upload = Upload {
        project: project.clone(),
        benchmark,
        version,
        git_ref: b.git_ref,
        git_sha: b.git_sha,
        receipt,
        wall_ms_median: i64::try_from(summary.wall_ms_median).unwrap_or(i64::MAX),
        medians_json: summary.medians_json(),
        metadata_json,
        tags,
        idempotency,
        run: RunFacts {
            runner: receipt::runner_class(&summary.host_class, None),
            run_id: summary.run_id,
            summaries: summary.runs,
        },
        actor: initiator(&principal),
    };
    let outcome = match state
        .writes
        .upload(project.as_str(), upload, arrival.0)
        .await
    {
        Ok(o) => o,
        Err(e) => {
            let outcome = match e {
                StoreError::Conflict(_) => "conflict",
                _ => "error",
            };
            crate::metrics::METRICS
                .uploads
                .with_label_values(&[outcome])
                .inc();
            return Err(e.into());
        }
    };
    crate::metrics::METRICS
        .uploads
        .with_label_values(&[if outcome.replayed {
            "replayed"
        } else {
            "created"
        }])
        .inc();
    let r = outcome.response;
    if outcome.replayed {
        log::info!("replayed upload {} for Idempotency-Key", r.id);
    }
    let location = version_location(project.as_str(), &r.benchmark, &r.version);
    Ok(HttpResponse::Created()
        .insert_header((header::ETAG, r.etag.clone()))
        .insert_header((header::LOCATION, location))
        .json(r))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    benchmark: Option<String>,
    benchmark_prefix: Option<String>,
    git_ref: Option<String>,
    git_sha: Option<String>,
    tags: Option<String>,
    since: Option<String>,
    until: Option<String>,
    include_receipt: Option<bool>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[utoipa::path(get, operation_id = "baselines_list", path = "/api/v1/projects/{project}/baselines", tag = "baselines", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name"), ListQuery),
    responses((status = 200, description = "One page, newest first", body = crate::api::ListBaselinesResponse), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn list(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let project = ProjectName::parse(&path)?;
    principal.authorize(Scope::Read, project.as_str(), None)?;
    let q = query.parse()?;
    if let Some(b) = &q.benchmark {
        BenchmarkName::parse(b)?;
    }
    if let Some(p) = &q.benchmark_prefix {
        check_text("benchmark_prefix", p, requests::BENCHMARK_PREFIX_MAX_BYTES)?;
    }
    requests::check_git(q.git_ref.as_deref(), q.git_sha.as_deref())?;
    let tags: Vec<String> = q
        .tags
        .as_deref()
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    requests::check_tags(&tags)?;
    let include_receipt = q.include_receipt.unwrap_or(false);
    // Receipts can be large: pages that carry them hold at most 200 rows (the page says so in
    // `pagination.limit`, and `has_more` leads to the rest).
    let limit = parse_limit(q.limit, 50, 1000)?;
    let limit = if include_receipt {
        limit.min(200)
    } else {
        limit
    };
    let offset = parse_offset(q.offset)?;
    let filter = ListFilter {
        project: project.into_string(),
        benchmark: q.benchmark,
        benchmark_prefix: q.benchmark_prefix.filter(|p| !p.is_empty()),
        allowed_benchmarks: None,
        git_ref: q.git_ref,
        git_sha: q.git_sha,
        tags,
        since: parse_time("since", &q.since)?,
        until: parse_time("until", &q.until)?,
        include_receipt,
        limit,
        offset,
    };
    let (rows, total) = state
        .baselines
        .read(ListBaselines {
            filter,
            visible: principal.benchmarks.clone(),
        })
        .await??;
    let body = ListBaselinesResponse {
        pagination: Pagination::new(total, offset, limit, rows.len()),
        baselines: rows.iter().map(BaselineSummary::from_row).collect(),
    };
    Ok(HttpResponse::Ok().json(body))
}

fn bench_path(
    principal: &Principal,
    scope: Scope,
    project: &str,
    benchmark: &str,
) -> Result<(ProjectName, BenchmarkName), ApiError> {
    let project = ProjectName::parse(project)?;
    let benchmark = BenchmarkName::parse(benchmark)?;
    principal.authorize(scope, project.as_str(), Some(benchmark.as_str()))?;
    Ok((project, benchmark))
}

#[utoipa::path(get, operation_id = "baselines_latest", path = "/api/v1/projects/{project}/baselines/{benchmark}/latest", tag = "baselines", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name"), ("benchmark" = String, Path, description = "Benchmark name (may contain /)"), ("If-None-Match" = Option<String>, Header, description = "ETag of a cached copy")),
    responses((status = 200, description = "The latest version", body = crate::api::BaselineRecord), (status = 304, description = "Not modified"), (status = 404, description = "No version", body = crate::openapi::ErrorBody), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn latest(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (project, benchmark) = bench_path(&principal, Scope::Read, &path.0, &path.1)?;
    let cache = &state.latest_cache;
    if let Some(hit) = cache.get(project.as_str(), benchmark.as_str()) {
        return Ok(record_response(&req, &hit));
    }
    // Taken before the read: a write that commits meanwhile keeps this answer out of the cache.
    let ticket = cache.ticket();
    let (p, b) = (project.clone(), benchmark.clone());
    match state
        .baselines
        .read(GetLatest { project, benchmark })
        .await??
    {
        Some(row) => {
            let rendered = render_record(&row)?;
            cache.fill(ticket, p.as_str(), b.as_str(), rendered.clone());
            Ok(record_response(&req, &rendered))
        }
        None => Err(ApiError::not_found(format!(
            "Baseline {b}/latest not found"
        ))),
    }
}

#[utoipa::path(get, operation_id = "baselines_get_version", path = "/api/v1/projects/{project}/baselines/{benchmark}/versions/{version}", tag = "baselines", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name"), ("benchmark" = String, Path, description = "Benchmark name (may contain /)"), ("version" = String, Path, description = "Version"), ("If-None-Match" = Option<String>, Header, description = "ETag of a cached copy")),
    responses((status = 200, description = "The version", body = crate::api::BaselineRecord), (status = 304, description = "Not modified"), (status = 404, description = "No such version", body = crate::openapi::ErrorBody), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn get_version(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (project, benchmark) = bench_path(&principal, Scope::Read, &path.0, &path.1)?;
    let version = Version::parse(&path.2)?;
    let label = format!("{benchmark}/{version}");
    match state
        .baselines
        .read(GetVersion {
            project,
            benchmark,
            version,
        })
        .await??
    {
        Some(row) => Ok(record_response(&req, &*render_record(&row)?)),
        None => Err(ApiError::not_found(format!("Baseline {label} not found"))),
    }
}

#[utoipa::path(delete, operation_id = "baselines_delete_version", path = "/api/v1/projects/{project}/baselines/{benchmark}/versions/{version}", tag = "baselines", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name"), ("benchmark" = String, Path, description = "Benchmark name (may contain /)"), ("version" = String, Path, description = "Version")),
    responses((status = 200, description = "Soft-deleted", body = crate::api::DeleteResponse), (status = 404, description = "No live version", body = crate::openapi::ErrorBody), (status = 405, description = "The path names the reserved version `latest`: `…/{benchmark}/versions/latest` is the latest baseline of a benchmark named `…/versions`, which has only GET", body = crate::openapi::ErrorBody), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn delete_version(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (project, benchmark) = bench_path(&principal, Scope::Delete, &path.0, &path.1)?;
    let version = Version::parse(&path.2)?;
    let id = format!("{project}/{benchmark}/{version}");
    let (b, v) = (benchmark.to_string(), version.to_string());
    let deleted = state
        .baselines
        .write(
            project.as_str(),
            Delete {
                project: project.clone(),
                benchmark,
                version,
                actor: initiator(&principal),
            },
        )
        .await??;
    Ok(HttpResponse::Ok().json(DeleteResponse {
        deleted: true,
        id,
        benchmark: b,
        version: v,
        deleted_at: to_rfc3339(deleted.deleted_at),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct PromoteBody {
    from_version: String,
    to_version: String,
    #[serde(default)]
    git_ref: Option<String>,
    #[serde(default)]
    git_sha: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    normalize: Option<bool>,
    /// Promote a quarantined version anyway (admin only; the reason is audited).
    #[serde(default, rename = "override")]
    override_: Option<PromoteOverride>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct PromoteOverride {
    /// Why (audited): not blank, no control characters, at most 1024 bytes.
    reason: String,
}

#[utoipa::path(post, operation_id = "baselines_promote", path = "/api/v1/projects/{project}/baselines/{benchmark}/promote", tag = "baselines", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name"), ("benchmark" = String, Path, description = "Benchmark name (may contain /)")), request_body = PromoteBody,
    responses((status = 201, description = "Promoted", body = crate::api::PromoteResponse), (status = 404, description = "Source missing", body = crate::openapi::ErrorBody), (status = 409, description = "Target exists, or the source is quarantined", body = crate::openapi::ErrorBody), (status = 415, description = "Not JSON", body = crate::openapi::ErrorBody), (status = 422, description = "Wrong shape", body = crate::openapi::ErrorBody), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn promote(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: JsonBody<PromoteBody>,
) -> Result<HttpResponse, ApiError> {
    let (project, benchmark) = bench_path(&principal, Scope::Promote, &path.0, &path.1)?;
    let b = body.parse()?;
    let from_version = Version::parse_field(&b.from_version, "from_version")?;
    let to_version = Version::parse_field(&b.to_version, "to_version")?;
    requests::check_git(b.git_ref.as_deref(), b.git_sha.as_deref())?;
    let tags = b.tags.unwrap_or_default();
    requests::check_tags(&tags)?;
    let override_reason = match b.override_ {
        None => None,
        Some(o) => {
            // Overriding a quarantine is an admin's decision, and needs a reason.
            principal.authorize(Scope::Admin, project.as_str(), Some(benchmark.as_str()))?;
            let r = check_not_blank(
                "override.reason",
                &o.reason,
                crate::domain::requests::OVERRIDE_REASON_MAX_BYTES,
            )?;
            Some(r.to_owned())
        }
    };
    let (bench, from, to) = (
        benchmark.to_string(),
        from_version.to_string(),
        to_version.to_string(),
    );
    let promoted = state
        .baselines
        .write(
            project.as_str(),
            Promote {
                project: project.clone(),
                benchmark,
                from_version,
                to_version,
                git_ref: b.git_ref,
                git_sha: b.git_sha,
                tags,
                normalize: b.normalize.unwrap_or(false),
                override_reason,
                actor: initiator(&principal),
            },
        )
        .await??;
    let at = to_rfc3339(promoted.created_at);
    let location = version_location(project.as_str(), &bench, &to);
    let mut res = HttpResponse::build(StatusCode::CREATED).json(PromoteResponse {
        id: promoted.id,
        benchmark: bench,
        version: to,
        promoted_from: from,
        promoted_at: at.clone(),
        created_at: at,
    });
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TrendQuery {
    metric: String,
    window: Option<i64>,
    threshold: Option<f64>,
    critical_window: Option<i64>,
}

/// `GET …/baselines/{benchmark}/trend`: a metric's medians over the newest `window` versions,
/// oldest first, with the drift analysis.
#[utoipa::path(get, operation_id = "baselines_trend", path = "/api/v1/projects/{project}/baselines/{benchmark}/trend", tag = "baselines", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name"), ("benchmark" = String, Path, description = "Benchmark name (may contain /)"), TrendQuery),
    responses((status = 200, description = "Series and drift analysis", body = crate::api::TrendResponse), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn trend(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: Query<TrendQuery>,
) -> Result<HttpResponse, ApiError> {
    use crate::domain::trend;
    let (project, benchmark) = bench_path(&principal, Scope::Read, &path.0, &path.1)?;
    let q = query.parse()?;
    if !trend::METRICS.contains(&q.metric.as_str()) {
        return Err(ApiError::bad_request(format!(
            "Invalid metric: expected one of {}",
            trend::METRICS.join(", ")
        )));
    }
    let window = match q.window {
        None => 30,
        Some(w) if (1..=1000).contains(&w) => w,
        Some(_) => {
            return Err(ApiError::bad_request(
                "Invalid window: must be between 1 and 1000",
            ))
        }
    };
    let threshold = q.threshold.unwrap_or(0.20);
    if !(threshold.is_finite() && threshold > 0.0 && threshold <= 10.0) {
        return Err(ApiError::bad_request(
            "Invalid threshold: must be a fraction in (0, 10]",
        ));
    }
    let critical_window = match q.critical_window {
        None => 10,
        Some(c) if (1..=100_000).contains(&c) => c as u32,
        Some(_) => {
            return Err(ApiError::bad_request(
                "Invalid critical_window: must be between 1 and 100000",
            ))
        }
    };
    let (p, b) = (project.to_string(), benchmark.to_string());
    let medians = state
        .baselines
        .read(RecentMedians {
            project,
            benchmark,
            window,
        })
        .await??;
    let values: Vec<f64> = medians
        .iter()
        .rev()
        .filter_map(|m| receipt::median_of(m, &q.metric))
        .collect();
    let analysis = trend::analyze(&q.metric, &values, threshold, critical_window);
    Ok(HttpResponse::Ok().json(TrendResponse {
        project: p,
        benchmark: b,
        analysis,
        spark: trend::spark(&values),
        data_points: values.len(),
        values,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_escapes_version() {
        assert_eq!(
            version_location("p", "render/md", "v 1?#%"),
            "/api/v1/projects/p/baselines/render/md/versions/v%201%3F%23%25"
        );
        assert_eq!(
            version_location("p", "b", ".."),
            "/api/v1/projects/p/baselines/b/versions/%2E%2E"
        );
    }
}
