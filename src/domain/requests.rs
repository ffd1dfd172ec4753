//! Limits of request fields and the checks of upload, verdict and dependency-event requests.
//! The same constants feed the OpenAPI document (`openapi.rs`), so the schema says exactly what
//! these checks accept.

use std::collections::BTreeMap;

use super::names::{check_text, NameError};

/// Longest `git_ref`, in bytes.
pub const GIT_REF_MAX_BYTES: usize = 256;
/// Longest `git_sha`, in bytes.
pub const GIT_SHA_MAX_BYTES: usize = 128;
/// Most tags on a baseline.
pub const TAGS_MAX: usize = 64;
/// Longest tag, in bytes.
pub const TAG_MAX_BYTES: usize = 128;
/// Most metadata entries on a baseline.
pub const METADATA_MAX: usize = 64;
/// Longest metadata key, in bytes.
pub const METADATA_KEY_MAX_BYTES: usize = 128;
/// Longest metadata value, in bytes.
pub const METADATA_VALUE_MAX_BYTES: usize = 4096;
/// Longest `Idempotency-Key`, in bytes (visible ASCII).
pub const IDEMPOTENCY_KEY_MAX_BYTES: usize = 255;
/// Longest verdict `run_id`, in bytes.
pub const RUN_ID_MAX_BYTES: usize = 256;
/// Most reasons on a verdict.
pub const REASONS_MAX: usize = 256;
/// Longest verdict reason, in bytes.
pub const REASON_MAX_BYTES: usize = 512;
/// Verdict statuses.
pub const VERDICT_STATUSES: &[&str] = &["pass", "warn", "fail", "skip"];
/// Most dependency changes in one event.
pub const DEPENDENCY_CHANGES_MAX: usize = 500;
/// Longest dependency name or version, in bytes.
pub const DEPENDENCY_TEXT_MAX_BYTES: usize = 128;
/// Longest fleet metric name (`a-z 0-9 _`).
pub const FLEET_METRIC_MAX: usize = 64;
/// Largest `|delta_pct|` of a dependency event: sums and averages over any number of events stay
/// finite (schemathesis found two events at -1.7e308 turning an average into -inf).
pub const MAX_DELTA_PCT: f64 = 1e9;
/// Longest `benchmark_prefix` filter, in bytes.
pub const BENCHMARK_PREFIX_MAX_BYTES: usize = 64;
/// Longest reason for promoting a quarantined version, in bytes.
pub const OVERRIDE_REASON_MAX_BYTES: usize = 1024;
/// Longest key description, in bytes.
pub const KEY_DESCRIPTION_MAX_BYTES: usize = 256;
/// Longest key benchmark glob.
pub const KEY_PATTERN_MAX: usize = 128;

/// Longest scenario or tradeoff rule name of a decision, in bytes.
pub const DECISION_NAME_MAX_BYTES: usize = 256;
/// Most rule outcomes in one tradeoff receipt.
pub const DECISION_RULES_MAX: usize = 256;
/// Decision list pages: 50 by default, at most 1,000 (what `perfgate decision debt|export` ask
/// for by default).
pub const DECISIONS_LIMIT_DEFAULT: i64 = 50;
pub const DECISIONS_LIMIT_MAX: i64 = 1000;

/// Most runs in one gate request.
pub const GATE_RUNS_MAX: usize = 1000;
/// Longest gate runner label.
pub const GATE_RUNNER_MAX: usize = 64;

/// A gate request carries 1-1000 runs.
pub fn check_gate_run_count(n: usize) -> Result<(), NameError> {
    if (1..=GATE_RUNS_MAX).contains(&n) {
        Ok(())
    } else {
        Err(err("runs", format!("1 to {GATE_RUNS_MAX} runs")))
    }
}

/// A runner class label: 1-64 characters of `A-Z a-z 0-9 _ . -`.
pub fn check_gate_runner(label: &str) -> Result<(), NameError> {
    if !label.is_empty()
        && label.len() <= GATE_RUNNER_MAX
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        Ok(())
    } else {
        Err(err(
            "runner",
            format!("1-{GATE_RUNNER_MAX} characters of A-Z a-z 0-9 _ . -"),
        ))
    }
}

