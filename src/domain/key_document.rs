//! API keys from a document: the format perfgate 0.18.1 reads with `--api-keys-file`,
//! `--api-keys-env` and `--api-keys-command`.
//!
//! A document is JSON or TOML: a bare JSON array of entries, or an object (a TOML table) with
//! one array `keys` or `api_keys`. Each entry:
//!
//! ```text
//! { "id": "ci-promoter", "role": "promoter", "project": "my-project",
//!   "benchmark_regex": "^bench-.*$", "expires_at": "2027-01-01T00:00:00Z",
//!   "secret": "pg_live_…" }
//! ```
//!
//! `project` defaults to `default` (`*` means every project), `benchmark_regex` and
//! `expires_at` are optional. The `id` is the audit actor. Unknown fields are refused (a
//! misspelt `benchmark_regex` or `expires_at` would otherwise widen the key silently).
//!
//! As with `--api-keys`, only `sha256(secret)` is kept, and no message here ever contains a
//! secret (or any value that could be one: parse errors give positions, not text).

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::access::{BenchFilter, CredentialKind, Principal, Role};
use super::api_keys::{hash_key, is_valid_format, StaticKey};
use super::names::ProjectName;
use super::time::parse_rfc3339;

/// Longest entry id (the audit actor).
pub const ID_MAX_BYTES: usize = 128;

/// Why a document was refused: one line, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DocumentError(pub String);

/// The keys of a document, by SHA-256 of the secret (like [`super::api_keys::parse_static_keys`]);
/// each principal's id is its entry's `id`.
pub type DocumentKeys = HashMap<String, StaticKey>;

/// Parses and validates a whole document; the first bad entry refuses all of it. An empty
/// document holds no keys.
pub fn parse_document(text: &str) -> Result<DocumentKeys, DocumentError> {
    let doc = to_value(text)?;
    let entries = entries_of(doc)?;
    let mut out: DocumentKeys = HashMap::with_capacity(entries.len());
    let mut ids: HashMap<String, usize> = HashMap::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let index = i + 1;
        let (hash, key) = parse_entry(index, entry)?;
        let id = key.principal.id.clone();
        if let Some(first) = ids.insert(id.clone(), index) {
            return Err(DocumentError(format!(
                "entry #{index} ('{id}'): id already used by entry #{first} (ids are the audit actors and must be unique)"
            )));
        }
        if let Some(other) = out.get(&hash) {
            return Err(DocumentError(format!(
                "entry #{index} ('{id}'): same secret as entry '{}'",
                other.principal.id
            )));
        }
        out.insert(hash, key);
    }
    Ok(out)
}

/// `keys` (from `--api-keys`) and `document` together; refused when a secret or an id appears in
/// both.
pub fn merge(
    fixed: &HashMap<String, StaticKey>,
    document: &DocumentKeys,
) -> Result<HashMap<String, StaticKey>, DocumentError> {
    let mut out = fixed.clone();
    for (hash, key) in document {
        let id = &key.principal.id;
        if fixed.contains_key(hash) {
            return Err(DocumentError(format!(
                "entry '{id}': its secret is also configured with --api-keys"
            )));
        }
        if fixed.values().any(|k| &k.principal.id == id) {
            return Err(DocumentError(format!(
                "entry '{id}': id already used by a key of --api-keys"
            )));
        }
        out.insert(hash.clone(), key.clone());
    }
    Ok(out)
}

