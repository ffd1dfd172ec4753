//! Static HS256 JWTs (`--jwt-secret`). The algorithm is pinned to HS256; a configured issuer or
//! audience must be present in the token; `exp` and `nbf` are checked with 60 s of leeway
//! (clock skew between the token's issuer and this server).

use jsonwebtoken::{decode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{CredentialKind, Principal, Role, Scope, Scopes};
use crate::config::{ConfigError, ServerConfig};
use crate::domain::names::ProjectName;
use crate::error::{ApiError, AuthFailure};

pub const LEEWAY_SECS: u64 = 60;

/// `aud` may be a string or an array.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub project_id: String,
    pub scopes: Vec<String>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
}

pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl JwtVerifier {
    pub fn from_config(cfg: &ServerConfig) -> Result<Option<JwtVerifier>, ConfigError> {
        let Some(secret) = cfg.jwt_secret.as_ref().map(|s| s.expose()) else {
            if cfg.jwt_issuer.is_some() || cfg.jwt_audience.is_some() {
                return Err(ConfigError(
                    "--jwt-issuer/--jwt-audience need --jwt-secret".into(),
                ));
            }
            return Ok(None);
        };
        if secret.len() < 32 {
            return Err(ConfigError(
                "jwt_secret must be at least 32 bytes long".into(),
            ));
        }
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = LEEWAY_SECS;
        v.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(iss) = &cfg.jwt_issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        match &cfg.jwt_audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        Ok(Some(JwtVerifier {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation: v,
        }))
    }

    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let data =
            decode::<Claims>(token, &self.key, &self.validation).map_err(|e| token_error(&e))?;
        principal_from_claims(&data.claims)
    }
}

/// The most a token's `sub` may hold: it becomes the principal's id, kept in audit events and
/// idempotency records.
const SUB_MAX_BYTES: usize = 256;

/// A token's `sub`, checked before it names a principal: not empty, at most [`SUB_MAX_BYTES`],
/// no control characters (PostgreSQL refuses a NUL in text, so every write of such a principal
/// would fail).
pub(super) fn check_sub(sub: &str) -> Result<(), ApiError> {
    let checked = if sub.is_empty() {
        Err("must not be empty".to_owned())
    } else {
        crate::domain::names::check_text("sub", sub, SUB_MAX_BYTES).map_err(|e| e.reason)
    };
    checked.map_err(|why| {
        ApiError::unauthenticated(
            AuthFailure::InvalidToken,
            format!("Invalid token: sub {why}"),
        )
    })
}

/// A short reason for a rejected token (no token material).
/// The 401 for a token the JWT library refused: `expired` or `invalid_token`.
pub fn token_error(e: &jsonwebtoken::errors::Error) -> ApiError {
    let reason = match e.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthFailure::Expired,
        _ => AuthFailure::InvalidToken,
    };
    ApiError::unauthenticated(reason, format!("Invalid token: {}", describe(e)))
}

pub fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "token has expired".into(),
        K::ImmatureSignature => "token is not valid yet (nbf)".into(),
        K::InvalidIssuer => "wrong or missing issuer".into(),
        K::InvalidAudience => "wrong or missing audience".into(),
        K::InvalidSignature => "bad signature".into(),
        K::InvalidAlgorithm => "algorithm not allowed".into(),
        K::MissingRequiredClaim(c) => format!("missing claim '{c}'"),
        K::Json(_) => "claims do not have the expected shape".into(),
        _ => "malformed token".into(),
    }
}

fn principal_from_claims(c: &Claims) -> Result<Principal, ApiError> {
    let mut scopes = Scopes::default();
    for s in &c.scopes {
        let scope = match s.as_str() {
            "read" => Scope::Read,
            "write" => Scope::Write,
            "promote" => Scope::Promote,
            "delete" => Scope::Delete,
            "admin" => Scope::Admin,
            other => {
                return Err(ApiError::unauthenticated(
                    AuthFailure::InvalidToken,
                    format!("Invalid token: unknown scope '{other}'"),
                ))
            }
        };
        scopes = scopes.with(scope);
    }
    let project = match c.project_id.as_str() {
        "*" => None,
        p => Some(
            ProjectName::parse(p)
                .map_err(|_| {
                    ApiError::unauthenticated(
                        AuthFailure::InvalidToken,
                        "Invalid token: bad project_id",
                    )
                })?
                .into_string(),
        ),
    };
    check_sub(&c.sub)?;
    let mut p = Principal::new(
        format!("jwt:{}", c.sub),
        role_for(scopes),
        project,
        None,
        CredentialKind::Jwt,
    );
    p.scopes = scopes;
    // An `exp` past the year 9999 is as good as never, and still an expiry (keys it creates get
    // one too).
    p.expires_at = Some(crate::domain::time::expiry_from_secs(
        i64::try_from(c.exp).unwrap_or(i64::MAX),
    ));
    Ok(p)
}

