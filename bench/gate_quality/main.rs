//! The gate's quality on seeded synthetic CI suites with known truth, measured through a real
//! server over HTTP: history uploaded as baselines, gates posted, confirmation runs posted as
//! attempts. Prints false alarms per unchanged 100-benchmark run, detection of 5/10/20 %
//! regressions on one run and after up to two confirmations, whether "everything 10 % slower" is
//! flagged, and the oracle (a test that knows every true parameter) next to them.
//!
//! Usage: gate_quality URL KEY [seed] [suites] [unchanged runs per suite] [oracle draws]
//! (bench/gate_quality/run.sh starts a server and runs it). The generator is `synth.rs`.

#[allow(dead_code, unreachable_pub)]
mod synth;

use std::time::Instant;

use perfgate_server::domain::summary::Sample;
use rand::seq::index::sample;
use serde_json::{json, Value};
use synth::{BenchTruth, Rng8};

/// The minimum effect the gate is calibrated with here (a regression smaller than this is
/// `warn` at most); the targets are about 10 % regressions.
const MIN_EFFECT_PCT: f64 = 3.0;
const REGRESSED: usize = 5;

struct Client {
    http: reqwest::blocking::Client,
    base: String,
    key: String,
}

impl Client {
    fn call(&self, method: reqwest::Method, path: &str, body: &Value) -> (u16, Value) {
        for attempt in 0..5 {
            let r = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(&self.key)
                .json(body)
                .send();
            match r {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let v: Value = r.json().unwrap_or(Value::Null);
                    if status == 503 && attempt < 4 {
                        std::thread::sleep(std::time::Duration::from_millis(200));
                        continue;
                    }
                    return (status, v);
                }
                Err(e) if attempt < 4 => {
                    eprintln!("retrying {path}: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                Err(e) => panic!("{path}: {e}"),
            }
        }
        unreachable!()
    }
    fn post(&self, path: &str, body: &Value, want: u16) -> Value {
        let (status, v) = self.call(reqwest::Method::POST, path, body);
        assert_eq!(status, want, "POST {path}: {v}");
        v
    }
}

fn key(i: usize) -> String {
    format!("b{i:03}")
}

/// A `perfgate.run.v1` receipt of one run, as the CLI writes it.
fn receipt(bench: &str, run_id: &str, samples: &[Sample]) -> Value {
    let mut measured: Vec<u64> = samples
        .iter()
        .filter(|s| !s.warmup)
        .map(|s| s.value as u64)
        .collect();
    measured.sort_unstable();
    let median = measured.get(measured.len() / 2).copied().unwrap_or(0);
    let rows: Vec<Value> = samples
        .iter()
        .map(|s| {
            json!({"wall_ms": s.value as u64, "exit_code": 0, "warmup": s.warmup, "timed_out": false})
        })
        .collect();
    json!({
        "schema": "perfgate.run.v1",
        "tool": {"name": "perfgate", "version": "0.18.1"},
        "run": {"id": run_id, "started_at": "2026-11-30T00:00:00Z", "ended_at": "2026-11-30T00:00:01Z",
                "host": {"os": "linux", "arch": "x86_64", "cpu_count": 4, "memory_bytes": 0}},
        "bench": {"name": bench, "command": ["bench", bench], "repeat": measured.len(), "warmup": 1},
        "samples": rows,
        "stats": {"wall_ms": {"median": median, "min": measured.first().copied().unwrap_or(0),
                  "max": measured.last().copied().unwrap_or(0)}},
    })
}

/// One run of the whole suite: its shared shift and every benchmark's samples.
fn suite_samples(
    rng: &mut Rng8,
    benches: &[BenchTruth],
    factors: &[f64],
    ks: &[u32],
) -> (f64, Vec<Vec<Sample>>) {
    let shift = synth::RUNNER_SD * synth::normal(rng);
    let runs = benches
        .iter()
        .enumerate()
        .map(|(i, b)| synth::run_samples(rng, b, shift, factors[i], ks[i]))
        .collect();
    (shift, runs)
}

fn runs_body(tag: &str, runs: &[Vec<Sample>]) -> Value {
    let runs: Vec<Value> = runs
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"benchmark": key(i), "receipt": receipt(&key(i), &format!("{tag}-{i}"), s)}))
        .collect();
    json!({ "runs": runs })
}

/// Uploads the suite's history: `synth::HISTORY_RUNS` runs, one commit each, 8 uploads at once.
fn upload_history(c: &Client, project: &str, rng: &mut Rng8, benches: &[BenchTruth]) {
    let ones = vec![1.0; benches.len()];
    let ks = vec![synth::SAMPLES; benches.len()];
    let path = format!("/api/v1/projects/{project}/baselines");
    for r in 0..synth::HISTORY_RUNS {
        let (_, runs) = suite_samples(rng, benches, &ones, &ks);
        let bodies: Vec<Value> = runs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({"benchmark": key(i), "git_sha": format!("{project}-h{r:02}"),
                       "receipt": receipt(&key(i), &format!("{project}-h{r}-{i}"), s)})
            })
            .collect();
        let path = path.as_str();
        std::thread::scope(|sc| {
            for chunk in bodies.chunks(bodies.len().div_ceil(8)) {
                sc.spawn(move || {
                    for b in chunk {
                        c.post(path, b, 201);
                    }
                });
            }
        });
    }
}

