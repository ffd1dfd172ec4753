//! The storage layer's error: diesel, r2d2 and connection failures kept as sources, never as
//! strings. Actors wrap it in their `StoreError`; only the HTTP layer turns it into a status.

/// Failures of the database or its pools.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error")]
    Diesel(#[from] diesel::result::Error),
    #[error("could not connect to the database")]
    Connection(#[from] diesel::ConnectionError),
    #[error("connection pool exhausted or unavailable")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("stored data is corrupt")]
    Corrupt(#[from] serde_json::Error),
    #[error("{0}")]
    Ownership(String),
}

impl DbError {
    /// SQLite "database is locked/busy" and serialization failures are transient: the client
    /// should retry, so they map to 503 rather than 500.
    pub fn is_transient(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            DbError::Pool(_) | DbError::Connection(_) => true,
            DbError::Diesel(Error::DatabaseError(kind, info)) => {
                matches!(
                    kind,
                    DatabaseErrorKind::SerializationFailure | DatabaseErrorKind::ClosedConnection
                ) || {
                    let m = info.message();
                    m.contains("database is locked")
                        || m.contains("database is busy")
                        || m.contains("deadlock detected")
                        || m.contains("canceling statement due to")
                }
            }
            _ => false,
        }
    }

    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            DbError::Diesel(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }
}
