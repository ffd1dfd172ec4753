//! Baseline API over real HTTP, on every backend (contract §1, §3, §4).

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};

use common::*;
use sha2::{Digest, Sha256};

const P: &str = "/api/v1/projects/proj/baselines";

fn receipt() -> Value {
    fixture("run-bench-a-1.json")
}

fn health_and_info(b: Backend) {
    let s = Server::start(b.clone());
    for path in ["/health", "/api/v1/health"] {
        let v = expect(s.http.get(s.url(path)).send().unwrap(), 200);
        assert_eq!(v["status"], "healthy");
        assert_eq!(v["storage"]["backend"], b.name());
        assert_eq!(v["storage"]["status"], "healthy");
        assert!(v["version"].is_string());
    }
    let v = expect(s.http.get(s.url("/api/v1/info")).send().unwrap(), 200);
    assert_eq!(v["storage"], b.name());
    assert_eq!(v["auth"]["api_keys"], true);
    assert_eq!(v["local_mode"], false, "not started with --local");
}

fn upload_and_read_back_verbatim(b: Backend) {
    let s = Server::start(b);
    // The receipt exactly as the CLI wrote it, embedded in a hand-built body.
    let text = fixture_text("run-bench-a-1.json");
    let text = text.trim();
    let body = format!(
        r#"{{"benchmark":"bench-a","version":"v1","git_ref":"refs/heads/main","git_sha":"abc123","receipt":{text},"metadata":{{"ci":"yes"}},"tags":["nightly","x86"],"normalize":false}}"#
    );
    let r = s
        .http
        .post(s.url(P))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .header("x-request-id", "my-req-1")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "my-req-1");
    let hash = hex::encode(Sha256::digest(text.as_bytes()));
    let etag = format!("\"sha256:{hash}\"");
    assert_eq!(r.headers()["etag"], etag.as_str());
    assert_eq!(
        r.headers()["location"],
        "/api/v1/projects/proj/baselines/bench-a/versions/v1"
    );
    let v = expect(r, 201);
    assert_eq!(v["benchmark"], "bench-a");
    assert_eq!(v["version"], "v1");
    assert_eq!(v["etag"], etag.as_str());
    let id = v["id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert!(id
        .bytes()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert!(v["created_at"].as_str().unwrap().ends_with('Z'));

    for path in [
        format!("{P}/bench-a/latest"),
        format!("{P}/bench-a/versions/v1"),
    ] {
        let r = s.get(VIEWER, &path);
        assert_eq!(r.headers()["etag"], etag.as_str());
        let raw = r.text().unwrap();
        assert!(
            raw.contains(text),
            "receipt must be returned byte-identical"
        );
        let rec: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(rec["schema"], "perfgate.baseline.v1");
        assert_eq!(rec["id"], id);
        assert_eq!(rec["project"], "proj");
        assert_eq!(rec["version"], "v1");
        assert_eq!(rec["git_ref"], "refs/heads/main");
        assert_eq!(rec["git_sha"], "abc123");
        assert_eq!(rec["metadata"], json!({"ci": "yes"}));
        assert_eq!(rec["tags"], json!(["nightly", "x86"]));
        assert_eq!(rec["content_hash"], hash.as_str());
        assert_eq!(rec["source"], "upload");
        assert_eq!(rec["deleted"], false);
        assert_eq!(rec["receipt"], receipt());
        assert!(rec["updated_at"].is_string());
    }
    // Conditional GET.
    let r = s
        .http
        .get(s.url(&format!("{P}/bench-a/latest")))
        .bearer_auth(VIEWER)
        .header("if-none-match", etag.as_str())
        .send()
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.text().unwrap(), "");
    let r = s
        .http
        .get(s.url(&format!("{P}/bench-a/latest")))
        .bearer_auth(VIEWER)
        .header("if-none-match", "\"sha256:other\"")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // Null git fields are omitted from the record.
    expect(
        s.upload(ADMIN, "proj", "bench-b", Some("v1"), &receipt()),
        201,
    );
    let rec = expect(s.get(VIEWER, &format!("{P}/bench-b/latest")), 200);
    assert!(
        rec.get("git_ref").is_none() && rec.get("git_sha").is_none(),
        "{rec}"
    );
    assert_eq!(rec["metadata"], json!({}));
    assert_eq!(rec["tags"], json!([]));
}

fn defaults_when_optional_keys_absent(b: Backend) {
    let s = Server::start(b);
    let v = expect(
        s.post(
            ADMIN,
            P,
            &json!({"benchmark": "bench-a", "receipt": receipt()}),
        ),
        201,
    );
    let version = v["version"].as_str().unwrap();
    // YYYYMMDD-HHMMSS plus a unique suffix.
    assert!(
        version.len() > 15 && version.as_bytes()[8] == b'-',
        "{version}"
    );
    let rec = expect(
        s.get(VIEWER, &format!("{P}/bench-a/versions/{version}")),
        200,
    );
    assert_eq!(rec["metadata"], json!({}));
    assert_eq!(rec["tags"], json!([]));
}

fn normalize_strips_run_fields(b: Backend) {
    let s = Server::start(b);
    let mut body = upload_body("bench-a", Some("n1"), &receipt());
    body["normalize"] = json!(true);
    expect(s.post(ADMIN, P, &body), 201);
    let rec = expect(s.get(VIEWER, &format!("{P}/bench-a/latest")), 200);
    let run = &rec["receipt"]["run"];
    assert_eq!(run["id"], "baseline");
    assert_eq!(run["started_at"], "1970-01-01T00:00:00Z");
    assert_eq!(run["host"]["os"], "linux");
    assert_eq!(rec["receipt"]["stats"], receipt()["stats"]);
}

