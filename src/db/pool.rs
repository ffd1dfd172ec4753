//! Connections and pools: the manager that opens connections of the configured backend, the
//! named r2d2 pools, and [`Storage`], which runs migrations and builds the reader and writer
//! pools.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;

use super::migrations::run_migrations;
use super::sqlite::{sqlite_stable_plans, Checkpointer, SqlitePragmas};
use super::{DbConn, DbError, StorageBackend};

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
