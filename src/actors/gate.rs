//! The gate actor: opens gates, adds confirmation attempts, and keeps gate settings. A gate
//! reads its history and writes its decision in one write transaction on the project's writer
//! shard, so a concurrent upload cannot half-change the history it is judged against, and two
//! attempts of one gate are applied one after the other.

use std::collections::{BTreeMap, BTreeSet};

use super::{Initiator, Op, StoreError};
use crate::api::{GateBenchmark, GateConfirm, GateRecorded, GateResponse, GateResult, GateSuite};
use crate::db::audit::{self, AuditEntry};
use crate::db::baselines::{self as bq, BaselineRow};
use crate::db::gates::{self as q, GateFilter, GateRow, GateRunRow, Series, StoredRun};
use crate::db::notify::{AckWait, Invalidator};
use crate::db::{read_tx, write_tx, DbConn, DbError, DbPool, PooledConn};
use crate::domain::access::BenchFilter;
use crate::domain::gate::{self, BenchInput, HistoryPoint, Status};
use crate::domain::gate_settings::GateSettings;
use crate::domain::summary::RunSummary;
use crate::domain::time::{now_micros, to_rfc3339};
use crate::domain::{receipt, version};

pub(crate) const GATE_SCHEMA: &str = "perfgate.gate.v1";

pub(crate) struct GateStore {
    pool: DbPool,
    /// Recorded runs become baselines: their latest answers are dropped here (on every
    /// replica).
    inv: Invalidator,
}

crate::store_actor!(GateStore);

impl GateStore {
    pub(crate) fn new(pool: DbPool, inv: Invalidator) -> Self {
        Self { pool, inv }
    }
    pub(super) fn conn(&self) -> Result<PooledConn, StoreError> {
        Ok(self.pool.get().map_err(DbError::from)?)
    }
    /// Last inside the write transaction: tells the other replicas which benchmarks' versions
    /// changed state.
    pub(super) fn announce(
        &self,
        c: &mut DbConn,
        touched: &[(String, String)],
    ) -> Result<Option<AckWait>, StoreError> {
        let pairs: Vec<(&str, &str)> = touched
            .iter()
            .map(|(p, b)| (p.as_str(), b.as_str()))
            .collect();
        Ok(self.inv.announce(c, &pairs)?)
    }

    /// After the transaction: drops the latest answers of benchmarks whose versions changed
    /// state, and waits for the other replicas to have dropped theirs.
    pub(super) fn settle(
        &self,
        c: &mut DbConn,
        touched: &[(String, String)],
        committed: bool,
        wait: Option<AckWait>,
    ) {
        let pairs: Vec<(&str, &str)> = touched
            .iter()
            .map(|(p, b)| (p.as_str(), b.as_str()))
            .collect();
        self.inv.settle(c, &pairs, committed, wait);
    }
}

/// One run of a gate request, validated by the route.
#[derive(Debug, Clone)]
pub(crate) struct GateRunInput {
    pub benchmark: String,
    pub run_id: String,
    /// Runner class, label included.
    pub runner: String,
    pub receipt: String,
    pub summaries: Vec<(&'static str, RunSummary)>,
}

impl GateRunInput {
    fn row(&self, gate_id: &str, attempt: i64, now: i64) -> Result<GateRunRow, StoreError> {
        let sums: BTreeMap<&str, RunSummary> = self.summaries.iter().copied().collect();
        Ok(GateRunRow {
            gate_id: gate_id.to_owned(),
            attempt,
            benchmark: self.benchmark.clone(),
            run_id: self.run_id.clone(),
            runner: self.runner.clone(),
            receipt: self.receipt.clone(),
            summaries: serde_json::to_string(&sums)?,
            created_at: now,
        })
    }
}

/// A stored run: `benchmark → metric → summary`, per attempt.
type Attempts = BTreeMap<i64, BTreeMap<String, (String, BTreeMap<String, RunSummary>)>>;

fn attempts_of(rows: &[GateRunRow]) -> Result<Attempts, StoreError> {
    let mut out: Attempts = BTreeMap::new();
    for r in rows {
        let sums: BTreeMap<String, RunSummary> = serde_json::from_str(&r.summaries)?;
        out.entry(r.attempt)
            .or_default()
            .insert(r.benchmark.clone(), (r.runner.clone(), sums));
    }
    Ok(out)
}

fn status_str(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Warn => "warn",
        Status::Fail => "fail",
        Status::Inconclusive => "inconclusive",
        Status::Skip => "skip",
    }
}

