//! Change points, run by the gate actor: a periodic pass scans the runs stored since the last
//! pass, estimates each CI run's common shift once, updates each touched series incrementally
//! (never its whole history), opens alerts for confirmed regressions no gate caught, and marks
//! fixed the alerts a later improvement undid. One transaction per pass, bounded in runs.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::alerts::{fix_restored, open_for_change_point, PointRange};
use super::gate::GateStore;
use super::{Initiator, Op, StoreError};
use crate::db::alerts::alert_for_commits;
use crate::db::changepoints::{self as q, PointRow, PointWithVersion, SeriesKey, SeriesRun};
use crate::db::{try_lock, write_tx, DbConn, Exclusive};
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
}

/// One pass over the runs stored since the last one and at least `delay_micros` ago (so that the
/// other benchmarks of a CI run have arrived before its shift is estimated), at most `max_runs`.
pub(crate) struct ScanChangePoints {
    pub delay_micros: i64,
    pub max_runs: i64,
    /// When this server process started: on a database's first pass, changes that landed
    /// before it (the history of a server upgraded to change points) are listed, not alerted on.
    pub process_started: i64,
}

fn actor() -> Initiator {
    Initiator {
        principal_id: "system:change-points".into(),
        request_id: "change-points".into(),
    }
}

impl Op<GateStore> for ScanChangePoints {
    type Output = Result<ScanReport, StoreError>;
    fn run(self, s: &mut GateStore) -> Self::Output {
        let mut c = s.conn()?;
        write_tx(&mut c, |c| {
            if !try_lock(c, Exclusive::ChangePoints)? || !q::run_stats_complete(c)? {
                return Ok(ScanReport::default());
            }
            let now = now_micros();
            let after = q::watermark(c)?;
            let alerts_since = q::alerts_since(c, self.process_started)?;
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
            for r in &runs {
                let Some(sha) = &r.git_sha else { continue };
                let g = (
                    r.project.clone(),
                    r.runner.clone(),
                    r.metric.clone(),
                    sha.clone(),
                );
                if seen.insert(g.clone()) && estimate_shift(c, &g, now)? {
                    report.shifts += 1;
                }
            }
            let series: BTreeSet<SeriesKey> = runs
                .iter()
                .map(|r| SeriesKey {
                    project: r.project.clone(),
                    benchmark: r.benchmark.clone(),
                    metric: r.metric.clone(),
                    runner: r.runner.clone(),
                })
                .collect();
            report.series = series.len();
            let settings = Settings::default();
            for k in &series {
                let (opened, fixed) = update_series(c, k, mark, now, &settings, alerts_since)?;
                report.alerts_opened += opened;
                report.alerts_fixed += fixed;
            }
            q::set_watermark(c, mark)?;
            Ok(report)
        })
    }
}

/// Stored shifts of the commits of `runs`, by commit.
fn shifts_for<'a>(
    c: &mut DbConn,
    k: &SeriesKey,
    runs: impl Iterator<Item = &'a SeriesRun>,
) -> Result<HashMap<String, f64>, StoreError> {
    let shas: BTreeSet<String> = runs.filter_map(|r| r.git_sha.clone()).collect();
    let shas: Vec<String> = shas.into_iter().collect();
    Ok(q::shifts_of(c, &k.project, &k.runner, &k.metric, &shas)?
        .into_iter()
        .collect())
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

/// Estimates and stores the common shift of one CI run, once; answers whether one was stored.
fn estimate_shift(
    c: &mut DbConn,
    (project, runner, metric, sha): &(String, String, String, String),
    now: i64,
) -> Result<bool, StoreError> {
    if !q::shifts_of(c, project, runner, metric, std::slice::from_ref(sha))?.is_empty() {
        return Ok(false);
    }
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
        return Ok(false);
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
        return Ok(false);
    };
    let shifts = shifts_for(c, &first.0, earlier.iter().flat_map(|(_, _, b)| b.iter()))?;
    let deviations: Vec<f64> = earlier
        .iter()
        .filter_map(|(_, run, before)| {
            let values: Vec<f64> = before.iter().map(|r| corrected(r, &shifts)).collect();
            cp::reference_level(&values).map(|level| run.center - level)
        })
        .collect();
    let Some(shift) = cp::common_shift(&deviations) else {
        return Ok(false);
    };
    q::insert_shift(
        c,
        project,
        runner,
        metric,
        sha,
        shift,
        deviations.len() as i64,
        now,
    )?;
    Ok(true)
}

