//! The decision ledger (perfgate 0.18.1 `perfgate decision upload|history|latest|debt|export|
//! prune` and `perfgate ledger doctor`).
//!
//! Decisions are project-wide evidence: a scenario weighs several benchmarks, and a tradeoff
//! receipt carries deltas and compare references of all of them. A key restricted to some
//! benchmarks therefore cannot use the ledger at all (403), the same way it administers nothing:
//! what it would read or write is wider than itself.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::json::{JsonBody, Query};
use super::query::{parse_limit, parse_offset};
use crate::actors::decision_ledger::{Get, Latest, ListDecisions, NewDecision, Prune, Record};
use crate::actors::Initiator;
use crate::api::{DecisionRecord, ListDecisionsResponse, Pagination, PruneDecisionsResponse};
use crate::auth::{Access, Gate, Principal, Scope};
use crate::db::decisions::DecisionFilter;
use crate::domain::decision::{self, DecisionError};
use crate::domain::names::{check_text, ProjectName};
use crate::domain::requests::{
    self, DECISIONS_LIMIT_DEFAULT, DECISIONS_LIMIT_MAX, DECISION_NAME_MAX_BYTES,
};
use crate::domain::time::{parse_rfc3339, to_rfc3339};
use crate::error::ApiError;
use crate::request_id::current_request_id;
use crate::state::AppState;

