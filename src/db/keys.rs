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