/// Updates one series from where its scan stands up to `upto`; answers (alerts opened, fixed).
/// Changes whose first run was stored before `alerts_since` are stored but not alerted on.
fn update_series(
    c: &mut DbConn,
    k: &SeriesKey,
    upto: i64,
    now: i64,
    settings: &Settings,
    alerts_since: i64,
) -> Result<(usize, usize), StoreError> {
    let state = q::series_state(c, k)?;
    let (start, from_t, from_id) = match &state {
        Some(s) => (
            usize::try_from(s.resume_index).unwrap_or(0),
            s.resume_created_at,
            s.resume_baseline_id.clone(),
        ),
        None => (0, i64::MIN, String::new()),
    };
    let tail = q::runs_from(c, k, from_t, &from_id, upto)?;
    if tail.is_empty() {
        return Ok((0, 0));
    }
    let shifts = shifts_for(c, k, tail.iter())?;
    let values: Vec<f64> = tail.iter().map(|r| corrected(r, &shifts)).collect();
    let u = cp::update(start, &values, settings);
    let series_len = start + tail.len();
    let higher_is_better = !lower_is_better(&k.metric);
    let mut old = q::pending_points(c, k)?;
    q::delete_pending(c, k)?;
    let (mut opened, mut fixed) = (0, 0);
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
        let mut row = PointRow {
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
        if row.alert_id.is_none()
            && run.created_at >= alerts_since
            && cp::should_alert(point, series_len, settled, settings)
        {
            let worse = cp::worse_pct(point.change_pct, higher_is_better);
            if worse > 0.0 {
                let (id, new) = alert_of(c, k, &row, &tail, at, worse, now)?;
                row.alert_id = Some(id);
                opened += usize::from(new);
            } else {
                fixed += fix_restored(c, k, worse, run.created_at, &row.id, &actor(), now)?;
            }
        }
        q::insert_point(c, &row)?;
    }
    let resume = u.resume_at.checked_sub(start).and_then(|i| tail.get(i));
    let (resume_index, resume_created_at, resume_baseline_id) = match resume {
        Some(r) => (u.resume_at as i64, r.created_at, r.baseline_id.clone()),
        None => (start as i64, from_t, from_id),
    };
    q::save_series_state(
        c,
        &q::SeriesState {
            project: k.project.clone(),
            benchmark: k.benchmark.clone(),
            metric: k.metric.clone(),
            runner: k.runner.clone(),
            resume_index,
            resume_created_at,
            resume_baseline_id,
            runs: series_len as i64,
            updated_at: now,
        },
    )?;
    Ok((opened, fixed))
}

/// The alert of a regression point: the one a gate (or an earlier point) already opened for a
/// commit around it, else a new `change_point` alert; answers (id, whether it is new).
fn alert_of(
    c: &mut DbConn,
    k: &SeriesKey,
    row: &PointRow,
    tail: &[SeriesRun],
    at: usize,
    worse: f64,
    now: i64,
) -> Result<(String, bool), StoreError> {
    let lo = at.saturating_sub(2);
    let hi = (at + cp::CONFIRM_RUNS + 2).min(tail.len());
    let shas: Vec<String> = tail
        .get(lo..hi)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r.git_sha.clone())
        .collect();
    if let Some(id) = alert_for_commits(c, &k.project, &k.benchmark, &k.metric, &shas)? {
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
