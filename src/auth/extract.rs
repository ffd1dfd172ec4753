//! The `Principal` extractor: reads `Authorization`, resolves the credential, or answers 401.

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures_util::future::LocalBoxFuture;

use jsonwebtoken::Algorithm;
use subtle::ConstantTimeEq;

use super::key_cache::{Lookup, Ticket};
use super::keys::{hash_key, is_valid_format};
use super::{oidc, Principal};
use crate::actors::key_store::{Authenticate, KeyRejection};
use crate::error::{ApiError, AuthFailure};
use crate::state::AppState;

/// Three non-empty base64url segments separated by dots.
pub fn has_jwt_shape(v: &str) -> bool {
    let mut n = 0;
    for part in v.split('.') {
        n += 1;
        if part.is_empty()
            || !part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        {
            return false;
        }
    }
    n == 3
}

/// What an `Authorization` header carries, before any key or signature is looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// `Bearer <key>` in the API key format.
    ApiKey(String),
    /// `Token <jwt>`, or `Bearer` with a value of the three-part JWT shape.
    Jwt(String),
}

/// Parses the `Authorization` header value: the first step of every authenticated request
/// (public for the `auth_header` fuzz target). Every refusal is a 401.
pub fn parse_header(value: Option<&str>) -> Result<Credential, ApiError> {
    let Some(value) = value else {
        return Err(ApiError::unauthenticated(
            AuthFailure::Missing,
            "Missing authentication header",
        ));
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() {
            return Err(ApiError::unauthenticated(
                AuthFailure::Malformed,
                "Invalid API key format",
            ));
        }
        if has_jwt_shape(rest) {
            return Ok(Credential::Jwt(rest.to_owned()));
        }
        if !is_valid_format(rest) {
            return Err(ApiError::unauthenticated(
                AuthFailure::Malformed,
                "Invalid API key format",
            ));
        }
        Ok(Credential::ApiKey(rest.to_owned()))
    } else if scheme.eq_ignore_ascii_case("token") {
        if rest.is_empty() {
            return Err(ApiError::unauthenticated(
                AuthFailure::InvalidToken,
                "Invalid token: empty",
            ));
        }
        Ok(Credential::Jwt(rest.to_owned()))
    } else {
        Err(ApiError::unauthorized(
            "Unsupported authentication scheme (use 'Bearer <api key>' or 'Token <jwt>')",
        ))
    }
}

/// HS256 goes to the static JWT verifier; RS256/ES256 to the OIDC provider named by `iss`.
/// Any other algorithm, `alg: none` included, is refused before any key is looked at.
async fn verify_token(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| {
        ApiError::unauthenticated(
            AuthFailure::InvalidToken,
            "Invalid token: malformed or unsupported header",
        )
    })?;
    match header.alg {
        Algorithm::HS256 => match &state.jwt {
            Some(v) => v.verify(token),
            None => Err(ApiError::unauthenticated(
                AuthFailure::InvalidToken,
                "Invalid token: JWT authentication is not configured on this server",
            )),
        },
        alg @ (Algorithm::RS256 | Algorithm::ES256) => {
            // No providers, no client: every issuer is unknown.
            let (Some(provider), Some(client)) =
                (oidc::provider_for(&state.oidc, token), &state.jwks_client)
            else {
                return Err(ApiError::unauthenticated(
                    AuthFailure::InvalidToken,
                    "Invalid token: unknown issuer",
                ));
            };
            let kid = header.kid.ok_or_else(|| {
                ApiError::unauthenticated(AuthFailure::InvalidToken, "Invalid token: missing kid")
            })?;
            provider.verify(token, &kid, alg, client).await
        }
        _ => Err(ApiError::unauthenticated(
            AuthFailure::InvalidToken,
            "Invalid token: algorithm not allowed (HS256, RS256 or ES256)",
        )),
    }
}

/// The caller of a route that needs a real credential even in local mode (key management, the
/// audit log): like [`Principal`], but a request without `Authorization` is always a 401.
pub struct Credentialed(pub Principal);

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    /// In local mode a request without `Authorization` is [`Principal::local`]; one with a
    /// credential is authenticated as everywhere else (a bad one is a 401).
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        extract(req, true)
    }
}

impl FromRequest for Credentialed {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let principal = extract(req, false);
        Box::pin(async move { principal.await.map(Credentialed) })
    }
}

/// Whether a request names the server by a loopback name (`Host` 127.0.0.1, `[::1]` or
/// localhost, any port) and, when a browser sent it, comes from the server's own page (`Origin`
/// absent, or `http://` + that same `Host`).
pub fn is_local_request(req: &HttpRequest) -> bool {
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let Some(host) = header(actix_web::http::header::HOST) else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        Some((n, port)) if !n.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => host.as_str(),
    };
    let loopback = matches!(
        name.to_ascii_lowercase().as_str(),
        "127.0.0.1" | "[::1]" | "localhost"
    );
    let origin_ok = match header(actix_web::http::header::ORIGIN) {
        None => true,
        Some(o) => o.eq_ignore_ascii_case(&format!("http://{host}")),
    };
    loopback && origin_ok
}

