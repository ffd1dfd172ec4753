//! API keys from a document (`--api-keys-file`, `--api-keys-env`, `--api-keys-command`) over
//! real HTTP: every document shape perfgate 0.18.1 reads, reload on SIGHUP and on a file change
//! (Kubernetes symlink swaps included), bad documents at start-up and on reload, audit actor,
//! scoping and expiry.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const KEY_A: &str = "pg_live_docadocadocadocadocadocadocadoca01";
const KEY_B: &str = "pg_live_docbdocbdocbdocbdocbdocbdocbdocb02";
const KEY_C: &str = "pg_test_doccdoccdoccdoccdoccdoccdoccdocc03";
/// In bad documents: must never reach a log or an error.
const LEAKY: &str = "pg_live_neverlogmeneverlogmeneverlogme0099";

/// A JSON array of `{id, role, secret}` entries (project `*`).
fn doc(entries: &[(&str, &str, &str)]) -> String {
    let v: Vec<Value> = entries
        .iter()
        .map(|(id, role, secret)| json!({"id": id, "role": role, "project": "*", "secret": secret}))
        .collect();
    Value::Array(v).to_string()
}

fn file_args(path: &Path) -> Vec<String> {
    vec![
        "--api-keys-file".into(),
        path.to_string_lossy().into_owned(),
    ]
}

