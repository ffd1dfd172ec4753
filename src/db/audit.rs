//! Audit events, written in the same transaction as the change they record.

use diesel::prelude::*;

use super::schema::audit_events;
use super::DbConn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize, serde::Deserialize)]
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
pub(crate) struct AuditEntry<'a> {
    pub actor: &'a str,
    pub action: &'static str,
    pub resource_type: &'static str,
    pub resource_id: &'a str,
    pub project: &'a str,
    pub request_id: &'a str,
    pub extra: serde_json::Map<String, serde_json::Value>,
}

pub(crate) fn insert(conn: &mut DbConn, e: AuditEntry<'_>, now: i64) -> QueryResult<()> {
    let mut meta = e.extra;
    meta.insert("request_id".into(), e.request_id.into());
    let row = AuditRow {
        id: crate::domain::ids::row_id(),
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

#[derive(Debug, Clone, Default)]
pub(crate) struct AuditFilter {
    pub project: Option<String>,
    pub action: Option<String>,
    pub resource_type: Option<String>,
    pub actor: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub limit: i64,
    pub offset: i64,
}

type Db = <DbConn as Connection>::Backend;

fn filtered(f: &AuditFilter) -> audit_events::BoxedQuery<'static, Db> {
    let mut q = audit_events::table.into_boxed();
    if let Some(p) = &f.project {
        q = q.filter(audit_events::project.eq(p.clone()));
    }
    if let Some(a) = &f.action {
        q = q.filter(audit_events::action.eq(a.clone()));
    }
    if let Some(r) = &f.resource_type {
        q = q.filter(audit_events::resource_type.eq(r.clone()));
    }
    if let Some(a) = &f.actor {
        q = q.filter(audit_events::actor.eq(a.clone()));
    }
    if let Some(s) = f.since {
        q = q.filter(audit_events::ts.ge(s));
    }
    if let Some(u) = f.until {
        q = q.filter(audit_events::ts.le(u));
    }
    q
}

/// One page, newest first, and the filtered total.
pub(crate) fn list(conn: &mut DbConn, f: &AuditFilter) -> QueryResult<(Vec<AuditRow>, i64)> {
    let total: i64 = filtered(f).count().get_result(conn)?;
    if total <= f.offset {
        return Ok((Vec::new(), total));
    }
    let rows = filtered(f)
        .order((audit_events::ts.desc(), audit_events::id.desc()))
        .limit(f.limit)
        .offset(f.offset)
        .select(AuditRow::as_select())
        .load(conn)?;
    Ok((rows, total))
}
