//! Least-squares drift analysis of one metric over a benchmark's recent versions (contract §4).
//!
//! The series is fitted as `value = slope · run + intercept` over runs 0..n-1 (oldest first). The
//! budget is `threshold` relative to the oldest value, above it for lower-is-better metrics and
//! below it for `throughput_per_s`. A fit that explains little (R² < 0.3) or a slope under 0.1 %
//! of the current value per run is `stable`; otherwise the drift is `improving` (moving away
//! from the budget), `critical` (breach predicted within `critical_window` runs, or the fitted
//! current value already past the budget) or `degrading`.

use serde::Serialize;

pub const METRICS: &[&str] = &[
    "wall_ms",
    "cpu_ms",
    "max_rss_kb",
    "page_faults",
    "ctx_switches",
    "io_read_bytes",
    "io_write_bytes",
    "network_packets",
    "energy_uj",
    "binary_bytes",
    "throughput_per_s",
];

const MIN_R_SQUARED: f64 = 0.3;
const STABLE_SLOPE: f64 = 0.001;

pub fn lower_is_better(metric: &str) -> bool {
    metric != "throughput_per_s"
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Drift {
    Stable,
    Improving,
    Degrading,
    Critical,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Analysis {
    pub metric: String,
    pub slope_per_run: f64,
    pub intercept: f64,
    pub r_squared: f64,
    pub drift: Drift,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs_to_breach: Option<u32>,
    pub current_headroom_pct: f64,
    pub sample_count: usize,
}

/// `(slope, intercept, r²)` of the values against 0..n-1; `None` below two points.
pub fn fit(values: &[f64]) -> Option<(f64, f64, f64)> {
    let n = values.len();
    if n < 2 {
        return None;
    }
    let nf = n as f64;
    let mean_x = (nf - 1.0) / 2.0;
    let mean_y = values.iter().sum::<f64>() / nf;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, y) in values.iter().enumerate() {
        let dx = i as f64 - mean_x;
        sxy += dx * (y - mean_y);
        sxx += dx * dx;
    }
    let slope = sxy / sxx;
    let intercept = mean_y - slope * mean_x;
    let (mut ss_tot, mut ss_res) = (0.0, 0.0);
    for (i, y) in values.iter().enumerate() {
        ss_tot += (y - mean_y).powi(2);
        ss_res += (y - (slope * i as f64 + intercept)).powi(2);
    }
    let scale = mean_y.abs().max(1.0);
    let r2 = if ss_tot <= f64::EPSILON * scale * scale {
        1.0 // a flat series is fitted exactly
    } else {
        (1.0 - ss_res / ss_tot).clamp(0.0, 1.0)
    };
    (slope.is_finite() && intercept.is_finite()).then_some((slope, intercept, r2))
}

pub fn analyze(
    metric: &str,
    values: &[f64],
    threshold: f64,
    critical_window: u32,
) -> Option<Analysis> {
    let (slope, intercept, r2) = fit(values)?;
    let lower = lower_is_better(metric);
    let first = values[0];
    let budget = if lower {
        first * (1.0 + threshold)
    } else {
        first * (1.0 - threshold)
    };
    let current_run = (values.len() - 1) as f64;
    let current = slope * current_run + intercept;
    let headroom = if budget.abs() < f64::EPSILON {
        0.0
    } else if lower {
        (budget - current) / budget * 100.0
    } else {
        (current - budget) / budget * 100.0
    };
    let toward_budget = if lower { slope > 0.0 } else { slope < 0.0 };
    let within_budget = if lower {
        current < budget
    } else {
        current > budget
    };
    let runs_to_breach = (toward_budget && within_budget && slope.abs() > f64::EPSILON)
        .then(|| (budget - intercept) / slope - current_run)
        .filter(|r| r.is_finite() && *r > 0.0)
        .map(|r| r.ceil().clamp(1.0, u32::MAX as f64) as u32);
    let reference = if current.abs() > f64::EPSILON {
        current.abs()
    } else {
        1.0
    };
    let drift = if r2 < MIN_R_SQUARED || (slope / reference).abs() < STABLE_SLOPE {
        Drift::Stable
    } else if !toward_budget {
        Drift::Improving
    } else if runs_to_breach.is_some_and(|r| r <= critical_window) || !within_budget {
        Drift::Critical
    } else {
        Drift::Degrading
    };
    Some(Analysis {
        metric: metric.to_owned(),
        slope_per_run: slope,
        intercept,
        r_squared: r2,
        drift,
        runs_to_breach,
        current_headroom_pct: headroom,
        sample_count: values.len(),
    })
}

/// One character per value, `_` (lowest) to `#` (highest).
pub fn spark(values: &[f64]) -> String {
    const LEVELS: [char; 8] = ['_', '.', '-', '~', '=', '+', '^', '#'];
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let range = max - min;
    // NaN-safe: a flat (or unusable) range draws the lowest level.
    let flat = range.partial_cmp(&f64::EPSILON) != Some(std::cmp::Ordering::Greater);
    values
        .iter()
        .map(|v| {
            if flat {
                return LEVELS[0];
            }
            let i = ((v - min) / range * (LEVELS.len() - 1) as f64).round() as usize;
            LEVELS[i.min(LEVELS.len() - 1)]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_fit() {
        let (s, i, r2) = fit(&[1.0, 3.0, 5.0, 7.0]).unwrap();
        assert!((s - 2.0).abs() < 1e-12 && (i - 1.0).abs() < 1e-12 && (r2 - 1.0).abs() < 1e-12);
        assert!(fit(&[1.0]).is_none());
    }

    #[test]
    fn flat_is_stable() {
        let a = analyze("wall_ms", &[100.0; 10], 0.2, 10).unwrap();
        assert_eq!(a.drift, Drift::Stable);
        assert_eq!(a.slope_per_run, 0.0);
        assert_eq!(a.r_squared, 1.0);
        assert!(a.runs_to_breach.is_none());
        assert!((a.current_headroom_pct - 100.0 * 20.0 / 120.0).abs() < 1e-9);
        assert_eq!(spark(&[100.0; 3]), "___");
    }

    #[test]
    fn noise_is_stable() {
        let a = analyze(
            "wall_ms",
            &[100.0, 104.0, 97.0, 103.0, 98.0, 102.0, 99.0],
            0.2,
            10,
        )
        .unwrap();
        assert_eq!(a.drift, Drift::Stable, "{a:?}");
    }

    #[test]
    fn slow_climb_degrades() {
        // +0.5 per run from 100: budget 120 is 40 runs away.
        let v: Vec<f64> = (0..10).map(|i| 100.0 + 0.5 * i as f64).collect();
        let a = analyze("wall_ms", &v, 0.2, 10).unwrap();
        assert_eq!(a.drift, Drift::Degrading, "{a:?}");
        assert_eq!(a.runs_to_breach, Some(31)); // breach at run 40, now at run 9
    }

    #[test]
    fn fast_climb_is_critical() {
        let v: Vec<f64> = (0..10).map(|i| 100.0 + 2.0 * i as f64).collect();
        let a = analyze("wall_ms", &v, 0.2, 10).unwrap();
        // value 118 at run 9, budget 120: breach at run 10.
        assert_eq!(a.runs_to_breach, Some(1));
        assert_eq!(a.drift, Drift::Critical);
    }

    #[test]
    fn falling_time_improves() {
        let v: Vec<f64> = (0..10).map(|i| 100.0 - 2.0 * i as f64).collect();
        assert_eq!(
            analyze("wall_ms", &v, 0.2, 10).unwrap().drift,
            Drift::Improving
        );
    }

    #[test]
    fn throughput_is_higher_is_better() {
        let up: Vec<f64> = (0..10).map(|i| 1000.0 + 20.0 * i as f64).collect();
        let a = analyze("throughput_per_s", &up, 0.2, 10).unwrap();
        assert_eq!(a.drift, Drift::Improving);
        assert!(a.current_headroom_pct > 0.0);
        let down: Vec<f64> = (0..10).map(|i| 1000.0 - 20.0 * i as f64).collect();
        let a = analyze("throughput_per_s", &down, 0.2, 10).unwrap();
        // budget 800; value 820 at run 9 → one run away.
        assert_eq!(a.runs_to_breach, Some(1));
        assert_eq!(a.drift, Drift::Critical);
        let slow: Vec<f64> = (0..10).map(|i| 1000.0 - 2.0 * i as f64).collect();
        assert_eq!(
            analyze("throughput_per_s", &slow, 0.2, 10).unwrap().drift,
            Drift::Degrading
        );
    }

    #[test]
    fn past_the_budget_is_critical() {
        let v: Vec<f64> = (0..10).map(|i| 100.0 + 5.0 * i as f64).collect();
        let a = analyze("wall_ms", &v, 0.2, 10).unwrap();
        assert!(a.runs_to_breach.is_none());
        assert!(a.current_headroom_pct < 0.0);
        assert_eq!(a.drift, Drift::Critical);
    }

    #[test]
    fn spark_levels() {
        assert_eq!(spark(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]), "_.-~=+^#");
        assert_eq!(spark(&[]), "");
    }
}
