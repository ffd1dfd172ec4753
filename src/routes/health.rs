//! `/health`, `/api/v1/health` and `/api/v1/info`: open endpoints.

use actix_web::{web, HttpResponse};

use crate::actors::baseline_store::{Probe, PROBE_TIMEOUT};
use crate::api::{AuthInfo, HealthResponse, InfoResponse, StorageHealth};
use crate::state::AppState;

/// This server's version (the crate's).
pub(crate) const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// `/health`: the same probe as `/api/v1/health`.
#[utoipa::path(get, operation_id = "health_health_doc", path = "/health", tag = "health",
    responses((status = 200, description = "Storage answers", body = crate::api::HealthResponse),
              (status = 503, description = "Storage degraded", body = crate::api::HealthResponse)))]
pub(crate) async fn health_doc(state: web::Data<AppState>) -> HttpResponse {
    health(state).await
}

/// Runs a real query through the reader actors; 503 with the same body shape when it fails.
#[utoipa::path(get, operation_id = "health_health", path = "/api/v1/health", tag = "health",
    responses((status = 200, description = "Storage answers", body = crate::api::HealthResponse),
              (status = 503, description = "Storage degraded", body = crate::api::HealthResponse)))]
pub(crate) async fn health(state: web::Data<AppState>) -> HttpResponse {
    let backend = state.backend.as_str();
    let ok = match state
        .baselines
        .read_within(Probe, PROBE_TIMEOUT + std::time::Duration::from_secs(1))
        .await
    {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            log::warn!("health probe failed: {e}: {e:?}");
            false
        }
        Err(e) => {
            log::warn!("health probe failed: {e}");
            false
        }
    };
    let body = HealthResponse {
        status: if ok { "healthy" } else { "degraded" },
        version: SERVER_VERSION,
        storage: StorageHealth {
            backend,
            status: if ok { "healthy" } else { "unhealthy" },
        },
    };
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(body)
    }
}

#[utoipa::path(get, operation_id = "health_info", path = "/api/v1/info", tag = "health",
    responses((status = 200, description = "Server facts", body = crate::api::InfoResponse)))]
pub(crate) async fn info(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(InfoResponse {
        version: SERVER_VERSION,
        storage: state.backend.as_str(),
        local_mode: state.config.local,
        auth: AuthInfo {
            api_keys: true,
            jwt: state.jwt.is_some(),
            oidc_providers: state.oidc.iter().map(|p| p.issuer.as_str()).collect(),
        },
    })
}

/// Prometheus text exposition (open, like `/health`).
#[utoipa::path(get, operation_id = "health_metrics", path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let gauge = |pool: &crate::db::DbPool| {
        let st = pool.state();
        crate::metrics::PoolGauge {
            store: pool.owner(),
            name: pool.name(),
            idle: st.idle_connections,
            in_use: st.connections - st.idle_connections,
            max: pool.max_size(),
        }
    };
    let gauges: Vec<_> = state.pools.iter().map(gauge).collect();
    let body = crate::metrics::render(&gauges);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body)
}

/// This document.
#[utoipa::path(get, operation_id = "health_openapi", path = "/api/v1/openapi.json", tag = "health",
    responses((status = 200, description = "OpenAPI 3 document", body = Object)))]
pub(crate) async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(crate::openapi::DOCUMENT.as_str())
}
