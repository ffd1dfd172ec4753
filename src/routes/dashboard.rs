//! The dashboard: its read models (`/api/v1/whoami`, `/api/v1/projects`, a project's benchmark
//! table, a benchmark's history) and the single-page app itself, embedded from `static/` at build
//! time. `--static-dir` overrides embedded files with an operator's own (served by actix-files);
//! a file missing there falls back to the embedded one.

use std::path::PathBuf;

use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{Compress, DefaultHeaders};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::json::Query;
use super::query::{parse_limit, parse_offset};
use crate::actors::dashboard::{History, ProjectBenchmarks, Projects};
use crate::api::{raw, Pagination};
use crate::auth::{Gate, Principal, Role, Scope};
use crate::domain::names::{BenchmarkName, ProjectName};
use crate::domain::time::to_rfc3339;
use crate::error::ApiError;
use crate::state::AppState;

// ---------------------------------------------------------------------------------------------
// Who am I

#[derive(Serialize, ToSchema)]
pub(crate) struct WhoAmI {
    /// Stable principal id (the audit actor).
    pub id: String,
    /// `viewer`, `contributor`, `promoter` or `admin` when the scopes are exactly that role's,
    /// `custom` otherwise (a token's scope set).
    pub role: String,
    /// Granted scopes: `read`, `write`, `promote`, `delete`, `admin`.
    pub scopes: Vec<String>,
    /// The project the credential is confined to, or `*`.
    pub project: String,
    /// The benchmark restriction as configured (regex or glob), if any.
    pub benchmark_filter: Option<String>,
}

#[utoipa::path(get, operation_id = "whoami", path = "/api/v1/whoami", tag = "dashboard", security(("bearer" = []), ("token" = [])),
    responses((status = 200, description = "The caller's identity and permissions", body = WhoAmI), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody)))]
pub(crate) async fn whoami(principal: Principal) -> HttpResponse {
    let scopes = principal
        .scopes
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    HttpResponse::Ok().json(WhoAmI {
        id: principal.id.clone(),
        // The role with exactly these scopes, or `custom` (a token may hold read and delete).
        role: Role::describe(principal.scopes).to_owned(),
        scopes,
        project: principal.project.clone().unwrap_or_else(|| "*".to_owned()),
        benchmark_filter: principal.benchmarks.as_ref().map(|f| f.source.clone()),
    })
}

// ---------------------------------------------------------------------------------------------
// Projects

