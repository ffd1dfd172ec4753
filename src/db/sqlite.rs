//! SQLite tuning: per-connection PRAGMAs, stable query plans, the background WAL
//! checkpointer, and the file lock that makes this process the file's only writer.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{self, CustomizeConnection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;

use super::wal_sync::{WalSync, WalSyncOwner};
use super::{DbConn, DbError};

/// Per-connection settings (SQLite PRAGMAs, PostgreSQL timeouts). `synchronous` is `FULL` by default: every commit is fsynced
/// before the client hears 201, so an acknowledged write survives kill -9 *and* power loss
/// (`NORMAL` in WAL mode survives kill -9 but may lose the last commits on power loss).
#[derive(Debug, Clone, Copy)]
pub(super) struct SqlitePragmas {
    /// `PRAGMA soft_heap_limit` (process-wide; every connection sets the same value).
    pub(super) heap_limit: u64,
    pub(super) synchronous: &'static str,
    pub(super) busy_timeout_ms: u64,
}

impl CustomizeConnection<DbConn, r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut DbConn) -> Result<(), r2d2::Error> {
        match conn {
            DbConn::Sqlite(c) => c.batch_execute(&format!(
                "PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON; PRAGMA synchronous = {}; \
                 PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}; \
                 PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}; PRAGMA soft_heap_limit = {};",
                self.busy_timeout_ms, self.synchronous, self.heap_limit
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
#[allow(unsafe_code)] // SQLite's C API.
pub(super) fn sqlite_stable_plans() {
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
/// for nor blocks readers and the writer. Idle databases cost a cheap pragma per tick.
///
/// Under a steady stream of commits a passive checkpoint never catches up: the commits made
/// while it copies and fsyncs are left over, so the WAL is never restarted and grows until the
/// writer's own automatic checkpoint (at [`WAL_AUTOCHECKPOINT_PAGES`]) copies and fsyncs inside
/// a commit, 10–20 ms in front of every write of that batch. So once the WAL holds more than
/// [`WAL_RESTART_FRAMES`], the checkpointer takes this process's write turn and copies the few
/// frames left over: the WAL is then wholly in the database and the next writer starts it
/// again from the beginning. Writers wait for that short copy only. SQLite's automatic
/// checkpoint stays as the bound should this thread fall behind. The thread ends when the
/// [`Storage`] is dropped.
pub(super) struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    pub(super) fn start(url: &str) -> Result<Checkpointer, DbError> {
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
                    match checkpoint(&mut conn) {
                        // Seen only once the checkpoint ran, so a failed one is retried.
                        Ok(wal) => {
                            seen = Some(version);
                            crate::metrics::METRICS.sqlite_wal_frames.set(wal.frames);
                            if wal.frames > WAL_RESTART_FRAMES {
                                if let Err(e) = finish_checkpoint(&mut conn, wal) {
                                    log::warn!("checkpointer: {e}");
                                }
                            }
                        }
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

/// The WAL syncer of the database `url` (see `super::wal_sync`), when it is a file in WAL mode;
/// None otherwise, or should the WAL not open: group commits then flush inside the commit.
pub(super) fn wal_syncer(url: &str, restore: &'static str) -> Option<WalSyncOwner> {
    #[derive(diesel::QueryableByName)]
    struct Main {
        #[diesel(sql_type = diesel::sql_types::Text)]
        file: String,
    }
    #[derive(diesel::QueryableByName)]
    struct Mode {
        #[diesel(sql_type = diesel::sql_types::Text)]
        journal_mode: String,
    }
    use diesel::RunQueryDsl;
    let find = || -> Result<Option<WalSyncOwner>, String> {
        let mut conn = SqliteConnection::establish(url).map_err(|e| e.to_string())?;
        // A read first: it finds the file in WAL mode and opens the WAL, which then stays until
        // the last connection closes.
        conn.batch_execute("SELECT count(*) FROM sqlite_master")
            .map_err(|e| e.to_string())?;
        let mode = diesel::sql_query("PRAGMA journal_mode")
            .get_result::<Mode>(&mut conn)
            .map_err(|e| e.to_string())?;
        if !mode.journal_mode.eq_ignore_ascii_case("wal") {
            return Ok(None);
        }
        let main = diesel::sql_query("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .get_result::<Main>(&mut conn)
            .map_err(|e| e.to_string())?;
        if main.file.is_empty() {
            return Ok(None);
        }
        WalSync::for_database(main.file.into(), restore, Some(conn))
            .map(Some)
            .map_err(|e| format!("cannot open the WAL: {e}"))
    };
    find().unwrap_or_else(|e| {
        log::warn!("group commits flush inside the commit: {e}");
        None
    })
}

/// A WAL longer than this (frames of one page) is checkpointed to the end under the write
/// turn, so the next writer restarts it (16 MB with 4 KiB pages).
const WAL_RESTART_FRAMES: i64 = 4096;

/// What a checkpoint reports: the WAL's length and how much of it is in the database.
#[derive(diesel::QueryableByName, Debug, Clone, Copy)]
struct WalState {
    #[diesel(sql_type = diesel::sql_types::BigInt, column_name = log)]
    frames: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt, column_name = checkpointed)]
    copied: i64,
}

/// One `PASSIVE` checkpoint: copies what it can without waiting for anyone.
fn checkpoint(conn: &mut SqliteConnection) -> diesel::QueryResult<WalState> {
    use diesel::RunQueryDsl;
    diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)").get_result::<WalState>(conn)
}

/// Rounds of passive checkpoints before the final one: each copies the frames committed
/// during the one before, so the leftover shrinks while the copy outpaces the writers.
const CATCH_UP_ROUNDS: usize = 6;
/// A passive round that copied at most this many frames was short, and so is its leftover: the
/// final copy under the write turn (about 20 µs of fsync per page on a virtual disk) follows.
const FINAL_COPY_FRAMES: i64 = 128;
/// The final copy is skipped when the last round copied more than this (frames): writers would
/// wait for as long (about 10 ms with 4 KiB pages).
const LONGEST_FINAL_COPY: i64 = 512;

/// Brings the WAL wholly into the database, so the next writer restarts it: passive rounds
/// first, then a last short one while no writer of this process runs.
fn finish_checkpoint(conn: &mut SqliteConnection, mut wal: WalState) -> diesel::QueryResult<()> {
    let mut last_round = i64::MAX;
    for _ in 0..CATCH_UP_ROUNDS {
        let before = wal.copied;
        wal = checkpoint(conn)?;
        // A restarted WAL is shorter than what was copied before.
        last_round = if wal.frames < before {
            0
        } else {
            wal.frames - before
        };
        if last_round <= FINAL_COPY_FRAMES {
            break;
        }
    }
    if last_round > LONGEST_FINAL_COPY {
        // The writers outpace the copy: holding them up now would be a long stall. The next
        // tick tries again (SQLite's own checkpoint bounds the WAL meanwhile).
        final_copy("skipped");
        return Ok(());
    }
    let Some(_turn) = super::dialect::sqlite_turn() else {
        final_copy("skipped");
        return Ok(());
    };
    let wal = checkpoint(conn)?;
    if wal.copied < wal.frames {
        // A reader's snapshot still needs frames of the WAL (or another process writes):
        // the next round tries again.
        log::debug!(
            "checkpointer: {} of {} WAL frames copied",
            wal.copied,
            wal.frames
        );
        final_copy("partial");
    } else {
        final_copy("done");
    }
    Ok(())
}

fn final_copy(outcome: &str) {
    crate::metrics::METRICS
        .sqlite_wal_final_copies
        .with_label_values(&[outcome])
        .inc();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::dialect::write_tx;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    fn wal_bytes(db: &std::path::Path) -> u64 {
        std::fs::metadata(db.with_extension("db-wal")).map_or(0, |m| m.len())
    }

    /// The syncer flushes the WAL that SQLite writes: the file stays the same while other
    /// connections come and go (SQLite deletes the WAL when its last connection closes).
    #[cfg(unix)]
    #[test]
    fn the_wal_syncer_keeps_the_wal_it_flushes() {
        let file = crate::db::testdb::SqliteFile::new();
        let url = file.path();
        let write = |n: i32| {
            let mut c = SqliteConnection::establish(&url).unwrap();
            c.batch_execute(&format!("INSERT INTO t VALUES ({n})"))
                .unwrap();
        };
        let mut setup = SqliteConnection::establish(&url).unwrap();
        setup
            .batch_execute("PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER NOT NULL);")
            .unwrap();
        drop(setup);
        let owner = wal_syncer(&url, "FULL").expect("a file in WAL mode has a syncer");
        // Each of these is the only other connection: closing it would delete the WAL, and the
        // next one create another, were the syncer's connection not open.
        write(1);
        write(2);
        assert!(owner
            .sync()
            .flushes(std::path::Path::new(&format!("{url}-wal"))));
        drop(owner);
        // Not in WAL mode: no syncer.
        let plain = crate::db::testdb::SqliteFile::new();
        SqliteConnection::establish(&plain.path())
            .unwrap()
            .batch_execute("CREATE TABLE t (n INTEGER NOT NULL)")
            .unwrap();
        assert!(wal_syncer(&plain.path(), "FULL").is_none());
    }

    /// A writer that commits without pause (and without SQLite's own checkpoint) never finds
    /// the WAL wholly copied by passive checkpoints alone; the checkpointer's final copy under
    /// the write turn lets it restart the WAL, which so stays near its restart length.
    #[test]
    fn the_checkpointer_restarts_the_wal_under_a_steady_writer() {
        let dir =
            std::env::temp_dir().join(format!("perfgate-wal-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("w.db");
        let url = db.to_str().unwrap().to_owned();
        let mut setup = SqliteConnection::establish(&url).unwrap();
        setup
            .batch_execute("PRAGMA journal_mode = WAL; CREATE TABLE t (b BLOB NOT NULL);")
            .unwrap();
        drop(setup);
        let copies = || {
            crate::metrics::METRICS
                .sqlite_wal_final_copies
                .with_label_values(&["done"])
                .get()
        };
        let copies_before = copies();
        let checkpointer = Checkpointer::start(&url).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let writer = {
            let (url, stop, written) = (url.clone(), stop.clone(), written.clone());
            std::thread::spawn(move || {
                let mut c = DbConn::Sqlite(SqliteConnection::establish(&url).unwrap());
                c.batch_execute(
                    "PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0; PRAGMA busy_timeout = 5000;",
                )
                .unwrap();
                while !stop.load(Ordering::Relaxed) {
                    write_tx(&mut c, |c| {
                        c.batch_execute(
                            "INSERT INTO t (b) VALUES (randomblob(60000)), (randomblob(60000));",
                        )
                    })
                    .unwrap();
                    written.fetch_add(120_000, Ordering::Relaxed);
                }
            })
        };
        // Write well past three restart lengths, watching the WAL's size on disk.
        let restart_bytes = WAL_RESTART_FRAMES as u64 * 4120;
        let started = std::time::Instant::now();
        let mut largest = 0;
        while started.elapsed() < Duration::from_secs(60)
            && written.load(Ordering::Relaxed) < 4 * restart_bytes
        {
            largest = largest.max(wal_bytes(&db));
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        drop(checkpointer);
        let written = written.load(Ordering::Relaxed);
        assert!(
            written > 4 * restart_bytes,
            "the writer wrote only {written} bytes"
        );
        assert!(
            largest < 3 * restart_bytes,
            "the WAL reached {largest} bytes (restart at {restart_bytes}) after {written} bytes written"
        );
        assert!(copies() > copies_before, "no final copy was counted");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