fn slash_benchmark_names(b: Backend) {
    let s = Server::start(b);
    let r = fixture("run-render-md.json");
    let v = expect(s.upload(ADMIN, "proj", "render/md", Some("v1"), &r), 201);
    assert_eq!(v["benchmark"], "render/md");
    for path in [
        format!("{P}/render/md/latest"),
        format!("{P}/render%2Fmd/latest"),
        format!("{P}/render/md/versions/v1"),
        format!("{P}/render%2Fmd/versions/v1"),
    ] {
        let rec = expect(s.get(VIEWER, &path), 200);
        assert_eq!(rec["benchmark"], "render/md", "{path}");
        assert_eq!(rec["receipt"], r);
    }
    let p = expect(
        s.post(
            ADMIN,
            &format!("{P}/render/md/promote"),
            &json!({"from_version": "v1", "to_version": "v2", "tags": []}),
        ),
        201,
    );
    assert_eq!(p["benchmark"], "render/md");
    let d = expect(s.delete(ADMIN, &format!("{P}/render/md/versions/v1")), 200);
    assert_eq!(d["id"], "proj/render/md/v1");
    let l = expect(s.get(VIEWER, &format!("{P}?benchmark=render/md")), 200);
    assert_eq!(l["pagination"]["total"], 1);
    // Invalid names are refused with the field named.
    for bad in ["Render", "a//b", "a/../b", "a/./b"] {
        let e = expect_error(
            s.upload(ADMIN, "proj", bad, Some("v1"), &r),
            400,
            "invalid_input",
        );
        assert!(e["message"].as_str().unwrap().contains("benchmark"), "{e}");
    }
    let e = expect_error(
        s.get(VIEWER, &format!("{P}/Bad/latest")),
        400,
        "invalid_input",
    );
    assert!(e["message"].as_str().unwrap().contains("benchmark"));
}

