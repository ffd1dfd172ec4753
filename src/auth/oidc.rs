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

use super::{BenchFilter, Principal, Role};
use crate::config::{ConfigError, ServerConfig};
use crate::domain::names::ProjectName;
use crate::error::ApiError;

#[derive(Debug, Clone)]
pub struct Mapping {
    /// Value the provider's identity claim must equal (`org/repo`, `group/project`, …).
    pub subject: String,
    pub project: Option<String>,
    pub role: Role,
    /// Glob over the token's `ref` claim.
    pub ref_pattern: Option<BenchFilter>,
}

pub struct Provider {
    pub name: &'static str,
    pub issuer: String,
    pub jwks_url: String,
    pub audience: String,
    /// Claim holding the identity matched against mappings.
    pub claim: String,
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

fn parse_mapping(spec: &str, with_ref: bool) -> Result<Mapping, String> {
    let parts: Vec<&str> = spec.splitn(4, ':').collect();
    if parts.len() < 3 || parts[0].is_empty() {
        return Err(format!(
            "mapping {spec:?} must look like ID:PROJECT:ROLE{}",
            if with_ref { "[:REF_PATTERN]" } else { "" }
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
        Some(p) if with_ref => {
            Some(BenchFilter::from_glob(p).map_err(|e| format!("bad ref pattern {p:?}: {e}"))?)
        }
        Some(_) => return Err(format!("mapping {spec:?} has too many fields")),
    };
    Ok(Mapping {
        subject: parts[0].to_owned(),
        project,
        role,
        ref_pattern,
    })
}

impl Provider {
    fn new(
        name: &'static str,
        issuer: &str,
        jwks_url: String,
        audience: &str,
        claim: &str,
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
        if audience.is_empty() || claim.is_empty() {
            return Err(format!("{name} OIDC needs an audience and a claim"));
        }
        Ok(Provider {
            name,
            issuer: issuer.trim_end_matches('/').to_owned(),
            jwks_url,
            audience: audience.to_owned(),
            claim: claim.to_owned(),
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
        let (key, key_alg) = self
            .key_or_refresh(kid, client)
            .await
            .ok_or_else(|| ApiError::unauthorized("Invalid token: unknown key id"))?;
        if key_alg != alg {
            return Err(ApiError::unauthorized(
                "Invalid token: algorithm does not match the key",
            ));
        }
        let mut v = Validation::new(alg);
        v.leeway = super::jwt::LEEWAY_SECS;
        v.validate_nbf = true;
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data =
            decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &v).map_err(|e| {
                ApiError::unauthorized(format!("Invalid token: {}", super::jwt::describe(&e)))
            })?;
        let claims = data.claims;
        let sub = claims
            .get("sub")
            .and_then(|s| s.as_str())
            .unwrap_or_default();
        let identity = claims.get(&self.claim).and_then(|s| s.as_str());
        let git_ref = claims.get("ref").and_then(|s| s.as_str());
        // The most privileged matching mapping wins.
        let best = self
            .mappings
            .iter()
            .filter(|m| Some(m.subject.as_str()) == identity)
            .filter(|m| match (&m.ref_pattern, git_ref) {
                (None, _) => true,
                (Some(p), Some(r)) => p.matches(r),
                (Some(_), None) => false,
            })
            .max_by_key(|m| m.role)
            .ok_or_else(|| {
                ApiError::forbidden(format!("No {} OIDC mapping matches this token", self.name))
            })?;
        Ok(Principal {
            id: format!("oidc:{sub}"),
            role: best.role,
            scopes: best.role.scopes(),
            project: best.project.clone(),
            benchmarks: None,
        })
    }
}

/// Every configured provider. Errors name the flag and never contain token material.
pub fn providers_from_config(cfg: &ServerConfig) -> Result<Vec<Arc<Provider>>, ConfigError> {
    let min = Duration::from_secs(cfg.jwks_min_refresh_interval.max(1));
    let mut out = Vec::new();
    let maps = |flag: &str, specs: &[String]| -> Result<Vec<Mapping>, ConfigError> {
        specs
            .iter()
            .map(|s| parse_mapping(s, true).map_err(|e| ConfigError(format!("{flag}: {e}"))))
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
                maps("--github-oidc", &cfg.github_oidc)?,
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
                maps("--gitlab-oidc", &cfg.gitlab_oidc)?,
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
            .map(|m| parse_mapping(m, true).map_err(fail))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(Arc::new(
            Provider::new(
                "custom",
                get("issuer")?,
                get("jwks_url")?.to_owned(),
                get("audience")?,
                get("claim")?,
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
        let m = parse_mapping("org/repo:proj:promoter:refs/heads/main", true).unwrap();
        assert_eq!(m.subject, "org/repo");
        assert_eq!(m.project.as_deref(), Some("proj"));
        assert_eq!(m.role, Role::Promoter);
        assert!(m.ref_pattern.as_ref().unwrap().matches("refs/heads/main"));
        assert!(!m.ref_pattern.as_ref().unwrap().matches("refs/pull/1/merge"));
        let m = parse_mapping("org/repo:*:viewer", true).unwrap();
        assert!(m.project.is_none() && m.ref_pattern.is_none());
        assert!(parse_mapping("org/repo:proj", true).is_err());
        assert!(parse_mapping("org/repo:proj:root", true).is_err());
        assert!(parse_mapping("org/repo:bad/proj:viewer", true).is_err());
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
