//! OIDC tokens from CI providers (GitHub Actions, GitLab CI, or any issuer with a JWKS),
//! RS256 and ES256.
//!
//! Each provider keeps the last good JWKS. Keys are fetched at start-up, refreshed periodically,
//! and refreshed on demand when a token names an unknown `kid` (at most once per
//! `jwks_min_refresh_interval`). A failed fetch keeps the old keys and is retried; it never
//! disables the provider.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{BenchFilter, CredentialKind, Grant, Principal, Role};
use crate::config::{ConfigError, ServerConfig};
use crate::domain::names::ProjectName;
use crate::error::{ApiError, AuthFailure};

#[derive(Debug, Clone)]
pub struct Mapping {
    /// Value the provider's identity claim must equal (`org/repo`, `group/project`, …).
    pub subject: String,
    pub project: Option<String>,
    pub role: Role,
    /// Glob over the token's full git ref (`refs/heads/main`, `refs/tags/v1`; see [`RefStyle`]).
    pub ref_pattern: Option<BenchFilter>,
    /// Only tokens whose `ref_protected` claim is true (a protected branch or tag).
    pub protected_only: bool,
}

/// Where a provider's tokens say which git ref they were issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefStyle {
    /// The `ref` claim is the full ref (`refs/heads/main`): GitHub, custom providers.
    FullRef,
    /// GitLab: `ref` is a bare name, `ref_type` says `branch` or `tag`; `ref_path` (GitLab 16)
    /// is the full ref. A pattern without `refs/` means a branch (`main` = `refs/heads/main`).
    GitLab,
}

impl RefStyle {
    /// The full ref of a token, or `None` when the token does not say.
    fn full_ref(self, claims: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
        let get = |k: &str| claims.get(k).and_then(|v| v.as_str());
        match self {
            RefStyle::FullRef => get("ref").map(str::to_owned),
            RefStyle::GitLab => {
                if let Some(p) = get("ref_path") {
                    return Some(p.to_owned());
                }
                let name = get("ref")?;
                match get("ref_type")? {
                    "branch" => Some(format!("refs/heads/{name}")),
                    "tag" => Some(format!("refs/tags/{name}")),
                    _ => None,
                }
            }
        }
    }
}

/// `ref_protected` is `true` or `"true"`.
fn ref_protected(claims: &serde_json::Map<String, serde_json::Value>) -> bool {
    match claims.get("ref_protected") {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => s == "true",
        _ => false,
    }
}

pub struct Provider {
    pub name: &'static str,
    pub issuer: String,
    pub jwks_url: String,
    pub audience: String,
    /// Claim holding the identity matched against mappings.
    pub claim: String,
    pub ref_style: RefStyle,
    pub mappings: Vec<Mapping>,
    keys: RwLock<HashMap<String, (DecodingKey, Algorithm)>>,
    refresh: tokio::sync::Mutex<Option<Instant>>,
    min_refresh: Duration,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("jwks_url", &self.jwks_url)
            .finish()
    }
}

/// `ID:PROJECT:ROLE[:REF_PATTERN[:protected]]`. Git refs cannot contain `:`, so the fields
/// split on every colon; an empty `REF_PATTERN` means any ref (`ID:PROJECT:ROLE::protected`).
fn parse_mapping(spec: &str, style: RefStyle) -> Result<Mapping, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    if parts.len() < 3 || parts.len() > 5 || parts[0].is_empty() {
        return Err(format!(
            "mapping {spec:?} must look like ID:PROJECT:ROLE[:REF_PATTERN[:protected]]"
        ));
    }
    let role = Role::parse(parts[2]).ok_or_else(|| format!("unknown role {:?}", parts[2]))?;
    let project = match parts[1] {
        "*" => None,
        p => Some(
            ProjectName::parse(p)
                .map_err(|e| e.to_string())?
                .into_string(),
        ),
    };
    let ref_pattern = match parts.get(3) {
        None | Some(&"") => None,
        Some(p) => {
            let full = match style {
                RefStyle::GitLab if !p.starts_with("refs/") => format!("refs/heads/{p}"),
                _ => (*p).to_owned(),
            };
            Some(BenchFilter::from_glob(&full).map_err(|e| format!("bad ref pattern {p:?}: {e}"))?)
        }
    };
    let protected_only = match parts.get(4) {
        None => false,
        Some(&"protected") => true,
        Some(other) => {
            return Err(format!(
                "mapping {spec:?}: the fifth field must be 'protected', got {other:?}"
            ))
        }
    };
    Ok(Mapping {
        subject: parts[0].to_owned(),
        project,
        role,
        ref_pattern,
        protected_only,
    })
}

