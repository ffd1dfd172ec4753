//! Properties of the whole gate on synthetic suites: order independence, scale invariance, and that no
//! input, however broken, makes it panic or print NaN.

use perfgate_server::domain::gate::{decide, BenchInput, Decision, HistoryPoint, Settings};
use perfgate_server::domain::summary::{summarize, RunSummary, Sample};
#[path = "../bench/gate_quality/synth.rs"]
#[allow(dead_code, unreachable_pub)]
mod synth;
use rand::seq::SliceRandom;
use rand::Rng;
use synth::{BenchTruth, Rng8};

/// History (30 runs) and `attempts` current runs of `benches`, raw values multiplied by `scale` before
/// summarising; benchmark 0..5 regressed by `factor`.
fn inputs(
    seed: u64,
    benches: &[BenchTruth],
    attempts: usize,
    factor: f64,
    scale: f64,
) -> Vec<BenchInput> {
    let mut rng = synth::rng(seed);
    let run = |rng: &mut Rng8, f: &dyn Fn(usize) -> f64| -> Vec<Option<RunSummary>> {
        let u = synth::RUNNER_SD * synth::normal(rng);
        benches
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let v = synth::run_values(rng, b, u, f(i), synth::SAMPLES);
                let s: Vec<Sample> = v.iter().map(|x| Sample::ok(x * scale)).collect();
                summarize(&s, synth::QUANTUM)
            })
            .collect()
    };
    let history: Vec<Vec<Option<RunSummary>>> = (0..30).map(|_| run(&mut rng, &|_| 1.0)).collect();
    let current: Vec<Vec<Option<RunSummary>>> = (0..attempts)
        .map(|_| run(&mut rng, &|i| if i < 5 { factor } else { 1.0 }))
        .collect();
    (0..benches.len())
        .map(|i| BenchInput {
            key: format!("b{i:03}"),
            higher_is_better: i % 7 == 3,
            history: history
                .iter()
                .enumerate()
                .filter_map(|(r, h)| {
                    h[i].map(|summary| HistoryPoint {
                        summary,
                        group: Some(format!("g{r}")),
                    })
                })
                .collect(),
            attempts: current.iter().map(|a| a[i]).collect(),
            min_effect_pct: 3.0,
        })
        .collect()
}

fn assert_no_nan(d: &Decision) {
    let s = &d.suite;
    assert!(
        [s.shift_pct, s.ci95_pct.0, s.ci95_pct.1, s.p]
            .iter()
            .all(|x| x.is_finite()),
        "{s:?}"
    );
    for v in &d.benchmarks {
        assert!(
            [v.effect_pct, v.ci95_pct.0, v.ci95_pct.1, v.p, v.q]
                .iter()
                .all(|x| x.is_finite()),
            "{v:?}"
        );
        assert!(!v.reason.contains("NaN"), "{v:?}");
    }
}

#[test]
fn order_of_inputs_does_not_matter() {
    let mut rng = synth::rng(1);
    let benches = synth::suite(&mut rng);
    for attempts in 1..=3 {
        let original = inputs(10 + attempts as u64, &benches, attempts, 1.10, 1.0);
        let expected = decide(&original, &Settings::default());
        for _ in 0..5 {
            let mut shuffled = original.clone();
            shuffled.shuffle(&mut rng);
            assert_eq!(decide(&shuffled, &Settings::default()), expected);
        }
    }
}

