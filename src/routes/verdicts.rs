//! Verdict routes (contract §5).

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::json::{JsonBody, Query};
use super::query::{parse_limit, parse_offset, parse_time};
use super::Arrival;
use crate::actors::verdict_log::{Get, ListVerdicts, NewVerdict, Submit};
use crate::actors::Initiator;
use crate::api::Counts;
use crate::api::ListVerdictsResponse;
use crate::api::{Pagination, VerdictRecord};
use crate::auth::{Gate, Principal, Scope};
use crate::db::verdicts::VerdictFilter;
use crate::domain::names::{BenchmarkName, ProjectName};
use crate::domain::requests;
use crate::error::ApiError;
use crate::request_id::current_request_id;
use crate::state::AppState;

pub(crate) use crate::domain::requests::VERDICT_STATUSES as STATUSES;

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct SubmitBody {
    benchmark: String,
    run_id: String,
    status: String,
    counts: Counts,
    reasons: Vec<String>,
    #[serde(default)]
    git_ref: Option<String>,
    #[serde(default)]
    git_sha: Option<String>,
    #[serde(default)]
    wall_ms_cv: Option<f64>,
}

#[utoipa::path(post, operation_id = "verdicts_submit", path = "/api/v1/projects/{project}/verdicts", tag = "verdicts", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name")), request_body = SubmitBody,
    responses((status = 201, description = "Recorded, with its flakiness score", body = crate::api::VerdictRecord), (status = 415, description = "Not JSON", body = crate::openapi::ErrorBody), (status = 422, description = "Wrong shape", body = crate::openapi::ErrorBody), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn submit(
    arrival: Arrival,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: JsonBody<SubmitBody>,
) -> Result<HttpResponse, ApiError> {
    let project = ProjectName::parse(&path)?;
    principal.authorize(Scope::Write, project.as_str(), None)?;
    let b = body.parse()?;
    let benchmark = BenchmarkName::parse(&b.benchmark)?;
    principal.authorize(Scope::Write, project.as_str(), Some(benchmark.as_str()))?;
    requests::check_verdict(&b.run_id, &b.status, &b.reasons, b.wall_ms_cv)?;
    requests::check_git(b.git_ref.as_deref(), b.git_sha.as_deref())?;
    let verdict = NewVerdict {
        project: project.as_str().to_owned(),
        benchmark: benchmark.into_string(),
        run_id: b.run_id,
        status: b.status,
        counts_json: serde_json::to_string(&b.counts).map_err(|_| ApiError::internal())?,
        reasons_json: serde_json::to_string(&b.reasons).map_err(|_| ApiError::internal())?,
        git_ref: b.git_ref,
        git_sha: b.git_sha,
        wall_ms_cv: b.wall_ms_cv,
    };
    let submit = Submit {
        verdict,
        actor: Initiator {
            principal_id: principal.id.clone(),
            request_id: current_request_id(),
        },
    };
    let row = state
        .writes
        .verdict(project.as_str(), submit, arrival.0)
        .await?;
    let status: &'static str = STATUSES
        .iter()
        .find(|s| **s == row.status)
        .copied()
        .unwrap_or("other");
    crate::metrics::METRICS
        .verdicts
        .with_label_values(&[status])
        .inc();
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/api/v1/projects/{}/verdicts/{}", project, row.id),
        ))
        .json(VerdictRecord::from_row(&row)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    benchmark: Option<String>,
    status: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[utoipa::path(get, operation_id = "verdicts_list", path = "/api/v1/projects/{project}/verdicts", tag = "verdicts", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name"), ListQuery),
    responses((status = 200, description = "One page, newest first", body = crate::api::ListVerdictsResponse), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
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
    if let Some(s) = &q.status {
        requests::check_verdict_status(s)?;
    }
    let limit = parse_limit(q.limit, 50, 1000)?;
    let offset = parse_offset(q.offset)?;
    let filter = VerdictFilter {
        project: project.into_string(),
        benchmark: q.benchmark,
        allowed_benchmarks: None,
        status: q.status,
        since: parse_time("since", &q.since)?,
        until: parse_time("until", &q.until)?,
        limit,
        offset,
    };
    let (rows, total) = state
        .verdicts
        .read(ListVerdicts {
            filter,
            visible: principal.benchmarks.clone(),
        })
        .await??;
    let verdicts: Vec<VerdictRecord> = rows.iter().map(VerdictRecord::from_row).collect();
    Ok(HttpResponse::Ok().json(ListVerdictsResponse {
        verdicts,
        pagination: Pagination::new(total, offset, limit, rows.len()),
    }))
}

#[utoipa::path(get, operation_id = "verdicts_get", path = "/api/v1/projects/{project}/verdicts/{id}", tag = "verdicts", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name"), ("id" = String, Path, description = "Verdict id")),
    responses((status = 200, description = "The verdict", body = crate::api::VerdictRecord), (status = 404, description = "Unknown", body = crate::openapi::ErrorBody), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn get(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (project, id) = path.into_inner();
    let project = ProjectName::parse(&project)?;
    principal.authorize(Scope::Read, project.as_str(), None)?;
    let not_found = || ApiError::not_found(format!("Verdict {id} not found"));
    if !crate::domain::ids::is_row_id(&id) {
        return Err(not_found());
    }
    let row = state
        .verdicts
        .read(Get {
            project: project.into_string(),
            id: id.clone(),
        })
        .await??
        .ok_or_else(not_found)?;
    // A caller restricted to some benchmarks does not see the others' verdicts.
    if principal
        .benchmarks
        .as_ref()
        .is_some_and(|f| !f.matches(&row.benchmark))
    {
        return Err(not_found());
    }
    Ok(HttpResponse::Ok().json(VerdictRecord::from_row(&row)))
}
