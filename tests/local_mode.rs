//! Local mode (`--local`): the single-user sandbox that `perfgate run --local-db` posts to.
//! Real binaries on loopback: no credential for the project API, keys and audit still need one,
//! loopback only, the user's data directory, the start-up lines.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_perfgate-server"));
    for (k, _) in std::env::vars() {
        if k.starts_with("PERFGATE_") || k == "XDG_DATA_HOME" {
            c.env_remove(k);
        }
    }
    c
}

/// A server process started by hand (the harness always names a database); killed on drop.
struct Proc {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Proc {
    fn start(args: &[&str], envs: &[(&str, &Path)], dir: &Path) -> Proc {
        let port = free_port();
        let log = dir.join(format!("server-{port}.log"));
        let child = bin()
            .args(args)
            .args(["--port", &port.to_string(), "--workers", "2"])
            .envs(envs.iter().map(|(k, v)| (*k, *v)))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut p = Proc { child, port, log };
        let http = Client::new();
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = p.child.try_wait() {
                panic!("server exited with {st}:\n{}", p.stderr());
            }
            if http
                .get(p.url("/health"))
                .send()
                .is_ok_and(|r| r.status() == 200)
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "not healthy:\n{}",
                p.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The start-up lines come right after the socket is bound; give them a moment.
        std::thread::sleep(Duration::from_millis(200));
        p
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A request without `Authorization`.
fn anon(http: &Client, method: reqwest::Method, url: String, body: Option<&Value>) -> Response {
    let mut r = http.request(method, url);
    if let Some(b) = body {
        r = r.json(b);
    }
    r.send().unwrap()
}

fn verdict(bench: &str, status: &str) -> Value {
    json!({
        "benchmark": bench,
        "run_id": "run-1",
        "status": status,
        "counts": {"pass": 1, "warn": 0, "fail": 0, "skip": 0},
        "reasons": [],
        "git_ref": "refs/heads/main",
        "git_sha": null,
        "wall_ms_cv": 0.01,
    })
}

/// Upload, latest, list and verdicts without a credential, on `default` and another project;
/// keys and audit need a real key; a credential is authenticated as on any server.
fn project_api_without_credentials(b: Backend) {
    let s = Server::start_with(
        b,
        &[
            "--local".to_owned(),
            "--api-keys".to_owned(),
            format!("admin:{ADMIN}"),
            "--api-keys".to_owned(),
            format!("viewer:{VIEWER}"),
        ],
    );
    let http = &s.http;
    use reqwest::Method;
    let info = expect(anon(http, Method::GET, s.url("/api/v1/info"), None), 200);
    assert_eq!(info["local_mode"], true, "{info}");

    let me = expect(anon(http, Method::GET, s.url("/api/v1/whoami"), None), 200);
    assert_eq!(me["id"], "local", "{me}");
    // Only this machine's own clients are the local user: not a web page of another origin the
    // user opened (CORS is off too), nor a foreign name pointed at 127.0.0.1 (DNS rebinding).
    let projects = s.url("/api/v1/projects");
    let from = |origin: Option<&str>, host: Option<&str>| {
        let mut r = http.get(&projects);
        if let Some(o) = origin {
            r = r.header("Origin", o);
        }
        if let Some(h) = host {
            r = r.header("Host", h);
        }
        r.send().unwrap()
    };
    let e = expect_error(
        from(Some("https://evil.example"), None),
        401,
        "unauthorized",
    );
    assert!(
        e["message"].as_str().unwrap().contains("this machine"),
        "{e}"
    );
    expect_error(from(None, Some("evil.example")), 401, "unauthorized");
    expect_error(
        from(None, Some(&format!("rebound.example:{}", s.port))),
        401,
        "unauthorized",
    );
    expect(
        from(Some(&format!("http://127.0.0.1:{}", s.port)), None),
        200,
    );
    expect(from(None, Some(&format!("localhost:{}", s.port))), 200);
    let pre = http
        .request(Method::OPTIONS, &projects)
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "DELETE")
        .send()
        .unwrap();
    assert!(
        pre.headers().get("access-control-allow-origin").is_none(),
        "no CORS in local mode: {:?}",
        pre.headers()
    );
    assert_eq!(me["role"], "admin", "{me}");
    assert_eq!(me["project"], "*", "{me}");

    let receipt = fixture("run-bench-a-1.json");
    for project in ["default", "another-project"] {
        let base = format!("/api/v1/projects/{project}");
        let up = expect(
            anon(
                http,
                Method::POST,
                s.url(&format!("{base}/baselines")),
                Some(&upload_body("bench-a", Some("v1"), &receipt)),
            ),
            201,
        );
        assert_eq!(up["version"], "v1", "{up}");
        // perfgate's `--local-db` sends no version: one is generated.
        let up = expect(
            anon(
                http,
                Method::POST,
                s.url(&format!("{base}/baselines")),
                Some(&upload_body("bench-a", None, &receipt)),
            ),
            201,
        );
        let generated = up["version"].as_str().unwrap().to_owned();
        let latest = expect(
            anon(
                http,
                Method::GET,
                s.url(&format!("{base}/baselines/bench-a/latest")),
                None,
            ),
            200,
        );
        assert_eq!(latest["version"], generated.as_str(), "{latest}");
        assert_eq!(latest["project"], project, "{latest}");
        let list = expect(
            anon(http, Method::GET, s.url(&format!("{base}/baselines")), None),
            200,
        );
        assert_eq!(list["pagination"]["total"], 2, "{list}");
        expect(
            anon(
                http,
                Method::POST,
                s.url(&format!("{base}/verdicts")),
                Some(&verdict("bench-a", "pass")),
            ),
            201,
        );
        let verdicts = expect(
            anon(http, Method::GET, s.url(&format!("{base}/verdicts")), None),
            200,
        );
        assert_eq!(verdicts["pagination"]["total"], 1, "{verdicts}");
    }
    let projects = expect(
        anon(http, Method::GET, s.url("/api/v1/projects"), None),
        200,
    );
    assert_eq!(projects["total"], 2, "{projects}");

    // Keys and audit: a real key, even in local mode.
    for path in ["/api/v1/keys", "/api/v1/audit"] {
        expect_error(
            anon(http, Method::GET, s.url(path), None),
            401,
            "unauthorized",
        );
        expect(s.get(ADMIN, path), 200);
    }
    expect_error(
        anon(
            http,
            Method::POST,
            s.url("/api/v1/keys"),
            Some(&json!({"description": "x", "role": "admin", "project": "*"})),
        ),
        401,
        "unauthorized",
    );
    // The audit log names the local user as the actor of what it did.
    let audit = expect(
        s.get(ADMIN, "/api/v1/audit?project=default&action=create"),
        200,
    );
    let events = audit["events"].as_array().unwrap();
    assert!(!events.is_empty(), "{audit}");
    assert!(events.iter().all(|e| e["actor"] == "local"), "{audit}");

    // A credential is authenticated as anywhere: a bad key is refused, a viewer stays a viewer.
    expect_error(
        s.get(
            "pg_live_unknownunknownunknownunknownunkn01",
            "/api/v1/projects/default/baselines",
        ),
        401,
        "unauthorized",
    );
    expect_error(
        s.get("Bearer nonsense", "/api/v1/whoami"),
        401,
        "unauthorized",
    );
    let me = expect(s.get(VIEWER, "/api/v1/whoami"), 200);
    assert_eq!(me["role"], "viewer", "{me}");
    expect(s.get(VIEWER, "/api/v1/projects/default/baselines"), 200);
    expect_error(
        s.upload(VIEWER, "default", "bench-b", None, &receipt),
        403,
        "forbidden",
    );
}

#[test]
fn project_api_without_credentials_sqlite() {
    project_api_without_credentials(Backend::Sqlite);
}

#[test]
fn project_api_without_credentials_memory() {
    project_api_without_credentials(Backend::Memory);
}

#[test]
fn a_normal_server_still_needs_credentials() {
    let s = Server::start(Backend::Memory);
    let info = expect(s.http.get(s.url("/api/v1/info")).send().unwrap(), 200);
    assert_eq!(info["local_mode"], false, "{info}");
    expect_error(
        s.http
            .get(s.url("/api/v1/projects/default/baselines"))
            .send()
            .unwrap(),
        401,
        "unauthorized",
    );
}

/// Runs the binary expecting a refusal: exit code 2 and one line on stderr.
fn refused(args: &[&str], envs: &[(&str, &str)]) -> String {
    let dir = temp_dir("local-refused");
    let out = bin()
        .args(args)
        .envs(envs.iter().copied())
        .env("XDG_DATA_HOME", dir.join("xdg"))
        .current_dir(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "expected exit 2, stderr: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!dir.join("xdg").exists(), "nothing created before refusing");
    let _ = std::fs::remove_dir_all(&dir);
    err
}

#[test]
fn local_mode_refuses_a_non_loopback_address() {
    let port = free_port().to_string();
    for args in [
        vec!["--local", "--bind", "0.0.0.0"],
        vec!["--local", "--bind", "0.0.0.0", "--port", &port],
        vec!["--local", "--bind", "[::]:9000"],
        vec!["--local", "--bind", "10.1.2.3:8484"],
    ] {
        let e = refused(&args, &[]);
        assert!(e.contains("loopback only"), "{args:?}: {e}");
    }
    // From the environment and a TOML file too.
    let e = refused(&["--bind", "0.0.0.0"], &[("PERFGATE_LOCAL", "true")]);
    assert!(e.contains("loopback only"), "{e}");
    let dir = temp_dir("local-toml");
    let f = dir.join("c.toml");
    std::fs::write(&f, "local = true\nbind = \"0.0.0.0:8484\"\n").unwrap();
    let e = refused(&["--config", f.to_str().unwrap()], &[]);
    assert!(e.contains("loopback only"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

/// No database given: SQLite in `$XDG_DATA_HOME/perfgate-server/local.db` (created, owner
/// only), nothing in the working directory nor in perfgate's own `~/.perfgate`. The start-up
/// lines say local mode, where the dashboard, the API and the database are, and show the
/// bootstrap key of a fresh database, which works for keys and audit.
#[test]
fn default_data_directory_and_start_up_lines() {
    let dir = temp_dir("local-xdg");
    let (home, xdg, cwd) = (dir.join("home"), dir.join("xdg"), dir.join("cwd"));
    for d in [&home, &cwd] {
        std::fs::create_dir_all(d).unwrap();
    }
    let envs: [(&str, &Path); 2] = [("HOME", &home), ("XDG_DATA_HOME", &xdg)];
    let mut p = Proc::start(&["--local"], &envs, &cwd);
    let db = xdg.join("perfgate-server").join("local.db");
    assert!(db.is_file(), "{} missing:\n{}", db.display(), p.stderr());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(xdg.join("perfgate-server"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    }
    assert!(!home.join(".perfgate").exists());
    let in_cwd: Vec<_> = std::fs::read_dir(&cwd)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".log"))
        .collect();
    assert!(
        in_cwd.is_empty(),
        "nothing but the test's log in cwd: {in_cwd:?}"
    );

    let err = p.stderr();
    let port = p.port;
    assert!(err.contains("ready in local mode"), "{err}");
    assert!(
        err.contains(&format!(
            "Dashboard:  http://127.0.0.1:{port}/  (no sign-in needed)"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("PERFGATE_LOCAL_DB=http://127.0.0.1:{port}/api/v1")),
        "{err}"
    );
    assert!(err.contains(&db.display().to_string()), "{err}");
    let key = err
        .split_whitespace()
        .find(|w| w.starts_with("pg_live_"))
        .unwrap_or_else(|| panic!("no bootstrap key:\n{err}"))
        .to_owned();

    let http = Client::new();
    let info: Value = http
        .get(p.url("/api/v1/info"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(info["local_mode"], true);
    assert_eq!(info["storage"], "sqlite");
    let r = http
        .post(p.url("/api/v1/projects/default/baselines"))
        .json(&upload_body(
            "bench-a",
            None,
            &fixture("run-bench-a-1.json"),
        ))
        .send()
        .unwrap();
    expect(r, 201);
    let r = http.get(p.url("/api/v1/keys")).send().unwrap();
    expect_error(r, 401, "unauthorized");
    let keys = expect(
        http.get(p.url("/api/v1/keys"))
            .bearer_auth(&key)
            .send()
            .unwrap(),
        200,
    );
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1, "{keys}");

    // Restarted on the same data directory: the data is there; no second key is shown.
    p.stop();
    let p = Proc::start(&["--local"], &envs, &cwd);
    let latest = expect(
        http.get(p.url("/api/v1/projects/default/baselines/bench-a/latest"))
            .send()
            .unwrap(),
        200,
    );
    assert_eq!(latest["benchmark"], "bench-a");
    let err = p.stderr();
    assert!(!err.contains("pg_live_"), "{err}");
    assert!(err.contains("keys create --database-url"), "{err}");
    drop(p);
    let _ = std::fs::remove_dir_all(dir);
}

/// An explicit `--database-url` wins over the data directory; a database that holds data but no
/// key still starts in local mode (a normal server refuses it), telling how to make a key.
#[test]
fn explicit_database_and_data_without_keys() {
    let dir = temp_dir("local-db");
    let xdg = dir.join("xdg");
    let db = dir.join("mine.db");
    let envs: [(&str, &Path); 1] = [("XDG_DATA_HOME", &xdg)];
    let key_arg = format!("admin:{ADMIN}");
    let db_arg = db.to_str().unwrap();
    let mut p = Proc::start(
        &["--local", "--database-url", db_arg, "--api-keys", &key_arg],
        &envs,
        &dir,
    );
    let http = Client::new();
    expect(
        http.post(p.url("/api/v1/projects/default/baselines"))
            .json(&upload_body(
                "bench-a",
                Some("v1"),
                &fixture("run-bench-a-1.json"),
            ))
            .send()
            .unwrap(),
        201,
    );
    assert!(db.is_file());
    assert!(!xdg.exists(), "the data directory is not used");
    p.stop();

    // Without --local this database (data, no key, no credential) is refused.
    let out = bin()
        .args(["--database-url", db_arg, "--port", &free_port().to_string()])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // With --local it starts; keys and audit wait for a key made with `keys create`.
    let p = Proc::start(&["--local", "--database-url", db_arg], &envs, &dir);
    expect(
        http.get(p.url("/api/v1/projects/default/baselines/bench-a/versions/v1"))
            .send()
            .unwrap(),
        200,
    );
    let err = p.stderr();
    assert!(err.contains("keys create --database-url"), "{err}");
    assert!(!err.contains("pg_live_"), "{err}");
    expect_error(
        http.get(p.url("/api/v1/audit")).send().unwrap(),
        401,
        "unauthorized",
    );
    drop(p);
    let _ = std::fs::remove_dir_all(dir);
}