/// Longest runner class accepted as a filter (a host class and a label).
pub const RUNNER_CLASS_MAX: usize = 256;

/// A runner class used as a filter: 1-256 characters, no control characters.
pub fn check_runner_class(class: &str) -> Result<(), NameError> {
    if !class.is_empty() && class.len() <= RUNNER_CLASS_MAX && !class.chars().any(char::is_control)
    {
        Ok(())
    } else {
        Err(err(
            "runner",
            format!("1-{RUNNER_CLASS_MAX} characters, no control characters"),
        ))
    }
}

/// Characters of a key's benchmark glob besides `a-z 0-9`.
pub fn is_key_pattern_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-' | '/' | '*' | '?')
}

fn err(field: &'static str, reason: impl Into<String>) -> NameError {
    NameError::new(field, reason)
}

pub fn check_git(git_ref: Option<&str>, git_sha: Option<&str>) -> Result<(), NameError> {
    if let Some(r) = git_ref {
        check_text("git_ref", r, GIT_REF_MAX_BYTES)?;
    }
    if let Some(s) = git_sha {
        check_text("git_sha", s, GIT_SHA_MAX_BYTES)?;
    }
    Ok(())
}

pub fn check_tags(tags: &[String]) -> Result<(), NameError> {
    if tags.len() > TAGS_MAX {
        return Err(err("tags", format!("at most {TAGS_MAX} tags")));
    }
    for t in tags {
        if t.is_empty() || t.contains(',') {
            return Err(err(
                "tags",
                "a tag must be non-empty and must not contain ','",
            ));
        }
        check_text("tags", t, TAG_MAX_BYTES)?;
    }
    Ok(())
}

pub fn check_metadata(metadata: &BTreeMap<String, String>) -> Result<(), NameError> {
    if metadata.len() > METADATA_MAX {
        return Err(err("metadata", format!("at most {METADATA_MAX} entries")));
    }
    for (k, v) in metadata {
        if k.is_empty() {
            return Err(err("metadata", "empty key"));
        }
        check_text("metadata", k, METADATA_KEY_MAX_BYTES)?;
        if v.len() > METADATA_VALUE_MAX_BYTES {
            return Err(err(
                "metadata",
                format!("values must be at most {METADATA_VALUE_MAX_BYTES} bytes"),
            ));
        }
        if v.chars().any(char::is_control) {
            return Err(err(
                "metadata",
                format!("the value of {k:?} contains a control character"),
            ));
        }
    }
    Ok(())
}

/// An `Idempotency-Key` header value: 1-255 visible ASCII characters (what an HTTP header
/// value may hold as text).
pub fn check_idempotency_key(key: Option<&str>) -> Result<&str, NameError> {
    key.filter(|k| {
        !k.is_empty()
            && k.len() <= IDEMPOTENCY_KEY_MAX_BYTES
            && k.bytes().all(|b| b.is_ascii_graphic())
    })
    .ok_or_else(|| err("Idempotency-Key", "1-255 visible ASCII characters"))
}

/// The fields of a verdict besides its names and git fields.
pub fn check_verdict(
    run_id: &str,
    status: &str,
    reasons: &[String],
    wall_ms_cv: Option<f64>,
) -> Result<(), NameError> {
    if run_id.is_empty() {
        return Err(err("run_id", "must not be empty"));
    }
    check_text("run_id", run_id, RUN_ID_MAX_BYTES)?;
    check_verdict_status(status)?;
    if reasons.len() > REASONS_MAX {
        return Err(err("reasons", format!("at most {REASONS_MAX} entries")));
    }
    for r in reasons {
        check_text("reasons", r, REASON_MAX_BYTES)?;
    }
    if wall_ms_cv.is_some_and(|v| !v.is_finite()) {
        return Err(err("wall_ms_cv", "must be a finite number"));
    }
    Ok(())
}

