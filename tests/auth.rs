//! Identity and access (contract §2, §8): the authorization matrix, JWT and OIDC tokens, key
//! management, the audit log and the operator commands, over real HTTP.

mod common;

use std::time::Duration;

use common::tokens::*;
use common::*;
use jsonwebtoken::Algorithm;

const P: &str = "/api/v1/projects/proj/baselines";
const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0001";
const ISSUER: &str = "perfgate-test";
const AUDIENCE: &str = "perfgate";

fn receipt() -> Value {
    fixture("run-bench-a-1.json")
}

/// A server with the standard keys, HS256 JWTs, a GitHub-style provider (RS256) and a custom
/// provider (ES256), both served by `jwks`.
fn auth_server(b: Backend, gh: &JwksServer, custom: &JwksServer) -> Server {
    let mut args: Vec<String> = Vec::new();
    for k in standard_keys() {
        args.push("--api-keys".into());
        args.push(k);
    }
    for a in [
        "--jwt-secret",
        JWT_SECRET,
        "--jwt-issuer",
        ISSUER,
        "--jwt-audience",
        AUDIENCE,
        "--github-oidc-issuer",
        &gh.url,
        "--github-oidc",
        "org/repo:proj:promoter:refs/heads/main",
        "--github-oidc",
        "org/repo:proj:viewer",
        "--jwks-min-refresh-interval",
        "1",
    ] {
        args.push(a.to_owned());
    }
    args.push("--oidc-provider".into());
    args.push(format!(
        "issuer={u},jwks_url={u}/keys,audience=perfgate-custom,claim=team,mapping=core:proj:contributor",
        u = custom.url
    ));
    Server::start_with(b, &args)
}

fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

fn jwt_claims(scopes: &[&str]) -> Value {
    json!({
        "sub": "ci-bot", "project_id": "proj", "scopes": scopes,
        "exp": now() + 600, "iat": now(), "iss": ISSUER, "aud": [AUDIENCE],
    })
}

fn gh_claims(git_ref: &str) -> Value {
    json!({
        "sub": "repo:org/repo:ref:refs/heads/main", "repository": "org/repo", "ref": git_ref,
        "iss": "ISSUER", "aud": "perfgate", "exp": now() + 600, "iat": now(),
    })
}

fn gh_token(gh: &JwksServer, key: &RsaKey, git_ref: &str) -> String {
    let mut c = gh_claims(git_ref);
    c["iss"] = json!(gh.url);
    sign(key, Algorithm::RS256, &c)
}

fn send(
    s: &Server,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&Value>,
) -> Response {
    let mut r = match method {
        "GET" => s.http.get(s.url(path)),
        "POST" => s.http.post(s.url(path)),
        "DELETE" => s.http.delete(s.url(path)),
        m => panic!("{m}"),
    };
    if let Some(a) = auth {
        r = r.header("authorization", a);
    }
    if let Some(b) = body {
        r = r.json(b);
    }
    r.send().unwrap()
}

fn create_key(s: &Server, admin: &str, body: Value) -> Value {
    expect(s.post(admin, "/api/v1/keys", &body), 201)
}

