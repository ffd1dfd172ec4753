//! Change points, run by the gate actor: a periodic pass scans the runs stored since the last
//! pass, estimates each CI run's common shift once, updates each touched series incrementally
//! (never its whole history), opens alerts for confirmed regressions no gate caught, and marks
//! fixed the alerts a later improvement undid. A pass reads and decides on a reader, then writes
//! what it decided in one short write transaction, bounded in runs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use super::alerts::{fix_restored, open_for_change_point, PointRange};
use super::gate::GateStore;
use super::{Initiator, Op, StoreError};
use crate::db::alerts::alert_for_commits;
use crate::db::changepoints::{self as q, PointRow, PointWithVersion, SeriesKey, SeriesRun};
use crate::db::{read_tx, try_lock, write_tx, DbConn, Exclusive};
use crate::domain::changepoint::{self as cp, Settings, Strength};
use crate::domain::time::now_micros;
use crate::domain::trend::lower_is_better;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScanReport {
    pub runs: usize,
    pub series: usize,
    pub shifts: usize,
    pub alerts_opened: usize,
    pub alerts_fixed: usize,
    /// More runs wait: run the next pass at once.
    pub more: bool,
    /// How long the pass held the write connection, its commit included.
    pub busy: std::time::Duration,
}

/// Sizes the change-point passes while they catch up, so that each holds the write turn for
/// about `target`: a client write that arrives during a pass waits for the rest of it. A pass
/// of 200 runs held it 12-25 ms (about 60 µs per run), which set the p99 of the mixed benchmark
/// whenever a backlog of runs came due. The cost per run is a moving average of what the passes
/// measured; the next pass takes as many runs as fit the target, within
/// [`PassSizer::MIN_RUNS`]..=[`PassSizer::MAX_RUNS`].
#[derive(Debug, Clone)]
pub(crate) struct PassSizer {
    target: std::time::Duration,
    /// Seconds per run, once a pass with runs was measured.
    per_run: Option<f64>,
    /// Runs of the last measured pass: the next takes at most twice as many, so that runs
    /// dearer than those measured (a backlog of gated metrics after one of ungated ones) cannot
    /// make one pass many times the target.
    last_runs: i64,
}

impl PassSizer {
    /// Runs of the first pass, before any was measured.
    pub(crate) const FIRST_RUNS: i64 = 50;
    /// Fewer runs per pass would spend most of the pass on its fixed part (the commit's fsync).
    pub(crate) const MIN_RUNS: i64 = 8;
    pub(crate) const MAX_RUNS: i64 = 2_000;

    pub(crate) fn new(target: std::time::Duration) -> PassSizer {
        PassSizer {
            target,
            per_run: None,
            last_runs: Self::FIRST_RUNS,
        }
    }

    /// The runs the next pass may take.
    pub(crate) fn runs(&self) -> i64 {
        let fit = match self.per_run {
            None => return Self::FIRST_RUNS,
            Some(per_run) if per_run > 0.0 => (self.target.as_secs_f64() / per_run)
                .floor()
                .min(Self::MAX_RUNS as f64) as i64,
            Some(_) => Self::MAX_RUNS,
        };
        fit.min(self.last_runs.saturating_mul(2))
            .clamp(Self::MIN_RUNS, Self::MAX_RUNS)
    }

    /// Learns from a pass that read `runs` runs and held the writer for `busy`.
    pub(crate) fn observe(&mut self, runs: usize, busy: std::time::Duration) {
        if runs == 0 {
            return;
        }
        self.last_runs = i64::try_from(runs).unwrap_or(i64::MAX);
        let cost = busy.as_secs_f64() / runs as f64;
        self.per_run = Some(match self.per_run {
            None => cost,
            Some(avg) => 0.7 * avg + 0.3 * cost,
        });
    }
}

