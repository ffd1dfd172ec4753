//! API keys: format, hashing, stable ids, and the `--api-keys` syntax.
//!
//! Keys are never kept in plain text: only `sha256(key)` is held, in memory for configured keys
//! and in the database for created ones. No message here ever contains a key.

use std::collections::HashMap;

use rand::distributions::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};

use super::access::{BenchFilter, CredentialKind, Principal, Role};
use crate::domain::names::{check_not_blank, NameError, ProjectName};
use crate::domain::requests::{is_key_pattern_char, KEY_DESCRIPTION_MAX_BYTES, KEY_PATTERN_MAX};
use crate::domain::time::{now_micros, parse_rfc3339};

/// Most wildcards (`*`, `?`) in the glob of a created key (each one widens the matcher).
pub const KEY_PATTERN_MAX_WILDCARDS: usize = 8;

pub const LIVE_PREFIX: &str = "pg_live_";
pub const TEST_PREFIX: &str = "pg_test_";

/// `pg_live_` or `pg_test_` followed by at least 32 ASCII alphanumerics.
pub fn is_valid_format(key: &str) -> bool {
    let rest = key
        .strip_prefix(LIVE_PREFIX)
        .or_else(|| key.strip_prefix(TEST_PREFIX));
    match rest {
        Some(r) => r.len() >= 32 && r.len() <= 256 && r.bytes().all(|b| b.is_ascii_alphanumeric()),
        None => false,
    }
}

pub fn hash_key(key: &str) -> String {
    crate::domain::digest::sha256_hex(key.as_bytes())
}

/// Stable id of a key: derived from its hash, so a configured key keeps its id (the audit actor)
/// across restarts without the key itself ever being stored.
pub fn key_id_from_hash(hash: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"perfgate-key-id\0");
    h.update(hash.as_bytes());
    hex::encode(h.finalize())[..32].to_owned()
}

/// A new `pg_live_` key with 32 alphanumerics from a CSPRNG (`ThreadRng` is ChaCha seeded from
/// the OS).
pub fn generate_key() -> String {
    let body: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    format!("{LIVE_PREFIX}{body}")
}

/// `pg_live_abcd…` for listings.
pub fn display_prefix(key: &str) -> String {
    format!("{}…", &key[..key.len().min(12)])
}

/// A key from `--api-keys`, as held in memory.
#[derive(Debug, Clone)]
pub struct StaticKey {
    pub principal: Principal,
}

#[derive(Debug, thiserror::Error)]
#[error("--api-keys entry #{index}: {reason}")]
pub struct KeySpecError {
    pub index: usize,
    pub reason: String,
}

/// Parses `role:key[:project[:benchmark_regex]]` entries into a map from key hash to key.
/// Everything after the third colon is the regex (it may contain `:`).
pub fn parse_static_keys<S: AsRef<str>>(
    specs: &[S],
) -> Result<HashMap<String, StaticKey>, KeySpecError> {
    let mut out = HashMap::new();
    for (i, spec) in specs.iter().enumerate() {
        let index = i + 1;
        let fail = |reason: String| KeySpecError { index, reason };
        let mut parts = spec.as_ref().splitn(4, ':');
        let role_s = parts.next().unwrap_or_default();
        let key = parts.next().unwrap_or_default();
        let project = parts.next();
        let regex = parts.next();
        let role = Role::parse(role_s).ok_or_else(|| {
            // The field is echoed only when it cannot be (part of) a secret.
            let shown = if role_s.len() <= 16 && role_s.bytes().all(|b| b.is_ascii_alphabetic()) {
                format!("{role_s:?}")
            } else if role_s.starts_with(LIVE_PREFIX) || role_s.starts_with(TEST_PREFIX) {
                "(not shown: it looks like a key; role and key may be swapped)".to_owned()
            } else {
                "(not shown)".to_owned()
            };
            fail(format!(
                "unknown role {shown} (expected viewer, contributor, promoter or admin; format role:key[:project[:benchmark_regex]])"
            ))
        })?;
        if !is_valid_format(key) {
            return Err(fail(
                "malformed key (expected pg_live_ or pg_test_ followed by at least 32 ASCII letters or digits)".into(),
            ));
        }
        let project = match project {
            None | Some("") | Some("*") => None,
            Some(p) => Some(
                ProjectName::parse(p)
                    .map_err(|e| fail(e.to_string()))?
                    .into_string(),
            ),
        };
        let benchmarks = match regex {
            None | Some("") => None,
            Some(r) => Some(BenchFilter::from_regex(r).map_err(|e| {
                // regex errors span several lines; keep the last (the reason).
                let e = e.to_string();
                let reason = e.lines().last().unwrap_or("").trim_start_matches("error: ");
                fail(format!("invalid benchmark regex {r:?}: {reason}"))
            })?),
        };
        let hash = hash_key(key);
        let principal = Principal::new(
            key_id_from_hash(&hash),
            role,
            project,
            benchmarks,
            CredentialKind::ApiKey,
        );
        if out.insert(hash, StaticKey { principal }).is_some() {
            return Err(fail("the same key is configured twice".into()));
        }
    }
    Ok(out)
}

