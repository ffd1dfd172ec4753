//! Storage: one connection enum over PostgreSQL and SQLite, r2d2 pools, embedded migrations, and
//! the few statements that differ per backend.
//!
//! Everything here blocks. It is called only from the `SyncContext` actors in `actors/`, never
//! from an async actix worker.

pub(crate) mod audit;
pub(crate) mod baselines;
pub(crate) mod dashboard;
mod error;
pub(crate) mod fleet;
pub(crate) mod keys;
pub(crate) mod schema;
#[cfg(test)]
mod testdb;
pub(crate) mod verdicts;

use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::r2d2::{self, CustomizeConnection, ManageConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::StorageBackend;
pub(crate) use error::DbError;

pub(crate) const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub(crate) const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Key of the PostgreSQL advisory lock held while migrations run, so that replicas starting
/// together apply them once.
const MIGRATION_LOCK_KEY: i64 = 0x7065_7266_6761_7465; // "perfgate"

#[derive(diesel::MultiConnection)]
pub(crate) enum DbConn {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

pub(crate) type PooledConn = PooledConnection<ConnManager>;

/// An r2d2 pool with a name, so that the time spent waiting for a connection is measured per
/// pool.
#[derive(Clone)]
pub(crate) struct DbPool {
    name: &'static str,
    inner: Pool<ConnManager>,
}

impl DbPool {
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }
    pub(crate) fn get(&self) -> Result<PooledConn, r2d2::PoolError> {
        self.timed(|p| p.get())
    }
    pub(crate) fn get_timeout(&self, t: Duration) -> Result<PooledConn, r2d2::PoolError> {
        self.timed(|p| p.get_timeout(t))
    }
    fn timed(
        &self,
        f: impl FnOnce(&Pool<ConnManager>) -> Result<PooledConn, r2d2::PoolError>,
    ) -> Result<PooledConn, r2d2::PoolError> {
        let start = std::time::Instant::now();
        let r = f(&self.inner);
        crate::metrics::METRICS
            .pool_wait
            .with_label_values(&[self.name])
            .observe(start.elapsed().as_secs_f64());
        r
    }
    pub(crate) fn state(&self) -> r2d2::State {
        self.inner.state()
    }
    pub(crate) fn max_size(&self) -> u32 {
        self.inner.max_size()
    }
}

/// Opens connections of the configured backend. r2d2's stock manager would call
/// `DbConn::establish`, which tries each backend in turn; the backend here comes from the
/// configuration instead.
#[derive(Debug, Clone)]
pub(crate) struct ConnManager {
    backend: StorageBackend,
    url: String,
}

impl ManageConnection for ConnManager {
    type Connection = DbConn;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConn, r2d2::Error> {
        match self.backend {
            StorageBackend::Postgres => PgConnection::establish(&self.url).map(DbConn::Pg),
            StorageBackend::Sqlite | StorageBackend::Memory => {
                SqliteConnection::establish(&self.url).map(DbConn::Sqlite)
            }
        }
        .map_err(r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConn) -> bool {
        use diesel::r2d2::R2D2Connection;
        conn.is_broken()
    }
}

/// Per-connection settings (SQLite PRAGMAs, PostgreSQL timeouts). `synchronous` is `FULL` by default: every commit is fsynced
/// before the client hears 201, so an acknowledged write survives kill -9 *and* power loss
/// (`NORMAL` in WAL mode survives kill -9 but may lose the last commits on power loss).
#[derive(Debug, Clone, Copy)]
struct SqlitePragmas {
    synchronous: &'static str,
    busy_timeout_ms: u64,
}

impl CustomizeConnection<DbConn, r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut DbConn) -> Result<(), r2d2::Error> {
        match conn {
            DbConn::Sqlite(c) => c.batch_execute(&format!(
                "PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON; PRAGMA synchronous = {}; \
                 PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}; \
                 PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES};",
                self.busy_timeout_ms, self.synchronous
            )),
            // The same bound on PostgreSQL: no statement or lock wait outlives the request.
            DbConn::Pg(c) => c.batch_execute(&format!(
                "SET statement_timeout = {ms}; SET lock_timeout = {ms};",
                ms = self.busy_timeout_ms
            )),
        }
        .map_err(r2d2::Error::QueryError)
    }
}

