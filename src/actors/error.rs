//! The one error every store operation returns. Handlers convert it to the HTTP error with
//! `ApiError::from` (a pure conversion); the storage failure inside is logged and counted only
//! where the response is rendered.

use std::time::Duration;

use crate::db::DbError;

/// Outcomes a handler must tell apart, and storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row the request names does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts what is stored (409).
    #[error("{0}")]
    Conflict(String),
    /// Too much work in flight, the store is shutting down, or a whole group commit failed
    /// (503 `unavailable`; nothing of the request was stored).
    #[error("{0}")]
    Unavailable(String),
    /// The store did not answer within the request's deadline (503 `timeout`).
    #[error("storage did not answer within {} s", .0.as_secs())]
    Timeout(Duration),
    /// A broken invariant of the server itself (500).
    #[error("{0}")]
    Internal(String),
    /// The database failed (503 when transient, 500 otherwise).
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        StoreError::Db(DbError::Diesel(e))
    }
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        StoreError::Db(DbError::Pool(e))
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Db(DbError::Corrupt(e))
    }
}

impl StoreError {
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Db(e) if e.is_unique_violation())
    }

    /// The answer for each request of a group commit that failed as a whole: nothing of it was
    /// stored, so each may retry.
    pub fn for_each_of_batch(&self) -> StoreError {
        match self {
            StoreError::Db(e) if e.is_transient() => {
                StoreError::Unavailable("Storage is temporarily unavailable; retry shortly".into())
            }
            _ => StoreError::Unavailable(
                "Storage failed to commit this request's group; nothing was stored; retry".into(),
            ),
        }
    }
}
