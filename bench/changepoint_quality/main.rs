//! Quality table of the change-point detector on seeded synthetic series (`bench/changepoint_quality/synth.rs`).
//!
//! `cargo run --release --bin quality [series per row]` (default 2000). Deterministic: fixed seeds.

use perfgate_server::domain::changepoint::{self, ChangePoint, Settings, Status, Strength};
#[path = "synth.rs"]
#[allow(dead_code, unreachable_pub)]
mod synth;

use synth::{Series, StepSpec, RUNS};

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    /// One benchmark's history as recorded: the runner's shared shift is still in every run.
    Raw,
    /// The run's common shift (estimated, ±0.3%) removed by the caller.
    Corrected,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Batch,
    /// One run appended at a time through `changepoint::update`.
    Incremental,
}

#[derive(Default)]
struct Tally {
    series: usize,
    steps: usize,
    located: usize,
    located_exact: usize,
    located_any: usize,
    extra_strong: usize,
    extra_weak: usize,
    /// Incremental only: points that were strong and confirmed at some update, not within ±2 of the truth,
    /// counted once per distinct place (an alert that would have gone out).
    ever_alerted_false: usize,
    /// The same under `changepoint::should_alert`.
    ever_alerted_false_rule: usize,
    /// Incremental only: steps alerted (within ±2) by the time 3 runs are at the new level.
    alerted_by_3: usize,
    alerted_by_3_rule: usize,
    same_as_batch: usize,
    max_tail: usize,
}

fn values(s: &Series, v: Variant) -> &[f64] {
    match v {
        Variant::Raw => &s.values,
        Variant::Corrected => &s.corrected,
    }
}

fn near(cp: &ChangePoint, truth: Option<usize>, tol: usize) -> bool {
    truth.is_some_and(|t| cp.index.abs_diff(t) <= tol)
}

fn incremental(x: &[f64], st: &Settings, t: &mut Tally, truth: Option<usize>) -> Vec<ChangePoint> {
    let mut resume = 0;
    let mut settled: Vec<ChangePoint> = Vec::new();
    let mut pending: Vec<ChangePoint> = Vec::new();
    let mut alerted: Vec<usize> = Vec::new();
    let mut alerted_rule: Vec<usize> = Vec::new();
    let (mut hit, mut hit_rule) = (false, false);
    let note = |list: &mut Vec<usize>, hit: &mut bool, cp: &ChangePoint, n: usize| {
        if near(cp, truth, 2) {
            *hit |= truth.is_some_and(|t| n <= t + 3);
        } else if !list.iter().any(|&i| i.abs_diff(cp.index) <= 2) {
            list.push(cp.index);
        }
    };
    for n in 1..=x.len() {
        let tail = &x[resume..n];
        t.max_tail = t.max_tail.max(tail.len());
        let u = changepoint::update(resume, tail, st);
        settled.extend(u.settled);
        pending = u.pending;
        resume = u.resume_at;
        let all = settled.iter().map(|c| (c, true));
        for (cp, is_settled) in all.chain(pending.iter().map(|c| (c, false))) {
            if cp.strength == Strength::Strong
                && changepoint::status(cp.index, n) == Status::Confirmed
            {
                note(&mut alerted, &mut hit, cp, n);
            }
            if changepoint::should_alert(cp, n, is_settled, st) {
                note(&mut alerted_rule, &mut hit_rule, cp, n);
            }
        }
    }
    t.ever_alerted_false += alerted.len();
    t.ever_alerted_false_rule += alerted_rule.len();
    t.alerted_by_3 += hit as usize;
    t.alerted_by_3_rule += hit_rule as usize;
    settled.extend(pending);
    settled
}