/// Turns on SQLite's query-planner stability guarantee (`SQLITE_DBCONFIG_ENABLE_QPSG`) for every
/// connection this process opens, through an auto-extension registered once.
///
/// Why: since 3.5x SQLite plans `LIMIT ?` with the bound value, and marks such a statement for
/// re-preparation whenever a new value is bound to that parameter. Diesel binds every parameter
/// on every execution, so each cached statement with a `LIMIT` (latest, lists, trends) was parsed
/// and planned again on every request: under GET latest load `sqlite3Reprepare` took 18 % of the
/// server's CPU. With QPSG a prepared statement keeps its plan, whatever the bound values; our
/// statements have no bound `LIKE` patterns and no `ANALYZE` statistics that a per-value plan
/// could exploit.
#[allow(unsafe_code)] // SQLite's C API: the only unsafe code of the crate.
fn sqlite_stable_plans() {
    use libsqlite3_sys as ffi;
    use std::ffi::{c_char, c_int};
    unsafe extern "C" fn enable_qpsg(
        db: *mut ffi::sqlite3,
        _err: *mut *mut c_char,
        _api: *const ffi::sqlite3_api_routines,
    ) -> c_int {
        // SAFETY: `db` is the connection SQLite is opening; the option takes an int and an
        // optional out-pointer.
        unsafe {
            ffi::sqlite3_db_config(
                db,
                ffi::SQLITE_DBCONFIG_ENABLE_QPSG,
                1 as c_int,
                std::ptr::null_mut::<c_int>(),
            );
        }
        ffi::SQLITE_OK
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a plain function with the signature SQLite expects.
        let rc = unsafe { ffi::sqlite3_auto_extension(Some(enable_qpsg)) };
        if rc != ffi::SQLITE_OK {
            log::warn!("could not register the SQLite planner setting (code {rc})");
        }
    });
}

/// How often the checkpointer looks for new commits to copy from the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);
/// The writer's own checkpoint, a safety net for when the background one falls behind (pages).
const WAL_AUTOCHECKPOINT_PAGES: u32 = 8192;
/// A WAL file larger than this is truncated back to it when it restarts (bytes).
const WAL_SIZE_LIMIT_BYTES: u64 = 64 << 20;

/// Checkpoints a SQLite database in WAL mode from a thread of its own, so that the writer's
/// commits never copy pages into the database file (and fsync it) while a client waits.
///
/// Every [`CHECKPOINT_EVERY`] it reads `PRAGMA data_version`, which changes when another
/// connection has committed; only then does it run a `PASSIVE` checkpoint, which neither waits
/// for nor blocks readers and the writer. Idle databases cost a cheap pragma per tick. The
/// writer keeps SQLite's automatic checkpoint, at [`WAL_AUTOCHECKPOINT_PAGES`], as a bound on
/// the WAL should this thread fall behind. The thread ends when the [`Storage`] is dropped.
struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(url: &str) -> Result<Checkpointer, DbError> {
        let mut conn = SqliteConnection::establish(url)?;
        conn.batch_execute("PRAGMA busy_timeout = 1000; PRAGMA synchronous = FULL;")?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                let mut seen: Option<i64> = None;
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_EVERY)
                {
                    let version = match data_version(&mut conn) {
                        Ok(v) => v,
                        Err(e) => {
                            log::warn!("checkpointer: {e}");
                            continue;
                        }
                    };
                    if seen.is_some_and(|s| s == version) {
                        continue;
                    }
                    match conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
                        // Seen only once the checkpoint ran, so a failed one is retried.
                        Ok(()) => seen = Some(version),
                        Err(e) => log::warn!("checkpointer: {e}"),
                    }
                }
            })
            .map_err(|e| DbError::Migration(format!("cannot start the checkpointer: {e}")))?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

fn data_version(conn: &mut SqliteConnection) -> diesel::QueryResult<i64> {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        data_version: i64,
    }
    diesel::sql_query("PRAGMA data_version")
        .get_result::<Row>(conn)
        .map(|r| r.data_version)
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The opened storage: a reader pool and a writer pool over one database.
pub(crate) struct Storage {
    pub backend: StorageBackend,
    pub read_pool: DbPool,
    pub write_pool: DbPool,
    /// `memory` keeps one connection open for the life of the process: the in-memory database
    /// disappears with its last connection.
    _keeper: Option<DbConn>,
    /// SQLite files: checkpoints the WAL off the writer's path.
    _checkpointer: Option<Checkpointer>,
}

pub(crate) struct StorageOptions {
    pub backend: StorageBackend,
    /// SQLite path or PostgreSQL URL (ignored for memory).
    pub url: String,
    pub read_pool_size: u32,
    pub write_pool_size: u32,
    pub connect_timeout: Duration,
    /// How long SQLite waits for a lock held by another connection.
    pub busy_timeout: Duration,
    pub sqlite_synchronous: &'static str,
}