fn errors_are_contract_json(b: Backend) {
    let s = Server::start_with(
        b,
        &[
            "--api-keys".into(),
            format!("admin:{ADMIN}"),
            "--max-body-bytes".into(),
            "65536".into(),
        ],
    );
    // Duplicate version.
    expect(
        s.upload(ADMIN, "proj", "bench-a", Some("v1"), &receipt()),
        201,
    );
    let e = expect_error(
        s.upload(ADMIN, "proj", "bench-a", Some("v1"), &receipt()),
        409,
        "conflict",
    );
    assert_eq!(e["message"], "bench-a/v1");
    // Bad names.
    let e = expect_error(
        s.upload(ADMIN, "bad project", "bench-a", Some("v1"), &receipt()),
        400,
        "invalid_input",
    );
    assert!(e["message"].as_str().unwrap().contains("project"), "{e}");
    let e = expect_error(
        s.upload(ADMIN, "proj", "bench-a", Some("a/b"), &receipt()),
        400,
        "invalid_input",
    );
    assert!(e["message"].as_str().unwrap().contains("version"), "{e}");
    // Receipt that does not fit: 422 naming the field.
    let mut bad = receipt();
    bad["stats"]["wall_ms"]["median"] = json!("fast");
    let e = expect_error(
        s.upload(ADMIN, "proj", "bench-a", Some("v2"), &bad),
        422,
        "invalid_input",
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("receipt.stats.wall_ms.median"),
        "{e}"
    );
    let mut bad = receipt();
    bad["schema"] = json!("perfgate.compare.v1");
    expect_error(
        s.upload(ADMIN, "proj", "bench-a", Some("v2"), &bad),
        422,
        "invalid_input",
    );
    // A struct given as an array of its fields (serde's positional form) is the wrong shape at
    // any depth, not a summary read in field order.
    let mut bad = receipt();
    bad["stats"]["wall_ms"] = json!([1, 2, 3, 4, 5]);
    let e = expect_error(
        s.upload(ADMIN, "proj", "bench-a", Some("v2"), &bad),
        422,
        "invalid_input",
    );
    assert_eq!(e["details"]["field"], "receipt.stats.wall_ms", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("invalid type: sequence"),
        "{e}"
    );
    let mut bad = receipt();
    bad["run"]["host"] = json!(["linux", "x86_64"]);
    let e = expect_error(
        s.upload(ADMIN, "proj", "bench-a", Some("v2"), &bad),
        422,
        "invalid_input",
    );
    assert_eq!(e["details"]["field"], "receipt.run.host", "{e}");
    // The run's id and host name columns and index entries of their own: a NUL (which
    // PostgreSQL refuses in text) or an overlong value is the client's mistake on every backend.
    for (path, value, says) in [
        (["run", "id"], "a\u{0}b".to_owned(), "control characters"),
        (["run", "id"], "r".repeat(257), "at most 256 bytes"),
        (["run", "host"], "x".repeat(3000), "at most 64 bytes"),
        (["run", "host"], "linux\n".to_owned(), "control characters"),
    ] {
        let mut bad = receipt();
        let field = if path[1] == "host" {
            bad["run"]["host"]["os"] = json!(value);
            "receipt.run.host.os"
        } else {
            bad["run"]["id"] = json!(value);
            "receipt.run.id"
        };
        let e = expect_error(
            s.upload(ADMIN, "proj", "bench-a", Some("v2"), &bad),
            422,
            "invalid_input",
        );
        assert_eq!(e["details"]["field"], field, "{e}");
        assert!(e["message"].as_str().unwrap().contains(says), "{e}");
    }
    let mut ok = receipt();
    ok["run"]["id"] = json!("r".repeat(256));
    ok["run"]["host"]["arch"] = json!("a".repeat(64));
    expect(s.upload(ADMIN, "proj", "bench-long", Some("v1"), &ok), 201);
    expect_error(
        s.get(ADMIN, &format!("{P}/bench-a/versions/v2")),
        404,
        "not_found",
    );
    // Body shape errors.
    let post = |ct: &str, body: &str| {
        s.http
            .post(s.url(P))
            .bearer_auth(ADMIN)
            .header("content-type", ct)
            .body(body.to_owned())
            .send()
            .unwrap()
    };
    expect_error(post("application/json", "{not json"), 400, "invalid_input");
    expect_error(post("application/json", ""), 400, "invalid_input");
    expect_error(
        post("application/json", r#"{"benchmark": 5}"#),
        422,
        "invalid_input",
    );
    let e = expect_error(
        post("application/json", r#"{"benchmark": "bench-a"}"#),
        422,
        "invalid_input",
    );
    assert!(e["message"].as_str().unwrap().contains("receipt"), "{e}");
    expect_error(post("text/plain", "{}"), 415, "unsupported_media_type");
    let big = format!(
        r#"{{"benchmark":"bench-a","pad":"{}"}}"#,
        "x".repeat(70_000)
    );
    expect_error(post("application/json", &big), 413, "payload_too_large");
    // Router rejections.
    expect_error(s.get(ADMIN, "/api/v1/nope"), 404, "not_found");
    expect_error(s.get(ADMIN, "/nope"), 404, "not_found");
    let r = s.http.put(s.url(P)).bearer_auth(ADMIN).send().unwrap();
    assert_eq!(r.headers()["allow"], "POST, GET, HEAD");
    expect_error(r, 405, "method_not_allowed");
    let r = s.http.patch(s.url("/health")).send().unwrap();
    expect_error(r, 405, "method_not_allowed");
    // HEAD answers as GET does, without the body; it is not a way around authentication.
    let get = s.get(ADMIN, &format!("{P}?limit=1"));
    assert_eq!(get.status(), 200);
    let get_len = get.headers()["content-length"].clone();
    assert!(!get.bytes().unwrap().is_empty());
    let head = s
        .http
        .head(s.url(&format!("{P}?limit=1")))
        .bearer_auth(ADMIN)
        .send()
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "application/json");
    assert_eq!(head.headers()["content-length"], get_len);
    assert!(head.bytes().unwrap().is_empty());
    let head = s.http.head(s.url(P)).send().unwrap();
    assert_eq!(head.status(), 401);
    assert!(head.bytes().unwrap().is_empty());
    assert_eq!(s.http.head(s.url("/health")).send().unwrap().status(), 200);
    let r = s
        .http
        .head(s.url(&format!("{P}/bench-a/promote")))
        .bearer_auth(ADMIN)
        .send()
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    // Query errors.
    expect_error(
        s.get(ADMIN, &format!("{P}?limit=abc")),
        400,
        "invalid_input",
    );
    expect_error(s.get(ADMIN, &format!("{P}?limit=0")), 400, "invalid_input");
    // Issue 15 #16: a limit above the maximum is capped, and the page says so.
    let capped = expect(s.get(ADMIN, &format!("{P}?limit=5000")), 200);
    assert_eq!(capped["pagination"]["limit"], 1000);
    let capped = expect(
        s.get(ADMIN, &format!("{P}?limit=5000&include_receipt=true")),
        200,
    );
    assert_eq!(capped["pagination"]["limit"], 200);
    expect_error(s.get(ADMIN, &format!("{P}?limit=-1")), 400, "invalid_input");
    expect_error(
        s.get(ADMIN, &format!("{P}?since=yesterday")),
        400,
        "invalid_input",
    );
    expect_error(
        s.get(ADMIN, &format!("{P}?include_receipt=maybe")),
        400,
        "invalid_input",
    );
    // Not found.
    let e = expect_error(
        s.get(ADMIN, &format!("{P}/nothing/latest")),
        404,
        "not_found",
    );
    assert_eq!(e["message"], "Baseline nothing/latest not found");
    expect_error(
        s.get(ADMIN, &format!("{P}/bench-a/versions/v9")),
        404,
        "not_found",
    );
    // A generated request id when the client sends none; a hostile one is sanitised.
    let r = s
        .http
        .get(s.url("/health"))
        .header("x-request-id", "abc<def> \"ghi\"")
        .send()
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abcdefghi");
}

fn list_filters_and_pagination(b: Backend) {
    let s = Server::start(b);
    let up = |bench: &str, ver: &str, git_ref: Option<&str>, sha: Option<&str>, tags: &[&str]| {
        let mut body = upload_body(bench, Some(ver), &receipt());
        body["git_ref"] = json!(git_ref);
        body["git_sha"] = json!(sha);
        body["tags"] = json!(tags);
        expect(s.post(ADMIN, P, &body), 201)
    };
    let first = up(
        "bench-a",
        "v1",
        Some("refs/heads/main"),
        Some("s1"),
        &["nightly", "x86"],
    );
    up(
        "bench-a",
        "v2",
        Some("refs/heads/dev"),
        Some("s2"),
        &["x86"],
    );
    up(
        "bench-b",
        "v1",
        Some("refs/heads/main"),
        Some("s3"),
        &["nightly"],
    );
    up("render/md", "v1", None, None, &[]);
    let last = up("render/html", "v1", None, None, &["nightly", "x86", "arm"]);
    // Another project is never listed.
    expect(
        s.upload(ADMIN, "elsewhere", "bench-a", Some("v1"), &receipt()),
        201,
    );

    let list = |q: &str| expect(s.get(VIEWER, &format!("{P}?{q}")), 200);
    let versions = |v: &Value| -> Vec<String> {
        v["baselines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                format!(
                    "{}@{}",
                    b["benchmark"].as_str().unwrap(),
                    b["version"].as_str().unwrap()
                )
            })
            .collect()
    };
    let all = list("");
    assert_eq!(
        all["pagination"],
        json!({"total": 5, "offset": 0, "limit": 50, "has_more": false})
    );
    assert_eq!(
        versions(&all),
        [
            "render/html@v1",
            "render/md@v1",
            "bench-b@v1",
            "bench-a@v2",
            "bench-a@v1"
        ],
        "newest first"
    );
    let entry = &all["baselines"][4];
    assert_eq!(entry["git_ref"], "refs/heads/main");
    assert!(entry.get("receipt").is_none());
    assert_eq!(
        all["baselines"][1]["git_ref"],
        Value::Null,
        "present as null in lists"
    );
    assert_eq!(
        versions(&list("benchmark=bench-a")),
        ["bench-a@v2", "bench-a@v1"]
    );
    assert_eq!(
        versions(&list("benchmark_prefix=render/")),
        ["render/html@v1", "render/md@v1"]
    );
    assert_eq!(
        versions(&list("git_ref=refs/heads/main")),
        ["bench-b@v1", "bench-a@v1"]
    );
    assert_eq!(versions(&list("git_sha=s2")), ["bench-a@v2"]);
    assert_eq!(
        versions(&list("tags=nightly,x86")),
        ["render/html@v1", "bench-a@v1"]
    );
    assert_eq!(versions(&list("tags=arm")), ["render/html@v1"]);
    assert_eq!(list("tags=none")["pagination"]["total"], 0);
    // Time window, inclusive at both ends.
    let t0 = first["created_at"].as_str().unwrap();
    let t1 = last["created_at"].as_str().unwrap();
    let enc = |t: &str| t.replace('+', "%2B");
    let w = list(&format!("since={}&until={}", enc(t0), enc(t1)));
    assert_eq!(w["pagination"]["total"], 5);
    // An offset's '+' sent unencoded (as curl users do) arrives as a space and is still read.
    assert_eq!(
        list("since=2000-01-01T00:00:00+00:00")["pagination"]["total"],
        5
    );
    let w = list(&format!("since={}", enc(t1)));
    assert_eq!(versions(&w), ["render/html@v1"]);
    let w = list(&format!("until={}", enc(t0)));
    assert_eq!(versions(&w), ["bench-a@v1"]);
    // Pagination: total counts the filtered rows.
    let p = list("limit=2&offset=1");
    assert_eq!(
        p["pagination"],
        json!({"total": 5, "offset": 1, "limit": 2, "has_more": true})
    );
    assert_eq!(versions(&p), ["render/md@v1", "bench-b@v1"]);
    let p = list("limit=2&offset=4");
    assert_eq!(p["pagination"]["has_more"], false);
    assert_eq!(versions(&p), ["bench-a@v1"]);
    let p = list("limit=2&offset=10");
    assert_eq!(p["baselines"], json!([]));
    assert_eq!(p["pagination"]["total"], 5);
    let p = list("benchmark=bench-a&limit=1");
    assert_eq!(
        p["pagination"],
        json!({"total": 2, "offset": 0, "limit": 1, "has_more": true})
    );
    // Receipts on request.
    let r = list("include_receipt=true&benchmark=bench-b");
    assert_eq!(r["baselines"][0]["receipt"], receipt());
}

