//! Baseline queries: free functions over `&mut DbConn`, called inside actor transactions.

use diesel::dsl::{count_star, exists};
use diesel::prelude::*;

use super::schema::{baseline_tags, baselines, benchmarks, idempotency_keys, quarantine};
use super::DbConn;
use crate::on_backend;

type Db = <DbConn as Connection>::Backend;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize, serde::Deserialize)]
#[diesel(table_name = baselines)]
pub struct BaselineRow {
    pub id: String,
    pub project: String,
    pub benchmark: String,
    pub version: String,
    pub git_ref: Option<String>,
    pub git_sha: Option<String>,
    pub receipt: String,
    pub metadata: String,
    pub tags: String,
    pub content_hash: String,
    pub source: String,
    pub promoted_from: Option<String>,
    pub wall_ms_median: Option<i64>,
    pub medians: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
}

/// A list entry; the receipt only when asked for.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct SummaryRow {
    pub id: String,
    pub benchmark: String,
    pub version: String,
    pub created_at: i64,
    pub git_ref: Option<String>,
    pub git_sha: Option<String>,
    pub tags: String,
    pub receipt: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ListFilter {
    pub project: String,
    pub benchmark: Option<String>,
    pub benchmark_prefix: Option<String>,
    /// Set for principals restricted by a benchmark regex: only these names are visible.
    pub allowed_benchmarks: Option<Vec<String>>,
    pub git_ref: Option<String>,
    pub git_sha: Option<String>,
    pub tags: Vec<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub include_receipt: bool,
    pub limit: i64,
    pub offset: i64,
}

diesel::define_sql_function!(fn substr(s: diesel::sql_types::Text, start: diesel::sql_types::Integer, len: diesel::sql_types::Integer) -> diesel::sql_types::Text);

fn filtered(f: &ListFilter) -> baselines::BoxedQuery<'static, Db> {
    let mut q = baselines::table
        .filter(baselines::project.eq(f.project.clone()))
        .filter(baselines::deleted_at.is_null())
        .into_boxed();
    if let Some(b) = &f.benchmark {
        q = q.filter(baselines::benchmark.eq(b.clone()));
    }
    if let Some(p) = &f.benchmark_prefix {
        // substr compares bytes exactly on both backends, unlike LIKE (case-insensitive on
        // SQLite) or range comparisons (collation-dependent on PostgreSQL).
        q = q.filter(substr(baselines::benchmark, 1, p.chars().count() as i32).eq(p.clone()));
    }
    if let Some(allowed) = &f.allowed_benchmarks {
        q = q.filter(baselines::benchmark.eq_any(allowed.clone()));
    }
    if let Some(r) = &f.git_ref {
        q = q.filter(baselines::git_ref.eq(r.clone()));
    }
    if let Some(s) = &f.git_sha {
        q = q.filter(baselines::git_sha.eq(s.clone()));
    }
    for t in &f.tags {
        q = q.filter(exists(
            baseline_tags::table
                .filter(baseline_tags::baseline_id.eq(baselines::id))
                .filter(baseline_tags::tag.eq(t.clone())),
        ));
    }
    if let Some(s) = f.since {
        q = q.filter(baselines::created_at.ge(s));
    }
    if let Some(u) = f.until {
        q = q.filter(baselines::created_at.le(u));
    }
    q
}

/// The total of a filter that only selects benchmarks, from the per-benchmark live counts kept
/// with every write: O(benchmarks of the project) instead of counting the project's history.
fn total_from_counts(conn: &mut DbConn, f: &ListFilter) -> QueryResult<Option<i64>> {
    if f.git_ref.is_some()
        || f.git_sha.is_some()
        || !f.tags.is_empty()
        || f.since.is_some()
        || f.until.is_some()
    {
        return Ok(None);
    }
    let mut q = benchmarks::table
        .filter(benchmarks::project.eq(f.project.clone()))
        .into_boxed();
    if let Some(b) = &f.benchmark {
        q = q.filter(benchmarks::benchmark.eq(b.clone()));
    }
    if let Some(p) = &f.benchmark_prefix {
        q = q.filter(substr(benchmarks::benchmark, 1, p.chars().count() as i32).eq(p.clone()));
    }
    if let Some(allowed) = &f.allowed_benchmarks {
        q = q.filter(benchmarks::benchmark.eq_any(allowed.clone()));
    }
    let counts: Vec<i64> = q.select(benchmarks::baseline_count).load(conn)?;
    Ok(Some(counts.into_iter().sum()))
}

