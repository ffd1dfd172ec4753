//! The dashboard's read models (`/whoami`, `/projects`, a project's benchmarks, a benchmark's
//! history) over real HTTP on every backend, with authorization and benchmark filters; and the
//! embedded single-page app (assets, headers, `--static-dir`).

mod common;

use common::*;

/// The fixture receipt with its `wall_ms` median (and min/max around it) set to `ms`.
fn receipt(ms: u64) -> Value {
    let mut r = fixture("run-bench-a-2.json");
    r["stats"]["wall_ms"] = json!({"median": ms, "min": ms.saturating_sub(1), "max": ms + 2, "mean": ms as f64, "stddev": 0.5});
    r
}

fn verdict(bench: &str, status: &str, cv: f64) -> Value {
    json!({
        "benchmark": bench, "run_id": "run-1", "status": status,
        "counts": {"pass": 1, "warn": 0, "fail": 0, "skip": 0}, "reasons": [],
        "git_ref": null, "git_sha": null, "wall_ms_cv": cv,
    })
}

fn seed(s: &Server) {
    for (i, ms) in [10u64, 12, 14].into_iter().enumerate() {
        let v = format!("v{}", i + 1);
        expect(
            s.upload(ADMIN, "proj", "bench-a", Some(&v), &receipt(ms)),
            201,
        );
    }
    expect(
        s.upload(ADMIN, "proj", "other-x", Some("1"), &receipt(7)),
        201,
    );
    expect(
        s.upload(ADMIN, "other", "bench-o", Some("1"), &receipt(3)),
        201,
    );
    for st in ["pass", "fail"] {
        expect(
            s.post(
                ADMIN,
                "/api/v1/projects/proj/verdicts",
                &verdict("bench-a", st, 0.1),
            ),
            201,
        );
    }
}

fn project<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["projects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["project"] == name)
        .unwrap_or_else(|| panic!("no project {name} in {v}"))
}