/// What happened to one gate.
struct Outcome {
    first: Value,
    last: Value,
    attempts: usize,
    first_shift: f64,
    first_values: Vec<Vec<f64>>,
}

fn statuses(g: &Value) -> Vec<String> {
    let mut v = vec!["pass".to_owned(); synth::BENCHMARKS];
    for b in g["benchmarks"].as_array().into_iter().flatten() {
        if let Some(i) = b["benchmark"]
            .as_str()
            .and_then(|k| k[1..].parse::<usize>().ok())
        {
            v[i] = b["status"].as_str().unwrap_or("?").to_owned();
        }
    }
    v
}

/// Posts a gate on a fresh run with `factors`, then the confirmation runs it asks for (the
/// suspects with the advised sample count), up to the last attempt.
fn gate(
    c: &Client,
    project: &str,
    rng: &mut Rng8,
    benches: &[BenchTruth],
    factors: &[f64],
    tag: &str,
) -> Outcome {
    let ks = vec![synth::SAMPLES; benches.len()];
    let (first_shift, runs) = suite_samples(rng, benches, factors, &ks);
    let first_values = runs
        .iter()
        .map(|s| s.iter().filter(|x| !x.warmup).map(|x| x.value).collect())
        .collect();
    let first = c.post(
        &format!("/api/v1/projects/{project}/gates"),
        &runs_body(tag, &runs),
        201,
    );
    let mut last = first.clone();
    let mut attempts = 1;
    while !last["confirm"].is_null() {
        let repeat = &last["confirm"]["repeat"];
        let ks: Vec<u32> = (0..benches.len())
            .map(|i| repeat[key(i)].as_u64().map_or(synth::SAMPLES, |k| k as u32))
            .collect();
        let (_, runs) = suite_samples(rng, benches, factors, &ks);
        attempts += 1;
        let path = last["confirm"]["post_to"].as_str().unwrap().to_owned();
        last = c.post(&path, &runs_body(&format!("{tag}-a{attempts}"), &runs), 200);
    }
    Outcome {
        first,
        last,
        attempts,
        first_shift,
        first_values,
    }
}

#[derive(Default)]
struct Tally {
    runs: usize,
    fail: [usize; 2],
    suite_fail: [usize; 2],
    n: usize,
    oracle1: usize,
    oracle3: usize,
    attempts: usize,
    confirmed: usize,
}

