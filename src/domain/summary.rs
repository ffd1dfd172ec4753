//! Run summary of one receipt metric: the unit of evidence of the gate.
//!
//! Samples of one run share the runner, so the gate never treats them as independent evidence; it reduces
//! the run to a centre on the ln scale (median, robust to up to 4 outliers in 10) plus the spread terms the
//! gate needs to weigh this run against others.

use super::stats;

/// One measured repetition as it appears in a receipt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub value: f64,
    pub warmup: bool,
    /// The repetition's exit code was not 0.
    pub failed: bool,
    pub timed_out: bool,
}

impl Sample {
    /// A plain measured sample (not warm-up, not failed, not timed out).
    pub fn ok(value: f64) -> Self {
        Sample {
            value,
            warmup: false,
            failed: false,
            timed_out: false,
        }
    }
}

/// Summary of one run of one benchmark metric, all on the natural-log scale.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunSummary {
    /// Median of ln(sample).
    pub center: f64,
    /// Robust SD of ln(sample) within the run (0 when fewer than two usable samples).
    pub within_sd: f64,
    /// Number of usable samples.
    pub n: u32,
    /// SD, on the ln scale, of the rounding of the run centre: quantum / (level·√12). Integer-ms medians of
    /// short benchmarks take only a few values; this term keeps their spread from collapsing to zero.
    pub resolution: f64,
}

/// Summarise one run. `quantum` is the measurement resolution in the metric's unit (1.0 for integer
/// milliseconds, 0.0 for a metric reported as a float without rounding).
///
/// Dropped: warm-up, failed and timed-out samples, and non-finite or negative values. Values are floored at
/// quantum/2 before the logarithm, because a reading of 0 ms means "below one quantum", not "took no time";
/// with quantum 0 the floor is half the smallest positive sample. Returns `None` when no usable sample
/// remains (the gate then skips the benchmark with a reason).
pub fn summarize(samples: &[Sample], quantum: f64) -> Option<RunSummary> {
    let usable: Vec<f64> = samples
        .iter()
        .filter(|s| !s.warmup && !s.failed && !s.timed_out && s.value.is_finite() && s.value >= 0.0)
        .map(|s| s.value)
        .collect();
    if usable.is_empty() {
        return None;
    }
    let quantum = if quantum.is_finite() && quantum > 0.0 {
        quantum
    } else {
        0.0
    };
    let floor = log_floor(&usable, quantum);
    let logs: Vec<f64> = usable.iter().map(|v| v.max(floor).ln()).collect();
    let center = stats::median(&logs)?;
    let resolution = quantum / (center.exp() * 12f64.sqrt());
    let within_sd = stats::robust_sd(&logs, resolution).map_or(0.0, |r| r.sd);
    Some(RunSummary {
        center,
        within_sd,
        n: usable.len() as u32,
        resolution,
    })
}

/// Smallest value that still has a meaningful logarithm. Half a quantum is the midpoint of the
/// interval that a reading of 0 stands for.
fn log_floor(usable: &[f64], quantum: f64) -> f64 {
    if quantum > 0.0 {
        return quantum / 2.0;
    }
    let min_positive = usable
        .iter()
        .copied()
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    // All zero and no quantum: any positive constant gives the same (constant) run; 1 keeps ln at 0.
    if min_positive.is_finite() {
        min_positive / 2.0
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_flagged_samples_and_takes_log_median() {
        let mut s: Vec<Sample> = [100.0, 110.0, 90.0, 105.0, 95.0]
            .iter()
            .map(|&v| Sample::ok(v))
            .collect();
        s.push(Sample {
            value: 5000.0,
            warmup: true,
            failed: false,
            timed_out: false,
        });
        s.push(Sample {
            value: 1.0,
            warmup: false,
            failed: true,
            timed_out: false,
        });
        s.push(Sample {
            value: 9000.0,
            warmup: false,
            failed: false,
            timed_out: true,
        });
        s.push(Sample::ok(f64::NAN));
        let r = summarize(&s, 1.0).unwrap();
        assert_eq!(r.n, 5);
        assert!((r.center - 100f64.ln()).abs() < 1e-12);
        assert!((r.resolution - 1.0 / (100.0 * 12f64.sqrt())).abs() < 1e-12);
        assert!(r.within_sd > 0.0 && r.within_sd < 0.1);
    }

    #[test]
    fn no_usable_samples_is_none() {
        assert_eq!(summarize(&[], 1.0), None);
        let s = [Sample {
            value: 3.0,
            warmup: true,
            failed: false,
            timed_out: false,
        }];
        assert_eq!(summarize(&s, 1.0), None);
        assert_eq!(
            summarize(&[Sample::ok(-1.0), Sample::ok(f64::INFINITY)], 1.0),
            None
        );
    }

    #[test]
    fn zeros_never_reach_ln_zero() {
        let zeros = [Sample::ok(0.0); 10];
        let r = summarize(&zeros, 1.0).unwrap();
        assert!((r.center - 0.5f64.ln()).abs() < 1e-12);
        assert!(r.within_sd.is_finite() && r.resolution.is_finite());
        let r0 = summarize(&zeros, 0.0).unwrap();
        assert_eq!(r0.center, 0.0);
        assert_eq!(r0.resolution, 0.0);
        let one = summarize(&[Sample::ok(7.0)], 1.0).unwrap();
        assert_eq!((one.n, one.within_sd), (1, 0.0));
    }

    #[test]
    fn quantised_run_keeps_a_spread() {
        // 10 ms benchmark: mostly 10, a few 9 and 11 → MAD 0, but the spread must not be zero.
        let s: Vec<Sample> = [10.0, 10.0, 10.0, 11.0, 10.0, 9.0, 10.0, 10.0, 11.0, 10.0]
            .iter()
            .map(|&v| Sample::ok(v))
            .collect();
        let r = summarize(&s, 1.0).unwrap();
        assert!(r.within_sd > 0.0);
        assert!(r.resolution > 0.028 && r.resolution < 0.03);
    }
}
