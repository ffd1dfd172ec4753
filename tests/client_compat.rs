//! The published client library (`perfgate-client` 0.18.1, what the perfgate CLI uses) against
//! this server, on every backend: if these calls work, the CLI works.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use perfgate_client::{
    BaselineClient, ClientConfig, ClientError, ListBaselinesQuery, PromoteBaselineRequest,
    RetryConfig, UploadBaselineRequest,
};
use perfgate_types::RunReceipt;

/// The runtime the published client's async calls run on.
fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn client(s: &Server, key: &str) -> BaselineClient {
    let cfg = ClientConfig::new(format!("{}/api/v1", s.base))
        .with_api_key(key)
        .with_timeout(Duration::from_secs(10))
        .with_retry(RetryConfig::new().with_max_retries(0));
    BaselineClient::new(cfg).unwrap()
}

fn receipt(name: &str) -> RunReceipt {
    serde_json::from_value(fixture(name)).unwrap()
}

fn upload_req(bench: &str, version: Option<&str>, r: RunReceipt) -> UploadBaselineRequest {
    UploadBaselineRequest {
        benchmark: bench.into(),
        version: version.map(str::to_owned),
        git_ref: Some("refs/heads/main".into()),
        git_sha: Some("0123abcd".into()),
        receipt: r,
        metadata: BTreeMap::from([("runner".to_owned(), "ci".to_owned())]),
        tags: vec!["nightly".into()],
        normalize: false,
    }
}

fn published_client_round_trip(b: Backend) {
    let s = Server::start(b);
    let rt = rt();
    let c = client(&s, ADMIN);
    rt.block_on(async {
        let h = c.health_check().await.unwrap();
        assert_eq!(h.status, "healthy");
        assert!(c.is_healthy().await);

        // upload (explicit and generated versions, a name with '/')
        let up = c
            .upload_baseline(
                "proj",
                &upload_req("bench-a", Some("v1"), receipt("run-bench-a-1.json")),
            )
            .await
            .unwrap();
        assert_eq!(up.version, "v1");
        assert!(up.etag.starts_with("\"sha256:"));
        let gen = c
            .upload_baseline(
                "proj",
                &upload_req("bench-a", None, receipt("run-bench-a-2.json")),
            )
            .await
            .unwrap();
        assert!(gen.created_at >= up.created_at);
        c.upload_baseline(
            "proj",
            &upload_req("render/md", Some("v1"), receipt("run-render-md.json")),
        )
        .await
        .unwrap();

        // latest: the generated version, with its receipt intact
        let latest = c.get_latest_baseline("proj", "bench-a").await.unwrap();
        assert_eq!(latest.version, gen.version);
        assert_eq!(latest.receipt, receipt("run-bench-a-2.json"));
        assert_eq!(latest.git_ref.as_deref(), Some("refs/heads/main"));
        assert_eq!(latest.metadata["runner"], "ci");
        assert_eq!(latest.etag(), gen.etag);
        let md = c.get_latest_baseline("proj", "render/md").await.unwrap();
        assert_eq!(md.benchmark, "render/md");

        // version
        let v1 = c
            .get_baseline_version("proj", "bench-a", "v1")
            .await
            .unwrap();
        assert_eq!(v1.receipt, receipt("run-bench-a-1.json"));
        assert!(!v1.deleted);

        // list, with filters and receipts
        let all = c
            .list_baselines("proj", &ListBaselinesQuery::new())
            .await
            .unwrap();
        assert_eq!(all.pagination.total, 3);
        assert_eq!(all.baselines.len(), 3);
        assert!(all.baselines[0].receipt.is_none());
        let a = c
            .list_baselines(
                "proj",
                &ListBaselinesQuery::new()
                    .with_benchmark("bench-a")
                    .with_receipts()
                    .with_limit(1),
            )
            .await
            .unwrap();
        assert_eq!(a.pagination.total, 2);
        assert!(a.pagination.has_more);
        assert_eq!(a.baselines[0].version, gen.version);
        assert!(a.baselines[0].receipt.is_some());
        let mut q = ListBaselinesQuery::new().with_benchmark_prefix("render/");
        q.since = Some(up.created_at);
        q.tags = Some("nightly".into());
        let r = c.list_baselines("proj", &q).await.unwrap();
        assert_eq!(r.pagination.total, 1);

        // promote
        let p = c
            .promote_baseline(
                "proj",
                "bench-a",
                &PromoteBaselineRequest {
                    from_version: "v1".into(),
                    to_version: "stable".into(),
                    git_ref: None,
                    git_sha: None,
                    tags: vec!["release".into()],
                    normalize: false,
                },
            )
            .await
            .unwrap();
        assert_eq!(p.promoted_from, "v1");
        let latest = c.get_latest_baseline("proj", "bench-a").await.unwrap();
        assert_eq!(latest.version, "stable");
        assert_eq!(latest.source, perfgate_client::BaselineSource::Promote);

        // delete
        c.delete_baseline("proj", "bench-a", "stable")
            .await
            .unwrap();
        let latest = c.get_latest_baseline("proj", "bench-a").await.unwrap();
        assert_eq!(latest.version, gen.version);
        match c.get_baseline_version("proj", "bench-a", "stable").await {
            Err(ClientError::HttpError { status: 404, .. })
            | Err(ClientError::NotFoundError(_)) => {}
            other => panic!("expected 404, got {other:?}"),
        }
        // conflict surfaces as an error, not a retryable 5xx
        match c
            .upload_baseline(
                "proj",
                &upload_req("bench-a", Some("v1"), receipt("run-bench-a-1.json")),
            )
            .await
        {
            Err(ClientError::HttpError { status: 409, .. })
            | Err(ClientError::AlreadyExistsError(_)) => {}
            other => panic!("expected 409, got {other:?}"),
        }
        // a viewer key reads but cannot write
        let viewer = client(&s, VIEWER);
        viewer.get_latest_baseline("proj", "bench-a").await.unwrap();
        match viewer
            .upload_baseline(
                "proj",
                &upload_req("bench-a", Some("v9"), receipt("run-bench-a-1.json")),
            )
            .await
        {
            Err(ClientError::HttpError { status: 403, .. }) | Err(ClientError::AuthError(_)) => {}
            other => panic!("expected 403, got {other:?}"),
        }
    });
}

