//! Server-generated versions: `YYYYMMDD-HHMMSS-<micros>-<random>`.
//!
//! The timestamp prefix keeps versions sortable by time; the microseconds and four random hex
//! digits make two uploads in the same second (even on two replicas) distinct. The writer still
//! checks for an existing row and regenerates, and the unique index is the final arbiter.

use chrono::{TimeZone, Utc};
use rand::Rng;

use super::names::Version;

pub fn generate(now_micros: i64) -> Version {
    let t = Utc
        .timestamp_micros(now_micros)
        .single()
        .unwrap_or_else(Utc::now);
    let suffix: u16 = rand::thread_rng().gen();
    Version::generated(format!(
        "{}-{:06}-{:04x}",
        t.format("%Y%m%d-%H%M%S"),
        now_micros.rem_euclid(1_000_000),
        suffix
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_uniqueness() {
        let m = crate::domain::time::parse_rfc3339("2026-11-28T03:17:59.562438Z").unwrap();
        let v = generate(m);
        assert!(v.as_str().starts_with("20261128-031759-562438-"), "{v}");
        assert_eq!(v.as_str().len(), "20261128-031759-562438-abcd".len());
        assert!(Version::parse(v.as_str()).is_ok());
        let set: std::collections::HashSet<_> = (0..200).map(|_| generate(m)).collect();
        assert!(set.len() > 190);
    }
}
