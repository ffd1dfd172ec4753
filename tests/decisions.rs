//! The decision ledger over real HTTP on every backend: upload, list with every filter, latest,
//! one decision, prune (dry run and real, audited), bad input, the authorization matrix, and the
//! published client (`perfgate-client` 0.18.1, what `perfgate decision …` uses).
//!
//! The receipts in `tests/fixtures` were written by the perfgate 0.18.1 CLI
//! (`perfgate decision evaluate`, see `tests/fixtures/README.md`).

mod common;

use std::time::Duration;

use common::*;
use perfgate_client::{
    BaselineClient, ClientConfig, ClientError, ListDecisionsQuery, PruneDecisionsRequest,
    RetryConfig, UploadDecisionRequest,
};

const D: &str = "/api/v1/projects/proj/decisions";

fn tradeoff_accepted() -> Value {
    fixture("tradeoff-accepted.json")
}

fn tradeoff_rejected() -> Value {
    fixture("tradeoff-rejected.json")
}

fn full_upload() -> Value {
    json!({
        "tradeoff": tradeoff_accepted(),
        "scenario": fixture("scenario-checkout.json"),
        "artifact_index": fixture("decision-index.json"),
        "git_ref": "refs/heads/main",
        "git_sha": "0123abcd",
    })
}

/// What the CLI sends without `--scenario-receipt`, `--index` and git flags.
fn bare_upload(tradeoff: Value) -> Value {
    json!({"tradeoff": tradeoff, "git_ref": null, "git_sha": null})
}

fn review_required_tradeoff() -> Value {
    let mut t = tradeoff_accepted();
    t["decision"]["review_required"] = json!(true);
    t["decision"]["review_reasons"] = json!(["noise evidence missing"]);
    t["scenario"] = json!("search");
    t
}

