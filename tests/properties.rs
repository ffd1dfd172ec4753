//! Property tests: random input never panics the parsers and validators, and valid input
//! round-trips.

use std::sync::LazyLock;

use perfgate_server::auth::extract::{has_jwt_shape, parse_header, Credential};
use perfgate_server::auth::jwt::{mint, Claims, JwtVerifier};
use perfgate_server::auth::keys::{is_valid_format, parse_static_keys};
use perfgate_server::auth::{BenchFilter, Role};
use perfgate_server::domain::api_keys::{NewKey, KEY_PATTERN_MAX_WILDCARDS};
use perfgate_server::domain::names::{
    is_format_char, BenchmarkName, ProjectName, Version, RESERVED_VERSION, VERSION_PATTERN,
};
use perfgate_server::domain::receipt;
use perfgate_server::domain::requests::check_metadata;
use perfgate_server::domain::time::{parse_rfc3339, to_rfc3339};
use perfgate_server::routes::json::{json_depth, parse_json};
use perfgate_server::ServerConfig;
use proptest::prelude::*;

const FIXTURE: &str = include_str!("fixtures/run-bench-a-1.json");

const JWT_SECRET: &str = "properties-secret-properties-secret-0123";

/// The verifier the server builds from `--jwt-secret`.
static VERIFIER: LazyLock<JwtVerifier> = LazyLock::new(|| {
    JwtVerifier::from_config(&ServerConfig::new().jwt_secret(JWT_SECRET))
        .unwrap()
        .expect("a secret is configured")
});

/// A token the verifier accepts (checked in `the_unmutated_token_is_accepted`).
static TOKEN: LazyLock<String> = LazyLock::new(|| {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    mint(
        JWT_SECRET,
        &Claims {
            sub: "ci".into(),
            project_id: "proj".into(),
            scopes: vec!["read".into(), "write".into()],
            exp: now + 3600,
            iat: Some(now),
            nbf: None,
            iss: None,
            aud: None,
        },
    )
    .unwrap()
});

#[test]
fn the_unmutated_token_is_accepted() {
    assert_eq!(
        parse_header(Some(&format!("Bearer {}", *TOKEN))).unwrap(),
        Credential::Jwt(TOKEN.clone())
    );
    let p = VERIFIER.verify(&TOKEN).unwrap();
    assert_eq!(p.id, "jwt:ci");
    assert_eq!(p.project.as_deref(), Some("proj"));
}

