//! Change points in the history of one (benchmark, metric, runner class): where the level of the run
//! statistic moved, by how much, and how sure we are.
//!
//! Method: E-divisive means with a t-test significance (Matteson & James 2014; Daly et al., ICPE 2020, as
//! in Apache Otava, formerly Hunter), run as an anchored left-to-right scan so that appending runs never
//! needs the whole history and gives exactly the batch answer:
//!
//! 1. From the anchor `a` (start of the series, or the last change point) take the window `x[a .. a+W)`.
//! 2. Candidate split = argmax over τ of the energy statistic
//!    Q(τ) = m·k/(m+k) · ( 2/(m·k)·Σ|aᵢ−bⱼ| − Σ|aᵢ−aᵢ'|/C(m,2) − Σ|bⱼ−bⱼ'|/C(k,2) ),
//!    left `a` of size m, right `b` of size k (distances on the ln scale, exponent 1).
//! 3. Test it with a pooled two-sample t-test of the ln values left vs right (two-sided) and the relative
//!    change exp(mean_b − mean_a) − 1. It passes the weak pass at p ≤ weak_factor·max_p and
//!    |change| ≥ min_change.
//! 4. A passing candidate is re-located and re-tested on `x[a .. c+settle_runs)`, so that its position and
//!    statistics rest on a fixed amount of data after it (not on wherever the window happened to end).
//!    If it still passes it becomes a change point (strong when p ≤ max_p), the window left of it is
//!    searched again for a second step hidden by the larger one (E-divisive recursion), and the anchor moves
//!    to it. Otherwise, or when nothing passed, the window slides by W/2.
//!
//! A decision is *final* when every window it looked at was complete (not cut short by the end of the
//! series). The scan reports the final points (`settled`), the non-final ones (`pending`, recomputed on
//! every update) and the anchor before the first non-final decision (`resume_at`): the whole state needed
//! to continue later.
//!
//! Pure: no I/O, no panics. Non-finite values are skipped (they keep their index, nothing is measured
//! there); empty, constant and two-point series simply give no change points.

use super::stats;

/// Runs at the new level (the change point's own run included) before a point is `Confirmed`.
pub const CONFIRM_RUNS: usize = 3;

/// Fewest runs left of a split inside a window. Three: with fewer, a change point placed one run too early
/// leaves a stray old-level run at the start of the next window, which would split off again as a
/// duplicate point; and a level from one or two runs is too weak a reference anyway.
const MIN_LEFT: usize = 3;
/// Fewest runs right of a split: one, so a step can be reported (provisionally) on the run that shows it.
const MIN_RIGHT: usize = 1;

/// Tuning of the detector. `Default` is the calibrated setting (see `bench/changepoint_quality`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Window W of the scan, in runs (≈ 30: long enough for a precise level on each side, short enough
    /// that slow drifts do not look like one step).
    pub window: usize,
    /// Strong points need p ≤ max_p.
    pub max_p: f64,
    /// Weak points need p ≤ weak_factor · max_p.
    pub weak_factor: f64,
    /// Smallest relative change reported (0.03 = 3%); below it a change is real but not worth a point.
    pub min_change: f64,
    /// Runs after a point on which its final position and statistics rest; it is final (`settled`) once
    /// that many runs follow it.
    pub settle_runs: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            window: 30,
            max_p: 1e-4,
            weak_factor: 10.0,
            min_change: 0.03,
            settle_runs: 15,
        }
    }
}

/// Settings with every field forced into a usable range, so that no user value can make the scan loop
/// forever or compare against NaN.
#[derive(Debug, Clone, Copy)]
struct Sane {
    window: usize,
    step: usize,
    settle: usize,
    strong_p: f64,
    weak_p: f64,
    min_change: f64,
}

