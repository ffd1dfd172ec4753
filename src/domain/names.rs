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
        if s.ends_with(RESERVED_BENCHMARK_SUFFIX) {
            // `…/a/versions/promote` would be read as version `promote` of benchmark `a`.
            return Err(err(
                F,
                format!(
                    "must not end in '{RESERVED_BENCHMARK_SUFFIX}' (reserved by the API's paths)"
                ),
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

/// A benchmark may not end in this segment: `…/{benchmark}/versions/…` paths would be ambiguous.
pub const RESERVED_BENCHMARK_SUFFIX: &str = "/versions";
/// The version no upload may take: `…/{benchmark}/versions/latest` would be read as the latest
/// baseline of `{benchmark}/versions`.
pub const RESERVED_VERSION: &str = "latest";

/// Unicode format characters (general category Cf): bidi overrides and isolates, zero-width
/// spaces and joiners, the BOM, tag characters. Invisible, so refused in versions.
pub fn is_format_char(c: char) -> bool {
    static CF: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\p{Cf}").expect("valid class"));
    let mut buf = [0u8; 4];
    !c.is_ascii() && CF.is_match(c.encode_utf8(&mut buf))
}

impl Version {
    /// 1–128 bytes, no `/`, no control or format (Cf) characters, no leading or trailing
    /// whitespace, not `latest`.
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
        if let Some(c) = s.chars().find(|c| is_format_char(*c)) {
            return Err(err(
                field,
                format!(
                    "must not contain invisible format characters (found U+{:04X})",
                    c as u32
                ),
            ));
        }
        if s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
            return Err(err(field, "must not begin or end with whitespace"));
        }
        if s == RESERVED_VERSION {
            return Err(err(
                field,
                format!("'{RESERVED_VERSION}' is reserved (it names the newest version)"),
            ));
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
/// Versions: up to 32 characters of the Basic Multilingual Plane that are not `/`, control or
/// format (Cf) characters, not beginning or ending with whitespace; or printable ASCII without
/// `/` up to 128. (`latest` is excluded by a `not` beside the pattern, see `openapi.rs`.)
pub const VERSION_PATTERN: &str = r"^(?:[\x21-\x2e\x30-\x7e\xa1-\xac\xae-\u05ff\u0606-\u061b\u061d-\u06dc\u06de-\u070e\u0710-\u088f\u0892-\u08e1\u08e3-\u167f\u1681-\u180d\u180f-\u1fff\u2010-\u2027\u2030-\u205e\u2065\u2070-\u2fff\u3001-\ud7ff\ue000-\ufefe\uff00-\ufff8](?:[\x20-\x2e\x30-\x7e\xa0-\xac\xae-\u05ff\u0606-\u061b\u061d-\u06dc\u06de-\u070e\u0710-\u088f\u0892-\u08e1\u08e3-\u180d\u180f-\u200a\u2010-\u2029\u202f-\u205f\u2065\u2070-\ud7ff\ue000-\ufefe\uff00-\ufff8]{0,30}[\x21-\x2e\x30-\x7e\xa1-\xac\xae-\u05ff\u0606-\u061b\u061d-\u06dc\u06de-\u070e\u0710-\u088f\u0892-\u08e1\u08e3-\u167f\u1681-\u180d\u180f-\u1fff\u2010-\u2027\u2030-\u205e\u2065\u2070-\u2fff\u3001-\ud7ff\ue000-\ufefe\uff00-\ufff8])?|[\x21-\x2e\x30-\x7e](?:[\x20-\x2e\x30-\x7e]{0,126}[\x21-\x2e\x30-\x7e])?)$";

/// The pattern of a [`check_text`] field of `min..=max` bytes.
pub fn text_pattern(min: usize, max: usize) -> String {
    format!(
        r"^(?:[^\x00-\x1f\x7f-\x9f]{{{min},{}}}|[\x20-\x7e]{{{min},{max}}})$",
        (max / 4).max(min)
    )
}

/// The pattern of a [`check_not_blank`] field of at most `max` bytes: a [`text_pattern`] with a
/// character that is not whitespace (Rust's `char::is_whitespace`, which `str::trim` strips).
/// The whitespace is listed rather than written `\s`, which Python's `re` under `re.ASCII` (as
/// schemathesis compiles ECMA patterns) reads as ASCII whitespace only.
pub fn not_blank_pattern(max: usize) -> String {
    let side = ((max / 4).saturating_sub(1) / 2).max(1);
    format!(
        r"^(?:[^\x00-\x1f\x7f-\x9f]{{0,{side}}}[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]{{0,{side}}}|[\x20-\x7e]*[\x21-\x7e][\x20-\x7e]*)$"
    )
}

/// Validates a free-form text that must not be blank, such as a reason or a key description:
/// returns it trimmed of surrounding whitespace.
pub fn check_not_blank<'a>(
    field: &'static str,
    s: &'a str,
    max: usize,
) -> Result<&'a str, NameError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(err(field, "must not be blank"));
    }
    check_text(field, t, max)?;
    Ok(t)
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
            "\u{a0}",
            "\u{200b}",
            "\u{202e}",
            "\u{2066}",
            "\u{feff}",
            "\u{e0041}",
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
        out.extend(
            [
                "latest",
                "a/versions",
                "x/y/versions",
                "versions",
                "a/versions/b",
            ]
            .map(String::from),
        );
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
        agrees_except(pattern, max_len, |_| false, parse)
    }

    /// `excluded`: what the document refuses beside the pattern (a JSON Schema `not`).
    fn agrees_except(
        pattern: &str,
        max_len: usize,
        excluded: impl Fn(&str) -> bool,
        parse: impl Fn(&str) -> bool,
    ) {
        let re = regex::Regex::new(pattern).unwrap();
        let mut accepted = 0;
        for s in samples() {
            let documented = re.is_match(&s) && s.chars().count() <= max_len && !excluded(&s);
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
        agrees_except(
            BENCHMARK_PATTERN,
            64,
            |s| s.ends_with(RESERVED_BENCHMARK_SUFFIX),
            |s| BenchmarkName::parse(s).is_ok(),
        );
        agrees_except(
            VERSION_PATTERN,
            128,
            |s| s == RESERVED_VERSION,
            |s| Version::parse(s).is_ok(),
        );
        agrees(&text_pattern(0, 64), 64, |s| check_text("f", s, 64).is_ok());
        agrees(&text_pattern(1, 128), 128, |s| {
            !s.is_empty() && check_text("f", s, 128).is_ok()
        });
        for max in [64, 256, 1024] {
            // No `\s`: schemathesis compiles patterns with Python's `re.ASCII`.
            assert!(!not_blank_pattern(max).contains(r"\s"));
            agrees(&not_blank_pattern(max), max, |s| {
                check_not_blank("f", s, max).is_ok()
            });
        }
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
        for bad in [
            "",
            "a/b",
            "a\u{0}b",
            "a\tb",
            &"v".repeat(129),
            // Issue 15 #8: bidi overrides, zero-width characters, surrounding whitespace.
            "v1\u{202e}",
            "v\u{200b}1",
            "\u{2066}v1",
            "\u{feff}v1",
            "v1\u{e0041}",
            " v1",
            "v1 ",
            "v1\u{a0}",
            "\u{3000}v1",
            // Issue 15 #9: `…/versions/latest` is the latest baseline.
            "latest",
        ] {
            assert_eq!(Version::parse(bad).unwrap_err().field, "version", "{bad:?}");
        }
        assert!(BenchmarkName::parse("a/versions").is_err());
        assert!(BenchmarkName::parse("versions").is_ok());
        assert!(BenchmarkName::parse("a/versions/b").is_ok());
        assert!(Version::parse("Latest").is_ok());
        assert!(Version::parse("v 1").is_ok());
        assert_eq!(
            Version::parse_field("", "to_version").unwrap_err().field,
            "to_version"
        );
    }
}