/// The first half of a change-point pass, on a reader: reads the runs stored since the last pass
/// and at least `delay_micros` ago (so that the other benchmarks of a CI run have arrived before
/// its shift is estimated), at most `max_runs`, and decides everything the pass will write. Only
/// [`ApplyChangePoints`] takes the write turn, for the writes alone: a pass that read and decided
/// inside its write transaction held the writer 12-25 ms per 200 runs, and every client write
/// arriving meanwhile waited for it.
pub(crate) struct PlanChangePoints {
    pub delay_micros: i64,
    pub max_runs: i64,
    /// When this server process started: on a database's first pass, changes that landed
    /// before it (the history of a server upgraded to change points) are listed, not alerted on.
    pub process_started: i64,
    /// What earlier passes learnt about CI runs without a shift (shared by the passes of one
    /// process; an empty memo only costs estimates again).
    pub memo: Arc<Mutex<ShiftMemo>>,
}

/// What one pass decided; [`ApplyChangePoints`] writes it if no other pass moved the watermark
/// meanwhile.
#[derive(Debug)]
pub(crate) struct PassPlan {
    /// The watermark the plan was read from.
    after: i64,
    /// The watermark once applied.
    mark: i64,
    alerts_since: i64,
    /// Whether `alerts_since` was stored already (else the first applied pass stores it).
    alerts_since_stored: bool,
    /// New common shifts: CI run, shift, benchmarks it was estimated from.
    shifts: Vec<(CiRun, f64, i64)>,
    series: Vec<SeriesPlan>,
    /// Runs read, series touched and shifts estimated (alerts are counted when applied).
    pub report: ScanReport,
}

impl PassPlan {
    /// Whether applying the plan would write nothing worth a commit (a pass that found no run
    /// leaves the watermark where it is: the next one reads the same empty range again, with an
    /// index), once the database's first pass stored from when changes are alerted on.
    pub(crate) fn is_empty(&self) -> bool {
        self.report.runs == 0 && self.alerts_since_stored
    }
}

/// The new state of one series.
#[derive(Debug)]
struct SeriesPlan {
    key: SeriesKey,
    /// Its points after the update (settled ones to add, pending ones to replace the stored).
    points: Vec<PlannedPoint>,
    state: q::SeriesState,
}

#[derive(Debug)]
struct PlannedPoint {
    row: PointRow,
    alert: Option<AlertStep>,
}

/// What a point does to alerts, decided when planned, done when applied.
#[derive(Debug)]
enum AlertStep {
    /// A regression: the alert a gate (or an earlier point) opened for one of these commits,
    /// else a new `change_point` alert.
    Regression { worse: f64, commits: Vec<String> },
    /// An improvement: marks fixed the open alerts it undoes.
    Restore { worse: f64, run_created_at: i64 },
}

/// Shifts estimated by this pass and not stored yet: they correct the runs of later CI runs
/// read by the same pass.
type NewShifts = HashMap<CiRun, f64>;

/// One CI run: (project, runner, metric, commit).
type CiRun = (String, String, String, String);

/// The CI runs whose common shift could not be estimated (fewer than
/// [`cp::MIN_SHIFT_BENCHMARKS`] of their benchmarks had history), each with its number of run
/// rows and its newest row's time then ([`GroupRows`]). A pass that meets one of their runs
/// again estimates it again only if rows were added or removed since: the runs of a 1,000-benchmark CI run span many passes, and each
/// estimate reads the history of every member, so without the memo each of those passes paid
/// the whole estimate again (passes of 8 rows took 30 ms).
#[derive(Debug, Default)]
pub(crate) struct ShiftMemo {
    unresolved: HashMap<CiRun, GroupRows>,
}

/// A CI run's row count and newest `created_at` ([`q::group_rows`]).
type GroupRows = (i64, Option<i64>);

impl ShiftMemo {
    /// Entries kept at most; past it the memo starts over.
    const MAX_ENTRIES: usize = 4_096;

    fn known(&self, run: &CiRun, rows: GroupRows) -> bool {
        self.unresolved.get(run) == Some(&rows)
    }

    fn remember(&mut self, run: &CiRun, rows: GroupRows) {
        if self.unresolved.len() >= Self::MAX_ENTRIES && !self.unresolved.contains_key(run) {
            self.unresolved.clear();
        }
        self.unresolved.insert(run.clone(), rows);
    }

    fn forget(&mut self, run: &CiRun) {
        self.unresolved.remove(run);
    }
}

fn actor() -> Initiator {
    Initiator {
        principal_id: "system:change-points".into(),
        request_id: "change-points".into(),
    }
}

