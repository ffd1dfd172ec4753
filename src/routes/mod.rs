//! HTTP handlers: extract, validate with `domain/`, authorize, send one message, map the reply.

pub(crate) mod admin;
pub(crate) mod alerts;
pub(crate) mod audit;
pub(crate) mod baselines;
pub(crate) mod changepoints;
pub(crate) mod dashboard;
pub(crate) mod decisions;
pub(crate) mod fleet;
pub(crate) mod gates;
pub(crate) mod health;
pub mod json;
pub(crate) mod keys;
mod query;
pub(crate) mod verdicts;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::actors::group_commit::ArrivingWrite;
use crate::actors::writes::Write;
use crate::error::ApiError;
use crate::state::AppState;

/// Counts a group-committed write (an upload, a verdict) as on its way to its commit from its
/// request head on, so a commit being gathered (where commits gather: not on a SQLite file
/// whose WAL a syncer flushes) can wait for it. Declared first by the write's
/// route, so it is taken before the body is read.
pub(crate) struct Arrival(Option<ArrivingWrite<Write>>);

impl actix_web::FromRequest for Arrival {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let arriving = req
            .app_data::<web::Data<AppState>>()
            .map(|s| s.writes.arriving());
        std::future::ready(Ok(Arrival(arriving)))
    }
}

pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found(format!(
        "No route for {} {}",
        req.method(),
        req.path()
    )))
}

/// The route template a request matched (`/api/v1/projects/{project}/…`), for the access log
/// and the metrics: resource data, so reading it does not route the path a second time (as
/// `HttpRequest::match_pattern` does).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteTemplate(pub &'static str);

/// A resource whose other methods answer 405 with the JSON error and an `Allow` header.
/// `allowed` lists the methods separated by spaces, in any case. `template` is the full
/// path template (with the scope's prefix).
fn resource(path: &str, template: &'static str, allowed: &str) -> actix_web::Resource {
    let mut methods: Vec<String> = allowed.split_whitespace().map(str::to_uppercase).collect();
    // HEAD is served wherever GET is (`middleware::request_context`).
    if methods.iter().any(|m| m == "GET") {
        methods.push("HEAD".to_owned());
    }
    let allow = methods.join(", ");
    web::resource(path)
        .app_data(RouteTemplate(template))
        .default_service(web::to(move || {
            let allow = allow.clone();
            async move {
                let mut res = ApiError::method_not_allowed()
                    .to_response(&crate::request_id::current_request_id());
                if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&allow) {
                    res.headers_mut().insert(actix_web::http::header::ALLOW, v);
                }
                res
            }
        }))
}

/// The API routes, declared once: the macro registers them and lists them (for the OpenAPI
/// coverage test). `{benchmark:.+}` captures names containing `/` (the CLI does not
/// percent-encode them).
macro_rules! api_routes {
    ($( $path:literal => [ $( $method:ident $handler:path ),+ ] ),* $(,)?) => {
        fn register_api(scope: actix_web::Scope) -> actix_web::Scope {
            scope $( .service(
                resource($path, concat!("/api/v1", $path), concat!($( stringify!($method), " " ),+))
                $( .route(web::$method().to($handler)) )+
            ) )*
        }

        /// Every `(METHOD, path)` the server routes, with OpenAPI-style `{param}` templates.
        pub fn routes() -> Vec<(String, String)> {
            let mut out = vec![
                ("GET".to_owned(), "/health".to_owned()),
                ("GET".to_owned(), "/metrics".to_owned()),
            ];
            $( $( out.push((stringify!($method).to_uppercase(), openapi_path(concat!("/api/v1", $path)))); )+ )*
            out
        }
    };
}

/// `/a/{b:.+}/c` → `/a/{b}/c`.
pub fn openapi_path(template: &str) -> String {
    let (mut out, mut in_param, mut in_regex) = (String::new(), false, false);
    for ch in template.chars() {
        match ch {
            '{' => {
                in_param = true;
                out.push(ch);
            }
            ':' if in_param => in_regex = true,
            '}' => {
                (in_param, in_regex) = (false, false);
                out.push(ch);
            }
            _ if in_regex => {}
            _ => out.push(ch),
        }
    }
    out
}