/// `scope` on the whole project: refused to benchmark-restricted keys (see the module doc).
fn authorize(principal: &Principal, scope: Scope, project: &ProjectName) -> Result<(), ApiError> {
    principal.allow(Access::WholeProject {
        scope,
        project: project.as_str(),
        what: "use the decision ledger",
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct UploadDecisionBody {
    /// A `perfgate.tradeoff.v1` receipt, stored byte for byte.
    #[schema(value_type = crate::domain::decision::TradeoffReceipt)]
    tradeoff: Box<RawValue>,
    /// The `perfgate.scenario.v1` receipt the tradeoff was evaluated on, stored byte for byte.
    #[serde(default)]
    #[schema(value_type = Option<crate::domain::decision::ScenarioReceipt>)]
    scenario: Option<Box<RawValue>>,
    /// The `perfgate.decision_index.v1` manifest of the evidence, stored byte for byte.
    #[serde(default)]
    #[schema(value_type = Option<crate::domain::decision::DecisionArtifactIndex>)]
    artifact_index: Option<Box<RawValue>>,
    #[serde(default)]
    git_ref: Option<String>,
    #[serde(default)]
    git_sha: Option<String>,
}

#[utoipa::path(post, operation_id = "decisions_upload", path = "/api/v1/projects/{project}/decisions", tag = "decisions", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name")), request_body = UploadDecisionBody,
    responses((status = 201, description = "Recorded", body = crate::api::DecisionRecord), (status = 413, description = "Body too large", body = crate::openapi::ErrorBody), (status = 415, description = "Not JSON", body = crate::openapi::ErrorBody), (status = 422, description = "Wrong shape or receipt", body = crate::openapi::ErrorBody), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden (benchmark-restricted keys cannot use the ledger)", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn upload(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: JsonBody<UploadDecisionBody>,
) -> Result<HttpResponse, ApiError> {
    let project = ProjectName::parse(&path)?;
    authorize(&principal, Scope::Write, &project)?;
    let b = body.parse()?;
    requests::check_git(b.git_ref.as_deref(), b.git_sha.as_deref())?;
    let summary = decision::validate(
        b.tradeoff.get(),
        b.scenario.as_deref().map(RawValue::get),
        b.artifact_index.as_deref().map(RawValue::get),
    )
    .map_err(|e| match e {
        DecisionError::Shape(e) => ApiError::unprocessable(e.to_string())
            .with_details(serde_json::json!({ "field": e.field })),
        DecisionError::Invalid(e) => e.into(),
    })?;
    let decision = NewDecision {
        project: project.as_str().to_owned(),
        scenario: summary.scenario,
        status: summary.status.as_str(),
        verdict: summary.verdict.as_str(),
        accepted_rules: summary.accepted_rules,
        review_required: summary.review_required,
        review_reasons: summary.review_reasons,
        git_ref: b.git_ref,
        git_sha: b.git_sha,
        tradeoff_receipt: b.tradeoff.get().to_owned(),
        scenario_receipt: b.scenario.map(|r| r.get().to_owned()),
        artifact_index: b.artifact_index.map(|r| r.get().to_owned()),
    };
    let row = state
        .decisions
        .write(
            project.as_str(),
            Record {
                decision,
                actor: Initiator {
                    principal_id: principal.id.clone(),
                    request_id: current_request_id(),
                },
            },
        )
        .await??;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/api/v1/projects/{project}/decisions/{}", row.id),
        ))
        .json(DecisionRecord::from_row(&row)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// The decision's scenario, exactly.
    scenario: Option<String>,
    /// The tradeoff's final decision status.
    status: Option<String>,
    /// The tradeoff's verdict status.
    verdict: Option<String>,
    review_required: Option<bool>,
    /// Whether at least one tradeoff rule was accepted.
    accepted: Option<bool>,
    /// An accepted rule's name, exactly.
    rule: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[utoipa::path(get, operation_id = "decisions_list", path = "/api/v1/projects/{project}/decisions", tag = "decisions", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name"), ListQuery),
    responses((status = 200, description = "One page, newest first", body = crate::api::ListDecisionsResponse), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden (benchmark-restricted keys cannot use the ledger)", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn list(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let project = ProjectName::parse(&path)?;
    authorize(&principal, Scope::Read, &project)?;
    let q = query.parse()?;
    if let Some(s) = &q.scenario {
        check_text("scenario", s, DECISION_NAME_MAX_BYTES)?;
    }
    if let Some(r) = &q.rule {
        check_text("rule", r, DECISION_NAME_MAX_BYTES)?;
    }
    let status = q
        .status
        .as_deref()
        .map(|s| decision::parse_status("status", s))
        .transpose()?;
    let verdict = q
        .verdict
        .as_deref()
        .map(|s| decision::parse_status("verdict", s))
        .transpose()?;
    let limit = parse_limit(q.limit, DECISIONS_LIMIT_DEFAULT, DECISIONS_LIMIT_MAX)?;
    let offset = parse_offset(q.offset)?;
    let filter = DecisionFilter {
        project: project.into_string(),
        scenario: q.scenario,
        status: status.map(|s| s.as_str().to_owned()),
        verdict: verdict.map(|s| s.as_str().to_owned()),
        review_required: q.review_required,
        accepted: q.accepted,
        rule: q.rule,
        limit,
        offset,
    };
    let (rows, total) = state.decisions.read(ListDecisions { filter }).await??;
    Ok(HttpResponse::Ok().json(ListDecisionsResponse {
        decisions: rows.iter().map(DecisionRecord::from_row).collect(),
        pagination: Pagination::new(total, offset, limit, rows.len()),
    }))
}

#[utoipa::path(get, operation_id = "decisions_latest", path = "/api/v1/projects/{project}/decisions/latest", tag = "decisions", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name")),
    responses((status = 200, description = "The newest decision", body = crate::api::DecisionRecord), (status = 404, description = "No decision yet", body = crate::openapi::ErrorBody), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden (benchmark-restricted keys cannot use the ledger)", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn latest(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let project = ProjectName::parse(&path)?;
    authorize(&principal, Scope::Read, &project)?;
    let row = state
        .decisions
        .read(Latest {
            project: project.as_str().to_owned(),
        })
        .await??
        .ok_or_else(|| {
            ApiError::not_found(format!("Decision record not found for project {project}"))
        })?;
    Ok(HttpResponse::Ok().json(DecisionRecord::from_row(&row)))
}

#[utoipa::path(get, operation_id = "decisions_get", path = "/api/v1/projects/{project}/decisions/{id}", tag = "decisions", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name"), ("id" = String, Path, description = "Decision id")),
    responses((status = 200, description = "The decision", body = crate::api::DecisionRecord), (status = 404, description = "Unknown", body = crate::openapi::ErrorBody), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden (benchmark-restricted keys cannot use the ledger)", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn get(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (project, id) = path.into_inner();
    let project = ProjectName::parse(&project)?;
    authorize(&principal, Scope::Read, &project)?;
    let not_found = || ApiError::not_found(format!("Decision {id} not found"));
    if !crate::domain::ids::is_row_id(&id) {
        return Err(not_found());
    }
    let row = state
        .decisions
        .read(Get {
            project: project.into_string(),
            id: id.clone(),
        })
        .await??
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(DecisionRecord::from_row(&row)))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct PruneBody {
    /// Decisions created strictly before this time are pruned (RFC 3339).
    older_than: String,
    /// Only report what would be pruned.
    #[serde(default)]
    dry_run: bool,
}

#[utoipa::path(post, operation_id = "decisions_prune", path = "/api/v1/projects/{project}/decisions/prune", tag = "decisions", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name")), request_body = PruneBody,
    responses((status = 200, description = "Matched (and, unless a dry run, deleted) decisions", body = crate::api::PruneDecisionsResponse), (status = 415, description = "Not JSON", body = crate::openapi::ErrorBody), (status = 422, description = "Wrong shape", body = crate::openapi::ErrorBody), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden (benchmark-restricted keys cannot use the ledger)", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn prune(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: JsonBody<PruneBody>,
) -> Result<HttpResponse, ApiError> {
    let project = ProjectName::parse(&path)?;
    authorize(&principal, Scope::Delete, &project)?;
    let b = body.parse()?;
    let cutoff = parse_rfc3339(&b.older_than).ok_or_else(|| {
        ApiError::bad_request("Invalid older_than: expected an RFC 3339 timestamp")
            .with_details(serde_json::json!({ "field": "older_than" }))
    })?;
    let op = Prune {
        project: project.as_str().to_owned(),
        cutoff,
        dry_run: b.dry_run,
        actor: Initiator {
            principal_id: principal.id.clone(),
            request_id: current_request_id(),
        },
    };
    let pruned = if b.dry_run {
        state.decisions.read(op).await??
    } else {
        state.decisions.write(project.as_str(), op).await??
    };
    Ok(HttpResponse::Ok().json(PruneDecisionsResponse {
        project: project.into_string(),
        older_than: to_rfc3339(cutoff),
        dry_run: b.dry_run,
        matched: pruned.decision_ids.len() as u64,
        deleted: pruned.deleted as u64,
        decision_ids: pruned.decision_ids,
    }))
}