impl Sane {
    fn new(s: &Settings) -> Self {
        let d = Settings::default();
        let window = s.window.max(MIN_LEFT + MIN_RIGHT + 1);
        let strong_p = if s.max_p.is_finite() {
            s.max_p.clamp(0.0, 1.0)
        } else {
            d.max_p
        };
        let factor = if s.weak_factor.is_finite() {
            s.weak_factor.max(1.0)
        } else {
            d.weak_factor
        };
        let min_change = if s.min_change.is_finite() {
            s.min_change.max(0.0)
        } else {
            d.min_change
        };
        Sane {
            window,
            step: (window / 2).max(1),
            settle: s.settle_runs.max(MIN_RIGHT),
            strong_p,
            weak_p: (strong_p * factor).min(1.0),
            min_change,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strength {
    /// p ≤ max_p and |change| ≥ min_change.
    Strong,
    /// max_p < p ≤ weak_factor·max_p and |change| ≥ min_change: shown, not alerted on.
    Weak,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChangePoint {
    /// Index (in the caller's series, oldest = 0) of the first run at the new level.
    pub index: usize,
    /// Level before, in the original unit: exp of the mean ln value of the runs tested left of the point.
    pub level_before: f64,
    /// Level after, likewise (the runs tested right of the point).
    pub level_after: f64,
    /// 100 · (level_after / level_before − 1); positive = the metric went up.
    pub change_pct: f64,
    /// Two-sided p-value of the t-test left vs right (not corrected for the choice of the split).
    pub p: f64,
    pub strength: Strength,
}

/// Whether enough runs have followed a point to alert on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Provisional,
    Confirmed,
}

/// The provisional → confirmed rule: a point is confirmed once `CONFIRM_RUNS` (3) runs are at the new
/// level, its own run included (`series_len − index ≥ 3`). With one run after a 10% step the position is
/// right about 3 times in 4, with three about 9 in 10 (see `bench/changepoint_quality`), hence 3.
pub fn status(index: usize, series_len: usize) -> Status {
    if series_len.saturating_sub(index) >= CONFIRM_RUNS {
        Status::Confirmed
    } else {
        Status::Provisional
    }
}

/// An unsettled point must reach p ≤ max_p · this to be alerted on (see [`should_alert`]).
pub const UNSETTLED_ALERT_FACTOR: f64 = 0.1;

/// Recommended alert rule: strong, confirmed (3 runs at the new level), and either settled or with
/// p ≤ max_p/10. Why the stricter p before settling: every upload re-tests the tail, so over a long
/// history a series gets many looks at "the last few runs"; at p ≤ max_p a step-free series of 60 runs
/// raised a transient alert (one that later vanished) 1.4 times per 100 series, at max_p/10 0.24 times,
/// while still alerting 2 in 3 10% steps by their third run (the rest when they settle). See `bench/changepoint_quality`.
pub fn should_alert(
    cp: &ChangePoint,
    series_len: usize,
    settled: bool,
    settings: &Settings,
) -> bool {
    let s = Sane::new(settings);
    cp.strength == Strength::Strong
        && status(cp.index, series_len) == Status::Confirmed
        && (settled || cp.p <= s.strong_p * UNSETTLED_ALERT_FACTOR)
}

/// Result of [`update`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Update {
    /// Points that are final: they will never move or disappear. Append them to the stored list.
    pub settled: Vec<ChangePoint>,
    /// Points that may still move or vanish as runs arrive. Replace the previously stored pending list.
    pub pending: Vec<ChangePoint>,
    /// Index (in the caller's series) where the next update must start its tail. Store it.
    pub resume_at: usize,
}

/// Incremental detection.
///
/// Contract: per series the caller stores `resume_at` (initially 0), the settled points (append-only) and,
/// for display, the current pending points. On each upload it passes `tail = series[resume_at..]` (all
/// runs from `resume_at` up to and including the new ones, oldest first, ln scale) and the stored
/// `resume_at`; it appends `settled`, replaces the pending list and stores the new `resume_at`.
/// Settled ∪ pending after any sequence of updates equals [`detect`] on the whole series.
///
/// Bounded: the returned `resume_at` is never more than `window + settle_runs − 2` finite runs before the
/// end (43 with the defaults), so the tail is at most that plus the new runs (plus any non-finite runs in
/// between). Cost per update: a few E-divisive passes over ≤ 45 points, O(45²) each — microseconds.
pub fn update(resume_at: usize, tail: &[f64], settings: &Settings) -> Update {
    let s = Sane::new(settings);
    // Scan the finite values only; `orig` maps back to the caller's indices.
    let mut x = Vec::with_capacity(tail.len());
    let mut orig = Vec::with_capacity(tail.len());
    for (i, v) in tail.iter().enumerate() {
        if v.is_finite() {
            x.push(*v);
            orig.push(resume_at.saturating_add(i));
        }
    }
    let out = scan(&x, &s);
    let to_cp = |f: &Found| ChangePoint {
        index: orig.get(f.index).copied().unwrap_or(resume_at),
        level_before: f.test.mean_left.exp(),
        level_after: f.test.mean_right.exp(),
        change_pct: 100.0 * (f.test.mean_right - f.test.mean_left).exp_m1(),
        p: f.test.p,
        strength: if f.test.p <= s.strong_p {
            Strength::Strong
        } else {
            Strength::Weak
        },
    };
    let split = out.settled.min(out.points.len());
    Update {
        settled: out.points[..split].iter().map(to_cp).collect(),
        pending: out.points[split..].iter().map(to_cp).collect(),
        resume_at: orig
            .get(out.resume)
            .copied()
            .unwrap_or_else(|| resume_at.saturating_add(tail.len())),
    }
}

/// Batch detection over a whole series (ln values, oldest first). Equal to settled + pending of
/// [`update`] from index 0; points are in index order.
pub fn detect(values: &[f64], settings: &Settings) -> Vec<ChangePoint> {
    let u = update(0, values, settings);
    let mut all = u.settled;
    all.extend(u.pending);
    all
}

// ---------------------------------------------------------------------------------------------------------
// The scan, on finite values.

#[derive(Debug, Clone, Copy)]
struct TTest {
    mean_left: f64,
    mean_right: f64,
    p: f64,
}

#[derive(Debug, Clone, Copy)]
struct Found {
    index: usize,
    test: TTest,
}

struct ScanOut {
    points: Vec<Found>,
    /// The first `settled` points are final.
    settled: usize,
    /// Anchor to resume from.
    resume: usize,
}

fn scan(x: &[f64], s: &Sane) -> ScanOut {
    let n = x.len();
    let mut points: Vec<Found> = Vec::new();
    let mut a: usize = 0;
    let mut settled = 0;
    let mut resume = 0;
    let mut final_so_far = true;
    loop {
        if final_so_far {
            resume = a;
            settled = points.len();
        }
        let end = n.min(a.saturating_add(s.window));
        let mut complete = a.saturating_add(s.window) <= n;
        if end < a + MIN_LEFT + MIN_RIGHT {
            break;
        }
        let Some(first) = find(x, a, end, s) else {
            if !complete {
                break;
            }
            a += s.step;
            continue;
        };
        // Re-locate on a fixed amount of data after the candidate.
        let hi = n.min(first.index.saturating_add(s.settle));
        complete &= first.index.saturating_add(s.settle) <= n;
        match find(x, a, hi, s) {
            Some(c) => {
                let mut idx = split_left(x, a, c.index, s);
                idx.push(c.index);
                // Re-test each point against its neighbours (only differs when the left search found more).
                let mut lo = a;
                for (j, &i) in idx.iter().enumerate() {
                    let right_end = idx.get(j + 1).copied().unwrap_or(hi);
                    let test = if idx.len() == 1 {
                        Some(c.test)
                    } else {
                        ttest(&x[lo..i], &x[i..right_end])
                    };
                    if let Some(test) = test {
                        points.push(Found { index: i, test });
                    }
                    lo = i;
                }
                a = c.index;
            }
            None => a += s.step,
        }
        final_so_far &= complete;
    }
    ScanOut {
        points,
        settled,
        resume,
    }
}

/// Change points hidden inside `x[lo..hi)` (all final data): E-divisive recursion with the same test.
/// An explicit stack rather than recursion, so a huge window cannot overflow the stack.
fn split_left(x: &[f64], lo: usize, hi: usize, s: &Sane) -> Vec<usize> {
    let mut found = Vec::new();
    let mut todo = vec![(lo, hi)];
    while let Some((l, h)) = todo.pop() {
        if let Some(f) = find(x, l, h, s) {
            found.push(f.index);
            todo.push((l, f.index));
            todo.push((f.index, h));
        }
    }
    found.sort_unstable();
    found
}

/// Best split of `x[lo..hi)` if it passes the weak test.
fn find(x: &[f64], lo: usize, hi: usize, s: &Sane) -> Option<Found> {
    let w = x.get(lo..hi)?;
    let tau = best_split(w)?;
    let test = ttest(&w[..tau], &w[tau..])?;
    let change = (test.mean_right - test.mean_left).exp_m1();
    (test.p <= s.weak_p && change.abs() >= s.min_change).then_some(Found {
        index: lo + tau,
        test,
    })
}

/// Argmax of the energy statistic Q(τ) over τ in [MIN_LEFT, n − MIN_RIGHT]; ties go to the earliest τ.
/// O(n²): the three distance sums are updated as one point moves from the right part to the left part.
fn best_split(x: &[f64]) -> Option<usize> {
    let n = x.len();
    if n < MIN_LEFT + MIN_RIGHT {
        return None;
    }
    let d = |i: usize, j: usize| (x[i] - x[j]).abs();
    let t0 = MIN_LEFT;
    let mut within_l = 0.0;
    let mut within_r = 0.0;
    let mut cross = 0.0;
    for i in 0..n {
        for j in (i + 1)..n {
            match (i < t0, j < t0) {
                (true, true) => within_l += d(i, j),
                (false, false) => within_r += d(i, j),
                _ => cross += d(i, j),
            }
        }
    }
    let mut best: Option<(usize, f64)> = None;
    for tau in t0..=(n - MIN_RIGHT) {
        let q = q_hat(tau, n - tau, cross, within_l, within_r);
        if q.is_finite() && best.is_none_or(|(_, bq)| q > bq) {
            best = Some((tau, q));
        }
        // Move x[tau] from the right part to the left part (tau ≤ n − 1, so it exists).
        let to_left: f64 = (0..tau).map(|i| d(i, tau)).sum();
        let to_right: f64 = ((tau + 1)..n).map(|j| d(tau, j)).sum();
        within_l += to_left;
        within_r -= to_right;
        cross += to_right - to_left;
    }
    best.map(|(tau, _)| tau)
}

fn q_hat(m: usize, k: usize, cross: f64, within_l: f64, within_r: f64) -> f64 {
    let (mf, kf) = (m as f64, k as f64);
    let pairs = |c: f64| c * (c - 1.0) / 2.0;
    let wl = if m >= 2 { within_l / pairs(mf) } else { 0.0 };
    let wr = if k >= 2 { within_r / pairs(kf) } else { 0.0 };
    mf * kf / (mf + kf) * (2.0 * cross / (mf * kf) - wl - wr)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Pooled two-sample t-test, two-sided. Pooled rather than Welch: under "no change" both sides share one
/// noise level, and Welch's degrees of freedom collapse when one side has one or two runs (the tail).
/// Zero spread: p = 0 when the means differ, 1 when they do not. `None` without a degree of freedom.
fn ttest(left: &[f64], right: &[f64]) -> Option<TTest> {
    let (m, k) = (left.len(), right.len());
    if m == 0 || k == 0 || m + k < 3 {
        return None;
    }
    let (ml, mr) = (mean(left), mean(right));
    let ss: f64 = left.iter().map(|v| (v - ml) * (v - ml)).sum::<f64>()
        + right.iter().map(|v| (v - mr) * (v - mr)).sum::<f64>();
    let df = (m + k - 2) as f64;
    let diff = mr - ml;
    let se = (ss / df * (1.0 / m as f64 + 1.0 / k as f64)).sqrt();
    let p = if diff == 0.0 {
        1.0
    } else if se == 0.0 {
        0.0
    } else {
        2.0 * stats::t_sf((diff / se).abs(), df)
    };
    // NaN p (overflowing inputs) must never pass a `p ≤` test.
    let p = if p.is_nan() { 1.0 } else { p.clamp(0.0, 1.0) };
    Some(TTest {
        mean_left: ml,
        mean_right: mr,
        p,
    })
}

// ---------------------------------------------------------------------------------------------------------
// What the server needs around the scan: the run's common shift, and "worse" in one direction.

/// Fewest benchmarks of one CI run whose median deviation can stand for the run's common shift (the
/// gate's rule); with fewer, one benchmark's own step would be taken for the runner's and removed.
pub const MIN_SHIFT_BENCHMARKS: usize = 5;
/// Runs of a benchmark before a CI run that give its reference level for the shift estimate.
pub const SHIFT_REFERENCE_RUNS: usize = 10;
/// Fewest earlier runs a benchmark needs to take part in a shift estimate.
pub const MIN_SHIFT_REFERENCE: usize = 3;

/// A benchmark's reference level (ln scale) from its newest earlier runs (shift-corrected, ln
/// scale): their median, or `None` with fewer than [`MIN_SHIFT_REFERENCE`].
pub fn reference_level(earlier: &[f64]) -> Option<f64> {
    let v: Vec<f64> = earlier.iter().copied().filter(|x| x.is_finite()).collect();
    if v.len() < MIN_SHIFT_REFERENCE {
        return None;
    }
    stats::median(&v)
}

/// The common shift of one CI run (ln scale): the median over its benchmarks of each one's deviation
/// from its own reference level, or `None` with fewer than [`MIN_SHIFT_BENCHMARKS`] deviations. The
/// median lets one benchmark that really changed in this run leave the estimate nearly untouched.
pub fn common_shift(deviations: &[f64]) -> Option<f64> {
    let v: Vec<f64> = deviations
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    if v.len() < MIN_SHIFT_BENCHMARKS {
        return None;
    }
    stats::median(&v)
}

/// A change in percent of the metric (positive = it went up) as "percent worse": positive when the
/// benchmark regressed, whichever way its metric points.
pub fn worse_pct(change_pct: f64, higher_is_better: bool) -> f64 {
    if !higher_is_better {
        return change_pct;
    }
    let ratio = 1.0 + change_pct / 100.0;
    if ratio > 0.0 {
        100.0 * (1.0 / ratio - 1.0)
    } else {
        f64::INFINITY
    }
}

/// Whether an improvement of `improvement_worse_pct` (negative: percent worse after it) undoes a
/// regression of `regression_worse_pct`: the level after both is within `min_change` of the level
/// before the regression.
pub fn restores(
    regression_worse_pct: f64,
    improvement_worse_pct: f64,
    settings: &Settings,
) -> bool {
    let s = Sane::new(settings);
    if !(regression_worse_pct > 0.0 && improvement_worse_pct < 0.0) {
        return false;
    }
    let net = (1.0 + regression_worse_pct / 100.0) * (1.0 + improvement_worse_pct / 100.0);
    net.is_finite() && net <= 1.0 + s.min_change
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic Gaussian-ish noise (xorshift + Box–Muller), so the tests need no dependency.
    fn noise(seed: u64, n: usize, sd: f64) -> Vec<f64> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let (u1, u2) = (uniform(), uniform());
                sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
            })
            .collect()
    }

