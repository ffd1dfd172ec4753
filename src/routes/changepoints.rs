//! Change points of a benchmark: where its level moved, between which commits, and how sure the
//! server is (found by a background pass; see `actors::changepoints`).

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::json::Query;
use crate::actors::changepoints::ListChangePoints;
use crate::api::{ChangePointRecord, ChangePointsResponse};
use crate::auth::{Gate, Principal, Scope};
use crate::domain::names::{BenchmarkName, NameError, ProjectName};
use crate::domain::requests::check_runner_class;
use crate::domain::time::to_rfc3339;
use crate::domain::trend;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ChangePointsQuery {
    /// The metric (default `wall_ms`).
    metric: Option<String>,
    /// Only this runner class (as the gate reports it); every class by default.
    runner: Option<String>,
}

#[utoipa::path(get, operation_id = "change_points", path = "/api/v1/projects/{project}/benchmarks/{benchmark}/change-points", tag = "alerts", security(("bearer" = []), ("token" = [])),
    params(("project" = String, Path, description = "Project name"), ("benchmark" = String, Path, description = "Benchmark name (may contain `/`)"), ChangePointsQuery),
    responses((status = 200, description = "The benchmark's change points, oldest first per runner class", body = ChangePointsResponse), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn list(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: Query<ChangePointsQuery>,
) -> Result<HttpResponse, ApiError> {
    let (project, benchmark) = path.into_inner();
    let project = ProjectName::parse(&project)?;
    let benchmark = BenchmarkName::parse(&benchmark)?;
    principal.authorize(Scope::Read, project.as_str(), Some(benchmark.as_str()))?;
    let q = query.parse()?;
    let metric = q.metric.unwrap_or_else(|| "wall_ms".to_owned());
    if !trend::METRICS.contains(&metric.as_str()) {
        return Err(NameError::new(
            "metric",
            format!(
                "unknown metric '{metric}'; expected one of {}",
                trend::METRICS.join(", ")
            ),
        )
        .into());
    }
    if let Some(r) = &q.runner {
        check_runner_class(r)?;
    }
    let (points, tracked) = state
        .gates
        .read(ListChangePoints {
            project: project.as_str().to_owned(),
            benchmark: benchmark.as_str().to_owned(),
            metric: metric.clone(),
            runner: q.runner,
        })
        .await??;
    let change_points = points
        .into_iter()
        .map(|p| ChangePointRecord {
            id: p.row.id,
            index: p.row.idx,
            version: p.version,
            git_sha: p.row.git_sha,
            previous_git_sha: p.row.previous_git_sha,
            created_at: to_rfc3339(p.row.run_created_at),
            level_before: p.row.level_before,
            level_after: p.row.level_after,
            change_pct: p.row.change_pct,
            p: p.row.p,
            status: if p.confirmed {
                "confirmed"
            } else {
                "provisional"
            },
            strength: if p.row.strong { "strong" } else { "weak" },
            settled: p.row.settled,
            runner: p.row.runner,
            alert_id: p.row.alert_id,
        })
        .collect();
    Ok(HttpResponse::Ok().json(ChangePointsResponse {
        project: project.into_string(),
        benchmark: benchmark.as_str().to_owned(),
        metric,
        tracked,
        change_points,
    }))
}
