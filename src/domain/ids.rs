//! Row ids: UUIDv7 (a millisecond timestamp, then 74 random bits) as 32 hex digits.
//!
//! Time-ordered ids keep every primary-key index append-mostly: a new row's key lands in the
//! index's newest leaf instead of a random one, so a commit rewrites one hot page per index
//! rather than a cold page per row (SQLite writes whole pages to its WAL; PostgreSQL's B-trees
//! split less). The ids stay opaque to clients; their order carries no meaning in the API.

/// A new row id, from the wall clock and the thread-local CSPRNG (no system call per id).
pub fn row_id() -> String {
    row_id_at(chrono::Utc::now().timestamp_millis().max(0) as u64)
}

/// Whether `id` has the shape of a row id (32 hex digits); anything else names no row.
pub fn is_row_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn row_id_at(millis: u64) -> String {
    uuid::Builder::from_unix_timestamp_millis(millis, &rand::random())
        .into_uuid()
        .simple()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v7_hex_and_ordered_by_time() {
        let a = row_id_at(1_700_000_000_000);
        let b = row_id_at(1_700_000_000_001);
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(&a[12..13], "7", "version nibble");
        assert!(a < b, "later ids sort after earlier ones");
        assert_ne!(row_id(), row_id());
    }
}
