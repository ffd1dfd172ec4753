//! Issue 15 "Security review findings": one test per finding (or group of findings), over real
//! HTTP and on every backend where storage matters, so that none can come back.

mod common;

use std::process::Command;
use std::time::Duration;

use common::tokens::*;
use common::*;
use jsonwebtoken::Algorithm;

const P: &str = "/api/v1/projects/proj/baselines";
const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0001";
/// Global admin restricted to benchmarks matching `bench-.*` (`admin:K::bench-.*`).
const NARROW_ADMIN: &str = "pg_live_narrowadminnarrowadminnarrowadmin01";

fn receipt() -> Value {
    fixture("run-bench-a-1.json")
}

fn args_of(extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    for k in standard_keys() {
        args.push("--api-keys".into());
        args.push(k);
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

fn jwt(project: &str, scopes: &[&str], ttl: u64) -> String {
    hs256(&json!({
        "sub": "ci-bot", "project_id": project, "scopes": scopes,
        "exp": now() + ttl, "iat": now(),
    }))
}

fn with_auth(s: &Server, method: &str, path: &str, auth: &str, body: Option<&Value>) -> Response {
    let r = match method {
        "GET" => s.http.get(s.url(path)),
        "POST" => s.http.post(s.url(path)),
        "DELETE" => s.http.delete(s.url(path)),
        m => panic!("{m}"),
    };
    let r = r.header("authorization", auth);
    match body {
        Some(b) => r.json(b),
        None => r,
    }
    .send()
    .unwrap()
}

fn ids(list: &Value) -> Vec<String> {
    list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Runs the server binary with `args` and expects it to refuse to start: exit code 2 and one
/// line on stderr besides JSON log lines. Returns that line.
fn refused_start(args: &[String]) -> String {
    let dir = temp_dir("refused");
    let out = Command::new(env!("CARGO_BIN_EXE_perfgate-server"))
        .args(["--bind", "127.0.0.1", "--port", &free_port().to_string()])
        .args(args)
        .current_dir(&dir)
        .env_remove("PERFGATE_DATABASE_URL")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(dir);
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('{'))
        .collect();
    assert_eq!(lines.len(), 1, "one line expected: {err}");
    lines[0].to_owned()
}

// ---------------------------------------------------------------------------------------------
// #1, #4: key management never reaches wider than the caller.

fn key_admins_manage_only_keys_no_wider(b: Backend) {
    let s = Server::start_with(
        b,
        &args_of(&[
            "--api-keys",
            &format!("admin:{NARROW_ADMIN}::bench-.*"),
            "--jwt-secret",
            JWT_SECRET,
        ]),
    );
    let create = |auth: &str, body: Value| with_auth(&s, "POST", "/api/v1/keys", auth, Some(&body));
    let bearer = |k: &str| format!("Bearer {k}");
    let global_admin = expect(
        create(
            &bearer(ADMIN),
            json!({"description": "global admin", "role": "admin", "project": "*"}),
        ),
        201,
    );
    let other_viewer = expect(
        create(
            &bearer(ADMIN),
            json!({"description": "other viewer", "role": "viewer", "project": "other"}),
        ),
        201,
    );
    let proj_admin = expect(
        create(
            &bearer(ADMIN),
            json!({"description": "proj admin", "role": "admin", "project": "proj"}),
        ),
        201,
    );
    let pattern_admin = expect(
        create(
            &bearer(ADMIN),
            json!({"description": "pattern admin", "role": "admin", "project": "proj", "pattern": "bench-*"}),
        ),
        201,
    );
    let pa = bearer(proj_admin["key"].as_str().unwrap());
    let proj_viewer = expect(
        create(
            &pa,
            json!({"description": "proj viewer", "role": "viewer", "project": "proj"}),
        ),
        201,
    );
    let id = |k: &Value| k["id"].as_str().unwrap().to_owned();
    let revoke =
        |auth: &str, id: &str| with_auth(&s, "DELETE", &format!("/api/v1/keys/{id}"), auth, None);

    // Benchmark-restricted admins (a global `admin:K::bench-.*` and a project admin created
    // with a pattern) list, revoke and create nothing.
    for narrow in [
        bearer(NARROW_ADMIN),
        bearer(pattern_admin["key"].as_str().unwrap()),
    ] {
        let e = expect_error(
            with_auth(&s, "GET", "/api/v1/keys", &narrow, None),
            403,
            "forbidden",
        );
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("restricted to some benchmarks"),
            "{e}"
        );
        expect_error(revoke(&narrow, &id(&proj_viewer)), 403, "forbidden");
        expect_error(
            create(
                &narrow,
                json!({"description": "x", "role": "viewer", "project": "proj"}),
            ),
            403,
            "forbidden",
        );
    }

    // A project admin sees its project's keys only: not global ones, not other projects'.
    let listed = ids(&expect(
        with_auth(&s, "GET", "/api/v1/keys", &pa, None),
        200,
    ));
    assert!(listed.contains(&id(&proj_viewer)) && listed.contains(&id(&proj_admin)));
    assert!(!listed.contains(&id(&global_admin)), "{listed:?}");
    assert!(!listed.contains(&id(&other_viewer)), "{listed:?}");
    // It cannot revoke an unrestricted global admin, nor another project's key.
    expect_error(revoke(&pa, &id(&global_admin)), 404, "not_found");
    expect_error(revoke(&pa, &id(&other_viewer)), 404, "not_found");
    expect(revoke(&pa, &id(&proj_viewer)), 200);
    // The global admin key still works.
    expect(s.get(global_admin["key"].as_str().unwrap(), P), 200);

    // #4: a JWT with read and admin on proj mints viewer keys only, and none outliving it.
    let token = format!("Token {}", jwt("proj", &["read", "admin"], 600));
    let e = expect_error(
        create(
            &token,
            json!({"description": "wider", "role": "contributor", "project": "proj"}),
        ),
        403,
        "forbidden",
    );
    assert!(
        e["message"].as_str().unwrap().contains("contributor"),
        "{e}"
    );
    let far = (chrono::Utc::now() + chrono::Duration::days(365)).to_rfc3339();
    let minted = expect(
        create(
            &token,
            json!({"description": "narrow", "role": "viewer", "project": "proj", "expires_at": far}),
        ),
        201,
    );
    let exp = chrono::DateTime::parse_from_rfc3339(minted["expires_at"].as_str().unwrap())
        .unwrap()
        .timestamp() as u64;
    assert!(exp <= now() + 600, "expiry not capped: {minted}");
    // Its list shows no key wider than itself (the proj admin key is).
    let listed = ids(&expect(
        with_auth(&s, "GET", "/api/v1/keys", &token, None),
        200,
    ));
    assert!(listed.contains(&id(&minted)));
    assert!(!listed.contains(&id(&proj_admin)), "{listed:?}");
    expect_error(revoke(&token, &id(&proj_admin)), 404, "not_found");

    // A stored key that expires gives its expiry to the keys it creates.
    let soon = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let expiring = expect(
        create(
            &bearer(ADMIN),
            json!({"description": "expiring admin", "role": "admin", "project": "proj", "expires_at": soon}),
        ),
        201,
    );
    let child = expect(
        create(
            &bearer(expiring["key"].as_str().unwrap()),
            json!({"description": "child", "role": "viewer", "project": "proj"}),
        ),
        201,
    );
    assert_eq!(child["expires_at"], expiring["expires_at"], "{child}");
    // It sees and revokes only keys that expire no later than itself: never a key that would
    // outlive it (the project admin key never expires).
    let ek = bearer(expiring["key"].as_str().unwrap());
    let listed = ids(&expect(
        with_auth(&s, "GET", "/api/v1/keys", &ek, None),
        200,
    ));
    assert!(listed.contains(&id(&child)), "{listed:?}");
    assert!(!listed.contains(&id(&proj_admin)), "{listed:?}");
    expect_error(revoke(&ek, &id(&proj_admin)), 404, "not_found");
    expect(s.get(proj_admin["key"].as_str().unwrap(), P), 200);
    expect(revoke(&ek, &id(&child)), 200);

    // #13: at most 8 wildcards in a key's glob.
    let e = expect_error(
        create(
            &bearer(ADMIN),
            json!({"description": "x", "role": "viewer", "project": "proj", "pattern": "*a*b*c*d*e*f*g*h*"}),
        ),
        400,
        "invalid_input",
    );
    assert!(e["message"].as_str().unwrap().contains("pattern"), "{e}");
    let ok = expect(
        create(
            &bearer(ADMIN),
            json!({"description": "x", "role": "viewer", "project": "proj", "pattern": "a*b*c*d*e*f*g*h?"}),
        ),
        201,
    );
    // The compiled glob (cached per key) still restricts the key on every request.
    let k = ok["key"].as_str().unwrap();
    for _ in 0..3 {
        expect_error(s.get(k, &format!("{P}/zzz/latest")), 403, "forbidden");
    }
}

// ---------------------------------------------------------------------------------------------
// #2, #5, #4 (OIDC), #11, #17 (OIDC principal ids): OIDC tokens.

fn oidc_server(b: Backend, gh: &JwksServer, gl: &JwksServer, can_create_keys: bool) -> Server {
    let mut extra: Vec<String> = [
        "--github-oidc-issuer",
        &gh.url,
        // Two mappings that each grant part of what the token may do; the union applies,
        // whatever their order.
        "--github-oidc",
        "org/repo:proj:promoter:refs/heads/main",
        "--github-oidc",
        "org/repo:other:viewer",
        "--github-oidc",
        "org/admin:proj:admin",
        "--gitlab-oidc-issuer",
        &gl.url,
        "--gitlab-oidc",
        "g/p:proj:promoter:main",
        "--gitlab-oidc",
        "g/p:proj:viewer",
        "--gitlab-oidc",
        "g/p:other:contributor:release/*:protected",
        "--jwks-min-refresh-interval",
        "1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if can_create_keys {
        extra.push("--oidc-can-create-keys".into());
        extra.push("true".into());
    }
    let refs: Vec<&str> = extra.iter().map(String::as_str).collect();
    Server::start_with(b, &args_of(&refs))
}

fn gh_token(gh: &JwksServer, key: &RsaKey, repo: &str, git_ref: &str) -> String {
    let t = sign(
        key,
        Algorithm::RS256,
        &json!({
            "sub": format!("repo:{repo}:ref:{git_ref}"), "repository": repo, "ref": git_ref,
            "iss": gh.url, "aud": "perfgate", "exp": now() + 600, "iat": now(),
        }),
    );
    format!("Token {t}")
}

fn gl_token(gl: &JwksServer, key: &RsaKey, extra: Value) -> String {
    let mut c = json!({
        "sub": "project_path:g/p", "project_path": "g/p",
        "iss": gl.url, "aud": "perfgate", "exp": now() + 600, "iat": now(),
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    format!("Token {}", sign(key, Algorithm::RS256, &c))
}

fn oidc_grants_refs_and_keys(b: Backend) {
    let rsa = rsa_key("gh-1");
    let gl_key = rsa_key("gl-1");
    let gh = JwksServer::start(&[&rsa]);
    let gl = JwksServer::start(&[&gl_key]);
    let s = oidc_server(b, &gh, &gl, false);
    expect(
        s.upload(ADMIN, "proj", "bench-a", Some("v1"), &receipt()),
        201,
    );
    expect(
        s.upload(ADMIN, "other", "bench-a", Some("v1"), &receipt()),
        201,
    );
    let promote = |auth: &str, to: &str| {
        with_auth(
            &s,
            "POST",
            &format!("{P}/bench-a/promote"),
            auth,
            Some(&json!({"from_version": "v1", "to_version": to, "tags": []})),
        )
    };
    let other_latest = "/api/v1/projects/other/baselines/bench-a/latest";

    // #5: main may promote on proj (one mapping) and read other (another mapping).
    let main = gh_token(&gh, &rsa, "org/repo", "refs/heads/main");
    expect(promote(&main, "from-main"), 201);
    expect(with_auth(&s, "GET", other_latest, &main, None), 200);
    let e = expect_error(
        with_auth(
            &s,
            "POST",
            "/api/v1/projects/other/baselines",
            &main,
            Some(&upload_body("bench-a", Some("x"), &receipt())),
        ),
        403,
        "forbidden",
    );
    assert_eq!(e["message"], "Requires 'write' permission");
    // A pull request gets only the other project's viewer grant.
    let pr = gh_token(&gh, &rsa, "org/repo", "refs/pull/7/merge");
    expect(with_auth(&s, "GET", other_latest, &pr, None), 200);
    expect_error(promote(&pr, "from-pr"), 403, "forbidden");

    // #17: OIDC principals carry their issuer (audit actor, rate-limit key).
    let audit = expect(s.get(ADMIN, "/api/v1/audit?action=promote"), 200);
    assert_eq!(
        audit["events"][0]["actor"],
        format!("oidc:{}:repo:org/repo:ref:refs/heads/main", gh.url)
    );
    let who = expect(with_auth(&s, "GET", "/api/v1/whoami", &main, None), 200);
    assert_eq!(
        who["id"],
        format!("oidc:{}:repo:org/repo:ref:refs/heads/main", gh.url)
    );

    // #2: GitLab's bare `ref` of a tag named like a branch does not match a branch pattern.
    let tag_main = gl_token(&gl, &gl_key, json!({"ref": "main", "ref_type": "tag"}));
    let e = expect_error(promote(&tag_main, "from-tag"), 403, "forbidden");
    assert_eq!(e["message"], "Requires 'promote' permission");
    let tag_path = gl_token(
        &gl,
        &gl_key,
        json!({"ref": "main", "ref_type": "tag", "ref_path": "refs/tags/main"}),
    );
    expect_error(promote(&tag_path, "from-tag-path"), 403, "forbidden");
    let branch_main = gl_token(&gl, &gl_key, json!({"ref": "main", "ref_type": "branch"}));
    expect(promote(&branch_main, "from-branch"), 201);
    // `:protected`: only a protected ref gets that mapping's grant.
    let upload_other = |auth: &str, v: &str| {
        with_auth(
            &s,
            "POST",
            "/api/v1/projects/other/baselines",
            auth,
            Some(&upload_body("bench-a", Some(v), &receipt())),
        )
    };
    let release = |protected: &str| {
        gl_token(
            &gl,
            &gl_key,
            json!({"ref": "release/1", "ref_type": "branch", "ref_protected": protected}),
        )
    };
    expect_error(
        upload_other(&release("false"), "unprotected"),
        403,
        "forbidden",
    );
    expect(upload_other(&release("true"), "protected"), 201);

    // #4: an OIDC token, even an admin one, creates no key unless configured.
    let admin_job = gh_token(&gh, &rsa, "org/admin", "refs/heads/main");
    let e = expect_error(
        with_auth(
            &s,
            "POST",
            "/api/v1/keys",
            &admin_job,
            Some(&json!({"description": "from ci", "role": "viewer", "project": "proj"})),
        ),
        403,
        "forbidden",
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("oidc_can_create_keys"),
        "{e}"
    );

    // #11: a JWKS answer without usable keys keeps the keys held.
    gh.publish(&[]);
    std::thread::sleep(Duration::from_millis(1100));
    let stranger = rsa_key("unknown-kid");
    expect_error(
        promote(
            &gh_token(&gh, &stranger, "org/repo", "refs/heads/main"),
            "x",
        ),
        401,
        "unauthorized",
    );
    assert!(
        *gh.hits.lock().unwrap() >= 2,
        "the unknown kid caused a refresh"
    );
    expect(with_auth(&s, "GET", other_latest, &main, None), 200);
}

/// With `oidc_can_create_keys`, an admin mapping may create keys, capped at the token's expiry.
#[test]
fn oidc_key_creation_when_configured() {
    let rsa = rsa_key("gh-1");
    let gl_key = rsa_key("gl-1");
    let gh = JwksServer::start(&[&rsa]);
    let gl = JwksServer::start(&[&gl_key]);
    let s = oidc_server(Backend::Memory, &gh, &gl, true);
    let admin_job = gh_token(&gh, &rsa, "org/admin", "refs/heads/main");
    let k = expect(
        with_auth(
            &s,
            "POST",
            "/api/v1/keys",
            &admin_job,
            Some(&json!({"description": "from ci", "role": "viewer", "project": "proj"})),
        ),
        201,
    );
    assert!(k["expires_at"].is_string(), "{k}");
}

/// #17: `whoami` reports a JWT's scopes as they are, and no role it does not hold.
#[test]
fn whoami_reports_token_scopes_faithfully() {
    let s = Server::start_with(Backend::Memory, &args_of(&["--jwt-secret", JWT_SECRET]));
    let t = format!("Token {}", jwt("proj", &["read", "delete"], 600));
    let v = expect(with_auth(&s, "GET", "/api/v1/whoami", &t, None), 200);
    assert_eq!(v["scopes"], json!(["read", "delete"]));
    assert_eq!(v["role"], "custom");
    let t = format!("Token {}", jwt("proj", &["read", "write"], 600));
    let v = expect(with_auth(&s, "GET", "/api/v1/whoami", &t, None), 200);
    assert_eq!(v["role"], "contributor");
}

/// #14 and #17: configurations that would weaken authentication stop start-up.
#[test]
fn unsafe_credentials_refuse_to_start() {
    // An unbalanced `)` would close the implicit anchoring and let the key read everything.
    let line = refused_start(&[
        "--storage-type".into(),
        "memory".into(),
        "--api-keys".into(),
        "viewer:pg_live_viewerviewerviewerviewerviewer01:proj:bench-a)|(.*".into(),
    ]);
    assert!(
        line.contains("--api-keys entry #1") && line.contains("regex"),
        "{line}"
    );
    assert!(!line.contains("viewerviewer"), "the key leaked: {line}");
    // Signing keys over plain http from another host.
    let line = refused_start(&[
        "--storage-type".into(),
        "memory".into(),
        "--oidc-provider".into(),
        "issuer=https://idp.example,jwks_url=http://idp.example/keys,audience=a,claim=team,mapping=t:proj:viewer".into(),
    ]);
    assert!(line.contains("https://"), "{line}");
}

// ---------------------------------------------------------------------------------------------
// #16: limits above a list's maximum are capped, and the page says so.

#[test]
fn limits_above_the_maximum_are_capped() {
    let s = Server::start(Backend::Memory);
    expect(
        s.upload(ADMIN, "proj", "bench-a", Some("v1"), &receipt()),
        201,
    );
    for (path, max) in [
        (P.to_owned(), 1000),
        ("/api/v1/projects/proj/verdicts".to_owned(), 1000),
        ("/api/v1/audit".to_owned(), 1000),
        ("/api/v1/projects/proj/gates".to_owned(), 200),
        (
            "/api/v1/projects/proj/benchmarks/bench-a/history".to_owned(),
            200,
        ),
    ] {
        let v = expect(s.get(ADMIN, &format!("{path}?limit=1000000")), 200);
        assert_eq!(v["pagination"]["limit"], max, "{path}: {v}");
        expect_error(
            s.get(ADMIN, &format!("{path}?limit=0")),
            400,
            "invalid_input",
        );
    }
    for path in [
        "/api/v1/fleet/alerts",
        "/api/v1/fleet/dependency/serde/impact",
    ] {
        expect(s.get(ADMIN, &format!("{path}?limit=1000000")), 200);
        expect_error(
            s.get(ADMIN, &format!("{path}?limit=-5")),
            400,
            "invalid_input",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// #3, #15: Idempotency-Key records are the caller's own, and a replay tells the truth.

fn idempotency_is_per_caller_and_truthful(b: Backend) {
    let s = Server::start(b);
    let post = |key: &str, idem: &str, body: &Value| {
        s.http
            .post(s.url(P))
            .bearer_auth(key)
            .header("idempotency-key", idem)
            .json(body)
            .send()
            .unwrap()
    };
    let body = upload_body("bench-a", None, &receipt());
    let first = expect(post(CONTRIB, "shared-key", &body), 201);
    let replay = expect(post(CONTRIB, "shared-key", &body), 201);
    assert_eq!(
        replay["id"], first["id"],
        "the same caller's retry is replayed"
    );
    // Another caller in the same project with the same key: its own upload, not a replay of
    // (or a conflict with) someone else's.
    let other = expect(post(PROMOTER, "shared-key", &body), 201);
    assert_ne!(other["id"], first["id"]);
    let other_body = upload_body("bench-b", None, &receipt());
    let other2 = expect(post(ADMIN, "shared-key", &other_body), 201);
    assert_eq!(other2["benchmark"], "bench-b");

    // A replay after the baseline was deleted answers what is true now.
    let v9 = upload_body("bench-a", Some("v9"), &receipt());
    expect(post(ADMIN, "k-deleted", &v9), 201);
    expect(s.delete(ADMIN, &format!("{P}/bench-a/versions/v9")), 200);
    let e = expect_error(post(ADMIN, "k-deleted", &v9), 409, "conflict");
    let m = e["message"].as_str().unwrap();
    assert!(m.contains("deleted") && m.contains("bench-a/v9"), "{e}");

    // Two keys, or two credentials, in one request: refused, nothing stored.
    let v10 = upload_body("bench-a", Some("v10"), &receipt());
    let two_keys = s
        .http
        .post(s.url(P))
        .bearer_auth(ADMIN)
        .header("idempotency-key", "k1")
        .header("idempotency-key", "k2")
        .json(&v10)
        .send()
        .unwrap();
    let e = expect_error(two_keys, 400, "invalid_input");
    assert_eq!(e["details"]["field"], "Idempotency-Key", "{e}");
    let two_credentials = s
        .http
        .post(s.url(P))
        .header("authorization", format!("Bearer {VIEWER}"))
        .header("authorization", format!("Bearer {ADMIN}"))
        .json(&v10)
        .send()
        .unwrap();
    let e = expect_error(two_credentials, 401, "unauthorized");
    assert!(
        e["message"].as_str().unwrap().contains("More than one"),
        "{e}"
    );
    // A key is 1-255 visible characters: a space is none.
    let e = expect_error(post(ADMIN, "spaced key", &v10), 400, "invalid_input");
    assert_eq!(e["details"]["field"], "Idempotency-Key", "{e}");
    // A body in a coding the server would not decode, or not UTF-8 even where no field is read.
    let raw = serde_json::to_vec(&v10).unwrap();
    let send_raw = |encoding: Option<&str>, body: Vec<u8>| {
        let mut r = s
            .http
            .post(s.url(P))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(body);
        if let Some(e) = encoding {
            r = r.header("content-encoding", e);
        }
        r.send().unwrap()
    };
    let e = expect_error(
        send_raw(Some("br"), raw.clone()),
        415,
        "unsupported_media_type",
    );
    assert!(e["message"].as_str().unwrap().contains("\"br\""), "{e}");
    let mut not_utf8 = b"{\"x-note\":\"\xff\xfe\",".to_vec();
    not_utf8.extend_from_slice(&raw[1..]);
    let e = expect_error(send_raw(None, not_utf8), 400, "invalid_input");
    assert!(e["message"].as_str().unwrap().contains("UTF-8"), "{e}");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    let stored = expect(send_raw(Some("gzip"), gz.finish().unwrap()), 201);
    assert_eq!(stored["version"], "v10");
    expect(s.delete(ADMIN, &format!("{P}/bench-a/versions/v10")), 200);
    expect_error(
        s.get(ADMIN, &format!("{P}/bench-a/versions/v10")),
        404,
        "not_found",
    );
}

// ---------------------------------------------------------------------------------------------
// #8, #9: names that cannot be told apart, or read back, are refused (400 naming the field).

fn reserved_and_invisible_names_are_refused(b: Backend) {
    let s = Server::start(b);
    let bad_upload = |benchmark: &str, version: &str, field: &str| {
        let e = expect_error(
            s.upload(ADMIN, "proj", benchmark, Some(version), &receipt()),
            400,
            "invalid_input",
        );
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("Invalid {field}:")),
            "{benchmark:?} {version:?}: {e}"
        );
    };
    bad_upload("bench-a", "latest", "version");
    bad_upload("bench-a/versions", "v1", "benchmark");
    for v in [
        "v1\u{202e}",
        "v\u{200b}1",
        "\u{2066}v1",
        "\u{feff}v1",
        " v1",
        "v1 ",
        "v1\u{a0}",
    ] {
        bad_upload("bench-a", v, "version");
    }
    // Metadata values without control characters.
    for value in ["a\u{7}b", "line\nbreak", "\u{1b}[31mred"] {
        let mut body = upload_body("bench-a", Some("m1"), &receipt());
        body["metadata"] = json!({ "note": value });
        let e = expect_error(s.post(ADMIN, P, &body), 400, "invalid_input");
        assert!(e["message"].as_str().unwrap().contains("metadata"), "{e}");
    }
    // A URL that percent-decodes to bytes that are not UTF-8 names nothing: actix reads `%FF`
    // and `%C0` as U+FFFD, which would name a version stored as "\u{fffd}".
    expect(
        s.upload(ADMIN, "proj", "bench-u", Some("\u{fffd}"), &receipt()),
        201,
    );
    expect(
        s.get(ADMIN, &format!("{P}/bench-u/versions/%EF%BF%BD")),
        200,
    );
    for path in [
        format!("{P}/bench-u/versions/%FF"),
        format!("{P}/bench-u/versions/%C0"),
        "/api/v1/fleet/dependency/%FF%FE/impact".to_owned(),
        "/api/v1/projects/proj/benchmarks/bench-u/change-points?runner=%FF".to_owned(),
    ] {
        let e = expect_error(s.get(ADMIN, &path), 400, "invalid_input");
        assert!(
            e["message"].as_str().unwrap().contains("UTF-8"),
            "{path}: {e}"
        );
    }
    expect_error(
        s.delete(ADMIN, &format!("{P}/bench-u/versions/%FE")),
        400,
        "invalid_input",
    );
    expect(
        s.get(ADMIN, &format!("{P}/bench-u/versions/%EF%BF%BD")),
        200,
    );
    // What stays allowed is read back by the paths that name it.
    expect(
        s.upload(ADMIN, "proj", "bench-a", Some("v 1"), &receipt()),
        201,
    );
    expect(s.get(ADMIN, &format!("{P}/bench-a/versions/v%201")), 200);
    expect(
        s.upload(ADMIN, "proj", "a/versions/b", Some("v1"), &receipt()),
        201,
    );
    expect(s.get(ADMIN, &format!("{P}/a/versions/b/latest")), 200);
    expect(s.get(ADMIN, &format!("{P}/a/versions/b/versions/v1")), 200);
    expect(
        s.delete(ADMIN, &format!("{P}/a/versions/b/versions/v1")),
        200,
    );
    // Promote to a reserved version: 400 naming to_version.
    let e = expect_error(
        s.post(
            ADMIN,
            &format!("{P}/bench-a/promote"),
            &json!({"from_version": "v 1", "to_version": "latest", "tags": []}),
        ),
        400,
        "invalid_input",
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid to_version:"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// #6, #7: fleet alerts show a restricted caller only what it may see; recording is audited.

fn fleet_first_seen_and_audit(b: Backend) {
    let s = Server::start_with(
        b,
        &args_of(&["--api-keys", &format!("admin:{NARROW_ADMIN}::bench-.*")]),
    );
    let record = |project: &str, benchmark: &str, rid: &str| {
        let r = s
            .http
            .post(s.url("/api/v1/fleet/dependency-event"))
            .bearer_auth(ADMIN)
            .header("x-request-id", rid)
            .json(&json!({
                "project": project, "benchmark": benchmark, "metric": "wall_ms", "delta_pct": 5.0,
                "dependency_changes": [{"name": "serde", "old_version": "1", "new_version": "2"}],
            }))
            .send()
            .unwrap();
        expect(r, 201);
    };
    let since = chrono::Utc::now() - chrono::Duration::seconds(5);
    // Regressions of a benchmark the narrow caller cannot see come first…
    record("p1", "secret-x", "rec-1");
    record("p2", "secret-x", "rec-2");
    std::thread::sleep(Duration::from_millis(1100));
    let before_visible = chrono::Utc::now();
    // …then those of benchmarks it can see.
    record("p1", "bench-a", "rec-3");
    record("p2", "bench-a", "rec-4");
    let q = format!(
        "/api/v1/fleet/alerts?since={}",
        since.to_rfc3339().replace('+', "%2B")
    );
    let all = expect(s.get(ADMIN, &q), 200);
    let narrow = expect(s.get(NARROW_ADMIN, &q), 200);
    let first = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v["alerts"][0]["first_seen"].as_str().unwrap())
            .unwrap()
    };
    assert!(first(&all) < before_visible, "{all}");
    assert!(
        first(&narrow) >= before_visible,
        "first_seen comes from events the caller cannot see: {narrow}"
    );
    // Every recording wrote one audit event, with its actor and request id.
    let audit = expect(
        s.get(ADMIN, "/api/v1/audit?resource_type=dependency_event"),
        200,
    );
    assert_eq!(audit["pagination"]["total"], 4, "{audit}");
    let e = &audit["events"][0];
    assert_eq!(e["action"], "create");
    assert_eq!(e["project"], "p2");
    assert_eq!(e["metadata"]["benchmark"], "bench-a");
    assert_eq!(e["metadata"]["dependencies"], json!(["serde"]));
    assert_eq!(e["metadata"]["client_request_id"], "rec-4");
    // #17: the audit's request id is the server's own, not the client's choice.
    assert_ne!(e["metadata"]["request_id"], "rec-4");
    assert_eq!(e["metadata"]["request_id"].as_str().unwrap().len(), 32);
    assert_eq!(e["actor"].as_str().unwrap().len(), 32);
}

// ---------------------------------------------------------------------------------------------
// #10: a database with data but no key gets no bootstrap key; #17: the SQLite file is private.

/// The storage arguments of a backend that outlives one server process.
fn lasting_storage(b: &Backend) -> Option<Vec<String>> {
    match b {
        Backend::Memory => None,
        Backend::Sqlite => {
            let dir = temp_dir("bootstrap");
            Some(vec![
                "--storage-type".into(),
                "sqlite".into(),
                "--database-url".into(),
                dir.join("perfgate.db").to_string_lossy().into_owned(),
            ])
        }
        Backend::SqliteAt(p) => Some(vec!["--database-url".into(), p.clone()]),
        Backend::Postgres(url) => Some(vec![
            "--storage-type".into(),
            "postgres".into(),
            "--database-url".into(),
            url.clone(),
        ]),
    }
}

fn bootstrap_only_on_a_fresh_database(b: Backend) {
    let Some(storage) = lasting_storage(&b) else {
        return; // memory starts empty every time
    };
    let db_path = match &b {
        Backend::Sqlite => Some(storage[3].clone()),
        _ => None,
    };
    // Data written with configured keys…
    let backend = match &b {
        Backend::Sqlite => Backend::SqliteAt(storage[3].clone()),
        other => other.clone(),
    };
    {
        let s = Server::start(backend);
        expect(
            s.upload(ADMIN, "proj", "bench-a", Some("v1"), &receipt()),
            201,
        );
        if let Some(p) = &db_path {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                for f in [p.clone(), format!("{p}-wal")] {
                    let mode = std::fs::metadata(&f).unwrap().permissions().mode();
                    assert_eq!(mode & 0o077, 0, "{f} is readable by others: {mode:o}");
                }
            }
        }
    }
    // …then a restart without any credential: no admin key for whoever reads the log.
    let line = refused_start(&storage);
    assert!(line.contains("holds data but no API key"), "{line}");
    assert!(!line.contains("pg_live_"), "{line}");
    // Once the database holds a key, a restart without credentials uses the stored keys.
    let out = Command::new(env!("CARGO_BIN_EXE_perfgate-server"))
        .args([
            "keys",
            "create",
            "--role",
            "admin",
            "--project",
            "*",
            "--description",
            "ops",
        ])
        .args(&storage)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let s = Server::start_with(
        match &b {
            Backend::Sqlite => Backend::SqliteAt(storage[3].clone()),
            other => other.clone(),
        },
        &[],
    );
    expect(s.get(&key, &format!("{P}/bench-a/latest")), 200);
    assert!(!s.log().contains("bootstrap admin key"), "{}", s.log());
    if let Some(p) = db_path {
        let _ = std::fs::remove_dir_all(std::path::Path::new(&p).parent().unwrap());
    }
}

/// A truly fresh database still gets its bootstrap key.
#[test]
fn fresh_database_gets_a_bootstrap_key() {
    let s = Server::start_with(Backend::Sqlite, &[]);
    assert!(s.log().contains("bootstrap admin key"), "{}", s.log());
}

// BACKEND-TESTS
backend_tests!(
    key_admins_manage_only_keys_no_wider,
    oidc_grants_refs_and_keys,
    idempotency_is_per_caller_and_truthful,
    reserved_and_invisible_names_are_refused,
    fleet_first_seen_and_audit,
    bootstrap_only_on_a_fresh_database,
);