/// The role shown for `scopes`: the role with exactly these scopes, else the most privileged
/// role within them (never more than the token holds; checks use the scopes themselves).
pub fn role_for(s: Scopes) -> Role {
    Role::exactly(s)
        .or_else(|| Role::within(s))
        .unwrap_or(Role::Viewer)
}

/// Mints an HS256 token (the `token` operator command and tests).
pub fn mint(secret: &str, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn claims() -> Claims {
        Claims {
            sub: "ci".into(),
            project_id: "proj".into(),
            scopes: vec!["read".into(), "write".into()],
            exp: now() + 600,
            iat: Some(now()),
            nbf: None,
            iss: Some("perfgate".into()),
            aud: Some(Audience::Many(vec!["x".into(), "perfgate-api".into()])),
        }
    }

    fn verifier(iss: Option<&str>, aud: Option<&str>) -> JwtVerifier {
        let mut cfg = ServerConfig::new().jwt_secret(SECRET);
        cfg.jwt_issuer = iss.map(str::to_owned);
        cfg.jwt_audience = aud.map(str::to_owned);
        JwtVerifier::from_config(&cfg).unwrap().unwrap()
    }

    #[test]
    fn accepts_valid_and_maps_claims() {
        let v = verifier(Some("perfgate"), Some("perfgate-api"));
        let p = v.verify(&mint(SECRET, &claims()).unwrap()).unwrap();
        assert_eq!(p.id, "jwt:ci");
        assert_eq!(p.project.as_deref(), Some("proj"));
        assert!(p.scopes.contains(Scope::Write) && !p.scopes.contains(Scope::Promote));
        assert_eq!(p.role, Role::Contributor);
    }

    #[test]
    fn refuses_bad_tokens() {
        let v = verifier(Some("perfgate"), Some("perfgate-api"));
        let reason = |c: &Claims| v.verify(&mint(SECRET, c).unwrap()).unwrap_err().message;
        let mut c = claims();
        c.exp = now() - 3600;
        assert!(reason(&c).contains("expired"));
        let mut c = claims();
        c.nbf = Some(now() + 3600);
        assert!(reason(&c).contains("not valid yet"));
        let mut c = claims();
        c.iss = Some("other".into());
        assert!(reason(&c).contains("issuer"));
        let mut c = claims();
        c.iss = None;
        assert!(reason(&c).contains("iss"), "{}", reason(&c));
        let mut c = claims();
        c.aud = Some(Audience::One("other".into()));
        assert!(reason(&c).contains("audience"));
        let mut c = claims();
        c.aud = None;
        assert!(reason(&c).contains("aud"));
        let mut c = claims();
        c.scopes = vec!["root".into()];
        assert!(reason(&c).contains("unknown scope"));
        // Another secret.
        let t = mint("another-secret-another-secret-xx", &claims()).unwrap();
        assert!(v.verify(&t).unwrap_err().message.contains("signature"));
        // alg: none.
        let t = mint(SECRET, &claims()).unwrap();
        let mut parts: Vec<&str> = t.split('.').collect();
        let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
        parts[0] = none_header;
        parts[2] = "";
        assert!(v.verify(&parts.join(".")).is_err());
        // A nbf within the leeway is fine.
        let mut c = claims();
        c.nbf = Some(now() + 30);
        assert!(v.verify(&mint(SECRET, &c).unwrap()).is_ok());
    }

    #[test]
    fn config_rules() {
        assert!(JwtVerifier::from_config(&ServerConfig::new())
            .unwrap()
            .is_none());
        assert!(JwtVerifier::from_config(&ServerConfig::new().jwt_secret("short")).is_err());
        let mut c = ServerConfig::new();
        c.jwt_issuer = Some("x".into());
        assert!(JwtVerifier::from_config(&c).is_err());
    }
}
