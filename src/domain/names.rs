//! Validated names. A value of these types cannot hold an invalid name: validation happens once,
//! at the HTTP edge, and everything behind the edge takes the newtype.

use std::fmt;

/// Why a name was refused; rendered as `invalid_input` naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    pub field: &'static str,
    pub reason: String,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Invalid {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for NameError {}

impl NameError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

fn err(field: &'static str, reason: impl Into<String>) -> NameError {
    NameError {
        field,
        reason: reason.into(),
    }
}

macro_rules! name_type {
    ($name:ident) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(ProjectName);
name_type!(BenchmarkName);
name_type!(Version);

/// Longest project name, in bytes.
pub const PROJECT_MAX_BYTES: usize = 64;
/// Longest benchmark name, in bytes.
pub const BENCHMARK_MAX_BYTES: usize = 64;
/// Longest version, in bytes.
pub const VERSION_MAX_BYTES: usize = 128;

impl ProjectName {
    /// 1–64 bytes of `[A-Za-z0-9_.-]`, not `.` or `..`; `*` is reserved for "every project".
    pub fn parse(s: &str) -> Result<Self, NameError> {
        const F: &str = "project";
        if s.is_empty() {
            return Err(err(F, "must not be empty"));
        }
        if s.len() > PROJECT_MAX_BYTES {
            return Err(err(F, format!("must be at most {PROJECT_MAX_BYTES} bytes")));
        }
        if s == "*" {
            return Err(err(F, "'*' is reserved"));
        }
        if s == "." || s == ".." {
            return Err(err(F, "must not be '.' or '..'"));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            return Err(err(
                F,
                format!("character {c:?} is not allowed (use A-Z a-z 0-9 _ . -)"),
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl BenchmarkName {
    /// 1–64 bytes of `[a-z0-9_.-/]`, no empty, `.` or `..` segment.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        const F: &str = "benchmark";
        if s.is_empty() {
            return Err(err(F, "must not be empty"));
        }
        if s.len() > BENCHMARK_MAX_BYTES {
            return Err(err(
                F,
                format!("must be at most {BENCHMARK_MAX_BYTES} bytes"),
            ));
        }
        if let Some(c) = s.chars().find(|c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-' | '/'))
        }) {
            return Err(err(
                F,
                format!("character {c:?} is not allowed (use a-z 0-9 _ . - /)"),
            ));
        }
        for seg in s.split('/') {
            if seg.is_empty() || seg == "." || seg == ".." {
                return Err(err(
                    F,
                    "must not contain an empty, '.' or '..' path segment",
                ));
            }
        }
        Ok(Self(s.to_owned()))
    }
}

impl Version {
    /// 1–128 bytes, no `/`, no control characters.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        Self::parse_field(s, "version")
    }

    /// Same rules, reported under another field name (`from_version`, `to_version`).
    pub fn parse_field(s: &str, field: &'static str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(err(field, "must not be empty"));
        }
        if s.len() > VERSION_MAX_BYTES {
            return Err(err(
                field,
                format!("must be at most {VERSION_MAX_BYTES} bytes"),
            ));
        }
        if s.contains('/') {
            return Err(err(field, "must not contain '/'"));
        }
        if s.chars().any(|c| c.is_control()) {
            return Err(err(field, "must not contain control characters"));
        }
        Ok(Self(s.to_owned()))
    }

    /// Wraps a server-generated version, which is valid by construction.
    pub(crate) fn generated(s: String) -> Self {
        Self(s)
    }
}

/// JSON Schema patterns (ECMA-262, also read alike by Python `re` and the `regex` crate) of the
/// names above, for the OpenAPI document. Each accepts only what the parser accepts (a test
/// checks it); limits in bytes are spelled as "any characters up to a quarter of the limit, or
/// printable ASCII up to the limit", since JSON Schema lengths count characters.
pub const PROJECT_PATTERN: &str = r"^(?:[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}|\.[A-Za-z0-9_-][A-Za-z0-9_.-]{0,62}|\.\.[A-Za-z0-9_.-]{1,62})$";
pub const BENCHMARK_PATTERN: &str = r"^(?:[a-z0-9_-][a-z0-9_.-]*|\.[a-z0-9_-][a-z0-9_.-]*|\.\.[a-z0-9_.-]+)(?:/(?:[a-z0-9_-][a-z0-9_.-]*|\.[a-z0-9_-][a-z0-9_.-]*|\.\.[a-z0-9_.-]+))*$";
pub const VERSION_PATTERN: &str = r"^(?:[^/\x00-\x1f\x7f-\x9f]{1,32}|[\x20-\x2e\x30-\x7e]{1,128})$";

/// The pattern of a [`check_text`] field of `min..=max` bytes.
pub fn text_pattern(min: usize, max: usize) -> String {
    format!(
        r"^(?:[^\x00-\x1f\x7f-\x9f]{{{min},{}}}|[\x20-\x7e]{{{min},{max}}})$",
        (max / 4).max(min)
    )
}

/// Validates a free-form short text field such as a tag, git ref or sha.
pub fn check_text(field: &'static str, s: &str, max: usize) -> Result<(), NameError> {
    if s.len() > max {
        return Err(err(field, format!("must be at most {max} bytes")));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(err(field, "must not contain control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_rules() {
        assert!(ProjectName::parse("my-proj_1.x").is_ok());
        assert!(ProjectName::parse("A").is_ok());
        for bad in ["", "*", ".", "..", "a/b", "a b", "é", &"x".repeat(65)] {
            let e = ProjectName::parse(bad).unwrap_err();
            assert_eq!(e.field, "project", "{bad:?}");
        }
        assert!(ProjectName::parse(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn benchmark_rules() {
        for ok in ["bench-a", "render/md", "a.b/c_d-e", "x/y/z", "..a", "a..b"] {
            assert!(BenchmarkName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "A", "a//b", "/a", "a/", "./a", "a/..", ".", "..", "a b", "a\nb", "a%2f",
        ] {
            assert!(BenchmarkName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(BenchmarkName::parse(&"a".repeat(64)).is_ok());
        assert!(BenchmarkName::parse(&"a".repeat(65)).is_err());
    }

    /// Strings over an alphabet that exercises every rule: all of length <= 3, plus long ones.
    fn samples() -> Vec<String> {
        let alphabet = [
            "a",
            "Z",
            "0",
            "_",
            "-",
            ".",
            "/",
            " ",
            ",",
            "*",
            "\u{fc}",
            "\n",
            "\u{7f}",
            "\u{85}",
            "\u{1f600}",
        ];
        let mut out = vec![String::new()];
        let mut level = vec![String::new()];
        for _ in 0..3 {
            let mut next = Vec::new();
            for s in &level {
                for c in alphabet {
                    next.push(format!("{s}{c}"));
                }
            }
            out.extend(next.iter().cloned());
            level = next;
        }
        for n in [31, 32, 33, 63, 64, 65, 127, 128, 129, 200] {
            for c in ["a", ".", "\u{fc}", "\u{1f600}", "a/"] {
                out.push(c.repeat(n));
                out.push(format!("{}{}", "a".repeat(n.saturating_sub(1)), c));
            }
        }
        out
    }

    /// What the document calls valid, the server accepts; for printable ASCII, exactly.
    fn agrees(pattern: &str, max_len: usize, parse: impl Fn(&str) -> bool) {
        let re = regex::Regex::new(pattern).unwrap();
        let mut accepted = 0;
        for s in samples() {
            let documented = re.is_match(&s) && s.chars().count() <= max_len;
            if documented {
                accepted += 1;
                assert!(
                    parse(&s),
                    "{pattern} matches {s:?}, which the parser refuses"
                );
            } else if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                assert!(
                    !parse(&s),
                    "{pattern} refuses {s:?}, which the parser accepts"
                );
            }
        }
        assert!(accepted > 10, "{pattern} matched almost nothing");
    }

    #[test]
    fn documented_patterns_agree_with_the_parsers() {
        agrees(PROJECT_PATTERN, 64, |s| ProjectName::parse(s).is_ok());
        agrees(BENCHMARK_PATTERN, 64, |s| BenchmarkName::parse(s).is_ok());
        agrees(VERSION_PATTERN, 128, |s| Version::parse(s).is_ok());
        agrees(&text_pattern(0, 64), 64, |s| check_text("f", s, 64).is_ok());
        agrees(&text_pattern(1, 128), 128, |s| {
            !s.is_empty() && check_text("f", s, 128).is_ok()
        });
    }

    #[test]
    fn version_rules() {
        for ok in [
            "v1",
            "1.2.3",
            "20261128-120000-000001-ab12",
            "with space",
            "ü",
        ] {
            assert!(Version::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "a\u{0}b", "a\tb", &"v".repeat(129)] {
            assert_eq!(Version::parse(bad).unwrap_err().field, "version");
        }
        assert_eq!(
            Version::parse_field("", "to_version").unwrap_err().field,
            "to_version"
        );
    }
}
