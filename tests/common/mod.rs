//! Test harness: real `perfgate-server` processes on loopback, one fresh database each, for every
//! backend. PostgreSQL comes from `PERFGATE_TEST_DATABASE_URL` or from a throwaway cluster that
//! this process starts (and that a watchdog stops when the process exits).
// Each test binary uses a part of the harness; its items are `pub` for the test files.
#![allow(dead_code, unreachable_pub)]

pub mod pg;
pub mod tokens;

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use reqwest::blocking::{Client, Response};
pub use serde_json::{json, Value};

pub const ADMIN: &str = "pg_live_adminadminadminadminadminadmin01";
pub const VIEWER: &str = "pg_live_viewerviewerviewerviewerviewer01";
pub const CONTRIB: &str = "pg_live_contribcontribcontribcontribcont01";
pub const PROMOTER: &str = "pg_live_promoterpromoterpromoterpromoter01";
/// Contributor on project `proj` restricted to benchmarks matching `bench-.*`.
pub const RESTRICTED: &str = "pg_live_restrictedrestrictedrestrictedre01";
/// Admin of project `other` only.
pub const OTHER_ADMIN: &str = "pg_live_otheradminotheradminotheradmin0001";

pub fn fixture(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

pub fn fixture_text(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(p).unwrap()
}

#[derive(Debug, Clone)]
pub enum Backend {
    Memory,
    Sqlite,
    /// An existing SQLite file.
    SqliteAt(String),
    /// A database URL of its own.
    Postgres(String),
}

impl Backend {
    /// A fresh PostgreSQL database, or `None` (after a loud message) when PostgreSQL is not
    /// available and not required.
    pub fn postgres() -> Option<Backend> {
        pg::fresh_database_url().map(Backend::Postgres)
    }
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Sqlite | Backend::SqliteAt(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "perfgate-test-{tag}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub struct Server {
    pub base: String,
    pub port: u16,
    pub backend: Backend,
    pub dir: PathBuf,
    /// Storage argument reused on restart.
    storage_args: Vec<String>,
    extra_args: Vec<String>,
    /// Environment variables set for the server process.
    extra_env: Vec<(String, String)>,
    child: Option<Child>,
    pub http: Client,
}

pub fn standard_keys() -> Vec<String> {
    vec![
        format!("admin:{ADMIN}"),
        format!("viewer:{VIEWER}"),
        format!("contributor:{CONTRIB}"),
        format!("promoter:{PROMOTER}"),
        format!("contributor:{RESTRICTED}:proj:bench-.*"),
        format!("admin:{OTHER_ADMIN}:other"),
    ]
}

impl Server {
    /// A server with the standard keys.
    pub fn start(backend: Backend) -> Server {
        let mut args = Vec::new();
        for k in standard_keys() {
            args.push("--api-keys".to_owned());
            args.push(k);
        }
        Self::start_with(backend, &args)
    }

    pub fn start_with(backend: Backend, extra: &[String]) -> Server {
        let mut s = Self::prepare(backend, extra);
        s.spawn();
        s
    }

    /// Like [`Server::start_with`], with environment variables for the server process.
    pub fn start_with_env(backend: Backend, extra: &[String], env: &[(&str, &str)]) -> Server {
        let mut s = Self::prepare(backend, extra);
        s.extra_env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        s.spawn();
        s
    }

    /// Several servers started at the same moment (each on its own port), then awaited: for
    /// replicas racing through start-up together.
    pub fn start_together(backends: Vec<Backend>) -> Vec<Server> {
        let mut args = Vec::new();
        for k in standard_keys() {
            args.push("--api-keys".to_owned());
            args.push(k);
        }
        let mut servers: Vec<Server> = backends
            .into_iter()
            .map(|b| {
                let mut s = Self::prepare(b, &args);
                s.launch(free_port());
                s
            })
            .collect();
        for s in &mut servers {
            assert!(
                s.wait_healthy(Duration::from_secs(30)),
                "replica did not become healthy:\n{}",
                s.log()
            );
        }
        servers
    }

    fn prepare(backend: Backend, extra: &[String]) -> Server {
        let dir = temp_dir(backend.name());
        let storage_args: Vec<String> = match &backend {
            Backend::Memory => vec!["--storage-type".into(), "memory".into()],
            Backend::Sqlite => vec![
                "--storage-type".into(),
                "sqlite".into(),
                "--database-url".into(),
                dir.join("perfgate.db").to_string_lossy().into_owned(),
            ],
            Backend::SqliteAt(path) => vec![
                "--storage-type".into(),
                "sqlite".into(),
                "--database-url".into(),
                path.clone(),
            ],
            Backend::Postgres(url) => vec![
                "--storage-type".into(),
                "postgres".into(),
                "--database-url".into(),
                url.clone(),
            ],
        };
        Server {
            base: String::new(),
            port: 0,
            backend,
            dir,
            storage_args,
            extra_args: extra.to_vec(),
            extra_env: Vec::new(),
            child: None,
            http: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    fn spawn(&mut self) {
        for attempt in 0..5 {
            self.launch(free_port());
            if self.wait_healthy(Duration::from_secs(30)) {
                return;
            }
            let log = self.log();
            self.kill();
            if !log.contains("Address already in use") || attempt == 4 {
                panic!("server did not become healthy:\n{log}");
            }
        }
    }

    /// Starts the process without waiting for it.
    fn launch(&mut self, port: u16) {
        {
            let log = std::fs::File::create(self.dir.join(format!("server-{port}.log"))).unwrap();
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_perfgate-server"));
            cmd.args(&self.storage_args)
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args([
                    "--read-pool-size",
                    "2",
                    "--write-shards",
                    "2",
                    "--workers",
                    "2",
                ])
                .args(&self.extra_args)
                .current_dir(&self.dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log));
            // The harness's own settings must not leak into the server's configuration.
            for (k, _) in std::env::vars() {
                if k.starts_with("PERFGATE_") {
                    cmd.env_remove(k);
                }
            }
            cmd.envs(self.extra_env.iter().map(|(k, v)| (k, v)));
            let child = cmd.spawn().expect("spawn perfgate-server");
            self.child = Some(child);
            self.port = port;
            self.base = format!("http://127.0.0.1:{port}");
        }
    }

    fn wait_healthy(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    return false;
                }
            }
            if let Ok(r) = self
                .http
                .get(format!("{}/health", self.base))
                .timeout(Duration::from_secs(2))
                .send()
            {
                if r.status() == 200 {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Everything the server wrote to stderr so far (all of its runs).
    pub fn log(&self) -> String {
        let mut out = String::new();
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            let mut files: Vec<_> = rd.flatten().map(|e| e.path()).collect();
            files.sort();
            for f in files {
                if f.extension().is_some_and(|e| e == "log") {
                    let mut s = String::new();
                    let _ = std::fs::File::open(&f).and_then(|mut h| h.read_to_string(&mut s));
                    out.push_str(&s);
                }
            }
        }
        out
    }

    /// SIGKILL: no graceful shutdown, nothing flushed.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        self.send_sigterm();
        self.wait_exit(Duration::from_secs(30))
    }

    /// Sends SIGTERM and returns at once (the process keeps draining).
    pub fn send_sigterm(&self) {
        if let Some(c) = &self.child {
            let ok = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill -TERM failed");
        }
    }

    /// Waits up to `limit` for the process to exit; its exit code, or `None` (after SIGKILL)
    /// when it did not exit in time or died of a signal.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let mut c = self.child.take()?;
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            if start.elapsed() > limit {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Starts the same server again on the same storage (memory starts empty).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn get(&self, key: &str, path: &str) -> Response {
        self.http
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .unwrap()
    }

    pub fn delete(&self, key: &str, path: &str) -> Response {
        self.http
            .delete(self.url(path))
            .bearer_auth(key)
            .send()
            .unwrap()
    }

    pub fn post(&self, key: &str, path: &str, body: &Value) -> Response {
        self.http
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .unwrap()
    }

    pub fn put(&self, key: &str, path: &str, body: &Value) -> Response {
        self.http
            .put(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .unwrap()
    }

    /// `method` (POST or PUT) with `body` sent as is, under `content_type`: bodies no `Value`
    /// can make (malformed JSON, another media type).
    pub fn send_raw(
        &self,
        key: &str,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> Response {
        let r = match method {
            "POST" => self.http.post(self.url(path)),
            "PUT" => self.http.put(self.url(path)),
            m => panic!("send_raw: {m}"),
        };
        r.bearer_auth(key)
            .header("content-type", content_type)
            .body(body.to_owned())
            .send()
            .unwrap()
    }

    /// Uploads `receipt` as `benchmark`/`version` to `project`; returns the response.
    pub fn upload(
        &self,
        key: &str,
        project: &str,
        benchmark: &str,
        version: Option<&str>,
        receipt: &Value,
    ) -> Response {
        self.post(
            key,
            &format!("/api/v1/projects/{project}/baselines"),
            &upload_body(benchmark, version, receipt),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `perfgate.run.v1` receipt like the CLI writes (built from a real fixture), with the given
/// samples of wall time (one warm-up first).
pub fn receipt_with_samples(bench: &str, run_id: &str, samples: &[u64]) -> Value {
    let mut r = fixture("run-bench-a-2.json");
    r["bench"]["name"] = json!(bench);
    r["run"]["id"] = json!(run_id);
    let template = r["samples"][0].clone();
    let mut out = Vec::new();
    for (i, v) in std::iter::once(samples[0])
        .chain(samples.iter().copied())
        .enumerate()
    {
        let mut s = template.clone();
        s["wall_ms"] = json!(v);
        s["warmup"] = json!(i == 0);
        out.push(s);
    }
    r["samples"] = json!(out);
    let mut sorted = samples.to_vec();
    sorted.sort();
    r["stats"]["wall_ms"] = json!({
        "median": sorted[sorted.len() / 2], "min": sorted[0], "max": sorted[sorted.len() - 1],
        "mean": 0.0, "stddev": 0.0,
    });
    r
}

/// Ten samples around `level` ms, spread by a deterministic ±1.2 % jitter that `seed` varies.
pub fn jittered_samples(level: f64, seed: usize) -> Vec<u64> {
    (0..10)
        .map(|i| {
            let jitter = (((seed * 31 + i * 17) % 7) as f64 - 3.0) * 0.004;
            (level * (1.0 + jitter)).round() as u64
        })
        .collect()
}

/// A receipt of ten samples around `level` ms ([`jittered_samples`]).
pub fn leveled_receipt(bench: &str, run_id: &str, level: f64, seed: usize) -> Value {
    receipt_with_samples(bench, run_id, &jittered_samples(level, seed))
}

/// The body the perfgate CLI sends: all eight keys, options as null.
pub fn upload_body(benchmark: &str, version: Option<&str>, receipt: &Value) -> Value {
    json!({
        "benchmark": benchmark,
        "version": version,
        "git_ref": null,
        "git_sha": null,
        "receipt": receipt,
        "metadata": {},
        "tags": [],
        "normalize": false,
    })
}

/// Status and JSON body; panics with the body when the status differs.
pub fn expect(r: Response, status: u16) -> Value {
    let got = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    assert_eq!(got, status, "unexpected status; body: {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("body is not JSON: {text}"))
    }
}

/// The versions a list page holds.
pub fn listed_versions(page: &Value) -> std::collections::HashSet<String> {
    page["baselines"]
        .as_array()
        .expect("a list page holds baselines")
        .iter()
        .map(|b| b["version"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts the contract's error object.
pub fn expect_error(r: Response, status: u16, code: &str) -> Value {
    let rid = r
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let v = expect(r, status);
    assert_eq!(v["code"], code, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert_eq!(v["request_id"].as_str(), rid.as_deref(), "{v}");
    v
}

/// Runs a test body once per backend. PostgreSQL tests skip loudly when no PostgreSQL is
/// available, and fail when `PERFGATE_REQUIRE_POSTGRES=1`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $( #[test] fn $name() { super::$name($crate::common::Backend::Memory) } )*
        }
        mod sqlite {
            $( #[test] fn $name() { super::$name($crate::common::Backend::Sqlite) } )*
        }
        mod postgres {
            $( #[test] fn $name() {
                if let Some(b) = $crate::common::Backend::postgres() { super::$name(b) }
            } )*
        }
    };
}

/// The JSON type names of `v` as JSON Schema spells them.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks every property of `value` against the declared `type` of the named component schema
/// of the OpenAPI document `doc` (`$ref`s to other components followed, also as array items;
/// every part of an `allOf`).
pub fn check_shape(doc: &Value, schema: &str, value: &Value, at: &str) {
    let s = &doc["components"]["schemas"][schema];
    assert!(s.is_object(), "schema {schema} missing");
    check_schema(doc, schema, s, value, at);
}

fn check_schema(doc: &Value, schema: &str, s: &Value, value: &Value, at: &str) {
    if let Some(r) = s["$ref"].as_str() {
        return check_shape(doc, r.rsplit('/').next().unwrap(), value, at);
    }
    if let Some(parts) = s["allOf"].as_array() {
        for p in parts {
            check_schema(doc, schema, p, value, at);
        }
        return;
    }
    for field in s["required"].as_array().into_iter().flatten() {
        let f = field.as_str().unwrap();
        assert!(
            value.get(f).is_some(),
            "{at}: required {schema}.{f} absent in {value}"
        );
    }
    for (name, prop) in s["properties"].as_object().into_iter().flatten() {
        let Some(v) = value.get(name) else { continue };
        let at = format!("{at}.{name}");
        if prop["$ref"].is_string() {
            check_schema(doc, schema, prop, v, &at);
            continue;
        }
        if let (Some(items), true) = (v.as_array(), prop["items"]["$ref"].is_string()) {
            for (i, item) in items.iter().enumerate() {
                check_schema(doc, schema, &prop["items"], item, &format!("{at}[{i}]"));
            }
        }
        let declared: Vec<&str> = match &prop["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
            _ => continue,
        };
        let actual = json_type(v);
        let fits =
            declared.contains(&actual) || (actual == "integer" && declared.contains(&"number"));
        assert!(
            fits,
            "{at}: documented {declared:?}, answered {actual} ({v})"
        );
    }
}

/// Two replicas on the test PostgreSQL, started at the same moment (None without PostgreSQL).
#[allow(dead_code)] // Used by the multi-replica test files only.
pub fn two_replicas() -> Option<(String, Vec<std::sync::Arc<Server>>)> {
    let Some(Backend::Postgres(url)) = Backend::postgres() else {
        return None;
    };
    let servers = Server::start_together(vec![
        Backend::Postgres(url.clone()),
        Backend::Postgres(url.clone()),
    ]);
    Some((url, servers.into_iter().map(std::sync::Arc::new).collect()))
}

/// A sample of `/metrics` (`name` with its labels, exactly as exposed), 0 when absent.
#[allow(dead_code)] // Used by the test files that read metrics only.
pub fn metric(s: &Server, name: &str) -> f64 {
    let text = s
        .http
        .get(s.url("/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

// An alerts scenario (tests/alerts.rs, tests/cluster.rs).

/// `core-x` is outside the `bench-.*` pattern of the RESTRICTED key; the others are inside.
pub const BENCHES: [&str; 6] = [
    "bench-a", "bench-b", "bench-c", "bench-d", "bench-e", "core-x",
];

pub fn level(b: usize, run: usize) -> f64 {
    (100.0 + 30.0 * b as f64) * (1.0 + (((run * 7 + b * 3) % 5) as f64 - 2.0) * 0.01)
}

/// Twelve history runs of project `proj`'s benchmarks, then a gate that finds `core-x` and `bench-b` 30 %
/// slower. Returns the gate.
pub fn seed_failed_gate(s: &Server) -> Value {
    for run in 0..12 {
        for (b, name) in BENCHES.iter().enumerate() {
            let mut body = upload_body(
                name,
                None,
                &leveled_receipt(name, &format!("hist-{run}-{b}"), level(b, run), run + b),
            );
            body["git_sha"] = json!(format!("sha{run:03}"));
            expect(
                s.post(CONTRIB, "/api/v1/projects/proj/baselines", &body),
                201,
            );
        }
    }
    expect(
        s.post(CONTRIB, "/api/v1/projects/proj/gates", &gate_body()),
        201,
    )
}

pub fn gate_body() -> Value {
    let runs: Vec<Value> = BENCHES
        .iter()
        .enumerate()
        .map(|(b, name)| {
            let f = if ["core-x", "bench-b"].contains(name) {
                1.3
            } else {
                1.0
            };
            json!({"benchmark": name, "receipt": leveled_receipt(name, &format!("slow-{b}"), level(b, 0) * f, b + 99)})
        })
        .collect();
    json!({"runs": runs, "git_ref": "refs/heads/feature", "git_sha": "slow-sha"})
}