    /// ln of a 100 ms level with 2% noise and a step of `factor` at `at`.
    fn stepped(seed: u64, n: usize, at: usize, factor: f64) -> Vec<f64> {
        noise(seed, n, 0.02)
            .into_iter()
            .enumerate()
            .map(|(i, e)| 100f64.ln() + e + if i >= at { factor.ln() } else { 0.0 })
            .collect()
    }

    #[test]
    fn known_step_found_at_its_index_with_small_p() {
        let x = stepped(1, 60, 27, 1.10);
        let cps = detect(&x, &Settings::default());
        assert_eq!(cps.len(), 1, "{cps:?}");
        let cp = cps[0];
        assert_eq!(cp.index, 27);
        assert_eq!(cp.strength, Strength::Strong);
        assert!(cp.p < 1e-8, "p = {} must be far below max_p 1e-4", cp.p);
        assert!((cp.change_pct - 10.0).abs() < 2.0, "{}", cp.change_pct);
        assert!((cp.level_before - 100.0).abs() < 2.0 && (cp.level_after - 110.0).abs() < 2.5);
        // Downward steps are found too, with a negative change.
        let down = detect(&stepped(2, 60, 40, 0.9), &Settings::default());
        assert_eq!(down.len(), 1);
        assert_eq!(down[0].index, 40);
        assert!(down[0].change_pct < -5.0);
    }

