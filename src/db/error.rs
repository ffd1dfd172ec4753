//! The storage layer's error: diesel, r2d2 and connection failures kept as sources, never as
//! strings. Actors wrap it in their `StoreError`; only the HTTP layer turns it into a status.

/// Failures of the database or its pools.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error")]
    Diesel(#[from] diesel::result::Error),
    #[error("could not connect to the database")]
    Connection(#[from] diesel::ConnectionError),
    #[error("connection pool exhausted or unavailable")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("stored data is corrupt")]
    Corrupt(#[from] serde_json::Error),
    #[error("{0}")]
    Ownership(String),
}

impl DbError {
    /// Whether the client should retry (503 `unavailable`) rather than hear 500: the database
    /// is busy or locked, a transaction lost a serialization race, or the database cannot be
    /// reached or written right now (PostgreSQL stopped, restarting, or the connection killed;
    /// a SQLite file that cannot be opened or written, or a full disk). Nothing of the request
    /// was stored in any of these cases.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Pool(_) | DbError::Connection(_) => true,
            DbError::Diesel(e) => diesel_transient(e),
            _ => false,
        }
    }

    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            DbError::Diesel(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }
}

/// Messages of errors that say the database is out of reach or busy, not that the request or
/// the data is wrong. diesel reports the PostgreSQL ones as `Unknown` when the connection was
/// still readable when the error arrived; SQLite's come from `sqlite3_errmsg`.
const TRANSIENT_MESSAGES: &[&str] = &[
    // SQLite: SQLITE_BUSY, SQLITE_LOCKED, SQLITE_CANTOPEN, SQLITE_IOERR, SQLITE_READONLY
    // (including a database file moved or deleted under the server), SQLITE_FULL.
    "database is locked",
    "database is busy",
    "database table is locked",
    "unable to open database file",
    "disk I/O error",
    "attempt to write a readonly database",
    "database or disk is full",
    // PostgreSQL: deadlock and statement/lock timeouts, connections killed (57P01 and
    // friends), a server shutting down or starting up (57P03), lost connections.
    "deadlock detected",
    "canceling statement due to",
    "terminating connection due to",
    "the database system is",
    "server closed the connection",
    "no connection to the server",
    "could not receive data from server",
    "could not send data to server",
];

fn diesel_transient(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::DatabaseError(kind, info) => {
            matches!(
                kind,
                DatabaseErrorKind::SerializationFailure | DatabaseErrorKind::ClosedConnection
            ) || TRANSIENT_MESSAGES
                .iter()
                .any(|m| info.message().contains(m))
        }
        // A commit that failed and could not be rolled back: judged by the commit's error.
        Error::RollbackErrorOnCommit { commit_error, .. } => diesel_transient(commit_error),
        // The connection's transaction state was lost (its rollback failed, typically because
        // the connection died); the pool discards such a connection.
        Error::BrokenTransactionManager => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::result::{DatabaseErrorKind, Error};

    fn db(kind: DatabaseErrorKind, message: &str) -> DbError {
        DbError::Diesel(Error::DatabaseError(kind, Box::new(message.to_owned())))
    }

    #[test]
    fn an_unreachable_database_is_transient() {
        for m in [
            "database is locked",
            "disk I/O error",
            "unable to open database file",
            "attempt to write a readonly database",
            "database or disk is full",
            "terminating connection due to administrator command",
            "FATAL:  the database system is shutting down",
            "server closed the connection unexpectedly",
            "canceling statement due to statement timeout",
            "deadlock detected",
        ] {
            assert!(db(DatabaseErrorKind::Unknown, m).is_transient(), "{m}");
        }
        assert!(db(DatabaseErrorKind::ClosedConnection, "gone").is_transient());
        assert!(db(DatabaseErrorKind::SerializationFailure, "retry").is_transient());
        assert!(DbError::Diesel(Error::BrokenTransactionManager).is_transient());
        assert!(DbError::Connection(diesel::ConnectionError::BadConnection(
            "database \"x\" does not exist".into()
        ))
        .is_transient());
        let commit = Error::RollbackErrorOnCommit {
            rollback_error: Box::new(Error::BrokenTransactionManager),
            commit_error: Box::new(Error::DatabaseError(
                DatabaseErrorKind::ClosedConnection,
                Box::new("gone".to_owned()),
            )),
        };
        assert!(DbError::Diesel(commit).is_transient());
    }

    #[test]
    fn wrong_requests_and_data_are_not_transient() {
        assert!(!db(DatabaseErrorKind::UniqueViolation, "duplicate key").is_transient());
        assert!(!db(DatabaseErrorKind::Unknown, "no such table: baselines").is_transient());
        assert!(!db(DatabaseErrorKind::Unknown, "syntax error").is_transient());
        assert!(!DbError::Diesel(Error::NotFound).is_transient());
        assert!(!DbError::Migration("bad".into()).is_transient());
        let corrupt = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        assert!(!DbError::Corrupt(corrupt).is_transient());
    }

    /// How a database that is gone really fails, on each backend: the errors diesel returns are
    /// classified transient.
    #[test]
    fn real_outages_are_transient() {
        use diesel::connection::SimpleConnection;
        use diesel::{Connection, RunQueryDsl};
        // SQLite: a file that cannot be opened, and a database that cannot be written.
        let missing = std::env::temp_dir().join(format!(
            "perfgate-missing-{}/db.sqlite",
            uuid::Uuid::new_v4().simple()
        ));
        let Err(e) = diesel::SqliteConnection::establish(missing.to_str().unwrap()) else {
            panic!("opened a file in a missing directory");
        };
        assert!(DbError::from(e).is_transient());
        let dir =
            std::env::temp_dir().join(format!("perfgate-ro-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.sqlite");
        diesel::SqliteConnection::establish(path.to_str().unwrap())
            .unwrap()
            .batch_execute("CREATE TABLE t (x INTEGER)")
            .unwrap();
        let mut ro =
            diesel::SqliteConnection::establish(&format!("file:{}?mode=ro", path.display()))
                .unwrap();
        let e = ro.batch_execute("INSERT INTO t VALUES (1)").unwrap_err();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(DbError::from(e).is_transient(), "read-only SQLite");
        // PostgreSQL: a connection killed under its client, and a database dropped.
        let Some(url) = crate::db::testdb::postgres_url() else {
            return;
        };
        let mut victim = diesel::PgConnection::establish(&url).unwrap();
        let mut admin = diesel::PgConnection::establish(&url).unwrap();
        #[derive(diesel::QueryableByName)]
        struct Pid {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            pid: i32,
        }
        let pid = diesel::sql_query("SELECT pg_backend_pid() AS pid")
            .get_result::<Pid>(&mut victim)
            .unwrap()
            .pid;
        diesel::sql_query(format!("SELECT pg_terminate_backend({pid})"))
            .execute(&mut admin)
            .unwrap();
        let e = victim.batch_execute("SELECT 1").unwrap_err();
        let e = DbError::from(e);
        assert!(e.is_transient(), "killed connection: {e:?}");
        drop(admin);
        let (base, name) = url.rsplit_once('/').unwrap();
        let mut maint = diesel::PgConnection::establish(&format!("{base}/postgres")).unwrap();
        maint
            .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .unwrap();
        let Err(e) = diesel::PgConnection::establish(&url) else {
            panic!("connected to a dropped database");
        };
        assert!(DbError::from(e).is_transient(), "dropped database");
    }
}