fn soft_delete(b: Backend) {
    let s = Server::start(b);
    expect(
        s.upload(ADMIN, "proj", "bench-a", Some("v1"), &receipt()),
        201,
    );
    expect(
        s.upload(ADMIN, "proj", "bench-a", Some("v2"), &receipt()),
        201,
    );
    expect_error(
        s.delete(PROMOTER, &format!("{P}/bench-a/versions/v2")),
        403,
        "forbidden",
    );
    let d = expect(s.delete(ADMIN, &format!("{P}/bench-a/versions/v2")), 200);
    assert_eq!(d["deleted"], true);
    assert_eq!(d["id"], "proj/bench-a/v2");
    assert_eq!(d["benchmark"], "bench-a");
    assert_eq!(d["version"], "v2");
    assert!(d["deleted_at"].as_str().unwrap().ends_with('Z'));
    // Gone from every read path.
    let l = expect(s.get(VIEWER, &format!("{P}/bench-a/latest")), 200);
    assert_eq!(l["version"], "v1");
    expect_error(
        s.get(VIEWER, &format!("{P}/bench-a/versions/v2")),
        404,
        "not_found",
    );
    let l = expect(s.get(VIEWER, P), 200);
    assert_eq!(l["pagination"]["total"], 1);
    expect_error(
        s.delete(ADMIN, &format!("{P}/bench-a/versions/v2")),
        404,
        "not_found",
    );
    expect_error(
        s.delete(ADMIN, &format!("{P}/bench-a/versions/v9")),
        404,
        "not_found",
    );
    // The version stays reserved.
    let e = expect_error(
        s.upload(ADMIN, "proj", "bench-a", Some("v2"), &receipt()),
        409,
        "conflict",
    );
    assert_eq!(e["message"], "bench-a/v2");
    expect(s.delete(ADMIN, &format!("{P}/bench-a/versions/v1")), 200);
    expect_error(
        s.get(VIEWER, &format!("{P}/bench-a/latest")),
        404,
        "not_found",
    );
}