/// A verdict status (also a list filter).
pub fn check_verdict_status(status: &str) -> Result<(), NameError> {
    if VERDICT_STATUSES.contains(&status) {
        Ok(())
    } else {
        Err(err("status", "expected pass, warn, fail or skip"))
    }
}

/// One change of a dependency event: name, old and new version.
pub struct DependencyChange<'a> {
    pub name: &'a str,
    pub old_version: Option<&'a str>,
    pub new_version: Option<&'a str>,
}

/// A dependency event: its changes, the metric and the change of the metric.
pub fn check_dependency_event(
    changes: &[DependencyChange<'_>],
    metric: &str,
    delta_pct: f64,
) -> Result<(), NameError> {
    if changes.is_empty() {
        return Err(err("dependency_changes", "at least one change is required"));
    }
    if changes.len() > DEPENDENCY_CHANGES_MAX {
        return Err(err(
            "dependency_changes",
            format!("at most {DEPENDENCY_CHANGES_MAX} changes"),
        ));
    }
    if metric.is_empty()
        || metric.len() > FLEET_METRIC_MAX
        || !metric
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
    {
        return Err(err(
            "metric",
            format!("1-{FLEET_METRIC_MAX} characters of a-z 0-9 _"),
        ));
    }
    if !(delta_pct.is_finite() && delta_pct.abs() <= MAX_DELTA_PCT) {
        return Err(err(
            "delta_pct",
            "must be a finite number between -1e9 and 1e9",
        ));
    }
    for c in changes {
        check_dependency_name(c.name)?;
        for v in [c.old_version, c.new_version].into_iter().flatten() {
            check_text("dependency version", v, DEPENDENCY_TEXT_MAX_BYTES)?;
        }
    }
    Ok(())
}

/// A dependency name (also the path segment of the impact route).
pub fn check_dependency_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(err("dependency name", "must not be empty"));
    }
    check_text("dependency name", name, DEPENDENCY_TEXT_MAX_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_field() {
        let tags: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
        assert_eq!(
            check_tags(&tags).unwrap_err().to_string(),
            "Invalid tags: at most 64 tags"
        );
        assert_eq!(check_tags(&["a,b".into()]).unwrap_err().field, "tags");
        let mut m = BTreeMap::new();
        m.insert("k".into(), "x".repeat(METADATA_VALUE_MAX_BYTES + 1));
        assert_eq!(
            check_metadata(&m).unwrap_err().to_string(),
            "Invalid metadata: values must be at most 4096 bytes"
        );
        assert_eq!(
            check_verdict("", "pass", &[], None).unwrap_err().field,
            "run_id"
        );
        assert_eq!(
            check_verdict("r", "maybe", &[], None).unwrap_err().field,
            "status"
        );
        assert_eq!(
            check_verdict("r", "pass", &[], Some(f64::NAN))
                .unwrap_err()
                .field,
            "wall_ms_cv"
        );
        assert!(check_verdict("r", "warn", &["slow".into()], Some(0.1)).is_ok());
        let change = DependencyChange {
            name: "serde",
            old_version: Some("1.0"),
            new_version: Some("1.1"),
        };
        assert!(check_dependency_event(std::slice::from_ref(&change), "wall_ms", 3.0).is_ok());
        assert_eq!(
            check_dependency_event(&[], "wall_ms", 3.0)
                .unwrap_err()
                .field,
            "dependency_changes"
        );
        assert_eq!(
            check_dependency_event(std::slice::from_ref(&change), "Wall", 3.0)
                .unwrap_err()
                .field,
            "metric"
        );
        assert_eq!(
            check_dependency_event(std::slice::from_ref(&change), "wall_ms", 2e9)
                .unwrap_err()
                .field,
            "delta_pct"
        );
        assert!(check_idempotency_key(Some("ci-run-42")).is_ok());
        assert!(check_idempotency_key(Some("caf\u{e9}")).is_err());
        assert!(check_idempotency_key(None).is_err());
        assert!(check_idempotency_key(Some("")).is_err());
        assert!(check_git(Some(&"r".repeat(257)), None).is_err());
    }
}
