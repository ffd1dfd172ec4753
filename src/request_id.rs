//! The request id: generated or taken from the client, carried in a task-local for the life of
//! the request, and read by errors and log lines. A leaf module: it imports nothing of the crate.

use actix_web::http::header::{HeaderName, HeaderValue};

pub(crate) const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    /// The id of the request this task is serving. actix-web drives one request's handler,
    /// extractors and error rendering on the task that runs this middleware, so the value is
    /// visible to `ApiError::error_response` and to every log line of the request.
    static REQUEST_ID: String;
}

/// Runs `f` as the request `id`: its errors and log lines carry that id.
pub(crate) async fn scope<F: std::future::Future>(id: String, f: F) -> F::Output {
    REQUEST_ID.scope(id, f).await
}

/// The current request's id, or a fresh one outside a request.
pub(crate) fn current_request_id() -> String {
    REQUEST_ID
        .try_with(|id| id.clone())
        .unwrap_or_else(|_| new_request_id())
}

/// Used by the log formatter: no allocation when there is no request.
pub(crate) fn with_request_id<R>(f: impl FnOnce(Option<&str>) -> R) -> R {
    let mut f = Some(f);
    match REQUEST_ID.try_with(|id| (f.take().expect("called once"))(Some(id.as_str()))) {
        Ok(r) => r,
        Err(_) => (f.take().expect("called once"))(None),
    }
}

/// A random v4 UUID as 32 hex digits, from the thread-local CSPRNG (`Uuid::new_v4` asks the
/// kernel for every id: a system call per request).
pub(crate) fn new_request_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .simple()
        .to_string()
}

/// Keeps a client-supplied id only if it is short and printable; otherwise generates one. The id
/// is echoed in a header and written to logs, so it must not carry control characters.
pub(crate) fn sanitize_request_id(raw: Option<&HeaderValue>) -> String {
    let Some(raw) = raw.and_then(|v| v.to_str().ok()) else {
        return new_request_id();
    };
    let cleaned: String = raw
        .chars()
        .filter(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/' | '+' | '=')
        })
        .take(128)
        .collect();
    if cleaned.is_empty() {
        new_request_id()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_sanitized() {
        let v = HeaderValue::from_static("abc-123_x.y");
        assert_eq!(sanitize_request_id(Some(&v)), "abc-123_x.y");
        let v = HeaderValue::from_static("a b\"c<script>");
        assert_eq!(sanitize_request_id(Some(&v)), "abcscript");
        let long = "x".repeat(300);
        let v = HeaderValue::from_str(&long).unwrap();
        assert_eq!(sanitize_request_id(Some(&v)).len(), 128);
        let v = HeaderValue::from_static("   ");
        assert_eq!(sanitize_request_id(Some(&v)).len(), 32);
        assert_eq!(sanitize_request_id(None).len(), 32);
    }
}