/// Rank for "the worst of them" (skip counts as pass).
fn rank(s: &str) -> u8 {
    match s {
        "fail" => 3,
        "inconclusive" => 2,
        "warn" => 1,
        _ => 0,
    }
}

fn pct_pair((lo, hi): (f64, f64)) -> [f64; 2] {
    [lo, hi]
}

/// The gate as one request sees it.
struct GateCtx<'a> {
    project: &'a str,
    /// Every run of every attempt so far.
    runs: &'a [GateRunRow],
    gate_id: &'a str,
    base_sha: Option<&'a str>,
    metrics: &'a [String],
    settings: &'a GateSettings,
    deadline: i64,
    now: i64,
}

/// Judges every attempt so far against each benchmark's history.
fn evaluate(
    c: &mut DbConn,
    g: &GateCtx<'_>,
    attempts: &Attempts,
) -> Result<(GateResult, bool), StoreError> {
    let Some(first) = attempts.values().next() else {
        return Err(StoreError::Internal("a gate without runs".into()));
    };
    let looks = attempts.len();
    let decision_settings = g.settings.decision(g.metrics.len());
    // A run being judged is never its own history (it may have been uploaded already).
    let mut run_ids: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for r in g.runs {
        run_ids
            .entry(r.benchmark.as_str())
            .or_default()
            .push(r.run_id.clone());
    }
    let mut benchmarks = Vec::new();
    let mut suites = Vec::new();
    let mut confirm: BTreeMap<String, u32> = BTreeMap::new();
    let mut is_final = true;
    for metric in g.metrics {
        // A benchmark's history starts after its newest accepted change (one query per runner class).
        let mut by_runner: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (bench, (runner, _)) in first {
            by_runner
                .entry(runner.as_str())
                .or_default()
                .push(bench.as_str());
        }
        let mut accepted: BTreeMap<String, i64> = BTreeMap::new();
        for (runner, benches) in &by_runner {
            accepted.extend(crate::db::changepoints::accepted_changes(
                c, g.project, metric, runner, benches,
            )?);
        }
        let mut inputs = Vec::with_capacity(first.len());
        for (bench, (runner, _)) in first {
            let until = match g.base_sha {
                Some(sha) => q::stored_at_sha(c, g.project, bench, sha)?,
                None => None,
            };
            let series = Series {
                project: g.project,
                benchmark: bench,
                metric,
                runner,
                until,
                // The change's own run is the first of the new history.
                since: accepted.get(bench.as_str()).map(|t| t - 1),
                exclude_runs: run_ids.get(bench.as_str()).map_or(&[], |v| v.as_slice()),
                limit: i64::from(g.settings.history_runs),
            };
            let history = q::history(c, &series)?
                .into_iter()
                .map(|h| HistoryPoint {
                    summary: RunSummary {
                        center: h.center,
                        within_sd: h.within_sd,
                        n: u32::try_from(h.n).unwrap_or(0),
                        resolution: h.resolution,
                    },
                    group: h.git_sha,
                })
                .collect();
            let runs = attempts
                .values()
                .map(|a| {
                    a.get(bench)
                        .and_then(|(_, s)| s.get(metric.as_str()).copied())
                })
                .collect();
            inputs.push(BenchInput {
                key: bench.clone(),
                higher_is_better: !crate::domain::trend::lower_is_better(metric),
                history,
                attempts: runs,
                min_effect_pct: g.settings.min_effect_for(bench),
            });
        }
        let d = gate::decide(&inputs, &decision_settings);
        is_final &= d.is_final;
        if let Some(cf) = &d.confirm {
            for (b, k) in &cf.repeat {
                let e = confirm.entry(b.clone()).or_insert(0);
                *e = (*e).max(*k);
            }
            for b in &cf.benchmarks {
                confirm.entry(b.clone()).or_insert(0);
            }
        }
        suites.push(GateSuite {
            metric: metric.clone(),
            shift_pct: d.suite.shift_pct,
            ci95_pct: pct_pair(d.suite.ci95_pct),
            p: d.suite.p,
            status: status_str(d.suite.status).to_owned(),
            reason: d.suite.reason.clone(),
        });
        for mut v in d.benchmarks {
            if v.status == Status::Fail {
                if let Some(w) =
                    crate::db::alerts::active_waiver(c, g.project, &v.key, metric, g.now)?
                {
                    let max = w.waiver_max_change_pct.unwrap_or(0.0);
                    if v.effect_pct <= max {
                        v.status = Status::Warn;
                        v.reason = format!(
                            "{}; accepted up to {max:.1}% by alert {} ({}) until {}",
                            v.reason,
                            w.id,
                            w.waiver_owner.as_deref().unwrap_or("?"),
                            w.waiver_expires_at.map(to_rfc3339).unwrap_or_default()
                        );
                    }
                }
            }
            benchmarks.push(GateBenchmark {
                benchmark: v.key,
                metric: metric.clone(),
                status: status_str(v.status).to_owned(),
                effect_pct: v.effect_pct,
                ci95_pct: pct_pair(v.ci95_pct),
                p: v.p,
                q: v.q,
                history_runs: v.history_runs,
                reason: v.reason,
            });
        }
    }
    let confirm = (!is_final).then(|| GateConfirm {
        attempt: looks as i64 + 1,
        repeat: confirm
            .iter()
            .filter(|(_, k)| **k > 0)
            .map(|(b, k)| (b.clone(), *k))
            .collect(),
        benchmarks: confirm.into_keys().collect(),
        post_to: format!(
            "/api/v1/projects/{}/gates/{}/attempts",
            g.project, g.gate_id
        ),
        deadline: to_rfc3339(g.deadline),
    });
    let suite = suites
        .first()
        .cloned()
        .ok_or_else(|| StoreError::Internal("a gate without metrics".into()))?;
    Ok((
        GateResult {
            suite,
            suites,
            benchmarks,
            confirm,
            recorded: Vec::new(),
        },
        is_final,
    ))
}

