//! Decision ledger queries: `decisions` (one row per uploaded decision, receipts verbatim) and
//! `decision_rules` (its accepted rule names, for the exact `rule` filter).

use diesel::dsl::{count_star, exists};
use diesel::prelude::*;

use super::schema::{decision_rules, decisions};
use super::DbConn;

type Db = <DbConn as Connection>::Backend;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize, serde::Deserialize)]
#[diesel(table_name = decisions)]
pub struct DecisionRow {
    pub id: String,
    pub project: String,
    pub scenario: Option<String>,
    pub status: String,
    pub verdict: String,
    /// JSON array of names.
    pub accepted_rules: String,
    pub accepted: bool,
    pub review_required: bool,
    /// JSON array of texts.
    pub review_reasons: String,
    pub git_ref: Option<String>,
    pub git_sha: Option<String>,
    pub tradeoff_receipt: String,
    pub scenario_receipt: Option<String>,
    pub artifact_index: Option<String>,
    pub created_at: i64,
}

/// Inserts a decision and one `decision_rules` row per distinct accepted rule name.
pub(crate) fn insert(conn: &mut DbConn, row: &DecisionRow, rules: &[String]) -> QueryResult<()> {
    diesel::insert_into(decisions::table)
        .values(row)
        .execute(conn)?;
    let mut distinct: Vec<&String> = rules.iter().collect();
    distinct.sort();
    distinct.dedup();
    for rule in distinct {
        diesel::insert_into(decision_rules::table)
            .values((
                decision_rules::decision_id.eq(&row.id),
                decision_rules::project.eq(&row.project),
                decision_rules::rule.eq(rule),
            ))
            .execute(conn)?;
    }
    Ok(())
}

#[derive(Debug, Clone, Default)]
pub(crate) struct DecisionFilter {
    pub project: String,
    pub scenario: Option<String>,
    pub status: Option<String>,
    pub verdict: Option<String>,
    pub review_required: Option<bool>,
    /// Whether at least one rule was accepted.
    pub accepted: Option<bool>,
    /// An accepted rule's exact name.
    pub rule: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

fn filtered(f: &DecisionFilter) -> decisions::BoxedQuery<'static, Db> {
    let mut q = decisions::table
        .filter(decisions::project.eq(f.project.clone()))
        .into_boxed();
    if let Some(s) = &f.scenario {
        q = q.filter(decisions::scenario.eq(s.clone()));
    }
    if let Some(s) = &f.status {
        q = q.filter(decisions::status.eq(s.clone()));
    }
    if let Some(v) = &f.verdict {
        q = q.filter(decisions::verdict.eq(v.clone()));
    }
    if let Some(r) = f.review_required {
        q = q.filter(decisions::review_required.eq(r));
    }
    if let Some(a) = f.accepted {
        q = q.filter(decisions::accepted.eq(a));
    }
    if let Some(rule) = &f.rule {
        q = q.filter(exists(
            decision_rules::table
                .filter(decision_rules::decision_id.eq(decisions::id))
                .filter(decision_rules::rule.eq(rule.clone())),
        ));
    }
    q
}

/// One page, newest first (`decisions_project_idx`, or `decisions_scenario_idx` with a scenario),
/// and the filtered total.
pub(crate) fn list(conn: &mut DbConn, f: &DecisionFilter) -> QueryResult<(Vec<DecisionRow>, i64)> {
    let total: i64 = filtered(f).select(count_star()).first(conn)?;
    if total <= f.offset {
        return Ok((Vec::new(), total));
    }
    let rows = filtered(f)
        .order((decisions::created_at.desc(), decisions::id.desc()))
        .limit(f.limit)
        .offset(f.offset)
        .select(DecisionRow::as_select())
        .load(conn)?;
    Ok((rows, total))
}

/// The newest decision of a project (`decisions_project_idx`, top-down).
pub(crate) fn latest(conn: &mut DbConn, project: &str) -> QueryResult<Option<DecisionRow>> {
    decisions::table
        .filter(decisions::project.eq(project))
        .order((decisions::created_at.desc(), decisions::id.desc()))
        .select(DecisionRow::as_select())
        .first(conn)
        .optional()
}

pub(crate) fn find(conn: &mut DbConn, project: &str, id: &str) -> QueryResult<Option<DecisionRow>> {
    decisions::table
        .filter(decisions::project.eq(project))
        .filter(decisions::id.eq(id))
        .select(DecisionRow::as_select())
        .first(conn)
        .optional()
}

/// Ids of a project's decisions created before `cutoff` (microseconds), oldest first.
pub(crate) fn older_than(
    conn: &mut DbConn,
    project: &str,
    cutoff: i64,
) -> QueryResult<Vec<String>> {
    decisions::table
        .filter(decisions::project.eq(project))
        .filter(decisions::created_at.lt(cutoff))
        .order((decisions::created_at.asc(), decisions::id.asc()))
        .select(decisions::id)
        .load(conn)
}

