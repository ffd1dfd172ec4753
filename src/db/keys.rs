//! Persisted API keys (hashes only).

use diesel::prelude::*;

use super::schema::api_keys;
use super::DbConn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize, serde::Deserialize)]
#[diesel(table_name = api_keys)]
pub struct KeyRow {
    pub id: String,
    pub key_hash: String,
    pub key_prefix: String,
    pub description: String,
    pub role: String,
    pub project: String,
    pub pattern: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

pub(crate) fn find_by_hash(conn: &mut DbConn, hash: &str) -> QueryResult<Option<KeyRow>> {
    api_keys::table
        .filter(api_keys::key_hash.eq(hash))
        .select(KeyRow::as_select())
        .first(conn)
        .optional()
}

pub(crate) fn insert(conn: &mut DbConn, row: &KeyRow) -> QueryResult<()> {
    diesel::insert_into(api_keys::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// Every key ever stored, revoked and expired ones included.
pub(crate) fn count_all(conn: &mut DbConn) -> QueryResult<i64> {
    api_keys::table.count().get_result(conn)
}

/// True when the database holds anything besides keys: a baseline (deleted ones included), a
/// verdict, a fleet event or an audit event. One primary-key probe per table.
pub(crate) fn holds_data(conn: &mut DbConn) -> QueryResult<bool> {
    use super::schema::{audit_events, baselines, dependency_events, verdicts};
    Ok(baselines::table
        .select(baselines::id)
        .first::<String>(conn)
        .optional()?
        .is_some()
        || verdicts::table
            .select(verdicts::id)
            .first::<String>(conn)
            .optional()?
            .is_some()
        || dependency_events::table
            .select(dependency_events::id)
            .first::<String>(conn)
            .optional()?
            .is_some()
        || audit_events::table
            .select(audit_events::id)
            .first::<String>(conn)
            .optional()?
            .is_some())
}

/// Keys newest first; `project` limits to one project's keys.
pub(crate) fn list(conn: &mut DbConn, project: Option<&str>) -> QueryResult<Vec<KeyRow>> {
    let mut q = api_keys::table
        .select(KeyRow::as_select())
        .order((api_keys::created_at.desc(), api_keys::id.desc()))
        .into_boxed();
    if let Some(p) = project {
        q = q.filter(api_keys::project.eq(p.to_owned()));
    }
    q.load(conn)
}

pub(crate) fn find_by_id(conn: &mut DbConn, id: &str) -> QueryResult<Option<KeyRow>> {
    api_keys::table
        .filter(api_keys::id.eq(id))
        .select(KeyRow::as_select())
        .first(conn)
        .optional()
}

/// Marks a key revoked; true when this call revoked it.
pub(crate) fn revoke(conn: &mut DbConn, id: &str, now: i64) -> QueryResult<bool> {
    let n = diesel::update(
        api_keys::table
            .filter(api_keys::id.eq(id))
            .filter(api_keys::revoked_at.is_null()),
    )
    .set(api_keys::revoked_at.eq(now))
    .execute(conn)?;
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testdb::on_each_backend;

    fn key(id: &str, project: &str, at: i64) -> KeyRow {
        KeyRow {
            id: id.into(),
            key_hash: format!("hash-{id}"),
            key_prefix: format!("pg_live_{id}"),
            description: format!("key {id}"),
            role: "contributor".into(),
            project: project.into(),
            pattern: Some("bench-*".into()),
            created_at: at,
            expires_at: Some(at + 1000),
            revoked_at: None,
        }
    }

    fn ids(rows: Vec<KeyRow>) -> Vec<String> {
        rows.into_iter().map(|k| k.id).collect()
    }

    #[test]
    fn insert_find_list_and_revoke() {
        on_each_backend(|c, be| {
            assert_eq!(count_all(c).unwrap(), 0, "{be}");
            insert(c, &key("k1", "p", 10)).unwrap();
            insert(c, &key("k2", "*", 20)).unwrap();
            insert(c, &key("k3", "p", 30)).unwrap();
            let k = find_by_hash(c, "hash-k2").unwrap().unwrap();
            assert_eq!(
                (k.id.as_str(), k.project.as_str(), k.pattern.as_deref()),
                ("k2", "*", Some("bench-*")),
                "{be}"
            );
            assert!(find_by_hash(c, "hash-nope").unwrap().is_none(), "{be}");
            assert_eq!(
                find_by_id(c, "k1").unwrap().unwrap().key_hash,
                "hash-k1",
                "{be}"
            );
            assert!(find_by_id(c, "nope").unwrap().is_none(), "{be}");
            assert_eq!(ids(list(c, None).unwrap()), ["k3", "k2", "k1"], "{be}");
            assert_eq!(ids(list(c, Some("p")).unwrap()), ["k3", "k1"], "{be}");
            assert!(list(c, Some("q")).unwrap().is_empty(), "{be}");

            assert!(revoke(c, "k1", 50).unwrap(), "{be}");
            assert!(!revoke(c, "k1", 60).unwrap(), "already revoked ({be})");
            assert!(!revoke(c, "nope", 60).unwrap(), "{be}");
            let k1 = find_by_id(c, "k1").unwrap().unwrap();
            assert_eq!(k1.revoked_at, Some(50), "the first revocation stays ({be})");
            // Revoked keys are still listed and counted.
            assert_eq!(ids(list(c, Some("p")).unwrap()), ["k3", "k1"], "{be}");
            assert_eq!(count_all(c).unwrap(), 3, "{be}");
        });
    }
}
