//! `perfgate-server gate`: the command a CI job runs. It posts the run's receipts to a gate (or
//! a confirmation attempt), prints the verdict as a table (and as Markdown to
//! `$GITHUB_STEP_SUMMARY`), and exits 0 on pass/warn, 1 on fail, 3 on inconclusive.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

/// What the command was asked to do.
#[derive(Debug, Clone)]
pub struct GateCommand {
    /// Server base URL, with or without `/api/v1`.
    pub url: String,
    pub project: String,
    pub key: String,
    pub files: Vec<PathBuf>,
    pub runner: Option<String>,
    pub record: bool,
    pub attempt_of: Option<String>,
    pub metrics: Vec<String>,
    pub git_ref: Option<String>,
    pub git_sha: Option<String>,
    pub base_sha: Option<String>,
}

/// How the gate ended, as the process exit code says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// pass or warn: exit 0.
    Pass,
    /// fail: exit 1.
    Fail,
    /// inconclusive: exit 3 (rerun the suite and call again with `--attempt-of`).
    Inconclusive,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Pass => 0,
            Outcome::Fail => 1,
            Outcome::Inconclusive => 3,
        }
    }
}

fn api_base(url: &str) -> String {
    let u = url.trim_end_matches('/');
    u.strip_suffix("/api/v1").unwrap_or(u).to_owned()
}

/// The request body: one run per receipt file, the benchmark taken from `bench.name`.
pub fn request_body(cmd: &GateCommand) -> Result<Value, String> {
    if cmd.files.is_empty() {
        return Err("no receipt files given".into());
    }
    let mut runs = Vec::with_capacity(cmd.files.len());
    for f in &cmd.files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let receipt: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", f.display()))?;
        let bench = receipt["bench"]["name"]
            .as_str()
            .ok_or_else(|| {
                format!(
                    "{}: no bench.name (not a perfgate.run.v1 receipt?)",
                    f.display()
                )
            })?
            .to_owned();
        runs.push(json!({"benchmark": bench, "receipt": receipt}));
    }
    if cmd.attempt_of.is_some() {
        return Ok(json!({ "runs": runs }));
    }
    let mut body = json!({"runs": runs, "record": cmd.record});
    for (k, v) in [
        ("git_ref", &cmd.git_ref),
        ("git_sha", &cmd.git_sha),
        ("base_sha", &cmd.base_sha),
        ("runner", &cmd.runner),
    ] {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    }
    if !cmd.metrics.is_empty() {
        body["metrics"] = json!(cmd.metrics);
    }
    Ok(body)
}

