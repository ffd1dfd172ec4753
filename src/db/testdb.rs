//! Fresh, migrated databases for the query tests of `db/`: a SQLite file in a directory of its
//! own, and a PostgreSQL database on the test server of `tests/common/pg.rs` (reused as is:
//! `PERFGATE_TEST_DATABASE_URL`, or a throwaway cluster started once per test process and
//! stopped by a watchdog when the process exits). PostgreSQL is skipped, loudly, only when none
//! can be started and `PERFGATE_REQUIRE_POSTGRES=1` is not set.

use std::path::PathBuf;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;
use diesel::Connection;

use super::migrations::run_migrations;
use super::DbConn;
use crate::config::StorageBackend;

#[path = "../../tests/common/pg.rs"]
#[allow(dead_code, unreachable_pub)]
mod pg;

/// For `pg.rs`: a port nothing listens on.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A SQLite database file removed with its directory when dropped.
pub(crate) struct SqliteFile {
    dir: PathBuf,
}

impl SqliteFile {
    pub(crate) fn new() -> SqliteFile {
        let dir =
            std::env::temp_dir().join(format!("perfgate-dbtest-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        SqliteFile { dir }
    }
    pub(crate) fn path(&self) -> String {
        self.dir.join("perfgate.db").to_string_lossy().into_owned()
    }
}

impl Drop for SqliteFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `test` on a fresh SQLite database, then on a fresh PostgreSQL database, each migrated
/// and connected as the server connects (foreign keys on for SQLite). `test` gets the backend's
/// name for its messages.
pub(crate) fn on_each_backend(test: impl Fn(&mut DbConn, &str)) {
    {
        let file = SqliteFile::new();
        run_migrations(StorageBackend::Sqlite, &file.path()).expect("SQLite migrations");
        let mut c = SqliteConnection::establish(&file.path()).expect("SQLite connection");
        c.batch_execute("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;")
            .expect("pragmas");
        test(&mut DbConn::Sqlite(c), "sqlite");
    }
    if let Some(url) = postgres_url() {
        run_migrations(StorageBackend::Postgres, &url).expect("PostgreSQL migrations");
        let c = PgConnection::establish(&url).expect("PostgreSQL connection");
        test(&mut DbConn::Pg(c), "postgres");
    }
}

/// A new, empty PostgreSQL database, or `None` after a loud message (a panic when
/// `PERFGATE_REQUIRE_POSTGRES=1`).
pub(crate) fn postgres_url() -> Option<String> {
    pg::fresh_database_url()
}
