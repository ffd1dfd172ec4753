//! Dependency events and the alert state maintained from them.

use diesel::prelude::*;

use super::schema::{dependency_events, fleet_groups, fleet_members};
use super::DbConn;
use crate::domain::fleet::{Entry, Group};
use crate::on_backend;

#[derive(
    Debug, Clone, PartialEq, Queryable, Selectable, Insertable, serde::Serialize, serde::Deserialize,
)]
#[diesel(table_name = dependency_events)]
pub struct EventRow {
    pub id: String,
    pub project: String,
    pub benchmark: String,
    pub dep_name: String,
    pub old_version: Option<String>,
    pub new_version: Option<String>,
    pub metric: String,
    pub delta_pct: f64,
    pub group_key: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize, serde::Deserialize)]
#[diesel(table_name = fleet_groups)]
pub struct GroupRow {
    pub group_key: String,
    pub dep_name: String,
    pub old_version: Option<String>,
    pub new_version: Option<String>,
    pub project_count: i64,
    pub entry_count: i64,
    pub delta_sum: f64,
    pub conf_rank: i64,
    pub avg_delta: f64,
    pub first_seen: i64,
    pub last_seen: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize, serde::Deserialize)]
#[diesel(table_name = fleet_members)]
pub struct MemberRow {
    pub group_key: String,
    pub project: String,
    pub benchmark: String,
    pub metric: String,
    pub delta_pct: f64,
    pub event_id: String,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// Stores an event; a regression also updates its group's members and aggregates. Runs inside
/// the caller's transaction.
pub(crate) fn record(conn: &mut DbConn, e: &EventRow) -> QueryResult<()> {
    diesel::insert_into(dependency_events::table)
        .values(e)
        .execute(conn)?;
    if e.delta_pct > 0.0 {
        apply_regression(conn, e)?;
    }
    Ok(())
}

fn apply_regression(conn: &mut DbConn, e: &EventRow) -> QueryResult<()> {
    // 1. The group row exists (and, on PostgreSQL, is locked for the rest of the transaction, so
    //    replicas updating one group take turns and the aggregates stay exact).
    on_backend!(conn, c => diesel::insert_into(fleet_groups::table)
        .values((
            fleet_groups::group_key.eq(&e.group_key),
            fleet_groups::dep_name.eq(&e.dep_name),
            fleet_groups::old_version.eq(&e.old_version),
            fleet_groups::new_version.eq(&e.new_version),
            fleet_groups::project_count.eq(0i64),
            fleet_groups::entry_count.eq(0i64),
            fleet_groups::delta_sum.eq(0.0f64),
            fleet_groups::conf_rank.eq(0i64),
            fleet_groups::avg_delta.eq(0.0f64),
            fleet_groups::first_seen.eq(e.created_at),
            fleet_groups::last_seen.eq(e.created_at),
        ))
        .on_conflict_do_nothing()
        .execute(c))?;
    if let DbConn::Pg(c) = conn {
        fleet_groups::table
            .filter(fleet_groups::group_key.eq(&e.group_key))
            .select(fleet_groups::group_key)
            .for_update()
            .first::<String>(c)?;
    }
    // 2. The (project, benchmark) entry keeps its newest regression.
    let existing: Option<MemberRow> = fleet_members::table
        .filter(fleet_members::group_key.eq(&e.group_key))
        .filter(fleet_members::project.eq(&e.project))
        .filter(fleet_members::benchmark.eq(&e.benchmark))
        .select(MemberRow::as_select())
        .first(conn)
        .optional()?;
    match existing {
        None => {
            diesel::insert_into(fleet_members::table)
                .values((
                    fleet_members::group_key.eq(&e.group_key),
                    fleet_members::project.eq(&e.project),
                    fleet_members::benchmark.eq(&e.benchmark),
                    fleet_members::metric.eq(&e.metric),
                    fleet_members::delta_pct.eq(e.delta_pct),
                    fleet_members::event_id.eq(&e.id),
                    fleet_members::first_seen.eq(e.created_at),
                    fleet_members::last_seen.eq(e.created_at),
                ))
                .execute(conn)?;
        }
        Some(m) => {
            let target = fleet_members::table
                .filter(fleet_members::group_key.eq(&e.group_key))
                .filter(fleet_members::project.eq(&e.project))
                .filter(fleet_members::benchmark.eq(&e.benchmark));
            if e.created_at >= m.last_seen {
                diesel::update(target)
                    .set((
                        fleet_members::metric.eq(&e.metric),
                        fleet_members::delta_pct.eq(e.delta_pct),
                        fleet_members::event_id.eq(&e.id),
                        fleet_members::last_seen.eq(e.created_at),
                        fleet_members::first_seen.eq(m.first_seen.min(e.created_at)),
                    ))
                    .execute(conn)?;
            } else if e.created_at < m.first_seen {
                diesel::update(target)
                    .set(fleet_members::first_seen.eq(e.created_at))
                    .execute(conn)?;
            }
        }
    }
    // 3. Aggregates from the group's entries (bounded by the fleet's size, not by history).
    refresh_group(conn, &e.group_key)
}

/// Recomputes one group's aggregates from its entries.
pub(crate) fn refresh_group(conn: &mut DbConn, key: &str) -> QueryResult<()> {
    let members: Vec<(String, f64, i64, i64)> = fleet_members::table
        .filter(fleet_members::group_key.eq(key))
        .select((
            fleet_members::project,
            fleet_members::delta_pct,
            fleet_members::first_seen,
            fleet_members::last_seen,
        ))
        .load(conn)?;
    let mut projects: Vec<&str> = members.iter().map(|m| m.0.as_str()).collect();
    projects.sort_unstable();
    projects.dedup();
    let sum: f64 = members.iter().map(|m| m.1).sum();
    let avg = if members.is_empty() {
        0.0
    } else {
        sum / members.len() as f64
    };
    let first = members.iter().map(|m| m.2).min().unwrap_or(0);
    let last = members.iter().map(|m| m.3).max().unwrap_or(0);
    diesel::update(fleet_groups::table.filter(fleet_groups::group_key.eq(key)))
        .set((
            fleet_groups::project_count.eq(projects.len() as i64),
            fleet_groups::entry_count.eq(members.len() as i64),
            fleet_groups::delta_sum.eq(sum),
            fleet_groups::conf_rank.eq((projects.len() as i64).min(CONFIDENCE_FULL)),
            fleet_groups::avg_delta.eq(avg),
            fleet_groups::first_seen.eq(first),
            fleet_groups::last_seen.eq(last),
        ))
        .execute(conn)?;
    Ok(())
}

/// Distinct projects at which an alert's confidence reaches 1.
pub(crate) const CONFIDENCE_FULL: i64 = 5;

/// The `limit` best groups with at least `min_projects` distinct projects, in alert order (an
/// index walk: no event is read, and only the groups returned are visited when
/// `min_projects <= 5`).
pub(crate) fn top_groups(
    conn: &mut DbConn,
    min_projects: i64,
    limit: i64,
) -> QueryResult<Vec<GroupRow>> {
    fleet_groups::table
        .filter(fleet_groups::project_count.ge(min_projects))
        .order((
            fleet_groups::conf_rank.desc(),
            fleet_groups::avg_delta.desc(),
            fleet_groups::group_key.asc(),
        ))
        .limit(limit)
        .select(GroupRow::as_select())
        .load(conn)
}

pub(crate) fn members_of(conn: &mut DbConn, keys: &[String]) -> QueryResult<Vec<MemberRow>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    fleet_members::table
        .filter(fleet_members::group_key.eq_any(keys))
        .select(MemberRow::as_select())
        .load(conn)
}