/// One page, newest first, and the number of rows matching the filter.
pub(crate) fn list(conn: &mut DbConn, f: &ListFilter) -> QueryResult<(Vec<SummaryRow>, i64)> {
    if matches!(&f.allowed_benchmarks, Some(a) if a.is_empty()) {
        return Ok((Vec::new(), 0));
    }
    let total: i64 = match total_from_counts(conn, f)? {
        Some(t) => t,
        None => filtered(f).select(count_star()).first(conn)?,
    };
    if total <= f.offset {
        return Ok((Vec::new(), total));
    }
    let page = filtered(f)
        .order((baselines::created_at.desc(), baselines::id.desc()))
        .limit(f.limit)
        .offset(f.offset);
    let rows = if f.include_receipt {
        page.select((
            baselines::id,
            baselines::benchmark,
            baselines::version,
            baselines::created_at,
            baselines::git_ref,
            baselines::git_sha,
            baselines::tags,
            baselines::receipt.nullable(),
        ))
        .load::<SummaryRow>(conn)?
    } else {
        page.select((
            baselines::id,
            baselines::benchmark,
            baselines::version,
            baselines::created_at,
            baselines::git_ref,
            baselines::git_sha,
            baselines::tags,
            None::<String>.into_sql::<diesel::sql_types::Nullable<diesel::sql_types::Text>>(),
        ))
        .load::<SummaryRow>(conn)?
    };
    Ok((rows, total))
}

/// A benchmark's live (not deleted) versions, newest first (`baselines_latest_idx`).
#[diesel::dsl::auto_type(no_type_alias)]
pub(crate) fn live_newest_first<'a>(project: &'a str, benchmark: &'a str) -> _ {
    baselines::table
        .filter(baselines::project.eq(project))
        .filter(baselines::benchmark.eq(benchmark))
        .filter(baselines::deleted_at.is_null())
        .order((baselines::created_at.desc(), baselines::id.desc()))
}

/// The newest live version that is not quarantined (a run a final gate failed is never served
/// as the baseline): `baselines_latest_idx` top-down, a primary-key lookup in `quarantine` per
/// row until the first free one.
pub(crate) fn latest(
    conn: &mut DbConn,
    project: &str,
    benchmark: &str,
) -> QueryResult<Option<BaselineRow>> {
    live_newest_first(project, benchmark)
        .filter(diesel::dsl::not(exists(
            quarantine::table.filter(quarantine::baseline_id.eq(baselines::id)),
        )))
        .select(BaselineRow::as_select())
        .first(conn)
        .optional()
}

/// A version, deleted or not.
pub(crate) fn find_version(
    conn: &mut DbConn,
    project: &str,
    benchmark: &str,
    version: &str,
) -> QueryResult<Option<BaselineRow>> {
    baselines::table
        .filter(baselines::project.eq(project))
        .filter(baselines::benchmark.eq(benchmark))
        .filter(baselines::version.eq(version))
        .select(BaselineRow::as_select())
        .first(conn)
        .optional()
}

pub(crate) fn version_taken(
    conn: &mut DbConn,
    project: &str,
    benchmark: &str,
    version: &str,
) -> QueryResult<bool> {
    // On the concrete connection: through `MultiConnection` the SQL is rendered again at each
    // execution, needlessly (every upload asks).
    on_backend!(conn, c => diesel::select(exists(
        baselines::table
            .filter(baselines::project.eq(project))
            .filter(baselines::benchmark.eq(benchmark))
            .filter(baselines::version.eq(version)),
    ))
    .get_result(c))
}

