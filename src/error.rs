//! Errors, in two layers with one JSON shape.
//!
//! * [`DbError`] belongs to `db/` and the actors: it wraps diesel, r2d2 and mailbox failures as
//!   sources, never as strings.
//! * [`ApiError`] belongs to `routes/`: an explicit status table and the contract's flat body
//!   `{"code", "message", "request_id", "details"?}`. Storage text never reaches the client; it is
//!   logged under the request id instead.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::actors::StoreError;
use crate::db::DbError;
use crate::domain::names::NameError;
use crate::request_id::current_request_id;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    InvalidInput,
    PayloadTooLarge,
    UnsupportedMediaType,
    MethodNotAllowed,
    Timeout,
    Unavailable,
    RateLimited,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Internal => "internal_error",
        }
    }
}

/// Why a credential was refused: the `reason` label of the auth-failure metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Malformed,
    UnknownKey,
    Revoked,
    Expired,
    InvalidToken,
}

impl AuthFailure {
    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::UnknownKey => "unknown_key",
            AuthFailure::Revoked => "revoked",
            AuthFailure::Expired => "expired",
            AuthFailure::InvalidToken => "invalid_token",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<serde_json::Value>,
    /// Seconds for `Retry-After` (503 and 429).
    pub retry_after: Option<u32>,
    /// Why a credential was refused (401), as a closed set of labels for the auth-failure
    /// metric; set where the refusal is decided, never recovered from the message.
    pub auth_failure: Option<AuthFailure>,
    /// The storage failure behind a 5xx: logged and counted when the response is rendered,
    /// never shown to the client.
    pub cause: Option<Box<Cause>>,
}

/// A storage failure kept with the error it caused.
#[derive(Debug, Clone)]
pub struct Cause {
    /// `transient` (answered 503) or `internal` (500): the `storage_errors` metric's label.
    pub kind: &'static str,
    /// The failure with its sources, for the log.
    pub detail: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'static str,
    message: &'a str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
            auth_failure: None,
            cause: None,
        }
    }
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, m)
    }
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, m)
    }
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, m)
    }
    /// 400: the request is malformed (bad JSON, bad query, bad name).
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidInput, m)
    }
    /// 422: well-formed JSON of the wrong shape.
    pub fn unprocessable(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidInput, m)
    }
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("Request body exceeds the limit of {limit} bytes"),
        )
    }
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "Content-Type must be application/json",
        )
    }
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            "Method not allowed for this resource",
        )
    }
    pub fn unavailable(m: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, m);
        e.retry_after = Some(1);
        e
    }
    pub fn timeout(m: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Timeout, m);
        e.retry_after = Some(1);
        e
    }
    /// 429 with the seconds to wait.
    pub fn rate_limited(retry_after: u32) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            "Rate limit exceeded for this credential; retry after the given delay",
        );
        e.retry_after = Some(retry_after.max(1));
        e
    }
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "Internal server error; see the server log for this request id",
        )
    }
    /// A 401 with the reason it is counted under.
    pub fn unauthenticated(reason: AuthFailure, m: impl Into<String>) -> Self {
        let mut e = Self::unauthorized(m);
        e.auth_failure = Some(reason);
        e
    }
    pub fn with_details(mut self, d: serde_json::Value) -> Self {
        self.details = Some(d);
        self
    }

    /// The JSON error for a bare status (framework rejections the router produced itself).
    pub fn for_status(status: StatusCode) -> Self {
        match status.as_u16() {
            400 => Self::bad_request("Bad request"),
            401 => Self::unauthorized("Missing authentication header"),
            403 => Self::forbidden("Forbidden"),
            404 => Self::not_found("Resource not found"),
            405 => Self::method_not_allowed(),
            408 => Self::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::Timeout,
                "Request timed out",
            ),
            409 => Self::conflict("Conflict"),
            413 => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                "Request too large",
            ),
            414 => Self::new(
                StatusCode::URI_TOO_LONG,
                ErrorCode::InvalidInput,
                "Request URI too long",
            ),
            415 => Self::unsupported_media_type(),
            422 => Self::unprocessable("Unprocessable request"),
            429 => Self::rate_limited(1),
            431 => Self::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                ErrorCode::InvalidInput,
                "Request headers too large",
            ),
            503 => Self::unavailable("Service unavailable"),
            504 => Self::new(StatusCode::GATEWAY_TIMEOUT, ErrorCode::Timeout, "Timed out"),
            s if (400..500).contains(&s) => {
                Self::new(status, ErrorCode::InvalidInput, "Bad request")
            }
            _ => {
                let mut e = Self::internal();
                e.status = status;
                e
            }
        }
    }

    pub fn to_response(&self, request_id: &str) -> HttpResponse {
        let body = serde_json::to_vec(&ErrorBody {
            code: self.code.as_str(),
            message: &self.message,
            request_id,
            details: self.details.as_ref(),
        })
        .unwrap_or_else(|_| b"{\"code\":\"internal_error\"}".to_vec());
        let mut b = HttpResponse::build(self.status);
        b.insert_header((header::CONTENT_TYPE, "application/json"));
        if let Some(s) = self.retry_after {
            b.insert_header((header::RETRY_AFTER, s.to_string()));
        }
        b.body(body)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code.as_str(),
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        if let Some(c) = &self.cause {
            crate::metrics::METRICS
                .storage_errors
                .with_label_values(&[c.kind])
                .inc();
            if c.kind == "transient" {
                log::warn!("storage temporarily unavailable: {}", c.detail);
            } else {
                log::error!("storage error: {}", c.detail);
            }
        } else if self.status.is_server_error() {
            log::warn!("answered {self}");
        }
        self.to_response(&current_request_id())
    }
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> Self {
        ApiError::bad_request(e.to_string()).with_details(serde_json::json!({ "field": e.field }))
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        let (mut api, kind) = if e.is_transient() {
            (
                ApiError::unavailable("Storage is temporarily unavailable; retry shortly"),
                "transient",
            )
        } else {
            (ApiError::internal(), "internal")
        };
        api.cause = Some(Box::new(Cause {
            kind,
            detail: format!("{e}: {e:?}"),
        }));
        api
    }
}

