//! The statistical gate: open a gate on a CI run's receipts, add confirmation runs, read gates,
//! and a project's gate settings.

use std::collections::BTreeSet;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::json::{JsonBody, Query};
use super::query::{parse_limit, parse_offset};
use crate::actors::gate::{
    AddAttempt, GateRunInput, GetGate, GetSettings, ListGates, OpenGate, PutSettings,
};
use crate::actors::Initiator;
use crate::api::{GateResponse, ListGatesResponse, Pagination};
use crate::auth::{Access, Gate, Principal, Scope};
use crate::db::gates::GateFilter;
use crate::domain::gate_settings::{check_metric, GateSettings};
use crate::domain::names::{BenchmarkName, NameError, ProjectName};
use crate::domain::requests::{self, check_git};
use crate::domain::{receipt, requests::check_gate_runner};
use crate::error::ApiError;
use crate::request_id::current_request_id;
use crate::state::AppState;

/// Gate statuses (list filter).
pub(crate) const GATE_STATUSES: &[&str] = &["pass", "warn", "fail", "inconclusive"];

/// One benchmark's run in a gate request.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct GateRunBody {
    benchmark: String,
    /// A `perfgate.run.v1` receipt whose `bench.name` is `benchmark`.
    #[schema(value_type = crate::domain::receipt::RunReceipt)]
    receipt: Box<RawValue>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct OpenGateBody {
    /// One run per benchmark (1-1000).
    runs: Vec<GateRunBody>,
    /// Metrics to judge (default: the project's settings, `["wall_ms"]`).
    #[serde(default)]
    metrics: Option<Vec<String>>,
    #[serde(default)]
    git_ref: Option<String>,
    #[serde(default)]
    git_sha: Option<String>,
    /// A pull request's merge base: history ends at the runs recorded for that commit.
    #[serde(default)]
    base_sha: Option<String>,
    /// Runner class label: history only from runs of the same label (and host class).
    #[serde(default)]
    runner: Option<String>,
    /// Once the gate is final and not `fail`, store its runs as baseline versions.
    #[serde(default)]
    record: Option<bool>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct AttemptBody {
    /// The confirmation run of the suite.
    runs: Vec<GateRunBody>,
}

fn initiator(p: &Principal) -> Initiator {
    Initiator {
        principal_id: p.id.clone(),
        request_id: current_request_id(),
    }
}

fn bad(e: NameError) -> ApiError {
    e.into()
}

/// Checks every run (names, receipts, duplicates) and the caller's right to write each one.
fn parse_runs(
    principal: &Principal,
    project: &ProjectName,
    runs: &[GateRunBody],
    runner_label: Option<&str>,
) -> Result<Vec<GateRunInput>, ApiError> {
    requests::check_gate_run_count(runs.len())?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(runs.len());
    for (i, r) in runs.iter().enumerate() {
        let benchmark = BenchmarkName::parse(&r.benchmark)?;
        principal.authorize(Scope::Write, project.as_str(), Some(benchmark.as_str()))?;
        if !seen.insert(benchmark.as_str().to_owned()) {
            return Err(bad(NameError::new(
                "runs",
                format!("benchmark '{benchmark}' appears more than once"),
            )));
        }
        // A receipt that does not fit is 422 naming the field, as on upload (contract §7).
        let summary = receipt::validate(r.receipt.get()).map_err(|e| {
            ApiError::unprocessable(format!("runs[{i}]: {e}"))
                .with_details(serde_json::json!({ "field": format!("runs[{i}].{}", e.field) }))
        })?;
        if summary.bench_name != benchmark.as_str() {
            return Err(ApiError::bad_request(format!(
                "runs[{i}]: the receipt's bench.name '{}' is not the benchmark '{benchmark}'",
                summary.bench_name
            ))
            .with_details(
                serde_json::json!({ "field": format!("runs[{i}].receipt.bench.name") }),
            ));
        }
        out.push(GateRunInput {
            benchmark: benchmark.into_string(),
            run_id: summary.run_id,
            runner: receipt::runner_class(&summary.host_class, runner_label),
            receipt: r.receipt.get().to_owned(),
            summaries: summary.runs,
        });
    }
    Ok(out)
}

/// Whether a caller restricted to some benchmarks may read the gate: only when it may read
/// every benchmark of it. A gate's status, suite verdicts, attempts and confirmation are decided
/// over all its benchmarks, so any part of a gate would tell of the others (a `warn` that only a
/// hidden benchmark explains). A gate it cannot read whole is not found for it, like a benchmark
/// it cannot read; posting an attempt, which re-decides every benchmark, needs write on each.
fn sees_all(principal: &Principal, g: &GateResponse) -> bool {
    match &principal.benchmarks {
        Some(f) => g.result.benchmarks.iter().all(|b| f.matches(&b.benchmark)),
        None => true,
    }
}

fn check_gate_id(id: &str) -> Result<(), ApiError> {
    if crate::domain::ids::is_row_id(id) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("Gate {id} not found")))
    }
}

