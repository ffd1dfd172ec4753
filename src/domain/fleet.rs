//! Fleet alerts (contract §6): regressions grouped by `(dependency, old, new)`.
//!
//! A group holds one entry per (project, benchmark), from that pair's newest regression event.
//! `avg_delta_pct` averages the entries, `confidence = min(1, distinct projects / 5)`, and a
//! group becomes an alert once it reaches `min_affected` distinct projects. Alerts are ordered by
//! confidence, then average delta, both descending. The alert id is a hash of the group key, so
//! it is the same across calls, restarts and replicas.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

/// Stable id of `(dependency, old, new)`; `None` and `Some("")` differ.
pub fn group_key(dep: &str, old: Option<&str>, new: Option<&str>) -> String {
    let mut h = Sha256::new();
    h.update(b"perfgate-fleet-alert\0");
    for part in [Some(dep), old, new] {
        match part {
            Some(s) => {
                h.update([1u8]);
                h.update((s.len() as u64).to_be_bytes());
                h.update(s.as_bytes());
            }
            None => h.update([0u8]),
        }
    }
    hex::encode(h.finalize())[..32].to_owned()
}

pub fn confidence(projects: usize) -> f64 {
    (projects as f64 / 5.0).min(1.0)
}

/// One (project, benchmark) entry of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub project: String,
    pub benchmark: String,
    pub metric: String,
    pub delta_pct: f64,
    /// Time of the entry's newest regression event.
    pub last_seen: i64,
    /// Time of the entry's first regression event in the group.
    pub first_seen: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub id: String,
    pub dependency: String,
    pub old_version: Option<String>,
    pub new_version: Option<String>,
    pub entries: Vec<Entry>,
    pub confidence: f64,
    pub avg_delta_pct: f64,
    pub first_seen: i64,
}

/// A group with its entries, as stored.
#[derive(Debug, Clone)]
pub struct Group {
    pub key: String,
    pub dependency: String,
    pub old_version: Option<String>,
    pub new_version: Option<String>,
    pub entries: Vec<Entry>,
}