impl Storage {
    /// Runs migrations, then builds the pools.
    pub(crate) fn open(opts: StorageOptions) -> Result<Storage, DbError> {
        sqlite_stable_plans();
        let (url, keeper) = match opts.backend {
            StorageBackend::Memory => {
                // The memdb VFS shares one in-memory database between all connections of this
                // process that open the same name (unlike `:memory:`, which gives each
                // connection its own, and unlike `cache=shared`, whose table locks fail with
                // SQLITE_LOCKED instead of waiting).
                let url = format!("file:/perfgate-{}?vfs=memdb", uuid::Uuid::new_v4().simple());
                let keeper = SqliteConnection::establish(&url)?;
                (url, Some(DbConn::Sqlite(keeper)))
            }
            _ => (opts.url.clone(), None),
        };
        run_migrations(opts.backend, &url)?;
        let manager = ConnManager {
            backend: opts.backend,
            url,
        };
        let pragmas = SqlitePragmas {
            synchronous: opts.sqlite_synchronous,
            busy_timeout_ms: opts.busy_timeout.as_millis() as u64,
        };
        let build = |name: &'static str, size: u32| {
            Pool::builder()
                .max_size(size)
                .min_idle(Some(1))
                // A checkout costs a `SELECT 1` when tested. SQLite connections are files of
                // this process and do not go stale; PostgreSQL connections do (restarts,
                // idle kills), so they are still tested.
                .test_on_check_out(opts.backend == StorageBackend::Postgres)
                .connection_timeout(opts.connect_timeout)
                .connection_customizer(Box::new(pragmas))
                .build(manager.clone())
                .map(|inner| DbPool { name, inner })
        };
        let checkpointer = match opts.backend {
            StorageBackend::Sqlite => Some(Checkpointer::start(&manager.url)?),
            _ => None,
        };
        let read_pool = build("read", opts.read_pool_size)?;
        let write_pool = build("write", opts.write_pool_size)?;
        Ok(Storage {
            backend: opts.backend,
            read_pool,
            write_pool,
            _keeper: keeper,
            _checkpointer: checkpointer,
        })
    }
}

/// An exclusive advisory lock (`flock`) on a SQLite database file, held for the life of the
/// server. It makes the server the file's only writer process, which the in-process cache of
/// latest answers relies on ([`crate::cache`]): a second server, or `import`, on the same file
/// is refused while the lock is held. SQLite's own locks are POSIX record locks, independent of
/// `flock`; the file handle stays open until the lock is dropped (closing a handle of the file
/// earlier would release SQLite's record locks of this process).
pub(crate) struct SqliteOwner {
    file: Option<std::fs::File>,
}

impl Drop for SqliteOwner {
    /// Releases the `flock` but keeps the descriptor open for the rest of the process: closing
    /// it would drop SQLite's record locks on the file, which connections still alive (actor
    /// threads finishing at shutdown) may hold.
    fn drop(&mut self) {
        if let Some(f) = self.file.take() {
            let _ = f.unlock();
            std::mem::forget(f);
        }
    }
}

impl SqliteOwner {
    pub(crate) fn acquire(path: &std::path::Path) -> Result<SqliteOwner, DbError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .open(path)
            .map_err(|e| DbError::Ownership(format!("cannot open {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(SqliteOwner { file: Some(file) }),
            Err(std::fs::TryLockError::WouldBlock) => Err(DbError::Ownership(format!(
                "{} is in use by another perfgate-server process (one server per SQLite file; \
                 stop it first, or share PostgreSQL between replicas)",
                path.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => Err(DbError::Ownership(format!(
                "cannot lock {}: {e}",
                path.display()
            ))),
        }
    }
}

fn run_migrations(backend: StorageBackend, url: &str) -> Result<(), DbError> {
    let mig_err = |e: Box<dyn std::error::Error + Send + Sync>| DbError::Migration(e.to_string());
    match backend {
        StorageBackend::Postgres => {
            let mut c = PgConnection::establish(url)?;
            // Session-level advisory lock: a replica that starts at the same moment waits here
            // and then finds nothing pending.
            c.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))?;
            let r = c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ());
            let unlock =
                c.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"));
            r.map_err(mig_err)?;
            unlock?;
        }
        StorageBackend::Sqlite | StorageBackend::Memory => {
            let mut c = SqliteConnection::establish(url)?;
            c.batch_execute("PRAGMA busy_timeout = 10000;")?;
            if backend == StorageBackend::Sqlite {
                // Persistent: set once per file.
                c.batch_execute("PRAGMA journal_mode = WAL;")?;
            }
            c.run_pending_migrations(SQLITE_MIGRATIONS)
                .map(|_| ())
                .map_err(mig_err)?;
        }
    }
    Ok(())
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
    match conn {
        DbConn::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?,
        DbConn::Pg(_) => <DbConn as Connection>::TransactionManager::begin_transaction(conn)?,
    }
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

/// `SELECT 1`, the health probe.
pub(crate) fn probe(conn: &mut DbConn) -> Result<(), DbError> {
    conn.batch_execute("SELECT 1")?;
    Ok(())
}
