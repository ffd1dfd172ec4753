//! Alerts and their triage: every benchmark a final gate failed opens one; people move it
//! through its states (with a reason where it matters), and `expected` carries a waiver.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::json::{JsonBody, Query};
use super::query::{parse_limit, parse_offset, parse_time};
use crate::actors::alerts::{
    AlertStats, GetAlert, GetAlertDetail, ListAlerts, ListWaivers, TransitionAlert,
};
use crate::actors::Initiator;
use crate::api::{
    AlertDetail, AlertRecord, AlertStatsResponse, BenchmarkAlertStats, ListAlertRecordsResponse,
    ListWaiversResponse, Pagination, WaiverEntry,
};
use crate::auth::{Gate, Principal, Scope};
use crate::db::alerts::{AlertFilter, WaiverFilter};
use crate::domain::names::{BenchmarkName, NameError, ProjectName};
use crate::domain::time::now_micros;
use crate::domain::triage::{scope_for, AlertStatus, Transition, TransitionRequest};
use crate::error::ApiError;
use crate::request_id::current_request_id;
use crate::state::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AlertsQuery {
    status: Option<String>,
    benchmark: Option<String>,
    gate_id: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

fn check_id(what: &str, id: &str) -> Result<(), ApiError> {
    if crate::domain::ids::is_row_id(id) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("{what} {id} not found")))
    }
}