/// Turns groups into alerts: keeps those with `min_affected` distinct projects, orders them and
/// keeps `limit`.
pub fn alerts(groups: Vec<Group>, min_affected: usize, limit: usize) -> Vec<Alert> {
    let mut out: Vec<Alert> = groups
        .into_iter()
        .filter_map(|g| {
            let projects: BTreeSet<&str> = g.entries.iter().map(|e| e.project.as_str()).collect();
            let n = projects.len();
            if n < min_affected.max(1) || g.entries.is_empty() {
                return None;
            }
            let avg = g.entries.iter().map(|e| e.delta_pct).sum::<f64>() / g.entries.len() as f64;
            let first_seen = g.entries.iter().map(|e| e.first_seen).min().unwrap_or(0);
            let mut entries = g.entries;
            entries.sort_by(|a, b| (&a.project, &a.benchmark).cmp(&(&b.project, &b.benchmark)));
            Some(Alert {
                id: g.key,
                dependency: g.dependency,
                old_version: g.old_version,
                new_version: g.new_version,
                confidence: confidence(n),
                avg_delta_pct: avg,
                first_seen,
                entries,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then(b.avg_delta_pct.total_cmp(&a.avg_delta_pct))
            .then(a.id.cmp(&b.id))
    });
    out.truncate(limit);
    out
}

/// A raw regression event, for grouping events directly (tests and small inputs).
#[derive(Debug, Clone)]
pub struct Event {
    pub project: String,
    pub benchmark: String,
    pub dependency: String,
    pub old_version: Option<String>,
    pub new_version: Option<String>,
    pub metric: String,
    pub delta_pct: f64,
    pub at: i64,
}

/// Groups events the way the stored aggregates do: regressions only, newest event per
/// (project, benchmark) within a group.
pub fn group_events(events: &[Event]) -> Vec<Group> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for e in events.iter().filter(|e| e.delta_pct > 0.0) {
        let key = group_key(
            &e.dependency,
            e.old_version.as_deref(),
            e.new_version.as_deref(),
        );
        let g = groups.entry(key.clone()).or_insert_with(|| Group {
            key,
            dependency: e.dependency.clone(),
            old_version: e.old_version.clone(),
            new_version: e.new_version.clone(),
            entries: Vec::new(),
        });
        match g
            .entries
            .iter_mut()
            .find(|x| x.project == e.project && x.benchmark == e.benchmark)
        {
            Some(x) => {
                x.first_seen = x.first_seen.min(e.at);
                if e.at >= x.last_seen {
                    x.last_seen = e.at;
                    x.metric = e.metric.clone();
                    x.delta_pct = e.delta_pct;
                }
            }
            None => g.entries.push(Entry {
                project: e.project.clone(),
                benchmark: e.benchmark.clone(),
                metric: e.metric.clone(),
                delta_pct: e.delta_pct,
                last_seen: e.at,
                first_seen: e.at,
            }),
        }
    }
    groups.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(p: &str, b: &str, dep: &str, old: &str, new: &str, d: f64, at: i64) -> Event {
        Event {
            project: p.into(),
            benchmark: b.into(),
            dependency: dep.into(),
            old_version: Some(old.into()),
            new_version: Some(new.into()),
            metric: "wall_ms".into(),
            delta_pct: d,
            at,
        }
    }

    #[test]
    fn groups_by_dependency_and_versions() {
        let events = vec![
            ev("a", "x", "serde", "1.0", "1.1", 10.0, 1),
            ev("b", "x", "serde", "1.0", "1.1", 20.0, 2),
            ev("c", "x", "serde", "1.0", "1.2", 30.0, 3), // other new version
            ev("d", "x", "tokio", "1.0", "1.1", 40.0, 4), // other dependency
        ];
        let a = alerts(group_events(&events), 2, 50);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].dependency, "serde");
        assert_eq!(a[0].new_version.as_deref(), Some("1.1"));
        assert_eq!(a[0].entries.len(), 2);
        assert!((a[0].avg_delta_pct - 15.0).abs() < 1e-12);
        assert!((a[0].confidence - 0.4).abs() < 1e-12);
        assert_eq!(a[0].first_seen, 1);
        assert_eq!(a[0].id, group_key("serde", Some("1.0"), Some("1.1")));
    }

    #[test]
    fn min_affected_edges() {
        let events = vec![
            ev("a", "x", "serde", "1", "2", 5.0, 1),
            ev("a", "y", "serde", "1", "2", 5.0, 2), // same project, other benchmark
        ];
        // Two entries but one distinct project.
        assert!(alerts(group_events(&events), 2, 50).is_empty());
        let one = alerts(group_events(&events), 1, 50);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].entries.len(), 2);
        // 0 behaves as 1: an empty group never alerts.
        assert_eq!(alerts(group_events(&events), 0, 50).len(), 1);
        assert!(alerts(group_events(&[]), 0, 50).is_empty());
        // Improvements are not regressions.
        let fixed = vec![
            ev("a", "x", "serde", "1", "2", -5.0, 1),
            ev("b", "x", "serde", "1", "2", 0.0, 2),
        ];
        assert!(alerts(group_events(&fixed), 1, 50).is_empty());
    }

    #[test]
    fn repeated_events_count_once_with_the_newest() {
        let events = vec![
            ev("a", "x", "serde", "1", "2", 50.0, 1),
            ev("a", "x", "serde", "1", "2", 10.0, 5), // newest for (a, x)
            ev("a", "x", "serde", "1", "2", 90.0, 3),
            ev("b", "x", "serde", "1", "2", 20.0, 2),
        ];
        let a = alerts(group_events(&events), 2, 50);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].entries.len(), 2);
        let ax = a[0].entries.iter().find(|e| e.project == "a").unwrap();
        assert_eq!(ax.delta_pct, 10.0);
        assert!((a[0].avg_delta_pct - 15.0).abs() < 1e-12);
        assert_eq!(a[0].first_seen, 1);
    }

    #[test]
    fn ordering_confidence_then_delta_and_limit() {
        let mut events = Vec::new();
        for p in ["a", "b", "c", "d", "e", "f"] {
            events.push(ev(p, "x", "big", "1", "2", 1.0, 1));
        }
        for p in ["a", "b"] {
            events.push(ev(p, "x", "small-high", "1", "2", 90.0, 1));
            events.push(ev(p, "x", "small-low", "1", "2", 10.0, 1));
        }
        let a = alerts(group_events(&events), 2, 50);
        let deps: Vec<&str> = a.iter().map(|a| a.dependency.as_str()).collect();
        assert_eq!(deps, ["big", "small-high", "small-low"]);
        assert_eq!(a[0].confidence, 1.0);
        assert_eq!(alerts(group_events(&events), 2, 1).len(), 1);
    }

    #[test]
    fn keys_are_stable_and_distinct() {
        assert_eq!(
            group_key("a", Some("1"), None),
            group_key("a", Some("1"), None)
        );
        assert_ne!(
            group_key("a", Some("1"), None),
            group_key("a", None, Some("1"))
        );
        assert_ne!(group_key("a", Some(""), None), group_key("a", None, None));
        assert_ne!(
            group_key("ab", Some("c"), None),
            group_key("a", Some("bc"), None)
        );
        assert_eq!(group_key("a", None, None).len(), 32);
    }
}