fn ids(v: &Value) -> Vec<String> {
    v["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

fn total(s: &Server, key: &str, path: &str) -> u64 {
    expect(s.get(key, path), 200)["pagination"]["total"]
        .as_u64()
        .unwrap()
}

fn audit_total(s: &Server, query: &str) -> u64 {
    total(
        s,
        ADMIN,
        &format!("/api/v1/audit?resource_type=decision&{query}"),
    )
}

fn ledger_round_trip(b: Backend) {
    let s = Server::start(b.clone());

    // Empty ledger: latest is a 404 with the JSON error, the list is empty.
    let e = expect_error(s.get(VIEWER, &format!("{D}/latest")), 404, "not_found");
    assert!(e["message"].as_str().unwrap().contains("proj"), "{e}");
    let empty = expect(s.get(VIEWER, D), 200);
    assert_eq!(
        empty,
        json!({"decisions": [], "pagination": {"total": 0, "offset": 0, "limit": 50, "has_more": false}})
    );

    // Upload with every optional part: 201, Location, the record.
    let r = s.post(CONTRIB, D, &full_upload());
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let first = expect(r, 201);
    let id1 = first["id"].as_str().unwrap().to_owned();
    assert!(
        id1.len() == 32 && id1.bytes().all(|c| c.is_ascii_hexdigit()),
        "{id1}"
    );
    assert_eq!(location, format!("{D}/{id1}"));
    assert_eq!(first["schema"], "perfgate.decision_record.v1");
    assert_eq!(first["project"], "proj");
    assert_eq!(first["scenario"], "checkout");
    assert_eq!(first["status"], tradeoff_accepted()["decision"]["status"]);
    assert_eq!(first["verdict"], tradeoff_accepted()["verdict"]["status"]);
    assert_eq!(first["accepted_rules"], json!(["wall-for-rss"]));
    assert_eq!(first["review_required"], false);
    assert_eq!(first["review_reasons"], json!([]));
    assert_eq!(first["git_ref"], "refs/heads/main");
    assert_eq!(first["git_sha"], "0123abcd");
    assert_eq!(first["tradeoff_receipt"], tradeoff_accepted());
    assert_eq!(first["scenario_receipt"], fixture("scenario-checkout.json"));
    assert_eq!(first["artifact_index"], fixture("decision-index.json"));
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'));
    // The published types read it back.
    let typed: perfgate_client::DecisionRecord = serde_json::from_value(first.clone()).unwrap();
    assert_eq!(typed.accepted_rules, ["wall-for-rss"]);

    // A rejected tradeoff alone: null optionals are left out; the scenario is the tradeoff's.
    // Unknown fields of a receipt are kept, byte for byte.
    let mut rejected = tradeoff_rejected();
    rejected["zz_extra"] = json!({"kept": [1, 2.5, "x"]});
    let second = expect(s.post(CONTRIB, D, &bare_upload(rejected.clone())), 201);
    let id2 = second["id"].as_str().unwrap().to_owned();
    for absent in ["git_ref", "git_sha", "scenario_receipt", "artifact_index"] {
        assert!(second.get(absent).is_none(), "{absent}: {second}");
    }
    assert_eq!(second["scenario"], "checkout");
    assert_eq!(second["accepted_rules"], json!([]));
    assert_eq!(second["status"], "fail");
    assert_eq!(second["verdict"], "fail");
    assert_eq!(second["tradeoff_receipt"], rejected);
    let raw = s.get(VIEWER, &format!("{D}/{id2}")).text().unwrap();
    assert!(
        raw.contains(r#""zz_extra":{"kept":[1,2.5,"x"]}"#),
        "verbatim: {raw}"
    );

    // Without a scenario in the tradeoff, the scenario receipt names it.
    let mut unnamed = tradeoff_accepted();
    unnamed.as_object_mut().unwrap().remove("scenario");
    let named_by_receipt = expect(
        s.post(
            CONTRIB,
            D,
            &json!({"tradeoff": unnamed, "scenario": fixture("scenario-checkout.json")}),
        ),
        201,
    );
    assert_eq!(named_by_receipt["scenario"], "checkout");
    let id3 = named_by_receipt["id"].as_str().unwrap().to_owned();

    let fourth = expect(
        s.post(CONTRIB, D, &bare_upload(review_required_tradeoff())),
        201,
    );
    let id4 = fourth["id"].as_str().unwrap().to_owned();
    assert_eq!(fourth["review_required"], true);
    assert_eq!(fourth["review_reasons"], json!(["noise evidence missing"]));
    assert_eq!(fourth["scenario"], "search");

    // Newest first, every filter.
    let all = expect(s.get(VIEWER, D), 200);
    assert_eq!(
        ids(&all),
        [id4.as_str(), id3.as_str(), id2.as_str(), id1.as_str()]
    );
    assert_eq!(
        all["decisions"][3], first,
        "list entries are the full records"
    );
    let q = |query: &str| ids(&expect(s.get(VIEWER, &format!("{D}?{query}")), 200));
    assert_eq!(
        q("scenario=checkout"),
        [id3.as_str(), id2.as_str(), id1.as_str()]
    );
    assert_eq!(q("scenario=search"), [id4.as_str()]);
    assert_eq!(q("scenario=nothing"), Vec::<String>::new());
    assert_eq!(q("status=fail"), [id2.as_str()]);
    assert_eq!(q("verdict=fail"), [id2.as_str()]);
    let accepted_status = tradeoff_accepted()["decision"]["status"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        q(&format!("status={accepted_status}")),
        [id4.as_str(), id3.as_str(), id1.as_str()]
    );
    assert_eq!(q("review_required=true"), [id4.as_str()]);
    assert_eq!(
        q("review_required=false"),
        [id3.as_str(), id2.as_str(), id1.as_str()]
    );
    assert_eq!(
        q("accepted=true"),
        [id4.as_str(), id3.as_str(), id1.as_str()]
    );
    assert_eq!(q("accepted=false"), [id2.as_str()]);
    assert_eq!(
        q("rule=wall-for-rss"),
        [id4.as_str(), id3.as_str(), id1.as_str()]
    );
    assert_eq!(q("rule=wall"), Vec::<String>::new(), "exact rule names");
    assert_eq!(
        q("rule=wall-for-rss&scenario=checkout&review_required=false"),
        [id3.as_str(), id1.as_str()]
    );
    let page = expect(s.get(VIEWER, &format!("{D}?limit=2&offset=1")), 200);
    assert_eq!(ids(&page), [id3.as_str(), id2.as_str()]);
    assert_eq!(
        page["pagination"],
        json!({"total": 4, "offset": 1, "limit": 2, "has_more": true})
    );
    let filtered = expect(s.get(VIEWER, &format!("{D}?accepted=true&limit=2")), 200);
    assert_eq!(filtered["pagination"]["total"], 3, "filtered total");
    // What `decision debt|export` ask for is served; larger pages are capped.
    let cli = expect(s.get(VIEWER, &format!("{D}?limit=1000")), 200);
    assert_eq!(cli["pagination"]["limit"], 1000);
    assert_eq!(ids(&cli).len(), 4);
    let capped = expect(s.get(VIEWER, &format!("{D}?limit=5000")), 200);
    assert_eq!(capped["pagination"]["limit"], 1000);
    let past = expect(s.get(VIEWER, &format!("{D}?offset=10")), 200);
    assert_eq!(ids(&past), Vec::<String>::new());
    assert_eq!(past["pagination"]["total"], 4);

    // Latest and one decision.
    assert_eq!(expect(s.get(VIEWER, &format!("{D}/latest")), 200), fourth);
    assert_eq!(expect(s.get(VIEWER, &format!("{D}/{id1}")), 200), first);
    expect_error(
        s.get(VIEWER, &format!("{D}/{}", "0".repeat(32))),
        404,
        "not_found",
    );
    expect_error(s.get(VIEWER, &format!("{D}/not-an-id")), 404, "not_found");
    expect_error(
        s.get(
            ADMIN,
            &format!("/api/v1/projects/elsewhere/decisions/{id1}"),
        ),
        404,
        "not_found",
    );
    expect_error(
        s.get(ADMIN, "/api/v1/projects/elsewhere/decisions/latest"),
        404,
        "not_found",
    );
    assert_eq!(audit_total(&s, "action=create"), 4);

    // Prune: a dry run reports, deletes nothing and is not audited.
    let future = "2999-01-01T00:00:00Z";
    let dry = expect(
        s.post(
            ADMIN,
            &format!("{D}/prune"),
            &json!({"older_than": future, "dry_run": true}),
        ),
        200,
    );
    assert_eq!(dry["project"], "proj");
    assert_eq!(dry["older_than"], "2999-01-01T00:00:00.000000Z");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["matched"], 4);
    assert_eq!(dry["deleted"], 0);
    assert_eq!(
        dry["decision_ids"],
        json!([&id1, &id2, &id3, &id4]),
        "oldest first"
    );
    assert_eq!(total(&s, VIEWER, D), 4);
    assert_eq!(audit_total(&s, "action=delete"), 0);
    let typed: perfgate_client::PruneDecisionsResponse = serde_json::from_value(dry).unwrap();
    assert_eq!(typed.matched, 4);

    // Strictly older than the cutoff: the third decision's own time keeps it.
    let cutoff = named_by_receipt["created_at"].as_str().unwrap();
    let pruned = expect(
        s.post(ADMIN, &format!("{D}/prune"), &json!({"older_than": cutoff})),
        200,
    );
    assert_eq!(pruned["dry_run"], false, "dry_run defaults to false");
    assert_eq!(pruned["matched"], 2);
    assert_eq!(pruned["deleted"], 2);
    assert_eq!(pruned["decision_ids"], json!([&id1, &id2]));
    assert_eq!(
        ids(&expect(s.get(VIEWER, D), 200)),
        [id4.as_str(), id3.as_str()]
    );
    assert_eq!(q("rule=wall-for-rss"), [id4.as_str(), id3.as_str()]);
    expect_error(s.get(VIEWER, &format!("{D}/{id1}")), 404, "not_found");
    let events = expect(
        s.get(ADMIN, "/api/v1/audit?resource_type=decision&action=delete"),
        200,
    );
    assert_eq!(events["pagination"]["total"], 1);
    let ev = &events["events"][0];
    assert_eq!(ev["actor"].as_str().map(|a| !a.is_empty()), Some(true));
    assert_eq!(ev["project"], "proj");
    assert_eq!(ev["metadata"]["deleted"], 2);
    assert_eq!(ev["metadata"]["decision_ids"], json!([&id1, &id2]));
    // A cutoff in the past matches nothing (and is still audited).
    let none = expect(
        s.post(
            ADMIN,
            &format!("{D}/prune"),
            &json!({"older_than": "2000-01-01T00:00:00+02:00", "dry_run": false}),
        ),
        200,
    );
    assert_eq!(
        (none["matched"].as_u64(), none["deleted"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(none["decision_ids"], json!([]));
    assert_eq!(audit_total(&s, "action=delete"), 2);

    // Stored decisions survive a restart.
    if matches!(b, Backend::Memory) {
        return;
    }
    let mut s = s;
    s.restart();
    assert_eq!(expect(s.get(VIEWER, &format!("{D}/latest")), 200), fourth);
    assert_eq!(total(&s, VIEWER, D), 2);
}

fn ledger_refuses_bad_input(b: Backend) {
    let s = Server::start(b);
    expect(s.post(CONTRIB, D, &full_upload()), 201);

    let field = |r: Response, status: u16| -> String {
        let e = expect_error(r, status, "invalid_input");
        e["details"]["field"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let with = |key: &str, v: Value| {
        let mut body = full_upload();
        body[key] = v;
        body
    };

    // Schema ids, exactly: 400 naming the field.
    let mut t = tradeoff_accepted();
    t["schema"] = json!("perfgate.tradeoff.v2");
    assert_eq!(
        field(s.post(CONTRIB, D, &with("tradeoff", t)), 400),
        "tradeoff.schema"
    );
    assert_eq!(
        field(
            s.post(CONTRIB, D, &with("tradeoff", fixture("run-bench-a-1.json"))),
            400
        ),
        "tradeoff.schema"
    );
    assert_eq!(
        field(
            s.post(CONTRIB, D, &with("scenario", tradeoff_accepted())),
            400
        ),
        "scenario.schema"
    );
    let mut idx = fixture("decision-index.json");
    idx["schema"] = json!("perfgate.decision_bundle.v1");
    assert_eq!(
        field(s.post(CONTRIB, D, &with("artifact_index", idx)), 400),
        "artifact_index.schema"
    );

    // Receipts the CLI could not read back: 422 naming the field.
    let mut t = tradeoff_accepted();
    t["rules"][0]["accepted"] = json!("yes");
    assert_eq!(
        field(s.post(CONTRIB, D, &with("tradeoff", t)), 422),
        "tradeoff.rules[0].accepted"
    );
    let mut t = tradeoff_accepted();
    t["verdict"]["counts"]["pass"] = json!(-1);
    assert_eq!(
        field(s.post(CONTRIB, D, &with("tradeoff", t)), 422),
        "tradeoff.verdict.counts.pass"
    );
    let mut t = tradeoff_accepted();
    t["decision"]["status"] = json!("great");
    assert_eq!(
        field(s.post(CONTRIB, D, &with("tradeoff", t)), 422),
        "tradeoff.decision.status"
    );
    // A receipt's run is bounded as a run receipt's is (one `RunMeta` in the document).
    let mut t = tradeoff_accepted();
    t["run"]["host"]["arch"] = json!("a".repeat(65));
    assert_eq!(
        field(s.post(CONTRIB, D, &with("tradeoff", t)), 422),
        "tradeoff.run.host.arch"
    );
    let mut t = tradeoff_accepted();
    t["run"]["id"] = json!("run\u{0}1");
    assert_eq!(
        field(s.post(CONTRIB, D, &with("tradeoff", t)), 422),
        "tradeoff.run.id"
    );
    let mut sc = fixture("scenario-checkout.json");
    sc["run"]["host"]["os"] = json!("linux\u{85}");
    assert_eq!(
        field(s.post(CONTRIB, D, &with("scenario", sc)), 422),
        "scenario.run.host.os"
    );
    let mut sc = fixture("scenario-checkout.json");
    sc.as_object_mut().unwrap().remove("components");
    assert_eq!(
        field(s.post(CONTRIB, D, &with("scenario", sc)), 422),
        "scenario"
    );
    assert_eq!(
        field(s.post(CONTRIB, D, &with("artifact_index", json!([]))), 422),
        "artifact_index"
    );
    expect_error(
        s.post(CONTRIB, D, &json!({"git_ref": "x"})),
        422,
        "invalid_input",
    );
    expect_error(
        s.post(CONTRIB, D, &json!({"tradeoff": null})),
        422,
        "invalid_input",
    );

    // Names and git fields within their limits.
    let mut t = tradeoff_accepted();
    t["scenario"] = json!("s".repeat(257));
    assert_eq!(
        field(s.post(CONTRIB, D, &with("tradeoff", t)), 400),
        "tradeoff.scenario"
    );
    let mut t = tradeoff_accepted();
    t["rules"][0]["name"] = json!("a\u{7}b");
    assert_eq!(
        field(s.post(CONTRIB, D, &with("tradeoff", t)), 400),
        "tradeoff.rules.name"
    );
    assert_eq!(
        field(
            s.post(CONTRIB, D, &with("git_ref", json!("r".repeat(300)))),
            400
        ),
        "git_ref"
    );
    assert_eq!(
        field(s.post(CONTRIB, D, &with("git_sha", json!("a\nb"))), 400),
        "git_sha"
    );

    // Transport: not JSON, malformed JSON, a bad project name.
    let r = s
        .http
        .post(s.url(D))
        .bearer_auth(CONTRIB)
        .header("content-type", "text/plain")
        .body(full_upload().to_string())
        .send()
        .unwrap();
    expect_error(r, 415, "unsupported_media_type");
    let r = s
        .http
        .post(s.url(D))
        .bearer_auth(CONTRIB)
        .header("content-type", "application/json")
        .body("{\"tradeoff\": ")
        .send()
        .unwrap();
    expect_error(r, 400, "invalid_input");
    expect_error(
        s.post(
            CONTRIB,
            "/api/v1/projects/bad*name/decisions",
            &full_upload(),
        ),
        400,
        "invalid_input",
    );

    // List queries.
    for query in [
        "status=great",
        "verdict=ok",
        "review_required=maybe",
        "accepted=1x",
        "limit=0",
        "limit=-5",
        "offset=-1",
        "limit=many",
    ] {
        expect_error(s.get(VIEWER, &format!("{D}?{query}")), 400, "invalid_input");
    }
    assert_eq!(
        field(
            s.get(VIEWER, &format!("{D}?scenario={}", "s".repeat(300))),
            400
        ),
        "scenario"
    );
    assert_eq!(
        field(s.get(VIEWER, &format!("{D}?rule=a%01b")), 400),
        "rule"
    );

    // Prune bodies.
    let p = format!("{D}/prune");
    expect_error(
        s.post(ADMIN, &p, &json!({"older_than": "yesterday"})),
        400,
        "invalid_input",
    );
    expect_error(
        s.post(ADMIN, &p, &json!({"dry_run": true})),
        422,
        "invalid_input",
    );
    expect_error(
        s.post(
            ADMIN,
            &p,
            &json!({"older_than": "2999-01-01T00:00:00Z", "dry_run": "no"}),
        ),
        422,
        "invalid_input",
    );
    // Methods the ledger does not have.
    expect_error(s.get(ADMIN, &p), 405, "method_not_allowed");
    expect_error(
        s.delete(ADMIN, &format!("{D}/latest")),
        405,
        "method_not_allowed",
    );

    // Nothing was half-written: one decision, one audit event.
    assert_eq!(total(&s, VIEWER, D), 1);
    assert_eq!(audit_total(&s, "action=create"), 1);
    assert_eq!(audit_total(&s, "action=delete"), 0);
}

fn ledger_authorization(b: Backend) {
    let s = Server::start(b);
    let p = format!("{D}/prune");
    let dry = json!({"older_than": "2999-01-01T00:00:00Z", "dry_run": true});

    // No credential, a bad one.
    let r = s.http.get(s.url(D)).send().unwrap();
    expect_error(r, 401, "unauthorized");
    let r = s.http.post(s.url(D)).json(&full_upload()).send().unwrap();
    expect_error(r, 401, "unauthorized");
    expect_error(
        s.get("pg_live_nosuchkeynosuchkeynosuchkey0001", D),
        401,
        "unauthorized",
    );

    // Scopes: read to list, write to upload, delete to prune (dry runs too).
    let e = expect_error(s.post(VIEWER, D, &full_upload()), 403, "forbidden");
    assert_eq!(e["message"], "Requires 'write' permission");
    expect(s.post(CONTRIB, D, &full_upload()), 201);
    expect(s.post(PROMOTER, D, &full_upload()), 201);
    expect(s.get(VIEWER, D), 200);
    expect(s.get(VIEWER, &format!("{D}/latest")), 200);
    for key in [VIEWER, CONTRIB, PROMOTER] {
        let e = expect_error(s.post(key, &p, &dry), 403, "forbidden");
        assert_eq!(e["message"], "Requires 'delete' permission");
    }
    expect(s.post(ADMIN, &p, &dry), 200);

    // Project-bound keys reach their project only.
    let e = expect_error(s.get(OTHER_ADMIN, D), 403, "forbidden");
    assert_eq!(e["message"], "Key is restricted to project 'other'");
    expect_error(s.post(OTHER_ADMIN, D, &full_upload()), 403, "forbidden");
    expect_error(s.post(OTHER_ADMIN, &p, &dry), 403, "forbidden");
    let other = "/api/v1/projects/other/decisions";
    expect(s.post(OTHER_ADMIN, other, &full_upload()), 201);
    let pruned = expect(
        s.post(
            OTHER_ADMIN,
            &format!("{other}/prune"),
            &json!({"older_than": "2999-01-01T00:00:00Z"}),
        ),
        200,
    );
    assert_eq!(pruned["deleted"], 1);

    // A benchmark-restricted key cannot use the ledger at all: decisions span benchmarks.
    let e = expect_error(s.post(RESTRICTED, D, &full_upload()), 403, "forbidden");
    assert_eq!(
        e["message"],
        "Keys restricted to some benchmarks cannot use the decision ledger"
    );
    for path in [D.to_owned(), format!("{D}/latest")] {
        expect_error(s.get(RESTRICTED, &path), 403, "forbidden");
    }
    let id = expect(s.get(VIEWER, &format!("{D}/latest")), 200)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    expect_error(s.get(RESTRICTED, &format!("{D}/{id}")), 403, "forbidden");
    // The restricted key's scope is still checked first.
    let e = expect_error(s.post(RESTRICTED, &p, &dry), 403, "forbidden");
    assert_eq!(e["message"], "Requires 'delete' permission");

    // Refusals wrote nothing.
    assert_eq!(total(&s, VIEWER, D), 2);
    assert_eq!(total(&s, OTHER_ADMIN, other), 0);
}

fn client(s: &Server, key: &str) -> BaselineClient {
    let cfg = ClientConfig::new(format!("{}/api/v1", s.base))
        .with_api_key(key)
        .with_timeout(Duration::from_secs(10))
        .with_retry(RetryConfig::new().with_max_retries(0));
    BaselineClient::new(cfg).unwrap()
}

/// The calls `perfgate decision upload|history|latest|debt|export|prune` and `perfgate ledger
/// doctor` make, through the published client.
fn published_client(b: Backend) {
    let s = Server::start(b);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = client(&s, ADMIN);
    rt.block_on(async {
        match c.latest_decision("proj").await {
            Err(ClientError::HttpError { status: 404, .. }) => {}
            other => panic!("expected not found, got {other:?}"),
        }
        let request = UploadDecisionRequest {
            tradeoff: serde_json::from_value(tradeoff_accepted()).unwrap(),
            scenario: Some(serde_json::from_value(fixture("scenario-checkout.json")).unwrap()),
            artifact_index: Some(serde_json::from_value(fixture("decision-index.json")).unwrap()),
            git_ref: Some("refs/heads/main".into()),
            git_sha: None,
        };
        let up = c.upload_decision("proj", &request).await.unwrap();
        assert_eq!(up.scenario.as_deref(), Some("checkout"));
        assert_eq!(up.accepted_rules, ["wall-for-rss"]);
        assert_eq!(up.git_sha, None);
        let rejected = UploadDecisionRequest {
            tradeoff: serde_json::from_value(tradeoff_rejected()).unwrap(),
            scenario: None,
            artifact_index: None,
            git_ref: None,
            git_sha: None,
        };
        let second = c.upload_decision("proj", &rejected).await.unwrap();
        assert!(second.accepted_rules.is_empty());

        let all = c
            .list_decisions("proj", &ListDecisionsQuery::new().with_limit(1000))
            .await
            .unwrap();
        assert_eq!(all.pagination.total, 2);
        assert_eq!(all.decisions[0], second);
        assert_eq!(all.decisions[1], up);
        let accepted = c
            .list_decisions(
                "proj",
                &ListDecisionsQuery::new()
                    .with_accepted(true)
                    .with_rule("wall-for-rss")
                    .with_scenario("checkout")
                    .with_review_required(false)
                    .with_status(up.status)
                    .with_verdict(up.verdict),
            )
            .await
            .unwrap();
        assert_eq!(accepted.decisions.len(), 1);
        assert_eq!(accepted.decisions[0], up);
        let latest = c.latest_decision("proj").await.unwrap();
        assert_eq!(latest, second);

        let dry = c
            .prune_decisions(
                "proj",
                &PruneDecisionsRequest {
                    older_than: chrono::Utc::now() + chrono::Duration::hours(1),
                    dry_run: true,
                },
            )
            .await
            .unwrap();
        assert_eq!((dry.matched, dry.deleted), (2, 0));
        assert_eq!(dry.decision_ids, [up.id.clone(), second.id.clone()]);
        let done = c
            .prune_decisions(
                "proj",
                &PruneDecisionsRequest {
                    older_than: chrono::Utc::now() + chrono::Duration::hours(1),
                    dry_run: false,
                },
            )
            .await
            .unwrap();
        assert_eq!((done.matched, done.deleted), (2, 2));
        let left = c
            .list_decisions("proj", &ListDecisionsQuery::new())
            .await
            .unwrap();
        assert_eq!(left.pagination.total, 0);

        // A refusal reaches the client as the contract's error.
        match client(&s, VIEWER).upload_decision("proj", &rejected).await {
            Err(ClientError::HttpError { status: 403, .. }) => {}
            other => panic!("expected 403, got {other:?}"),
        }
    });
}

backend_tests!(
    ledger_round_trip,
    ledger_refuses_bad_input,
    ledger_authorization,
    published_client
);
