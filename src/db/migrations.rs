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

#[cfg(test)]
mod tests {
    use diesel::backend::Backend;
    use diesel::migration::MigrationSource;

    use super::*;
    use crate::db::testdb::{postgres_url, SqliteFile};
    use crate::db::DbConn;

    /// Runs `source`'s migrations up to, not including, the one named `before`.
    fn migrate_until<B: Backend>(
        c: &mut impl MigrationHarness<B>,
        source: EmbeddedMigrations,
        before: &str,
    ) {
        // Reading what is applied creates Diesel's table of applied migrations.
        assert!(c.applied_migrations().expect("applied").is_empty());
        let all = MigrationSource::<B>::migrations(&source).expect("migrations");
        assert!(all.iter().any(|m| m.name().to_string().contains(before)));
        for m in all
            .iter()
            .take_while(|m| !m.name().to_string().contains(before))
        {
            c.run_migration(m).expect("migration");
        }
    }

    /// Gates of two projects, with runs over two attempts (the same SQL on both backends).
    const GATES: &str = "\
        INSERT INTO gates (id, project, status, is_final, attempt, max_attempts, record, metrics, \
            settings, result, deadline, created_at, updated_at) VALUES \
            ('g1', 'p1', 'pass', false, 2, 3, false, '[]', '{}', '{}', 0, 0, 0), \
            ('g2', 'p1', 'pass', false, 1, 3, false, '[]', '{}', '{}', 0, 0, 0), \
            ('g3', 'p2', 'pass', false, 1, 3, false, '[]', '{}', '{}', 0, 0, 0); \
        INSERT INTO gate_runs (gate_id, attempt, benchmark, run_id, runner, receipt, summaries, \
            created_at) VALUES \
            ('g1', 1, 'a/x', 'r1', 'h', '{}', '{}', 0), ('g1', 2, 'a/x', 'r2', 'h', '{}', '{}', 0), \
            ('g1', 2, 'c', 'r3', 'h', '{}', '{}', 0), ('g2', 1, 'b', 'r4', 'h', '{}', '{}', 0), \
            ('g3', 1, 'z', 'r5', 'h', '{}', '{}', 0);";

    fn names(c: &mut DbConn) -> (Vec<String>, Vec<String>) {
        (
            crate::db::gates::gate_benchmarks(c, "p1").unwrap(),
            crate::db::gates::gate_benchmarks(c, "p2").unwrap(),
        )
    }

    fn expected() -> (Vec<String>, Vec<String>) {
        (vec!["a/x".into(), "b".into(), "c".into()], vec!["z".into()])
    }

    #[test]
    fn gate_benchmarks_are_filled_from_existing_gate_runs() {
        let file = SqliteFile::new();
        let mut c = SqliteConnection::establish(&file.path()).unwrap();
        migrate_until(&mut c, SQLITE_MIGRATIONS, "gate_benchmarks");
        c.batch_execute(GATES).unwrap();
        c.run_pending_migrations(SQLITE_MIGRATIONS).unwrap();
        assert_eq!(names(&mut DbConn::Sqlite(c)), expected(), "sqlite");

        if let Some(url) = postgres_url() {
            let mut c = PgConnection::establish(&url).unwrap();
            migrate_until(&mut c, POSTGRES_MIGRATIONS, "gate_benchmarks");
            c.batch_execute(GATES).unwrap();
            c.run_pending_migrations(POSTGRES_MIGRATIONS).unwrap();
            assert_eq!(names(&mut DbConn::Pg(c)), expected(), "postgres");
        }
    }
}