impl Op<GateStore> for PlanChangePoints {
    /// None while the runs of older baselines are still being summarised.
    type Output = Result<Option<PassPlan>, StoreError>;
    fn run(self, s: &mut GateStore) -> Self::Output {
        let mut c = s.conn()?;
        // One plan is made at a time; a plan that panicked left the memo as valid as before.
        let mut memo = self
            .memo
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        read_tx(&mut c, |c| {
            if !q::run_stats_complete(c)? {
                return Ok(None);
            }
            let now = now_micros();
            let after = q::watermark(c)?;
            let stored_since = q::stored_alerts_since(c)?;
            let alerts_since = stored_since.unwrap_or(self.process_started);
            let upto = now.saturating_sub(self.delay_micros.max(0));
            let limit = self.max_runs.max(1);
            let mut runs = q::new_runs(c, after, upto, limit)?;
            let more = runs.len() as i64 >= limit;
            let mark = match runs.last() {
                // The last instant is taken whole, so the watermark never splits one.
                Some(last) if more => {
                    let t = last.created_at;
                    runs.retain(|r| r.created_at < t);
                    runs.extend(q::new_runs(c, t - 1, t, i64::MAX)?);
                    t
                }
                _ => upto.max(after),
            };
            let mut report = ScanReport {
                runs: runs.len(),
                more,
                ..ScanReport::default()
            };
            // Only the metrics each project's gate judges are tracked.
            let mut gated: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for r in &runs {
                if !gated.contains_key(&r.project) {
                    let metrics = super::gate::settings_in(c, &r.project)?.metrics;
                    gated.insert(r.project.clone(), metrics);
                }
            }
            runs.retain(|r| gated.get(&r.project).is_some_and(|m| m.contains(&r.metric)));
            // CI runs (commit × runner × metric) in the order they arrived.
            let mut seen = BTreeSet::new();
            let mut new_shifts = NewShifts::new();
            let mut shifts = Vec::new();
            for r in &runs {
                let Some(sha) = &r.git_sha else { continue };
                let g = (
                    r.project.clone(),
                    r.runner.clone(),
                    r.metric.clone(),
                    sha.clone(),
                );
                if !seen.insert(g.clone()) {
                    continue;
                }
                if let Some((shift, benchmarks)) = estimate_shift(c, &g, &mut memo, &new_shifts)? {
                    new_shifts.insert(g.clone(), shift);
                    shifts.push((g, shift, benchmarks));
                }
            }
            report.shifts = shifts.len();
            let keys: BTreeSet<SeriesKey> = runs
                .iter()
                .map(|r| SeriesKey {
                    project: r.project.clone(),
                    benchmark: r.benchmark.clone(),
                    metric: r.metric.clone(),
                    runner: r.runner.clone(),
                })
                .collect();
            report.series = keys.len();
            let settings = Settings::default();
            let mut series = Vec::with_capacity(keys.len());
            for k in keys {
                if let Some(plan) =
                    plan_series(c, k, mark, now, &settings, alerts_since, &new_shifts)?
                {
                    series.push(plan);
                }
            }
            Ok(Some(PassPlan {
                after,
                mark,
                alerts_since,
                alerts_since_stored: stored_since.is_some(),
                shifts,
                series,
                report,
            }))
        })
    }
}

/// The second half of a pass, on the writer: writes what [`PlanChangePoints`] decided, in one
/// transaction, unless what it was read from changed: another pass (another replica's) moved the
/// watermark, or a run in its range committed (or was deleted) after it was read, as a write
/// whose time was taken before the plan and whose commit came after can do.
pub(crate) struct ApplyChangePoints {
    pub plan: PassPlan,
}

