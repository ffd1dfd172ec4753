//! The audit log (contract §8). Admin scope; project admins see their project only. A real
//! credential even in local mode ([`Credentialed`]).

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::json::Query;
use super::query::{parse_limit, parse_offset, parse_time};
use crate::actors::key_store::ListAudit;
use crate::api::ListAuditResponse;
use crate::api::{AuditEvent, Pagination};
use crate::auth::extract::Credentialed;
use crate::auth::{Access, Gate};
use crate::db::audit::{AuditFilter, ResourceTypes};
use crate::domain::names::{check_text, ProjectName};
use crate::error::ApiError;
use crate::state::AppState;

pub(crate) const ACTIONS: &[&str] = &["create", "update", "delete", "promote"];
/// The resource types of the contract, which the published client can read: a list without
/// `resource_type` holds these only.
pub(crate) const CONTRACT_RESOURCES: &[&str] = &["baseline", "key", "verdict", "decision"];
/// Every resource type; `resource_type=all` lists them all.
pub(crate) const RESOURCES: &[&str] = &[
    "baseline",
    "key",
    "verdict",
    "decision",
    "gate",
    "gate_settings",
    "alert",
    "dependency_event",
    "retention",
];

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    project: Option<String>,
    action: Option<String>,
    resource_type: Option<String>,
    actor: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[utoipa::path(get, operation_id = "audit_list_audit", path = "/api/v1/audit", tag = "audit", security(("bearer" = []), ("token" = [])),
    params(AuditQuery),
    responses((status = 200, description = "Events newest first", body = crate::api::ListAuditResponse), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn list_audit(
    Credentialed(principal): Credentialed,
    state: web::Data<AppState>,
    query: Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    // The admin scope first: the project it is checked against is in the query.
    principal.allow(Access::Administer {
        project: None,
        what: "read the audit log",
    })?;
    let mut q = query.parse()?;
    q.project = q.project.filter(|p| !p.is_empty());
    // Audit metadata names benchmarks: a key bound to some of them cannot read it.
    principal.allow(Access::Administer {
        project: q.project.as_deref(),
        what: "read the audit log",
    })?;
    let project = q.project.or_else(|| principal.project.clone());
    // A project name, or `*` (events of global keys and of the fleet).
    if let Some(p) = project.as_deref().filter(|p| *p != "*") {
        ProjectName::parse(p)?;
    }
    if let Some(a) = &q.action {
        if !ACTIONS.contains(&a.as_str()) {
            return Err(ApiError::bad_request(format!(
                "Invalid action: expected one of {}",
                ACTIONS.join(", ")
            )));
        }
    }
    // The published client fails on a resource type it does not know: without a filter, the
    // contract's types; the server's own (gates, alerts, ...) when named, or with `all`.
    let resource_types = match q.resource_type.as_deref() {
        None => ResourceTypes::Except(
            RESOURCES
                .iter()
                .filter(|r| !CONTRACT_RESOURCES.contains(r))
                .map(|r| (*r).to_owned())
                .collect(),
        ),
        Some("all") => ResourceTypes::Every,
        Some(r) if RESOURCES.contains(&r) => ResourceTypes::Only(r.to_owned()),
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "Invalid resource_type: expected all or one of {}",
                RESOURCES.join(", ")
            )))
        }
    };
    if let Some(a) = &q.actor {
        check_text("actor", a, 256)?;
    }
    let limit = parse_limit(q.limit, 50, 1000)?;
    let offset = parse_offset(q.offset)?;
    let filter = AuditFilter {
        project,
        action: q.action,
        resource_types,
        actor: q.actor,
        since: parse_time("since", &q.since)?,
        until: parse_time("until", &q.until)?,
        limit,
        offset,
    };
    let (rows, total) = state.keys.read(ListAudit { filter }).await??;
    let events: Vec<AuditEvent> = rows.iter().map(AuditEvent::from_row).collect();
    Ok(HttpResponse::Ok().json(ListAuditResponse {
        events,
        pagination: Pagination::new(total, offset, limit, rows.len()),
    }))
}