fn projects_list(b: Backend) {
    let s = Server::start(b);
    // An empty server: a global caller sees nothing; a project key still sees its project.
    let v = expect(s.get(ADMIN, "/api/v1/projects"), 200);
    assert_eq!(v, json!({"projects": [], "total": 0}));
    let v = expect(s.get(OTHER_ADMIN, "/api/v1/projects"), 200);
    assert_eq!(v["projects"][0]["project"], "other");
    assert_eq!(v["projects"][0]["benchmarks"], 0);
    assert!(v["projects"][0]["last_activity"].is_null());

    seed(&s);
    let v = expect(s.get(VIEWER, "/api/v1/projects"), 200);
    assert_eq!(v["total"], 2, "{v}");
    let names: Vec<&str> = v["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["project"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["other", "proj"]);
    let p = project(&v, "proj");
    assert_eq!(
        (&p["benchmarks"], &p["baselines"], &p["verdicts"]),
        (&json!(2), &json!(4), &json!(2))
    );
    assert!(p["last_activity"].as_str().unwrap().ends_with('Z'), "{p}");
    let o = project(&v, "other");
    assert_eq!(
        (&o["benchmarks"], &o["baselines"], &o["verdicts"]),
        (&json!(1), &json!(1), &json!(0))
    );

    // A project admin sees its project only; a benchmark filter narrows the counts.
    let v = expect(s.get(OTHER_ADMIN, "/api/v1/projects"), 200);
    assert_eq!(v["total"], 1);
    assert_eq!(v["projects"][0]["project"], "other");
    let v = expect(s.get(RESTRICTED, "/api/v1/projects"), 200);
    assert_eq!(v["total"], 1, "{v}");
    let p = &v["projects"][0];
    assert_eq!(
        (&p["project"], &p["benchmarks"], &p["baselines"]),
        (&json!("proj"), &json!(1), &json!(3))
    );

    // Deleting a version is reflected at once.
    expect(
        s.delete(ADMIN, "/api/v1/projects/proj/baselines/other-x/versions/1"),
        200,
    );
    let v = expect(s.get(ADMIN, "/api/v1/projects"), 200);
    let p = project(&v, "proj");
    assert_eq!((&p["benchmarks"], &p["baselines"]), (&json!(1), &json!(3)));

    expect_error(
        s.http.get(s.url("/api/v1/projects")).send().unwrap(),
        401,
        "unauthorized",
    );
    expect_error(
        s.http
            .post(s.url("/api/v1/projects"))
            .bearer_auth(ADMIN)
            .send()
            .unwrap(),
        405,
        "method_not_allowed",
    );
}

fn project_benchmarks(b: Backend) {
    let s = Server::start(b);
    seed(&s);
    let v = expect(s.get(VIEWER, "/api/v1/projects/proj/benchmarks"), 200);
    assert_eq!(v["project"], "proj");
    assert_eq!(v["total"], 2);
    let a = &v["benchmarks"][0];
    assert_eq!(a["benchmark"], "bench-a");
    assert_eq!(a["baselines"], 3);
    assert_eq!(a["verdicts"], 2);
    assert_eq!(a["latest"]["version"], "v3");
    assert_eq!(a["latest"]["wall_ms_median"], 14);
    assert_eq!(a["latest"]["source"], "upload");
    assert_eq!(a["spark"], json!([10, 12, 14]));
    assert_eq!(a["last_verdict"]["status"], "fail");
    assert_eq!(a["last_verdict"]["id"].as_str().unwrap().len(), 32);
    let x = &v["benchmarks"][1];
    assert_eq!(
        (&x["benchmark"], &x["spark"], &x["last_verdict"]),
        (&json!("other-x"), &json!([7]), &Value::Null)
    );

    // Promote and delete change the table at once.
    expect(
        s.post(
            PROMOTER,
            "/api/v1/projects/proj/baselines/bench-a/promote",
            &json!({"from_version": "v1", "to_version": "v1-promoted", "tags": []}),
        ),
        201,
    );
    expect(
        s.delete(ADMIN, "/api/v1/projects/proj/baselines/bench-a/versions/v2"),
        200,
    );
    let v = expect(s.get(ADMIN, "/api/v1/projects/proj/benchmarks"), 200);
    let a = &v["benchmarks"][0];
    assert_eq!(a["baselines"], 3);
    assert_eq!(a["latest"]["version"], "v1-promoted");
    assert_eq!(a["latest"]["source"], "promote");
    assert_eq!(a["spark"], json!([10, 14, 10]));

    // A benchmark filter hides the other benchmarks; other projects are refused.
    let v = expect(s.get(RESTRICTED, "/api/v1/projects/proj/benchmarks"), 200);
    assert_eq!(v["total"], 1);
    assert_eq!(v["benchmarks"][0]["benchmark"], "bench-a");
    expect_error(
        s.get(OTHER_ADMIN, "/api/v1/projects/proj/benchmarks"),
        403,
        "forbidden",
    );
    expect_error(
        s.get(ADMIN, "/api/v1/projects/b%20ad/benchmarks"),
        400,
        "invalid_input",
    );
    let v = expect(s.get(ADMIN, "/api/v1/projects/empty/benchmarks"), 200);
    assert_eq!(v, json!({"project": "empty", "benchmarks": [], "total": 0}));
}

fn benchmark_history(b: Backend) {
    let s = Server::start(b);
    seed(&s);
    expect(
        s.post(
            PROMOTER,
            "/api/v1/projects/proj/baselines/bench-a/promote",
            &json!({"from_version": "v2", "to_version": "stable", "tags": ["release"]}),
        ),
        201,
    );
    let h = "/api/v1/projects/proj/benchmarks/bench-a/history";
    let v = expect(s.get(VIEWER, h), 200);
    assert_eq!(
        (&v["project"], &v["benchmark"]),
        (&json!("proj"), &json!("bench-a"))
    );
    let versions: Vec<&str> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["stable", "v3", "v2", "v1"]);
    let top = &v["versions"][0];
    assert_eq!(top["source"], "promote");
    assert_eq!(top["promoted_from"], "v2");
    assert_eq!(top["tags"], json!(["release"]));
    assert_eq!(top["receipt"]["stats"]["wall_ms"]["median"], 12);
    assert!(v["versions"][3]["promoted_from"].is_null());
    assert_eq!(v["versions"][3]["source"], "upload");
    assert_eq!(top["content_hash"].as_str().unwrap().len(), 64);
    assert_eq!(
        v["pagination"],
        json!({"total": 4, "offset": 0, "limit": 100, "has_more": false})
    );

    let v = expect(s.get(VIEWER, &format!("{h}?limit=2&offset=1")), 200);
    assert_eq!(v["versions"][0]["version"], "v3");
    assert_eq!(v["versions"].as_array().unwrap().len(), 2);
    assert_eq!(v["pagination"]["has_more"], true);

    // Names with `/`, raw or encoded.
    expect(
        s.upload(ADMIN, "proj", "render/md", Some("1"), &receipt(5)),
        201,
    );
    for path in [
        "/api/v1/projects/proj/benchmarks/render/md/history",
        "/api/v1/projects/proj/benchmarks/render%2Fmd/history",
    ] {
        let v = expect(s.get(ADMIN, path), 200);
        assert_eq!(v["benchmark"], "render/md");
        assert_eq!(v["versions"][0]["version"], "1");
    }

    expect_error(s.get(VIEWER, &format!("{h}?limit=0")), 400, "invalid_input");
    let v = expect(s.get(VIEWER, &format!("{h}?limit=1001")), 200);
    assert_eq!(v["pagination"]["limit"], 200);
    let v = expect(s.get(VIEWER, &format!("{h}?limit=500")), 200);
    assert_eq!(v["pagination"]["limit"], 200);
    expect_error(
        s.get(VIEWER, &format!("{h}?offset=-1")),
        400,
        "invalid_input",
    );
    expect_error(
        s.get(
            RESTRICTED,
            "/api/v1/projects/proj/benchmarks/other-x/history",
        ),
        403,
        "forbidden",
    );
    expect_error(
        s.get(ADMIN, "/api/v1/projects/proj/benchmarks/Bad..Name/history"),
        400,
        "invalid_input",
    );
    let v = expect(
        s.get(ADMIN, "/api/v1/projects/proj/benchmarks/nothing/history"),
        200,
    );
    assert_eq!(v["versions"], json!([]));
    assert_eq!(v["pagination"]["total"], 0);
}