/// `whoami` with `key`: the status and, on 200, the answer.
fn whoami(s: &Server, key: &str) -> (u16, Value) {
    let r = s.get(key, "/api/v1/whoami");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// Polls until `key` gets `status` from `whoami` (at most 10 s).
fn wait_status(s: &Server, key: &str, status: u16) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if whoami(s, key).0 == status {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn wait_log(s: &Server, needle: &str) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if s.log().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn sighup(s: &Server) {
    let ok = Command::new("kill")
        .args(["-HUP", &s.pid().to_string()])
        .status()
        .is_ok_and(|st| st.success());
    assert!(ok, "kill -HUP failed");
}

fn keys_dir() -> PathBuf {
    temp_dir("keydoc")
}

/// Each shape perfgate 0.18.1 reads, from a file.
#[test]
fn every_document_shape_from_a_file() {
    let dir = keys_dir();
    let shapes = [
        (
            "array.json",
            json!([{"id": "doc-a", "role": "viewer", "secret": KEY_A}]).to_string(),
        ),
        (
            "keys.json",
            json!({"keys": [{"id": "doc-a", "role": "viewer", "secret": KEY_A}]}).to_string(),
        ),
        (
            "api_keys.json",
            json!({"api_keys": [{"id": "doc-a", "role": "viewer", "secret": KEY_A}]}).to_string(),
        ),
        (
            "keys.toml",
            format!("[[keys]]\nid = \"doc-a\"\nrole = \"viewer\"\nsecret = \"{KEY_A}\"\n"),
        ),
        (
            "api_keys.toml",
            format!("[[api_keys]]\nid = \"doc-a\"\nrole = \"viewer\"\nsecret = \"{KEY_A}\"\n"),
        ),
    ];
    for (name, text) in shapes {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let s = Server::start_with(Backend::Memory, &file_args(&path));
        let (status, me) = whoami(&s, KEY_A);
        assert_eq!(status, 200, "{name}: {me}\n{}", s.log());
        assert_eq!(me["id"], "doc-a", "{name}");
        assert_eq!(me["role"], "viewer", "{name}");
        // `project` defaults to "default".
        assert_eq!(me["project"], "default", "{name}");
        expect_error(s.get(KEY_B, "/api/v1/whoami"), 401, "unauthorized");
        // A document counts as configured credentials: no bootstrap key.
        assert!(!s.log().contains("bootstrap admin key"), "{}", s.log());
        assert!(!s.log().contains(KEY_A), "secret in the log");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn document_from_environment_and_from_a_command() {
    let text = doc(&[("env-a", "admin", KEY_A)]);
    let s = Server::start_with_env(
        Backend::Memory,
        &["--api-keys-env".into(), "KEYDOC_TEST_DOCUMENT".into()],
        &[("KEYDOC_TEST_DOCUMENT", &text)],
    );
    assert_eq!(whoami(&s, KEY_A).1["id"], "env-a");
    // The key can also be configured through the environment (`PERFGATE_API_KEYS_ENV`).
    let s = Server::start_with_env(
        Backend::Memory,
        &[],
        &[
            ("PERFGATE_API_KEYS_ENV", "KEYDOC_TEST_DOCUMENT"),
            ("KEYDOC_TEST_DOCUMENT", &text),
        ],
    );
    assert_eq!(whoami(&s, KEY_A).1["id"], "env-a");

    let dir = keys_dir();
    let path = dir.join("keys.toml");
    std::fs::write(
        &path,
        format!("[[keys]]\nid = \"cmd-b\"\nrole = \"viewer\"\nsecret = \"{KEY_B}\"\n"),
    )
    .unwrap();
    let s = Server::start_with(
        Backend::Memory,
        &[
            "--api-keys-command".into(),
            format!("cat '{}'", path.display()),
            // Together with --api-keys: both sets work.
            "--api-keys".into(),
            format!("admin:{ADMIN}"),
        ],
    );
    assert_eq!(whoami(&s, KEY_B).1["id"], "cmd-b");
    assert_eq!(whoami(&s, ADMIN).0, 200);
    let _ = std::fs::remove_dir_all(dir);
}

/// SIGHUP re-runs the command: a key added works and a key removed is refused, on a live server.
/// (A command is never polled, so only the signal can have reloaded it.)
#[test]
fn sighup_reloads_added_and_removed_keys() {
    let dir = keys_dir();
    let path = dir.join("keys.json");
    std::fs::write(&path, doc(&[("a", "viewer", KEY_A)])).unwrap();
    let s = Server::start_with(
        Backend::Sqlite,
        &[
            "--api-keys-command".into(),
            format!("cat '{}'", path.display()),
        ],
    );
    assert_eq!(whoami(&s, KEY_A).0, 200);
    assert_eq!(whoami(&s, KEY_B).0, 401);
    std::fs::write(&path, doc(&[("b", "admin", KEY_B)])).unwrap();
    // Without the signal nothing changes.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(whoami(&s, KEY_A).0, 200);
    assert_eq!(whoami(&s, KEY_B).0, 401);
    sighup(&s);
    assert!(
        wait_status(&s, KEY_B, 200),
        "added key refused:\n{}",
        s.log()
    );
    assert!(
        wait_status(&s, KEY_A, 401),
        "removed key accepted:\n{}",
        s.log()
    );
    assert_eq!(whoami(&s, KEY_B).1["id"], "b");
    let log = s.log();
    assert!(
        log.contains(
            "API keys reloaded (SIGHUP) from --api-keys-command: 1 keys; added: b; removed: a"
        ),
        "{log}"
    );
    assert!(
        !log.contains(KEY_A) && !log.contains(KEY_B),
        "secret in the log"
    );
    // Still serving after the signal.
    assert_eq!(whoami(&s, KEY_B).0, 200);
    let _ = std::fs::remove_dir_all(dir);
}

/// A document file is reloaded when it changes (no signal), and on SIGHUP.
#[test]
fn file_change_reloads_keys() {
    let dir = keys_dir();
    let path = dir.join("keys.json");
    std::fs::write(&path, doc(&[("a", "viewer", KEY_A)])).unwrap();
    let s = Server::start_with(Backend::Sqlite, &file_args(&path));
    assert_eq!(whoami(&s, KEY_A).0, 200);
    // A plain rewrite in place.
    std::fs::write(&path, doc(&[("b", "viewer", KEY_B)])).unwrap();
    assert!(
        wait_status(&s, KEY_B, 200),
        "added key refused:\n{}",
        s.log()
    );
    assert!(
        wait_status(&s, KEY_A, 401),
        "removed key accepted:\n{}",
        s.log()
    );
    // The log line is written by the log thread after the new keys are in use: wait for it.
    assert!(
        wait_log(&s, "API keys reloaded (file changed)"),
        "{}",
        s.log()
    );
    // SIGHUP on a file source reloads too (and a changed role takes effect).
    std::fs::write(&path, doc(&[("b", "admin", KEY_B), ("c", "viewer", KEY_C)])).unwrap();
    sighup(&s);
    assert!(wait_status(&s, KEY_C, 200), "{}", s.log());
    assert_eq!(whoami(&s, KEY_B).1["role"], "admin");
    let _ = std::fs::remove_dir_all(dir);
}

/// A Kubernetes secret volume: `keys.json -> ..data/keys.json`, `..data -> ..<timestamp>`; an
/// update writes a new timestamped directory and renames a new `..data` link over the old one.
#[test]
fn kubernetes_secret_symlink_swap() {
    use std::os::unix::fs::symlink;
    let dir = keys_dir();
    let first = dir.join("..2026_01_01_00_00_00.000000001");
    std::fs::create_dir(&first).unwrap();
    std::fs::write(first.join("keys.json"), doc(&[("a", "viewer", KEY_A)])).unwrap();
    symlink(first.file_name().unwrap(), dir.join("..data")).unwrap();
    symlink("..data/keys.json", dir.join("keys.json")).unwrap();
    let s = Server::start_with(Backend::Sqlite, &file_args(&dir.join("keys.json")));
    assert_eq!(whoami(&s, KEY_A).0, 200);
    assert_eq!(whoami(&s, KEY_B).0, 401);

    let second = dir.join("..2026_01_01_00_05_00.000000002");
    std::fs::create_dir(&second).unwrap();
    std::fs::write(second.join("keys.json"), doc(&[("b", "viewer", KEY_B)])).unwrap();
    symlink(second.file_name().unwrap(), dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(&first).unwrap();
    assert!(
        wait_status(&s, KEY_B, 200),
        "swapped-in key refused:\n{}",
        s.log()
    );
    assert!(
        wait_status(&s, KEY_A, 401),
        "swapped-out key accepted:\n{}",
        s.log()
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A bad document on reload keeps the keys in use, and the log says why without the secret.
#[test]
fn bad_document_on_reload_keeps_old_keys() {
    let dir = keys_dir();
    let path = dir.join("keys.json");
    std::fs::write(&path, doc(&[("a", "viewer", KEY_A)])).unwrap();
    let s = Server::start_with(Backend::Sqlite, &file_args(&path));
    assert_eq!(whoami(&s, KEY_A).0, 200);

    // Broken syntax, with a secret in it.
    std::fs::write(
        &path,
        format!(r#"[{{"id":"b","role":"viewer","secret":"{LEAKY}""#),
    )
    .unwrap();
    assert!(
        wait_log(
            &s,
            "API keys not reloaded (file changed), the 1 keys in use stay"
        ),
        "{}",
        s.log()
    );
    assert!(s.log().contains("not valid JSON"), "{}", s.log());
    assert_eq!(whoami(&s, KEY_A).0, 200);
    assert_eq!(whoami(&s, LEAKY).0, 401);

    // A valid document with a bad entry (the secret where the role goes): all of it is refused.
    std::fs::write(&path, doc(&[("b", "viewer", KEY_B), ("c", LEAKY, KEY_C)])).unwrap();
    assert!(wait_log(&s, "unknown role (not shown)"), "{}", s.log());
    assert_eq!(whoami(&s, KEY_A).0, 200);
    assert_eq!(whoami(&s, KEY_B).0, 401);

    // The file disappears: still the old keys.
    std::fs::remove_file(&path).unwrap();
    assert!(wait_log(&s, "cannot open"), "{}", s.log());
    assert_eq!(whoami(&s, KEY_A).0, 200);

    // Fixed: the next version loads.
    std::fs::write(&path, doc(&[("b", "viewer", KEY_B)])).unwrap();
    assert!(wait_status(&s, KEY_B, 200), "{}", s.log());
    assert_eq!(whoami(&s, KEY_A).0, 401);
    let log = s.log();
    assert!(!log.contains("neverlogme"), "secret in the log:\n{log}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs the binary expecting it to refuse to start: exit 2, one line; returns it.
fn refused(args: &[String], env: &[(&str, &str)]) -> String {
    let dir = keys_dir();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_perfgate-server"));
    for (k, _) in std::env::vars() {
        if k.starts_with("PERFGATE_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .args([
            "--storage-type",
            "memory",
            "--port",
            &free_port().to_string(),
        ])
        .args(args)
        .envs(env.iter().copied())
        .current_dir(&dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "expected exit 2, stderr: {err}");
    // JSON log lines may precede the error (the logger is up); the error is the last line,
    // and the only one not from the logger.
    let own: Vec<&str> = err.lines().filter(|l| !l.starts_with('{')).collect();
    assert_eq!(own.len(), 1, "one clear line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("neverlogme"), "secret leaked: {err}");
    own[0].to_owned()
}

/// Arguments, environment, expected part of the error line.
type Case<'a> = (Vec<String>, Vec<(&'a str, &'a str)>, &'a str);

#[test]
fn bad_documents_and_sources_stop_startup_with_one_line() {
    let dir = keys_dir();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, doc(&[("a", LEAKY, KEY_A)])).unwrap();
    let toml = dir.join("bad.toml");
    std::fs::write(&toml, format!("[[keys]]\nid = \"a\"\nsecret = \"{LEAKY}")).unwrap();
    let s = |v: &str| v.to_owned();
    let cases: Vec<Case> = vec![
        (
            vec![
                s("--api-keys-file"),
                s("/k.json"),
                s("--api-keys-env"),
                s("K"),
            ],
            vec![],
            "api_keys_file and api_keys_env are mutually exclusive",
        ),
        (
            vec![s("--api-keys-env"), s("K")],
            vec![("PERFGATE_API_KEYS_COMMAND", "cat k")],
            "api_keys_env and api_keys_command are mutually exclusive",
        ),
        (
            file_args(&bad),
            vec![],
            "entry #1 ('a'): unknown role (not shown)",
        ),
        (
            file_args(&toml),
            vec![],
            "neither JSON nor TOML: TOML at line 3",
        ),
        (
            vec![s("--api-keys-file"), s("/nonexistent/keys.json")],
            vec![],
            "file /nonexistent/keys.json: cannot open",
        ),
        (
            vec![s("--api-keys-env"), s("KEYDOC_TEST_UNSET_VARIABLE")],
            vec![],
            "environment variable KEYDOC_TEST_UNSET_VARIABLE: the variable is not set",
        ),
        (
            vec![
                s("--api-keys-command"),
                format!("echo {LEAKY} >&2; echo '[]'; exit 4"),
            ],
            vec![],
            "--api-keys-command: the command exited with status 4",
        ),
        (
            vec![
                s("--api-keys-file"),
                dir.join("dup.json").to_string_lossy().into_owned(),
                s("--api-keys"),
                format!("admin:{KEY_A}"),
            ],
            vec![],
            "its secret is also configured with --api-keys",
        ),
    ];
    std::fs::write(dir.join("dup.json"), doc(&[("a", "viewer", KEY_A)])).unwrap();
    for (args, env, want) in cases {
        let line = refused(&args, &env);
        assert!(line.contains(want), "{args:?}: {line}\n(expected {want:?})");
        assert!(line.starts_with("perfgate-server: "), "{line}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The entry id is the audit actor; project and benchmark scoping hold; an expired entry is
/// refused. On every backend (the audit log is stored).
fn actor_scope_and_expiry(b: Backend) {
    let dir = keys_dir();
    let path = dir.join("keys.json");
    std::fs::write(
        &path,
        json!({"keys": [
            {"id": "ci-uploader", "role": "contributor", "project": "proj",
             "benchmark_regex": "bench-.*", "secret": KEY_A},
            {"id": "ops-admin", "role": "admin", "project": "*", "secret": KEY_B,
             "expires_at": "2099-01-01T00:00:00Z"},
            {"id": "old-key", "role": "admin", "project": "*", "secret": KEY_C,
             "expires_at": "2020-01-01T00:00:00Z"},
        ]})
        .to_string(),
    )
    .unwrap();
    let s = Server::start_with(b, &file_args(&path));
    let receipt = fixture("run-bench-a-1.json");
    expect(
        s.upload(KEY_A, "proj", "bench-a", Some("v1"), &receipt),
        201,
    );
    expect_error(
        s.upload(KEY_A, "proj", "other-a", Some("v1"), &receipt),
        403,
        "forbidden",
    );
    expect_error(
        s.upload(KEY_A, "elsewhere", "bench-a", Some("v1"), &receipt),
        403,
        "forbidden",
    );
    let e = expect_error(s.get(KEY_C, "/api/v1/whoami"), 401, "unauthorized");
    assert_eq!(e["message"], "API key has expired", "{e}");
    assert!(s
        .log()
        .contains("entries already expired (refused): old-key"));

    let audit = expect(s.get(KEY_B, "/api/v1/audit?actor=ci-uploader"), 200);
    assert_eq!(audit["pagination"]["total"], 1, "{audit}");
    assert_eq!(audit["events"][0]["actor"], "ci-uploader", "{audit}");
    assert_eq!(audit["events"][0]["action"], "create", "{audit}");
    // A key created by a document key expires no later than it.
    let k = expect(
        s.post(
            KEY_B,
            "/api/v1/keys",
            &json!({"description": "from a document key", "role": "viewer", "project": "proj"}),
        ),
        201,
    );
    assert!(
        k["expires_at"]
            .as_str()
            .is_some_and(|t| t.starts_with("2099-01-01")),
        "{k}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

backend_tests!(actor_scope_and_expiry);