fn authorization_matrix(b: Backend) {
    let rsa = rsa_key("gh-1");
    let ec = ec_key("custom-1");
    let gh = JwksServer::start(&[&rsa]);
    let custom = JwksServer::start(&[&ec]);
    let s = auth_server(b, &gh, &custom);
    expect(
        s.upload(ADMIN, "proj", "bench-a", Some("v1"), &receipt()),
        201,
    );
    expect(
        s.upload(ADMIN, "other", "bench-a", Some("v1"), &receipt()),
        201,
    );
    // Keys stored in the database: one admin of proj, one revoked, one about to expire.
    let project_admin = create_key(
        &s,
        ADMIN,
        json!({"description": "proj admin", "role": "admin", "project": "proj"}),
    );
    let revoked = create_key(
        &s,
        ADMIN,
        json!({"description": "gone", "role": "admin", "project": "*"}),
    );
    expect(
        s.delete(
            ADMIN,
            &format!("/api/v1/keys/{}", revoked["id"].as_str().unwrap()),
        ),
        200,
    );
    let expiring_at = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let expired = create_key(
        &s,
        ADMIN,
        json!({"description": "short-lived", "role": "admin", "project": "*", "expires_at": expiring_at.to_rfc3339()}),
    );
    let bearer = |k: &Value| format!("Bearer {}", k["key"].as_str().unwrap());
    let jwt = format!("Token {}", hs256(&jwt_claims(&["read", "write"])));
    let oidc = format!("Token {}", gh_token(&gh, &rsa, "refs/heads/main"));
    std::thread::sleep(Duration::from_millis(1600));

    let b = |k: &str| format!("Bearer {k}");
    let creds: Vec<(&str, Option<String>)> = vec![
        ("none", None),
        ("malformed", Some("Bearer not-a-key".into())),
        (
            "unknown",
            Some(b("pg_live_unknownunknownunknownunknownunkn")),
        ),
        ("revoked", Some(bearer(&revoked))),
        ("expired", Some(bearer(&expired))),
        ("viewer", Some(b(VIEWER))),
        ("contributor", Some(b(CONTRIB))),
        ("restricted", Some(b(RESTRICTED))),
        ("promoter", Some(b(PROMOTER))),
        ("other-admin", Some(b(OTHER_ADMIN))),
        ("project-admin", Some(bearer(&project_admin))),
        ("global-admin", Some(b(ADMIN))),
        ("jwt", Some(jwt)),
        ("oidc", Some(oidc)),
    ];
    let upload = upload_body("bench-a", None, &receipt());
    let promote = json!({"from_version": "nope", "to_version": "x", "tags": []});
    let new_key = json!({"description": "matrix", "role": "viewer", "project": "proj"});
    let missing_key = "/api/v1/keys/00000000000000000000000000000000".to_owned();
    let verdict = json!({
        "benchmark": "bench-a", "run_id": "r1", "status": "pass",
        "counts": {"pass": 1, "warn": 0, "fail": 0, "skip": 0}, "reasons": [],
    });
    let dep_event = json!({
        "project": "proj", "benchmark": "bench-a", "metric": "wall_ms", "delta_pct": 5.0,
        "dependency_changes": [{"name": "serde", "old_version": "1", "new_version": "2"}],
    });
    type Route<'a> = (&'a str, &'a str, String, Option<&'a Value>);
    let routes: Vec<Route> = vec![
        ("list", "GET", P.to_owned(), None),
        ("upload", "POST", P.to_owned(), Some(&upload)),
        ("latest", "GET", format!("{P}/bench-a/latest"), None),
        ("version", "GET", format!("{P}/bench-a/versions/v1"), None),
        (
            "delete",
            "DELETE",
            format!("{P}/bench-a/versions/nope"),
            None,
        ),
        (
            "promote",
            "POST",
            format!("{P}/bench-a/promote"),
            Some(&promote),
        ),
        ("keys-create", "POST", "/api/v1/keys".into(), Some(&new_key)),
        ("keys-list", "GET", "/api/v1/keys".into(), None),
        ("keys-revoke", "DELETE", missing_key, None),
        ("audit", "GET", "/api/v1/audit".into(), None),
        ("health", "GET", "/health".into(), None),
        ("info", "GET", "/api/v1/info".into(), None),
        (
            "verdict-submit",
            "POST",
            "/api/v1/projects/proj/verdicts".into(),
            Some(&verdict),
        ),
        (
            "verdict-list",
            "GET",
            "/api/v1/projects/proj/verdicts".into(),
            None,
        ),
        (
            "trend",
            "GET",
            format!("{P}/bench-a/trend?metric=wall_ms"),
            None,
        ),
        (
            "fleet-record",
            "POST",
            "/api/v1/fleet/dependency-event".into(),
            Some(&dep_event),
        ),
        ("fleet-alerts", "GET", "/api/v1/fleet/alerts".into(), None),
        (
            "fleet-impact",
            "GET",
            "/api/v1/fleet/dependency/serde/impact".into(),
            None,
        ),
        ("whoami", "GET", "/api/v1/whoami".into(), None),
        ("projects", "GET", "/api/v1/projects".into(), None),
        (
            "project-benchmarks",
            "GET",
            "/api/v1/projects/proj/benchmarks".into(),
            None,
        ),
        (
            "history",
            "GET",
            "/api/v1/projects/proj/benchmarks/bench-a/history".into(),
            None,
        ),
    ];
    const DENIED: [u16; 22] = [
        401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 200, 200, 401, 401, 401, 401, 401, 401,
        401, 401, 401, 401,
    ];
    #[rustfmt::skip]
    let expected: Vec<(&str, [u16; 22])> = vec![
        //                list upload latest version delete promote k-create k-list k-revoke audit health info v-submit v-list trend f-record f-alerts f-impact whoami projects p-bench history
        ("none", DENIED),
        ("malformed", DENIED),
        ("unknown", DENIED),
        ("revoked", DENIED),
        ("expired", DENIED),
        ("viewer",        [200, 403, 200, 200, 403, 403, 403, 403, 403, 403, 200, 200, 403, 200, 200, 403, 200, 200, 200, 200, 200, 200]),
        ("contributor",   [200, 201, 200, 200, 403, 403, 403, 403, 403, 403, 200, 200, 201, 200, 200, 201, 200, 200, 200, 200, 200, 200]),
        ("restricted",    [200, 201, 200, 200, 403, 403, 403, 403, 403, 403, 200, 200, 201, 200, 200, 201, 403, 403, 200, 200, 200, 200]),
        ("promoter",      [200, 201, 200, 200, 403, 404, 403, 403, 403, 403, 200, 200, 201, 200, 200, 201, 200, 200, 200, 200, 200, 200]),
        ("other-admin",   [403, 403, 403, 403, 403, 403, 403, 200, 404, 200, 200, 200, 403, 403, 403, 403, 403, 403, 200, 200, 403, 403]),
        ("project-admin", [200, 201, 200, 200, 404, 404, 201, 200, 404, 200, 200, 200, 201, 200, 200, 201, 403, 403, 200, 200, 200, 200]),
        ("global-admin",  [200, 201, 200, 200, 404, 404, 201, 200, 404, 200, 200, 200, 201, 200, 200, 201, 200, 200, 200, 200, 200, 200]),
        ("jwt",           [200, 201, 200, 200, 403, 403, 403, 403, 403, 403, 200, 200, 201, 200, 200, 201, 403, 403, 200, 200, 200, 200]),
        ("oidc",          [200, 201, 200, 200, 403, 404, 403, 403, 403, 403, 200, 200, 201, 200, 200, 201, 403, 403, 200, 200, 200, 200]),
    ];
    let mut failures = Vec::new();
    for ((name, auth), (ename, statuses)) in creds.iter().zip(&expected) {
        assert_eq!(name, ename);
        for ((route, method, path, body), want) in routes.iter().zip(statuses) {
            let r = send(&s, method, path, auth.as_deref(), *body);
            let got = r.status().as_u16();
            let text = r.text().unwrap_or_default();
            if got != *want {
                failures.push(format!("{name} × {route}: want {want}, got {got}: {text}"));
            } else if got >= 400 {
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if v["code"].as_str().is_none() || v["request_id"].as_str().is_none() {
                    failures.push(format!("{name} × {route}: not the JSON error: {text}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "authorization matrix:\n{}",
        failures.join("\n")
    );
    // The restricted key's list shows only the benchmarks it may see.
    expect(s.upload(ADMIN, "proj", "zeta", Some("v1"), &receipt()), 201);
    let l = expect(s.get(RESTRICTED, P), 200);
    let names: Vec<&str> = l["baselines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["benchmark"].as_str().unwrap())
        .collect();
    assert!(
        !names.is_empty() && names.iter().all(|n| n.starts_with("bench-")),
        "{names:?}"
    );
    assert_eq!(
        l["pagination"]["total"].as_u64().unwrap() as usize,
        names.len()
    );
}

/// Contract §2: scope, then project, then the benchmark filter, first failure wins. A caller
/// refused by its scope or its project hears 403 whatever the body holds (malformed JSON, the
/// wrong shape): the body is parsed only for callers who may write there. The benchmark filter,
/// which needs the body's benchmark, comes after the body's own errors. Query strings are
/// parsed after authentication and authorization too.
fn refusals_come_before_the_body(b: Backend) {
    let s = Server::start(b);
    expect(
        s.upload(ADMIN, "proj", "bench-a", Some("v1"), &receipt()),
        201,
    );
    let promote = format!("{P}/bench-a/promote");
    let gate = "0123456789abcdef0123456789abcdef";
    let attempts = format!("/api/v1/projects/proj/gates/{gate}/attempts");
    let transition = format!("/api/v1/projects/other/alerts/{gate}/transitions");
    let write = "Requires 'write' permission";
    let admin = "Requires 'admin' permission";
    let routes: [(&str, &str, &str); 11] = [
        ("POST", P, write),
        ("POST", "/api/v1/projects/proj/verdicts", write),
        ("POST", &promote, "Requires 'promote' permission"),
        ("POST", "/api/v1/projects/proj/gates", write),
        ("POST", &attempts, write),
        ("PUT", "/api/v1/projects/proj/gate-settings", admin),
        ("POST", "/api/v1/projects/proj/decisions", write),
        (
            "POST",
            "/api/v1/projects/proj/decisions/prune",
            "Requires 'delete' permission",
        ),
        ("POST", "/api/v1/fleet/dependency-event", write),
        ("POST", "/api/v1/keys", admin),
        ("POST", &transition, write),
    ];
    let send = |key: &str, method: &str, path: &str, body: &str| {
        s.send_raw(key, method, path, "application/json", body)
    };
    let project_viewer = create_key(
        &s,
        ADMIN,
        json!({"description": "proj viewer", "role": "viewer", "project": "proj"}),
    )["key"]
        .as_str()
        .unwrap()
        .to_owned();
    for (method, path, message) in routes {
        // The project-bound viewer is refused by its scope (on the other project's alert too:
        // the scope is checked first).
        for body in ["{", "[1, 2]", r#"{"benchmark": 5}"#, "{}"] {
            let r = send(&project_viewer, method, path, body);
            let status = r.status().as_u16();
            let v: Value = r.json().unwrap();
            assert_eq!(status, 403, "{method} {path} with {body}: {v}");
            assert_eq!(v["code"], "forbidden", "{v}");
            assert_eq!(v["message"], message, "{method} {path}: {v}");
        }
    }
    // A caller who may write there hears about its body.
    for (body, status) in [("{", 400), ("[1, 2]", 422), (r#"{"benchmark": 5}"#, 422)] {
        for path in [P, "/api/v1/projects/proj/verdicts"] {
            let r = send(CONTRIB, "POST", path, body);
            assert_eq!(r.status().as_u16(), status, "{path} with {body}");
            let v: Value = r.json().unwrap();
            assert_eq!(v["code"], "invalid_input", "{v}");
        }
    }
    // Another project's admin is refused by its project before the body.
    let r = send(OTHER_ADMIN, "POST", P, "{");
    assert_eq!(r.status(), 403);
    let v: Value = r.json().unwrap();
    assert_eq!(v["message"], "Key is restricted to project 'other'", "{v}");
    // The benchmark filter needs the body: a malformed body is 400 for a restricted writer, a
    // well-formed one naming a benchmark out of its reach is 403.
    let r = send(RESTRICTED, "POST", P, "{");
    assert_eq!(r.status(), 400);
    let outside = upload_body("zeta", None, &receipt());
    let r = send(RESTRICTED, "POST", P, &outside.to_string());
    assert_eq!(r.status(), 403);
    let v: Value = r.json().unwrap();
    assert_eq!(
        v["message"], "Key is restricted to benchmarks matching 'bench-.*'",
        "{v}"
    );
    // A body that is not JSON at all, or over the limit: 401 and 403 still come first.
    let big = format!(r#"{{"pad": "{}"}}"#, "x".repeat(3 * 1024 * 1024));
    for (key, status) in [
        ("pg_live_unknownunknownunknownunknownunkn", 401),
        (VIEWER, 403),
        (CONTRIB, 415),
    ] {
        let r = s.send_raw(key, "POST", P, "text/plain", "{");
        assert_eq!(r.status().as_u16(), status, "{key} text/plain");
        let r = send(key, "POST", P, &big);
        let want = if status == 415 { 413 } else { status };
        assert_eq!(r.status().as_u16(), want, "{key} oversized");
    }
    // Query strings likewise: 401 for a credential that resolves to no one, 403 for a caller
    // out of reach, and only then 400 for the query.
    let unknown = "pg_live_unknownunknownunknownunknownunkn";
    for path in [
        format!("{P}?limit=abc"),
        format!("{P}/bench-a/trend?window=x"),
        "/api/v1/projects/proj/verdicts?limit=abc".into(),
        "/api/v1/projects/proj/gates?offset=x".into(),
        "/api/v1/projects/proj/alerts?limit=x".into(),
        "/api/v1/projects/proj/decisions?limit=x".into(),
        "/api/v1/projects/proj/benchmarks/bench-a/history?limit=x".into(),
        "/api/v1/projects/proj/benchmarks/bench-a/change-points?metric=wall_ms&metric=cpu_ms"
            .into(),
        "/api/v1/audit?limit=x".into(),
        "/api/v1/fleet/alerts?min_affected=x".into(),
    ] {
        let r = s.get(unknown, &path);
        assert_eq!(r.status(), 401, "{path}");
        let v: Value = r.json().unwrap();
        assert_eq!(v["code"], "unauthorized", "{path}: {v}");
        let r = s.get(OTHER_ADMIN, &path);
        let (status, v): (u16, Value) = (r.status().as_u16(), r.json().unwrap());
        if path.contains("/audit") {
            // Another project's admin reads its own project's audit log: the query is its.
            assert_eq!(status, 400, "{path}: {v}");
        } else {
            assert_eq!(status, 403, "{path}: {v}");
        }
        if path.contains("/audit") || path.contains("/fleet") {
            // Reads of admins (the audit log) and of global readers (the fleet).
            let r = s.get(&project_viewer, &path);
            assert_eq!(r.status(), 403, "{path}");
        }
        let r = s.get(ADMIN, &path);
        let (status, v): (u16, Value) = (r.status().as_u16(), r.json().unwrap());
        assert_eq!(status, 400, "{path}: {v}");
        assert_eq!(v["code"], "invalid_input", "{path}: {v}");
    }
    let r = s
        .http
        .delete(s.url("/api/v1/admin/cleanup?older_than_days=x"))
        .bearer_auth(&project_viewer)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
}

fn hs256_tokens(b: Backend) {
    let rsa = rsa_key("gh-1");
    let gh = JwksServer::start(&[&rsa]);
    let custom = JwksServer::start(&[&ec_key("c")]);
    let s = auth_server(b, &gh, &custom);
    let latest_with =
        |auth: &str| send(&s, "GET", &format!("{P}/bench-a/latest"), Some(auth), None);
    expect(
        s.upload(ADMIN, "proj", "bench-a", Some("v1"), &receipt()),
        201,
    );
    let good = hs256(&jwt_claims(&["read"]));
    expect(latest_with(&format!("Token {good}")), 200);
    expect(latest_with(&format!("Bearer {good}")), 200);
    let cases: Vec<(&str, Value)> = vec![
        ("expired", json!({"exp": now() - 120})),
        ("not yet valid", json!({"nbf": now() + 3600})),
        ("wrong issuer", json!({"iss": "someone-else"})),
        ("missing issuer", json!({"iss": null})),
        ("wrong audience", json!({"aud": "other"})),
        ("missing audience", json!({"aud": null})),
        ("unknown scope", json!({"scopes": ["superuser"]})),
    ];
    for (what, patch) in cases {
        let mut c = jwt_claims(&["read"]);
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        let e = expect_error(
            latest_with(&format!("Token {}", hs256(&c))),
            401,
            "unauthorized",
        );
        assert!(
            e["message"].as_str().unwrap().starts_with("Invalid token"),
            "{what}: {e}"
        );
    }
    // Wrong algorithm (HS384 with the right secret), alg none, another secret, garbage.
    let hs384 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS384),
        &jwt_claims(&["read"]),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    expect_error(latest_with(&format!("Token {hs384}")), 401, "unauthorized");
    let parts: Vec<&str> = good.split('.').collect();
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
    expect_error(latest_with(&format!("Token {none}")), 401, "unauthorized");
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &jwt_claims(&["read", "write", "admin"]),
        &jsonwebtoken::EncodingKey::from_secret(b"a-completely-different-secret-000000"),
    )
    .unwrap();
    expect_error(latest_with(&format!("Token {forged}")), 401, "unauthorized");
    expect_error(latest_with("Token a.b.c"), 401, "unauthorized");
    // A signed token's `sub` names the principal (audit actor, idempotency records): a NUL,
    // which PostgreSQL cannot store, or an overlong one is refused up front.
    for (sub, says) in [
        (
            "ci\u{0}bot".to_owned(),
            "Invalid token: sub must not contain control characters",
        ),
        (
            "s".repeat(257),
            "Invalid token: sub must be at most 256 bytes",
        ),
        (String::new(), "Invalid token: sub must not be empty"),
    ] {
        let mut c = jwt_claims(&["read", "write"]);
        c["sub"] = json!(sub);
        let e = expect_error(
            latest_with(&format!("Token {}", hs256(&c))),
            401,
            "unauthorized",
        );
        assert_eq!(e["message"], says);
    }
    // Scopes and project come from the claims.
    let mut other = jwt_claims(&["read"]);
    other["project_id"] = json!("other");
    let e = expect_error(
        latest_with(&format!("Token {}", hs256(&other))),
        403,
        "forbidden",
    );
    assert_eq!(e["message"], "Key is restricted to project 'other'");
    let writer = format!("Token {}", hs256(&jwt_claims(&["read", "write"])));
    let r = send(
        &s,
        "POST",
        P,
        Some(&writer),
        Some(&upload_body("bench-a", Some("jwt-1"), &receipt())),
    );
    expect(r, 201);
    let audit = expect(s.get(ADMIN, "/api/v1/audit?actor=jwt:ci-bot"), 200);
    assert_eq!(audit["pagination"]["total"], 1);
}

fn oidc_tokens(b: Backend) {
    let rsa = rsa_key("gh-1");
    let ec = ec_key("custom-1");
    let gh = JwksServer::start(&[&rsa]);
    let custom = JwksServer::start(&[&ec]);
    let s = auth_server(b, &gh, &custom);
    expect(
        s.upload(ADMIN, "proj", "bench-a", Some("v1"), &receipt()),
        201,
    );
    let promote = |auth: &str, to: &str| {
        send(
            &s,
            "POST",
            &format!("{P}/bench-a/promote"),
            Some(auth),
            Some(&json!({"from_version": "v1", "to_version": to, "tags": []})),
        )
    };
    // main gets promoter; a pull request only viewer.
    let main = format!("Token {}", gh_token(&gh, &rsa, "refs/heads/main"));
    expect(promote(&main, "from-main"), 201);
    let pr = format!("Token {}", gh_token(&gh, &rsa, "refs/pull/7/merge"));
    let e = expect_error(promote(&pr, "from-pr"), 403, "forbidden");
    assert_eq!(e["message"], "Requires 'promote' permission");
    expect(
        send(&s, "GET", &format!("{P}/bench-a/latest"), Some(&pr), None),
        200,
    );
    let audit = expect(s.get(ADMIN, "/api/v1/audit?action=promote"), 200);
    assert_eq!(
        audit["events"][0]["actor"],
        format!("oidc:{}:repo:org/repo:ref:refs/heads/main", gh.url)
    );
    // A repository without a mapping.
    let mut c = gh_claims("refs/heads/main");
    c["iss"] = json!(gh.url);
    c["repository"] = json!("org/elsewhere");
    let e = expect_error(
        promote(&format!("Token {}", sign(&rsa, Algorithm::RS256, &c)), "x"),
        403,
        "forbidden",
    );
    assert!(e["message"].as_str().unwrap().contains("mapping"), "{e}");
    // Bad tokens.
    let bad = |patch: Value| {
        let mut c = gh_claims("refs/heads/main");
        c["iss"] = json!(gh.url);
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        format!("Token {}", sign(&rsa, Algorithm::RS256, &c))
    };
    for (what, token) in [
        ("expired", bad(json!({"exp": now() - 120}))),
        ("not yet valid", bad(json!({"nbf": now() + 3600}))),
        ("wrong audience", bad(json!({"aud": "someone-else"}))),
        (
            "unknown issuer",
            bad(json!({"iss": "https://issuer.invalid"})),
        ),
    ] {
        let e = expect_error(promote(&token, "x"), 401, "unauthorized");
        assert!(
            e["message"].as_str().unwrap().starts_with("Invalid token"),
            "{what}: {e}"
        );
    }
    // A `sub` the principal's id cannot hold.
    let token = bad(json!({"sub": "repo:org/repo\u{0}"}));
    let e = expect_error(promote(&token, "x"), 401, "unauthorized");
    assert_eq!(
        e["message"],
        "Invalid token: sub must not contain control characters"
    );
    // Missing issuer.
    let mut c = gh_claims("refs/heads/main");
    c.as_object_mut().unwrap().remove("iss");
    expect_error(
        promote(&format!("Token {}", sign(&rsa, Algorithm::RS256, &c)), "x"),
        401,
        "unauthorized",
    );
    // Unknown kid, and a known kid with a key the provider never published.
    let stranger = rsa_key("unknown-kid");
    expect_error(
        promote(
            &format!("Token {}", gh_token(&gh, &stranger, "refs/heads/main")),
            "x",
        ),
        401,
        "unauthorized",
    );
    let impostor = RsaKey {
        kid: "gh-1".into(),
        ..rsa_key("x")
    };
    expect_error(
        promote(
            &format!("Token {}", gh_token(&gh, &impostor, "refs/heads/main")),
            "x",
        ),
        401,
        "unauthorized",
    );
    // Wrong algorithm for the key: an ES256 signature under an RSA kid.
    let ec_as_gh = RsaKey {
        kid: "gh-1".into(),
        ..ec_key("y")
    };
    let mut c = gh_claims("refs/heads/main");
    c["iss"] = json!(gh.url);
    expect_error(
        promote(
            &format!("Token {}", sign(&ec_as_gh, Algorithm::ES256, &c)),
            "x",
        ),
        401,
        "unauthorized",
    );
    // Algorithm confusion: HS256 signed with the provider's public key as the secret.
    let confused = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some("gh-1".into()),
            ..jsonwebtoken::Header::new(Algorithm::HS256)
        },
        &c,
        &jsonwebtoken::EncodingKey::from_secret(rsa.jwk["n"].as_str().unwrap().as_bytes()),
    )
    .unwrap();
    expect_error(
        promote(&format!("Token {confused}"), "x"),
        401,
        "unauthorized",
    );
    // ES256 through the custom provider.
    let es = sign(
        &ec,
        Algorithm::ES256,
        &json!({"sub": "svc", "team": "core", "iss": custom.url, "aud": "perfgate-custom", "exp": now() + 600}),
    );
    let r = send(
        &s,
        "POST",
        P,
        Some(&format!("Bearer {es}")),
        Some(&upload_body("bench-a", Some("es"), &receipt())),
    );
    expect(r, 201);
    // Key rotation: a new kid published in the JWKS works without a restart.
    let rotated = rsa_key("gh-2");
    gh.publish(&[&rsa, &rotated]);
    std::thread::sleep(Duration::from_millis(1100)); // the on-demand refresh is rate-limited to 1/s here
    let t = format!("Token {}", gh_token(&gh, &rotated, "refs/heads/main"));
    expect(promote(&t, "after-rotation"), 201);
    assert!(*gh.hits.lock().unwrap() >= 2);
}

fn key_management(b: Backend) {
    let s = Server::start(b);
    // Validation.
    for body in [
        json!({"description": "  ", "role": "viewer", "project": "proj"}),
        json!({"description": "x", "role": "root", "project": "proj"}),
        json!({"description": "x", "role": "viewer", "project": "bad/proj"}),
        json!({"description": "x", "role": "viewer", "project": "proj", "pattern": "Bench[0-9]"}),
        json!({"description": "x", "role": "viewer", "project": "proj", "expires_at": "2001-01-01T00:00:00Z"}),
        json!({"description": "x", "role": "viewer", "project": "proj", "expires_at": "soon"}),
    ] {
        expect_error(s.post(ADMIN, "/api/v1/keys", &body), 400, "invalid_input");
    }
    expect_error(
        s.post(ADMIN, "/api/v1/keys", &json!({"role": "viewer"})),
        422,
        "invalid_input",
    );
    // Create: shown once, works at once, the pattern is a glob.
    let r = s.post(
        ADMIN,
        "/api/v1/keys",
        &json!({"description": "ci for render", "role": "contributor", "project": "proj", "pattern": "render/*"}),
    );
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let created = expect(r, 201);
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/v1/keys/{id}"));
    assert!(key.starts_with("pg_live_") && key.len() == 40, "{key}");
    assert_eq!(created["role"], "contributor");
    assert_eq!(created["project"], "proj");
    assert_eq!(created["pattern"], "render/*");
    assert!(created.get("expires_at").is_none());
    expect(
        s.upload(&key, "proj", "render/md", Some("v1"), &receipt()),
        201,
    );
    let e = expect_error(
        s.upload(&key, "proj", "bench-a", Some("v1"), &receipt()),
        403,
        "forbidden",
    );
    assert_eq!(
        e["message"],
        "Key is restricted to benchmarks matching 'render/*'"
    );
    // List: newest first, no secret, prefixes only.
    let proj_admin = create_key(
        &s,
        ADMIN,
        json!({"description": "pa", "role": "admin", "project": "proj"}),
    );
    let pa = proj_admin["key"].as_str().unwrap().to_owned();
    let global = create_key(
        &s,
        ADMIN,
        json!({"description": "global viewer", "role": "viewer", "project": "*"}),
    );
    let list = s.get(ADMIN, "/api/v1/keys").text().unwrap();
    assert!(
        !list.contains(&key) && !list.contains(&pa),
        "a key leaked into the list"
    );
    let list: Value = serde_json::from_str(&list).unwrap();
    let ids: Vec<&str> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            global["id"].as_str().unwrap(),
            proj_admin["id"].as_str().unwrap(),
            id.as_str()
        ]
    );
    assert!(list["keys"][2]["key_prefix"]
        .as_str()
        .unwrap()
        .starts_with("pg_live_"));
    // A project admin stays in its project.
    let own = expect(s.get(&pa, "/api/v1/keys"), 200);
    assert!(own["keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["project"] == "proj"));
    assert_eq!(own["keys"].as_array().unwrap().len(), 2);
    expect_error(
        s.post(
            &pa,
            "/api/v1/keys",
            &json!({"description": "x", "role": "admin", "project": "*"}),
        ),
        403,
        "forbidden",
    );
    expect_error(
        s.post(
            &pa,
            "/api/v1/keys",
            &json!({"description": "x", "role": "viewer", "project": "other"}),
        ),
        403,
        "forbidden",
    );
    expect(
        s.post(
            &pa,
            "/api/v1/keys",
            &json!({"description": "x", "role": "viewer", "project": "proj"}),
        ),
        201,
    );
    expect_error(
        s.delete(
            &pa,
            &format!("/api/v1/keys/{}", global["id"].as_str().unwrap()),
        ),
        404,
        "not_found",
    );
    // Revoke: effective at once; again is harmless; unknown is 404.
    let rv = expect(s.delete(&pa, &format!("/api/v1/keys/{id}")), 200);
    assert_eq!(rv["id"], id.as_str());
    assert!(rv["revoked_at"].as_str().unwrap().ends_with('Z'));
    let e = expect_error(
        s.upload(&key, "proj", "render/md", Some("v2"), &receipt()),
        401,
        "unauthorized",
    );
    assert!(e["message"].as_str().unwrap().contains("revoked"));
    let again = expect(s.delete(ADMIN, &format!("/api/v1/keys/{id}")), 200);
    assert_eq!(again["revoked_at"], rv["revoked_at"]);
    expect_error(
        s.delete(ADMIN, "/api/v1/keys/ffffffffffffffffffffffffffffffff"),
        404,
        "not_found",
    );
    expect_error(s.delete(ADMIN, "/api/v1/keys/not-an-id"), 404, "not_found");
    let list = expect(s.get(ADMIN, "/api/v1/keys"), 200);
    let revoked = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap();
    assert_eq!(revoked["revoked_at"], rv["revoked_at"]);
    // A key restricted to some benchmarks cannot mint keys (it could mint wider ones).
    let narrow = create_key(
        &s,
        ADMIN,
        json!({"description": "narrow admin", "role": "admin", "project": "proj", "pattern": "bench-*"}),
    );
    let e = expect_error(
        s.post(
            narrow["key"].as_str().unwrap(),
            "/api/v1/keys",
            &json!({"description": "x", "role": "admin", "project": "proj"}),
        ),
        403,
        "forbidden",
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("cannot create keys"),
        "{e}"
    );
    expect_error(
        s.get(narrow["key"].as_str().unwrap(), "/api/v1/audit"),
        403,
        "forbidden",
    );
    // Expiry.
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(1200)).to_rfc3339();
    let exp = create_key(
        &s,
        ADMIN,
        json!({"description": "brief", "role": "viewer", "project": "*", "expires_at": soon}),
    );
    assert!(exp["expires_at"].is_string());
    let ek = exp["key"].as_str().unwrap();
    expect(s.get(ek, P), 200);
    std::thread::sleep(Duration::from_millis(1300));
    let e = expect_error(s.get(ek, P), 401, "unauthorized");
    assert!(e["message"].as_str().unwrap().contains("expired"));
}

fn audit_log(b: Backend) {
    let s = Server::start(b);
    let post_with_id = |key: &str, path: &str, body: &Value, rid: &str| {
        s.http
            .post(s.url(path))
            .bearer_auth(key)
            .header("x-request-id", rid)
            .json(body)
            .send()
            .unwrap()
    };
    let up = expect(
        post_with_id(
            ADMIN,
            P,
            &upload_body("bench-a", Some("v1"), &receipt()),
            "req-upload",
        ),
        201,
    );
    expect(
        post_with_id(
            PROMOTER,
            &format!("{P}/bench-a/promote"),
            &json!({"from_version": "v1", "to_version": "v2", "tags": []}),
            "req-promote",
        ),
        201,
    );
    expect(s.delete(ADMIN, &format!("{P}/bench-a/versions/v1")), 200);
    let k = expect(
        post_with_id(
            ADMIN,
            "/api/v1/keys",
            &json!({"description": "d", "role": "viewer", "project": "proj"}),
            "req-key",
        ),
        201,
    );
    expect(
        s.delete(
            ADMIN,
            &format!("/api/v1/keys/{}", k["id"].as_str().unwrap()),
        ),
        200,
    );
    expect(
        s.upload(OTHER_ADMIN, "other", "bench-z", Some("v1"), &receipt()),
        201,
    );
    // Rejected mutations write nothing.
    expect_error(
        s.upload(VIEWER, "proj", "bench-a", Some("v9"), &receipt()),
        403,
        "forbidden",
    );
    expect_error(
        s.upload(ADMIN, "proj", "bench-a", Some("v2"), &receipt()),
        409,
        "conflict",
    );
    expect_error(
        s.delete(ADMIN, &format!("{P}/bench-a/versions/v1")),
        404,
        "not_found",
    );
    expect_error(
        s.post(
            PROMOTER,
            &format!("{P}/bench-a/promote"),
            &json!({"from_version": "v2", "to_version": "v2", "tags": []}),
        ),
        409,
        "conflict",
    );

    let all = expect(s.get(ADMIN, "/api/v1/audit"), 200);
    assert_eq!(all["pagination"]["total"], 6, "{all}");
    let events = all["events"].as_array().unwrap();
    let kinds: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["action"].as_str().unwrap(),
                e["resource_type"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "create:baseline",
            "delete:key",
            "create:key",
            "delete:baseline",
            "promote:baseline",
            "create:baseline"
        ],
        "newest first"
    );
    let first = &events[5];
    assert_eq!(first["resource_id"], up["id"]);
    assert_eq!(first["project"], "proj");
    // The server's own request id; the client's X-Request-Id beside it (issue 15 #17).
    assert_eq!(first["metadata"]["client_request_id"], "req-upload");
    let rid = first["metadata"]["request_id"].as_str().unwrap();
    assert!(
        rid.len() == 32 && rid.bytes().all(|b| b.is_ascii_hexdigit()),
        "{rid}"
    );
    assert_eq!(first["metadata"]["version"], "v1");
    assert_eq!(
        first["actor"].as_str().unwrap().len(),
        32,
        "stable key id as actor"
    );
    assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(events[4]["metadata"]["client_request_id"], "req-promote");
    assert_eq!(events[2]["metadata"]["client_request_id"], "req-key");
    assert!(events[3]["metadata"].get("client_request_id").is_none());
    assert_eq!(events[2]["resource_id"], k["id"]);
    // Filters and totals.
    let q = |query: &str| expect(s.get(ADMIN, &format!("/api/v1/audit?{query}")), 200);
    assert_eq!(q("action=promote")["pagination"]["total"], 1);
    assert_eq!(q("resource_type=key")["pagination"]["total"], 2);
    assert_eq!(q("project=other")["pagination"]["total"], 1);
    assert_eq!(
        q(&format!("actor={}", first["actor"].as_str().unwrap()))["pagination"]["total"],
        4
    );
    let page = q("limit=2&offset=1");
    assert_eq!(
        page["pagination"],
        json!({"total": 6, "offset": 1, "limit": 2, "has_more": true})
    );
    assert_eq!(page["events"][0]["id"], events[1]["id"]);
    let ts = events[3]["timestamp"].as_str().unwrap().replace('+', "%2B");
    assert_eq!(q(&format!("until={ts}"))["pagination"]["total"], 3);
    assert_eq!(q(&format!("since={ts}"))["pagination"]["total"], 4);
    expect_error(
        s.get(ADMIN, "/api/v1/audit?action=explode"),
        400,
        "invalid_input",
    );
    expect_error(
        s.get(ADMIN, "/api/v1/audit?resource_type=cat"),
        400,
        "invalid_input",
    );
    // Project admins see their project only.
    let other = expect(s.get(OTHER_ADMIN, "/api/v1/audit"), 200);
    assert_eq!(other["pagination"]["total"], 1);
    assert_eq!(other["events"][0]["project"], "other");
    expect_error(
        s.get(OTHER_ADMIN, "/api/v1/audit?project=proj"),
        403,
        "forbidden",
    );
    expect_error(s.get(PROMOTER, "/api/v1/audit"), 403, "forbidden");
}

/// Two replicas on one PostgreSQL: a key created on one works on the other, and a revocation
/// through either is refused by both at once.
#[test]
fn revocation_reaches_other_replicas() {
    let Some(Backend::Postgres(url)) = Backend::postgres() else {
        return;
    };
    let a = Server::start(Backend::Postgres(url.clone()));
    let b = Server::start(Backend::Postgres(url));
    let k = create_key(
        &a,
        ADMIN,
        json!({"description": "shared", "role": "viewer", "project": "*"}),
    );
    let key = k["key"].as_str().unwrap();
    expect(b.get(key, P), 200);
    expect(a.get(key, P), 200);
    expect(
        b.delete(
            ADMIN,
            &format!("/api/v1/keys/{}", k["id"].as_str().unwrap()),
        ),
        200,
    );
    expect_error(a.get(key, P), 401, "unauthorized");
    expect_error(b.get(key, P), 401, "unauthorized");
}

/// `perfgate-server keys create|list|revoke` and `token`, straight against the database.
#[test]
fn operator_commands() {
    use std::process::Command;
    let dir = temp_dir("ops");
    let db = dir.join("perfgate.db");
    let db_s = db.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_perfgate-server"))
            .args(args)
            .env_remove("PERFGATE_DATABASE_URL")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, key, err) = run(&[
        "keys",
        "create",
        "--database-url",
        db_s,
        "--role",
        "admin",
        "--project",
        "proj",
        "--description",
        "ops",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(key.starts_with("pg_live_") && key.len() == 40, "{key}");
    let (code, list, _) = run(&["keys", "list", "--database-url", db_s]);
    assert_eq!(code, Some(0));
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["keys"][0]["project"], "proj");
    assert!(!list.to_string().contains(&key));
    let id = list["keys"][0]["id"].as_str().unwrap().to_owned();
    let (code, _, err) = run(&["keys", "create", "--database-url", db_s, "--role", "root"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("role"), "{err}");

    // A server on that database accepts the key (and creates no bootstrap key).
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_perfgate-server"))
        .args([
            "--database-url",
            db_s,
            "--port",
            &port.to_string(),
            "--jwt-secret",
            JWT_SECRET,
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = Client::new();
    let url = format!("http://127.0.0.1:{port}{P}");
    let mut status = 0;
    for _ in 0..200 {
        if let Ok(r) = http.get(&url).bearer_auth(&key).send() {
            status = r.status().as_u16();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status, 200);
    let (code, tok, err) = run(&[
        "token",
        "--secret",
        JWT_SECRET,
        "--project",
        "proj",
        "--scopes",
        "read,write",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let r = http
        .get(&url)
        .header("authorization", format!("Token {tok}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let (code, _, err) = run(&[
        "token",
        "--secret",
        JWT_SECRET,
        "--project",
        "proj",
        "--scopes",
        "root",
    ]);
    assert_eq!(code, Some(2), "{err}");
    let (code, out, err) = run(&["keys", "revoke", "--database-url", db_s, &id]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&id));
    let r = http.get(&url).bearer_auth(&key).send().unwrap();
    assert_eq!(
        r.status(),
        401,
        "revoked through the database, refused at once"
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
}

const LATEST: &str = "/api/v1/projects/proj/baselines/bench-a/latest";

fn early_answers(s: &Server) -> f64 {
    metric(s, "perfgate_latest_early_answers_total")
}

/// A server whose `proj/bench-a` has one version, its latest answer cached (a configured key's
/// requests until one is answered before routing).
fn server_with_latest_cached(b: Backend) -> Server {
    let s = Server::start(b);
    expect(
        s.upload(ADMIN, "proj", "bench-a", Some("v1"), &receipt()),
        201,
    );
    while early_answers(&s) == 0.0 {
        expect(s.get(ADMIN, LATEST), 200);
    }
    s
}

/// Database keys are cached on SQLite: a cached key answers before routing, and a revocation
/// or an expiry reaches every request that starts after it, also while other requests use the
/// key (on memory and PostgreSQL, which do not cache, the same answers).
fn database_keys_cached_and_dropped_at_once(b: Backend) {
    let cached = b.name() == "sqlite";
    let s = server_with_latest_cached(b);
    let viewer = |desc: &str, expires: Option<String>| {
        let mut body = json!({"description": desc, "role": "viewer", "project": "proj"});
        if let Some(e) = expires {
            body["expires_at"] = json!(e);
        }
        let k = create_key(&s, ADMIN, body);
        (
            k["key"].as_str().unwrap().to_owned(),
            k["id"].as_str().unwrap().to_owned(),
        )
    };
    let (key, id) = viewer("ci", None);
    let before = early_answers(&s);
    for _ in 0..4 {
        let v = expect(s.get(&key, LATEST), 200);
        assert_eq!(v["version"], "v1");
    }
    // The first requests read the key (the key store's read pool opens its connections on
    // first use, and the cache reads only on a free one); the others found it cached.
    let hits = early_answers(&s) - before;
    if cached {
        assert!(hits >= 2.0, "{hits} of 4 answered before routing");
    } else {
        assert_eq!(hits, 0.0);
    }
    expect(s.delete(ADMIN, &format!("/api/v1/keys/{id}")), 200);
    let e = expect_error(s.get(&key, LATEST), 401, "unauthorized");
    assert_eq!(e["message"], "API key has been revoked");

    // Revoked while another client uses the key: every request sent after the revocation was
    // answered is refused.
    let (key, id) = viewer("busy", None);
    expect(s.get(&key, LATEST), 200);
    let before = early_answers(&s);
    let revoked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let user = {
        let (url, key, revoked) = (s.url(LATEST), key.clone(), revoked.clone());
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::new();
            let (mut before, mut after) = (0, 0);
            for _ in 0..5000 {
                let sent_after = revoked.load(std::sync::atomic::Ordering::SeqCst);
                let status = http.get(&url).bearer_auth(&key).send().unwrap().status();
                if sent_after {
                    assert_eq!(status, 401, "a request sent after the revocation");
                    after += 1;
                    if after == 100 {
                        break;
                    }
                } else {
                    assert!(status == 200 || status == 401, "{status}");
                    before += 1;
                }
            }
            (before, after)
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    expect(s.delete(ADMIN, &format!("/api/v1/keys/{id}")), 200);
    revoked.store(true, std::sync::atomic::Ordering::SeqCst);
    let (sent_before, after) = user.join().unwrap();
    assert!(
        sent_before > 0 && after == 100,
        "{sent_before} before, {after} after"
    );
    // On SQLite the requests before the revocation found the key cached.
    assert_eq!(early_answers(&s) > before, cached);

    // An expiry is checked on every use of a cached key.
    let expires = chrono::Utc::now() + chrono::Duration::seconds(3);
    let (key, _) = viewer(
        "short",
        Some(expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    );
    expect(s.get(&key, LATEST), 200);
    let before = early_answers(&s);
    expect(s.get(&key, LATEST), 200);
    expect(s.get(&key, LATEST), 200);
    assert_eq!(
        early_answers(&s) > before,
        cached,
        "the key cached before it expires"
    );
    while chrono::Utc::now() <= expires + chrono::Duration::milliseconds(100) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let e = expect_error(s.get(&key, LATEST), 401, "unauthorized");
    assert_eq!(e["message"], "API key has expired");
}

/// A worker remembers the last configured key it authenticated (by a keyed digest, never the
/// key): keys taking turns on the answers given before routing each get their own answer, and
/// a key one character off a remembered one is refused.
fn configured_keys_take_turns_before_routing(b: Backend) {
    let s = server_with_latest_cached(b);
    let before = early_answers(&s);
    let near = format!("{}2", &ADMIN[..ADMIN.len() - 1]);
    for _ in 0..4 {
        // The same key twice: the second is told by its digest.
        for key in [ADMIN, ADMIN, VIEWER, RESTRICTED] {
            let v = expect(s.get(key, LATEST), 200);
            assert_eq!(v["version"], "v1");
        }
        let e = expect_error(s.get(OTHER_ADMIN, LATEST), 403, "forbidden");
        assert!(e["message"].as_str().unwrap().contains("proj"), "{e}");
        expect(s.get(ADMIN, LATEST), 200);
        let e = expect_error(s.get(&near, LATEST), 401, "unauthorized");
        assert_eq!(e["message"], "Invalid API key");
    }
    // Every allowed request above was answered before routing.
    assert_eq!(early_answers(&s) - before, 20.0);
}

backend_tests!(
    authorization_matrix,
    configured_keys_take_turns_before_routing,
    refusals_come_before_the_body,
    hs256_tokens,
    oidc_tokens,
    key_management,
    database_keys_cached_and_dropped_at_once,
    audit_log
);