#[utoipa::path(get, operation_id = "alerts_list", path = "/api/v1/projects/{project}/alerts", tag = "alerts", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name"), AlertsQuery),
    responses((status = 200, description = "One page, newest first", body = crate::api::ListAlertRecordsResponse), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn list(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: Query<AlertsQuery>,
) -> Result<HttpResponse, ApiError> {
    let project = ProjectName::parse(&path)?;
    principal.authorize(Scope::Read, project.as_str(), None)?;
    let q = query.parse()?;
    if let Some(s) = &q.status {
        if AlertStatus::parse(s).is_none() {
            return Err(NameError::new(
                "status",
                format!("expected one of {}", AlertStatus::NAMES.join(", ")),
            )
            .into());
        }
    }
    if let Some(b) = &q.benchmark {
        BenchmarkName::parse(b)?;
    }
    let gate_id = q.gate_id.filter(|g| !g.is_empty());
    if let Some(g) = &gate_id {
        if !crate::domain::ids::is_row_id(g) {
            return Err(NameError::new("gate_id", "32 hexadecimal digits").into());
        }
    }
    let limit = parse_limit(q.limit, 50, 1000)?.min(200);
    let offset = parse_offset(q.offset)?;
    let (rows, total) = state
        .gates
        .read(ListAlerts {
            filter: AlertFilter {
                project: project.into_string(),
                status: q.status,
                benchmark: q.benchmark,
                gate_id,
                allowed_benchmarks: None,
                limit,
                offset,
            },
            visible: principal.benchmarks.clone(),
        })
        .await??;
    let n = rows.len();
    Ok(HttpResponse::Ok().json(ListAlertRecordsResponse {
        alerts: rows.into_iter().map(AlertRecord::from_row).collect(),
        pagination: Pagination::new(total, offset, limit, n),
    }))
}

/// An alert the caller may see (a benchmark-restricted caller sees only its benchmarks' alerts).
async fn visible_alert(
    principal: &Principal,
    state: &AppState,
    project: &ProjectName,
    id: &str,
) -> Result<crate::db::alerts::AlertRow, ApiError> {
    check_id("Alert", id)?;
    let not_found = || ApiError::not_found(format!("Alert {id} not found"));
    let a = state
        .gates
        .read(GetAlert {
            project: project.as_str().to_owned(),
            id: id.to_owned(),
        })
        .await??
        .ok_or_else(not_found)?;
    if !may_see(principal, &a.benchmark) {
        return Err(not_found());
    }
    Ok(a)
}

/// A benchmark-restricted caller sees only its benchmarks' alerts (others are "not found").
fn may_see(principal: &Principal, benchmark: &str) -> bool {
    principal
        .benchmarks
        .as_ref()
        .is_none_or(|f| f.matches(benchmark))
}

#[utoipa::path(get, operation_id = "alerts_get", path = "/api/v1/projects/{project}/alerts/{id}", tag = "alerts", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name"), ("id" = String, Path, description = "Alert id")),
    responses((status = 200, description = "The alert with its audit trail (oldest first) and the versions it holds in quarantine", body = crate::api::AlertDetail), (status = 404, description = "No such alert", body = crate::openapi::ErrorBody), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn get(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (project, id) = path.into_inner();
    let project = ProjectName::parse(&project)?;
    principal.authorize(Scope::Read, project.as_str(), None)?;
    check_id("Alert", &id)?;
    let not_found = || ApiError::not_found(format!("Alert {id} not found"));
    let d = state
        .gates
        .read(GetAlertDetail {
            project: project.into_string(),
            id: id.clone(),
        })
        .await??
        .ok_or_else(not_found)?;
    if !may_see(&principal, &d.alert.benchmark) {
        return Err(not_found());
    }
    Ok(HttpResponse::Ok().json(AlertDetail::new(d.alert, d.history, d.quarantined)))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct TransitionBody {
    /// `untriaged` (reopen), `acknowledged`, `invalid`, `expected`, `duplicate` or `fixed`
    to: String,
    /// Required for `invalid` and `expected`.
    #[serde(default)]
    reason: Option<String>,
    /// An issue link (for `acknowledged`, or any state).
    #[serde(default)]
    link: Option<String>,
    /// Required for `duplicate`.
    #[serde(default)]
    duplicate_of: Option<String>,
    /// `expected`: who owns the accepted regression (default: the caller).
    #[serde(default)]
    owner: Option<String>,
    /// `expected`: the slowdown (percent) the gate accepts (default: the alert's change).
    #[serde(default)]
    max_change_pct: Option<f64>,
    /// `expected`: when the waiver ends (default: 30 days; at most 366).
    #[serde(default)]
    expires_at: Option<String>,
}

#[utoipa::path(post, operation_id = "alerts_transition", path = "/api/v1/projects/{project}/alerts/{id}/transitions", tag = "alerts", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name"), ("id" = String, Path, description = "Alert id")), request_body = TransitionBody,
    responses((status = 200, description = "The alert in its new state", body = crate::api::AlertRecord), (status = 409, description = "Not allowed from the current state (the allowed ones are named)", body = crate::openapi::ErrorBody), (status = 404, description = "No such alert", body = crate::openapi::ErrorBody), (status = 400, description = "Invalid input (unknown state, missing reason, waiver in the past)", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Role too low for this transition", body = crate::openapi::ErrorBody), (status = 415, description = "Not JSON", body = crate::openapi::ErrorBody), (status = 422, description = "Wrong shape", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn transition(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: JsonBody<TransitionBody>,
) -> Result<HttpResponse, ApiError> {
    let (project, id) = path.into_inner();
    let project = ProjectName::parse(&project)?;
    // Every transition needs at least write (`triage::scope_for`): checked before the body is
    // read, the transition's own scope once the alert is.
    principal.authorize(Scope::Write, project.as_str(), None)?;
    let b = body.parse()?;
    let a = visible_alert(&principal, &state, &project, &id).await?;
    let from = AlertStatus::parse(&a.status).ok_or_else(ApiError::internal)?;
    let expires_at = parse_time("expires_at", &b.expires_at)?;
    let step = Transition::validate(
        &TransitionRequest {
            to: &b.to,
            reason: b.reason.as_deref(),
            link: b.link.as_deref(),
            duplicate_of: b.duplicate_of.as_deref(),
            owner: b.owner.as_deref(),
            max_change_pct: b.max_change_pct,
            expires_at,
        },
        a.change_pct,
        now_micros(),
        &principal.id,
    )?;
    principal.authorize(
        scope_for(from, step.to),
        project.as_str(),
        Some(a.benchmark.as_str()),
    )?;
    let a = state
        .gates
        .write(
            project.as_str(),
            TransitionAlert {
                project: project.as_str().to_owned(),
                id,
                from,
                step,
                actor: Initiator {
                    principal_id: principal.id.clone(),
                    request_id: current_request_id(),
                },
                visible: principal.benchmarks.clone(),
            },
        )
        .await??;
    Ok(HttpResponse::Ok().json(AlertRecord::from_row(a)))
}

#[utoipa::path(get, operation_id = "alerts_stats", path = "/api/v1/projects/{project}/alert-stats", tag = "alerts", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name")),
    responses((status = 200, description = "Per benchmark: alerts by state, invalid rate, hint", body = crate::api::AlertStatsResponse), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn stats(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let project = ProjectName::parse(&path)?;
    principal.authorize(Scope::Read, project.as_str(), None)?;
    let rows = state
        .gates
        .read(AlertStats {
            project: project.into_string(),
            visible: principal.benchmarks.clone(),
        })
        .await??;
    let benchmarks = rows
        .into_iter()
        .map(|(benchmark, c)| BenchmarkAlertStats {
            counts: AlertStatus::ALL
                .iter()
                .map(|s| (s.as_str(), c.get(*s)))
                .collect(),
            invalid_rate: c.invalid_rate(),
            hint: c.hint(),
            benchmark,
        })
        .collect();
    Ok(HttpResponse::Ok().json(AlertStatsResponse { benchmarks }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WaiversQuery {
    /// Also list waivers that ran out and whose alert has not been triaged again since.
    include_expired: Option<bool>,
    benchmark: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[utoipa::path(get, operation_id = "waivers_list", path = "/api/v1/projects/{project}/waivers", tag = "alerts", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name"), WaiversQuery),
    responses((status = 200, description = "One page of waivers, soonest expiry first", body = crate::api::ListWaiversResponse), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn waivers(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: Query<WaiversQuery>,
) -> Result<HttpResponse, ApiError> {
    let project = ProjectName::parse(&path)?;
    principal.authorize(Scope::Read, project.as_str(), None)?;
    let q = query.parse()?;
    if let Some(b) = &q.benchmark {
        BenchmarkName::parse(b)?;
    }
    let limit = parse_limit(q.limit, 50, 200)?;
    let offset = parse_offset(q.offset)?;
    let now = now_micros();
    let (rows, total) = state
        .gates
        .read(ListWaivers {
            filter: WaiverFilter {
                project: project.into_string(),
                benchmark: q.benchmark,
                include_expired: q.include_expired.unwrap_or(false),
                now,
                allowed_benchmarks: None,
                limit,
                offset,
            },
            visible: principal.benchmarks.clone(),
        })
        .await??;
    let n = rows.len();
    Ok(HttpResponse::Ok().json(ListWaiversResponse {
        waivers: rows
            .into_iter()
            .filter_map(|r| WaiverEntry::from_row(r, now))
            .collect(),
        pagination: Pagination::new(total, offset, limit, n),
    }))
}
