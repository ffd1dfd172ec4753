//! Request-scoped plumbing: the request id, the access log line, and the guarantee that every
//! error leaving the server is the contract's JSON object.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::Error;

use crate::error::ApiError;
use crate::request_id::{self, current_request_id, request_ids, REQUEST_ID_HEADER};

fn is_json(res: &ServiceResponse<impl MessageBody>) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Counts a request in the in-flight gauge for as long as it lives (even if its future is
/// dropped half-way).
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        crate::metrics::METRICS.http_in_flight.inc();
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        crate::metrics::METRICS.http_in_flight.dec();
    }
}

/// The response headers CORS lets a page's script read (`server::cors_layer`).
pub(crate) const CORS_EXPOSED: [header::HeaderName; 4] = [
    header::ETAG,
    header::LOCATION,
    header::RETRY_AFTER,
    REQUEST_ID_HEADER,
];

/// The headers actix-cors adds to an answer to a request without `Origin`: the exposed headers
/// and `Vary`.
fn add_cors_headers(res: &mut actix_web::HttpResponse) {
    static EXPOSED: std::sync::LazyLock<HeaderValue> = std::sync::LazyLock::new(|| {
        let exposed = CORS_EXPOSED;
        let names: Vec<&str> = exposed.iter().map(|h| h.as_str()).collect();
        HeaderValue::from_str(&names.join(", ")).expect("header names are valid values")
    });
    let h = res.headers_mut();
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED.clone());
    h.insert(
        header::VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
    );
}

/// URL and header size limits (`max_url_bytes`, `max_header_bytes`), checked before routing.
/// Requests beyond actix's own hard header limit never get this far (it closes them with 431).
fn size_limits(req: &ServiceRequest, cfg: &crate::config::ServerConfig) -> Option<ApiError> {
    let url = req.path().len() + req.query_string().len();
    if url > cfg.max_url_bytes {
        crate::metrics::METRICS
            .limit_rejections
            .with_label_values(&["url"])
            .inc();
        return Some(ApiError::new(
            actix_web::http::StatusCode::URI_TOO_LONG,
            crate::error::ErrorCode::InvalidInput,
            format!("Request URL exceeds {} bytes", cfg.max_url_bytes),
        ));
    }
    if !decodes_to_utf8(req.path()) || !decodes_to_utf8(req.query_string()) {
        // actix decodes `%FF` to U+FFFD: `versions/%FF` and `versions/%FE` would both name a
        // version stored as "\u{fffd}", and a malformed request would read or delete it.
        return Some(ApiError::bad_request(
            "The request URL percent-decodes to bytes that are not UTF-8",
        ));
    }
    let headers: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if headers > cfg.max_header_bytes {
        crate::metrics::METRICS
            .limit_rejections
            .with_label_values(&["headers"])
            .inc();
        return Some(ApiError::new(
            actix_web::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            crate::error::ErrorCode::InvalidInput,
            format!("Request headers exceed {} bytes", cfg.max_header_bytes),
        ));
    }
    None
}

/// Whether `s` (a URL's path or query) percent-decodes to UTF-8; a `%` not followed by two hex
/// digits stands for itself.
fn decodes_to_utf8(s: &str) -> bool {
    // A `&str` without `%` is UTF-8 already.
    !s.contains('%')
        || percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .is_ok()
}

