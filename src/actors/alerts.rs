//! Alerts and their triage, run by the gate actor (alerts come from gates; a transition may end
//! a quarantine or let accepted runs back into a benchmark's history, in the same transaction).

use super::gate::GateStore;
use super::{Initiator, Op, StoreError};
use crate::api::GateBenchmark;
use crate::db::alerts::{self as q, AlertFilter, AlertRow, WaiverFilter};
use crate::db::audit::{self, AuditEntry, AuditRow};
use crate::db::gates::GateRow;
use crate::db::{read_tx, write_tx, DbConn};
use crate::domain::access::BenchFilter;
use crate::domain::time::now_micros;
use crate::domain::triage::{AlertCounts, AlertStatus, Transition};

fn audit_alert(
    c: &mut DbConn,
    a: &AlertRow,
    action: &'static str,
    actor: &Initiator,
    extra: serde_json::Map<String, serde_json::Value>,
    now: i64,
) -> Result<(), StoreError> {
    let mut extra = extra;
    extra.insert("benchmark".into(), a.benchmark.clone().into());
    extra.insert("metric".into(), a.metric.clone().into());
    audit::insert(
        c,
        AuditEntry {
            actor: &actor.principal_id,
            action,
            resource_type: "alert",
            resource_id: &a.id,
            project: &a.project,
            request_id: &actor.request_id,
            extra,
        },
        now,
    )?;
    Ok(())
}

/// Opens the alert of one benchmark a final gate failed.
pub(super) fn open_for_gate(
    c: &mut DbConn,
    gate: &GateRow,
    b: &GateBenchmark,
    actor: &Initiator,
    now: i64,
) -> Result<(), StoreError> {
    let row = AlertRow {
        id: crate::domain::ids::row_id(),
        project: gate.project.clone(),
        benchmark: b.benchmark.clone(),
        metric: b.metric.clone(),
        source: "gate".into(),
        gate_id: Some(gate.id.clone()),
        status: AlertStatus::Untriaged.as_str().into(),
        change_pct: b.effect_pct,
        git_sha: gate.git_sha.clone(),
        previous_git_sha: gate.base_sha.clone(),
        reason: None,
        link: None,
        duplicate_of: None,
        waiver_owner: None,
        waiver_max_change_pct: None,
        waiver_expires_at: None,
        triaged_by: None,
        created_at: now,
        updated_at: now,
    };
    q::insert_alert(c, &row)?;
    let mut extra = serde_json::Map::new();
    extra.insert("gate_id".into(), gate.id.clone().into());
    extra.insert("change_pct".into(), b.effect_pct.into());
    audit_alert(c, &row, "create", actor, extra, now)
}

/// The commits of a change point: the first run at the new level and the run before it.
pub(super) struct PointRange<'a> {
    pub git_sha: Option<&'a str>,
    pub previous_git_sha: Option<&'a str>,
}

/// Opens the alert of a confirmed regression change point that no gate failed (a slow creep, or
/// runs uploaded without a gate). `worse_pct`: positive, percent worse.
pub(super) fn open_for_change_point(
    c: &mut DbConn,
    series: &crate::db::changepoints::SeriesKey,
    point_id: &str,
    worse_pct: f64,
    range: PointRange<'_>,
    actor: &Initiator,
    now: i64,
) -> Result<String, StoreError> {
    let row = AlertRow {
        id: crate::domain::ids::row_id(),
        project: series.project.clone(),
        benchmark: series.benchmark.clone(),
        metric: series.metric.clone(),
        source: "change_point".into(),
        gate_id: None,
        status: AlertStatus::Untriaged.as_str().into(),
        change_pct: worse_pct,
        git_sha: range.git_sha.map(str::to_owned),
        previous_git_sha: range.previous_git_sha.map(str::to_owned),
        reason: None,
        link: None,
        duplicate_of: None,
        waiver_owner: None,
        waiver_max_change_pct: None,
        waiver_expires_at: None,
        triaged_by: None,
        created_at: now,
        updated_at: now,
    };
    q::insert_alert(c, &row)?;
    let mut extra = serde_json::Map::new();
    extra.insert("change_point_id".into(), point_id.into());
    extra.insert("runner".into(), series.runner.clone().into());
    extra.insert("change_pct".into(), worse_pct.into());
    audit_alert(c, &row, "create", actor, extra, now)?;
    Ok(row.id)
}