fn overall(result: &GateResult) -> &'static str {
    let worst = result
        .benchmarks
        .iter()
        .map(|b| b.status.as_str())
        .chain(result.suites.iter().map(|s| s.status.as_str()))
        .max_by_key(|s| rank(s))
        .unwrap_or("pass");
    match rank(worst) {
        3 => "fail",
        2 => "inconclusive",
        1 => "warn",
        _ => "pass",
    }
}

/// Once final: runs the gate failed leave every benchmark's history; with `record`, a passing
/// gate's first-attempt runs become baseline versions (`source: "upload"`, the contract's).
fn finish(
    c: &mut DbConn,
    gate: &GateRow,
    result: &mut GateResult,
    inputs: &[GateRunRow],
    actor: &Initiator,
    now: i64,
    touched: &mut Vec<(String, String)>,
) -> Result<(), StoreError> {
    let failed: BTreeSet<&str> = result
        .benchmarks
        .iter()
        .filter(|b| b.status == "fail")
        .map(|b| b.benchmark.as_str())
        .collect();
    for r in inputs
        .iter()
        .filter(|r| failed.contains(r.benchmark.as_str()))
    {
        q::mark_failed(c, &gate.project, &r.benchmark, &r.run_id, &gate.id, now)?;
    }
    // One alert per failed (benchmark, metric) of this gate, for a person to triage.
    for b in result.benchmarks.iter().filter(|b| b.status == "fail") {
        super::alerts::open_for_gate(c, gate, b, actor, now)?;
    }
    if !gate.record || gate.status == "fail" {
        return Ok(());
    }
    let first = inputs.iter().map(|r| r.attempt).min().unwrap_or(1);
    for r in inputs.iter().filter(|r| r.attempt == first) {
        let summary = receipt::validate_stored(&r.receipt)
            .map_err(|e| StoreError::Internal(format!("stored gate receipt: {e}")))?;
        let version = loop {
            let v = version::generate(now);
            if !bq::version_taken(c, &gate.project, &r.benchmark, v.as_str())? {
                break v;
            }
        };
        let row = BaselineRow {
            id: crate::domain::ids::row_id(),
            project: gate.project.clone(),
            benchmark: r.benchmark.clone(),
            version: version.as_str().to_owned(),
            git_ref: gate.git_ref.clone(),
            git_sha: gate.git_sha.clone(),
            receipt: r.receipt.clone(),
            metadata: "{}".into(),
            tags: "[]".into(),
            content_hash: crate::domain::digest::sha256_hex(r.receipt.as_bytes()),
            // The contract's clients know upload, promote, migrate and rollback only.
            source: "upload".into(),
            promoted_from: None,
            wall_ms_median: Some(i64::try_from(summary.wall_ms_median).unwrap_or(i64::MAX)),
            medians: summary.medians_json(),
            created_at: now,
            updated_at: now,
            deleted_at: None,
        };
        bq::insert(c, &row, &[])?;
        let stats = StoredRun {
            baseline_id: &row.id,
            project: &row.project,
            benchmark: &row.benchmark,
            git_sha: row.git_sha.as_deref(),
            created_at: row.created_at,
            runner: &r.runner,
            run_id: &r.run_id,
            failed: false,
            deleted: false,
        }
        .rows(&summary.runs);
        q::insert_run_stats(c, &stats)?;
        let mut extra = serde_json::Map::new();
        extra.insert("benchmark".into(), r.benchmark.clone().into());
        extra.insert("version".into(), row.version.clone().into());
        extra.insert("gate_id".into(), gate.id.clone().into());
        audit::insert(
            c,
            AuditEntry {
                actor: &actor.principal_id,
                action: "create",
                resource_type: "baseline",
                resource_id: &row.id,
                project: &gate.project,
                request_id: &actor.request_id,
                extra,
            },
            now,
        )?;
        touched.push((gate.project.clone(), r.benchmark.clone()));
        result.recorded.push(GateRecorded {
            benchmark: r.benchmark.clone(),
            version: row.version,
        });
    }
    Ok(())
}

