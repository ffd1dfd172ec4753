//! Timestamps are stored as microseconds since the Unix epoch (BIGINT on every backend: sortable,
//! indexable, and one of the few column types `MultiConnection` shares) and rendered as RFC 3339
//! UTC with `Z`.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

pub fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

/// `0000-01-01T00:00:00Z`, the earliest instant RFC 3339 writes in UTC.
pub const MIN_MICROS: i64 = -62_167_219_200_000_000;
/// `9999-12-31T23:59:59.999999Z`, the latest.
pub const MAX_MICROS: i64 = 253_402_300_799_999_999;

/// A token's `exp` (Unix seconds) as an expiry in micros, within the years RFC 3339 writes: one
/// past the year 9999 is as good as never, and stays an expiry (keys the token creates get one).
pub fn expiry_from_secs(secs: i64) -> i64 {
    secs.checked_mul(1_000_000)
        .unwrap_or(if secs < 0 { MIN_MICROS } else { MAX_MICROS })
        .clamp(MIN_MICROS, MAX_MICROS)
}

/// RFC 3339 in UTC with `Z`; an instant outside the years 0000-9999 is written as the nearest
/// one inside them (RFC 3339 has no other years).
pub fn to_rfc3339(micros: i64) -> String {
    let micros = micros.clamp(MIN_MICROS, MAX_MICROS);
    match Utc.timestamp_micros(micros).single() {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Micros, true),
        None => unreachable!("every instant of the years 0000-9999 is representable"),
    }
}

/// The JSON Schema pattern of the timestamps [`parse_rfc3339`] accepts, for the OpenAPI document
/// (where `format: date-time` alone is only an annotation). It leaves out February 29 and leap
/// seconds, which the parser takes only on some dates, so every timestamp it matches is accepted.
pub const RFC3339_PATTERN: &str = concat!(
    r"^[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))",
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
);

/// Parses any RFC 3339 timestamp (any offset) to micros. An offset can carry the instant
/// out of the years 0000-9999 in UTC (`0000-01-01T00:00:00+01:00`): it becomes the nearest
/// instant inside them, so what is stored can always be written back as RFC 3339.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| {
        t.with_timezone(&Utc)
            .timestamp_micros()
            .clamp(MIN_MICROS, MAX_MICROS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let m = parse_rfc3339("2026-11-28T03:17:59.562438Z").unwrap();
        assert_eq!(to_rfc3339(m), "2026-11-28T03:17:59.562438Z");
        let off = parse_rfc3339("2026-11-28T05:17:59+02:00").unwrap();
        assert_eq!(to_rfc3339(off), "2026-11-28T03:17:59.000000Z");
        assert!(parse_rfc3339("yesterday").is_none());
    }

    #[test]
    fn instants_outside_the_years_of_rfc3339_are_clamped() {
        assert_eq!(to_rfc3339(MIN_MICROS), "0000-01-01T00:00:00.000000Z");
        assert_eq!(to_rfc3339(MAX_MICROS), "9999-12-31T23:59:59.999999Z");
        assert_eq!(to_rfc3339(i64::MIN), "0000-01-01T00:00:00.000000Z");
        assert_eq!(to_rfc3339(i64::MAX), "9999-12-31T23:59:59.999999Z");
        assert_eq!(parse_rfc3339("0000-01-01T00:00:00+23:59"), Some(MIN_MICROS));
        assert_eq!(expiry_from_secs(i64::MAX), MAX_MICROS);
        assert_eq!(expiry_from_secs(8_300_000_000_000), MAX_MICROS);
        assert_eq!(expiry_from_secs(1_700_000_000), 1_700_000_000_000_000);
        assert_eq!(expiry_from_secs(i64::MIN), MIN_MICROS);
        assert_eq!(parse_rfc3339("9999-12-31T23:59:59-23:59"), Some(MAX_MICROS));
        let t = parse_rfc3339("0000-01-01T00:00:00Z").unwrap();
        assert_eq!(to_rfc3339(t), "0000-01-01T00:00:00.000000Z");
    }

    #[test]
    fn documented_pattern_is_accepted() {
        let re = regex::Regex::new(RFC3339_PATTERN).unwrap();
        let mut matched = 0;
        for year in ["0000", "1970", "2024", "2026", "9999"] {
            for month in 0..=13 {
                for day in 0..=32 {
                    for rest in ["T00:00:00Z", "T23:59:59.123456789+14:00", "T12:30:00-23:59"] {
                        let s = format!("{year}-{month:02}-{day:02}{rest}");
                        if re.is_match(&s) {
                            matched += 1;
                            assert!(parse_rfc3339(&s).is_some(), "{s} matches but is refused");
                        }
                    }
                }
            }
        }
        assert!(matched > 5 * 12 * 27 * 3, "{matched}");
        for bad in [
            "",
            "2026-11-28",
            "2026-11-28T03:17:59",
            "2026-02-30T00:00:00Z",
            "2026-11-28T24:00:00Z",
        ] {
            assert!(!re.is_match(bad), "{bad}");
        }
    }
}
