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

impl ProjectName {
    /// 1–64 bytes of `[A-Za-z0-9_.-]`, not `.` or `..`; `*` is reserved for "every project".
    pub fn parse(s: &str) -> Result<Self, NameError> {
        const F: &str = "project";
        if s.is_empty() {
            return Err(err(F, "must not be empty"));
        }
        if s.len() > 64 {
            return Err(err(F, "must be at most 64 bytes"));
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
        if s.len() > 64 {
            return Err(err(F, "must be at most 64 bytes"));
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
        if s.len() > 128 {
            return Err(err(field, "must be at most 128 bytes"));
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