impl Provider {
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: &'static str,
        issuer: &str,
        jwks_url: String,
        audience: &str,
        claim: &str,
        ref_style: RefStyle,
        mappings: Vec<Mapping>,
        min_refresh: Duration,
    ) -> Result<Provider, String> {
        for (what, url) in [("issuer", issuer), ("jwks_url", jwks_url.as_str())] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(format!(
                    "{name} OIDC {what} must be an http(s) URL, got {url:?}"
                ));
            }
        }
        // Signing keys fetched in clear text could be replaced on the way: plain http only to
        // this machine (tests, a local proxy).
        if jwks_url.starts_with("http://") && !is_loopback_url(&jwks_url) {
            return Err(format!(
                "{name} OIDC JWKS URL {jwks_url:?} must use https:// (plain http:// is allowed for loopback hosts only)"
            ));
        }
        if audience.is_empty() || claim.is_empty() {
            return Err(format!("{name} OIDC needs an audience and a claim"));
        }
        Ok(Provider {
            name,
            issuer: issuer.trim_end_matches('/').to_owned(),
            jwks_url,
            audience: audience.to_owned(),
            claim: claim.to_owned(),
            ref_style,
            mappings,
            keys: RwLock::new(HashMap::new()),
            refresh: tokio::sync::Mutex::new(None),
            min_refresh,
        })
    }

    /// Fetches the JWKS and replaces the keys; on failure the old keys stay.
    pub async fn refresh(&self, client: &reqwest::Client) -> Result<usize, String> {
        let mut last = self.refresh.lock().await;
        *last = Some(Instant::now());
        let body: serde_json::Value = client
            .get(&self.jwks_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("fetching {}: {e}", self.jwks_url))?
            .json()
            .await
            .map_err(|e| format!("parsing {}: {e}", self.jwks_url))?;
        let keys = body
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or_else(|| format!("{} has no 'keys' array", self.jwks_url))?;
        let mut map = HashMap::new();
        for k in keys {
            // One odd key must not hide the others.
            let Ok(jwk) = serde_json::from_value::<Jwk>(k.clone()) else {
                continue;
            };
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let alg = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                _ => continue,
            };
            if let Ok(key) = DecodingKey::from_jwk(&jwk) {
                map.insert(kid, (key, alg));
            }
        }
        let n = map.len();
        if n == 0 {
            // Keys that cannot be used must not replace usable ones: a failed fetch.
            return Err(format!(
                "{} has no usable signing key (RS256 or ES256 with a kid); keeping the keys held",
                self.jwks_url
            ));
        }
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = map;
        Ok(n)
    }

    fn key(&self, kid: &str) -> Option<(DecodingKey, Algorithm)> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(kid)
            .cloned()
    }

    async fn key_or_refresh(
        &self,
        kid: &str,
        client: &reqwest::Client,
    ) -> Option<(DecodingKey, Algorithm)> {
        if let Some(k) = self.key(kid) {
            return Some(k);
        }
        // Unknown kid: maybe the provider rotated its keys. Refresh, rate-limited.
        let due = {
            let last = self.refresh.lock().await;
            last.is_none_or(|t| t.elapsed() >= self.min_refresh)
        };
        if due {
            match self.refresh(client).await {
                Ok(n) => log::info!("{} JWKS refreshed for unknown kid: {n} keys", self.name),
                Err(e) => log::warn!("{} JWKS refresh failed: {e}", self.name),
            }
        }
        self.key(kid)
    }

    pub async fn verify(
        &self,
        token: &str,
        kid: &str,
        alg: Algorithm,
        client: &reqwest::Client,
    ) -> Result<Principal, ApiError> {
        let (key, key_alg) = self.key_or_refresh(kid, client).await.ok_or_else(|| {
            ApiError::unauthenticated(AuthFailure::InvalidToken, "Invalid token: unknown key id")
        })?;
        if key_alg != alg {
            return Err(ApiError::unauthenticated(
                AuthFailure::InvalidToken,
                "Invalid token: algorithm does not match the key",
            ));
        }
        let mut v = Validation::new(alg);
        v.leeway = super::jwt::LEEWAY_SECS;
        v.validate_nbf = true;
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &v)
            .map_err(|e| super::jwt::token_error(&e))?;
        let claims = data.claims;
        let sub = claims
            .get("sub")
            .and_then(|s| s.as_str())
            .unwrap_or_default();
        super::jwt::check_sub(sub)?;
        let identity = claims.get(&self.claim).and_then(|s| s.as_str());
        let git_ref = self.ref_style.full_ref(&claims);
        let protected = ref_protected(&claims);
        let matching: Vec<&Mapping> = self
            .mappings
            .iter()
            .filter(|m| Some(m.subject.as_str()) == identity)
            .filter(|m| match (&m.ref_pattern, &git_ref) {
                (None, _) => true,
                (Some(p), Some(r)) => p.matches(r),
                (Some(_), None) => false,
            })
            .filter(|m| !m.protected_only || protected)
            .collect();
        let mut p = principal_of_mappings(&matching, format!("oidc:{}:{sub}", self.issuer))
            .ok_or_else(|| {
                ApiError::forbidden(format!("No {} OIDC mapping matches this token", self.name))
            })?;
        p.expires_at = claims
            .get("exp")
            .and_then(|v| v.as_i64())
            .map(crate::domain::time::expiry_from_secs);
        Ok(p)
    }
}