/// Marks `fixed` the open regression alerts of a series that an improvement (percent worse,
/// negative) first seen at `run_created_at` undoes; answers how many.
pub(super) fn fix_restored(
    c: &mut DbConn,
    series: &crate::db::changepoints::SeriesKey,
    improvement_worse_pct: f64,
    run_created_at: i64,
    point_id: &str,
    actor: &Initiator,
    now: i64,
) -> Result<usize, StoreError> {
    let settings = crate::domain::changepoint::Settings::default();
    let mut fixed = 0;
    for mut a in q::open_before(
        c,
        &series.project,
        &series.benchmark,
        &series.metric,
        run_created_at,
    )? {
        if !crate::domain::changepoint::restores(a.change_pct, improvement_worse_pct, &settings) {
            continue;
        }
        let from = a.status.clone();
        let was_updated = a.updated_at;
        a.status = AlertStatus::Fixed.as_str().into();
        a.reason = Some(format!(
            "a later change point ({improvement_worse_pct:+.1}%) restored the level"
        ));
        a.triaged_by = Some(actor.principal_id.clone());
        a.updated_at = now;
        if !q::update_alert(c, &a, (&from, was_updated))? {
            // Triaged meanwhile (another replica): that step stands.
            continue;
        }
        let mut extra = serde_json::Map::new();
        extra.insert("from".into(), from.into());
        extra.insert("to".into(), "fixed".into());
        extra.insert("reason".into(), a.reason.clone().unwrap_or_default().into());
        extra.insert("change_point_id".into(), point_id.into());
        audit_alert(c, &a, "update", actor, extra, now)?;
        fixed += 1;
    }
    Ok(fixed)
}

pub(crate) struct GetAlert {
    pub project: String,
    pub id: String,
}

impl Op<GateStore> for GetAlert {
    type Output = Result<Option<AlertRow>, StoreError>;
    fn run(self, s: &mut GateStore) -> Self::Output {
        let mut c = s.conn()?;
        Ok(q::find_alert(&mut c, &self.project, &self.id)?)
    }
}

/// The most audit events an alert's detail answers with (the newest ones).
pub(crate) const HISTORY_MAX: i64 = 200;

/// An alert with its audit trail (oldest first) and the versions it holds in quarantine.
pub(crate) struct AlertDetailRows {
    pub alert: AlertRow,
    pub history: Vec<AuditRow>,
    /// (benchmark, version, created_at) of each live quarantined version.
    pub quarantined: Vec<(String, String, i64)>,
}

pub(crate) struct GetAlertDetail {
    pub project: String,
    pub id: String,
}

impl Op<GateStore> for GetAlertDetail {
    type Output = Result<Option<AlertDetailRows>, StoreError>;
    fn run(self, s: &mut GateStore) -> Self::Output {
        let mut c = s.conn()?;
        read_tx(&mut c, |c| {
            let Some(alert) = q::find_alert(c, &self.project, &self.id)? else {
                return Ok(None);
            };
            let history = audit::of_resource(c, &self.project, "alert", &alert.id, HISTORY_MAX)?;
            let quarantined = q::quarantined_versions(c, &alert.id)?;
            Ok(Some(AlertDetailRows {
                alert,
                history,
                quarantined,
            }))
        })
    }
}

/// Names of the project's benchmarks that have alerts and that `visible` lets the caller see.
fn visible_names(
    c: &mut DbConn,
    project: &str,
    visible: &BenchFilter,
) -> Result<Vec<String>, StoreError> {
    let names: Vec<String> = q::counts(c, project)?
        .into_iter()
        .map(|(b, _, _)| b)
        .collect();
    let mut names = visible.visible(names);
    names.dedup();
    Ok(names)
}