fn promote(b: Backend) {
    let s = Server::start(b);
    let mut body = upload_body("bench-a", Some("v1"), &receipt());
    body["git_ref"] = json!("refs/heads/feature");
    body["git_sha"] = json!("aaa");
    body["metadata"] = json!({"runner": "r1"});
    expect(s.post(ADMIN, P, &body), 201);
    expect(
        s.upload(
            ADMIN,
            "proj",
            "bench-a",
            Some("v1b"),
            &fixture("run-bench-a-2.json"),
        ),
        201,
    );
    let url = format!("{P}/bench-a/promote");
    expect_error(
        s.post(
            CONTRIB,
            &url,
            &json!({"from_version": "v1", "to_version": "x"}),
        ),
        403,
        "forbidden",
    );
    let r = s.post(
        PROMOTER,
        &url,
        &json!({"from_version": "v1", "to_version": "stable", "git_ref": null, "git_sha": "bbb", "tags": ["release"], "normalize": false}),
    );
    assert_eq!(
        r.headers()["location"],
        "/api/v1/projects/proj/baselines/bench-a/versions/stable"
    );
    let p = expect(r, 201);
    assert_eq!(p["benchmark"], "bench-a");
    assert_eq!(p["version"], "stable");
    assert_eq!(p["promoted_from"], "v1");
    assert_eq!(p["promoted_at"], p["created_at"]);
    assert_eq!(p["id"].as_str().unwrap().len(), 32);
    // The promoted copy is now latest, with the source's receipt and metadata.
    let rec = expect(s.get(VIEWER, &format!("{P}/bench-a/latest")), 200);
    assert_eq!(rec["version"], "stable");
    assert_eq!(rec["source"], "promote");
    assert_eq!(rec["receipt"], receipt());
    assert_eq!(rec["metadata"], json!({"runner": "r1"}));
    assert_eq!(rec["tags"], json!(["release"]));
    assert_eq!(
        rec["git_ref"], "refs/heads/feature",
        "falls back to the source"
    );
    assert_eq!(rec["git_sha"], "bbb", "taken from the request");
    // Errors.
    let e = expect_error(
        s.post(
            PROMOTER,
            &url,
            &json!({"from_version": "nope", "to_version": "x", "tags": []}),
        ),
        404,
        "not_found",
    );
    assert_eq!(e["message"], "Baseline bench-a/nope not found");
    let e = expect_error(
        s.post(
            PROMOTER,
            &url,
            &json!({"from_version": "v1", "to_version": "stable", "tags": []}),
        ),
        409,
        "conflict",
    );
    assert_eq!(e["message"], "bench-a/stable");
    expect(
        s.delete(ADMIN, &format!("{P}/bench-a/versions/stable")),
        200,
    );
    expect_error(
        s.post(
            PROMOTER,
            &url,
            &json!({"from_version": "v1", "to_version": "stable", "tags": []}),
        ),
        409,
        "conflict",
    );
    expect(s.delete(ADMIN, &format!("{P}/bench-a/versions/v1b")), 200);
    expect_error(
        s.post(
            PROMOTER,
            &url,
            &json!({"from_version": "v1b", "to_version": "z", "tags": []}),
        ),
        404,
        "not_found",
    );
    expect_error(
        s.post(
            PROMOTER,
            &url,
            &json!({"from_version": "v1", "to_version": "a/b"}),
        ),
        400,
        "invalid_input",
    );
    expect_error(
        s.post(PROMOTER, &url, &json!({"to_version": "z"})),
        422,
        "invalid_input",
    );
    // normalize on promote.
    let p = expect(
        s.post(
            PROMOTER,
            &url,
            &json!({"from_version": "v1", "to_version": "norm", "tags": [], "normalize": true}),
        ),
        201,
    );
    assert_eq!(p["version"], "norm");
    let rec = expect(s.get(VIEWER, &format!("{P}/bench-a/versions/norm")), 200);
    assert_eq!(rec["receipt"]["run"]["id"], "baseline");
}

fn authentication_and_scopes(b: Backend) {
    let s = Server::start(b);
    expect(
        s.upload(ADMIN, "proj", "bench-a", Some("v1"), &receipt()),
        201,
    );
    expect(
        s.upload(ADMIN, "proj", "other-bench", Some("v1"), &receipt()),
        201,
    );
    let latest = format!("{P}/bench-a/latest");
    let r = s.http.get(s.url(&latest)).send().unwrap();
    let e = expect_error(r, 401, "unauthorized");
    assert_eq!(e["message"], "Missing authentication header");
    let e = expect_error(s.get("not-a-key", &latest), 401, "unauthorized");
    assert_eq!(e["message"], "Invalid API key format");
    expect_error(
        s.get("pg_live_unknownunknownunknownunknownunknown", &latest),
        401,
        "unauthorized",
    );
    let r = s
        .http
        .get(s.url(&latest))
        .header("authorization", "Basic YTpi")
        .send()
        .unwrap();
    expect_error(r, 401, "unauthorized");
    // Open endpoints stay open; data endpoints do not.
    assert_eq!(s.http.get(s.url("/health")).send().unwrap().status(), 200);
    expect_error(s.http.get(s.url(P)).send().unwrap(), 401, "unauthorized");
    // Scopes.
    let e = expect_error(
        s.upload(VIEWER, "proj", "bench-a", Some("v2"), &receipt()),
        403,
        "forbidden",
    );
    assert_eq!(e["message"], "Requires 'write' permission");
    expect(
        s.upload(CONTRIB, "proj", "bench-a", Some("v2"), &receipt()),
        201,
    );
    // Project isolation: a project admin stays in its project.
    let e = expect_error(s.get(OTHER_ADMIN, &latest), 403, "forbidden");
    assert_eq!(e["message"], "Key is restricted to project 'other'");
    expect(
        s.upload(OTHER_ADMIN, "other", "bench-a", Some("v1"), &receipt()),
        201,
    );
    expect(
        s.delete(
            OTHER_ADMIN,
            "/api/v1/projects/other/baselines/bench-a/versions/v1",
        ),
        200,
    );
    // Benchmark regex: full match, applied to lists too.
    expect(
        s.upload(RESTRICTED, "proj", "bench-a", Some("v3"), &receipt()),
        201,
    );
    let e = expect_error(
        s.upload(RESTRICTED, "proj", "other-bench", Some("v2"), &receipt()),
        403,
        "forbidden",
    );
    assert_eq!(
        e["message"],
        "Key is restricted to benchmarks matching 'bench-.*'"
    );
    expect_error(
        s.get(RESTRICTED, &format!("{P}/other-bench/latest")),
        403,
        "forbidden",
    );
    let e = expect_error(
        s.upload(RESTRICTED, "elsewhere", "bench-a", Some("v1"), &receipt()),
        403,
        "forbidden",
    );
    assert_eq!(e["message"], "Key is restricted to project 'proj'");
    let l = expect(s.get(RESTRICTED, P), 200);
    assert_eq!(l["pagination"]["total"], 3);
    assert!(l["baselines"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["benchmark"] == "bench-a"));
    let l = expect(
        s.get(RESTRICTED, &format!("{P}?benchmark=other-bench")),
        200,
    );
    assert_eq!(l["pagination"]["total"], 0);
    let l = expect(s.get(ADMIN, P), 200);
    assert_eq!(l["pagination"]["total"], 4);
    // A scope failure is reported before a project failure.
    let e = expect_error(
        s.delete(
            RESTRICTED,
            "/api/v1/projects/elsewhere/baselines/x/versions/v1",
        ),
        403,
        "forbidden",
    );
    assert_eq!(e["message"], "Requires 'delete' permission");
    // Nothing was written by the refused requests.
    let l = expect(s.get(ADMIN, "/api/v1/projects/elsewhere/baselines"), 200);
    assert_eq!(l["pagination"]["total"], 0);
}