/// The principal holding the union of the grants of every matching mapping (order does not
/// matter): one grant per project, the most privileged first (it is the one that
/// administers, see [`Principal`]).
fn principal_of_mappings(matching: &[&Mapping], id: String) -> Option<Principal> {
    let mut grants: Vec<Grant> = Vec::new();
    for m in matching {
        match grants.iter_mut().find(|g| g.project == m.project) {
            Some(g) => g.scopes = g.scopes.union(m.role.scopes()),
            None => grants.push(Grant {
                project: m.project.clone(),
                scopes: m.role.scopes(),
            }),
        }
    }
    // Most scopes first; then every-project before one project; then by name.
    grants.sort_by(|a, b| {
        let rank = |g: &Grant| g.scopes.iter().count();
        rank(b)
            .cmp(&rank(a))
            .then_with(|| a.project.is_some().cmp(&b.project.is_some()))
            .then_with(|| a.project.cmp(&b.project))
    });
    let mut grants = grants.into_iter();
    let first = grants.next()?;
    let role = super::jwt::role_for(first.scopes);
    let mut p = Principal::new(id, role, first.project, None, CredentialKind::Oidc);
    p.scopes = first.scopes;
    p.more = grants.collect();
    Some(p)
}

/// `http://` to this machine (`localhost`, `127.0.0.0/8`, `::1`).
fn is_loopback_url(url: &str) -> bool {
    let Some(host) = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
    else {
        return false;
    };
    match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Every configured provider. Errors name the flag and never contain token material.
pub fn providers_from_config(cfg: &ServerConfig) -> Result<Vec<Arc<Provider>>, ConfigError> {
    let min = Duration::from_secs(cfg.jwks_min_refresh_interval.max(1));
    let mut out = Vec::new();
    let maps = |flag: &str, specs: &[String], style| -> Result<Vec<Mapping>, ConfigError> {
        specs
            .iter()
            .map(|s| parse_mapping(s, style).map_err(|e| ConfigError(format!("{flag}: {e}"))))
            .collect()
    };
    if !cfg.github_oidc.is_empty() {
        let iss = cfg.github_oidc_issuer.trim_end_matches('/');
        out.push(Arc::new(
            Provider::new(
                "GitHub",
                iss,
                format!("{iss}/.well-known/jwks"),
                &cfg.github_oidc_audience,
                "repository",
                RefStyle::FullRef,
                maps("--github-oidc", &cfg.github_oidc, RefStyle::FullRef)?,
                min,
            )
            .map_err(ConfigError)?,
        ));
    }
    if !cfg.gitlab_oidc.is_empty() {
        let iss = cfg.gitlab_oidc_issuer.trim_end_matches('/');
        out.push(Arc::new(
            Provider::new(
                "GitLab",
                iss,
                format!("{iss}/-/jwks"),
                &cfg.gitlab_oidc_audience,
                "project_path",
                RefStyle::GitLab,
                maps("--gitlab-oidc", &cfg.gitlab_oidc, RefStyle::GitLab)?,
                min,
            )
            .map_err(ConfigError)?,
        ));
    }
    for spec in &cfg.oidc_provider {
        let fail = |m: String| ConfigError(format!("--oidc-provider: {m}"));
        let mut fields: HashMap<&str, &str> = HashMap::new();
        for part in spec.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| fail(format!("expected key=value, got {part:?}")))?;
            if fields.insert(k.trim(), v.trim()).is_some() {
                return Err(fail(format!("{k} given twice")));
            }
        }
        for k in fields.keys() {
            if !["issuer", "jwks_url", "audience", "claim", "mapping"].contains(k) {
                return Err(fail(format!("unknown field {k:?}")));
            }
        }
        let get = |k: &str| {
            fields
                .get(k)
                .copied()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| fail(format!("missing {k}=")))
        };
        let mappings = get("mapping")?
            .split(';')
            .filter(|m| !m.is_empty())
            .map(|m| parse_mapping(m, RefStyle::FullRef).map_err(fail))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(Arc::new(
            Provider::new(
                "custom",
                get("issuer")?,
                get("jwks_url")?.to_owned(),
                get("audience")?,
                get("claim")?,
                RefStyle::FullRef,
                mappings,
                min,
            )
            .map_err(fail)?,
        ));
    }
    Ok(out)
}

