//! A project's gate settings (`GET/PUT …/gate-settings`), their limits and defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::gate;
use super::names::{BenchmarkName, NameError};

/// Per-benchmark exceptions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkOverride {
    /// Smallest slowdown (percent) that fails this benchmark; smaller significant ones warn.
    pub min_effect_pct: f64,
}

/// How a project's gates decide. Every field has a default, so `{}` is valid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GateSettings {
    /// False-discovery rate of one look across all (benchmark, metric) pairs of a gate.
    pub q: f64,
    /// A significant slowdown smaller than this (percent) is `warn`, never `fail`.
    pub min_effect_pct: f64,
    /// Attempts a gate may take (the first run plus confirmation runs).
    pub max_attempts: u32,
    /// History runs a benchmark is judged against (the newest).
    pub history_runs: u32,
    /// Fewer history runs than this: the benchmark is `skip`.
    pub min_history_runs: u32,
    /// Metrics a gate judges when its request names none.
    pub metrics: Vec<String>,
    /// Per-benchmark `min_effect_pct`.
    pub overrides: BTreeMap<String, BenchmarkOverride>,
    /// Every one-run failure becomes `inconclusive` first and needs a confirmation run.
    pub confirm_before_fail: bool,
    /// Hours a gate accepts confirmation runs after it was opened.
    pub confirm_within_hours: u32,
}

impl Default for GateSettings {
    fn default() -> Self {
        GateSettings {
            q: 0.03,
            min_effect_pct: 5.0,
            max_attempts: 3,
            history_runs: 60,
            min_history_runs: 5,
            metrics: vec!["wall_ms".to_owned()],
            overrides: BTreeMap::new(),
            confirm_before_fail: false,
            confirm_within_hours: 24,
        }
    }
}

/// Limits of the settings.
pub const MAX_ATTEMPTS: u32 = 5;
pub const MAX_HISTORY_RUNS: u32 = 500;
pub const MAX_OVERRIDES: usize = 1000;
pub const MAX_EFFECT_PCT: f64 = 1000.0;

fn err(field: &'static str, reason: impl Into<String>) -> NameError {
    NameError::new(field, reason)
}

fn check_effect(field: &'static str, v: f64) -> Result<(), NameError> {
    if v.is_finite() && (0.0..=MAX_EFFECT_PCT).contains(&v) {
        Ok(())
    } else {
        Err(err(
            field,
            format!("must be a number from 0 to {MAX_EFFECT_PCT}"),
        ))
    }
}

/// A metric the gate can judge (the trend endpoint's metrics).
pub fn check_metric(m: &str) -> Result<(), NameError> {
    if super::trend::METRICS.contains(&m) {
        Ok(())
    } else {
        Err(err(
            "metrics",
            format!(
                "unknown metric '{m}'; expected one of {}",
                super::trend::METRICS.join(", ")
            ),
        ))
    }
}

impl GateSettings {
    pub fn validate(&self) -> Result<(), NameError> {
        if !(self.q.is_finite() && self.q > 0.0 && self.q <= 0.5) {
            return Err(err("q", "must be in (0, 0.5]"));
        }
        check_effect("min_effect_pct", self.min_effect_pct)?;
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(err(
                "max_attempts",
                format!("must be from 1 to {MAX_ATTEMPTS}"),
            ));
        }
        if !(2..=MAX_HISTORY_RUNS).contains(&self.history_runs) {
            return Err(err(
                "history_runs",
                format!("must be from 2 to {MAX_HISTORY_RUNS}"),
            ));
        }
        if self.min_history_runs < 2 || self.min_history_runs > self.history_runs {
            return Err(err("min_history_runs", "must be from 2 to history_runs"));
        }
        if self.metrics.is_empty() || self.metrics.len() > super::trend::METRICS.len() {
            return Err(err("metrics", "at least one metric, each at most once"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &self.metrics {
            check_metric(m)?;
            if !seen.insert(m) {
                return Err(err("metrics", format!("'{m}' is listed twice")));
            }
        }
        if self.overrides.len() > MAX_OVERRIDES {
            return Err(err(
                "overrides",
                format!("at most {MAX_OVERRIDES} benchmarks"),
            ));
        }
        for (b, o) in &self.overrides {
            BenchmarkName::parse(b).map_err(|e| err("overrides", e.to_string()))?;
            check_effect("overrides", o.min_effect_pct)?;
        }
        if !(1..=24 * 30).contains(&self.confirm_within_hours) {
            return Err(err("confirm_within_hours", "must be from 1 to 720"));
        }
        Ok(())
    }

    /// `min_effect_pct` of one benchmark.
    pub fn min_effect_for(&self, benchmark: &str) -> f64 {
        self.overrides
            .get(benchmark)
            .map_or(self.min_effect_pct, |o| o.min_effect_pct)
    }

    /// The decision rule's settings for a gate judging `metrics` metrics: the false-discovery
    /// budget is split evenly across them (Bonferroni over metrics, BH within one).
    pub fn decision(&self, metrics: usize) -> gate::Settings {
        gate::Settings {
            q: self.q / metrics.max(1) as f64,
            max_attempts: self.max_attempts,
            min_history_runs: self.min_history_runs as usize,
            confirm_before_fail: self.confirm_before_fail,
            ..gate::Settings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_an_empty_document_gives_them() {
        let s: GateSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, GateSettings::default());
        s.validate().unwrap();
        assert_eq!(s.decision(1).q, 0.03);
        assert!((s.decision(3).q - 0.01).abs() < 1e-12);
    }

    #[test]
    fn bad_values_name_their_field() {
        let bad = |f: fn(&mut GateSettings)| {
            let mut s = GateSettings::default();
            f(&mut s);
            s.validate().unwrap_err().field
        };
        assert_eq!(bad(|s| s.q = 0.0), "q");
        assert_eq!(bad(|s| s.q = f64::NAN), "q");
        assert_eq!(bad(|s| s.min_effect_pct = -1.0), "min_effect_pct");
        assert_eq!(bad(|s| s.max_attempts = 0), "max_attempts");
        assert_eq!(bad(|s| s.history_runs = 1), "history_runs");
        assert_eq!(bad(|s| s.min_history_runs = 100), "min_history_runs");
        assert_eq!(bad(|s| s.metrics = vec![]), "metrics");
        assert_eq!(bad(|s| s.metrics = vec!["speed".into()]), "metrics");
        assert_eq!(
            bad(|s| s.metrics = vec!["wall_ms".into(), "wall_ms".into()]),
            "metrics"
        );
        assert_eq!(
            bad(|s| {
                s.overrides.insert(
                    "Bad Name".into(),
                    BenchmarkOverride {
                        min_effect_pct: 5.0,
                    },
                );
            }),
            "overrides"
        );
        assert!(serde_json::from_str::<GateSettings>(r#"{"qq": 1}"#).is_err());
    }

    #[test]
    fn overrides_apply_per_benchmark() {
        let mut s = GateSettings::default();
        s.overrides.insert(
            "bench-a".into(),
            BenchmarkOverride {
                min_effect_pct: 12.0,
            },
        );
        assert_eq!(s.min_effect_for("bench-a"), 12.0);
        assert_eq!(s.min_effect_for("bench-b"), 5.0);
    }
}
