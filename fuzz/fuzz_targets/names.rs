//! Names and values a request carries (issue 15 #8, #9, #13): versions, benchmark names,
//! metadata values and key globs. Properties: nothing panics; an accepted version holds no
//! control or format character, no surrounding whitespace and is not `latest`; what the OpenAPI
//! pattern documents as a version is accepted; an accepted metadata value holds no control
//! character; an accepted key glob has at most 8 wildcards.
#![no_main]

use std::collections::BTreeMap;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use perfgate_server::domain::api_keys::{NewKey, KEY_PATTERN_MAX_WILDCARDS};
use perfgate_server::domain::names::{
    is_format_char, BenchmarkName, Version, RESERVED_VERSION, VERSION_PATTERN,
};
use perfgate_server::domain::requests::check_metadata;

static VERSION_RE: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(VERSION_PATTERN).expect("valid pattern"));

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match Version::parse(s) {
        Ok(_) => {
            assert!(!s.chars().any(|c| c.is_control() || is_format_char(c)), "{s:?}");
            assert!(!s.starts_with(char::is_whitespace) && !s.ends_with(char::is_whitespace));
            assert_ne!(s, RESERVED_VERSION);
        }
        Err(e) => assert!(
            !(VERSION_RE.is_match(s) && s != RESERVED_VERSION && s.chars().count() <= 128),
            "documented but refused: {s:?}: {e}"
        ),
    }
    if BenchmarkName::parse(s).is_ok() {
        assert!(!s.ends_with("/versions"));
    }
    let meta: BTreeMap<String, String> = [("k".to_owned(), s.to_owned())].into();
    if check_metadata(&meta).is_ok() {
        assert!(!s.chars().any(char::is_control), "{s:?}");
    }
    if NewKey::validate("d", "viewer", "proj", Some(s), None).is_ok() {
        let n = s.chars().filter(|c| matches!(c, '*' | '?')).count();
        assert!(n <= KEY_PATTERN_MAX_WILDCARDS, "{s:?}");
    }
});
