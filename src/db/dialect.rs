//! What differs per backend, in one place: how a write transaction begins, the locks that
//! only PostgreSQL needs, and the health probe. Statements the `MultiConnection` DSL cannot
//! express go through [`crate::on_backend!`] inside the query modules.

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::result::DatabaseErrorKind;
use diesel::Connection;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{DbConn, DbError};

/// This process's turn at SQLite's one write lock. Every write transaction takes it (store
/// writers share one write connection already, so among them it is uncontended), and so does
/// the WAL checkpointer for its short final copy, which must run while no commit appends to
/// the WAL (see `sqlite::Checkpointer`). A waiter wakes as soon as the turn is free, where
/// SQLite's busy handler would sleep 1, 2, 5, 10… ms between tries.
static SQLITE_TURN: parking_lot::Mutex<()> = parking_lot::const_mutex(());
/// How long a writer waits for its turn before answering "database is locked" (the configured
/// busy timeout).
static SQLITE_TURN_WAIT_MS: AtomicU64 = AtomicU64::new(10_000);
/// Write turns taken since the process started.
static SQLITE_TURNS_TAKEN: AtomicU64 = AtomicU64::new(0);

/// Takes this process's SQLite write turn, waiting at most the busy timeout (None after it).
pub(super) fn sqlite_turn() -> Option<parking_lot::MutexGuard<'static, ()>> {
    let turn = SQLITE_TURN.try_lock_for(Duration::from_millis(
        SQLITE_TURN_WAIT_MS.load(Ordering::Relaxed),
    ))?;
    SQLITE_TURNS_TAKEN.fetch_add(1, Ordering::Relaxed);
    Some(turn)
}

/// How many SQLite write turns this process has taken (0 on PostgreSQL): background work
/// compares two readings to learn whether clients wrote in between.
pub(crate) fn sqlite_write_turns() -> u64 {
    SQLITE_TURNS_TAKEN.load(Ordering::Relaxed)
}

/// Sets how long a SQLite writer waits for its turn (the pool's busy timeout).
pub(crate) fn set_sqlite_turn_wait(wait: Duration) {
    SQLITE_TURN_WAIT_MS.store(wait.as_millis() as u64, Ordering::Relaxed);
}

/// Runs `f` in a write transaction. On SQLite the transaction starts with `BEGIN IMMEDIATE`: a
/// deferred `BEGIN` that reads and then writes can fail with SQLITE_BUSY at once, whatever the
/// busy timeout, while an immediate one waits for the write lock up front.
pub(crate) fn write_tx<T, E>(
    conn: &mut DbConn,
    f: impl FnOnce(&mut DbConn) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    let _turn = match conn {
        DbConn::Sqlite(c) => {
            let turn = sqlite_turn().ok_or_else(|| {
                diesel::result::Error::DatabaseError(
                    DatabaseErrorKind::Unknown,
                    Box::new(String::from("database is locked")),
                )
            })?;
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?;
            Some(turn)
        }
        DbConn::Pg(_) => {
            <DbConn as Connection>::TransactionManager::begin_transaction(conn)?;
            None
        }
    };
    match f(conn) {
        Ok(v) => {
            <DbConn as Connection>::TransactionManager::commit_transaction(conn)?;
            Ok(v)
        }
        Err(e) => {
            if let Err(rb) = <DbConn as Connection>::TransactionManager::rollback_transaction(conn)
            {
                log::warn!("rollback failed: {rb}");
            }
            Err(e)
        }
    }
}

/// Runs `f` in a read transaction, so multi-statement reads (a page and its total) see one
/// snapshot.
pub(crate) fn read_tx<T, E>(
    conn: &mut DbConn,
    f: impl FnOnce(&mut DbConn) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    conn.transaction(f)
}

/// `SELECT 1`, the health probe.
pub(crate) fn probe(conn: &mut DbConn) -> Result<(), DbError> {
    conn.batch_execute("SELECT 1")?;
    Ok(())
}

/// Key of the transaction-level advisory lock taken while the bootstrap key is created, so that
/// PostgreSQL replicas starting together on an empty database create one key, not several.
const BOOTSTRAP_LOCK_KEY: i64 = 7_370_127_086_112_105_570;

/// Serializes first-start work across replicas (PostgreSQL); SQLite has one writer already.
/// Inside a write transaction: the lock ends with it.
pub(crate) fn lock_bootstrap(conn: &mut DbConn) -> Result<(), DbError> {
    if let DbConn::Pg(pg) = conn {
        pg.batch_execute(&format!(
            "SELECT pg_advisory_xact_lock({BOOTSTRAP_LOCK_KEY})"
        ))?;
    }
    Ok(())
}

/// Background work one PostgreSQL replica does at a time (a transaction-level advisory lock).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Exclusive {
    /// The change-point pass.
    ChangePoints,
    /// A retention batch (two replicas purging the same rows would both count them).
    Retention,
}

impl Exclusive {
    fn key(self) -> i64 {
        match self {
            Exclusive::ChangePoints => 7_370_127_086_112_105_571,
            Exclusive::Retention => 7_370_127_086_112_105_572,
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Locked {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    locked: bool,
}

/// Takes `what`'s lock for the current transaction, or answers `false` when another replica
/// holds it (PostgreSQL); SQLite has one writer already.
pub(crate) fn try_lock(conn: &mut DbConn, what: Exclusive) -> Result<bool, DbError> {
    use diesel::RunQueryDsl;
    match conn {
        DbConn::Pg(pg) => Ok(diesel::sql_query(format!(
            "SELECT pg_try_advisory_xact_lock({}) AS locked",
            what.key()
        ))
        .get_result::<Locked>(pg)?
        .locked),
        DbConn::Sqlite(_) => Ok(true),
    }
}