/// Entries whose newest regression is at or after `since`.
pub(crate) fn members_since(conn: &mut DbConn, since: i64) -> QueryResult<Vec<MemberRow>> {
    fleet_members::table
        .filter(fleet_members::last_seen.ge(since))
        .select(MemberRow::as_select())
        .load(conn)
}

pub(crate) fn groups_by_key(conn: &mut DbConn, keys: &[String]) -> QueryResult<Vec<GroupRow>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    fleet_groups::table
        .filter(fleet_groups::group_key.eq_any(keys))
        .select(GroupRow::as_select())
        .load(conn)
}

/// Earliest regression of a group at or after `since` (index range scan).
pub(crate) fn first_regression_since(
    conn: &mut DbConn,
    key: &str,
    since: i64,
) -> QueryResult<Option<i64>> {
    dependency_events::table
        .filter(dependency_events::group_key.eq(key))
        .filter(dependency_events::delta_pct.gt(0.0))
        .filter(dependency_events::created_at.ge(since))
        .order(dependency_events::created_at.asc())
        .select(dependency_events::created_at)
        .first(conn)
        .optional()
}

/// Assembles domain groups from stored rows.
pub(crate) fn to_groups(groups: Vec<GroupRow>, members: Vec<MemberRow>) -> Vec<Group> {
    let mut by_key: std::collections::HashMap<String, Group> = groups
        .into_iter()
        .map(|g| {
            (
                g.group_key.clone(),
                Group {
                    key: g.group_key,
                    dependency: g.dep_name,
                    old_version: g.old_version,
                    new_version: g.new_version,
                    entries: Vec::new(),
                },
            )
        })
        .collect();
    for m in members {
        if let Some(g) = by_key.get_mut(&m.group_key) {
            g.entries.push(Entry {
                project: m.project,
                benchmark: m.benchmark,
                metric: m.metric,
                delta_pct: m.delta_pct,
                last_seen: m.last_seen,
                first_seen: m.first_seen,
            });
        }
    }
    by_key.into_values().collect()
}

