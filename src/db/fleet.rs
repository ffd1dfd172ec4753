//! Dependency events and the alert state maintained from them.

use diesel::prelude::*;

use super::schema::{dependency_events, fleet_groups, fleet_members};
use super::DbConn;
use crate::domain::fleet::{self, Entry, Group, Summary};
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

impl MemberRow {
    fn into_entry(self) -> (String, Entry) {
        (
            self.group_key,
            Entry {
                project: self.project,
                benchmark: self.benchmark,
                metric: self.metric,
                delta_pct: self.delta_pct,
                last_seen: self.last_seen,
                first_seen: self.first_seen,
            },
        )
    }
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
    // 2. The (project, benchmark) entry keeps its newest regression (the domain's rule).
    let target = || {
        fleet_members::table
            .filter(fleet_members::group_key.eq(&e.group_key))
            .filter(fleet_members::project.eq(&e.project))
            .filter(fleet_members::benchmark.eq(&e.benchmark))
    };
    let existing: Option<MemberRow> = target()
        .select(MemberRow::as_select())
        .first(conn)
        .optional()?;
    match existing {
        None => {
            let entry = Entry::first(
                &e.project,
                &e.benchmark,
                &e.metric,
                e.delta_pct,
                e.created_at,
            );
            diesel::insert_into(fleet_members::table)
                .values((
                    fleet_members::group_key.eq(&e.group_key),
                    fleet_members::project.eq(&entry.project),
                    fleet_members::benchmark.eq(&entry.benchmark),
                    fleet_members::metric.eq(&entry.metric),
                    fleet_members::delta_pct.eq(entry.delta_pct),
                    fleet_members::event_id.eq(&e.id),
                    fleet_members::first_seen.eq(entry.first_seen),
                    fleet_members::last_seen.eq(entry.last_seen),
                ))
                .execute(conn)?;
        }
        Some(m) => {
            let (_, mut entry) = m.into_entry();
            let first_seen_before = entry.first_seen;
            if entry.absorb(&e.metric, e.delta_pct, e.created_at) {
                diesel::update(target())
                    .set((
                        fleet_members::metric.eq(&entry.metric),
                        fleet_members::delta_pct.eq(entry.delta_pct),
                        fleet_members::event_id.eq(&e.id),
                        fleet_members::last_seen.eq(entry.last_seen),
                        fleet_members::first_seen.eq(entry.first_seen),
                    ))
                    .execute(conn)?;
            } else if entry.first_seen != first_seen_before {
                diesel::update(target())
                    .set(fleet_members::first_seen.eq(entry.first_seen))
                    .execute(conn)?;
            }
        }
    }
    // 3. Aggregates from the group's entries (bounded by the fleet's size, not by history).
    refresh_group(conn, &e.group_key)
}

/// Recomputes one group's aggregates from its entries.
pub(crate) fn refresh_group(conn: &mut DbConn, key: &str) -> QueryResult<()> {
    let entries: Vec<Entry> = members_of(conn, &[key.to_owned()])?
        .into_iter()
        .map(|m| m.into_entry().1)
        .collect();
    let s = Summary::of(&entries);
    diesel::update(fleet_groups::table.filter(fleet_groups::group_key.eq(key)))
        .set((
            fleet_groups::project_count.eq(s.projects as i64),
            fleet_groups::entry_count.eq(s.entries as i64),
            fleet_groups::delta_sum.eq(s.delta_sum),
            fleet_groups::conf_rank.eq(s.confidence_rank()),
            fleet_groups::avg_delta.eq(s.avg_delta_pct),
            fleet_groups::first_seen.eq(s.first_seen),
            fleet_groups::last_seen.eq(s.last_seen),
        ))
        .execute(conn)?;
    Ok(())
}

/// The `limit` best groups with at least `min_projects` distinct projects, in alert order (an
/// index walk: no event is read, and only the groups returned are visited when `min_projects`
/// is at most [`fleet::FULL_CONFIDENCE_PROJECTS`]).
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

