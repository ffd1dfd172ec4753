//! Connections and pools: the manager that opens connections of the configured backend, the
//! named r2d2 pools, and [`Storage`], which runs migrations and builds the reader and writer
//! pools.

use std::sync::Arc;
use std::time::Duration;

use scheduled_thread_pool::ScheduledThreadPool;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;

use super::migrations::run_migrations;
use super::sqlite::{sqlite_stable_plans, wal_syncer, Checkpointer, SqlitePragmas};
use super::wal_sync::{WalSync, WalSyncOwner};
use super::{DbConn, DbError, StorageBackend};

pub(crate) type PooledConn = PooledConnection<ConnManager>;

/// An r2d2 pool with a name, so that the time spent waiting for a connection is measured per
/// pool.
#[derive(Clone)]
pub(crate) struct DbPool {
    /// The store that owns the pool (`storage` for the general pools of start-up and commands).
    owner: &'static str,
    /// `read` or `write`.
    name: &'static str,
    inner: Pool<ConnManager>,
    /// The write pool of a SQLite file: its group commits are acknowledged by this syncer.
    wal_sync: Option<WalSync>,
}

impl DbPool {
    /// The syncer that acknowledges group commits of this (SQLite file's write) pool.
    pub(crate) fn wal_sync(&self) -> Option<&WalSync> {
        self.wal_sync.as_ref()
    }
    pub(crate) fn owner(&self) -> &'static str {
        self.owner
    }
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }
    pub(crate) fn get(&self) -> Result<PooledConn, r2d2::PoolError> {
        self.timed(|p| p.get())
    }
    /// A connection that is free now, without waiting or opening one.
    pub(crate) fn try_get(&self) -> Option<PooledConn> {
        self.inner.try_get()
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
            .with_label_values(&[self.owner, self.name])
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

/// A pool of one private in-memory SQLite connection, for tests of what runs on a writer.
#[cfg(test)]
pub(crate) fn memory_test_pool() -> DbPool {
    DbPool {
        owner: "test",
        name: "write",
        inner: Pool::builder()
            .max_size(1)
            .build(ConnManager {
                backend: StorageBackend::Memory,
                url: ":memory:".into(),
            })
            .expect("an in-memory SQLite pool"),
        wal_sync: None,
    }
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

/// The opened storage: the database with its migrations applied, from which each store takes
/// pools of its own ([`Storage::pools`]).
pub(crate) struct Storage {
    pub backend: StorageBackend,
    /// General pools, for start-up work and the operator commands.
    pub read_pool: DbPool,
    /// On SQLite and memory, the process's one write connection, which every store's writer
    /// shares (see [`Storage::pools`]).
    pub write_pool: DbPool,
    spec: PoolSpec,
    /// `memory` keeps one connection open for the life of the process: the in-memory database
    /// disappears with its last connection.
    _keeper: Option<DbConn>,
    /// SQLite files: checkpoints the WAL off the writer's path.
    _checkpointer: Option<Checkpointer>,
    /// SQLite files: flushes the WAL for group commits, off the writer's path. Dropped after
    /// the pools (fields drop in order), so it answers what is handed to it first.
    _wal_sync: Option<WalSyncOwner>,
}

pub(crate) struct StorageOptions {
    pub backend: StorageBackend,
    /// SQLite path or PostgreSQL URL (ignored for memory).
    pub url: String,
    /// Size of the general read pool.
    pub read_pool_size: u32,
    /// Size of the general write pool (on SQLite, 1: the shared writer).
    pub write_pool_size: u32,
    pub connect_timeout: Duration,
    /// How long SQLite waits for a lock held by another connection.
    pub busy_timeout: Duration,
    pub sqlite_synchronous: &'static str,
    /// SQLite's process-wide soft heap limit (page caches, schemas, statements), in bytes: past
    /// it, SQLite recycles cached pages instead of allocating more.
    pub sqlite_heap_limit: u64,
    /// How PostgreSQL pools keep their connections.
    pub pg: PgPoolOptions,
}

/// PostgreSQL pool settings (`--pg-*`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PgPoolOptions {
    /// Connections each pool keeps open when idle.
    pub min_idle: u32,
    /// Idle connections beyond `min_idle` are closed after this long (None: never).
    pub idle_timeout: Option<Duration>,
    /// Connections are replaced after this long (None: never).
    pub max_lifetime: Option<Duration>,
}

impl Default for PgPoolOptions {
    fn default() -> Self {
        PgPoolOptions {
            min_idle: 1,
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
        }
    }
}

/// Reader connections per store and writer shards that fit `max` connections, given the
/// connections a plan needs (`needs(readers, shards)`): readers shrink first, then shards, each
/// down to one. `None` when even one of each does not fit; `max == 0` means no limit.
pub(crate) fn fit_connections(
    max: u32,
    readers: u32,
    shards: u32,
    needs: impl Fn(u32, u32) -> u32,
) -> Option<(u32, u32)> {
    let (mut r, mut w) = (readers.max(1), shards.max(1));
    if max == 0 {
        return Some((r, w));
    }
    while needs(r, w) > max {
        if r > 1 {
            r -= 1;
        } else if w > 1 {
            w -= 1;
        } else {
            return None;
        }
    }
    Some((r, w))
}

/// The pools one store owns.
pub(crate) struct StorePools {
    pub read: DbPool,
    /// None for a store that only reads.
    pub write: Option<DbPool>,
}

impl Storage {
    /// Runs migrations, then builds the general pools.
    pub(crate) fn open(opts: StorageOptions) -> Result<Storage, DbError> {
        sqlite_stable_plans();
        super::wal_vfs::install();
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
        super::dialect::set_sqlite_turn_wait(opts.busy_timeout);
        let pragmas = SqlitePragmas {
            heap_limit: opts.sqlite_heap_limit,
            synchronous: opts.sqlite_synchronous,
            busy_timeout_ms: opts.busy_timeout.as_millis() as u64,
        };
        let checkpointer = match opts.backend {
            StorageBackend::Sqlite => Some(Checkpointer::start(&manager.url)?),
            _ => None,
        };
        // Group commits flush the WAL on a thread of their own only where every commit would
        // otherwise flush it (see `wal_sync`).
        let wal_sync = match opts.backend {
            StorageBackend::Sqlite if matches!(opts.sqlite_synchronous, "FULL" | "EXTRA") => {
                wal_syncer(&manager.url, opts.sqlite_synchronous)
            }
            _ => None,
        };
        let spec = PoolSpec {
            maintenance: Arc::new(
                ScheduledThreadPool::builder()
                    .num_threads(1)
                    .thread_name_pattern("pool-maintenance")
                    .build(),
            ),
            backend: opts.backend,
            manager,
            pragmas,
            connect_timeout: opts.connect_timeout,
            pg: opts.pg,
        };
        let mut write_pool = spec.build("storage", "write", opts.write_pool_size)?;
        write_pool.wal_sync = wal_sync.as_ref().map(|o| o.sync().clone());
        Ok(Storage {
            backend: opts.backend,
            read_pool: spec.build("storage", "read", opts.read_pool_size)?,
            write_pool,
            spec,
            _keeper: keeper,
            _checkpointer: checkpointer,
            _wal_sync: wal_sync,
        })
    }

    /// Pools for the store `owner`: `readers` reader connections, and on PostgreSQL `writers`
    /// writer connections of its own. SQLite has one writer per file: every store's writer
    /// shares the process's one write connection (two write connections would meet in SQLite's
    /// lock, whose busy handler sleeps 1-100 ms between retries), the one exception to "each
    /// store owns its pools". Reader connections beyond the first open on first use.
    pub(crate) fn pools(
        &self,
        owner: &'static str,
        readers: u32,
        writers: u32,
    ) -> Result<StorePools, DbError> {
        let read = self.spec.build(owner, "read", readers)?;
        let write = match self.backend {
            _ if writers == 0 => None,
            StorageBackend::Postgres => Some(self.spec.build(owner, "write", writers)?),
            StorageBackend::Sqlite | StorageBackend::Memory => Some(self.write_pool.clone()),
        };
        Ok(StorePools { read, write })
    }
}

/// How pools of this storage are built.
struct PoolSpec {
    /// Reaps idle and expired connections of every pool (PostgreSQL) and opens new ones.
    maintenance: Arc<ScheduledThreadPool>,
    backend: StorageBackend,
    manager: ConnManager,
    pragmas: SqlitePragmas,
    connect_timeout: Duration,
    pg: PgPoolOptions,
}

impl PoolSpec {
    /// A pool of at most `size` connections, one of them opened now (so a dead database is
    /// reported at start-up), the others on first use.
    fn build(&self, owner: &'static str, name: &'static str, size: u32) -> Result<DbPool, DbError> {
        let size = size.max(1);
        let builder = Pool::builder()
            .max_size(size)
            .thread_pool(self.maintenance.clone());
        let builder = match self.backend {
            StorageBackend::Postgres => builder
                .min_idle(Some(self.pg.min_idle.min(size)))
                .idle_timeout(self.pg.idle_timeout)
                .max_lifetime(self.pg.max_lifetime),
            // SQLite connections open on first use (an idle server holds none but the writer
            // and the checkpointer's) and are kept: they never go stale, and each holds its
            // page cache.
            StorageBackend::Sqlite | StorageBackend::Memory => builder
                .min_idle(Some(0))
                .idle_timeout(None)
                .max_lifetime(None),
        };
        let inner = builder
            // A checkout costs a `SELECT 1` when tested. SQLite connections are files of this
            // process and do not go stale; PostgreSQL connections do (restarts, idle kills),
            // so they are still tested.
            .test_on_check_out(self.backend == StorageBackend::Postgres)
            .connection_timeout(self.connect_timeout)
            .connection_customizer(Box::new(self.pragmas))
            .build(self.manager.clone())?;
        Ok(DbPool {
            owner,
            name,
            inner,
            wal_sync: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::fit_connections;

    #[test]
    fn connections_fit_readers_first_then_shards() {
        let needs = |r: u32, w: u32| 3 + 7 * r + 5 * w; // any plan's shape
        assert_eq!(fit_connections(0, 4, 2, needs), Some((4, 2)));
        assert_eq!(
            fit_connections(41, 4, 2, needs),
            Some((4, 2)),
            "3 + 28 + 10 = 41"
        );
        assert_eq!(fit_connections(40, 4, 2, needs), Some((3, 2)));
        assert_eq!(fit_connections(20, 4, 2, needs), Some((1, 2)));
        assert_eq!(fit_connections(15, 4, 2, needs), Some((1, 1)));
        assert_eq!(fit_connections(14, 4, 2, needs), None);
        assert_eq!(fit_connections(100, 0, 0, needs), Some((1, 1)));
    }
}