pub(crate) struct ListWaivers {
    pub filter: WaiverFilter,
    /// The caller's benchmark restriction.
    pub visible: Option<BenchFilter>,
}

impl Op<GateStore> for ListWaivers {
    type Output = Result<(Vec<AlertRow>, i64), StoreError>;
    fn run(mut self, s: &mut GateStore) -> Self::Output {
        let mut c = s.conn()?;
        read_tx(&mut c, |c| {
            if let Some(f) = &self.visible {
                self.filter.allowed_benchmarks = Some(visible_names(c, &self.filter.project, f)?);
            }
            Ok(q::list_waivers(c, &self.filter)?)
        })
    }
}

pub(crate) struct ListAlerts {
    pub filter: AlertFilter,
    /// The caller's benchmark restriction.
    pub visible: Option<BenchFilter>,
}

impl Op<GateStore> for ListAlerts {
    type Output = Result<(Vec<AlertRow>, i64), StoreError>;
    fn run(mut self, s: &mut GateStore) -> Self::Output {
        let mut c = s.conn()?;
        read_tx(&mut c, |c| {
            if let Some(f) = &self.visible {
                self.filter.allowed_benchmarks = Some(visible_names(c, &self.filter.project, f)?);
            }
            Ok(q::list_alerts(c, &self.filter)?)
        })
    }
}

/// Alert counts by state per benchmark, with the false-alarm hint.
pub(crate) struct AlertStats {
    pub project: String,
    pub visible: Option<BenchFilter>,
}

impl Op<GateStore> for AlertStats {
    type Output = Result<Vec<(String, AlertCounts)>, StoreError>;
    fn run(self, s: &mut GateStore) -> Self::Output {
        let mut c = s.conn()?;
        let mut out: Vec<(String, AlertCounts)> = Vec::new();
        for (bench, status, n) in q::counts(&mut c, &self.project)? {
            if self.visible.as_ref().is_some_and(|f| !f.matches(&bench)) {
                continue;
            }
            let Some(status) = AlertStatus::parse(&status) else {
                continue;
            };
            match out.last_mut() {
                Some((b, counts)) if *b == bench => counts.add(status, n.max(0) as u64),
                _ => {
                    let mut counts = AlertCounts::default();
                    counts.add(status, n.max(0) as u64);
                    out.push((bench, counts));
                }
            }
        }
        Ok(out)
    }
}

/// One triage step. `from` is the state the caller saw (and was authorized for): if the alert
/// moved meanwhile, the step is refused with 409.
pub(crate) struct TransitionAlert {
    pub project: String,
    pub id: String,
    pub from: AlertStatus,
    pub step: Transition,
    pub actor: Initiator,
    /// The caller's benchmark restriction: `duplicate_of` must name an alert it may read.
    pub visible: Option<BenchFilter>,
}