#[utoipa::path(post, operation_id = "gates_open", path = "/api/v1/projects/{project}/gates", tag = "gates", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name")), request_body = OpenGateBody,
    responses((status = 201, description = "Decided (maybe asking for a confirmation run)", body = crate::api::GateResponse), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 413, description = "Body too large", body = crate::openapi::ErrorBody), (status = 415, description = "Not JSON", body = crate::openapi::ErrorBody), (status = 422, description = "Wrong shape", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn open(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: JsonBody<OpenGateBody>,
) -> Result<HttpResponse, ApiError> {
    let project = ProjectName::parse(&path)?;
    principal.authorize(Scope::Write, project.as_str(), None)?;
    let b = body.parse()?;
    check_git(b.git_ref.as_deref(), b.git_sha.as_deref())?;
    if let Some(s) = &b.base_sha {
        crate::domain::names::check_text("base_sha", s, requests::GIT_SHA_MAX_BYTES)?;
    }
    if let Some(r) = &b.runner {
        check_gate_runner(r)?;
    }
    if let Some(ms) = &b.metrics {
        if ms.is_empty() {
            return Err(bad(NameError::new("metrics", "at least one metric")));
        }
        let mut seen = BTreeSet::new();
        for m in ms {
            check_metric(m)?;
            if !seen.insert(m) {
                return Err(bad(NameError::new(
                    "metrics",
                    format!("'{m}' is listed twice"),
                )));
            }
        }
    }
    let runs = parse_runs(&principal, &project, &b.runs, b.runner.as_deref())?;
    let gate = state
        .gates
        .write(
            project.as_str(),
            OpenGate {
                project: project.as_str().to_owned(),
                runs,
                metrics: b.metrics,
                git_ref: b.git_ref,
                git_sha: b.git_sha,
                base_sha: b.base_sha,
                runner: b.runner,
                record: b.record.unwrap_or(false),
                actor: initiator(&principal),
            },
        )
        .await??;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/api/v1/projects/{project}/gates/{}", gate.id),
        ))
        .json(gate))
}