fn idempotent_upload(b: Backend) {
    let s = Server::start(b);
    let send = |key: &str, body: &Value| {
        s.http
            .post(s.url(P))
            .bearer_auth(ADMIN)
            .header("idempotency-key", key)
            .json(body)
            .send()
            .unwrap()
    };
    let body = upload_body("bench-a", Some("v1"), &receipt());
    let first = expect(send("k-1", &body), 201);
    let again = send("k-1", &body);
    assert!(again.headers().contains_key("location"));
    let again = expect(again, 201);
    assert_eq!(first, again);
    // Without the key, the same upload is a conflict.
    expect_error(s.post(ADMIN, P, &body), 409, "conflict");
    // The same key with another body is refused.
    let other = upload_body("bench-a", Some("v2"), &receipt());
    expect_error(send("k-1", &other), 409, "conflict");
    // Generated versions: the retry returns the version generated the first time.
    let gen = upload_body("bench-a", None, &receipt());
    let a = expect(send("k-2", &gen), 201);
    let b2 = expect(send("k-2", &gen), 201);
    assert_eq!(a["version"], b2["version"]);
    let l = expect(s.get(ADMIN, P), 200);
    assert_eq!(l["pagination"]["total"], 2);
}

fn concurrent_uploads_lose_nothing(b: Backend) {
    let s = Arc::new(Server::start(b));
    let n = 16;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (s, barrier) = (s.clone(), barrier.clone());
            std::thread::spawn(move || {
                let version = (i % 2 == 0).then(|| format!("v{i}"));
                barrier.wait();
                let r = s.upload(ADMIN, "proj", "bench-a", version.as_deref(), &receipt());
                expect(r, 201)["version"].as_str().unwrap().to_owned()
            })
        })
        .collect();
    let versions: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let unique: HashSet<_> = versions.iter().cloned().collect();
    assert_eq!(unique.len(), n, "duplicate versions: {versions:?}");
    let l = expect(s.get(ADMIN, &format!("{P}?limit=100")), 200);
    assert_eq!(l["pagination"]["total"], n);
    let listed = listed_versions(&l);
    assert_eq!(listed, unique);
}

/// Conflicts committed together with other uploads fail alone, and the others are stored and
/// counted once (on SQLite a batch goes without savepoints first, and one whose write failed
/// is applied again with a savepoint per write).
fn concurrent_conflicts_fail_alone(b: Backend) {
    let s = Arc::new(Server::start(b));
    expect(
        s.upload(ADMIN, "proj", "bench-a", Some("taken"), &receipt()),
        201,
    );
    let n = 16;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (s, barrier) = (s.clone(), barrier.clone());
            std::thread::spawn(move || {
                // A taken version, one raced for by four, or a version of its own.
                let version = match i % 4 {
                    0 => "taken".to_owned(),
                    1 => "raced".to_owned(),
                    _ => format!("v{i}"),
                };
                barrier.wait();
                let r = s.upload(ADMIN, "proj", "bench-a", Some(&version), &receipt());
                let status = r.status().as_u16();
                if status == 409 {
                    expect_error(r, 409, "conflict");
                } else {
                    assert_eq!(expect(r, 201)["version"], version.as_str());
                }
                (version, status)
            })
        })
        .collect();
    let answers: Vec<(String, u16)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let stored = |v: &str| {
        answers
            .iter()
            .filter(|(x, st)| x == v && *st == 201)
            .count()
    };
    assert_eq!(stored("taken"), 0, "{answers:?}");
    assert_eq!(stored("raced"), 1, "{answers:?}");
    let mut expected: HashSet<String> = answers
        .iter()
        .filter(|(_, st)| *st == 201)
        .map(|(v, _)| v.clone())
        .collect();
    assert_eq!(expected.len(), 9, "{answers:?}");
    expected.insert("taken".to_owned());
    let l = expect(s.get(ADMIN, &format!("{P}?limit=100")), 200);
    // The total is the benchmark's live count, bumped once per stored version.
    assert_eq!(l["pagination"]["total"], 10);
    let listed = listed_versions(&l);
    assert_eq!(listed, expected);
}

fn concurrent_promotes_have_one_winner(b: Backend) {
    let s = Arc::new(Server::start(b));
    expect(
        s.upload(ADMIN, "proj", "bench-a", Some("v1"), &receipt()),
        201,
    );
    let n = 8;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (s, barrier) = (s.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                s.post(
                    PROMOTER,
                    &format!("{P}/bench-a/promote"),
                    &json!({"from_version": "v1", "to_version": "release", "tags": []}),
                )
                .status()
                .as_u16()
            })
        })
        .collect();
    let mut codes: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    codes.sort();
    assert_eq!(codes, [201, 409, 409, 409, 409, 409, 409, 409]);
    let l = expect(s.get(ADMIN, P), 200);
    assert_eq!(l["pagination"]["total"], 2);
}

fn acknowledged_writes_survive_kill_9(b: Backend) {
    if matches!(b, Backend::Memory) {
        return; // memory is lost on exit by definition
    }
    let mut s = Server::start(b);
    let mut acked = Vec::new();
    for i in 0..20 {
        let v = expect(
            s.upload(ADMIN, "proj", "bench-a", Some(&format!("v{i}")), &receipt()),
            201,
        );
        acked.push(v["version"].as_str().unwrap().to_owned());
    }
    expect(
        s.post(
            ADMIN,
            &format!("{P}/bench-a/promote"),
            &json!({"from_version": "v3", "to_version": "rel", "tags": []}),
        ),
        201,
    );
    s.restart(); // SIGKILL right after the last 201, then start on the same storage
    let l = expect(s.get(ADMIN, &format!("{P}?limit=100")), 200);
    assert_eq!(l["pagination"]["total"], 21);
    let latest = expect(s.get(ADMIN, &format!("{P}/bench-a/latest")), 200);
    assert_eq!(latest["version"], "rel");
    for v in acked {
        expect(s.get(ADMIN, &format!("{P}/bench-a/versions/{v}")), 200);
    }
}