/// Authenticates the request; `local_fallback`: a request without a credential on a server in
/// local mode is the local user (when it comes from this machine's own clients).
fn extract(
    req: &HttpRequest,
    local_fallback: bool,
) -> LocalBoxFuture<'static, Result<Principal, ApiError>> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    // The no-credential local user is for this machine's own clients only: not for a web page
    // the user happens to open (its requests carry a foreign `Origin`) nor for a name that a
    // site re-pointed at 127.0.0.1 (DNS rebinding: a foreign `Host`).
    // Only local mode asks (it reads and lower-cases the Host header).
    let same_machine = state.as_ref().is_some_and(|s| s.config.local) && is_local_request(req);
    let mut headers = req.headers().get_all(AUTHORIZATION);
    let header = match headers.next() {
        None => None,
        // Two credentials: which one the client meant, it did not say (the field is a
        // singleton, RFC 9110 §11.6.2).
        Some(_) if headers.next().is_some() => {
            crate::metrics::auth_failure(AuthFailure::Malformed.label());
            return Box::pin(async {
                Err(ApiError::unauthenticated(
                    AuthFailure::Malformed,
                    "More than one Authorization header: send one credential",
                ))
            });
        }
        Some(v) => match v.to_str() {
            Ok(s) => Some(s.to_owned()),
            Err(_) => {
                crate::metrics::auth_failure(AuthFailure::Malformed.label());
                return Box::pin(async {
                    Err(ApiError::unauthenticated(
                        AuthFailure::Malformed,
                        "Invalid authentication header",
                    ))
                });
            }
        },
    };
    let miss = req.extensions_mut().remove::<KeyMiss>();
    Box::pin(async move {
        let state = state.ok_or_else(ApiError::internal)?;
        let result = match header {
            None if local_fallback && state.config.local && same_machine => {
                Ok(Principal::local())
            }
            None if local_fallback && state.config.local => Err(ApiError::unauthenticated(
                AuthFailure::Missing,
                "Missing authentication header: local mode serves requests without a key only to this machine's own clients (a loopback Host, and no Origin but the server's own)",
            )),
            None if state.config.local => Err(ApiError::unauthenticated(
                AuthFailure::Missing,
                "Missing authentication header: in local mode keys and the audit log still need an API key",
            )),
            _ => authenticate(&state, header.as_deref(), miss).await,
        };
        match &result {
            Err(e) if e.status.as_u16() == 401 => {
                crate::metrics::auth_failure(e.auth_failure.map_or("other", |r| r.label()));
            }
            Ok(p) => rate_limit(&state, p)?,
            Err(_) => {}
        }
        result
    })
}

/// The credential's token bucket: 429 with the wait in `Retry-After` when it is empty.
fn rate_limit(state: &AppState, p: &Principal) -> Result<(), ApiError> {
    let Some(limiter) = &state.limiter else {
        return Ok(());
    };
    match limiter.check_key(&p.id) {
        Ok(()) => Ok(()),
        Err(not_until) => {
            use governor::clock::Clock;
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            crate::metrics::METRICS
                .rate_limited
                .with_label_values(&["credential"])
                .inc();
            Err(ApiError::rate_limited(wait.as_secs_f64().ceil() as u32))
        }
    }
}

/// Whether a credential's `expires_at` has passed.
fn expired(p: &Principal) -> bool {
    p.expires_at
        .is_some_and(|e| e <= crate::domain::time::now_micros())
}

/// The 401 for a credential whose `expires_at` has passed.
fn expired_error() -> ApiError {
    ApiError::unauthenticated(AuthFailure::Expired, "API key has expired")
}

/// A database key the early path found not cached: the ordinary path then reads it from the
/// key store without reading the key-change counter a second time, and keeps the answer under
/// this ticket.
struct KeyMiss {
    hash: String,
    ticket: Ticket,
}

/// `f` of the caller, when the request's one credential is a configured key (`--api-keys`,
/// the keys document) or a database key the key cache holds ([`crate::auth::key_cache`]: one
/// counter row read), and has not expired: authentication without waiting for a store, for
/// the answers given before routing (`routes::baselines::cached_latest`). `None` for anything
/// else (no credential, a JWT, a database key not cached, any refusal): the request then
/// takes the ordinary path, which answers and counts it.
pub(crate) fn with_known_key<R>(
    state: &AppState,
    req: &HttpRequest,
    f: impl FnOnce(&Principal) -> Option<R>,
) -> Option<R> {
    let mut values = req.headers().get_all(AUTHORIZATION);
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let Ok(Credential::ApiKey(key)) = parse_header(value.to_str().ok()) else {
        return None;
    };
    thread_local! {
        /// The last configured key this thread authenticated, and its hash: a CI fleet's
        /// requests carry few keys, and hashing (SHA-256, then hex) was a third of the cost of
        /// authenticating one. Only a configured key is remembered (never a database key or a
        /// guess), and never in clear: by its [`Remembered`] seal.
        static LAST: std::cell::RefCell<Remembered> = std::cell::RefCell::new(Remembered::new());
    }
    LAST.with(|last| {
        // `f` authenticates nothing itself: the borrow is never taken twice.
        let mut last = last.borrow_mut();
        let seal = last.seal(&key);
        let remembered = !last.hash.is_empty() && bool::from(last.sealed.ct_eq(&seal));
        let hash = if remembered {
            std::mem::take(&mut last.hash)
        } else {
            hash_key(&key)
        };
        let mut f = Some(f);
        let found = state.configured_keys.with(&hash, |k| {
            let f = f.take()?;
            (!expired(&k.principal)).then(|| f(&k.principal))?
        });
        if found.is_some() {
            last.sealed = seal;
            last.hash = hash;
            return found.flatten();
        }
        // Not a configured key: a database key, when cached (never remembered above).
        let (Some(cache), Some(f)) = (&state.key_cache, f) else {
            return None;
        };
        match cache.lookup(&hash) {
            Lookup::Hit(p) if !expired(&p) => f(&p),
            Lookup::Miss(ticket) => {
                req.extensions_mut().insert(KeyMiss { hash, ticket });
                None
            }
            _ => None,
        }
    })
}