/// The benchmark and time of every regression of a group since `since`, oldest first (for a
/// caller who may see only some benchmarks).
pub(crate) fn regressions_since(
    conn: &mut DbConn,
    key: &str,
    since: i64,
) -> QueryResult<Vec<(String, i64)>> {
    dependency_events::table
        .filter(dependency_events::group_key.eq(key))
        .filter(dependency_events::delta_pct.gt(0.0))
        .filter(dependency_events::created_at.ge(since))
        .order(dependency_events::created_at.asc())
        .select((dependency_events::benchmark, dependency_events::created_at))
        .load(conn)
}

/// Assembles domain groups from stored rows ([`fleet::assemble`]).
pub(crate) fn to_groups(groups: Vec<GroupRow>, members: Vec<MemberRow>) -> Vec<Group> {
    let heads = groups
        .into_iter()
        .map(|g| Group {
            key: g.group_key,
            dependency: g.dep_name,
            old_version: g.old_version,
            new_version: g.new_version,
            entries: Vec::new(),
        })
        .collect();
    fleet::assemble(heads, members.into_iter().map(MemberRow::into_entry))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testdb::on_each_backend;
    use crate::domain::fleet::{alerts, group_events, group_key, Event};

    fn ev(id: &str, project: &str, bench: &str, dep: &str, delta: f64, at: i64) -> EventRow {
        EventRow {
            id: id.into(),
            project: project.into(),
            benchmark: bench.into(),
            dep_name: dep.into(),
            old_version: Some("1".into()),
            new_version: Some("2".into()),
            metric: if at % 2 == 0 { "wall_ms" } else { "cpu_ms" }.into(),
            delta_pct: delta,
            group_key: group_key(dep, Some("1"), Some("2")),
            created_at: at,
        }
    }

    fn events() -> Vec<EventRow> {
        vec![
            ev("e1", "a", "x", "serde", 10.0, 10),
            ev("e2", "b", "x", "serde", 20.0, 20),
            ev("e3", "a", "x", "serde", 40.0, 30), // newer for (a, x)
            ev("e4", "a", "x", "serde", 90.0, 5),  // older: moves first_seen only
            ev("e5", "c", "y", "serde", -5.0, 40), // an improvement: stored, never grouped
            ev("e6", "c", "y", "tokio", 7.0, 51),
        ]
    }

    fn as_domain(e: &EventRow) -> Event {
        Event {
            project: e.project.clone(),
            benchmark: e.benchmark.clone(),
            dependency: e.dep_name.clone(),
            old_version: e.old_version.clone(),
            new_version: e.new_version.clone(),
            metric: e.metric.clone(),
            delta_pct: e.delta_pct,
            at: e.created_at,
        }
    }

    #[test]
    fn record_maintains_members_and_aggregates() {
        on_each_backend(|c, be| {
            for e in events() {
                record(c, &e).unwrap();
            }
            let serde = group_key("serde", Some("1"), Some("2"));
            let tokio = group_key("tokio", Some("1"), Some("2"));
            let g = groups_by_key(c, std::slice::from_ref(&serde)).unwrap();
            assert_eq!(g.len(), 1, "{be}");
            let g = &g[0];
            assert_eq!(
                (g.project_count, g.entry_count, g.conf_rank),
                (2, 2, 2),
                "{be}"
            );
            assert_eq!((g.delta_sum, g.avg_delta), (60.0, 30.0), "{be}");
            assert_eq!((g.first_seen, g.last_seen), (5, 30), "{be}");
            let mut m = members_of(c, std::slice::from_ref(&serde)).unwrap();
            m.sort_by(|x, y| x.project.cmp(&y.project));
            let ax = &m[0];
            assert_eq!(
                (ax.event_id.as_str(), ax.metric.as_str(), ax.delta_pct),
                ("e3", "wall_ms", 40.0),
                "the newest regression ({be})"
            );
            assert_eq!((ax.first_seen, ax.last_seen), (5, 30), "{be}");
            assert_eq!(m.len(), 2, "{be}");

            let keys = |rows: Vec<GroupRow>| -> Vec<String> {
                rows.into_iter().map(|g| g.group_key).collect()
            };
            assert_eq!(
                keys(top_groups(c, 2, 10).unwrap()),
                [serde.as_str()],
                "{be}"
            );
            assert_eq!(
                keys(top_groups(c, 1, 10).unwrap()),
                [serde.clone(), tokio.clone()],
                "confidence first ({be})"
            );
            assert_eq!(keys(top_groups(c, 1, 1).unwrap()), [serde.as_str()], "{be}");
            assert!(top_groups(c, 3, 10).unwrap().is_empty(), "{be}");
            assert!(members_of(c, &[]).unwrap().is_empty(), "{be}");
            assert!(groups_by_key(c, &[]).unwrap().is_empty(), "{be}");
            let mut since: Vec<(String, i64)> = members_since(c, 25)
                .unwrap()
                .into_iter()
                .map(|m| (m.project, m.last_seen))
                .collect();
            since.sort();
            assert_eq!(since, [("a".into(), 30), ("c".into(), 51)], "{be}");

            assert_eq!(
                first_regression_since(c, &serde, i64::MIN).unwrap(),
                Some(5)
            );
            assert_eq!(first_regression_since(c, &serde, 6).unwrap(), Some(10));
            assert_eq!(
                first_regression_since(c, &serde, 31).unwrap(),
                None,
                "an improvement is no regression ({be})"
            );
        });
    }

    /// What the store keeps while events arrive gives the alerts the domain computes from the
    /// whole history.
    #[test]
    fn stored_groups_give_the_domains_alerts() {
        on_each_backend(|c, be| {
            let events = events();
            for e in &events {
                record(c, e).unwrap();
            }
            let rows = top_groups(c, 1, 10).unwrap();
            let keys: Vec<String> = rows.iter().map(|g| g.group_key.clone()).collect();
            let members = members_of(c, &keys).unwrap();
            let stored = alerts(to_groups(rows, members), 1, 10);
            let domain: Vec<Event> = events.iter().map(as_domain).collect();
            assert_eq!(stored, alerts(group_events(&domain), 1, 10), "{be}");
            assert_eq!(stored.len(), 2, "{be}");
        });
    }

    #[test]
    fn impact_lists_oldest_first_and_summarises_every_match() {
        on_each_backend(|c, be| {
            for e in events() {
                record(c, &e).unwrap();
            }
            let all = impact(c, "serde", None, 2).unwrap();
            let ids: Vec<&str> = all.events.iter().map(|e| e.id.as_str()).collect();
            assert_eq!(ids, ["e4", "e1"], "{be}");
            assert_eq!((all.project_count, all.avg_delta_pct), (3, 31.0), "{be}");
            let serde: Vec<EventRow> = events()
                .into_iter()
                .filter(|e| e.dep_name == "serde")
                .collect();
            let mut oldest_first = serde.clone();
            oldest_first.sort_by_key(|e| e.created_at);
            assert_eq!(all, DependencyImpact::of_events(oldest_first, 2), "{be}");

            let recent = impact(c, "serde", Some(20), 10).unwrap();
            let ids: Vec<&str> = recent.events.iter().map(|e| e.id.as_str()).collect();
            assert_eq!(ids, ["e2", "e3", "e5"], "{be}");
            assert_eq!(recent.project_count, 3, "{be}");
            assert!((recent.avg_delta_pct - 55.0 / 3.0).abs() < 1e-9, "{be}");

            let none = impact(c, "nope", None, 10).unwrap();
            assert_eq!(
                (none.events.len(), none.project_count, none.avg_delta_pct),
                (0, 0, 0.0),
                "{be}"
            );
        });
    }
}
