//! Audit events, written in the same transaction as the change they record.

use diesel::prelude::*;

use super::schema::audit_events;
use super::DbConn;
use crate::request_id::RequestRef;

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
    pub request_id: &'a RequestRef,
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The metadata keeps the server's request id as `request_id` (a client cannot choose it) and a
/// client-sent `X-Request-Id` beside it as `client_request_id`.
pub(crate) fn insert(conn: &mut DbConn, e: AuditEntry<'_>, now: i64) -> QueryResult<()> {
    let mut meta = e.extra;
    meta.insert("request_id".into(), e.request_id.server().into());
    if let Some(client) = e.request_id.client() {
        meta.insert("client_request_id".into(), client.into());
    }
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
    crate::on_backend!(conn, c => diesel::insert_into(audit_events::table)
        .values(&row)
        .execute(c))?;
    Ok(())
}

#[derive(Debug, Clone, Default)]
pub(crate) struct AuditFilter {
    pub project: Option<String>,
    pub action: Option<String>,
    pub resource_types: ResourceTypes,
    pub actor: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub limit: i64,
    pub offset: i64,
}

/// Which resource types an audit list holds.
#[derive(Debug, Clone, Default)]
pub(crate) enum ResourceTypes {
    #[default]
    Every,
    Only(String),
    /// Every type but these (a `NOT IN`, so the list still reads the time index top-down and
    /// stops at the page's end; an `IN` of the others made SQLite sort every matching event).
    Except(Vec<String>),
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
    match &f.resource_types {
        ResourceTypes::Every => {}
        ResourceTypes::Only(r) => q = q.filter(audit_events::resource_type.eq(r.clone())),
        ResourceTypes::Except(r) => q = q.filter(audit_events::resource_type.ne_all(r.clone())),
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

/// The audit trail of one resource of a project, oldest first: its newest `limit` events
/// (`audit_events_resource_idx`).
pub(crate) fn of_resource(
    conn: &mut DbConn,
    project: &str,
    resource_type: &str,
    resource_id: &str,
    limit: i64,
) -> QueryResult<Vec<AuditRow>> {
    let mut rows = audit_events::table
        .filter(audit_events::resource_type.eq(resource_type))
        .filter(audit_events::resource_id.eq(resource_id))
        .filter(audit_events::project.eq(project))
        .order((audit_events::ts.desc(), audit_events::id.desc()))
        .limit(limit)
        .select(AuditRow::as_select())
        .load(conn)?;
    rows.reverse();
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testdb::on_each_backend;

    fn record(c: &mut DbConn, actor: &str, action: &'static str, project: &str, at: i64) {
        let mut extra = serde_json::Map::new();
        extra.insert("version".into(), "v1".into());
        insert(
            c,
            AuditEntry {
                actor,
                action,
                resource_type: if action.starts_with("key") {
                    "api_key"
                } else {
                    "baseline"
                },
                resource_id: "r1",
                project,
                request_id: &RequestRef::from("req-1"),
                extra,
            },
            at,
        )
        .unwrap();
    }

    fn filter() -> AuditFilter {
        AuditFilter {
            limit: 100,
            ..AuditFilter::default()
        }
    }

    fn times(c: &mut DbConn, f: AuditFilter) -> (Vec<i64>, i64) {
        let (rows, total) = list(c, &f).unwrap();
        (rows.into_iter().map(|r| r.ts).collect(), total)
    }

    #[test]
    fn one_resource_oldest_first_newest_kept() {
        on_each_backend(|c, be| {
            record(c, "alice", "upload", "p", 30);
            record(c, "bob", "delete", "p", 10);
            record(c, "carol", "promote", "p", 20);
            record(c, "dave", "upload", "q", 25);
            record(c, "erin", "key_create", "p", 15);
            let actors = |rows: Vec<AuditRow>| -> Vec<String> {
                rows.into_iter().map(|r| r.actor).collect()
            };
            let all = of_resource(c, "p", "baseline", "r1", 10).unwrap();
            assert_eq!(actors(all), ["bob", "carol", "alice"], "{be}");
            let newest = of_resource(c, "p", "baseline", "r1", 2).unwrap();
            assert_eq!(actors(newest), ["carol", "alice"], "{be}");
            assert!(of_resource(c, "p", "baseline", "r2", 10)
                .unwrap()
                .is_empty());
        });
    }

    #[test]
    fn insert_then_list_with_filters_and_pages() {
        on_each_backend(|c, be| {
            record(c, "alice", "upload", "p", 10);
            record(c, "bob", "delete", "p", 20);
            record(c, "alice", "key_create", "*", 30);
            record(c, "alice", "upload", "q", 40);
            let (rows, total) = list(c, &filter()).unwrap();
            assert_eq!(total, 4, "{be}");
            let newest = &rows[0];
            assert_eq!(
                (
                    newest.ts,
                    newest.actor.as_str(),
                    newest.action.as_str(),
                    newest.resource_type.as_str(),
                    newest.resource_id.as_str(),
                    newest.project.as_str()
                ),
                (40, "alice", "upload", "baseline", "r1", "q"),
                "{be}"
            );
            let meta: serde_json::Value = serde_json::from_str(&newest.metadata).unwrap();
            assert_eq!(
                meta,
                serde_json::json!({"version": "v1", "request_id": "req-1"}),
                "{be}"
            );
            assert_eq!(newest.id.len(), 32, "a row id ({be})");
            let cases = [
                (
                    AuditFilter {
                        project: Some("p".into()),
                        ..filter()
                    },
                    (vec![20, 10], 2),
                ),
                (
                    AuditFilter {
                        action: Some("upload".into()),
                        ..filter()
                    },
                    (vec![40, 10], 2),
                ),
                (
                    AuditFilter {
                        resource_types: ResourceTypes::Only("api_key".into()),
                        ..filter()
                    },
                    (vec![30], 1),
                ),
                (
                    AuditFilter {
                        actor: Some("alice".into()),
                        since: Some(20),
                        until: Some(35),
                        ..filter()
                    },
                    (vec![30], 1),
                ),
                (
                    AuditFilter {
                        limit: 2,
                        offset: 1,
                        ..filter()
                    },
                    (vec![30, 20], 4),
                ),
                (
                    AuditFilter {
                        offset: 4,
                        ..filter()
                    },
                    (vec![], 4),
                ),
                (
                    AuditFilter {
                        project: Some("nope".into()),
                        ..filter()
                    },
                    (vec![], 0),
                ),
            ];
            for (f, want) in cases {
                let desc = format!("{f:?}");
                assert_eq!(times(c, f), want, "{desc} ({be})");
            }
        });
    }
}
