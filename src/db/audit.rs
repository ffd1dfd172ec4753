//! Audit events, written in the same transaction as the change they record.

use diesel::prelude::*;

use super::schema::audit_events;
use super::DbConn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_events)]
pub struct AuditRow {
    pub id: String,
    pub ts: i64,
    pub actor: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub project: String,
    pub metadata: String,
}

/// What the caller knows about a mutation; the id and timestamp are filled in here.
pub struct AuditEntry<'a> {
    pub actor: &'a str,
    pub action: &'static str,
    pub resource_type: &'static str,
    pub resource_id: &'a str,
    pub project: &'a str,
    pub request_id: &'a str,
    pub extra: serde_json::Map<String, serde_json::Value>,
}

pub fn insert(conn: &mut DbConn, e: AuditEntry<'_>, now: i64) -> QueryResult<()> {
    let mut meta = e.extra;
    meta.insert("request_id".into(), e.request_id.into());
    let row = AuditRow {
        id: uuid::Uuid::new_v4().simple().to_string(),
        ts: now,
        actor: e.actor.to_owned(),
        action: e.action.to_owned(),
        resource_type: e.resource_type.to_owned(),
        resource_id: e.resource_id.to_owned(),
        project: e.project.to_owned(),
        metadata: serde_json::Value::Object(meta).to_string(),
    };
    diesel::insert_into(audit_events::table)
        .values(&row)
        .execute(conn)?;
    Ok(())
}