pub(crate) fn response_of(row: &GateRow) -> Result<GateResponse, StoreError> {
    Ok(GateResponse {
        schema: GATE_SCHEMA,
        id: row.id.clone(),
        project: row.project.clone(),
        status: row.status.clone(),
        is_final: row.is_final,
        attempt: row.attempt,
        max_attempts: row.max_attempts,
        created_at: to_rfc3339(row.created_at),
        updated_at: to_rfc3339(row.updated_at),
        git_ref: row.git_ref.clone(),
        git_sha: row.git_sha.clone(),
        base_sha: row.base_sha.clone(),
        runner: row.runner.clone(),
        record: row.record,
        metrics: serde_json::from_str(&row.metrics)?,
        result: serde_json::from_str(&row.result)?,
    })
}

fn audit_gate(
    c: &mut DbConn,
    gate: &GateRow,
    action: &'static str,
    actor: &Initiator,
    now: i64,
) -> Result<(), StoreError> {
    let mut extra = serde_json::Map::new();
    extra.insert("status".into(), gate.status.clone().into());
    extra.insert("attempt".into(), gate.attempt.into());
    extra.insert("final".into(), gate.is_final.into());
    audit::insert(
        c,
        AuditEntry {
            actor: &actor.principal_id,
            action,
            resource_type: "gate",
            resource_id: &gate.id,
            project: &gate.project,
            request_id: &actor.request_id,
            extra,
        },
        now,
    )?;
    Ok(())
}

pub(super) fn settings_in(c: &mut DbConn, project: &str) -> Result<GateSettings, StoreError> {
    Ok(match q::settings_of(c, project)? {
        Some(s) => serde_json::from_str(&s)?,
        None => GateSettings::default(),
    })
}

