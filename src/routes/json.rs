//! Request-body and query extraction with the contract's errors: 415 without a JSON content
//! type, 413 over the size limit, 400 for malformed JSON, 422 for JSON of the wrong shape.

use actix_web::dev::Payload;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::web::Bytes;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body of `T`'s shape, read (415, 413 and 408 are the extractor's) but parsed only
/// when the handler asks ([`JsonBody::parse`]): after the caller's scope and project are
/// checked, so a caller who may not write learns nothing from the body's errors (contract §2:
/// scope, then project, then the benchmark filter, which may need the body).
pub struct JsonBody<T> {
    /// The bytes as received (for idempotency hashing).
    pub bytes: Bytes,
    max_depth: usize,
    shape: std::marker::PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> JsonBody<T> {
    /// The body as `T`: 400 for malformed JSON or nesting deeper than `max_json_depth`, 422
    /// for the wrong shape.
    pub fn parse(&self) -> Result<T, ApiError> {
        if json_depth(&self.bytes, self.max_depth) > self.max_depth {
            crate::metrics::METRICS
                .limit_rejections
                .with_label_values(&["json_depth"])
                .inc();
            return Err(ApiError::bad_request(format!(
                "JSON nesting deeper than {} levels",
                self.max_depth
            )));
        }
        parse_json(&self.bytes)
    }
}

fn is_json_content_type(req: &HttpRequest) -> bool {
    let Some(ct) = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Deepest `{`/`[` nesting in a JSON text (strings skipped); stops counting past `limit`.
pub fn json_depth(bytes: &[u8], limit: usize) -> usize {
    let (mut depth, mut max, mut in_str, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
                if max > limit {
                    return max;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// A request body: a JSON object of `T`'s shape. Every body is an object; serde would also
/// take an array of the fields in order (`[0.5, 0]` as gate settings), which is refused.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value = serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::unprocessable(format!("Invalid request body: {e}")),
            // Valid JSON, but a number no field can hold (`1e309`): the wrong shape, as it is
            // inside a receipt.
            Category::Syntax if e.to_string().starts_with("number out of range") => {
                ApiError::unprocessable(format!("Invalid request body: {e}"))
            }
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::bad_request(format!("Malformed JSON: {e}"))
            }
        }
    })?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::unprocessable(
            "Invalid request body: expected a JSON object",
        ));
    }
    Ok(value)
}

impl<T: 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if !is_json_content_type(req) {
            return Box::pin(async { Err(ApiError::unsupported_media_type()) });
        }
        let (limit, max_depth, body_timeout) = req
            .app_data::<web::Data<AppState>>()
            .map(|s| {
                (
                    s.config.max_body_bytes,
                    s.config.max_json_depth,
                    std::time::Duration::from_secs(s.config.client_timeout),
                )
            })
            .unwrap_or((2 * 1024 * 1024, 64, std::time::Duration::from_secs(10)));
        let bytes = Bytes::from_request(req, payload);
        Box::pin(async move {
            let bytes = tokio::time::timeout(body_timeout, bytes)
                .await
                .map_err(|_| {
                    crate::metrics::METRICS
                        .limit_rejections
                        .with_label_values(&["slow_body"])
                        .inc();
                    ApiError::new(
                        actix_web::http::StatusCode::REQUEST_TIMEOUT,
                        crate::error::ErrorCode::Timeout,
                        "The request body did not arrive in time",
                    )
                })?
                .map_err(|e| {
                    if e.as_response_error().status_code().as_u16() == 413 {
                        ApiError::payload_too_large(limit)
                    } else {
                        ApiError::bad_request("Could not read the request body")
                    }
                })?;
            Ok(JsonBody {
                bytes,
                max_depth,
                shape: std::marker::PhantomData,
            })
        })
    }
}

/// `web::Query` errors as 400 `invalid_input`.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|e, _| ApiError::bad_request(format!("Invalid query string: {e}")).into())
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|e, _| ApiError::bad_request(format!("Invalid path: {e}")).into())
}

#[cfg(test)]
mod tests {
    use super::json_depth;

    #[test]
    fn wrong_shapes_are_422_and_bad_syntax_400() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct B {
            x: f64,
        }
        let status = |body: &str| {
            super::parse_json::<B>(body.as_bytes())
                .map(|_| 200)
                .unwrap_or_else(|e| actix_web::ResponseError::status_code(&e).as_u16())
        };
        assert_eq!(status(r#"{"x": 1}"#), 200);
        assert_eq!(status(r#" {"x": 1}"#), 200);
        assert_eq!(status(r#"{"x": 1e309}"#), 422);
        assert_eq!(status(r#"{"x": "1"}"#), 422);
        assert_eq!(status("[1]"), 422);
        assert_eq!(status(r#"{"x": 1"#), 400);
        assert_eq!(status("nope"), 400);
    }

    #[test]
    fn depth() {
        assert_eq!(json_depth(br#"{"a": [1, {"b": 2}]}"#, 64), 3);
        assert_eq!(
            json_depth(br#"{"a": "[[[[{{{{"}"#, 64),
            1,
            "brackets in strings do not count"
        );
        assert_eq!(
            json_depth(br#"{"a": "\"[[["}"#, 64),
            1,
            "escaped quotes stay in the string"
        );
        assert_eq!(
            json_depth(b"[[[[[[[[[[", 3),
            4,
            "stops early past the limit"
        );
        assert_eq!(json_depth(b"42", 64), 0);
    }
}
