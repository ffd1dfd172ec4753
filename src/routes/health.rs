//! `/health`, `/api/v1/health` and `/api/v1/info`: open endpoints.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::actors::baseline_store::{Probe, PROBE_TIMEOUT};
use crate::server::AppState;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs a real query through the reader actors; 503 with the same body shape when it fails.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
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
    let body = json!({
        "status": if ok { "healthy" } else { "degraded" },
        "version": VERSION,
        "storage": {"backend": backend, "status": if ok { "healthy" } else { "unhealthy" }},
    });
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(body)
    }
}

pub async fn info(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "version": VERSION,
        "storage": state.backend.as_str(),
        "auth": {
            "api_keys": true,
            "jwt": state.jwt.is_some(),
            "oidc_providers": state.oidc.iter().map(|p| p.issuer.as_str()).collect::<Vec<_>>(),
        },
    }))
}

/// Prometheus text exposition (open, like `/health`).
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let body = crate::metrics::render(&[
        (state.read_pool.name(), &state.read_pool),
        (state.write_pool.name(), &state.write_pool),
    ]);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body)
}
