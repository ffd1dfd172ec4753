//! Property tests: random input never panics the parsers and validators, and valid input
//! round-trips.

use perfgate_server::auth::extract::has_jwt_shape;
use perfgate_server::auth::keys::{is_valid_format, parse_static_keys};
use perfgate_server::auth::{BenchFilter, Role};
use perfgate_server::domain::names::{BenchmarkName, ProjectName, Version};
use perfgate_server::domain::receipt;
use perfgate_server::domain::time::{parse_rfc3339, to_rfc3339};
use perfgate_server::routes::json::{json_depth, parse_json};
use proptest::prelude::*;

const FIXTURE: &str = include_str!("fixtures/run-bench-a-1.json");

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn names_never_panic(s in "\\PC{0,80}") {
        let _ = ProjectName::parse(&s);
        let _ = BenchmarkName::parse(&s);
        let _ = Version::parse(&s);
    }

    #[test]
    fn valid_names_round_trip(
        p in "[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}",
        b in "[a-z0-9_-][a-z0-9_.-]{0,20}(/[a-z0-9_-][a-z0-9_.-]{0,20}){0,1}",
        v in "[ -.0-~]{1,128}",
    ) {
        prop_assert_eq!(ProjectName::parse(&p).unwrap().into_string(), p);
        prop_assert_eq!(BenchmarkName::parse(&b).unwrap().into_string(), b);
        prop_assert_eq!(Version::parse(&v).unwrap().into_string(), v);
    }

    #[test]
    fn invalid_benchmark_segments_are_refused(a in "[a-z]{1,5}", dots in prop_oneof![Just("."), Just(".."), Just("")]) {
        let name = format!("{a}/{dots}/x");
        prop_assert!(BenchmarkName::parse(&name).is_err());
    }

    #[test]
    fn receipts_never_panic(s in "\\PC{0,300}") {
        let _ = receipt::validate(&s);
        let _ = receipt::normalize(&s);
        let _ = receipt::median_of(&s, "wall_ms");
    }

    #[test]
    fn mutated_receipts_never_panic(pos in 0usize..1660, byte in any::<u8>()) {
        let mut bytes = FIXTURE.as_bytes().to_vec();
        let i = pos % bytes.len();
        bytes[i] = byte;
        if let Ok(s) = std::str::from_utf8(&bytes) {
            if let Ok(summary) = receipt::validate(s) {
                prop_assert!(summary.medians.contains_key("wall_ms"));
            }
        }
    }

    #[test]
    fn valid_receipts_round_trip(median in 0u64..u64::MAX / 2, rss in 0u64..1 << 40) {
        // rss first: a wall median written first could start with 8752 and be rewritten.
        let r = FIXTURE
            .replace("\"median\":8752", &format!("\"median\":{rss}"))
            .replacen("\"median\":0,\"min\":0,\"max\":0", &format!("\"median\":{median},\"min\":0,\"max\":{median}"), 1);
        let s = receipt::validate(&r).unwrap();
        prop_assert_eq!(s.wall_ms_median, median);
        let n = receipt::normalize(&r).unwrap();
        prop_assert!(receipt::validate(&n).is_ok());
        prop_assert_eq!(receipt::median_of(&s.medians_json(), "max_rss_kb"), Some(rss as f64));
    }

    /// Regression (found by the `receipt` fuzz target): text after the receipt was accepted by
    /// `validate`, and `normalize` then failed on it. Whatever validates also normalizes.
    #[test]
    fn trailing_text_is_refused_and_valid_receipts_normalize(tail in "\\PC{0,20}") {
        let text = format!("{FIXTURE}{tail}");
        match receipt::validate(&text) {
            Ok(_) => {
                prop_assert!(tail.trim().is_empty(), "accepted trailing {tail:?}");
                let n = receipt::normalize(&text).unwrap();
                prop_assert!(receipt::validate(&n).is_ok());
            }
            Err(e) => prop_assert_eq!(e.field, "receipt"),
        }
    }

    #[test]
    fn json_bodies_never_panic(s in "\\PC{0,200}") {
        let _ = parse_json::<serde_json::Value>(s.as_bytes());
        let _ = json_depth(s.as_bytes(), 64);
    }

    #[test]
    fn depth_counts_nesting(n in 0usize..100) {
        let doc = format!("{}{}", "[".repeat(n), "]".repeat(n));
        prop_assert_eq!(json_depth(doc.as_bytes(), 1000), n);
    }

    #[test]
    fn timestamps_round_trip(micros in 0i64..253_402_300_799_000_000) {
        prop_assert_eq!(parse_rfc3339(&to_rfc3339(micros)), Some(micros));
    }

    #[test]
    fn time_parsing_never_panics(s in "\\PC{0,40}") {
        let _ = parse_rfc3339(&s);
    }

    #[test]
    fn key_specs_never_panic(s in "\\PC{0,120}") {
        let _ = parse_static_keys(std::slice::from_ref(&s));
        let _ = is_valid_format(&s);
        let _ = has_jwt_shape(&s);
    }

    #[test]
    fn key_specs_never_echo_the_key(body in "[A-Za-z0-9]{32,40}", junk in "[^:]{0,10}") {
        let key = format!("pg_live_{body}");
        for spec in [format!("{junk}x:{key}"), format!("{key}:admin"), format!("admin={key}"), format!("admin:{key}:bad/p{junk}"), format!("admin:{key}:p:({junk}")] {
            if let Err(e) = parse_static_keys(&[spec]) {
                prop_assert!(!e.to_string().contains(&body), "{}", e);
            }
        }
    }

    #[test]
    fn valid_key_specs_round_trip(body in "[A-Za-z0-9]{32,64}", role in prop_oneof![Just("viewer"), Just("contributor"), Just("promoter"), Just("admin")], project in "[a-z][a-z0-9-]{0,20}") {
        let key = format!("pg_test_{body}");
        let keys = parse_static_keys(&[format!("{role}:{key}:{project}:bench-.*")]).unwrap();
        let k = keys.values().next().unwrap();
        prop_assert_eq!(k.principal.role, Role::parse(role).unwrap());
        prop_assert_eq!(k.principal.project.as_deref(), Some(project.as_str()));
    }

    #[test]
    fn globs_never_panic_and_match_themselves(g in "[a-z0-9_./-]{1,30}") {
        let f = BenchFilter::from_glob(&g).unwrap();
        prop_assert!(f.matches(&g), "a glob without wildcards matches itself");
        let star = BenchFilter::from_glob(&format!("{g}*")).unwrap();
        let extended = format!("{g}xyz");
        prop_assert!(star.matches(&extended));
    }

    #[test]
    fn regexes_never_panic(r in "\\PC{0,30}", name in "[a-z0-9_./-]{0,30}") {
        if let Ok(f) = BenchFilter::from_regex(&r) {
            let _ = f.matches(&name);
        }
    }

    #[test]
    fn jwt_headers_never_panic(s in "[A-Za-z0-9_.=-]{0,200}") {
        let _ = has_jwt_shape(&s);
        let _ = jsonwebtoken::decode_header(&s);
        let _ = jsonwebtoken::dangerous::insecure_decode_claims::<serde_json::Value>(&s);
    }
}