impl Op<GateStore> for ApplyChangePoints {
    /// The pass's report, or None when the plan was stale (or another replica holds the
    /// change-point lock): nothing was written.
    type Output = Result<Option<ScanReport>, StoreError>;
    fn run(self, s: &mut GateStore) -> Self::Output {
        let plan = self.plan;
        let mut c = s.conn()?;
        // From the moment the write turn is held (inside the transaction) to after the commit.
        let mut held = None;
        let report = write_tx(&mut c, |c| -> Result<Option<ScanReport>, StoreError> {
            held = Some(std::time::Instant::now());
            if !try_lock(c, Exclusive::ChangePoints)?
                || q::watermark(c)? != plan.after
                || q::count_new_runs(c, plan.after, plan.mark)? != plan.report.runs as i64
            {
                return Ok(None);
            }
            let alerts_since = q::alerts_since(c, plan.alerts_since)?;
            // Alerts and their audit entries carry the time they are written.
            let now = now_micros();
            let mut report = plan.report;
            for ((project, runner, metric, sha), shift, benchmarks) in &plan.shifts {
                q::insert_shift(c, project, runner, metric, sha, *shift, *benchmarks, now)?;
            }
            for series in plan.series {
                let (opened, fixed) = apply_series(c, series, alerts_since, now)?;
                report.alerts_opened += opened;
                report.alerts_fixed += fixed;
            }
            q::set_watermark(c, plan.mark)?;
            Ok(Some(report))
        })?;
        Ok(report.map(|mut r| {
            r.busy = held.map_or(std::time::Duration::ZERO, |t| t.elapsed());
            r
        }))
    }
}

/// Stored shifts of the commits of `runs`, by commit, with those this pass estimated.
fn shifts_for<'a>(
    c: &mut DbConn,
    k: &SeriesKey,
    runs: impl Iterator<Item = &'a SeriesRun>,
    new_shifts: &NewShifts,
) -> Result<HashMap<String, f64>, StoreError> {
    let shas: BTreeSet<String> = runs.filter_map(|r| r.git_sha.clone()).collect();
    let shas: Vec<String> = shas.into_iter().collect();
    let mut found: HashMap<String, f64> = q::shifts_of(c, &k.project, &k.runner, &k.metric, &shas)?
        .into_iter()
        .collect();
    if !new_shifts.is_empty() {
        for sha in shas {
            let g = (k.project.clone(), k.runner.clone(), k.metric.clone(), sha);
            if let Some(shift) = new_shifts.get(&g) {
                found.insert(g.3, *shift);
            }
        }
    }
    Ok(found)
}

/// A run's value with its CI run's common shift removed (ln scale, like the stored centre).
fn corrected(r: &SeriesRun, shifts: &HashMap<String, f64>) -> f64 {
    let shift = r
        .git_sha
        .as_ref()
        .and_then(|s| shifts.get(s))
        .copied()
        .unwrap_or(0.0);
    r.center - shift
}

/// Estimates the common shift of one CI run that has none yet: the shift and the number of
/// benchmarks it was estimated from, or None (already estimated, or not estimable yet).
fn estimate_shift(
    c: &mut DbConn,
    g: &CiRun,
    memo: &mut ShiftMemo,
    new_shifts: &NewShifts,
) -> Result<Option<(f64, i64)>, StoreError> {
    let (project, runner, metric, sha) = g;
    if new_shifts.contains_key(g)
        || !q::shifts_of(c, project, runner, metric, std::slice::from_ref(sha))?.is_empty()
    {
        return Ok(None);
    }
    let rows = q::group_rows(c, project, runner, metric, sha)?;
    if memo.known(g, rows) {
        return Ok(None);
    }
    let found = compute_shift(c, g, new_shifts)?;
    match found {
        Some(_) => memo.forget(g),
        None => memo.remember(g, rows),
    }
    Ok(found)
}

/// The common shift of one CI run and the number of benchmarks it was estimated from, or `None`
/// while too few of its benchmarks have history.
fn compute_shift(
    c: &mut DbConn,
    (project, runner, metric, sha): &CiRun,
    new_shifts: &NewShifts,
) -> Result<Option<(f64, i64)>, StoreError> {
    // The newest run of each benchmark in the CI run.
    let mut members: BTreeMap<String, SeriesRun> = BTreeMap::new();
    for (bench, run) in q::group_members(c, project, runner, metric, sha)? {
        match members.get(&bench) {
            Some(m) if (m.created_at, &m.baseline_id) >= (run.created_at, &run.baseline_id) => {}
            _ => {
                members.insert(bench, run);
            }
        }
    }
    if members.len() < cp::MIN_SHIFT_BENCHMARKS {
        return Ok(None);
    }
    let mut earlier = Vec::with_capacity(members.len());
    for (bench, run) in &members {
        let k = SeriesKey {
            project: project.clone(),
            benchmark: bench.clone(),
            metric: metric.clone(),
            runner: runner.clone(),
        };
        let before = q::runs_before(
            c,
            &k,
            run.created_at,
            &run.baseline_id,
            cp::SHIFT_REFERENCE_RUNS as i64,
        )?;
        earlier.push((k, run, before));
    }
    let Some(first) = earlier.first() else {
        return Ok(None);
    };
    let shifts = shifts_for(
        c,
        &first.0,
        earlier.iter().flat_map(|(_, _, b)| b.iter()),
        new_shifts,
    )?;
    let deviations: Vec<f64> = earlier
        .iter()
        .filter_map(|(_, run, before)| {
            let values: Vec<f64> = before.iter().map(|r| corrected(r, &shifts)).collect();
            cp::reference_level(&values).map(|level| run.center - level)
        })
        .collect();
    Ok(cp::common_shift(&deviations).map(|shift| (shift, deviations.len() as i64)))
}