/// A validated key request (from the HTTP API or the operator command).
#[derive(Debug, Clone)]
pub struct NewKey {
    pub description: String,
    pub role: Role,
    /// A project name or `*`.
    pub project: String,
    pub pattern: Option<String>,
    pub expires_at: Option<i64>,
}

impl NewKey {
    /// Validates a key request (shared with the `keys create` operator command).
    pub fn validate(
        description: &str,
        role: &str,
        project: &str,
        pattern: Option<&str>,
        expires_at: Option<&str>,
    ) -> Result<NewKey, NameError> {
        let description = check_not_blank("description", description, KEY_DESCRIPTION_MAX_BYTES)?;
        let role = Role::parse(role).ok_or_else(|| {
            NameError::new("role", "expected viewer, contributor, promoter or admin")
        })?;
        let project = if project == "*" {
            "*".to_owned()
        } else {
            ProjectName::parse(project)?.into_string()
        };
        let pattern = match pattern {
            None => None,
            Some(p) => {
                if p.is_empty() || p.len() > KEY_PATTERN_MAX || !p.chars().all(is_key_pattern_char)
                {
                    return Err(NameError::new(
                        "pattern",
                        "a glob of 1-128 characters from a-z 0-9 _ . - / * ?",
                    ));
                }
                if p.chars().filter(|c| matches!(c, '*' | '?')).count() > KEY_PATTERN_MAX_WILDCARDS
                {
                    return Err(NameError::new(
                        "pattern",
                        format!("at most {KEY_PATTERN_MAX_WILDCARDS} wildcards ('*' or '?')"),
                    ));
                }
                BenchFilter::from_glob(p)
                    .map_err(|_| NameError::new("pattern", "not a valid glob"))?;
                Some(p.to_owned())
            }
        };
        let expires_at = match expires_at {
            None => None,
            Some(t) => {
                let m = parse_rfc3339(t).ok_or_else(|| {
                    NameError::new("expires_at", "expected an RFC 3339 timestamp")
                })?;
                if m <= now_micros() {
                    return Err(NameError::new("expires_at", "must lie in the future"));
                }
                Some(m)
            }
        };
        Ok(NewKey {
            description: description.to_owned(),
            role,
            project,
            pattern,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "pg_live_abcdefghijklmnopqrstuvwxyz012345";

    #[test]
    fn format() {
        assert!(is_valid_format(K));
        assert!(is_valid_format("pg_test_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"));
        assert!(!is_valid_format("pg_live_short"));
        assert!(!is_valid_format("pg_prod_abcdefghijklmnopqrstuvwxyz012345"));
        assert!(!is_valid_format("pg_live_abcdefghijklmnopqrstuvwxyz01234-"));
        let g = generate_key();
        assert!(is_valid_format(&g), "{g}");
        assert_ne!(g, generate_key());
    }

    #[test]
    fn specs() {
        let keys = parse_static_keys(&[
            format!("admin:{K}"),
            "viewer:pg_test_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345:proj:a:b|c.*".to_owned(),
        ])
        .unwrap();
        let admin = &keys[&hash_key(K)].principal;
        assert_eq!(admin.role, Role::Admin);
        assert!(admin.project.is_none());
        assert_eq!(admin.id, key_id_from_hash(&hash_key(K)));
        assert_eq!(admin.id.len(), 32);
        let v = &keys[&hash_key("pg_test_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345")].principal;
        assert_eq!(v.project.as_deref(), Some("proj"));
        let f = v.benchmarks.as_ref().unwrap();
        assert_eq!(f.source, "a:b|c.*");
        assert!(f.matches("a:b") && f.matches("cx") && !f.matches("a"));
    }

    #[test]
    fn bad_specs_never_echo_the_key() {
        for spec in [
            format!("root:{K}"),
            "admin:pg_live_tooshort".to_owned(),
            format!("admin:{K}:bad/project"),
            format!("admin:{K}:p:(unclosed"),
            format!("{K}:admin"),
            format!("admin={K}"),
        ] {
            let e = parse_static_keys(&[spec]).unwrap_err().to_string();
            assert!(!e.contains("abcdefghijklmnop"), "{e}");
            assert!(!e.contains("tooshort"), "{e}");
            assert!(e.starts_with("--api-keys entry #1"), "{e}");
        }
        let e = parse_static_keys(&[format!("admin:{K}"), format!("viewer:{K}")]).unwrap_err();
        assert_eq!(e.index, 2);
    }
}