/// GET latest is served from an in-process cache on memory and SQLite: every write that can
/// change the answer (upload, delete, promote) must show in the very next read, conditional
/// requests and authorization included. On PostgreSQL (no cache) the same answers hold.
fn latest_follows_every_write(b: Backend) {
    let s = Server::start(b);
    let latest = format!("{P}/bench-a/latest");
    let version_of = |key: &str| -> String {
        expect(s.get(key, &latest), 200)["version"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    expect_error(s.get(VIEWER, &latest), 404, "not_found");
    expect(
        s.upload(ADMIN, "proj", "bench-a", Some("v1"), &receipt()),
        201,
    );
    expect(
        s.upload(ADMIN, "proj", "bench-b", Some("b1"), &receipt()),
        201,
    );
    for _ in 0..3 {
        assert_eq!(version_of(VIEWER), "v1");
    }
    // Upload: the new version is latest at once.
    let r2 = fixture("run-bench-a-2.json");
    expect(s.upload(ADMIN, "proj", "bench-a", Some("v2"), &r2), 201);
    assert_eq!(version_of(VIEWER), "v2");
    // The ETag of the cached answer: 304 for it, 200 with the new one after a write.
    let r = s
        .http
        .get(s.url(&latest))
        .bearer_auth(VIEWER)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let body: Value = r.json().unwrap();
    assert_eq!(body["receipt"], r2);
    let r = s
        .http
        .get(s.url(&latest))
        .bearer_auth(VIEWER)
        .header("If-None-Match", &etag)
        .send()
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    // Delete: the previous version is latest again.
    expect(s.delete(ADMIN, &format!("{P}/bench-a/versions/v2")), 200);
    assert_eq!(version_of(VIEWER), "v1");
    let r = s
        .http
        .get(s.url(&latest))
        .bearer_auth(VIEWER)
        .header("If-None-Match", &etag)
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "the deleted version's ETag no longer matches"
    );
    // Promote: the copy is latest.
    expect(
        s.post(
            ADMIN,
            &format!("{P}/bench-a/promote"),
            &json!({"from_version": "v1", "to_version": "rel", "tags": []}),
        ),
        201,
    );
    assert_eq!(version_of(VIEWER), "rel");
    // Other benchmarks are untouched; a cached answer is still authorized per request.
    assert_eq!(
        expect(s.get(VIEWER, &format!("{P}/bench-b/latest")), 200)["version"],
        "b1"
    );
    expect_error(
        s.get(OTHER_ADMIN, &format!("{P}/bench-b/latest")),
        403,
        "forbidden",
    );
    expect_error(
        s.get("pg_live_unknownunknownunknownunknownunknown", &latest),
        401,
        "unauthorized",
    );
    // Deleting every version: 404, not a remembered answer.
    expect(s.delete(ADMIN, &format!("{P}/bench-a/versions/rel")), 200);
    expect(s.delete(ADMIN, &format!("{P}/bench-a/versions/v1")), 200);
    expect_error(s.get(VIEWER, &latest), 404, "not_found");
    // A restart (memory starts empty; SQLite and PostgreSQL keep their data) answers the same.
    let mut s = s;
    s.restart();
    if !matches!(b_name(&s), "memory") {
        assert_eq!(
            expect(s.get(VIEWER, &format!("{P}/bench-b/latest")), 200)["version"],
            "b1"
        );
        expect_error(s.get(VIEWER, &latest), 404, "not_found");
    }
}

fn b_name(s: &Server) -> &'static str {
    s.backend.name()
}

backend_tests!(
    health_and_info,
    upload_and_read_back_verbatim,
    defaults_when_optional_keys_absent,
    normalize_strips_run_fields,
    slash_benchmark_names,
    errors_are_contract_json,
    list_filters_and_pagination,
    soft_delete,
    promote,
    authentication_and_scopes,
    idempotent_upload,
    concurrent_uploads_lose_nothing,
    concurrent_conflicts_fail_alone,
    concurrent_promotes_have_one_winner,
    acknowledged_writes_survive_kill_9,
    latest_follows_every_write,
);