/// A dependency's impact: some of its events, and a summary of all of them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DependencyImpact {
    /// Events oldest first, at most the query's limit.
    pub events: Vec<EventRow>,
    /// Distinct projects over all matching events (not only those returned).
    pub project_count: i64,
    /// Average `delta_pct` over all matching events; 0 when there are none.
    pub avg_delta_pct: f64,
}

impl DependencyImpact {
    /// The impact of `events` (oldest first): summarised whole, then cut to `limit`.
    pub(crate) fn of_events(mut events: Vec<EventRow>, limit: i64) -> Self {
        let mut projects: Vec<&str> = events.iter().map(|e| e.project.as_str()).collect();
        projects.sort_unstable();
        projects.dedup();
        let project_count = projects.len() as i64;
        let avg_delta_pct = if events.is_empty() {
            0.0
        } else {
            events.iter().map(|e| e.delta_pct).sum::<f64>() / events.len() as f64
        };
        events.truncate(limit.max(0) as usize);
        Self {
            events,
            project_count,
            avg_delta_pct,
        }
    }
}

/// Events of one dependency, oldest first, and (over all matching events) the number of
/// distinct projects and the average delta.
pub(crate) fn impact(
    conn: &mut DbConn,
    dep: &str,
    since: Option<i64>,
    limit: i64,
) -> QueryResult<DependencyImpact> {
    let base = || {
        let mut q = dependency_events::table
            .filter(dependency_events::dep_name.eq(dep.to_owned()))
            .into_boxed();
        if let Some(s) = since {
            q = q.filter(dependency_events::created_at.ge(s));
        }
        q
    };
    let events = base()
        .order((
            dependency_events::created_at.asc(),
            dependency_events::id.asc(),
        ))
        .limit(limit)
        .select(EventRow::as_select())
        .load(conn)?;
    let projects: i64 = base()
        .select(diesel::dsl::count(dependency_events::project).aggregate_distinct())
        .first(conn)?;
    let avg: Option<f64> = base()
        .select(diesel::dsl::avg(dependency_events::delta_pct))
        .first(conn)?;
    Ok(DependencyImpact {
        events,
        project_count: projects,
        avg_delta_pct: avg.unwrap_or(0.0),
    })
}
