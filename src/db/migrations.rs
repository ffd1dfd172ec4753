//! Embedded migrations, one folder per backend with identical names, run at start-up on a
//! concrete connection before the pools exist.

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::{DbError, StorageBackend};

pub(crate) const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub(crate) const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Key of the PostgreSQL advisory lock held while migrations run, so that replicas starting
/// together apply them once.
const MIGRATION_LOCK_KEY: i64 = 0x7065_7266_6761_7465; // "perfgate"

/// Creates a missing SQLite file readable and writable by its owner only (0600; SQLite gives its
/// `-wal` and `-shm` files the same mode). An existing file keeps the mode it has.
fn create_private(path: &str) {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    // An existing file is fine; any other failure is SQLite's to report (missing folder,
    // permissions) when it opens the path.
    let _ = opts.open(path);
}

pub(crate) fn run_migrations(backend: StorageBackend, url: &str) -> Result<(), DbError> {
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
            if backend == StorageBackend::Sqlite {
                create_private(url);
            }
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