/// Parses JSON, else TOML, into one JSON value.
fn to_value(text: &str) -> Result<Value, DocumentError> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    // `[[keys]]` and `[keys]` are TOML; `[{…}]`, `[]` and `{…}` are JSON.
    let looks_json = t.starts_with('{')
        || (t.starts_with('[')
            && matches!(t[1..].trim_start().chars().next(), Some('{' | ']') | None));
    let json_err = match serde_json::from_str::<Value>(t) {
        Ok(v) => return Ok(v),
        // serde_json's syntax errors name a position and what was expected, never the text.
        Err(e) => e.to_string(),
    };
    if looks_json {
        return Err(DocumentError(format!("not valid JSON: {json_err}")));
    }
    match toml::from_str::<toml::Table>(t) {
        Ok(table) => Ok(toml_to_json(toml::Value::Table(table))),
        Err(e) => {
            let at = match e.span() {
                Some(span) => {
                    let before = &t[..span.start.min(t.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!(" at line {line} column {column}")
                }
                None => String::new(),
            };
            // The message names what was expected; the source snippet that `Display` adds is
            // left out, and so is any quoted name but the document's own fields (a TOML key
            // can be any text, a pasted secret too).
            let msg = e.message().lines().next().unwrap_or("syntax error").trim();
            Err(DocumentError(format!(
                "neither JSON nor TOML: TOML{at}: {}",
                only_field_names(msg)
            )))
        }
    }
}

/// `msg` with every `` `quoted` `` text that is neither one of the document's field names nor
/// punctuation shown as `` `…` ``.
fn only_field_names(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut parts = msg.split('`');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    let rest: Vec<&str> = parts.collect();
    // Odd pieces are quoted when a closing backtick follows.
    for (i, piece) in rest.iter().enumerate() {
        out.push('`');
        let quoted = i % 2 == 0 && i + 1 < rest.len();
        // Punctuation (`expected `=``) is shown: it cannot hold a secret.
        let harmless = FIELDS.contains(piece)
            || ["keys", "api_keys"].contains(piece)
            || !piece.chars().any(char::is_alphanumeric);
        if quoted && !harmless {
            out.push('…');
        } else if i % 2 == 0 && i + 1 == rest.len() {
            // An unclosed quote: nothing after it is shown.
            out.push('…');
        } else {
            out.push_str(piece);
        }
    }
    out
}

fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => Value::from(f),
        toml::Value::Boolean(b) => Value::Bool(b),
        // `expires_at = 2027-01-01T00:00:00Z` (a TOML date-time) reads as its RFC 3339 text.
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

/// A field name, shown only when it cannot be a secret.
fn shown_name(name: &str) -> String {
    if name.len() <= 32 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        format!("'{name}'")
    } else {
        "(name not shown)".to_owned()
    }
}

fn entries_of(doc: Value) -> Result<Vec<Value>, DocumentError> {
    match doc {
        Value::Array(entries) => Ok(entries),
        Value::Object(mut map) => {
            if let Some(other) = map.keys().find(|k| *k != "keys" && *k != "api_keys") {
                return Err(DocumentError(format!(
                    "unknown top-level field {} (expected 'keys' or 'api_keys')",
                    shown_name(other)
                )));
            }
            let (name, list) = match (map.remove("keys"), map.remove("api_keys")) {
                (Some(k), None) => ("keys", k),
                (None, Some(k)) => ("api_keys", k),
                (Some(_), Some(_)) => {
                    return Err(DocumentError(
                        "document must not contain both 'keys' and 'api_keys'".into(),
                    ))
                }
                (None, None) => {
                    return Err(DocumentError(
                        "document must contain either 'keys' or 'api_keys'".into(),
                    ))
                }
            };
            match list {
                Value::Array(entries) => Ok(entries),
                _ => Err(DocumentError(format!(
                    "'{name}' must be an array of entries"
                ))),
            }
        }
        _ => Err(DocumentError(
            "a document is an array of entries, or an object with 'keys' or 'api_keys'".into(),
        )),
    }
}

const FIELDS: &[&str] = &[
    "id",
    "role",
    "project",
    "benchmark_regex",
    "expires_at",
    "secret",
];

