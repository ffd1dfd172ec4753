//! The fleet analyzer (contract §6): records dependency changes and answers alerts and impact
//! queries from aggregates maintained at write time, so an alert query costs the same whatever
//! the length of the event history.

use crate::db::fleet::{self as q, DependencyImpact, EventRow};
use crate::db::{read_tx, write_tx, DbPool, PooledConn};
use crate::domain::access::BenchFilter;
use crate::domain::fleet::{self, Alert};
use crate::store_actor;

use super::{Initiator, Op, StoreError};
use crate::db::audit::{self, AuditEntry};
use crate::db::DbError;

pub(crate) struct FleetAnalyzer {
    pool: DbPool,
}

store_actor!(FleetAnalyzer);

impl FleetAnalyzer {
    pub(crate) fn new(pool: DbPool) -> Self {
        Self { pool }
    }
    fn conn(&self) -> Result<PooledConn, StoreError> {
        Ok(self.pool.get().map_err(DbError::from)?)
    }
}

/// One event per dependency change and one audit event, all in one transaction.
pub(crate) struct Record {
    pub events: Vec<EventRow>,
    pub actor: Initiator,
}

impl Op<FleetAnalyzer> for Record {
    type Output = Result<usize, StoreError>;
    fn run(mut self, s: &mut FleetAnalyzer) -> Self::Output {
        let mut c = s.conn()?;
        // Group rows are locked in one global order, so two transactions touching the same
        // groups (on any replica) cannot deadlock.
        self.events.sort_by(|a, b| a.group_key.cmp(&b.group_key));
        write_tx(&mut c, |c| {
            for e in &self.events {
                q::record(c, e)?;
            }
            if let Some(first) = self.events.first() {
                let mut extra = serde_json::Map::new();
                extra.insert("benchmark".into(), first.benchmark.clone().into());
                extra.insert("metric".into(), first.metric.clone().into());
                extra.insert("delta_pct".into(), first.delta_pct.into());
                extra.insert(
                    "event_ids".into(),
                    self.events.iter().map(|e| e.id.clone()).collect(),
                );
                extra.insert(
                    "dependencies".into(),
                    self.events.iter().map(|e| e.dep_name.clone()).collect(),
                );
                audit::insert(
                    c,
                    AuditEntry {
                        actor: &self.actor.principal_id,
                        action: "create",
                        resource_type: "dependency_event",
                        resource_id: &first.id,
                        project: &first.project,
                        request_id: &self.actor.request_id,
                        extra,
                    },
                    first.created_at,
                )?;
            }
            Ok::<_, StoreError>(self.events.len())
        })
    }
}

pub(crate) struct Alerts {
    pub min_affected: usize,
    pub since: Option<i64>,
    pub limit: usize,
    /// A caller restricted to some benchmarks only sees (and counts) those entries.
    pub visible: Option<BenchFilter>,
}

impl Op<FleetAnalyzer> for Alerts {
    type Output = Result<Vec<Alert>, StoreError>;
    fn run(self, s: &mut FleetAnalyzer) -> Self::Output {
        let mut c = s.conn()?;
        read_tx(&mut c, |c| {
            let groups = match (self.since, &self.visible) {
                // The common case reads the best `limit` qualifying groups, then their entries.
                (None, None) => {
                    let rows =
                        q::top_groups(c, self.min_affected.max(1) as i64, self.limit as i64)?;
                    let keys: Vec<String> = rows.iter().map(|g| g.group_key.clone()).collect();
                    let members = q::members_of(c, &keys)?;
                    q::to_groups(rows, members)
                }
                // A time window or a benchmark filter changes which entries count: regroup the
                // entries (one per group, project and benchmark; never the raw events).
                _ => {
                    let mut members = match self.since {
                        Some(t) => q::members_since(c, t)?,
                        None => q::members_since(c, i64::MIN)?,
                    };
                    if let Some(f) = &self.visible {
                        members.retain(|m| f.matches(&m.benchmark));
                    }
                    let mut keys: Vec<String> =
                        members.iter().map(|m| m.group_key.clone()).collect();
                    keys.sort_unstable();
                    keys.dedup();
                    let rows = q::groups_by_key(c, &keys)?;
                    q::to_groups(rows, members)
                }
            };
            let mut alerts = fleet::alerts(groups, self.min_affected, self.limit);
            if let Some(t) = self.since {
                // first_seen within the window: the group's earliest regression since `t`.
                // A restricted caller's first_seen comes from the events it may see only.
                for a in &mut alerts {
                    let first = match &self.visible {
                        None => q::first_regression_since(c, &a.id, t)?,
                        Some(f) => q::regressions_since(c, &a.id, t)?
                            .into_iter()
                            .find(|(b, _)| f.matches(b))
                            .map(|(_, at)| at),
                    };
                    if let Some(first) = first {
                        a.first_seen = first;
                    }
                }
            }
            Ok(alerts)
        })
    }
}

pub(crate) struct Impact {
    pub dependency: String,
    pub since: Option<i64>,
    pub limit: i64,
    /// A restricted caller sees, and is summarised, only its benchmarks' events.
    pub visible: Option<BenchFilter>,
}

impl Op<FleetAnalyzer> for Impact {
    type Output = Result<DependencyImpact, StoreError>;
    fn run(self, s: &mut FleetAnalyzer) -> Self::Output {
        let mut c = s.conn()?;
        read_tx(&mut c, |c| {
            let Some(f) = &self.visible else {
                return Ok(q::impact(c, &self.dependency, self.since, self.limit)?);
            };
            // The regex cannot run in SQL: read the dependency's events and filter here.
            let mut events = q::impact(c, &self.dependency, self.since, i64::MAX)?.events;
            events.retain(|e| f.matches(&e.benchmark));
            Ok(DependencyImpact::of_events(events, self.limit))
        })
    }
}