    #[test]
    fn no_points_on_step_free_noise_or_below_min_change() {
        let st = Settings::default();
        for seed in 0..20 {
            assert!(detect(&stepped(seed, 60, 0, 1.0), &st).is_empty());
        }
        // A 2% step without noise is certain (p = 0) but smaller than the 3% minimum.
        let small: Vec<f64> = (0..40).map(|i| if i < 20 { 0.0 } else { 0.02 }).collect();
        assert!(detect(&small, &st).is_empty());
    }

    #[test]
    fn degenerate_inputs_never_panic() {
        let st = Settings::default();
        let cases: Vec<Vec<f64>> = vec![
            vec![],
            vec![f64::NAN],
            vec![1.0],
            vec![1.0, 2.0],
            vec![1.0, 5.0, 1.0],
            vec![4.6; 60],
            vec![f64::NAN; 60],
            vec![f64::INFINITY, f64::NEG_INFINITY, 1.0, f64::NAN, 2.0],
            vec![1e308, -1e308, 1e308, -1e308, 1e308, 1e308, -1e308],
            (0..100)
                .map(|i| if i % 7 == 0 { f64::NAN } else { 0.0 })
                .collect(),
        ];
        for x in &cases {
            let cps = detect(x, &st);
            assert!(cps.iter().all(|c| c.index < x.len() && !c.p.is_nan()));
        }
        assert!(detect(&[4.6; 60], &st).is_empty());
        // Constant halves: zero spread, a certain step.
        let step: Vec<f64> = (0..40).map(|i| if i < 20 { 0.0 } else { 0.1 }).collect();
        let cps = detect(&step, &st);
        assert_eq!((cps.len(), cps[0].index, cps[0].p), (1, 20, 0.0));
        // Nonsense settings are forced into range rather than looping or panicking.
        let silly = Settings {
            window: 0,
            max_p: f64::NAN,
            weak_factor: -3.0,
            min_change: f64::INFINITY,
            settle_runs: 0,
        };
        for x in &cases {
            let _ = detect(x, &silly);
        }
        let _ = detect(&step, &silly);
        let _ = update(usize::MAX, &step, &st);
        let huge = Settings {
            window: usize::MAX,
            settle_runs: usize::MAX,
            ..st
        };
        let _ = detect(&step, &huge);
        let _ = update(7, &step, &huge);
    }