/// Posts the gate (or the attempt) and returns the server's answer.
pub async fn post(cmd: &GateCommand, body: &Value) -> Result<Value, String> {
    let base = api_base(&cmd.url);
    let url = match &cmd.attempt_of {
        Some(id) => format!("{base}/api/v1/projects/{}/gates/{id}/attempts", cmd.project),
        None => format!("{base}/api/v1/projects/{}/gates", cmd.project),
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .user_agent(concat!("perfgate-server-gate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())?;
    let r = client
        .post(&url)
        .bearer_auth(&cmd.key)
        .json(body)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = r.status();
    let text = r.text().await.map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&text).map_err(|_| {
        format!(
            "{url}: HTTP {status}: {}",
            text.chars().take(300).collect::<String>()
        )
    })?;
    if !status.is_success() {
        return Err(format!(
            "{url}: HTTP {}: {} ({})",
            status.as_u16(),
            v["message"].as_str().unwrap_or("error"),
            v["code"].as_str().unwrap_or("?")
        ));
    }
    Ok(v)
}

pub fn outcome(gate: &Value) -> Outcome {
    match gate["status"].as_str() {
        Some("fail") => Outcome::Fail,
        Some("inconclusive") => Outcome::Inconclusive,
        _ => Outcome::Pass,
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn effect(b: &Value) -> String {
    format!(
        "{:+.1}% [{:+.1}, {:+.1}]",
        num(&b["effect_pct"]),
        num(&b["ci95_pct"][0]),
        num(&b["ci95_pct"][1])
    )
}

/// The verdict as a plain-text table for the job log.
pub fn table(gate: &Value) -> String {
    let mut rows = vec![[
        "benchmark".to_owned(),
        "metric".to_owned(),
        "status".to_owned(),
        "effect [95% CI]".to_owned(),
        "history".to_owned(),
    ]];
    for b in gate["benchmarks"].as_array().into_iter().flatten() {
        rows.push([
            b["benchmark"].as_str().unwrap_or("?").to_owned(),
            b["metric"].as_str().unwrap_or("?").to_owned(),
            b["status"].as_str().unwrap_or("?").to_owned(),
            effect(b),
            b["history_runs"].to_string(),
        ]);
    }
    let mut widths = [0usize; 5];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    for s in gate["suites"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "whole run ({}): {} {:+.1}%  {}",
            s["metric"].as_str().unwrap_or("?"),
            s["status"].as_str().unwrap_or("?"),
            num(&s["shift_pct"]),
            s["reason"].as_str().unwrap_or("")
        );
    }
    let _ = writeln!(
        out,
        "gate {}: {} (attempt {} of {}{})",
        gate["id"].as_str().unwrap_or("?"),
        gate["status"].as_str().unwrap_or("?"),
        gate["attempt"],
        gate["max_attempts"],
        if gate["final"] == true { ", final" } else { "" }
    );
    out
}

/// The verdict as Markdown, for `$GITHUB_STEP_SUMMARY`.
pub fn markdown(gate: &Value) -> String {
    let mut out = format!(
        "### Performance gate: {}\n\n| benchmark | metric | status | effect [95% CI] | history runs | reason |\n|---|---|---|---|---|---|\n",
        gate["status"].as_str().unwrap_or("?")
    );
    for b in gate["benchmarks"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "| `{}` | {} | **{}** | {} | {} | {} |",
            b["benchmark"].as_str().unwrap_or("?"),
            b["metric"].as_str().unwrap_or("?"),
            b["status"].as_str().unwrap_or("?"),
            effect(b),
            b["history_runs"],
            b["reason"].as_str().unwrap_or("").replace('|', "\\|")
        );
    }
    for s in gate["suites"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "\nWhole run ({}): **{}**, {:+.1}%: {}",
            s["metric"].as_str().unwrap_or("?"),
            s["status"].as_str().unwrap_or("?"),
            num(&s["shift_pct"]),
            s["reason"].as_str().unwrap_or("")
        );
    }
    out
}

/// What to do next when the gate asks for a confirmation run.
pub fn rerun_advice(cmd: &GateCommand, gate: &Value) -> Option<String> {
    let c = gate.get("confirm").filter(|c| !c.is_null())?;
    let mut out = String::from(
        "inconclusive: rerun the whole suite on a fresh runner (a new job), then post it as the next attempt:\n",
    );
    for b in c["benchmarks"].as_array().into_iter().flatten() {
        let b = b.as_str().unwrap_or("?");
        match c["repeat"][b].as_u64() {
            Some(k) => {
                let _ = writeln!(out, "  {b}: take {k} samples (perfgate run --repeat {k})");
            }
            None => {
                let _ = writeln!(out, "  {b}");
            }
        }
    }
    let _ = writeln!(
        out,
        "  perfgate-server gate --url {} --project {} --attempt-of {} <receipt files>   (before {})",
        cmd.url,
        cmd.project,
        gate["id"].as_str().unwrap_or("?"),
        c["deadline"].as_str().unwrap_or("?")
    );
    Some(out)
}

/// Runs the whole command; `Err` is a usage, network or server error (exit 2).
pub fn run(cmd: &GateCommand) -> Result<Outcome, String> {
    let body = request_body(cmd)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let gate = rt.block_on(post(cmd, &body))?;
    print!("{}", table(&gate));
    if let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY") {
        use std::io::Write;
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(markdown(&gate).as_bytes()));
        if let Err(e) = written {
            eprintln!("could not write the step summary to {path}: {e}");
        }
    }
    let o = outcome(&gate);
    if o == Outcome::Inconclusive {
        if let Some(advice) = rerun_advice(cmd, &gate) {
            print!("{advice}");
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(status: &str) -> Value {
        json!({
            "id": "abc", "status": status, "attempt": 1, "max_attempts": 3, "final": status != "inconclusive",
            "benchmarks": [{"benchmark": "bench-a", "metric": "wall_ms", "status": "fail",
                "effect_pct": 11.84, "ci95_pct": [7.9, 15.9], "history_runs": 30, "reason": "11.8% slower | x"}],
            "suites": [{"metric": "wall_ms", "status": "pass", "shift_pct": 1.2, "reason": "within noise"}],
            "confirm": if status == "inconclusive" {
                json!({"benchmarks": ["bench-a"], "repeat": {"bench-a": 40}, "deadline": "2026-12-01T00:00:00Z"})
            } else { Value::Null },
        })
    }

    #[test]
    fn exit_codes_follow_the_status() {
        assert_eq!(outcome(&gate("pass")).exit_code(), 0);
        assert_eq!(outcome(&gate("warn")).exit_code(), 0);
        assert_eq!(outcome(&gate("fail")).exit_code(), 1);
        assert_eq!(outcome(&gate("inconclusive")).exit_code(), 3);
    }

    #[test]
    fn table_and_markdown_show_every_benchmark() {
        let t = table(&gate("fail"));
        assert!(
            t.contains("bench-a    wall_ms  fail    +11.8% [+7.9, +15.9]  30"),
            "{t}"
        );
        assert!(t.contains("gate abc: fail (attempt 1 of 3, final)"), "{t}");
        let m = markdown(&gate("fail"));
        assert!(m.contains("| `bench-a` | wall_ms | **fail** | +11.8% [+7.9, +15.9] | 30 | 11.8% slower \\| x |"), "{m}");
    }

    #[test]
    fn inconclusive_says_what_to_rerun() {
        let cmd = GateCommand {
            url: "http://h:8080/api/v1".into(),
            project: "p".into(),
            key: "k".into(),
            files: vec![],
            runner: None,
            record: false,
            attempt_of: None,
            metrics: vec![],
            git_ref: None,
            git_sha: None,
            base_sha: None,
        };
        let a = rerun_advice(&cmd, &gate("inconclusive")).unwrap();
        assert!(a.contains("bench-a: take 40 samples"), "{a}");
        assert!(a.contains("--attempt-of abc"), "{a}");
        assert!(rerun_advice(&cmd, &gate("fail")).is_none());
        assert_eq!(api_base("http://h:8080/api/v1/"), "http://h:8080");
        assert_eq!(api_base("http://h:8080"), "http://h:8080");
        assert!(request_body(&cmd).is_err());
    }
}