/// Bumps the benchmark's count and inserts a baseline with its tags. The benchmark's row is the
/// first lock an insert takes, before the version's key in the unique index: two replicas'
/// batches sorted by (project, benchmark, version) then cannot wait on each other in a cycle
/// (a generated and an explicit version of one benchmark would otherwise take key, row, key).
pub(crate) fn insert(conn: &mut DbConn, row: &BaselineRow, tags: &[String]) -> QueryResult<()> {
    bump_benchmark(conn, &row.project, &row.benchmark, 1, row.created_at)?;
    // On the concrete connection, each column bound as what it is: its cached statement is
    // found by its type (a row of the derived `Insertable` leaves its optional columns to the
    // statement, which makes Diesel render the SQL at each execution to find it). Every field
    // is named, so a column added to the row cannot be left out here.
    let BaselineRow {
        id,
        project,
        benchmark,
        version,
        git_ref,
        git_sha,
        receipt,
        metadata,
        tags: tags_json,
        content_hash,
        source,
        promoted_from,
        wall_ms_median,
        medians,
        created_at,
        updated_at,
        deleted_at,
    } = row;
    on_backend!(conn, c => diesel::insert_into(baselines::table)
        .values((
            baselines::id.eq(id),
            baselines::project.eq(project),
            baselines::benchmark.eq(benchmark),
            baselines::version.eq(version),
            baselines::git_ref.eq(git_ref.as_deref()),
            baselines::git_sha.eq(git_sha.as_deref()),
            baselines::receipt.eq(receipt),
            baselines::metadata.eq(metadata),
            baselines::tags.eq(tags_json),
            baselines::content_hash.eq(content_hash),
            baselines::source.eq(source),
            baselines::promoted_from.eq(promoted_from.as_deref()),
            baselines::wall_ms_median.eq(*wall_ms_median),
            baselines::medians.eq(medians),
            baselines::created_at.eq(*created_at),
            baselines::updated_at.eq(*updated_at),
            baselines::deleted_at.eq(*deleted_at),
        ))
        .execute(c))?;
    if !tags.is_empty() {
        let mut uniq: Vec<&String> = tags.iter().collect();
        uniq.sort();
        uniq.dedup();
        // One statement per tag: MultiConnection has no batch insert, and tags are few.
        for t in uniq {
            diesel::insert_into(baseline_tags::table)
                .values((
                    baseline_tags::baseline_id.eq(&row.id),
                    baseline_tags::tag.eq(t),
                ))
                .execute(conn)?;
        }
    }
    Ok(())
}

/// Adds `delta` to a benchmark's live-baseline count, creating the row on first use: an update,
/// then, only when it found no row, an upsert, so two replicas creating one benchmark's first
/// version at once both succeed.
pub(crate) fn bump_benchmark(
    conn: &mut DbConn,
    project: &str,
    benchmark: &str,
    delta: i64,
    now: i64,
) -> QueryResult<()> {
    // The row exists except on a benchmark's first version. The update's statement is
    // prepared once ([`BumpCount`]); the upsert's is built and prepared anew each time.
    let bump = BumpCount {
        project,
        benchmark,
        delta,
        now,
    };
    let updated = on_backend!(conn, c => bump.execute(c))?;
    if updated > 0 {
        return Ok(());
    }
    let values = (
        benchmarks::project.eq(project),
        benchmarks::benchmark.eq(benchmark),
        benchmarks::baseline_count.eq(delta.max(0)),
        benchmarks::created_at.eq(now),
        benchmarks::updated_at.eq(now),
    );
    on_backend!(conn, c => diesel::insert_into(benchmarks::table)
        .values(values)
        .on_conflict((benchmarks::project, benchmarks::benchmark))
        .do_update()
        .set((
            benchmarks::baseline_count.eq(benchmarks::baseline_count + delta),
            benchmarks::updated_at.eq(now),
        ))
        .execute(c))?;
    Ok(())
}

/// `UPDATE benchmarks SET baseline_count = baseline_count + delta, updated_at = now` for one
/// benchmark, as a statement type of its own: Diesel renders and prepares every `UPDATE` it
/// builds anew at each execution (a changeset's columns may vary), and every upload and delete
/// runs this one. Its text never varies, so its type names the cached statement: the text must
/// stay unconditional (a variant would run the statement cached for another).
struct BumpCount<'a> {
    project: &'a str,
    benchmark: &'a str,
    delta: i64,
    now: i64,
}

impl diesel::query_builder::QueryId for BumpCount<'_> {
    type QueryId = BumpCount<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<DB: diesel::backend::Backend> diesel::query_builder::QueryFragment<DB> for BumpCount<'_>