#[utoipa::path(post, operation_id = "gates_add_attempt", path = "/api/v1/projects/{project}/gates/{id}/attempts", tag = "gates", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name"), ("id" = String, Path, description = "Gate id")), request_body = AttemptBody,
    responses((status = 200, description = "Decided again on all attempts", body = crate::api::GateResponse), (status = 404, description = "No such gate", body = crate::openapi::ErrorBody), (status = 409, description = "Final, out of attempts, or past its deadline", body = crate::openapi::ErrorBody), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 413, description = "Body too large", body = crate::openapi::ErrorBody), (status = 415, description = "Not JSON", body = crate::openapi::ErrorBody), (status = 422, description = "Wrong shape", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn add_attempt(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: JsonBody<AttemptBody>,
) -> Result<HttpResponse, ApiError> {
    let (project, id) = path.into_inner();
    let project = ProjectName::parse(&project)?;
    principal.authorize(Scope::Write, project.as_str(), None)?;
    check_gate_id(&id)?;
    // The runner label is the gate's: read it first, so the attempt's runs join the same class.
    let gate = state
        .gates
        .read(GetGate {
            project: project.as_str().to_owned(),
            id: id.clone(),
        })
        .await??
        .filter(|g| sees_all(&principal, g))
        .ok_or_else(|| ApiError::not_found(format!("Gate {id} not found")))?;
    // An attempt re-decides every benchmark of the gate (and may record or fail any of them):
    // the caller must be allowed to write each one, not only the runs it posts.
    for b in &gate.result.benchmarks {
        principal.authorize(Scope::Write, project.as_str(), Some(&b.benchmark))?;
    }
    let attempt: AttemptBody = body.parse()?;
    let runs = parse_runs(&principal, &project, &attempt.runs, gate.runner.as_deref())?;
    // A confirmation run repeats benchmarks of the gate; one it never held has nothing to
    // confirm.
    for (i, r) in runs.iter().enumerate() {
        if !gate
            .result
            .benchmarks
            .iter()
            .any(|b| b.benchmark == r.benchmark)
        {
            return Err(ApiError::bad_request(format!(
                "runs[{i}]: benchmark '{}' is not in gate {id}",
                r.benchmark
            ))
            .with_details(serde_json::json!({ "field": format!("runs[{i}].benchmark") })));
        }
    }
    let gate = state
        .gates
        .write(
            project.as_str(),
            AddAttempt {
                project: project.as_str().to_owned(),
                gate_id: id,
                runs,
                actor: initiator(&principal),
            },
        )
        .await??;
    Ok(HttpResponse::Ok().json(gate))
}

#[utoipa::path(get, operation_id = "gates_get", path = "/api/v1/projects/{project}/gates/{id}", tag = "gates", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name"), ("id" = String, Path, description = "Gate id")),
    responses((status = 200, description = "The gate", body = crate::api::GateResponse), (status = 404, description = "No such gate", body = crate::openapi::ErrorBody), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn get(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (project, id) = path.into_inner();
    let project = ProjectName::parse(&project)?;
    principal.authorize(Scope::Read, project.as_str(), None)?;
    check_gate_id(&id)?;
    let gate = state
        .gates
        .read(GetGate {
            project: project.into_string(),
            id: id.clone(),
        })
        .await??
        .filter(|g| sees_all(&principal, g))
        .ok_or_else(|| ApiError::not_found(format!("Gate {id} not found")))?;
    Ok(HttpResponse::Ok().json(gate))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListGatesQuery {
    status: Option<String>,
    git_ref: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[utoipa::path(get, operation_id = "gates_list", path = "/api/v1/projects/{project}/gates", tag = "gates", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name"), ListGatesQuery),
    responses((status = 200, description = "One page, newest first", body = crate::api::ListGatesResponse), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn list(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: Query<ListGatesQuery>,
) -> Result<HttpResponse, ApiError> {
    let project = ProjectName::parse(&path)?;
    principal.authorize(Scope::Read, project.as_str(), None)?;
    let q = query.parse()?;
    if let Some(s) = &q.status {
        if !GATE_STATUSES.contains(&s.as_str()) {
            return Err(bad(NameError::new(
                "status",
                "expected pass, warn, fail or inconclusive",
            )));
        }
    }
    check_git(q.git_ref.as_deref(), None)?;
    // Gates carry every benchmark's verdict: a page holds at most 200 (`pagination.limit`
    // says so).
    let limit = parse_limit(q.limit, 50, 1000)?.min(200);
    let offset = parse_offset(q.offset)?;
    let (gates, total) = state
        .gates
        .read(ListGates {
            filter: GateFilter {
                project: project.into_string(),
                status: q.status,
                git_ref: q.git_ref,
                hidden_benchmarks: Vec::new(),
                limit,
                offset,
            },
            visible: principal.benchmarks.clone(),
        })
        .await??;
    let n = gates.len();
    Ok(HttpResponse::Ok().json(ListGatesResponse {
        gates,
        pagination: Pagination::new(total, offset, limit, n),
    }))
}

#[utoipa::path(get, operation_id = "gates_get_settings", path = "/api/v1/projects/{project}/gate-settings", tag = "gates", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name")),
    responses((status = 200, description = "The project's gate settings (defaults when never set)", body = crate::domain::gate_settings::GateSettings), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn get_settings(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let project = ProjectName::parse(&path)?;
    principal.authorize(Scope::Read, project.as_str(), None)?;
    let s = state
        .gates
        .read(GetSettings {
            project: project.into_string(),
        })
        .await??;
    // Overrides name benchmarks: a restricted caller sees those it may read.
    let mut s = s;
    if let Some(f) = &principal.benchmarks {
        s.overrides.retain(|b, _| f.matches(b));
    }
    Ok(HttpResponse::Ok().json(s))
}

#[utoipa::path(put, operation_id = "gates_put_settings", path = "/api/v1/projects/{project}/gate-settings", tag = "gates", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name")), request_body = crate::domain::gate_settings::GateSettings,
    responses((status = 200, description = "Stored", body = crate::domain::gate_settings::GateSettings), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 415, description = "Not JSON", body = crate::openapi::ErrorBody), (status = 422, description = "Wrong shape", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn put_settings(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: JsonBody<GateSettings>,
) -> Result<HttpResponse, ApiError> {
    let project = ProjectName::parse(&path)?;
    principal.allow(Access::Administer {
        project: Some(project.as_str()),
        what: "change gate settings",
    })?;
    let settings = body.parse()?;
    settings.validate()?;
    let s = state
        .gates
        .write(
            project.as_str(),
            PutSettings {
                project: project.as_str().to_owned(),
                settings,
                actor: initiator(&principal),
            },
        )
        .await??;
    Ok(HttpResponse::Ok().json(s))
}