/// A thread's last configured key, as [`with_known_key`] remembers it: the key's SHA-256 and a
/// seal that tells the same key again without hashing it, a keyed digest (two SipHash-1-3
/// with this thread's random keys, 128 bits) that says nothing of the key outside this
/// process. Keys are held in memory only as digests.
struct Remembered {
    keys: (std::hash::RandomState, std::hash::RandomState),
    sealed: [u8; 16],
    hash: String,
}

impl Remembered {
    fn new() -> Self {
        Self {
            keys: (std::hash::RandomState::new(), std::hash::RandomState::new()),
            sealed: [0; 16],
            hash: String::new(),
        }
    }

    fn seal(&self, key: &str) -> [u8; 16] {
        use std::hash::BuildHasher;
        let (a, b) = (self.keys.0.hash_one(key), self.keys.1.hash_one(key));
        let mut out = [0; 16];
        out[..8].copy_from_slice(&a.to_le_bytes());
        out[8..].copy_from_slice(&b.to_le_bytes());
        out
    }
}

/// `miss`: what the early path found for this request's key, if it looked.
async fn authenticate(
    state: &AppState,
    header: Option<&str>,
    miss: Option<KeyMiss>,
) -> Result<Principal, ApiError> {
    match parse_header(header)? {
        Credential::Jwt(token) => verify_token(state, &token).await,
        Credential::ApiKey(key) => {
            let (hash, looked_up) = match miss {
                // The early path hashed this very header and found no configured key.
                Some(m) => (m.hash, Some(Lookup::Miss(m.ticket))),
                None => {
                    let hash = hash_key(&key);
                    if let Some(k) = state.configured_keys.get(&hash) {
                        if expired(&k.principal) {
                            return Err(expired_error());
                        }
                        return Ok(k.principal);
                    }
                    let looked_up = state.key_cache.as_ref().map(|c| c.lookup(&hash));
                    (hash, looked_up)
                }
            };
            let ticket = match looked_up {
                Some(Lookup::Hit(p)) if expired(&p) => return Err(expired_error()),
                Some(Lookup::Hit(p)) => return Ok(p),
                Some(Lookup::Miss(t)) => Some(t),
                Some(Lookup::Unchecked) | None => None,
            };
            let found = state
                .keys
                .read(Authenticate {
                    key_hash: hash.clone(),
                })
                .await?;
            match found {
                Ok(Ok(p)) => {
                    if let (Some(cache), Some(t)) = (&state.key_cache, ticket) {
                        cache.fill(t, hash, p.clone());
                    }
                    Ok(p)
                }
                Ok(Err(KeyRejection::Unknown)) => Err(ApiError::unauthenticated(
                    AuthFailure::UnknownKey,
                    "Invalid API key",
                )),
                Ok(Err(KeyRejection::Revoked)) => Err(ApiError::unauthenticated(
                    AuthFailure::Revoked,
                    "API key has been revoked",
                )),
                Ok(Err(KeyRejection::Expired)) => Err(expired_error()),
                Err(e) => Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape() {
        assert!(has_jwt_shape("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig_-x"));
        assert!(!has_jwt_shape("pg_live_abcdefghijklmnopqrstuvwxyz012345"));
        assert!(!has_jwt_shape("a..b"));
        assert!(!has_jwt_shape("a.b.c.d"));
    }

    #[test]
    fn header_parsing() {
        assert_eq!(
            parse_header(None).err().unwrap().message,
            "Missing authentication header"
        );
        assert_eq!(
            parse_header(Some("Bearer nope")).err().unwrap().message,
            "Invalid API key format"
        );
        assert!(matches!(
            parse_header(Some("bearer pg_live_abcdefghijklmnopqrstuvwxyz012345")),
            Ok(Credential::ApiKey(_))
        ));
        assert!(matches!(
            parse_header(Some("Bearer a.b.c")),
            Ok(Credential::Jwt(_))
        ));
        assert!(matches!(
            parse_header(Some("Token x")),
            Ok(Credential::Jwt(_))
        ));
        assert!(parse_header(Some("Basic dXNlcjpwdw==")).is_err());
    }
}
