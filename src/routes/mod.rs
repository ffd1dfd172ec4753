//! HTTP handlers: extract, validate with `domain/`, authorize, send one message, map the reply.

pub mod audit;
pub mod baselines;
pub mod fleet;
pub mod health;
pub mod json;
pub mod keys;
pub mod verdicts;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::ApiError;

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::method_not_allowed())
}

pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found(format!(
        "No route for {} {}",
        req.method(),
        req.path()
    )))
}

/// A resource whose other methods answer 405 with the JSON error.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    // `{benchmark:.+}` captures names containing `/` (the CLI does not percent-encode them).
    const BENCH: &str = "/projects/{project}/baselines/{benchmark:.+}";
    cfg.service(resource("/health").route(web::get().to(health::health)))
        .service(resource("/metrics").route(web::get().to(health::metrics)))
        .service(
            web::scope("/api/v1")
                .service(resource("/health").route(web::get().to(health::health)))
                .service(resource("/info").route(web::get().to(health::info)))
                .service(
                    resource("/projects/{project}/baselines")
                        .route(web::post().to(baselines::upload))
                        .route(web::get().to(baselines::list)),
                )
                .service(
                    resource(&format!("{BENCH}/latest")).route(web::get().to(baselines::latest)),
                )
                .service(
                    resource(&format!("{BENCH}/versions/{{version}}"))
                        .route(web::get().to(baselines::get_version))
                        .route(web::delete().to(baselines::delete_version)),
                )
                .service(
                    resource(&format!("{BENCH}/promote")).route(web::post().to(baselines::promote)),
                )
                .service(resource(&format!("{BENCH}/trend")).route(web::get().to(baselines::trend)))
                .service(
                    resource("/projects/{project}/verdicts")
                        .route(web::post().to(verdicts::submit))
                        .route(web::get().to(verdicts::list)),
                )
                .service(
                    resource("/projects/{project}/verdicts/{id}")
                        .route(web::get().to(verdicts::get)),
                )
                .service(resource("/fleet/dependency-event").route(web::post().to(fleet::record)))
                .service(resource("/fleet/alerts").route(web::get().to(fleet::alerts)))
                .service(
                    resource("/fleet/dependency/{dep:.+}/impact")
                        .route(web::get().to(fleet::impact)),
                )
                .service(
                    resource("/keys")
                        .route(web::post().to(keys::create_key))
                        .route(web::get().to(keys::list_keys)),
                )
                .service(resource("/keys/{id}").route(web::delete().to(keys::revoke_key)))
                .service(resource("/audit").route(web::get().to(audit::list_audit)))
                .default_service(web::to(not_found)),
        );
}