    #[test]
    fn non_finite_runs_keep_the_indices() {
        let mut x = stepped(3, 60, 30, 1.12);
        x[10] = f64::NAN;
        x[45] = f64::INFINITY;
        let cps = detect(&x, &Settings::default());
        assert_eq!(cps.len(), 1);
        assert_eq!(cps[0].index, 30);
    }

    /// Feeds `x` one run at a time as the server would; returns all points and the longest tail passed.
    fn incremental(x: &[f64], st: &Settings) -> (Vec<ChangePoint>, usize) {
        let (mut resume, mut settled, mut pending, mut longest) = (0, Vec::new(), Vec::new(), 0);
        for n in 1..=x.len() {
            let tail = &x[resume..n];
            longest = longest.max(tail.len());
            let u = update(resume, tail, st);
            assert!(u.resume_at >= resume && u.resume_at <= n);
            settled.extend(u.settled);
            pending = u.pending;
            resume = u.resume_at;
        }
        settled.extend(pending);
        (settled, longest)
    }

    #[test]
    fn incremental_equals_batch_and_tail_is_bounded() {
        let st = Settings::default();
        // Two steps (one down), a long quiet stretch and some NaN runs.
        let mut x = stepped(4, 200, 50, 1.15);
        for (i, v) in x.iter_mut().enumerate().skip(120) {
            *v -= 0.2;
            if i % 37 == 0 {
                *v = f64::NAN;
            }
        }
        let batch = detect(&x, &st);
        assert_eq!(
            batch.iter().map(|c| c.index).collect::<Vec<_>>(),
            vec![50, 120]
        );
        let (inc, longest) = incremental(&x, &st);
        assert_eq!(inc, batch);
        // At most window + settle_runs − 2 runs plus the new one, plus the NaN runs in between.
        assert!(longest <= st.window + st.settle_runs - 1 + 2, "{longest}");
        for seed in 10..30 {
            let x = stepped(seed, 80, 20 + seed as usize, 1.08);
            assert_eq!(incremental(&x, &st).0, detect(&x, &st));
        }
    }