// Routes are tried in this order, each dynamic one with a regex: the hottest (GET latest, what
// every CI job asks) comes first. No route below matches a path ending in `/latest` under
// `/projects/{project}/baselines/`, so the order changes no answer.
api_routes! {
    "/projects/{project}/baselines/{benchmark:.+}/latest" => [get baselines::latest],
    "/health" => [get health::health],
    "/info" => [get health::info],
    "/openapi.json" => [get health::openapi],
    "/whoami" => [get dashboard::whoami],
    "/projects" => [get dashboard::projects],
    "/projects/{project}/benchmarks" => [get dashboard::project_benchmarks],
    "/projects/{project}/benchmarks/{benchmark:.+}/history" => [get dashboard::history],
    "/projects/{project}/benchmarks/{benchmark:.+}/change-points" => [get changepoints::list],
    "/projects/{project}/baselines" => [post baselines::upload, get baselines::list],
    "/projects/{project}/baselines/{benchmark:.+}/versions/{version}" => [get baselines::get_version, delete baselines::delete_version],
    "/projects/{project}/baselines/{benchmark:.+}/promote" => [post baselines::promote],
    "/projects/{project}/baselines/{benchmark:.+}/trend" => [get baselines::trend],
    "/projects/{project}/verdicts" => [post verdicts::submit, get verdicts::list],
    "/projects/{project}/verdicts/{id}" => [get verdicts::get],
    "/projects/{project}/decisions" => [post decisions::upload, get decisions::list],
    "/projects/{project}/decisions/latest" => [get decisions::latest],
    "/projects/{project}/decisions/prune" => [post decisions::prune],
    "/projects/{project}/decisions/{id}" => [get decisions::get],
    "/projects/{project}/gates" => [post gates::open, get gates::list],
    "/projects/{project}/gates/{id}" => [get gates::get],
    "/projects/{project}/gates/{id}/attempts" => [post gates::add_attempt],
    "/projects/{project}/gate-settings" => [get gates::get_settings, put gates::put_settings],
    "/projects/{project}/alerts" => [get alerts::list],
    "/projects/{project}/alerts/{id}" => [get alerts::get],
    "/projects/{project}/alerts/{id}/transitions" => [post alerts::transition],
    "/projects/{project}/alert-stats" => [get alerts::stats],
    "/projects/{project}/waivers" => [get alerts::waivers],
    "/fleet/dependency-event" => [post fleet::record],
    "/fleet/alerts" => [get fleet::alerts],
    "/fleet/dependency/{dep:.+}/impact" => [get fleet::impact],
    "/keys" => [post keys::create_key, get keys::list_keys],
    "/keys/{id}" => [delete keys::revoke_key],
    "/audit" => [get audit::list_audit],
    "/admin/cleanup" => [delete admin::cleanup_now],
}

/// Every route: the API, health and metrics, and the dashboard (`static_dir` overrides its
/// embedded assets).
pub fn configure(cfg: &mut web::ServiceConfig, static_dir: Option<std::path::PathBuf>) {
    dashboard::configure(cfg, static_dir);
    cfg.service(resource("/health", "/health", "get").route(web::get().to(health::health_doc)))
        .service(resource("/metrics", "/metrics", "get").route(web::get().to(health::metrics)))
        .service(register_api(web::scope("/api/v1")).default_service(web::to(not_found)));
}

#[cfg(test)]
mod tests {
    #[test]
    fn openapi_paths() {
        assert_eq!(
            super::openapi_path("/p/{project}/b/{benchmark:.+}/v/{version}"),
            "/p/{project}/b/{benchmark}/v/{version}"
        );
        assert_eq!(
            super::openapi_path("/fleet/dependency/{dep:.+}/impact"),
            "/fleet/dependency/{dep}/impact"
        );
    }
}
