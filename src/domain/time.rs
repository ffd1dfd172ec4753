//! Timestamps are stored as microseconds since the Unix epoch (BIGINT on every backend: sortable,
//! indexable, and one of the few column types `MultiConnection` shares) and rendered as RFC 3339
//! UTC with `Z`.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

pub fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

pub fn to_rfc3339(micros: i64) -> String {
    match Utc.timestamp_micros(micros).single() {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Micros, true),
        None => "1970-01-01T00:00:00.000000Z".to_owned(),
    }
}

/// Parses any RFC 3339 timestamp (any offset) to micros.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc).timestamp_micros())
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
}