/// Decides the gate on all its runs, stores the decision (and, once final, its consequences).
fn decide_and_store(
    c: &mut DbConn,
    gate: &mut GateRow,
    settings: &GateSettings,
    runs: &[GateRunRow],
    actor: &Initiator,
    now: i64,
    touched: &mut Vec<(String, String)>,
) -> Result<(), StoreError> {
    let metrics: Vec<String> = serde_json::from_str(&gate.metrics)?;
    let attempts = attempts_of(runs)?;
    let ctx = GateCtx {
        project: &gate.project,
        runs,
        gate_id: &gate.id,
        base_sha: gate.base_sha.as_deref(),
        metrics: &metrics,
        settings,
        deadline: gate.deadline,
        now,
    };
    let (mut result, is_final) = evaluate(c, &ctx, &attempts)?;
    gate.attempt = attempts.len() as i64;
    gate.is_final = is_final;
    gate.status = overall(&result).to_owned();
    gate.updated_at = now;
    if is_final {
        finish(c, gate, &mut result, runs, actor, now, touched)?;
    }
    gate.result = serde_json::to_string(&result)?;
    Ok(())
}

pub(crate) struct OpenGate {
    pub project: String,
    pub runs: Vec<GateRunInput>,
    /// The request's metrics; the project's settings when `None`.
    pub metrics: Option<Vec<String>>,
    pub git_ref: Option<String>,
    pub git_sha: Option<String>,
    pub base_sha: Option<String>,
    pub runner: Option<String>,
    pub record: bool,
    pub actor: Initiator,
}

impl Op<GateStore> for OpenGate {
    type Output = Result<GateResponse, StoreError>;
    fn run(self, s: &mut GateStore) -> Self::Output {
        let mut c = s.conn()?;
        let mut touched = Vec::new();
        let mut wait = None;
        let result = write_tx(&mut c, |c| {
            let now = now_micros();
            let settings = settings_in(c, &self.project)?;
            let metrics = self
                .metrics
                .clone()
                .unwrap_or_else(|| settings.metrics.clone());
            let deadline = now + i64::from(settings.confirm_within_hours) * 3_600_000_000;
            let mut gate = GateRow {
                id: crate::domain::ids::row_id(),
                project: self.project.clone(),
                status: "pass".into(),
                is_final: false,
                attempt: 1,
                max_attempts: i64::from(settings.max_attempts),
                git_ref: self.git_ref.clone(),
                git_sha: self.git_sha.clone(),
                base_sha: self.base_sha.clone(),
                runner: self.runner.clone(),
                record: self.record,
                metrics: serde_json::to_string(&metrics)?,
                settings: serde_json::to_string(&settings)?,
                result: "{}".into(),
                deadline,
                created_at: now,
                updated_at: now,
            };
            let runs = self
                .runs
                .iter()
                .map(|r| r.row(&gate.id, 1, now))
                .collect::<Result<Vec<_>, _>>()?;
            q::insert_gate_runs(c, &gate.project, &runs)?;
            decide_and_store(
                c,
                &mut gate,
                &settings,
                &runs,
                &self.actor,
                now,
                &mut touched,
            )?;
            q::insert_gate(c, &gate)?;
            audit_gate(c, &gate, "create", &self.actor, now)?;
            let r = response_of(&gate)?;
            wait = s.announce(c, &touched)?;
            Ok(r)
        });
        s.settle(&mut c, &touched, result.is_ok(), wait);
        result
    }
}

/// A confirmation run of a gate's suite.
pub(crate) struct AddAttempt {
    pub project: String,
    pub gate_id: String,
    pub runs: Vec<GateRunInput>,
    pub actor: Initiator,
}