#[test]
fn multiplying_everything_by_a_constant_changes_nothing() {
    let mut rng = synth::rng(2);
    let benches: Vec<BenchTruth> = (0..60)
        .map(|_| BenchTruth {
            level_ms: rng.gen_range(500.0..2000.0),
            cv: rng.gen_range(0.01..0.08),
        })
        .collect();
    for (seed, factor) in [(20, 1.0), (21, 1.08), (22, 1.15)] {
        let base = decide(
            &inputs(seed, &benches, 1, factor, 1.0),
            &Settings::default(),
        );
        for scale in [3.0, 7.0] {
            let scaled = decide(
                &inputs(seed, &benches, 1, factor, scale),
                &Settings::default(),
            );
            assert_eq!(base.suite.status, scaled.suite.status);
            assert!((base.suite.shift_pct - scaled.suite.shift_pct).abs() < 0.01);
            for (a, b) in base.benchmarks.iter().zip(&scaled.benchmarks) {
                assert_eq!(
                    (a.key.as_str(), a.status),
                    (b.key.as_str(), b.status),
                    "{a:?} {b:?}"
                );
                assert!((a.effect_pct - b.effect_pct).abs() < 0.01, "{a:?} {b:?}");
                assert!((a.p - b.p).abs() <= 0.01 * a.p.max(1e-6), "{a:?} {b:?}");
            }
        }
    }
}

fn wild_summary(rng: &mut Rng8) -> RunSummary {
    let pick = |rng: &mut Rng8| match rng.gen_range(0..8) {
        0 => f64::NAN,
        1 => f64::INFINITY,
        2 => 0.0,
        3 => -1.0,
        4 => 1e300,
        _ => rng.gen_range(-3.0..8.0),
    };
    RunSummary {
        center: pick(rng),
        within_sd: pick(rng),
        n: rng.gen_range(0..3),
        resolution: pick(rng),
    }
}

#[test]
fn broken_inputs_never_panic_or_yield_nan() {
    let mut rng = synth::rng(3);
    for _ in 0..300 {
        let n = rng.gen_range(0..15);
        let inputs: Vec<BenchInput> = (0..n)
            .map(|i| BenchInput {
                key: format!("k{}", i % 9),
                higher_is_better: rng.r#gen(),
                history: (0..rng.gen_range(0..12))
                    .map(|_| HistoryPoint {
                        summary: wild_summary(&mut rng),
                        group: if rng.r#gen() {
                            Some(format!("g{}", rng.gen_range(0..4)))
                        } else {
                            None
                        },
                    })
                    .collect(),
                attempts: (0..rng.gen_range(0..5))
                    .map(|_| {
                        if rng.gen_bool(0.8) {
                            Some(wild_summary(&mut rng))
                        } else {
                            None
                        }
                    })
                    .collect(),
                min_effect_pct: if rng.gen_bool(0.1) {
                    f64::NAN
                } else {
                    rng.gen_range(-5.0..50.0)
                },
            })
            .collect();
        let settings = Settings {
            q: rng.gen_range(-0.1..1.5),
            max_attempts: rng.gen_range(0..5),
            min_history_runs: rng.gen_range(0..8),
            confirm_before_fail: rng.r#gen(),
            confirm_effect_pct: rng.gen_range(-5.0..30.0),
        };
        let d = decide(&inputs, &settings);
        assert_no_nan(&d);
        assert_eq!(d.is_final, d.confirm.is_none());
    }
}

#[test]
fn zero_and_empty_samples_summarise_safely() {
    let all_zero = vec![Sample::ok(0.0); 10];
    let s = summarize(&all_zero, 1.0).unwrap_or(RunSummary {
        center: f64::NAN,
        within_sd: 0.0,
        n: 0,
        resolution: 0.0,
    });
    assert!(s.center.is_finite() && s.resolution.is_finite());
    assert!(summarize(&[], 1.0).is_none());
    // A benchmark whose every run is 0 ms, inside a normal suite: decided, not NaN.
    let mut rng = synth::rng(4);
    let benches = synth::suite(&mut rng);
    let mut inp = inputs(40, &benches[..30], 1, 1.0, 1.0);
    let zero = summarize(&all_zero, 1.0);
    for h in &mut inp[0].history {
        h.summary = zero.unwrap_or(h.summary);
    }
    inp[0].attempts = vec![zero];
    assert_no_nan(&decide(&inp, &Settings::default()));
}