#[derive(Serialize, ToSchema)]
pub(crate) struct ProjectInfo {
    pub project: String,
    /// Benchmarks with live baselines or verdicts, visible to the caller.
    pub benchmarks: u64,
    /// Live (not deleted) baselines.
    pub baselines: u64,
    pub verdicts: u64,
    /// Newest upload, promote, delete or verdict; null for an empty project.
    pub last_activity: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ProjectsResponse {
    pub projects: Vec<ProjectInfo>,
    pub total: u64,
}

#[utoipa::path(get, operation_id = "projects_list", path = "/api/v1/projects", tag = "dashboard", security(("bearer" = []), ("token" = [])),
    responses((status = 200, description = "The projects the caller can read, by name", body = ProjectsResponse), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn projects(
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if let Some(p) = &principal.project {
        principal.authorize(Scope::Read, p, None)?;
    } else {
        principal.authorize(Scope::Read, "*", None)?;
    }
    let rows = state
        .dashboard
        .read(Projects {
            only: principal.project.clone(),
            visible: principal.benchmarks.clone(),
        })
        .await??;
    let projects: Vec<ProjectInfo> = rows
        .into_iter()
        .map(|r| ProjectInfo {
            project: r.project,
            benchmarks: r.benchmarks,
            baselines: r.baselines,
            verdicts: r.verdicts,
            last_activity: r.last_activity.map(to_rfc3339),
        })
        .collect();
    Ok(HttpResponse::Ok().json(ProjectsResponse {
        total: projects.len() as u64,
        projects,
    }))
}

// ---------------------------------------------------------------------------------------------
// A project's benchmarks

#[derive(Serialize, ToSchema)]
pub(crate) struct LatestVersion {
    pub version: String,
    pub created_at: String,
    /// `receipt.stats.wall_ms.median` of that version.
    pub wall_ms_median: Option<i64>,
    /// `upload` or `promote`.
    pub source: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct LastVerdictInfo {
    pub id: String,
    /// `pass`, `warn`, `fail` or `skip`.
    pub status: String,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flakiness_score: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct BenchmarkRow {
    pub benchmark: String,
    pub baselines: u64,
    pub verdicts: u64,
    pub latest: Option<LatestVersion>,
    /// `wall_ms` medians of the newest versions (at most 30), oldest first; null where a
    /// receipt has none.
    pub spark: Vec<Option<i64>>,
    pub last_verdict: Option<LastVerdictInfo>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ProjectBenchmarksResponse {
    pub project: String,
    pub benchmarks: Vec<BenchmarkRow>,
    pub total: u64,
}

#[utoipa::path(get, operation_id = "project_benchmarks", path = "/api/v1/projects/{project}/benchmarks", tag = "dashboard", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name")),
    responses((status = 200, description = "Every visible benchmark of the project, by name", body = ProjectBenchmarksResponse), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn project_benchmarks(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let project = ProjectName::parse(&path)?;
    principal.authorize(Scope::Read, project.as_str(), None)?;
    let rows = state
        .dashboard
        .read(ProjectBenchmarks {
            project: project.as_str().to_owned(),
            visible: principal.benchmarks.clone(),
        })
        .await??;
    let benchmarks: Vec<BenchmarkRow> = rows
        .into_iter()
        .map(|r| BenchmarkRow {
            latest: r.latest.map(|v| LatestVersion {
                version: v.version,
                created_at: to_rfc3339(v.created_at),
                wall_ms_median: v.wall_ms_median,
                source: v.source,
            }),
            spark: r.recent.iter().rev().map(|v| v.wall_ms_median).collect(),
            last_verdict: r.last_verdict.map(|v| LastVerdictInfo {
                id: v.id,
                status: v.status,
                created_at: to_rfc3339(v.created_at),
                flakiness_score: v.flakiness_score.filter(|f| f.is_finite()),
            }),
            benchmark: r.benchmark,
            baselines: r.baselines,
            verdicts: r.verdicts,
        })
        .collect();
    Ok(HttpResponse::Ok().json(ProjectBenchmarksResponse {
        project: project.into_string(),
        total: benchmarks.len() as u64,
        benchmarks,
    }))
}

// ---------------------------------------------------------------------------------------------
// A benchmark's history

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// Versions per page, 1–1000 (default 100); pages hold at most 200.
    limit: Option<i64>,
    offset: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct HistoryVersion<'a> {
    id: &'a str,
    version: &'a str,
    created_at: String,
    git_ref: Option<&'a str>,
    git_sha: Option<&'a str>,
    #[schema(value_type = Vec<String>)]
    tags: &'a RawValue,
    /// `upload` or `promote`.
    source: &'a str,
    /// For promoted versions, the version they were copied from.
    promoted_from: Option<&'a str>,
    /// A run a final gate failed: never served as latest, not promotable until triaged.
    quarantined: bool,
    content_hash: &'a str,
    /// The receipt as uploaded.
    #[schema(value_type = Object)]
    receipt: &'a RawValue,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct HistoryResponse<'a> {
    project: &'a str,
    benchmark: &'a str,
    versions: Vec<HistoryVersion<'a>>,
    pagination: Pagination,
}

#[utoipa::path(get, operation_id = "benchmark_history", path = "/api/v1/projects/{project}/benchmarks/{benchmark}/history", tag = "dashboard", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name"), ("benchmark" = String, Path, description = "Benchmark name (may contain `/`)"), HistoryQuery),
    responses((status = 200, description = "Live versions, newest first, with receipts, source and promotion origin", body = HistoryResponse), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn history(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let (project, benchmark) = path.into_inner();
    let project = ProjectName::parse(&project)?;
    let benchmark = BenchmarkName::parse(&benchmark)?;
    principal.authorize(Scope::Read, project.as_str(), Some(benchmark.as_str()))?;
    // Pages carry receipts: like receipt lists, they hold at most 200 rows (the page says so in
    // `pagination.limit`).
    let query = query.parse()?;
    let limit = parse_limit(query.limit, 100, 1000)?.min(200);
    let offset = parse_offset(query.offset)?;
    let (rows, total, held) = state
        .dashboard
        .read(History {
            project: project.as_str().to_owned(),
            benchmark: benchmark.as_str().to_owned(),
            limit,
            offset,
        })
        .await??;
    let versions = rows
        .iter()
        .map(|r| HistoryVersion {
            id: &r.id,
            version: &r.version,
            created_at: to_rfc3339(r.created_at),
            git_ref: r.git_ref.as_deref(),
            git_sha: r.git_sha.as_deref(),
            tags: raw(&r.tags),
            source: &r.source,
            promoted_from: r.promoted_from.as_deref(),
            quarantined: held.contains(&r.id),
            content_hash: &r.content_hash,
            receipt: raw(&r.receipt),
        })
        .collect::<Vec<_>>();
    let body = HistoryResponse {
        project: project.as_str(),
        benchmark: benchmark.as_str(),
        pagination: Pagination::new(total, offset, limit, versions.len()),
        versions,
    };
    Ok(HttpResponse::Ok().json(body))
}

// ---------------------------------------------------------------------------------------------
// The single-page app

#[derive(rust_embed::Embed)]
#[folder = "static/"]
struct Embedded;

/// Headers on every dashboard response: the page may load only its own scripts, styles and
/// data, and may not be framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, CSP))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
}

/// An embedded file, with a strong ETag (its SHA-256) and revalidation on every load, so a new
/// binary's assets are picked up at once.
fn embedded(req: &HttpRequest, path: &str) -> HttpResponse {
    let Some(file) = Embedded::get(path) else {
        return ApiError::not_found(format!("No asset {path}"))
            .to_response(&crate::request_id::current_request_id());
    };
    let etag = format!("\"{}\"", hex::encode(file.metadata.sha256_hash()));
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut res = if matches {
        HttpResponse::NotModified().finish()
    } else {
        HttpResponse::Ok()
            .content_type(with_charset(file.metadata.mimetype()))
            .body(file.data.into_owned())
    };
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

async fn index(req: HttpRequest, dir: web::Data<StaticDir>) -> HttpResponse {
    if let Some(d) = &dir.0 {
        if let Ok(f) = actix_files::NamedFile::open(d.join("index.html")) {
            return f.use_etag(true).into_response(&req);
        }
    }
    embedded(&req, "index.html")
}

async fn asset(req: HttpRequest) -> HttpResponse {
    if !matches!(
        *req.method(),
        actix_web::http::Method::GET | actix_web::http::Method::HEAD
    ) {
        let mut res =
            ApiError::method_not_allowed().to_response(&crate::request_id::current_request_id());
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return res;
    }
    let path = req.path().trim_start_matches("/assets/");
    // Embedded names are plain relative paths; anything else cannot name one.
    if path
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return ApiError::not_found("No such asset")
            .to_response(&crate::request_id::current_request_id());
    }
    embedded(&req, &format!("assets/{path}"))
}

/// `--static-dir`, if any.
#[derive(Clone)]
pub(crate) struct StaticDir(pub Option<PathBuf>);

/// `/`, `/index.html` and `/assets/*`.
pub(crate) fn configure(cfg: &mut web::ServiceConfig, dir: Option<PathBuf>) {
    cfg.app_data(web::Data::new(StaticDir(dir.clone())));
    for path in ["/", "/index.html"] {
        cfg.service(
            super::resource(path, path, "get")
                .wrap(security_headers())
                .wrap(Compress::default())
                .route(web::get().to(index)),
        );
    }
    let assets = web::scope("/assets")
        .wrap(security_headers())
        .wrap(Compress::default());
    match dir {
        Some(d) => cfg.service(
            assets.service(
                actix_files::Files::new("", d.join("assets"))
                    .use_etag(true)
                    .default_handler(web::to(asset)),
            ),
        ),
        None => cfg.service(assets.default_service(web::to(asset))),
    };
}

/// Text types are UTF-8 (every file under `static/` is).
fn with_charset(mime: &str) -> String {
    if mime.starts_with("text/") || mime == "application/javascript" || mime == "image/svg+xml" {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    }
}