    #[test]
    fn provisional_until_three_runs_at_the_new_level() {
        assert_eq!(status(58, 60), Status::Provisional); // runs 58, 59
        assert_eq!(status(57, 60), Status::Confirmed); // runs 57, 58, 59
        assert_eq!(status(70, 60), Status::Provisional);
        // A step on the last run is seen provisionally, then confirmed two runs later.
        let st = Settings::default();
        let x = stepped(5, 41, 39, 1.25);
        let u = update(0, &x[..40], &st);
        assert_eq!(u.pending.len(), 1, "{u:?}");
        let cp = u.pending[0];
        assert_eq!((cp.index, status(cp.index, 40)), (39, Status::Provisional));
        assert_eq!(status(cp.index, 42), Status::Confirmed);
    }

    #[test]
    fn alert_rule_is_stricter_before_settling() {
        let st = Settings::default();
        let cp = ChangePoint {
            index: 50,
            level_before: 100.0,
            level_after: 110.0,
            change_pct: 10.0,
            p: 5e-5,
            strength: Strength::Strong,
        };
        assert!(!should_alert(&cp, 52, false, &st)); // provisional
        assert!(!should_alert(&cp, 53, false, &st)); // confirmed, unsettled, p not ≤ 1e-5
        assert!(should_alert(&cp, 53, true, &st));
        let sure = ChangePoint { p: 1e-6, ..cp };
        assert!(should_alert(&sure, 53, false, &st));
        let weak = ChangePoint {
            strength: Strength::Weak,
            ..sure
        };
        assert!(!should_alert(&weak, 70, true, &st));
    }

