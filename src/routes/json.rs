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

/// A JSON body of `T`'s shape, read by the extractor but judged only when the handler asks
/// ([`JsonBody::parse`]), after the caller's credential, scope and project are checked: a
/// caller who may not act there hears 401 or 403 whatever the body holds (contract §2: scope,
/// then project, then the benchmark filter, which may need the body). What reading found (415
/// for a content type that is not JSON, 413 over the limit, 408 for a body that did not
/// arrive in time) is kept for `parse` to answer.
pub struct JsonBody<T> {
    read: Result<Bytes, ApiError>,
    max_depth: usize,
    shape: std::marker::PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> JsonBody<T> {
    /// The body as `T`: the reading's error if it had one, else 400 for malformed JSON or
    /// nesting deeper than `max_json_depth`, 422 for the wrong shape.
    pub fn parse(self) -> Result<T, ApiError> {
        self.parse_with_bytes().map(|(value, _)| value)
    }

    /// [`JsonBody::parse`], with the bytes as received (for idempotency hashing).
    pub fn parse_with_bytes(self) -> Result<(T, Bytes), ApiError> {
        let bytes = self.read?;
        if json_depth(&bytes, self.max_depth) > self.max_depth {
            crate::metrics::METRICS
                .limit_rejections
                .with_label_values(&["json_depth"])
                .inc();
            return Err(ApiError::bad_request(format!(
                "JSON nesting deeper than {} levels",
                self.max_depth
            )));
        }
        let value = parse_json(&bytes)?;
        Ok((value, bytes))
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

/// A body is read as sent (`identity`) or gunzipped (`gzip`); any other coding, or several, would
/// be read as if it were none: 415 (RFC 9110 §15.5.16) rather than a body misread.
fn check_content_encoding(req: &HttpRequest) -> Result<(), ApiError> {
    let mut codings = req
        .headers()
        .get_all(actix_web::http::header::CONTENT_ENCODING);
    let Some(first) = codings.next() else {
        return Ok(());
    };
    let coding = first.to_str().unwrap_or("").trim().to_ascii_lowercase();
    if codings.next().is_none() && matches!(coding.as_str(), "identity" | "gzip" | "x-gzip") {
        return Ok(());
    }
    Err(ApiError::new(
        actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
        crate::error::ErrorCode::UnsupportedMediaType,
        format!(
            "Content-Encoding {:?} is not supported: send the body as is, or gzip it",
            String::from_utf8_lossy(first.as_bytes())
        ),
    ))
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

/// A request body: a JSON object of `T`'s shape. Every body is an object, and so is every
/// struct inside it; serde would also take an array of a struct's fields in order (`[0.5, 0]`
/// as gate settings, `[1, 0, 0, 0]` as verdict counts), which is refused at every depth
/// ([`crate::domain::strict`]).
/// A 422 names the field whose value has the wrong shape in `details.field` (`counts.pass`,
/// `runs[2].benchmark`), as a receipt's does.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // JSON text is UTF-8 (RFC 8259 §8.1) everywhere, also in a member no field reads.
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "Malformed JSON: the body is not UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    let de = &mut serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(crate::domain::strict::Strict(&mut *de))
        .map_err(|e| {
            let field = crate::domain::strict::error_field(&e, None);
            (e.into_inner(), field)
        })
        .and_then(|value| de.end().map(|()| value).map_err(|e| (e, None)))
        .map_err(|(e, field)| {
            use serde_json::error::Category;
            let shape = |e| {
                let err = ApiError::unprocessable(format!("Invalid request body: {e}"));
                match field {
                    Some(f) => err.with_details(serde_json::json!({ "field": f })),
                    None => err,
                }
            };
            match e.classify() {
                Category::Data => shape(e),
                // Valid JSON, but a number no field can hold (`1e309`): the wrong shape, as it is
                // inside a receipt.
                Category::Syntax if e.to_string().starts_with("number out of range") => shape(e),
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
        let body = move |read| JsonBody {
            read,
            max_depth,
            shape: std::marker::PhantomData,
        };
        if !is_json_content_type(req) {
            return Box::pin(std::future::ready(Ok(body(Err(
                ApiError::unsupported_media_type(),
            )))));
        }
        if let Err(e) = check_content_encoding(req) {
            return Box::pin(std::future::ready(Ok(body(Err(e)))));
        }
        let bytes = Bytes::from_request(req, payload);
        Box::pin(async move {
            let read = match tokio::time::timeout(body_timeout, bytes).await {
                Err(_) => {
                    crate::metrics::METRICS
                        .limit_rejections
                        .with_label_values(&["slow_body"])
                        .inc();
                    Err(ApiError::new(
                        actix_web::http::StatusCode::REQUEST_TIMEOUT,
                        crate::error::ErrorCode::Timeout,
                        "The request body did not arrive in time",
                    ))
                }
                Ok(Err(e)) if e.as_response_error().status_code().as_u16() == 413 => {
                    Err(ApiError::payload_too_large(limit))
                }
                Ok(Err(_)) => Err(ApiError::bad_request("Could not read the request body")),
                Ok(Ok(bytes)) => Ok(bytes),
            };
            Ok(body(read))
        })
    }
}

/// A query string of `T`'s shape, parsed when the handler asks ([`Query::parse`]): after the
/// caller is authenticated and authorized, so a caller without a valid credential hears 401,
/// and one out of its reach 403, whatever the query holds (`web::Query` fails in the extractor,
/// while the credential is still being looked up).
pub struct Query<T> {
    raw: String,
    shape: std::marker::PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Query<T> {
    /// The query as `T`; 400 `invalid_input` for a malformed one, naming the parameter in
    /// `details.field` when one is to blame (`limit=abc`).
    pub fn parse(&self) -> Result<T, ApiError> {
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(self.raw.as_bytes()));
        serde_path_to_error::deserialize(de).map_err(|e| {
            let err = ApiError::bad_request(format!("Invalid query string: {}", e.inner()));
            match crate::domain::strict::error_field(&e, None) {
                Some(f) => err.with_details(serde_json::json!({ "field": f })),
                None => err,
            }
        })
    }
}

impl<T: 'static> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(Query {
            raw: req.query_string().to_owned(),
            shape: std::marker::PhantomData,
        }))
    }
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