fn whoami(b: Backend) {
    let s = Server::start(b);
    let v = expect(s.get(RESTRICTED, "/api/v1/whoami"), 200);
    assert_eq!(v["role"], "contributor");
    assert_eq!(v["scopes"], json!(["read", "write"]));
    assert_eq!(v["project"], "proj");
    assert_eq!(v["benchmark_filter"], "bench-.*");
    assert_eq!(v["id"].as_str().unwrap().len(), 32);
    let v = expect(s.get(ADMIN, "/api/v1/whoami"), 200);
    assert_eq!(v["role"], "admin");
    assert_eq!(
        v["scopes"],
        json!(["read", "write", "promote", "delete", "admin"])
    );
    assert_eq!(v["project"], "*");
    assert!(v["benchmark_filter"].is_null());
    expect_error(
        s.http.get(s.url("/api/v1/whoami")).send().unwrap(),
        401,
        "unauthorized",
    );
    expect_error(
        s.get("pg_live_nopenopenopenopenopenopenopenope", "/api/v1/whoami"),
        401,
        "unauthorized",
    );
}

backend_tests!(projects_list, project_benchmarks, benchmark_history, whoami);

// ---------------------------------------------------------------------------------------------
// The embedded app

const EMBEDDED: [(&str, &str); 4] = [
    ("/", "text/html"),
    ("/index.html", "text/html"),
    ("/assets/app.js", "text/javascript"),
    ("/assets/app.css", "text/css"),
];

/// A GET sent as written (HTTP clients normalise `..` and `%2E%2E` away): status and body.
fn raw_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn dashboard_assets_are_embedded_and_hardened() {
    let s = Server::start(Backend::Memory);
    let index =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/static/index.html")).unwrap();
    for (path, mime) in EMBEDDED {
        let r = s.http.get(s.url(path)).send().unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers().clone();
        let ct = h["content-type"].to_str().unwrap();
        assert!(ct.starts_with(mime), "{path}: {ct}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
            "{csp}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        let etag = h["etag"].to_str().unwrap().to_owned();
        let body = r.text().unwrap();
        assert!(!body.is_empty());
        if mime == "text/html" {
            assert_eq!(body, index, "the embedded file is served as is");
        }
        // Nothing refers to another origin: no CDN, no web fonts.
        for needle in ["http://", "https://", "//cdn", "@import", "url("] {
            assert!(!body.contains(needle), "{path} mentions {needle}");
        }
        let r = s
            .http
            .get(s.url(path))
            .header("If-None-Match", &etag)
            .send()
            .unwrap();
        assert_eq!(r.status(), 304, "{path}");
        let r = s
            .http
            .get(s.url(path))
            .header("Accept-Encoding", "gzip")
            .send()
            .unwrap();
        assert_eq!(r.headers()["content-encoding"], "gzip", "{path}");
    }
    expect_error(
        s.http.get(s.url("/assets/missing.js")).send().unwrap(),
        404,
        "not_found",
    );
    for path in [
        "/assets/%2E%2E/Cargo.toml",
        "/assets/../static/index.html",
        "/assets//etc/passwd",
    ] {
        let (status, body) = raw_get(s.port, path);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains("\"code\":\"not_found\""), "{path}: {body}");
    }
    let r = s.http.post(s.url("/")).send().unwrap();
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    expect_error(r, 405, "method_not_allowed");
    let r = s.http.delete(s.url("/assets/app.js")).send().unwrap();
    expect_error(r, 405, "method_not_allowed");
}

#[test]
fn static_dir_overrides_embedded_files() {
    let dir = temp_dir("static");
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html><title>custom</title>",
    )
    .unwrap();
    std::fs::write(dir.join("assets/app.css"), "body { color: red; }").unwrap();
    let s = Server::start_with(
        Backend::Memory,
        &[
            "--static-dir".to_owned(),
            dir.display().to_string(),
            "--api-keys".to_owned(),
            format!("admin:{ADMIN}"),
        ],
    );
    let r = s.http.get(s.url("/")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().unwrap().contains("<title>custom</title>"));
    let r = s.http.get(s.url("/assets/app.css")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "body { color: red; }");
    // Files the directory does not have still come from the binary.
    let r = s.http.get(s.url("/assets/app.js")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().unwrap().contains("sessionStorage"));
    for path in ["/assets/%2E%2E/index.html", "/assets/../index.html"] {
        let (status, body) = raw_get(s.port, path);
        assert!(status == 404 || status == 400, "{path}: {status} {body}");
        assert!(!body.contains("custom"), "{path}: {body}");
    }
    let _ = std::fs::remove_dir_all(&dir);

    // A missing directory stops start-up with one line.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_perfgate-server"))
        .args([
            "--static-dir",
            "/nonexistent/perfgate-static",
            "--storage-type",
            "memory",
        ])
        .args(["--port", &free_port().to_string()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("static_dir"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