/// Values a `Bearer` header may carry: anything, JWT-shaped, API-key-shaped.
fn bearer_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,80}",
        "[A-Za-z0-9_=-]{0,20}(\\.[A-Za-z0-9_=-]{0,20}){0,3}",
        "pg_(live|test)_[A-Za-z0-9]{28,40}[^A-Za-z0-9]{0,1}",
    ]
}

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
        v in "[!-.0-~]([ -.0-~]{0,126}[!-.0-~])?",
    ) {
        prop_assume!(v != RESERVED_VERSION && !b.ends_with("/versions"));
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

    /// Every `Authorization` value is either a credential to check or a 401, never a panic.
    #[test]
    fn authorization_headers_parse_or_answer_401(s in "\\PC{0,200}") {
        if let Err(e) = parse_header(Some(&s)) {
            prop_assert_eq!(e.status.as_u16(), 401);
        }
    }

    /// `Bearer` carries a JWT exactly when the value has the JWT shape, an API key exactly when
    /// it has the key format, and anything else is refused.
    #[test]
    fn bearer_values_are_told_apart_by_shape(v in bearer_value()) {
        let trimmed = v.trim();
        match parse_header(Some(&format!("Bearer {v}"))) {
            Ok(Credential::Jwt(t)) => {
                prop_assert!(has_jwt_shape(trimmed));
                prop_assert_eq!(t, trimmed);
            }
            Ok(Credential::ApiKey(k)) => {
                prop_assert!(!has_jwt_shape(trimmed) && is_valid_format(trimmed));
                prop_assert_eq!(k, trimmed);
            }
            Err(e) => {
                prop_assert!(!has_jwt_shape(trimmed) && !is_valid_format(trimmed));
                prop_assert_eq!(e.status.as_u16(), 401);
            }
        }
    }

    /// A valid token with any one character changed (to another base64url character or a dot)
    /// is refused by this server's verifier with 401, whichever scheme carries it.
    #[test]
    fn every_mutated_token_is_refused(pos in any::<usize>(), c in "[A-Za-z0-9_.-]") {
        let token = TOKEN.as_str();
        let i = pos % token.len();
        prop_assume!(token[i..].chars().next() != c.chars().next());
        let mutated = format!("{}{c}{}", &token[..i], &token[i + 1..]);
        for scheme in ["Token", "Bearer"] {
            match parse_header(Some(&format!("{scheme} {mutated}"))) {
                Ok(Credential::Jwt(t)) => {
                    prop_assert_eq!(&t, &mutated);
                    let e = VERIFIER.verify(&t).expect_err("a mutated token verified");
                    prop_assert_eq!(e.status.as_u16(), 401);
                }
                Ok(Credential::ApiKey(_)) => prop_assert!(false, "a token read as an API key"),
                Err(e) => prop_assert_eq!(e.status.as_u16(), 401),
            }
        }
    }

    /// Token-like garbage never panics the verifier and is always refused.
    #[test]
    fn token_like_garbage_is_refused(s in "[A-Za-z0-9_.=-]{0,200}") {
        let _ = has_jwt_shape(&s);
        let e = VERIFIER.verify(&s).expect_err("garbage verified");
        prop_assert_eq!(e.status.as_u16(), 401);
    }

    // Issue 15 #8, #9, #13, #14: versions, metadata values, key patterns.

    /// A version holding a format character (bidi overrides, zero-width spaces, …) anywhere,
    /// or whitespace at either end, is refused; the same text without them is accepted.
    #[test]
    fn invisible_characters_and_surrounding_whitespace_are_refused(
        pre in "[a-z0-9.-]{1,20}",
        post in "[a-z0-9.-]{1,20}",
        cf in prop_oneof![Just('\u{ad}'), Just('\u{200b}'), Just('\u{200e}'), Just('\u{202e}'),
            Just('\u{2066}'), Just('\u{2069}'), Just('\u{feff}'), Just('\u{e0041}'), Just('\u{110bd}')],
        ws in prop_oneof![Just(' '), Just('\u{a0}'), Just('\u{2003}'), Just('\u{3000}')],
        at in 0usize..3,
    ) {
        prop_assert!(is_format_char(cf));
        let with_cf = match at {
            0 => format!("{cf}{pre}{post}"),
            1 => format!("{pre}{cf}{post}"),
            _ => format!("{pre}{post}{cf}"),
        };
        let refused = Version::parse(&with_cf).is_err();
        prop_assert!(refused, "{:?}", with_cf);
        let (lead, trail) = (format!("{ws}{pre}"), format!("{pre}{ws}"));
        let (inner, plain) = (format!("{pre}{ws}{post}"), format!("{pre}{post}"));
        prop_assert!(Version::parse(&lead).is_err());
        prop_assert!(Version::parse(&trail).is_err());
        prop_assert!(Version::parse(&inner).is_ok());
        prop_assert!(Version::parse(&plain).is_ok());
    }

    /// What the OpenAPI document calls a valid version, the server accepts.
    #[test]
    fn documented_versions_are_accepted(s in "\\PC{1,40}") {
        static RE: LazyLock<regex::Regex> = LazyLock::new(|| regex::Regex::new(VERSION_PATTERN).unwrap());
        if RE.is_match(&s) && s != RESERVED_VERSION {
            let accepted = Version::parse(&s).is_ok();
            prop_assert!(accepted, "{:?}", s);
        }
    }

    /// Metadata values: any control character is refused, printable text is kept.
    #[test]
    fn metadata_values_refuse_control_characters(text in "[ -~]{0,40}", c in "\\p{Cc}", at in 0usize..41) {
        let ok: std::collections::BTreeMap<String, String> = [("k".to_owned(), text.clone())].into();
        prop_assert!(check_metadata(&ok).is_ok());
        let i = text.char_indices().map(|(i, _)| i).chain([text.len()]).nth(at.min(text.len())).unwrap_or(0);
        let bad = [&text[..i], c.as_str(), &text[i..]].concat();
        let bad: std::collections::BTreeMap<String, String> = [("k".to_owned(), bad)].into();
        prop_assert!(check_metadata(&bad).is_err());
    }

    /// A key's glob takes at most 8 wildcards; within that, it is accepted.
    #[test]
    fn key_patterns_take_at_most_eight_wildcards(parts in proptest::collection::vec("[a-z0-9_./-]{0,4}", 1..14), wild in proptest::collection::vec(prop_oneof![Just('*'), Just('?')], 13)) {
        let mut glob = String::new();
        for (i, p) in parts.iter().enumerate() {
            glob.push_str(p);
            if i + 1 < parts.len() {
                glob.push(wild[i]);
            }
        }
        prop_assume!(!glob.is_empty() && glob.len() <= 128);
        let n = glob.chars().filter(|c| matches!(c, '*' | '?')).count();
        let r = NewKey::validate("d", "viewer", "proj", Some(&glob), None);
        prop_assert_eq!(r.is_ok(), n <= KEY_PATTERN_MAX_WILDCARDS, "{:?}", glob);
    }

    /// Anchoring never widens a benchmark regex: whatever the pattern (unbalanced parentheses
    /// included), a name the filter lets through is matched by the pattern compiled alone.
    #[test]
    fn anchoring_never_widens_a_regex(r in "[a-z()|.*-]{0,12}", name in "[a-z.-]{0,12}") {
        if let Ok(f) = BenchFilter::from_regex(&r) {
            if f.matches(&name) {
                let alone = regex::Regex::new(&r).expect("accepted patterns compile alone");
                let widened = !alone.is_match(&name);
                prop_assert!(!widened, "{:?} let {:?} through", r, name);
            }
        }
    }
}