/// Plans the update of one series from where its scan stands up to `upto` (None: no new run).
/// Changes whose first run was stored before `alerts_since` are stored but not alerted on.
fn plan_series(
    c: &mut DbConn,
    k: SeriesKey,
    upto: i64,
    now: i64,
    settings: &Settings,
    alerts_since: i64,
    new_shifts: &NewShifts,
) -> Result<Option<SeriesPlan>, StoreError> {
    let state = q::series_state(c, &k)?;
    let (start, from_t, from_id) = match &state {
        Some(s) => (
            usize::try_from(s.resume_index).unwrap_or(0),
            s.resume_created_at,
            s.resume_baseline_id.clone(),
        ),
        None => (0, i64::MIN, String::new()),
    };
    let tail = q::runs_from(c, &k, from_t, &from_id, upto)?;
    if tail.is_empty() {
        return Ok(None);
    }
    let shifts = shifts_for(c, &k, tail.iter(), new_shifts)?;
    let values: Vec<f64> = tail.iter().map(|r| corrected(r, &shifts)).collect();
    let u = cp::update(start, &values, settings);
    let series_len = start + tail.len();
    let higher_is_better = !lower_is_better(&k.metric);
    let mut old = q::pending_points(c, &k)?;
    let mut points = Vec::new();
    let found = u
        .settled
        .iter()
        .map(|p| (p, true))
        .chain(u.pending.iter().map(|p| (p, false)));
    for (point, settled) in found {
        let Some(at) = point.index.checked_sub(start) else {
            continue;
        };
        let Some(run) = tail.get(at) else { continue };
        let previous = at.checked_sub(1).and_then(|i| tail.get(i));
        // The same change as an unsettled point of the last update keeps its id and alert.
        let same = old.iter().position(|o| {
            o.idx.abs_diff(point.index as i64) <= 2
                && (o.change_pct > 0.0) == (point.change_pct > 0.0)
        });
        let before = same.map(|i| old.swap_remove(i));
        let row = PointRow {
            id: before
                .as_ref()
                .map_or_else(crate::domain::ids::row_id, |b| b.id.clone()),
            project: k.project.clone(),
            benchmark: k.benchmark.clone(),
            metric: k.metric.clone(),
            runner: k.runner.clone(),
            idx: point.index as i64,
            baseline_id: run.baseline_id.clone(),
            git_sha: run.git_sha.clone(),
            previous_git_sha: previous.and_then(|r| r.git_sha.clone()),
            run_created_at: run.created_at,
            level_before: point.level_before,
            level_after: point.level_after,
            change_pct: point.change_pct,
            p: point.p,
            strong: point.strength == Strength::Strong,
            settled,
            alert_id: before.as_ref().and_then(|b| b.alert_id.clone()),
            created_at: before.as_ref().map_or(now, |b| b.created_at),
        };
        let mut alert = None;
        if row.alert_id.is_none()
            && run.created_at >= alerts_since
            && cp::should_alert(point, series_len, settled, settings)
        {
            let worse = cp::worse_pct(point.change_pct, higher_is_better);
            alert = Some(if worse > 0.0 {
                // The commits around the change: a gate may have alerted on any of them.
                let lo = at.saturating_sub(2);
                let hi = (at + cp::CONFIRM_RUNS + 2).min(tail.len());
                let commits = tail
                    .get(lo..hi)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|r| r.git_sha.clone())
                    .collect();
                AlertStep::Regression { worse, commits }
            } else {
                AlertStep::Restore {
                    worse,
                    run_created_at: run.created_at,
                }
            });
        }
        points.push(PlannedPoint { row, alert });
    }
    let resume = u.resume_at.checked_sub(start).and_then(|i| tail.get(i));
    let (resume_index, resume_created_at, resume_baseline_id) = match resume {
        Some(r) => (u.resume_at as i64, r.created_at, r.baseline_id.clone()),
        None => (start as i64, from_t, from_id),
    };
    let state = q::SeriesState {
        project: k.project.clone(),
        benchmark: k.benchmark.clone(),
        metric: k.metric.clone(),
        runner: k.runner.clone(),
        resume_index,
        resume_created_at,
        resume_baseline_id,
        runs: series_len as i64,
        updated_at: now,
    };
    Ok(Some(SeriesPlan {
        key: k,
        points,
        state,
    }))
}

