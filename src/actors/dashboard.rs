//! Dashboard reads (projects, benchmark tables, history): an actor with readers only and a read
//! pool of its own, so a dashboard browsing large projects never takes the baseline store's
//! readers from CI. Each op is one read transaction.

use std::collections::BTreeMap;

use super::Op;
use super::StoreError;
use crate::db::dashboard::{self as q, HistoryRow, LastVerdict, RecentVersion};
use crate::db::{read_tx, DbError, DbPool, PooledConn};
use crate::domain::access::BenchFilter;

pub(crate) struct DashboardReader {
    pool: DbPool,
}

crate::store_actor!(DashboardReader);

impl DashboardReader {
    pub(crate) fn new(pool: DbPool) -> Self {
        Self { pool }
    }
    fn conn(&self) -> Result<PooledConn, StoreError> {
        Ok(self.pool.get().map_err(DbError::from)?)
    }
}

/// Points in a benchmark's sparkline.
pub(crate) const SPARK_POINTS: i64 = 30;

#[derive(Debug)]
pub(crate) struct ProjectSummary {
    pub project: String,
    pub benchmarks: u64,
    pub baselines: u64,
    pub verdicts: u64,
    /// Newest upload, promote, delete or verdict (µs), if any.
    pub last_activity: Option<i64>,
}

/// The projects a caller can read: every project for a caller of `*`, else its own (listed even
/// when still empty, so the picker always has it). Counts cover visible benchmarks only.
pub(crate) struct Projects {
    pub only: Option<String>,
    pub visible: Option<BenchFilter>,
}

impl Op<DashboardReader> for Projects {
    type Output = Result<Vec<ProjectSummary>, StoreError>;
    fn run(self, s: &mut DashboardReader) -> Self::Output {
        let mut c = s.conn()?;
        read_tx(&mut c, |c| {
            let only = self.only.as_deref();
            let visible = |b: &str| self.visible.as_ref().is_none_or(|f| f.matches(b));
            let verdicts = q::verdict_totals(c, only)?;
            let mut by_project: BTreeMap<String, ProjectSummary> = BTreeMap::new();
            let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
            if let Some(p) = only {
                by_project.insert(p.to_owned(), ProjectSummary::empty(p));
            }
            for r in q::benchmark_counts(c, only)? {
                if !visible(&r.benchmark) {
                    continue;
                }
                let e = by_project
                    .entry(r.project.clone())
                    .or_insert_with(|| ProjectSummary::empty(&r.project));
                e.benchmarks += 1;
                e.baselines += r.baselines.max(0) as u64;
                e.verdicts += verdicts
                    .get(&(r.project.clone(), r.benchmark.clone()))
                    .copied()
                    .unwrap_or(0)
                    .max(0) as u64;
                if r.updated_at > 0 {
                    e.last_activity = e.last_activity.max(Some(r.updated_at));
                }
                names.entry(r.project).or_default().push(r.benchmark);
            }
            for (project, e) in by_project.iter_mut() {
                let newest_verdict = if self.visible.is_none() {
                    q::last_verdict_at(c, project, None)?
                } else {
                    let mut newest = None;
                    for b in names.get(project).into_iter().flatten() {
                        newest = newest.max(q::last_verdict_at(c, project, Some(b))?);
                    }
                    newest
                };
                e.last_activity = e.last_activity.max(newest_verdict);
            }
            Ok(by_project.into_values().collect())
        })
    }
}

impl ProjectSummary {
    fn empty(project: &str) -> Self {
        Self {
            project: project.to_owned(),
            benchmarks: 0,
            baselines: 0,
            verdicts: 0,
            last_activity: None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct BenchmarkOverview {
    pub benchmark: String,
    pub baselines: u64,
    pub verdicts: u64,
    /// Up to [`SPARK_POINTS`] newest versions, newest first.
    pub recent: Vec<RecentVersion>,
    /// The version GET latest serves (never a quarantined one).
    pub latest: Option<RecentVersion>,
    pub last_verdict: Option<LastVerdict>,
}

/// A project's benchmark table: every visible benchmark with its newest versions and verdict.
pub(crate) struct ProjectBenchmarks {
    pub project: String,
    pub visible: Option<BenchFilter>,
}

impl Op<DashboardReader> for ProjectBenchmarks {
    type Output = Result<Vec<BenchmarkOverview>, StoreError>;
    fn run(self, s: &mut DashboardReader) -> Self::Output {
        let mut c = s.conn()?;
        read_tx(&mut c, |c| {
            let p = self.project.as_str();
            let verdicts = q::verdict_totals(c, Some(p))?;
            let mut out = Vec::new();
            for r in q::benchmark_counts(c, Some(p))? {
                if self
                    .visible
                    .as_ref()
                    .is_some_and(|f| !f.matches(&r.benchmark))
                {
                    continue;
                }
                let recent = if r.baselines > 0 {
                    q::recent_versions(c, p, &r.benchmark, SPARK_POINTS)?
                } else {
                    Vec::new()
                };
                let latest = match recent.first() {
                    Some(v) if v.quarantined => q::latest_version(c, p, &r.benchmark)?,
                    newest => newest.cloned(),
                };
                out.push(BenchmarkOverview {
                    latest,
                    verdicts: verdicts
                        .get(&(p.to_owned(), r.benchmark.clone()))
                        .copied()
                        .unwrap_or(0)
                        .max(0) as u64,
                    last_verdict: q::last_verdict(c, p, &r.benchmark)?,
                    baselines: r.baselines.max(0) as u64,
                    benchmark: r.benchmark,
                    recent,
                });
            }
            Ok(out)
        })
    }
}

/// One benchmark's live versions, newest first, with receipts.
pub(crate) struct History {
    pub project: String,
    pub benchmark: String,
    pub limit: i64,
    pub offset: i64,
}

impl Op<DashboardReader> for History {
    /// The page, the total, and the ids of the page's quarantined versions.
    type Output = Result<(Vec<HistoryRow>, i64, Vec<String>), StoreError>;
    fn run(self, s: &mut DashboardReader) -> Self::Output {
        let mut c = s.conn()?;
        read_tx(&mut c, |c| {
            let (rows, total) =
                q::history(c, &self.project, &self.benchmark, self.limit, self.offset)?;
            let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
            let held = crate::db::alerts::quarantined_among(c, &ids)?;
            Ok((rows, total, held))
        })
    }
}