/// Deletes these decisions of a project and their rule rows; returns how many decisions went.
pub(crate) fn delete(conn: &mut DbConn, project: &str, ids: &[String]) -> QueryResult<usize> {
    let mut deleted = 0;
    // Bounded statements: SQLite allows at most 32,766 bound parameters.
    for chunk in ids.chunks(500) {
        diesel::delete(
            decision_rules::table
                .filter(decision_rules::project.eq(project))
                .filter(decision_rules::decision_id.eq_any(chunk)),
        )
        .execute(conn)?;
        deleted += diesel::delete(
            decisions::table
                .filter(decisions::project.eq(project))
                .filter(decisions::id.eq_any(chunk)),
        )
        .execute(conn)?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testdb::on_each_backend;

    fn decision(
        id: &str,
        scenario: Option<&str>,
        status: &str,
        rules: &[&str],
        at: i64,
    ) -> DecisionRow {
        DecisionRow {
            id: id.into(),
            project: "p".into(),
            scenario: scenario.map(str::to_owned),
            status: status.into(),
            verdict: status.into(),
            accepted_rules: serde_json::to_string(rules).unwrap(),
            accepted: !rules.is_empty(),
            review_required: status == "warn",
            review_reasons: "[]".into(),
            git_ref: None,
            git_sha: None,
            tradeoff_receipt: "{}".into(),
            scenario_receipt: None,
            artifact_index: None,
            created_at: at,
        }
    }

    fn seed(c: &mut DbConn) {
        for (row, rules) in [
            (decision("d1", Some("a"), "pass", &[], 10), vec![]),
            (decision("d2", Some("a"), "warn", &["r1"], 20), vec!["r1"]),
            (
                decision("d3", Some("b"), "warn", &["r1", "r2"], 30),
                vec!["r1", "r2", "r1"],
            ),
            (decision("d4", None, "fail", &[], 40), vec![]),
        ] {
            let rules: Vec<String> = rules.into_iter().map(String::from).collect();
            insert(c, &row, &rules).unwrap();
        }
        let mut elsewhere = decision("x1", Some("a"), "warn", &["r1"], 50);
        elsewhere.project = "q".into();
        insert(c, &elsewhere, &["r1".to_owned()]).unwrap();
    }

    fn ids(c: &mut DbConn, f: DecisionFilter) -> (Vec<String>, i64) {
        let (rows, total) = list(c, &f).unwrap();
        (rows.into_iter().map(|r| r.id).collect(), total)
    }

    fn filter() -> DecisionFilter {
        DecisionFilter {
            project: "p".into(),
            limit: 100,
            ..DecisionFilter::default()
        }
    }

    fn v(ids: &[&str], total: i64) -> (Vec<String>, i64) {
        (ids.iter().map(|s| s.to_string()).collect(), total)
    }

    #[test]
    fn list_filters_pages_latest_and_prune() {
        on_each_backend(|c, be| {
            seed(c);
            assert_eq!(ids(c, filter()), v(&["d4", "d3", "d2", "d1"], 4), "{be}");
            let page = DecisionFilter {
                limit: 2,
                offset: 1,
                ..filter()
            };
            assert_eq!(ids(c, page), v(&["d3", "d2"], 4), "{be}");
            let scen = DecisionFilter {
                scenario: Some("a".into()),
                ..filter()
            };
            assert_eq!(ids(c, scen), v(&["d2", "d1"], 2), "{be}");
            let warn = DecisionFilter {
                status: Some("warn".into()),
                ..filter()
            };
            assert_eq!(ids(c, warn), v(&["d3", "d2"], 2), "{be}");
            let fail = DecisionFilter {
                verdict: Some("fail".into()),
                ..filter()
            };
            assert_eq!(ids(c, fail), v(&["d4"], 1), "{be}");
            let review = DecisionFilter {
                review_required: Some(false),
                ..filter()
            };
            assert_eq!(ids(c, review), v(&["d4", "d1"], 2), "{be}");
            let accepted = DecisionFilter {
                accepted: Some(true),
                ..filter()
            };
            assert_eq!(ids(c, accepted), v(&["d3", "d2"], 2), "{be}");
            let not = DecisionFilter {
                accepted: Some(false),
                ..filter()
            };
            assert_eq!(ids(c, not), v(&["d4", "d1"], 2), "{be}");
            let r2 = DecisionFilter {
                rule: Some("r2".into()),
                ..filter()
            };
            assert_eq!(ids(c, r2), v(&["d3"], 1), "{be}");
            // Exact names only: no prefix or JSON-substring matches.
            let r = DecisionFilter {
                rule: Some("r".into()),
                ..filter()
            };
            assert_eq!(ids(c, r), v(&[], 0), "{be}");
            let both = DecisionFilter {
                rule: Some("r1".into()),
                scenario: Some("b".into()),
                ..filter()
            };
            assert_eq!(ids(c, both), v(&["d3"], 1), "{be}");

            assert_eq!(latest(c, "p").unwrap().unwrap().id, "d4", "{be}");
            let d3 = find(c, "p", "d3").unwrap().unwrap();
            assert_eq!(
                (d3.scenario.as_deref(), d3.accepted),
                (Some("b"), true),
                "{be}"
            );
            assert!(
                find(c, "q", "d3").unwrap().is_none(),
                "other project ({be})"
            );
            assert!(latest(c, "none").unwrap().is_none(), "{be}");

            let old = older_than(c, "p", 30).unwrap();
            assert_eq!(old, ["d1", "d2"], "strictly older, oldest first ({be})");
            assert_eq!(delete(c, "p", &old).unwrap(), 2, "{be}");
            assert_eq!(ids(c, filter()), v(&["d4", "d3"], 2), "{be}");
            let r1 = DecisionFilter {
                rule: Some("r1".into()),
                ..filter()
            };
            assert_eq!(ids(c, r1), v(&["d3"], 1), "{be}");
            let left: i64 = decision_rules::table.select(count_star()).first(c).unwrap();
            assert_eq!(left, 3, "d3's two rules and x1's ({be})");
            // Another project's decisions are untouched.
            assert_eq!(latest(c, "q").unwrap().unwrap().id, "x1", "{be}");
        });
    }
}