/// Writes one series' plan: its pending points replaced, its settled points added, their
/// alerts opened or fixed; answers (alerts opened, fixed).
fn apply_series(
    c: &mut DbConn,
    plan: SeriesPlan,
    alerts_since: i64,
    now: i64,
) -> Result<(usize, usize), StoreError> {
    let k = &plan.key;
    q::delete_pending(c, k)?;
    let (mut opened, mut fixed) = (0, 0);
    for PlannedPoint { mut row, alert } in plan.points {
        // The database's first pass may have set a later start than the plan assumed.
        let alert = alert.filter(|_| row.run_created_at >= alerts_since);
        match alert {
            Some(AlertStep::Regression { worse, commits }) => {
                let (id, new) = alert_of(c, k, &row, &commits, worse, now)?;
                row.alert_id = Some(id);
                opened += usize::from(new);
            }
            Some(AlertStep::Restore {
                worse,
                run_created_at,
            }) => {
                fixed += fix_restored(c, k, worse, run_created_at, &row.id, &actor(), now)?;
            }
            None => {}
        }
        q::insert_point(c, &row)?;
    }
    q::save_series_state(c, &plan.state)?;
    Ok((opened, fixed))
}

/// The alert of a regression point: the one a gate (or an earlier point) already opened for one
/// of `commits` (those around it), else a new `change_point` alert; answers (id, whether it is
/// new).
fn alert_of(
    c: &mut DbConn,
    k: &SeriesKey,
    row: &PointRow,
    commits: &[String],
    worse: f64,
    now: i64,
) -> Result<(String, bool), StoreError> {
    if let Some(id) = alert_for_commits(c, &k.project, &k.benchmark, &k.metric, commits)? {
        return Ok((id, false));
    }
    let id = open_for_change_point(
        c,
        k,
        &row.id,
        worse,
        PointRange {
            git_sha: row.git_sha.as_deref(),
            previous_git_sha: row.previous_git_sha.as_deref(),
        },
        &actor(),
        now,
    )?;
    Ok((id, true))
}

/// The change points of one benchmark and metric (every runner class, or one).
pub(crate) struct ListChangePoints {
    pub project: String,
    pub benchmark: String,
    pub metric: String,
    pub runner: Option<String>,
}

/// A stored point with what the API shows of it.
pub(crate) struct ListedPoint {
    pub row: PointRow,
    pub version: Option<String>,
    pub confirmed: bool,
}

impl Op<GateStore> for ListChangePoints {
    /// The points, and whether the metric is tracked (judged by the project's gate).
    type Output = Result<(Vec<ListedPoint>, bool), StoreError>;
    fn run(self, s: &mut GateStore) -> Self::Output {
        let mut c = s.conn()?;
        let tracked = super::gate::settings_in(&mut c, &self.project)?
            .metrics
            .contains(&self.metric);
        let rows: Vec<PointWithVersion> = q::list_points(
            &mut c,
            &self.project,
            &self.benchmark,
            &self.metric,
            self.runner.as_deref(),
        )?;
        let mut lens: HashMap<String, i64> = HashMap::new();
        let mut out = Vec::with_capacity(rows.len());
        for (row, version) in rows {
            let len = match lens.get(&row.runner) {
                Some(n) => *n,
                None => {
                    let k = SeriesKey {
                        project: row.project.clone(),
                        benchmark: row.benchmark.clone(),
                        metric: row.metric.clone(),
                        runner: row.runner.clone(),
                    };
                    let n = q::series_state(&mut c, &k)?.map_or(0, |s| s.runs);
                    lens.insert(row.runner.clone(), n);
                    n
                }
            };
            let confirmed = cp::status(
                usize::try_from(row.idx).unwrap_or(0),
                usize::try_from(len).unwrap_or(0),
            ) == cp::Status::Confirmed;
            out.push(ListedPoint {
                row,
                version,
                confirmed,
            });
        }
        Ok((out, tracked))
    }
}

