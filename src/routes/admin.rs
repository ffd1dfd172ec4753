//! Server administration across projects: retention's cleanup on demand.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::json::Query;
use crate::actors::retention::{cleanup, Purged, Stores};
use crate::actors::Initiator;
use crate::auth::{Access, Gate, Principal, Scope};
use crate::domain::names::NameError;
use crate::error::ApiError;
use crate::request_id::current_request_id;
use crate::state::AppState;

/// Longest retention accepted, in days (100 years).
pub(crate) const MAX_RETENTION_DAYS: u32 = 36_500;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CleanupQuery {
    /// Purge what is older than this many days (1-36500).
    older_than_days: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CleanupResponse {
    older_than_days: u32,
    deleted: Purged,
}

#[utoipa::path(delete, operation_id = "admin_cleanup", path = "/api/v1/admin/cleanup", tag = "admin", security(("bearer" = []), ("token" = [])),
    params(CleanupQuery),
    responses((status = 200, description = "What was purged: soft-deleted baseline versions, verdicts, gates and decisions older than the cut-off (never a live baseline, never a benchmark's newest version)", body = CleanupResponse), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn cleanup_now(
    principal: Principal,
    state: web::Data<AppState>,
    query: Query<CleanupQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.allow(Access::AllProjects {
        scope: Scope::Admin,
        what: "purge old data",
    })?;
    principal.allow(Access::Administer {
        project: None,
        what: "purge old data",
    })?;
    let query = query.parse()?;
    let days = match u32::try_from(query.older_than_days) {
        Ok(d) if (1..=MAX_RETENTION_DAYS).contains(&d) => d,
        _ => {
            return Err(NameError::new(
                "older_than_days",
                format!("1 to {MAX_RETENTION_DAYS} days"),
            )
            .into())
        }
    };
    let deleted = cleanup(
        stores(&state),
        days,
        Initiator {
            principal_id: principal.id.clone(),
            request_id: current_request_id(),
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(CleanupResponse {
        older_than_days: days,
        deleted,
    }))
}

/// The stores a cleanup purges.
pub(crate) fn stores(state: &AppState) -> Stores<'_> {
    Stores {
        baselines: &state.baselines,
        verdicts: &state.verdicts,
        gates: &state.gates,
        decisions: &state.decisions,
    }
}