where
    i64: diesel::serialize::ToSql<diesel::sql_types::BigInt, DB>,
    str: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{BigInt, Text};
        out.push_sql("UPDATE benchmarks SET baseline_count = baseline_count + ");
        out.push_bind_param::<BigInt, _>(&self.delta)?;
        out.push_sql(", updated_at = ");
        out.push_bind_param::<BigInt, _>(&self.now)?;
        out.push_sql(" WHERE project = ");
        out.push_bind_param::<Text, _>(self.project)?;
        out.push_sql(" AND benchmark = ");
        out.push_bind_param::<Text, _>(self.benchmark)?;
        Ok(())
    }
}

impl<C> RunQueryDsl<C> for BumpCount<'_> {}

/// Benchmark names of a project (for applying a key's benchmark filter to lists).
pub(crate) fn benchmark_names(conn: &mut DbConn, project: &str) -> QueryResult<Vec<String>> {
    benchmarks::table
        .filter(benchmarks::project.eq(project))
        .select(benchmarks::benchmark)
        .order(benchmarks::benchmark.asc())
        .load(conn)
}

/// Marks a live version deleted; `None` when there is no live version.
pub(crate) fn soft_delete(
    conn: &mut DbConn,
    project: &str,
    benchmark: &str,
    version: &str,
    now: i64,
) -> QueryResult<Option<String>> {
    let target = baselines::table
        .filter(baselines::project.eq(project))
        .filter(baselines::benchmark.eq(benchmark))
        .filter(baselines::version.eq(version))
        .filter(baselines::deleted_at.is_null());
    let id: Option<String> = target.select(baselines::id).first(conn).optional()?;
    let Some(id) = id else { return Ok(None) };
    let n = diesel::update(
        baselines::table
            .filter(baselines::id.eq(&id))
            .filter(baselines::deleted_at.is_null()),
    )
    .set((baselines::deleted_at.eq(now), baselines::updated_at.eq(now)))
    .execute(conn)?;
    if n == 0 {
        return Ok(None);
    }
    bump_benchmark(conn, project, benchmark, -1, now)?;
    super::gates::mark_deleted(conn, &id)?;
    Ok(Some(id))
}

/// What an `Idempotency-Key` replays: the hash of the request it was first used with, and the
/// response then sent.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct IdempotentReply {
    pub request_hash: String,
    pub response: String,
}

/// How long an `Idempotency-Key` is remembered.
pub(crate) const IDEMPOTENCY_TTL_MICROS: i64 = 24 * 3600 * 1_000_000;

/// The record of `key` made by `principal` in `project`, unless older than `not_before`
/// (primary key lookup).
pub(crate) fn find_idempotency(
    conn: &mut DbConn,
    project: &str,
    principal: &str,
    key: &str,
    not_before: i64,
) -> QueryResult<Option<IdempotentReply>> {
    idempotency_keys::table
        .filter(idempotency_keys::project.eq(project))
        .filter(idempotency_keys::principal.eq(principal))
        .filter(idempotency_keys::idem_key.eq(key))
        .filter(idempotency_keys::created_at.ge(not_before))
        .select((idempotency_keys::request_hash, idempotency_keys::response))
        .first(conn)
        .optional()
}