impl Op<GateStore> for AddAttempt {
    type Output = Result<GateResponse, StoreError>;
    fn run(self, s: &mut GateStore) -> Self::Output {
        let mut c = s.conn()?;
        let mut touched = Vec::new();
        let mut wait = None;
        let result = write_tx(&mut c, |c| {
            let now = now_micros();
            let mut gate = q::find_gate(c, &self.project, &self.gate_id)?
                .ok_or_else(|| StoreError::NotFound(format!("Gate {} not found", self.gate_id)))?;
            if gate.is_final {
                return Err(StoreError::Conflict(format!(
                    "Gate {} is final ({}); it takes no more attempts",
                    gate.id, gate.status
                )));
            }
            if gate.attempt >= gate.max_attempts {
                return Err(StoreError::Conflict(format!(
                    "Gate {} has used all {} attempts",
                    gate.id, gate.max_attempts
                )));
            }
            if now > gate.deadline {
                return Err(StoreError::Conflict(format!(
                    "Gate {} took confirmation runs until {}",
                    gate.id,
                    to_rfc3339(gate.deadline)
                )));
            }
            let settings: GateSettings = serde_json::from_str(&gate.settings)?;
            let attempt = gate.attempt + 1;
            // A receipt already submitted to this gate (a retried request) is not new evidence.
            // A run is its benchmark's and its id's: receipts of different benchmarks may share
            // an id (normalized ones are all `baseline`).
            let mut fresh = Vec::new();
            for r in &self.runs {
                if !q::gate_has_run(c, &gate.id, &r.benchmark, &r.run_id)? {
                    fresh.push(r.row(&gate.id, attempt, now)?);
                }
            }
            if fresh.is_empty() {
                return response_of(&gate);
            }
            q::insert_gate_runs(c, &gate.project, &fresh)?;
            let runs = q::gate_runs_of(c, &gate.id)?;
            decide_and_store(
                c,
                &mut gate,
                &settings,
                &runs,
                &self.actor,
                now,
                &mut touched,
            )?;
            q::update_gate(c, &gate)?;
            audit_gate(c, &gate, "update", &self.actor, now)?;
            let r = response_of(&gate)?;
            wait = s.announce(c, &touched)?;
            Ok(r)
        });
        s.settle(&mut c, &touched, result.is_ok(), wait);
        result
    }
}

pub(crate) struct GetGate {
    pub project: String,
    pub id: String,
}

impl Op<GateStore> for GetGate {
    type Output = Result<Option<GateResponse>, StoreError>;
    fn run(self, s: &mut GateStore) -> Self::Output {
        let mut c = s.conn()?;
        q::find_gate(&mut c, &self.project, &self.id)?
            .as_ref()
            .map(response_of)
            .transpose()
    }
}

pub(crate) struct ListGates {
    pub filter: GateFilter,
    /// The caller's benchmark restriction: it sees only gates whose every benchmark it may read.
    pub visible: Option<BenchFilter>,
}

impl Op<GateStore> for ListGates {
    type Output = Result<(Vec<GateResponse>, i64), StoreError>;
    fn run(mut self, s: &mut GateStore) -> Self::Output {
        let mut c = s.conn()?;
        read_tx(&mut c, |c| {
            if let Some(f) = &self.visible {
                let names = q::gate_benchmarks(c, &self.filter.project)?;
                self.filter.hidden_benchmarks =
                    names.into_iter().filter(|n| !f.matches(n)).collect();
            }
            let (rows, total) = q::list_gates(c, &self.filter)?;
            let gates = rows.iter().map(response_of).collect::<Result<_, _>>()?;
            Ok((gates, total))
        })
    }
}

pub(crate) struct GetSettings {
    pub project: String,
}

impl Op<GateStore> for GetSettings {
    type Output = Result<GateSettings, StoreError>;
    fn run(self, s: &mut GateStore) -> Self::Output {
        let mut c = s.conn()?;
        settings_in(&mut c, &self.project)
    }
}

pub(crate) struct PutSettings {
    pub project: String,
    pub settings: GateSettings,
    pub actor: Initiator,
}

impl Op<GateStore> for PutSettings {
    type Output = Result<GateSettings, StoreError>;
    fn run(self, s: &mut GateStore) -> Self::Output {
        let mut c = s.conn()?;
        write_tx(&mut c, |c| {
            let now = now_micros();
            let before = settings_in(c, &self.project)?;
            q::put_settings(
                c,
                &self.project,
                &serde_json::to_string(&self.settings)?,
                now,
            )?;
            let mut extra = serde_json::Map::new();
            extra.insert("before".into(), serde_json::to_value(&before)?);
            extra.insert("after".into(), serde_json::to_value(&self.settings)?);
            audit::insert(
                c,
                AuditEntry {
                    actor: &self.actor.principal_id,
                    action: "update",
                    resource_type: "gate_settings",
                    resource_id: &self.project,
                    project: &self.project,
                    request_id: &self.actor.request_id,
                    extra,
                },
                now,
            )?;
            Ok(self.settings)
        })
    }
}