#[cfg(test)]
mod pass_tests {
    use super::{CiRun, PassSizer, ShiftMemo};
    use std::time::Duration;

    fn ci_run(sha: &str) -> CiRun {
        ("p".into(), "linux".into(), "wall_ms".into(), sha.into())
    }

    #[test]
    fn a_ci_run_without_shift_is_estimated_again_only_when_its_rows_change() {
        let mut m = ShiftMemo::default();
        let a = ci_run("a");
        assert!(!m.known(&a, (10, Some(5))), "never estimated");
        m.remember(&a, (10, Some(5)));
        assert!(m.known(&a, (10, Some(5))));
        assert!(!m.known(&a, (11, Some(6))), "a run joined it");
        assert!(
            !m.known(&a, (10, Some(7))),
            "one run purged, another joined"
        );
        assert!(!m.known(&ci_run("b"), (10, Some(5))), "another commit");
        m.forget(&a);
        assert!(!m.known(&a, (10, Some(5))));
    }

    #[test]
    fn the_memo_starts_over_when_full() {
        let mut m = ShiftMemo::default();
        for i in 0..ShiftMemo::MAX_ENTRIES {
            m.remember(&ci_run(&i.to_string()), (1, Some(1)));
        }
        assert_eq!(m.unresolved.len(), ShiftMemo::MAX_ENTRIES);
        // Updating a known entry keeps the others.
        m.remember(&ci_run("0"), (2, Some(2)));
        assert_eq!(m.unresolved.len(), ShiftMemo::MAX_ENTRIES);
        m.remember(&ci_run("new"), (1, Some(1)));
        assert_eq!(m.unresolved.len(), 1);
        assert!(m.known(&ci_run("new"), (1, Some(1))));
    }

    #[test]
    fn passes_are_sized_to_hold_the_writer_for_the_target() {
        let mut s = PassSizer::new(Duration::from_millis(4));
        assert_eq!(s.runs(), PassSizer::FIRST_RUNS, "nothing measured yet");
        // 200 runs in 12 ms: 60 µs a run, so 4 ms fit 66 runs.
        s.observe(200, Duration::from_millis(12));
        assert_eq!(s.runs(), 66);
        // A pass without runs teaches nothing.
        s.observe(0, Duration::from_millis(50));
        assert_eq!(s.runs(), 66);
        // Slower runs shrink the next pass, through the moving average (0.7 × 60 + 0.3 × 500 µs).
        s.observe(10, Duration::from_millis(5));
        assert_eq!(s.runs(), 20);
    }

    #[test]
    fn pass_sizes_stay_within_their_bounds() {
        let mut slow = PassSizer::new(Duration::from_millis(4));
        slow.observe(1, Duration::from_secs(1));
        assert_eq!(slow.runs(), PassSizer::MIN_RUNS);
        let mut fast = PassSizer::new(Duration::from_millis(4));
        fast.observe(1_000, Duration::from_micros(10));
        assert_eq!(fast.runs(), PassSizer::MAX_RUNS);
        // However cheap the runs measured, a pass takes at most twice the runs of the last.
        let mut instant = PassSizer::new(Duration::from_millis(4));
        instant.observe(5, Duration::ZERO);
        assert_eq!(instant.runs(), PassSizer::MIN_RUNS.max(10));
        instant.observe(10, Duration::ZERO);
        assert_eq!(instant.runs(), 20);
        instant.observe(1_500, Duration::ZERO);
        assert_eq!(instant.runs(), PassSizer::MAX_RUNS);
    }
}
