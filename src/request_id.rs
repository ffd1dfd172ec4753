//! The request id: generated or taken from the client, carried in a task-local for the life of
//! the request, and read by errors and log lines. A leaf module: it imports nothing of the crate.

use actix_web::http::header::{HeaderName, HeaderValue};

pub(crate) const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The ids of a request: the one it is known by to its client (echoed in `X-Request-Id`, in
/// error bodies and log lines: the client's own when it sent one), the id the server generated
/// for it (always; the audit log's `request_id`, which a client cannot choose), and the
/// client's id when it sent one (kept beside it in the audit log).
///
/// Dereferences to the id the client knows, so it can be used wherever that id is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestRef {
    shown: String,
    server: String,
    client: Option<String>,
}

impl RequestRef {
    /// A request whose client sent `client` (sanitized) or nothing.
    pub(crate) fn new(client: Option<String>) -> Self {
        let server = new_request_id();
        RequestRef {
            shown: client.clone().unwrap_or_else(|| server.clone()),
            server,
            client,
        }
    }
    /// The id the server generated.
    pub(crate) fn server(&self) -> &str {
        &self.server
    }
    /// The id the client sent, if any.
    pub(crate) fn client(&self) -> Option<&str> {
        self.client.as_deref()
    }
}

/// An id chosen by the server itself (`startup`, an operator command's id).
impl From<String> for RequestRef {
    fn from(id: String) -> Self {
        RequestRef {
            shown: id.clone(),
            server: id,
            client: None,
        }
    }
}

impl From<&str> for RequestRef {
    fn from(id: &str) -> Self {
        RequestRef::from(id.to_owned())
    }
}

impl std::ops::Deref for RequestRef {
    type Target = str;
    fn deref(&self) -> &str {
        &self.shown
    }
}

impl std::fmt::Display for RequestRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

tokio::task_local! {
    /// The ids of the request this task is serving. actix-web drives one request's handler,
    /// extractors and error rendering on the task that runs this middleware, so the value is
    /// visible to `ApiError::error_response` and to every log line of the request.
    static REQUEST_ID: RequestRef;
}

/// Runs `f` as the request `ids`: its errors and log lines carry them.
pub(crate) async fn scope<F: std::future::Future>(ids: RequestRef, f: F) -> F::Output {
    REQUEST_ID.scope(ids, f).await
}

/// The current request's ids, or fresh ones outside a request.
pub(crate) fn current_request_id() -> RequestRef {
    REQUEST_ID
        .try_with(|id| id.clone())
        .unwrap_or_else(|_| RequestRef::new(None))
}

/// Used by the log formatter: no allocation when there is no request.
pub(crate) fn with_request_id<R>(f: impl FnOnce(Option<&str>) -> R) -> R {
    let mut f = Some(f);
    match REQUEST_ID.try_with(|id| (f.take().expect("called once"))(Some(&id.shown))) {
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

/// The ids of a request with this `X-Request-Id` header: the client's id kept when usable.
pub(crate) fn request_ids(raw: Option<&HeaderValue>) -> RequestRef {
    let client = raw
        .and_then(|v| v.to_str().ok())
        .map(clean)
        .filter(|c| !c.is_empty());
    RequestRef::new(client)
}

/// Keeps a client-supplied id only if it is short and printable; otherwise generates one. The id
/// is echoed in a header and written to logs, so it must not carry control characters.
#[cfg(test)]
pub(crate) fn sanitize_request_id(raw: Option<&HeaderValue>) -> String {
    request_ids(raw).shown
}

fn clean(raw: &str) -> String {
    raw.chars()
        .filter(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/' | '+' | '=')
        })
        .take(128)
        .collect()
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

    #[test]
    fn the_server_id_is_always_its_own() {
        let v = HeaderValue::from_static("client-chosen");
        let ids = request_ids(Some(&v));
        assert_eq!(&*ids, "client-chosen");
        assert_eq!(ids.client(), Some("client-chosen"));
        assert_eq!(ids.server().len(), 32);
        assert_ne!(ids.server(), "client-chosen");
        let ids = request_ids(None);
        assert_eq!(ids.client(), None);
        assert_eq!(&*ids, ids.server());
    }
}