fn parse_entry(index: usize, entry: Value) -> Result<(String, StaticKey), DocumentError> {
    let Value::Object(mut map) = entry else {
        return Err(DocumentError(format!("entry #{index}: not an object")));
    };
    // The id first, so later errors can name the entry.
    let id = match map.remove("id") {
        Some(Value::String(id)) => id,
        Some(_) => {
            return Err(DocumentError(format!(
                "entry #{index}: 'id' must be a string"
            )))
        }
        None => return Err(DocumentError(format!("entry #{index}: 'id' is missing"))),
    };
    let id_ok = !id.trim().is_empty()
        && id.len() <= ID_MAX_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@/+".contains(&b));
    if !id_ok {
        return Err(DocumentError(format!(
            "entry #{index}: invalid 'id' (1-{ID_MAX_BYTES} letters, digits or . _ - @ / +)"
        )));
    }
    let fail = |reason: String| DocumentError(format!("entry #{index} ('{id}'): {reason}"));
    if let Some(other) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(fail(format!(
            "unknown field {} (expected {})",
            shown_name(other),
            FIELDS.join(", ")
        )));
    }
    let text = |map: &mut Map<String, Value>, field: &str| match map.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(fail(format!("'{field}' must be a string"))),
    };
    let role_s = text(&mut map, "role")?.ok_or_else(|| fail("'role' is missing".into()))?;
    let secret = text(&mut map, "secret")?.ok_or_else(|| fail("'secret' is missing".into()))?;
    let project = text(&mut map, "project")?;
    let regex = text(&mut map, "benchmark_regex")?;
    let expires = text(&mut map, "expires_at")?;

    let role = Role::parse(&role_s).ok_or_else(|| {
        let shown = if role_s.len() <= 16 && role_s.bytes().all(|b| b.is_ascii_alphabetic()) {
            format!("{role_s:?}")
        } else {
            "(not shown)".to_owned()
        };
        fail(format!(
            "unknown role {shown} (expected viewer, contributor, promoter or admin)"
        ))
    })?;
    if !is_valid_format(&secret) {
        return Err(fail(
            "malformed secret (expected pg_live_ or pg_test_ followed by 32 to 256 ASCII letters or digits)"
                .into(),
        ));
    }
    let project = match project.as_deref() {
        None => Some("default".to_owned()),
        Some("*") => None,
        Some(p) => Some(
            ProjectName::parse(p)
                .map_err(|e| fail(e.to_string()))?
                .into_string(),
        ),
    };
    let benchmarks = match regex.as_deref() {
        None | Some("") => None,
        Some(r) => Some(BenchFilter::from_regex(r).map_err(|e| {
            let e = e.to_string();
            let reason = e.lines().last().unwrap_or("").trim_start_matches("error: ");
            fail(format!("invalid benchmark_regex {r:?}: {reason}"))
        })?),
    };
    let expires_at = match expires.as_deref() {
        None => None,
        Some(t) => Some(parse_rfc3339(t).ok_or_else(|| {
            fail("'expires_at' must be an RFC 3339 timestamp (2027-01-01T00:00:00Z)".into())
        })?),
    };
    let mut principal = Principal::new(
        id.clone(),
        role,
        project,
        benchmarks,
        CredentialKind::ApiKey,
    );
    principal.expires_at = expires_at;
    Ok((hash_key(&secret), StaticKey { principal }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S1: &str = "pg_live_abcdefghijklmnopqrstuvwxyz012345";
    const S2: &str = "pg_test_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

    fn ids(keys: &DocumentKeys) -> Vec<String> {
        let mut v: Vec<String> = keys.values().map(|k| k.principal.id.clone()).collect();
        v.sort();
        v
    }

    #[test]
    fn every_shape_perfgate_reads() {
        let array = format!(
            r#"[{{"id":"ci","role":"promoter","project":"my-project","benchmark_regex":"bench-.*","secret":"{S1}"}},
                {{"id":"dash","role":"viewer","secret":"{S2}","expires_at":"2099-01-01T00:00:00Z"}}]"#
        );
        let keys_obj = format!(r#"{{"keys":[{{"id":"ci","role":"admin","secret":"{S1}"}}]}}"#);
        let api_keys_obj =
            format!(r#"{{"api_keys":[{{"id":"ci","role":"admin","secret":"{S1}"}}]}}"#);
        let toml_keys = format!(
            "[[keys]]\nid = \"ci\"\nrole = \"admin\"\nproject = \"*\"\nsecret = \"{S1}\"\nexpires_at = 2099-01-01T00:00:00Z\n"
        );
        let toml_api_keys =
            format!("[[api_keys]]\nid = \"ci\"\nrole = \"admin\"\nsecret = \"{S1}\"\n");
        let k = parse_document(&array).unwrap();
        assert_eq!(ids(&k), ["ci", "dash"]);
        let ci = &k[&hash_key(S1)].principal;
        assert_eq!(ci.role, Role::Promoter);
        assert_eq!(ci.project.as_deref(), Some("my-project"));
        assert!(ci.benchmarks.as_ref().unwrap().matches("bench-a"));
        assert!(!ci.benchmarks.as_ref().unwrap().matches("other"));
        assert_eq!(ci.expires_at, None);
        let dash = &k[&hash_key(S2)].principal;
        assert_eq!(dash.project.as_deref(), Some("default"));
        assert_eq!(dash.expires_at, parse_rfc3339("2099-01-01T00:00:00Z"));
        for doc in [&keys_obj, &api_keys_obj, &toml_api_keys] {
            let k = parse_document(doc).unwrap();
            assert_eq!(k[&hash_key(S1)].principal.id, "ci", "{doc}");
            assert_eq!(k[&hash_key(S1)].principal.role, Role::Admin);
        }
        let t = parse_document(&toml_keys).unwrap();
        let p = &t[&hash_key(S1)].principal;
        assert_eq!(p.project, None, "'*' is every project");
        assert_eq!(p.expires_at, parse_rfc3339("2099-01-01T00:00:00Z"));
        assert!(parse_document("").unwrap().is_empty());
        assert!(parse_document("[]").unwrap().is_empty());
        assert!(parse_document(r#"{"keys": []}"#).unwrap().is_empty());
        assert!(parse_document("api_keys = []").unwrap().is_empty());
    }

    #[test]
    fn toml_messages_quote_field_names_only() {
        assert_eq!(only_field_names("duplicate key `id`"), "duplicate key `id`");
        assert_eq!(
            only_field_names("duplicate key `pg_live_x` in table `keys`"),
            "duplicate key `…` in table `keys`"
        );
        assert_eq!(only_field_names("invalid `pg_live_x"), "invalid `…");
        assert_eq!(only_field_names("no quotes"), "no quotes");
        assert_eq!(only_field_names("expected `.`, `=`"), "expected `.`, `=`");
    }

    #[test]
    fn bad_documents_are_refused_without_echoing_secrets() {
        let secretish = "pg_live_supersecretsupersecretsupersecret99";
        let cases: Vec<(String, &str)> = vec![
            (
                format!(r#"[{{"id":"a","role":"admin","secret":"{secretish}""#),
                "not valid JSON",
            ),
            (
                format!("[[keys]]\nid = \"a\"\nsecret = \"{secretish}"),
                "neither JSON nor TOML: TOML at line 3",
            ),
            (
                format!("[[keys]]\n{secretish} = 1\n{secretish} = 2"),
                "neither JSON nor TOML: TOML at line 3",
            ),
            (
                format!(r#"{{"apiKeys":[{{"id":"a","role":"admin","secret":"{secretish}"}}]}}"#),
                "unknown top-level field 'apiKeys'",
            ),
            ("{}".into(), "either 'keys' or 'api_keys'"),
            (
                r#"{"keys":[],"api_keys":[]}"#.into(),
                "must not contain both",
            ),
            (r#"{"keys":{}}"#.into(), "'keys' must be an array"),
            ("42".into(), "a document is an array"),
            (r#"["x"]"#.into(), "entry #1: not an object"),
            (
                format!(r#"[{{"role":"admin","secret":"{secretish}"}}]"#),
                "entry #1: 'id' is missing",
            ),
            (
                format!(r#"[{{"id":"has:colon","role":"admin","secret":"{secretish}"}}]"#),
                "invalid 'id'",
            ),
            (
                format!(r#"[{{"id":"","role":"admin","secret":"{secretish}"}}]"#),
                "invalid 'id'",
            ),
            (
                format!(r#"[{{"id":"{secretish}x:","role":"admin","secret":"{secretish}"}}]"#),
                "invalid 'id'",
            ),
            (
                format!(r#"[{{"id":"a","role":"{secretish}","secret":"x"}}]"#),
                "unknown role (not shown)",
            ),
            (
                format!(r#"[{{"id":"a","role":"root","secret":"{secretish}"}}]"#),
                "unknown role \"root\"",
            ),
            (
                r#"[{"id":"a","role":"admin","secret":"pg_live_supersecret"}]"#.into(),
                "malformed secret",
            ),
            (
                r#"[{"id":"a","role":"admin"}]"#.to_owned(),
                "'secret' is missing",
            ),
            (
                format!(r#"[{{"id":"a","secret":"{secretish}"}}]"#),
                "'role' is missing",
            ),
            (
                format!(
                    r#"[{{"id":"a","role":"admin","secret":"{secretish}","benchmark_regexp":"x"}}]"#
                ),
                "unknown field 'benchmark_regexp'",
            ),
            (
                format!(r#"[{{"id":"a","role":"admin","secret":"{secretish}","{secretish}":1}}]"#),
                "unknown field (name not shown)",
            ),
            (
                format!(
                    r#"[{{"id":"a","role":"admin","secret":"{secretish}","project":"bad/proj"}}]"#
                ),
                "entry #1 ('a'): Invalid project",
            ),
            (
                format!(
                    r#"[{{"id":"a","role":"admin","secret":"{secretish}","benchmark_regex":"(x"}}]"#
                ),
                "invalid benchmark_regex",
            ),
            (
                format!(
                    r#"[{{"id":"a","role":"admin","secret":"{secretish}","expires_at":"tomorrow"}}]"#
                ),
                "RFC 3339",
            ),
            (
                format!(r#"[{{"id":"a","role":"admin","secret":"{secretish}","project":7}}]"#),
                "'project' must be a string",
            ),
            (
                format!(
                    r#"[{{"id":"a","role":"admin","secret":"{secretish}"}},{{"id":"a","role":"viewer","secret":"{S1}"}}]"#
                ),
                "entry #2 ('a'): id already used by entry #1",
            ),
            (
                format!(
                    r#"[{{"id":"a","role":"admin","secret":"{secretish}"}},{{"id":"b","role":"viewer","secret":"{secretish}"}}]"#
                ),
                "entry #2 ('b'): same secret as entry 'a'",
            ),
        ];
        for (doc, want) in cases {
            let e = parse_document(&doc).unwrap_err().0;
            assert!(e.contains(want), "{doc}\n→ {e}\n(expected {want:?})");
            assert!(!e.contains("supersecret"), "secret leaked: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn merged_with_api_keys() {
        let fixed = super::super::api_keys::parse_static_keys(&[format!("admin:{S1}")]).unwrap();
        let doc = parse_document(&format!(
            r#"[{{"id":"b","role":"viewer","secret":"{S2}"}}]"#
        ))
        .unwrap();
        let all = merge(&fixed, &doc).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[&hash_key(S2)].principal.id, "b");
        let same = parse_document(&format!(
            r#"[{{"id":"b","role":"viewer","secret":"{S1}"}}]"#
        ))
        .unwrap();
        let e = merge(&fixed, &same).unwrap_err().0;
        assert!(e.contains("also configured with --api-keys"), "{e}");
        let fixed_id = fixed[&hash_key(S1)].principal.id.clone();
        let clash = parse_document(&format!(
            r#"[{{"id":"{fixed_id}","role":"viewer","secret":"{S2}"}}]"#
        ))
        .unwrap();
        let e = merge(&fixed, &clash).unwrap_err().0;
        assert!(e.contains("id already used by a key of --api-keys"), "{e}");
    }
}