/// Stores a record, replacing an expired one of the same caller and key.
#[allow(clippy::too_many_arguments)]
pub(crate) fn insert_idempotency(
    conn: &mut DbConn,
    project: &str,
    principal: &str,
    key: &str,
    request_hash: &str,
    baseline_id: &str,
    response: &str,
    now: i64,
) -> QueryResult<()> {
    diesel::delete(
        idempotency_keys::table
            .filter(idempotency_keys::project.eq(project))
            .filter(idempotency_keys::principal.eq(principal))
            .filter(idempotency_keys::idem_key.eq(key))
            .filter(idempotency_keys::created_at.lt(now - IDEMPOTENCY_TTL_MICROS)),
    )
    .execute(conn)?;
    diesel::insert_into(idempotency_keys::table)
        .values((
            idempotency_keys::project.eq(project),
            idempotency_keys::principal.eq(principal),
            idempotency_keys::idem_key.eq(key),
            idempotency_keys::request_hash.eq(request_hash),
            idempotency_keys::baseline_id.eq(baseline_id),
            idempotency_keys::response.eq(response),
            idempotency_keys::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Forgets records older than `before` (`idempotency_keys_created_at_idx`); returns how many.
pub(crate) fn expire_idempotency(conn: &mut DbConn, before: i64) -> QueryResult<usize> {
    diesel::delete(idempotency_keys::table.filter(idempotency_keys::created_at.lt(before)))
        .execute(conn)
}

/// The `medians` documents of the newest `n` live versions, newest first.
pub(crate) fn recent_medians(
    conn: &mut DbConn,
    project: &str,
    benchmark: &str,
    n: i64,
) -> QueryResult<Vec<String>> {
    live_newest_first(project, benchmark)
        .limit(n)
        .select(baselines::medians)
        .load(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testdb::on_each_backend;
    use crate::db::DbError;

    fn row(project: &str, benchmark: &str, version: &str, at: i64) -> BaselineRow {
        BaselineRow {
            id: format!("{project}|{benchmark}|{version}"),
            project: project.into(),
            benchmark: benchmark.into(),
            version: version.into(),
            git_ref: None,
            git_sha: None,
            receipt: format!(r#"{{"at":{at}}}"#),
            metadata: "{}".into(),
            tags: "[]".into(),
            content_hash: format!("hash-{at}"),
            source: "upload".into(),
            promoted_from: None,
            wall_ms_median: Some(at),
            medians: format!(r#"{{"wall_ms":{at}}}"#),
            created_at: at,
            updated_at: at,
            deleted_at: None,
        }
    }

    fn filter(project: &str) -> ListFilter {
        ListFilter {
            project: project.into(),
            limit: 100,
            ..ListFilter::default()
        }
    }

    /// `benchmark@version` of one page, and the total.
    fn run(c: &mut DbConn, f: ListFilter) -> (Vec<String>, i64) {
        let (rows, total) = list(c, &f).unwrap();
        (versions(&rows), total)
    }

    fn versions(rows: &[SummaryRow]) -> Vec<String> {
        rows.iter()
            .map(|r| format!("{}@{}", r.benchmark, r.version))
            .collect()
    }

    #[test]
    fn insert_latest_find_and_version_taken() {
        on_each_backend(|c, be| {
            assert!(latest(c, "p", "b").unwrap().is_none(), "{be}");
            insert(c, &row("p", "b", "v1", 10), &[]).unwrap();
            insert(c, &row("p", "b", "v2", 20), &[]).unwrap();
            insert(c, &row("other", "b", "v9", 30), &[]).unwrap();
            let l = latest(c, "p", "b").unwrap().unwrap();
            assert_eq!((l.version.as_str(), l.created_at), ("v2", 20), "{be}");
            assert_eq!(l.receipt, r#"{"at":20}"#, "{be}");
            let v1 = find_version(c, "p", "b", "v1").unwrap().unwrap();
            assert_eq!(v1.id, "p|b|v1", "{be}");
            assert!(find_version(c, "p", "b", "v9").unwrap().is_none(), "{be}");
            assert!(
                find_version(c, "p", "other", "v1").unwrap().is_none(),
                "{be}"
            );
            assert!(version_taken(c, "p", "b", "v1").unwrap(), "{be}");
            assert!(!version_taken(c, "p", "b", "v3").unwrap(), "{be}");
            assert!(!version_taken(c, "other", "b", "v1").unwrap(), "{be}");
            // A version is taken once per benchmark.
            let dup = insert(c, &row("p", "b", "v1", 40).with_id("dup"), &[]).unwrap_err();
            assert!(DbError::from(dup).is_unique_violation(), "{be}");
            assert_eq!(benchmark_names(c, "p").unwrap(), ["b"], "{be}");
        });
    }

    impl BaselineRow {
        fn with_id(mut self, id: &str) -> Self {
            self.id = id.into();
            self
        }
    }

    #[test]
    fn soft_delete_hides_a_version_but_keeps_it_reserved() {
        on_each_backend(|c, be| {
            insert(c, &row("p", "b", "v1", 10), &[]).unwrap();
            insert(c, &row("p", "b", "v2", 20), &[]).unwrap();
            assert_eq!(
                soft_delete(c, "p", "b", "v2", 99).unwrap().as_deref(),
                Some("p|b|v2"),
                "{be}"
            );
            assert_eq!(latest(c, "p", "b").unwrap().unwrap().version, "v1", "{be}");
            let gone = find_version(c, "p", "b", "v2").unwrap().unwrap();
            assert_eq!((gone.deleted_at, gone.updated_at), (Some(99), 99), "{be}");
            assert!(version_taken(c, "p", "b", "v2").unwrap(), "{be}");
            assert_eq!(soft_delete(c, "p", "b", "v2", 100).unwrap(), None, "{be}");
            assert_eq!(soft_delete(c, "p", "b", "nope", 100).unwrap(), None, "{be}");
            // The live count follows: one version left, in the total and in the page.
            let (rows, total) = list(c, &filter("p")).unwrap();
            assert_eq!((versions(&rows), total), (vec!["b@v1".into()], 1), "{be}");
            assert_eq!(recent_medians(c, "p", "b", 10).unwrap().len(), 1, "{be}");
        });
    }

    #[test]
    fn list_filters_and_pages() {
        on_each_backend(|c, be| {
            let mut tagged = row("p", "bench-a", "v2", 20);
            tagged.git_ref = Some("main".into());
            tagged.git_sha = Some("abc".into());
            insert(c, &row("p", "bench-a", "v1", 10), &[]).unwrap();
            insert(c, &tagged, &["release".into(), "nightly".into()]).unwrap();
            insert(c, &row("p", "bench-a", "v3", 30), &["nightly".into()]).unwrap();
            insert(c, &row("p", "bench-ab", "v1", 40), &[]).unwrap();
            insert(c, &row("p", "Bench-a", "v1", 50), &[]).unwrap();
            insert(c, &row("p", "other", "v1", 60), &[]).unwrap();
            insert(c, &row("q", "bench-a", "v1", 70), &[]).unwrap();
            let all = run(c, filter("p"));
            assert_eq!(all.1, 6, "{be}");
            assert_eq!(
                all.0,
                [
                    "other@v1",
                    "Bench-a@v1",
                    "bench-ab@v1",
                    "bench-a@v3",
                    "bench-a@v2",
                    "bench-a@v1"
                ],
                "newest first ({be})"
            );
            // Pages.
            assert_eq!(
                run(
                    c,
                    ListFilter {
                        limit: 2,
                        offset: 0,
                        ..filter("p")
                    }
                ),
                (all.0[..2].to_vec(), 6),
                "{be}"
            );
            assert_eq!(
                run(
                    c,
                    ListFilter {
                        limit: 2,
                        offset: 4,
                        ..filter("p")
                    }
                ),
                (all.0[4..].to_vec(), 6),
                "{be}"
            );
            assert_eq!(
                run(
                    c,
                    ListFilter {
                        limit: 2,
                        offset: 6,
                        ..filter("p")
                    }
                ),
                (vec![], 6),
                "{be}"
            );
            assert_eq!(
                run(
                    c,
                    ListFilter {
                        limit: 2,
                        offset: 60,
                        ..filter("p")
                    }
                ),
                (vec![], 6),
                "{be}"
            );
            // Benchmark, byte-exact prefix, allowed names.
            assert_eq!(
                run(
                    c,
                    ListFilter {
                        benchmark: Some("bench-a".into()),
                        ..filter("p")
                    }
                )
                .0,
                ["bench-a@v3", "bench-a@v2", "bench-a@v1"],
                "{be}"
            );
            let prefixed = run(
                c,
                ListFilter {
                    benchmark_prefix: Some("bench-a".into()),
                    ..filter("p")
                },
            );
            assert_eq!(prefixed.1, 4, "{be}");
            assert!(
                prefixed.0.iter().all(|v| v.starts_with("bench-a")),
                "case-sensitive prefix ({be}): {prefixed:?}"
            );
            assert_eq!(
                run(
                    c,
                    ListFilter {
                        allowed_benchmarks: Some(vec![]),
                        ..filter("p")
                    }
                ),
                (vec![], 0),
                "{be}"
            );
            assert_eq!(
                run(
                    c,
                    ListFilter {
                        allowed_benchmarks: Some(vec!["other".into(), "bench-ab".into()]),
                        ..filter("p")
                    }
                ),
                (vec!["other@v1".into(), "bench-ab@v1".into()], 2),
                "{be}"
            );
            // Git, tags (every one must match), time window; totals counted over the rows.
            assert_eq!(
                run(
                    c,
                    ListFilter {
                        git_ref: Some("main".into()),
                        git_sha: Some("abc".into()),
                        ..filter("p")
                    }
                ),
                (vec!["bench-a@v2".into()], 1),
                "{be}"
            );
            assert_eq!(
                run(
                    c,
                    ListFilter {
                        tags: vec!["nightly".into()],
                        ..filter("p")
                    }
                ),
                (vec!["bench-a@v3".into(), "bench-a@v2".into()], 2),
                "{be}"
            );
            assert_eq!(
                run(
                    c,
                    ListFilter {
                        tags: vec!["nightly".into(), "release".into()],
                        ..filter("p")
                    }
                )
                .1,
                1,
                "{be}"
            );
            assert_eq!(
                run(
                    c,
                    ListFilter {
                        since: Some(20),
                        until: Some(40),
                        ..filter("p")
                    }
                ),
                (
                    vec![
                        "bench-ab@v1".into(),
                        "bench-a@v3".into(),
                        "bench-a@v2".into()
                    ],
                    3
                ),
                "{be}"
            );
            // The receipt only when asked for.
            let (rows, _) = list(c, &filter("q")).unwrap();
            assert_eq!(rows[0].receipt, None, "{be}");
            let (rows, _) = list(
                c,
                &ListFilter {
                    include_receipt: true,
                    ..filter("q")
                },
            )
            .unwrap();
            assert_eq!(rows[0].receipt.as_deref(), Some(r#"{"at":70}"#), "{be}");
            assert_eq!(rows[0].tags, "[]", "{be}");
        });
    }

    #[test]
    fn recent_medians_are_the_newest_live_ones() {
        on_each_backend(|c, be| {
            for (v, at) in [("v1", 10), ("v2", 20), ("v3", 30), ("v4", 40)] {
                insert(c, &row("p", "b", v, at), &[]).unwrap();
            }
            soft_delete(c, "p", "b", "v4", 50).unwrap();
            assert_eq!(
                recent_medians(c, "p", "b", 2).unwrap(),
                [r#"{"wall_ms":30}"#, r#"{"wall_ms":20}"#],
                "{be}"
            );
            assert!(recent_medians(c, "p", "x", 2).unwrap().is_empty(), "{be}");
        });
    }

    #[test]
    fn idempotency_keys_replay_per_caller_for_a_day() {
        on_each_backend(|c, be| {
            assert!(
                find_idempotency(c, "p", "a", "k", 0).unwrap().is_none(),
                "{be}"
            );
            insert_idempotency(c, "p", "a", "k", "req-hash", "p|b|v1", r#"{"id":1}"#, 5).unwrap();
            let r = find_idempotency(c, "p", "a", "k", 0).unwrap().unwrap();
            assert_eq!(
                (r.request_hash.as_str(), r.response.as_str()),
                ("req-hash", r#"{"id":1}"#),
                "{be}"
            );
            // Another project, another caller: not theirs.
            assert!(
                find_idempotency(c, "q", "a", "k", 0).unwrap().is_none(),
                "{be}"
            );
            assert!(
                find_idempotency(c, "p", "b", "k", 0).unwrap().is_none(),
                "{be}"
            );
            insert_idempotency(c, "p", "b", "k", "h2", "x", "{}", 6).unwrap();
            // The same caller's live record cannot be replaced.
            let again = insert_idempotency(c, "p", "a", "k", "other", "x", "{}", 6).unwrap_err();
            assert!(DbError::from(again).is_unique_violation(), "{be}");
            // Expired: not found, replaced by a new record, swept.
            assert!(
                find_idempotency(c, "p", "a", "k", 6).unwrap().is_none(),
                "{be}"
            );
            let later = 5 + IDEMPOTENCY_TTL_MICROS + 1;
            insert_idempotency(c, "p", "a", "k", "h3", "y", "{}", later).unwrap();
            assert_eq!(
                find_idempotency(c, "p", "a", "k", later)
                    .unwrap()
                    .unwrap()
                    .request_hash,
                "h3",
                "{be}"
            );
            assert_eq!(expire_idempotency(c, later).unwrap(), 1, "{be}");
            assert!(
                find_idempotency(c, "p", "b", "k", 0).unwrap().is_none(),
                "{be}"
            );
        });
    }
}