fn published_client_verdicts_and_fleet(b: Backend) {
    use perfgate_client::{
        DependencyChange, DependencyImpactQuery, ListFleetAlertsQuery, ListVerdictsQuery,
        RecordDependencyEventRequest, SubmitVerdictRequest,
    };
    use perfgate_types::{VerdictCounts, VerdictStatus};
    let s = Server::start(b);
    let rt = rt();
    let c = client(&s, ADMIN);
    rt.block_on(async {
        // submit-verdict / verdicts / flaky
        let mut ids = Vec::new();
        for (status, cv) in [
            (VerdictStatus::Pass, 0.12),
            (VerdictStatus::Warn, 0.09),
            (VerdictStatus::Fail, 0.06),
        ] {
            let v = c
                .submit_verdict(
                    "proj",
                    &SubmitVerdictRequest {
                        benchmark: "bench-a".into(),
                        run_id: "run-1".into(),
                        status,
                        counts: VerdictCounts {
                            pass: 1,
                            warn: 0,
                            fail: 2,
                            skip: 3,
                        },
                        reasons: vec!["binary_bytes_fail".into()],
                        git_ref: None,
                        git_sha: Some("abc".into()),
                        wall_ms_cv: Some(cv),
                    },
                )
                .await
                .unwrap();
            assert_eq!(v.project, "proj");
            ids.push(v.id);
        }
        let list = c
            .list_verdicts("proj", &ListVerdictsQuery::new().with_benchmark("bench-a"))
            .await
            .unwrap();
        assert_eq!(list.pagination.total, 3);
        assert_eq!(list.verdicts[0].id, ids[2], "newest first");
        assert!((list.verdicts[0].flakiness_score.unwrap() - 0.045).abs() < 1e-9);
        assert_eq!(list.verdicts[0].status, VerdictStatus::Fail);
        let fails = c
            .list_verdicts(
                "proj",
                &ListVerdictsQuery::new().with_status(VerdictStatus::Fail),
            )
            .await
            .unwrap();
        assert_eq!(fails.verdicts.len(), 1);
        let mut since = ListVerdictsQuery::new();
        since.since = Some(list.verdicts[1].created_at);
        assert_eq!(
            c.list_verdicts("proj", &since)
                .await
                .unwrap()
                .pagination
                .total,
            2
        );

        // fleet record-event / alerts / impact
        for (project, delta) in [("proj-a", 12.0), ("proj-b", 18.0), ("proj-c", -3.0)] {
            let r = c
                .record_dependency_event(&RecordDependencyEventRequest {
                    project: project.into(),
                    benchmark: "bench-a".into(),
                    dependency_changes: vec![DependencyChange {
                        name: "serde".into(),
                        old_version: Some("1.0.0".into()),
                        new_version: Some("1.0.1".into()),
                    }],
                    metric: "wall_ms".into(),
                    delta_pct: delta,
                })
                .await
                .unwrap();
            assert_eq!(r.recorded, 1);
        }
        let alerts = c
            .list_fleet_alerts(&ListFleetAlertsQuery::default())
            .await
            .unwrap();
        assert_eq!(alerts.alerts.len(), 1);
        let a = &alerts.alerts[0];
        assert_eq!(a.dependency, "serde");
        assert_eq!(a.affected_projects.len(), 2);
        assert!((a.avg_delta_pct - 15.0).abs() < 1e-9);
        assert!((a.confidence - 0.4).abs() < 1e-9);
        let again = c
            .list_fleet_alerts(&ListFleetAlertsQuery::default())
            .await
            .unwrap();
        assert_eq!(again.alerts[0].id, a.id, "stable id");
        let impact = c
            .dependency_impact("serde", &DependencyImpactQuery::default())
            .await
            .unwrap();
        assert_eq!(impact.events.len(), 3);
        assert_eq!(impact.project_count, 3);
        assert!((impact.avg_delta_pct - 9.0).abs() < 1e-9);
    });
}