impl Op<GateStore> for TransitionAlert {
    type Output = Result<AlertRow, StoreError>;
    fn run(self, s: &mut GateStore) -> Self::Output {
        let mut c = s.conn()?;
        let mut touched = Vec::new();
        let mut wait = None;
        let result = write_tx(&mut c, |c| {
            let now = now_micros();
            let mut a = q::find_alert(c, &self.project, &self.id)?
                .ok_or_else(|| StoreError::NotFound(format!("Alert {} not found", self.id)))?;
            let from = AlertStatus::parse(&a.status).ok_or_else(|| {
                StoreError::Internal(format!("alert {} in state {}", a.id, a.status))
            })?;
            if from != self.from {
                return Err(StoreError::Conflict(format!(
                    "Alert {} moved to '{}' meanwhile; reload it",
                    a.id, a.status
                )));
            }
            let to = self.step.to;
            if !from.allowed().contains(&to) {
                let allowed: Vec<&str> = from.allowed().iter().map(|s| s.as_str()).collect();
                return Err(StoreError::Conflict(format!(
                    "An alert in state '{}' cannot become '{}'; allowed: {}",
                    from.as_str(),
                    to.as_str(),
                    allowed.join(", ")
                )));
            }
            if let Some(d) = &self.step.duplicate_of {
                let readable = q::find_alert(c, &self.project, d)?.is_some_and(|o| {
                    self.visible
                        .as_ref()
                        .is_none_or(|f| f.matches(&o.benchmark))
                });
                if d == &a.id || !readable {
                    return Err(StoreError::Conflict(format!(
                        "duplicate_of must name another alert of project {}",
                        self.project
                    )));
                }
            }
            let w = self.step.waiver.as_ref();
            a.waiver_owner = w.map(|w| w.owner.clone());
            a.waiver_max_change_pct = w.map(|w| w.max_change_pct);
            a.waiver_expires_at = w.map(|w| w.expires_at);
            a.status = to.as_str().to_owned();
            a.reason = self.step.reason.clone();
            if let Some(l) = &self.step.link {
                a.link = Some(l.clone());
            }
            a.duplicate_of = self.step.duplicate_of.clone();
            a.triaged_by = Some(self.actor.principal_id.clone());
            let was_updated = a.updated_at;
            a.updated_at = now;
            // First, so that the alert's row is held until this commits (see `update_alert`).
            if !q::update_alert(c, &a, (from.as_str(), was_updated))? {
                return Err(StoreError::Conflict(format!(
                    "Alert {} changed meanwhile; reload it",
                    a.id
                )));
            }
            match to {
                AlertStatus::Invalid => {
                    // Noise: the run stays out of the history; its versions are free again.
                    touched.extend(q::release(c, &a.id)?);
                }
                AlertStatus::Expected => {
                    touched.extend(q::release(c, &a.id)?);
                    if let Some(g) = &a.gate_id {
                        // Accepted: the runs re-enter the benchmark's history.
                        q::unmark_failed(c, &a.project, &a.benchmark, g)?;
                    }
                }
                _ => {}
            }
            let mut extra = serde_json::Map::new();
            extra.insert("from".into(), from.as_str().into());
            extra.insert("to".into(), to.as_str().into());
            if let Some(r) = &self.step.reason {
                extra.insert("reason".into(), r.clone().into());
            }
            if let Some(l) = &self.step.link {
                extra.insert("link".into(), l.clone().into());
            }
            if let Some(d) = &self.step.duplicate_of {
                extra.insert("duplicate_of".into(), d.clone().into());
            }
            if let Some(w) = w {
                extra.insert("waiver_owner".into(), w.owner.clone().into());
                extra.insert("waiver_max_change_pct".into(), w.max_change_pct.into());
                extra.insert(
                    "waiver_expires_at".into(),
                    crate::domain::time::to_rfc3339(w.expires_at).into(),
                );
            }
            audit_alert(c, &a, "update", &self.actor, extra, now)?;
            wait = s.announce(c, &touched)?;
            Ok(a)
        });
        s.settle(&mut c, &touched, result.is_ok(), wait);
        result
    }
}

/// Reopens alerts whose waiver ran out (a periodic task of the server).
pub(crate) struct ExpireWaivers;

impl Op<GateStore> for ExpireWaivers {
    type Output = Result<usize, StoreError>;
    fn run(self, s: &mut GateStore) -> Self::Output {
        let mut c = s.conn()?;
        write_tx(&mut c, |c| {
            let now = now_micros();
            let actor = Initiator {
                principal_id: "system:waiver-expiry".into(),
                request_id: "waiver-expiry".into(),
            };
            let expired = q::expired_waivers(c, now, 100)?;
            let mut reopened = 0;
            for mut a in expired.iter().cloned() {
                let was = (a.status.clone(), a.updated_at);
                a.status = AlertStatus::Untriaged.as_str().into();
                a.updated_at = now;
                if !q::update_alert(c, &a, (&was.0, was.1))? {
                    // Triaged, reopened or expired by another replica meanwhile.
                    continue;
                }
                reopened += 1;
                let mut extra = serde_json::Map::new();
                extra.insert("from".into(), "expected".into());
                extra.insert("to".into(), "untriaged".into());
                extra.insert("reason".into(), "the waiver expired".into());
                audit_alert(c, &a, "update", &actor, extra, now)?;
            }
            Ok(reopened)
        })
    }
}
