//! Seeded synthetic CI suites with known truth, and the oracle test that knows that truth.
//!
//! Model (the issue's): per suite 100 benchmarks with levels log-uniform in 10–2000 ms and within-run CV
//! log-normal around 4% (log-SD 0.6, clamped to 0.5–20%). A run r of benchmark b draws samples
//! x = round(L_b · f · exp(u_r + v_{b,r} + CV_b·z)) [× U(1.5, 3) with probability 3%] in integer ms,
//! where u_r ~ N(0, 2%) is shared by the whole run (the runner), v_{b,r} ~ N(0, 1%) is the benchmark's own
//! run effect and f the true regression factor (1 when unchanged). Each run has one warm-up sample
//! (×U(1.2, 2), flagged) before its measured samples.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use perfgate_server::domain::gate::HistoryPoint;
use perfgate_server::domain::summary::{self, RunSummary, Sample};

pub const BENCHMARKS: usize = 100;
pub const HISTORY_RUNS: usize = 30;
pub const SAMPLES: u32 = 10;
pub const RUNNER_SD: f64 = 0.02;
pub const OWN_SD: f64 = 0.01;
pub const OUTLIER_P: f64 = 0.03;
/// Integer milliseconds.
pub const QUANTUM: f64 = 1.0;

pub type Rng8 = ChaCha8Rng;

pub fn rng(seed: u64) -> Rng8 {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Standard normal by Box–Muller (sampling only; quantiles and CDFs come from statrs).
pub fn normal(rng: &mut Rng8) -> f64 {
    let u1: f64 = 1.0 - rng.r#gen::<f64>(); // (0, 1], so ln never sees 0
    let u2: f64 = rng.r#gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[derive(Debug, Clone, Copy)]
pub struct BenchTruth {
    pub level_ms: f64,
    pub cv: f64,
}

pub fn suite(rng: &mut Rng8) -> Vec<BenchTruth> {
    (0..BENCHMARKS)
        .map(|_| {
            let level_ms = (10f64.ln() + rng.r#gen::<f64>() * (2000f64 / 10.0).ln()).exp();
            let cv = (0.04f64.ln() + 0.6 * normal(rng)).exp().clamp(0.005, 0.20);
            BenchTruth { level_ms, cv }
        })
        .collect()
}

/// Measured values of one run (no warm-up), given the run's shared shift `u` and regression `factor`.
pub fn run_values(rng: &mut Rng8, b: &BenchTruth, u: f64, factor: f64, k: u32) -> Vec<f64> {
    let base = b.level_ms * factor * (u + OWN_SD * normal(rng)).exp();
    (0..k)
        .map(|_| {
            let mut x = base * (b.cv * normal(rng)).exp();
            if rng.r#gen::<f64>() < OUTLIER_P {
                x *= rng.gen_range(1.5..3.0);
            }
            (x / QUANTUM).round() * QUANTUM
        })
        .collect()
}

/// One run as a receipt would carry it: a flagged warm-up sample, then `k` measured samples.
pub fn run_samples(rng: &mut Rng8, b: &BenchTruth, u: f64, factor: f64, k: u32) -> Vec<Sample> {
    let warm = (b.level_ms * factor * rng.gen_range(1.2..2.0)).round();
    let mut s = vec![Sample {
        value: warm,
        warmup: true,
        failed: false,
        timed_out: false,
    }];
    s.extend(run_values(rng, b, u, factor, k).into_iter().map(Sample::ok));
    s
}

/// One run of the whole suite: the shared shift it drew and each benchmark's summary.
pub struct SuiteRun {
    pub shift: f64,
    pub values: Vec<Vec<f64>>,
    pub summaries: Vec<Option<RunSummary>>,
}

pub fn suite_run(rng: &mut Rng8, benches: &[BenchTruth], factors: &[f64], ks: &[u32]) -> SuiteRun {
    let shift = RUNNER_SD * normal(rng);
    let mut values = Vec::with_capacity(benches.len());
    let mut summaries = Vec::with_capacity(benches.len());
    for (i, b) in benches.iter().enumerate() {
        let f = factors.get(i).copied().unwrap_or(1.0);
        let k = ks.get(i).copied().unwrap_or(SAMPLES);
        let samples = run_samples(rng, b, shift, f, k);
        summaries.push(summary::summarize(&samples, QUANTUM));
        values.push(
            samples
                .iter()
                .filter(|s| !s.warmup)
                .map(|s| s.value)
                .collect(),
        );
    }
    SuiteRun {
        shift,
        values,
        summaries,
    }
}

/// 30 unchanged past runs, newest first, grouped by run id.
pub fn history(rng: &mut Rng8, benches: &[BenchTruth]) -> Vec<Vec<HistoryPoint>> {
    history_n(rng, benches, HISTORY_RUNS)
}

/// `runs` unchanged past runs, newest first, grouped by run id.
pub fn history_n(rng: &mut Rng8, benches: &[BenchTruth], runs: usize) -> Vec<Vec<HistoryPoint>> {
    let mut per_bench: Vec<Vec<HistoryPoint>> = vec![Vec::with_capacity(runs); benches.len()];
    for r in 0..runs {
        let run = suite_run(rng, benches, &[], &[]);
        for (hist, s) in per_bench.iter_mut().zip(run.summaries) {
            if let Some(summary) = s {
                hist.push(HistoryPoint {
                    summary,
                    group: Some(format!("run{r:02}")),
                });
            }
        }
    }
    per_bench
}

// ---------------------------------------------------------------------------------------------------------
// Oracle.

/// Per-benchmark one-sided level of the oracle.
pub const ORACLE_ALPHA: f64 = 0.001;

fn log_median(values: &[f64]) -> f64 {
    let s: Vec<Sample> = values.iter().map(|&v| Sample::ok(v)).collect();
    summary::summarize(&s, QUANTUM).map_or(f64::NAN, |r| r.center)
}

/// The oracle knows the level, the CV, the noise model and the true shared shift of each run. Its
/// statistic is the sum over the given runs of the run's log-median (one run: the log-median itself);
/// its null is simulated by Monte Carlo with exactly those true parameters (the benchmark's own run effect
/// v and the samples are redrawn; rounding and outliers included). Summing log-medians is the natural
/// three-run statistic here: every run has the same precision apart from the shift, which is known.
/// Returns the Monte Carlo p-value (1 + #{null ≥ observed}) / (1 + draws) for each prefix of runs
/// (1 run, 2 runs, ...).
pub fn oracle_p(
    rng: &mut Rng8,
    b: &BenchTruth,
    runs: &[(f64, Vec<f64>)],
    draws: usize,
) -> Vec<f64> {
    let observed: Vec<f64> = prefix_sums(runs.iter().map(|(_, v)| log_median(v)));
    let mut exceed = vec![0usize; runs.len()];
    for _ in 0..draws {
        let null = prefix_sums(
            runs.iter()
                .map(|(u, v)| log_median(&run_values(rng, b, *u, 1.0, v.len() as u32))),
        );
        for ((e, n), o) in exceed.iter_mut().zip(&null).zip(&observed) {
            if n >= o {
                *e += 1;
            }
        }
    }
    exceed
        .iter()
        .map(|&e| (1 + e) as f64 / (1 + draws) as f64)
        .collect()
}

fn prefix_sums(it: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    it.map(|x| {
        acc += x;
        acc
    })
    .collect()
}