/// A pure mapping: nothing is logged or counted here (see `error_response`).
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::not_found(m),
            StoreError::Conflict(m) => ApiError::conflict(m),
            StoreError::Unavailable(m) => ApiError::unavailable(m),
            StoreError::Timeout(t) => {
                ApiError::timeout(format!("Storage did not answer within {} s", t.as_secs()))
            }
            StoreError::Internal(m) => {
                let mut api = ApiError::internal();
                api.cause = Some(Box::new(Cause {
                    kind: "internal",
                    detail: m,
                }));
                api
            }
            StoreError::Db(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_is_pinned() {
        let r = ApiError::conflict("bench-a/v1").to_response("req-1");
        assert_eq!(r.status(), StatusCode::CONFLICT);
        let body = actix_web::body::to_bytes(r.into_body());
        let body = futures_util::FutureExt::now_or_never(body)
            .unwrap()
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"code":"conflict","message":"bench-a/v1","request_id":"req-1"}"#
        );
        let r = ApiError::unavailable("busy").to_response("x");
        assert_eq!(r.headers().get("retry-after").unwrap(), "1");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn status_table() {
        for (s, code) in [
            (400, "invalid_input"),
            (401, "unauthorized"),
            (404, "not_found"),
            (405, "method_not_allowed"),
            (408, "timeout"),
            (413, "payload_too_large"),
            (414, "invalid_input"),
            (415, "unsupported_media_type"),
            (422, "invalid_input"),
            (429, "rate_limited"),
            (431, "invalid_input"),
            (500, "internal_error"),
            (503, "unavailable"),
            (504, "timeout"),
        ] {
            let e = ApiError::for_status(StatusCode::from_u16(s).unwrap());
            assert_eq!(e.status.as_u16(), s);
            assert_eq!(e.code.as_str(), code);
        }
    }
}