    #[test]
    fn common_shift_is_the_median_and_needs_five_benchmarks() {
        assert_eq!(common_shift(&[0.01, 0.02, 0.03, 0.04]), None);
        // One benchmark that really moved (0.5) does not drag the run's shift.
        let s = common_shift(&[0.01, 0.02, 0.03, 0.04, 0.5]).unwrap();
        assert!((s - 0.03).abs() < 1e-12, "{s}");
        assert_eq!(common_shift(&[0.01, f64::NAN, 0.02, 0.03, 0.04]), None);
        assert_eq!(reference_level(&[1.0, 2.0]), None);
        assert_eq!(reference_level(&[1.0, 5.0, 2.0]), Some(2.0));
    }

    #[test]
    fn worse_and_restores_follow_the_metric_direction() {
        assert_eq!(worse_pct(10.0, false), 10.0);
        // Throughput down 20% = 25% worse; up 25% = 20% better.
        assert!((worse_pct(-20.0, true) - 25.0).abs() < 1e-9);
        assert!((worse_pct(25.0, true) + 20.0).abs() < 1e-9);
        assert_eq!(worse_pct(-100.0, true), f64::INFINITY);
        let st = Settings::default();
        // +10% then −9.09% is back to the old level; −5% leaves it 4.5% worse (above 3%).
        assert!(restores(10.0, -9.0909, &st));
        assert!(!restores(10.0, -5.0, &st));
        assert!(restores(10.0, -7.0, &st), "1.10 × 0.93 = 1.023 ≤ 1.03");
        assert!(!restores(-10.0, -5.0, &st) && !restores(10.0, 5.0, &st));
        assert!(!restores(f64::NAN, -50.0, &st));
    }
}