fn rate(a: usize, n: usize) -> f64 {
    a as f64 / n.max(1) as f64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(base), Some(api_key)) = (args.get(1), args.get(2)) else {
        eprintln!(
            "usage: gate_quality URL KEY [seed] [suites] [unchanged runs per suite] [oracle draws]"
        );
        std::process::exit(2);
    };
    let arg = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (seed, suites, unchanged, draws) = (
        arg(3, 20261130),
        arg(4, 20) as usize,
        arg(5, 10) as usize,
        arg(6, 2000) as usize,
    );
    let c = Client {
        http: reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .unwrap(),
        base: base.trim_end_matches('/').to_owned(),
        key: api_key.clone(),
    };
    let started = Instant::now();
    let mut rng = synth::rng(seed);
    let mut null = Tally::default();
    let mut reg: Vec<(f64, Tally)> = [0.05, 0.10, 0.20]
        .iter()
        .map(|f| (*f, Tally::default()))
        .collect();
    let mut slower = Tally::default();
    for s in 0..suites {
        let project = format!("q{seed}-{s:03}");
        let (status, v) = c.call(
            reqwest::Method::PUT,
            &format!("/api/v1/projects/{project}/gate-settings"),
            &json!({"min_effect_pct": MIN_EFFECT_PCT}),
        );
        assert_eq!(status, 200, "gate settings: {v}");
        let benches = synth::suite(&mut rng);
        upload_history(&c, &project, &mut rng, &benches);
        let ones = vec![1.0; benches.len()];
        for u in 0..unchanged {
            let o = gate(
                &c,
                &project,
                &mut rng,
                &benches,
                &ones,
                &format!("{project}-u{u}"),
            );
            for (j, g) in [&o.first, &o.last].into_iter().enumerate() {
                null.fail[j] += statuses(g).iter().filter(|s| *s == "fail").count();
                null.suite_fail[j] += (g["suite"]["status"] == "fail") as usize;
            }
            null.runs += 1;
            null.attempts += o.attempts;
            null.confirmed += (o.attempts > 1) as usize;
        }
        for (f, t) in reg.iter_mut() {
            let idx = sample(&mut rng, benches.len(), REGRESSED).into_vec();
            let mut factors = ones.clone();
            for &i in &idx {
                factors[i] = 1.0 + *f;
            }
            let o = gate(
                &c,
                &project,
                &mut rng,
                &benches,
                &factors,
                &format!("{project}-r{f}"),
            );
            for (j, g) in [&o.first, &o.last].into_iter().enumerate() {
                let st = statuses(g);
                t.fail[j] += idx.iter().filter(|&&i| st[i] == "fail").count();
            }
            t.n += idx.len();
            t.runs += 1;
            t.attempts += o.attempts;
            for &i in &idx {
                let mut runs = vec![(o.first_shift, o.first_values[i].clone())];
                for _ in 0..2 {
                    let u = synth::RUNNER_SD * synth::normal(&mut rng);
                    runs.push((
                        u,
                        synth::run_values(&mut rng, &benches[i], u, 1.0 + *f, synth::SAMPLES),
                    ));
                }
                let p = synth::oracle_p(&mut rng, &benches[i], &runs, draws);
                t.oracle1 += (p[0] <= synth::ORACLE_ALPHA) as usize;
                t.oracle3 += (p[2] <= synth::ORACLE_ALPHA) as usize;
            }
        }
        let all: Vec<f64> = vec![1.10; benches.len()];
        let o = gate(
            &c,
            &project,
            &mut rng,
            &benches,
            &all,
            &format!("{project}-all"),
        );
        for (j, g) in [&o.first, &o.last].into_iter().enumerate() {
            slower.suite_fail[j] += (g["suite"]["status"] == "fail") as usize;
            slower.fail[j] += (g["status"] == "fail") as usize;
        }
        slower.runs += 1;
        eprintln!(
            "suite {}/{suites} done ({:.0} s)",
            s + 1,
            started.elapsed().as_secs_f64()
        );
    }
    println!(
        "seed {seed}, {suites} suites of {} benchmarks x {} history runs x {} samples (+1 warm-up), through the server over HTTP",
        synth::BENCHMARKS,
        synth::HISTORY_RUNS,
        synth::SAMPLES
    );
    println!("gate: project settings q = 0.03, max attempts 3, min history 5, min effect {MIN_EFFECT_PCT}%; oracle: alpha {} per benchmark, {draws} Monte Carlo draws", synth::ORACLE_ALPHA);
    println!("{:<58} {:>9} {:>14}", "row", "one run", "after confirm");
    let row = |label: &str, a: f64, b: f64| println!("{label:<58} {a:>9.3} {b:>14.3}");
    let per_run = |t: &Tally, j: usize| rate(t.fail[j] + t.suite_fail[j], t.runs);
    row(
        &format!("false alarms / unchanged run ({} runs)", null.runs),
        per_run(&null, 0),
        per_run(&null, 1),
    );
    row(
        "  of which suite-level",
        rate(null.suite_fail[0], null.runs),
        rate(null.suite_fail[1], null.runs),
    );
    row(
        "unchanged runs asking confirmation | mean attempts",
        rate(null.confirmed, null.runs),
        null.attempts as f64 / null.runs.max(1) as f64,
    );
    let mut ten = (0.0, 0.0);
    for (f, t) in &reg {
        let pct = (f * 100.0).round();
        row(
            &format!("detect {pct}% regression (gate, final fail)"),
            rate(t.fail[0], t.n),
            rate(t.fail[1], t.n),
        );
        row(
            &format!("oracle {pct}% (1 run | 3 runs)"),
            rate(t.oracle1, t.n),
            rate(t.oracle3, t.n),
        );
        let r = (
            rate(t.fail[0], t.n) / rate(t.oracle1, t.n).max(1e-9),
            rate(t.fail[1], t.n) / rate(t.oracle3, t.n).max(1e-9),
        );
        row(&format!("gate / oracle, {pct}%"), r.0, r.1);
        if (*f - 0.10).abs() < 1e-9 {
            ten = r;
        }
    }
    row(
        "everything 10% slower: suite fail",
        rate(slower.suite_fail[0], slower.runs),
        rate(slower.suite_fail[1], slower.runs),
    );
    let fa = (per_run(&null, 0), per_run(&null, 1));
    let all = rate(slower.suite_fail[0], slower.runs).min(rate(slower.suite_fail[1], slower.runs));
    let met = |ok: bool| if ok { "met" } else { "MISSED" };
    println!("targets:");
    println!(
        "  false alarms <= 0.1 per unchanged run: {:.3} | {:.3} -> {}",
        fa.0,
        fa.1,
        met(fa.0 <= 0.1 && fa.1 <= 0.1)
    );
    println!(
        "  10% caught >= 0.95 x oracle on one run: {:.3} -> {}",
        ten.0,
        met(ten.0 >= 0.95)
    );
    println!(
        "  10% caught >= 0.97 x oracle's three runs within 2 confirmations: {:.3} -> {}",
        ten.1,
        met(ten.1 >= 0.97)
    );
    println!(
        "  everything 10% slower flagged >= 99%: {all:.3} -> {}",
        met(all >= 0.99)
    );
    println!("elapsed {:.0} s", started.elapsed().as_secs_f64());
}