#[derive(Deserialize)]
struct IssuerOnly {
    iss: Option<String>,
}

/// The provider a token claims to come from (unverified; verification follows).
pub fn provider_for<'a>(providers: &'a [Arc<Provider>], token: &str) -> Option<&'a Arc<Provider>> {
    let claims: IssuerOnly = jsonwebtoken::dangerous::insecure_decode_claims(token).ok()?;
    let iss = claims.iss?;
    let iss = iss.trim_end_matches('/');
    providers.iter().find(|p| p.issuer == iss)
}

/// Keeps every provider's keys fresh: fetch now, then every `interval`; after a failure retry
/// sooner (5 s, doubling up to the interval).
pub async fn refresh_loop(
    providers: Vec<Arc<Provider>>,
    client: reqwest::Client,
    interval: Duration,
) {
    let mut backoff: HashMap<String, Duration> = HashMap::new();
    loop {
        let mut next = interval;
        for p in &providers {
            match p.refresh(&client).await {
                Ok(n) => {
                    backoff.remove(&p.issuer);
                    log::info!("{} OIDC: {n} signing keys from {}", p.name, p.jwks_url);
                }
                Err(e) => {
                    let b = backoff
                        .get(&p.issuer)
                        .map(|b| (*b * 2).min(interval))
                        .unwrap_or(Duration::from_secs(5).min(interval));
                    backoff.insert(p.issuer.clone(), b);
                    next = next.min(b);
                    log::warn!("{} OIDC: JWKS fetch failed, retrying in {b:?}: {e}", p.name);
                }
            }
        }
        tokio::time::sleep(next).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_parse() {
        let m = parse_mapping("org/repo:proj:promoter:refs/heads/main", RefStyle::FullRef).unwrap();
        assert_eq!(m.subject, "org/repo");
        assert_eq!(m.project.as_deref(), Some("proj"));
        assert_eq!(m.role, Role::Promoter);
        assert!(m.ref_pattern.as_ref().unwrap().matches("refs/heads/main"));
        assert!(!m.ref_pattern.as_ref().unwrap().matches("refs/pull/1/merge"));
        let m = parse_mapping("org/repo:*:viewer", RefStyle::FullRef).unwrap();
        assert!(m.project.is_none() && m.ref_pattern.is_none());
        assert!(parse_mapping("org/repo:proj", RefStyle::FullRef).is_err());
        assert!(parse_mapping("org/repo:proj:root", RefStyle::FullRef).is_err());
        assert!(parse_mapping("org/repo:bad/proj:viewer", RefStyle::FullRef).is_err());
        // GitLab: a bare pattern is a branch; tags must be named as tags.
        let m = parse_mapping("g/p:proj:promoter:main:protected", RefStyle::GitLab).unwrap();
        assert!(m.protected_only);
        assert!(m.ref_pattern.as_ref().unwrap().matches("refs/heads/main"));
        assert!(!m.ref_pattern.as_ref().unwrap().matches("refs/tags/main"));
        let m = parse_mapping("g/p:proj:viewer::protected", RefStyle::GitLab).unwrap();
        assert!(m.protected_only && m.ref_pattern.is_none());
        assert!(parse_mapping("g/p:proj:viewer:main:always", RefStyle::GitLab).is_err());
        assert!(parse_mapping("g/p:proj:viewer:main:protected:x", RefStyle::GitLab).is_err());
    }

    #[test]
    fn gitlab_full_refs() {
        let c = |v: serde_json::Value| v.as_object().unwrap().clone();
        let g = RefStyle::GitLab;
        assert_eq!(
            g.full_ref(&c(serde_json::json!({"ref": "main", "ref_type": "tag"}))),
            Some("refs/tags/main".into())
        );
        assert_eq!(
            g.full_ref(&c(serde_json::json!({"ref": "main", "ref_type": "branch"}))),
            Some("refs/heads/main".into())
        );
        assert_eq!(
            g.full_ref(&c(
                serde_json::json!({"ref": "main", "ref_type": "tag", "ref_path": "refs/tags/main"})
            )),
            Some("refs/tags/main".into())
        );
        assert_eq!(g.full_ref(&c(serde_json::json!({"ref": "main"}))), None);
    }

    #[test]
    fn plain_http_jwks_only_on_loopback() {
        for ok in [
            "http://127.0.0.1:9/k",
            "http://localhost/k",
            "http://[::1]:8/k",
            "https://x/k",
        ] {
            assert!(ok.starts_with("https") || is_loopback_url(ok), "{ok}");
        }
        for bad in [
            "http://idp.example.com/k",
            "http://10.0.0.1/k",
            "http://127.0.0.1.evil.com/k",
        ] {
            assert!(!is_loopback_url(bad), "{bad}");
        }
        let mut c = ServerConfig::new();
        c.oidc_provider = vec![
            "issuer=https://idp.example,jwks_url=http://idp.example/keys,audience=a,claim=c,mapping=x:p:viewer".into(),
        ];
        assert!(providers_from_config(&c)
            .unwrap_err()
            .0
            .contains("https://"));
    }

    #[test]
    fn provider_config() {
        let mut c = ServerConfig::new();
        c.github_oidc = vec!["org/repo:proj:contributor".into()];
        c.oidc_provider = vec![
            "issuer=https://idp.example,jwks_url=https://idp.example/keys,audience=perfgate,claim=team,mapping=core:proj:admin;web:*:viewer".into(),
        ];
        let ps = providers_from_config(&c).unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(
            ps[0].jwks_url,
            "https://token.actions.githubusercontent.com/.well-known/jwks"
        );
        assert_eq!(ps[0].claim, "repository");
        assert_eq!(ps[1].mappings.len(), 2);
        assert_eq!(ps[1].claim, "team");
        let mut c = ServerConfig::new();
        c.oidc_provider = vec!["issuer=https://x,audience=a,claim=c,mapping=a:b:viewer".into()];
        assert!(providers_from_config(&c)
            .unwrap_err()
            .0
            .contains("jwks_url"));
        let mut c = ServerConfig::new();
        c.gitlab_oidc = vec!["group/proj:p:nope".into()];
        assert!(providers_from_config(&c)
            .unwrap_err()
            .0
            .contains("--gitlab-oidc"));
    }
}
