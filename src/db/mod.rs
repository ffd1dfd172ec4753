//! Storage: one connection enum over PostgreSQL and SQLite, r2d2 pools, embedded migrations, and
//! the few statements that differ per backend.
//!
//! Everything here blocks. It is called only from the `SyncContext` actors in `actors/`, never
//! from an async actix worker.

pub(crate) mod alerts;
pub(crate) mod audit;
pub(crate) mod baselines;
pub(crate) mod changepoints;
pub(crate) mod dashboard;
pub(crate) mod decisions;
mod dialect;
mod error;
pub(crate) mod fleet;
pub(crate) mod float;
pub(crate) mod gates;
pub(crate) mod keys;
mod migrations;
pub(crate) mod notify;
mod pool;
// libpq's C API for the cache listener: unsafe code allowed here by name.
#[allow(unsafe_code)]
mod pq;
pub(crate) mod retention;
pub(crate) mod schema;
mod sqlite;
#[cfg(test)]
mod testdb;
pub(crate) mod verdicts;
mod wal_sync;
// A VFS wrapper (SQLite's C API): unsafe code allowed here by name.
#[allow(unsafe_code)]
mod wal_vfs;

use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;

pub(crate) use crate::config::StorageBackend;
pub(crate) use dialect::{
    lock_bootstrap, probe, read_tx, sqlite_write_turns, try_lock, write_tx, Exclusive,
};
pub(crate) use error::DbError;
#[cfg(test)]
pub(crate) use pool::memory_test_pool;
pub(crate) use pool::{
    fit_connections, DbPool, PgPoolOptions, PooledConn, Storage, StorageOptions, StorePools,
};
pub(crate) use sqlite::SqliteOwner;
pub(crate) use wal_sync::WalSync;
#[cfg(test)]
pub(crate) use wal_sync::WalSyncOwner;

#[derive(diesel::MultiConnection)]
pub(crate) enum DbConn {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

/// Runs `$body` with `$c` bound to the concrete connection, for statements the
/// `MultiConnection` DSL does not offer (upserts).
#[macro_export]
macro_rules! on_backend {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::db::DbConn::Pg($c) => $body,
            $crate::db::DbConn::Sqlite($c) => $body,
        }
    };
}
