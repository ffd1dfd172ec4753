//! Fleet routes (contract §6). Recording needs write on the event's project; alerts and impact
//! read across projects and need read on `*`.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Deserialize;

use super::json::{JsonBody, Query};
use super::query::{parse_limit, parse_time};
use crate::actors::fleet_analyzer::{Alerts, Impact, Record};
use crate::api::{DependencyEvent, FleetAlert};
use crate::api::{ImpactResponse, ListAlertsResponse, RecordedResponse};
use crate::auth::{Access, Gate, Principal, Scope};
use crate::db::fleet::EventRow;
use crate::domain::fleet::group_key;
use crate::domain::names::{BenchmarkName, ProjectName};
use crate::domain::requests::{self, DependencyChange};
use crate::domain::time::now_micros;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct Change {
    name: String,
    #[serde(default)]
    old_version: Option<String>,
    #[serde(default)]
    new_version: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct RecordBody {
    project: String,
    benchmark: String,
    dependency_changes: Vec<Change>,
    metric: String,
    delta_pct: f64,
}

/// The largest `delta_pct` magnitude accepted (percent).

#[utoipa::path(post, operation_id = "fleet_record", path = "/api/v1/fleet/dependency-event", tag = "fleet", security(("bearer" = []), ("token" = [])),
    request_body = RecordBody,
    responses((status = 201, description = "One event per change", body = crate::api::RecordedResponse), (status = 415, description = "Not JSON", body = crate::openapi::ErrorBody), (status = 422, description = "Wrong shape", body = crate::openapi::ErrorBody), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn record(
    principal: Principal,
    state: web::Data<AppState>,
    body: JsonBody<RecordBody>,
) -> Result<HttpResponse, ApiError> {
    // The project is in the body: the scope is checked before it is read, the rest after.
    principal.allow(Access::Somewhere {
        scope: Scope::Write,
    })?;
    let b = body.parse()?;
    let project = ProjectName::parse(&b.project)?;
    let benchmark = BenchmarkName::parse(&b.benchmark)?;
    principal.authorize(Scope::Write, project.as_str(), Some(benchmark.as_str()))?;
    let changes: Vec<DependencyChange<'_>> = b
        .dependency_changes
        .iter()
        .map(|c| DependencyChange {
            name: &c.name,
            old_version: c.old_version.as_deref(),
            new_version: c.new_version.as_deref(),
        })
        .collect();
    requests::check_dependency_event(&changes, &b.metric, b.delta_pct)?;
    let now = now_micros();
    let mut events = Vec::with_capacity(b.dependency_changes.len());
    for c in &b.dependency_changes {
        events.push(EventRow {
            id: crate::domain::ids::row_id(),
            project: project.as_str().to_owned(),
            benchmark: benchmark.as_str().to_owned(),
            dep_name: c.name.clone(),
            old_version: c.old_version.clone(),
            new_version: c.new_version.clone(),
            metric: b.metric.clone(),
            delta_pct: b.delta_pct,
            group_key: group_key(&c.name, c.old_version.as_deref(), c.new_version.as_deref()),
            created_at: now,
        });
    }
    let location = format!(
        "/api/v1/fleet/dependency/{}/impact",
        utf8_percent_encode(&events[0].dep_name, NON_ALPHANUMERIC)
    );
    let n = state
        .fleet
        .write(
            project.as_str(),
            Record {
                events,
                actor: crate::actors::Initiator {
                    principal_id: principal.id.clone(),
                    request_id: crate::request_id::current_request_id(),
                },
            },
        )
        .await??;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, location))
        .json(RecordedResponse { recorded: n }))
}

fn require_global_read(p: &Principal) -> Result<(), ApiError> {
    p.allow(Access::AllProjects {
        scope: Scope::Read,
        what: "fleet data",
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AlertsQuery {
    min_affected: Option<i64>,
    since: Option<String>,
    limit: Option<i64>,
}

#[utoipa::path(get, operation_id = "fleet_alerts", path = "/api/v1/fleet/alerts", tag = "fleet", security(("bearer" = []), ("token" = [])),
    params(AlertsQuery),
    responses((status = 200, description = "Alerts, most confident first", body = crate::api::ListAlertsResponse), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn alerts(
    principal: Principal,
    state: web::Data<AppState>,
    query: Query<AlertsQuery>,
) -> Result<HttpResponse, ApiError> {
    require_global_read(&principal)?;
    let q = query.parse()?;
    let min_affected = match q.min_affected {
        None => 2,
        Some(n) if (0..=100_000).contains(&n) => n as usize,
        Some(_) => {
            return Err(ApiError::bad_request(
                "Invalid min_affected: must be between 0 and 100000",
            ))
        }
    };
    let limit = parse_limit(q.limit, 50, 1000)?;
    let alerts = state
        .fleet
        .read(Alerts {
            min_affected,
            since: parse_time("since", &q.since)?,
            limit: limit as usize,
            visible: principal.benchmarks.clone(),
        })
        .await??;
    let body: Vec<FleetAlert> = alerts.iter().map(FleetAlert::from_alert).collect();
    Ok(HttpResponse::Ok().json(ListAlertsResponse { alerts: body }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ImpactQuery {
    since: Option<String>,
    limit: Option<i64>,
}

#[utoipa::path(get, operation_id = "fleet_impact", path = "/api/v1/fleet/dependency/{dep}/impact", tag = "fleet", security(("bearer" = []), ("token" = [])),
    params(("dep" = String, Path, description = "Dependency name (may contain /)"), ImpactQuery),
    responses((status = 200, description = "Events oldest first", body = crate::api::ImpactResponse), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn impact(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: Query<ImpactQuery>,
) -> Result<HttpResponse, ApiError> {
    require_global_read(&principal)?;
    let dep = path.into_inner();
    requests::check_dependency_name(&dep)?;
    let q = query.parse()?;
    let limit = parse_limit(q.limit, 50, 1000)?;
    let impact = state
        .fleet
        .read(Impact {
            dependency: dep.clone(),
            since: parse_time("since", &q.since)?,
            limit,
            visible: principal.benchmarks.clone(),
        })
        .await??;
    let list: Vec<DependencyEvent> = impact
        .events
        .iter()
        .map(DependencyEvent::from_row)
        .collect();
    Ok(HttpResponse::Ok().json(ImpactResponse {
        dependency: dep,
        events: list,
        project_count: impact.project_count,
        avg_delta_pct: impact.avg_delta_pct,
    }))
}