/// Outermost middleware: assigns the request id, runs the request inside its scope, turns any
/// non-JSON error response (router 404s, payload errors raised by actix itself) into the contract's
/// JSON error, echoes `X-Request-Id`, and writes the access log line.
pub(crate) async fn request_context(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let ids = request_ids(req.headers().get(&REQUEST_ID_HEADER));
    let id = ids.to_string();
    let server_id = ids.server().to_owned();
    let started = Instant::now();
    let method = req.method().clone();
    let in_flight = InFlight::enter();
    let state = req
        .app_data::<actix_web::web::Data<crate::state::AppState>>()
        .cloned();
    let refusal = state.as_ref().and_then(|s| size_limits(&req, &s.config));
    // HEAD is GET without the body (RFC 9110 §9.3.2): routed as GET; the connection saw the
    // HEAD and sends the headers only (Content-Length included).
    if req.method() == Method::HEAD {
        req.head_mut().method = Method::GET;
    }
    // What every CI job asks, answered from the cache before routing when it can be
    // (`cached_latest`). This answer bypasses the CORS middleware, so it gets here the headers
    // that middleware gives a request without `Origin` (one with `Origin` is never answered
    // here).
    let early = match (&refusal, &state) {
        (None, Some(state)) => crate::routes::baselines::cached_latest(&req, state).map(|mut a| {
            if state.config.serves_cors() {
                add_cors_headers(&mut a);
            }
            a
        }),
        _ => None,
    };
    let mut early_route = None;
    let result = match early {
        Some(answer) => {
            early_route = Some(crate::routes::baselines::LATEST_ROUTE);
            Ok(req.into_response(answer))
        }
        None => {
            request_id::scope(ids, async move {
                if let Some(refusal) = refusal {
                    return Ok(req.into_response(refusal.to_response(&current_request_id())));
                }
                let res = match next.call(req).await {
                    Ok(r) => r.map_into_boxed_body(),
                    Err(e) => return Err(e),
                };
                let status = res.status();
                if (status.is_client_error() || status.is_server_error()) && !is_json(&res) {
                    let (req, old) = res.into_parts();
                    let mut new = ApiError::for_status(status).to_response(&current_request_id());
                    // Keep headers the framework set for a reason (Allow, Retry-After).
                    for (name, value) in old.headers() {
                        if name == header::ALLOW || name == header::RETRY_AFTER {
                            new.headers_mut().insert(name.clone(), value.clone());
                        }
                    }
                    Ok(ServiceResponse::new(req, new))
                } else {
                    Ok(res)
                }
            })
            .await
        }
    };
    let mut res = match result {
        Ok(r) => r,
        Err(e) => {
            // An error that escaped every handler (the request is gone with it): render the
            // JSON error with the request id here, and still log and count it.
            let status = e.as_response_error().status_code();
            let mut response = ApiError::for_status(status).to_response(&id);
            if let Ok(v) = HeaderValue::from_str(&id) {
                response.headers_mut().insert(REQUEST_ID_HEADER, v);
            }
            let elapsed = started.elapsed();
            drop(in_flight);
            crate::metrics::observe_request(
                crate::metrics::method_label(&method),
                "<error>",
                status.as_u16(),
                elapsed,
            );
            log::info!(
                target: "access",
                method = method.as_str(),
                route = "<error>",
                status = status.as_u16(),
                request_id = id.as_str();
                "{method} <error> {}", status.as_u16()
            );
            return Err(
                actix_web::error::InternalError::from_response(e.to_string(), response).into(),
            );
        }
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    let template = early_route.or_else(|| {
        res.request()
            .app_data::<crate::routes::RouteTemplate>()
            .copied()
    });
    let route: std::borrow::Cow<'static, str> = match template {
        Some(t) => t.0.into(),
        None => res
            .request()
            .match_pattern()
            .map_or("<unmatched>".into(), Into::into),
    };
    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    drop(in_flight);
    match &route {
        std::borrow::Cow::Borrowed(r) => crate::metrics::observe_static_route(
            crate::metrics::method_label(&method),
            r,
            status,
            elapsed,
        ),
        std::borrow::Cow::Owned(r) => crate::metrics::observe_request(
            crate::metrics::method_label(&method),
            r,
            status,
            elapsed,
        ),
    }
    crate::logging::access(&crate::logging::AccessLine {
        method: method.as_str(),
        route: &route,
        status,
        elapsed,
        request_id: &id,
        server_request_id: &server_id,
    });
    Ok(res)
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_that_do_not_decode_to_utf8_are_told_apart() {
        for ok in [
            "",
            "/a/b",
            "/v%201",
            "%C3%BC",
            "%e2%82%ac",
            "100%",
            "%zz",
            "%4",
            "a=%20&b",
        ] {
            assert!(super::decodes_to_utf8(ok), "{ok}");
        }
        for bad in ["%FF", "/v/%C0", "%fe%ff", "%C3", "x=%E2%82"] {
            assert!(!super::decodes_to_utf8(bad), "{bad}");
        }
    }
}