/// A cached GET latest is answered before routing (`routes::baselines::cached_latest`): the
/// answer must be the router's, byte for byte and header for header, with the same refusals,
/// the same access log route and metrics, and a rate limit that still counts every request.
fn cached_latest_answers_as_the_router_does(b: Backend, cors: bool) {
    let mut args = Vec::new();
    for k in standard_keys() {
        args.extend(["--api-keys".to_owned(), k]);
    }
    args.extend(["--rate-limit", "1", "--rate-limit-burst", "40"].map(String::from));
    if !cors {
        args.push("--no-cors".to_owned());
    }
    let s = Server::start_with(b, &args);
    const EARLY: &str = "perfgate_latest_early_answers_total";
    const HIT: &str = "perfgate_latest_cache_requests_total{result=\"hit\"}";
    const MISS: &str = "perfgate_latest_cache_requests_total{result=\"miss\"}";
    const ROUTE_200: &str = "perfgate_http_requests_total{method=\"GET\",route=\"/api/v1/projects/{project}/baselines/{benchmark:.+}/latest\",status=\"200\"}";
    expect(
        s.upload(ADMIN, "proj", "render/md", Some("v1"), &receipt()),
        201,
    );
    let get = |key: &str, path: &str, extra: &[(&str, &str)]| {
        let mut r = s.http.get(s.url(path)).bearer_auth(key);
        for (k, v) in extra {
            r = r.header(*k, *v);
        }
        r.send().unwrap()
    };
    // Headers that are the same on every answer of the same version.
    let stable = |r: &reqwest::blocking::Response| -> Vec<(String, String)> {
        let mut h: Vec<(String, String)> = r
            .headers()
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "date" | "x-request-id"))
            .map(|(k, v)| {
                let v = v.to_str().unwrap();
                // actix-cors lists the exposed headers in a HashSet's order, per worker.
                let mut items: Vec<&str> = v.split(", ").collect();
                if k == "access-control-expose-headers" {
                    items.sort_unstable();
                }
                (k.to_string(), items.join(", "))
            })
            .collect();
        h.sort();
        h
    };
    let latest = format!("{P}/render/md/latest");
    // The routed answer: an escaped `/` never takes the early path.
    let routed = get(VIEWER, &format!("{P}/render%2Fmd/latest"), &[]);
    assert_eq!(routed.status(), 200);
    let first_headers = stable(&routed);
    assert!(routed.headers().contains_key("x-request-id"));
    assert_eq!(
        first_headers
            .iter()
            .any(|(k, _)| k == "access-control-expose-headers"),
        cors
    );
    let first_body = routed.bytes().unwrap();
    assert_eq!(metric(&s, EARLY), 0.0, "nothing answered early yet");
    // Read until an answer comes early (a background write may make one cache fill stale).
    let t0 = std::time::Instant::now();
    while metric(&s, EARLY) == 0.0 {
        assert!(t0.elapsed().as_secs() < 10, "never answered before routing");
        expect(get(VIEWER, &latest, &[]), 200);
    }
    let (early0, hits0, miss0, routed0) = (
        metric(&s, EARLY),
        metric(&s, HIT),
        metric(&s, MISS),
        metric(&s, ROUTE_200),
    );
    for _ in 0..3 {
        let r = get(VIEWER, &latest, &[("X-Request-Id", "ci-job-7")]);
        assert_eq!(r.status(), 200);
        assert_eq!(stable(&r), first_headers);
        assert_eq!(r.headers()["x-request-id"], "ci-job-7");
        assert_eq!(r.bytes().unwrap(), first_body);
    }
    let (hits, misses) = (metric(&s, HIT) - hits0, metric(&s, MISS) - miss0);
    assert!(hits >= 1.0, "{hits} hits, {misses} misses");
    assert_eq!(metric(&s, EARLY) - early0, hits, "every hit answered early");
    assert_eq!(hits + misses, 3.0, "each lookup counted once");
    assert_eq!(metric(&s, ROUTE_200) - routed0, 3.0, "one route label");
    // The access line of a cached answer names its route (the log is written behind).
    let t0 = std::time::Instant::now();
    let line = loop {
        let log = s.log();
        if let Some(l) = log.lines().find(|l| l.contains("ci-job-7")) {
            break l.to_owned();
        }
        assert!(t0.elapsed().as_secs() < 10, "no access line:\n{log}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        line.contains("GET /api/v1/projects/{project}/baselines/{benchmark:.+}/latest 200"),
        "{line}"
    );
    // The same answer with a query, and for a browser (routed, through CORS).
    let r = get(VIEWER, &format!("{latest}?x=1"), &[]);
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap(), first_body);
    let early = metric(&s, EARLY);
    let r = get(VIEWER, &latest, &[("Origin", "https://ci.example")]);
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers().get("access-control-allow-origin").is_some(),
        cors
    );
    assert_eq!(r.bytes().unwrap(), first_body);
    assert_eq!(metric(&s, EARLY), early, "a browser's request is routed");
    // HEAD: the headers of GET, no body; If-None-Match: 304.
    let r = s
        .http
        .head(s.url(&latest))
        .bearer_auth(VIEWER)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(stable(&r), first_headers);
    assert!(r.bytes().unwrap().is_empty());
    let etag = first_headers
        .iter()
        .find(|(k, _)| k == "etag")
        .map(|(_, v)| v.clone())
        .unwrap();
    let r = get(VIEWER, &latest, &[("If-None-Match", &etag)]);
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    // Refusals of a cached answer are the router's: a key whose benchmark filter excludes it,
    // another project's admin, a key unknown, a credential sent twice, a token.
    let (hits, early) = (metric(&s, HIT), metric(&s, EARLY));
    let e = expect_error(get(RESTRICTED, &latest, &[]), 403, "forbidden");
    assert!(e["message"].as_str().unwrap().contains("bench-.*"), "{e}");
    expect_error(get(OTHER_ADMIN, &latest, &[]), 403, "forbidden");
    expect_error(
        get("pg_live_unknownunknownunknownunknownunknown", &latest, &[]),
        401,
        "unauthorized",
    );
    let r = s
        .http
        .get(s.url(&latest))
        .header("Authorization", format!("Bearer {VIEWER}"))
        .header("Authorization", format!("Bearer {ADMIN}"))
        .send()
        .unwrap();
    expect_error(r, 401, "unauthorized");
    expect_error(get("a.b.c", &latest, &[]), 401, "unauthorized");
    assert_eq!(metric(&s, HIT), hits, "no refused request counts a hit");
    assert_eq!(metric(&s, EARLY), early, "nor an early answer");
    // Every request takes a token, cached or not: the burst runs out and the next is a 429.
    let mut codes = Vec::new();
    for _ in 0..60 {
        let r = get(ADMIN, &latest, &[]);
        codes.push(r.status().as_u16());
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            expect_error(r, 429, "rate_limited");
            break;
        }
    }
    assert_eq!(codes.last(), Some(&429), "{codes:?}");
    assert!(codes.len() <= 45, "the burst is 40: {codes:?}");
}

#[test]
fn cached_latest_answers_as_the_router_does_memory() {
    cached_latest_answers_as_the_router_does(Backend::Memory, true);
}

#[test]
fn cached_latest_answers_as_the_router_does_sqlite() {
    cached_latest_answers_as_the_router_does(Backend::Sqlite, true);
}

#[test]
fn cached_latest_answers_as_the_router_does_without_cors() {
    cached_latest_answers_as_the_router_does(Backend::Memory, false);
}
