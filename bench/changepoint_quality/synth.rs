//! Seeded synthetic histories of one benchmark with known truth, using the gate generator's noise model
//! (`bench/gate_quality/synth.rs` in perfgate-server):
//!
//! level L log-uniform in 10–2000 ms, within-run CV log-normal around 4% (log-SD 0.6, clamped to
//! 0.5–20%); run r draws its shared runner shift u_r ~ N(0, 2%) and the benchmark's own run effect
//! v_r ~ N(0, 1%), then 10 samples x = round(L · f_r · exp(u_r + v_r + CV·z)) [× U(1.5, 3) with probability
//! 3%] in integer ms; the run's value is the median of ln(samples) (`summary::summarize`, quantum 1 ms).
//! f_r is the true step factor: 1 before the step, 1 + size from the step index on.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use perfgate_server::domain::summary::{self, Sample};

pub const RUNS: usize = 60;
pub const SAMPLES: usize = 10;
pub const RUNNER_SD: f64 = 0.02;
pub const OWN_SD: f64 = 0.01;
pub const OUTLIER_P: f64 = 0.03;
pub const QUANTUM: f64 = 1.0;
/// Share of steps that go up (a regression for a lower-is-better metric).
pub const UP_SHARE: f64 = 0.8;
/// SD of the error of an estimated common shift (median over ~100 benchmarks' residuals of ≈ 2.5% SD each:
/// 1.25 · 2.5% / √100 ≈ 0.3%), used for the "shift removed" variant.
pub const SHIFT_ESTIMATE_SD: f64 = 0.003;

pub type Rng8 = ChaCha8Rng;

pub fn rng(seed: u64) -> Rng8 {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Standard normal by Box–Muller (sampling only).
pub fn normal(rng: &mut Rng8) -> f64 {
    let u1: f64 = 1.0 - rng.gen::<f64>(); // (0, 1], so ln never sees 0
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A step of the truth: from `index` on, the level is multiplied by `factor`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub index: usize,
    pub factor: f64,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub level_ms: f64,
    pub cv: f64,
    /// ln-median of each run, shared shift included (what one benchmark's history looks like).
    pub values: Vec<f64>,
    /// The same with an estimate of each run's shared shift subtracted (true shift + N(0, 0.3%) error),
    /// as the server can do when the whole suite ran.
    pub corrected: Vec<f64>,
    pub step: Option<Step>,
}

/// Where the step goes and how big it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepSpec {
    None,
    /// Size uniform in [lo, hi] (relative, 0.10 = 10%), direction up with probability `UP_SHARE`, index
    /// uniform in [first, last].
    Random {
        lo: f64,
        hi: f64,
        first: usize,
        last: usize,
    },
}

/// Step sizes and places of the main table: index uniform with at least 5 runs on each side (steps at the
/// very end are the tail rows' subject).
pub fn step_spec(lo: f64, hi: f64) -> StepSpec {
    StepSpec::Random {
        lo,
        hi,
        first: 5,
        last: RUNS - 5,
    }
}

pub fn series(rng: &mut Rng8, runs: usize, spec: StepSpec) -> Series {
    let level_ms = (10f64.ln() + rng.gen::<f64>() * (2000f64 / 10.0).ln()).exp();
    let cv = (0.04f64.ln() + 0.6 * normal(rng)).exp().clamp(0.005, 0.20);
    let step = match spec {
        StepSpec::None => None,
        StepSpec::Random {
            lo,
            hi,
            first,
            last,
        } => {
            let size = if hi > lo { rng.gen_range(lo..=hi) } else { lo };
            let up = rng.gen::<f64>() < UP_SHARE;
            let index = if last > first {
                rng.gen_range(first..=last)
            } else {
                first
            };
            Some(Step {
                index,
                factor: if up { 1.0 + size } else { 1.0 / (1.0 + size) },
            })
        }
    };
    let mut values = Vec::with_capacity(runs);
    let mut corrected = Vec::with_capacity(runs);
    for r in 0..runs {
        let u = RUNNER_SD * normal(rng);
        let f = match step {
            Some(s) if r >= s.index => s.factor,
            _ => 1.0,
        };
        let base = level_ms * f * (u + OWN_SD * normal(rng)).exp();
        let samples: Vec<Sample> = (0..SAMPLES)
            .map(|_| {
                let mut x = base * (cv * normal(rng)).exp();
                if rng.gen::<f64>() < OUTLIER_P {
                    x *= rng.gen_range(1.5..3.0);
                }
                Sample::ok((x / QUANTUM).round() * QUANTUM)
            })
            .collect();
        let v = summary::summarize(&samples, QUANTUM).map_or(f64::NAN, |s| s.center);
        let u_hat = u + SHIFT_ESTIMATE_SD * normal(rng);
        values.push(v);
        corrected.push(v - u_hat);
    }
    Series {
        level_ms,
        cv,
        values,
        corrected,
        step,
    }
}