/// What a gate writes reads back through the published client: the version it records (a
/// `source` the client knows) and the audit log (whose default list holds only the resource
/// types the client knows; the server's own are listed when asked for).
fn published_client_reads_what_gates_write(b: Backend) {
    use perfgate_client::{AuditResourceType, BaselineSource, ListAuditEventsQuery};
    let s = Server::start(b);
    let rt = rt();
    let c = client(&s, ADMIN);
    rt.block_on(async {
        c.upload_baseline(
            "proj",
            &upload_req("bench-b", Some("v1"), receipt("run-bench-a-1.json")),
        )
        .await
        .unwrap();
    });
    let g = expect(
        s.post(
            ADMIN,
            "/api/v1/projects/proj/gates",
            &json!({"runs": [{"benchmark": "bench-a", "receipt": fixture("run-bench-a-2.json")}],
                "record": true}),
        ),
        201,
    );
    assert_eq!(g["recorded"].as_array().unwrap().len(), 1, "{g:#}");
    rt.block_on(async {
        let latest = c.get_latest_baseline("proj", "bench-a").await.unwrap();
        assert_eq!(
            latest.version,
            g["recorded"][0]["version"].as_str().unwrap()
        );
        assert_eq!(latest.source, BaselineSource::Upload);
        let audit = c
            .list_audit_events(&ListAuditEventsQuery::default())
            .await
            .unwrap();
        assert!(
            audit
                .events
                .iter()
                .any(|e| e.resource_type == AuditResourceType::Baseline),
            "{audit:?}"
        );
    });
    let all = expect(s.get(ADMIN, "/api/v1/audit?resource_type=all"), 200);
    let kinds: Vec<&str> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource_type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"gate") && kinds.contains(&"baseline"),
        "{kinds:?}"
    );
    let gates = expect(s.get(ADMIN, "/api/v1/audit?resource_type=gate"), 200);
    assert_eq!(gates["pagination"]["total"], 1, "{gates}");
}

backend_tests!(
    published_client_round_trip,
    published_client_verdicts_and_fleet,
    published_client_reads_what_gates_write
);