fn run_row(spec: StepSpec, n: usize, seed: u64, v: Variant, mode: Mode, st: &Settings) -> Tally {
    let mut rng = synth::rng(seed);
    let mut t = Tally::default();
    for _ in 0..n {
        let s = synth::series(&mut rng, RUNS, spec);
        let x = values(&s, v);
        let truth = s.step.map(|s| s.index);
        let batch = changepoint::detect(x, st);
        let cps = match mode {
            Mode::Batch => batch.clone(),
            Mode::Incremental => incremental(x, st, &mut t, truth),
        };
        if cps == batch {
            t.same_as_batch += 1;
        }
        t.series += 1;
        if truth.is_some() {
            t.steps += 1;
        }
        let strong = |cp: &&ChangePoint| cp.strength == Strength::Strong;
        if cps.iter().filter(strong).any(|cp| near(cp, truth, 2)) {
            t.located += 1;
        }
        if cps.iter().filter(strong).any(|cp| near(cp, truth, 0)) {
            t.located_exact += 1;
        }
        if cps.iter().any(|cp| near(cp, truth, 2)) {
            t.located_any += 1;
        }
        for cp in cps.iter().filter(|cp| !near(cp, truth, 2)) {
            match cp.strength {
                Strength::Strong => t.extra_strong += 1,
                Strength::Weak => t.extra_weak += 1,
            }
        }
    }
    t
}

fn pct(a: usize, b: usize) -> String {
    if b == 0 {
        "–".to_string()
    } else {
        format!("{:.1}%", 100.0 * a as f64 / b as f64)
    }
}

fn per100(a: usize, b: usize) -> String {
    if b == 0 {
        "–".to_string()
    } else {
        format!("{:.2}", 100.0 * a as f64 / b as f64)
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    // Optional overrides for calibration: n window settle max_p min_change.
    let arg = |i: usize| std::env::args().nth(i).and_then(|a| a.parse::<f64>().ok());
    let d = Settings::default();
    let st = Settings {
        window: arg(2).map_or(d.window, |v| v as usize),
        settle_runs: arg(3).map_or(d.settle_runs, |v| v as usize),
        max_p: arg(4).unwrap_or(d.max_p),
        min_change: arg(5).unwrap_or(d.min_change),
        ..d
    };
    println!(
        "settings: window {}, max_p {:e}, weak ×{}, min change {}%, settle {} runs; {} series per row of {} runs",
        st.window,
        st.max_p,
        st.weak_factor,
        100.0 * st.min_change,
        st.settle_runs,
        n,
        RUNS
    );
    let tail = |k: usize| StepSpec::Random {
        lo: 0.10,
        hi: 0.10,
        first: RUNS - k,
        last: RUNS - k,
    };
    let rows: Vec<(&str, StepSpec, u64)> = vec![
        ("10% step", synth::step_spec(0.10, 0.10), 10),
        ("5% step", synth::step_spec(0.05, 0.05), 5),
        ("20% step", synth::step_spec(0.20, 0.20), 20),
        ("5–20% step", synth::step_spec(0.05, 0.20), 520),
        ("no step", StepSpec::None, 0),
        ("10% step, 1 run after", tail(1), 101),
        ("10% step, 3 runs after", tail(3), 103),
    ];
    for (vname, v) in [
        ("shift removed (corrected)", Variant::Corrected),
        ("raw (runner shift in series)", Variant::Raw),
    ] {
        println!();
        println!("### {vname}");
        println!();
        println!(
            "| series | mode | located ±2 (strong) | exact | located ±2 (any) | other strong /100 | other weak /100 | ever-alerted false /100 | ever-alerted false /100, should_alert | alerted by 3rd run | alerted by 3rd run, should_alert | = batch | max tail |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for (name, spec, seed) in &rows {
            let modes: &[Mode] = if *seed == 10 || *seed == 0 || *seed == 103 {
                &[Mode::Batch, Mode::Incremental]
            } else {
                &[Mode::Batch]
            };
            for &mode in modes {
                // False-point rates need more series than located shares for the same precision.
                let count = if *seed == 0 { 5 * n } else { n };
                let t = run_row(*spec, count, *seed, v, mode, &st);
                let inc = mode == Mode::Incremental;
                let only_inc = |s: String| if inc { s } else { "–".to_string() };
                println!(
                    "| {name} ({count}) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    if inc { "incremental" } else { "batch" },
                    pct(t.located, t.steps),
                    pct(t.located_exact, t.steps),
                    pct(t.located_any, t.steps),
                    per100(t.extra_strong, t.series),
                    per100(t.extra_weak, t.series),
                    only_inc(per100(t.ever_alerted_false, t.series)),
                    only_inc(per100(t.ever_alerted_false_rule, t.series)),
                    only_inc(pct(t.alerted_by_3, t.steps)),
                    only_inc(pct(t.alerted_by_3_rule, t.steps)),
                    only_inc(pct(t.same_as_batch, t.series)),
                    only_inc(t.max_tail.to_string()),
                );
            }
        }
    }
}
