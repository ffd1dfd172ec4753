//! Fleet alerts (contract §6): regressions grouped by `(dependency, old, new)`.
//!
//! A group holds one entry per (project, benchmark), from that pair's newest regression event
//! ([`Entry::absorb`]). `avg_delta_pct` averages the entries, `confidence = min(1, distinct
//! projects / 5)` ([`FULL_CONFIDENCE_PROJECTS`]), and a group becomes an alert once it reaches
//! `min_affected` distinct projects. Alerts are ordered by confidence, then average delta, both
//! descending. The alert id is a hash of the group key, so it is the same across calls, restarts
//! and replicas.
//!
//! The store keeps entries and aggregates up to date as events arrive (`db/fleet.rs`) with these
//! same rules: [`Entry::absorb`] for an entry, [`Summary::of`] for a group's aggregates,
//! [`assemble`] to rebuild groups from stored rows, and [`alerts`] to pick and order them.

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

/// Distinct projects at which an alert's confidence reaches 1.
pub const FULL_CONFIDENCE_PROJECTS: usize = 5;

/// `min(1, projects / FULL_CONFIDENCE_PROJECTS)`.
pub fn confidence(projects: usize) -> f64 {
    (projects as f64 / FULL_CONFIDENCE_PROJECTS as f64).min(1.0)
}

/// An integer with the order of [`confidence`] (`min(projects, FULL_CONFIDENCE_PROJECTS)`),
/// which the store keeps with each group to read alerts in order through an index.
pub fn confidence_rank(projects: usize) -> i64 {
    projects.min(FULL_CONFIDENCE_PROJECTS) as i64
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

impl Entry {
    /// The entry of a (project, benchmark) from its first regression.
    pub fn first(project: &str, benchmark: &str, metric: &str, delta_pct: f64, at: i64) -> Entry {
        Entry {
            project: project.to_owned(),
            benchmark: benchmark.to_owned(),
            metric: metric.to_owned(),
            delta_pct,
            last_seen: at,
            first_seen: at,
        }
    }

    /// Folds another regression of the same (project, benchmark) into the entry: the newest one
    /// (of equal times, the one folded last) gives the metric and delta, the earliest gives
    /// `first_seen`. Returns whether the regression is now the entry's newest.
    pub fn absorb(&mut self, metric: &str, delta_pct: f64, at: i64) -> bool {
        self.first_seen = self.first_seen.min(at);
        if at >= self.last_seen {
            self.last_seen = at;
            self.metric = metric.to_owned();
            self.delta_pct = delta_pct;
            true
        } else {
            false
        }
    }
}

/// A group's aggregates over its entries.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Distinct projects.
    pub projects: usize,
    pub entries: usize,
    pub delta_sum: f64,
    /// Mean `delta_pct` of the entries; 0 without entries.
    pub avg_delta_pct: f64,
    /// Earliest `first_seen` of the entries; 0 without entries.
    pub first_seen: i64,
    /// Latest `last_seen` of the entries; 0 without entries.
    pub last_seen: i64,
}

impl Summary {
    pub fn of(entries: &[Entry]) -> Summary {
        let projects: BTreeSet<&str> = entries.iter().map(|e| e.project.as_str()).collect();
        let delta_sum: f64 = entries.iter().map(|e| e.delta_pct).sum();
        Summary {
            projects: projects.len(),
            entries: entries.len(),
            delta_sum,
            avg_delta_pct: if entries.is_empty() {
                0.0
            } else {
                delta_sum / entries.len() as f64
            },
            first_seen: entries.iter().map(|e| e.first_seen).min().unwrap_or(0),
            last_seen: entries.iter().map(|e| e.last_seen).max().unwrap_or(0),
        }
    }

    pub fn confidence(&self) -> f64 {
        confidence(self.projects)
    }

    pub fn confidence_rank(&self) -> i64 {
        confidence_rank(self.projects)
    }
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
            let summary = Summary::of(&g.entries);
            if summary.projects < min_affected.max(1) || g.entries.is_empty() {
                return None;
            }
            let mut entries = g.entries;
            entries.sort_by(|a, b| (&a.project, &a.benchmark).cmp(&(&b.project, &b.benchmark)));
            Some(Alert {
                id: g.key,
                dependency: g.dependency,
                old_version: g.old_version,
                new_version: g.new_version,
                confidence: summary.confidence(),
                avg_delta_pct: summary.avg_delta_pct,
                first_seen: summary.first_seen,
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

/// Groups with their entries, from group heads (`entries` ignored) and `(group key, entry)`
/// pairs; an entry whose group is not among the heads is left out. Groups come out in no
/// particular order ([`alerts`] orders them).
pub fn assemble(
    heads: Vec<Group>,
    entries: impl IntoIterator<Item = (String, Entry)>,
) -> Vec<Group> {
    let mut by_key: BTreeMap<String, Group> = heads
        .into_iter()
        .map(|mut g| {
            g.entries.clear();
            (g.key.clone(), g)
        })
        .collect();
    for (key, entry) in entries {
        if let Some(g) = by_key.get_mut(&key) {
            g.entries.push(entry);
        }
    }
    by_key.into_values().collect()
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

/// Groups events the way the store does as they arrive: regressions only, one entry per
/// (project, benchmark) within a group, folded with [`Entry::absorb`] in event order.
pub fn group_events(events: &[Event]) -> Vec<Group> {
    let mut heads: BTreeMap<String, Group> = BTreeMap::new();
    let mut entries: BTreeMap<(String, String, String), Entry> = BTreeMap::new();
    for e in events.iter().filter(|e| e.delta_pct > 0.0) {
        let key = group_key(
            &e.dependency,
            e.old_version.as_deref(),
            e.new_version.as_deref(),
        );
        heads.entry(key.clone()).or_insert_with(|| Group {
            key: key.clone(),
            dependency: e.dependency.clone(),
            old_version: e.old_version.clone(),
            new_version: e.new_version.clone(),
            entries: Vec::new(),
        });
        match entries.entry((key, e.project.clone(), e.benchmark.clone())) {
            std::collections::btree_map::Entry::Occupied(mut x) => {
                x.get_mut().absorb(&e.metric, e.delta_pct, e.at);
            }
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(Entry::first(
                    &e.project,
                    &e.benchmark,
                    &e.metric,
                    e.delta_pct,
                    e.at,
                ));
            }
        }
    }
    assemble(
        heads.into_values().collect(),
        entries.into_iter().map(|((key, _, _), entry)| (key, entry)),
    )
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
    fn absorb_keeps_the_newest_and_the_earliest() {
        let mut e = Entry::first("a", "x", "wall_ms", 10.0, 5);
        assert!(!e.absorb("cpu_ms", 99.0, 3), "older: not the newest");
        assert_eq!((e.metric.as_str(), e.delta_pct), ("wall_ms", 10.0));
        assert_eq!((e.first_seen, e.last_seen), (3, 5));
        assert!(
            e.absorb("cpu_ms", 20.0, 5),
            "a tie goes to the one folded last"
        );
        assert_eq!((e.metric.as_str(), e.delta_pct), ("cpu_ms", 20.0));
        assert!(e.absorb("wall_ms", 30.0, 9));
        assert_eq!((e.delta_pct, e.first_seen, e.last_seen), (30.0, 3, 9));
    }

    #[test]
    fn summary_of_entries() {
        let empty = Summary::of(&[]);
        assert_eq!(
            (empty.projects, empty.entries, empty.avg_delta_pct),
            (0, 0, 0.0)
        );
        assert_eq!((empty.first_seen, empty.last_seen), (0, 0));
        let entries = [
            Entry::first("a", "x", "wall_ms", 10.0, 4),
            Entry::first("a", "y", "wall_ms", 20.0, 2),
            Entry::first("b", "x", "wall_ms", 60.0, 7),
        ];
        let s = Summary::of(&entries);
        assert_eq!((s.projects, s.entries), (2, 3));
        assert_eq!((s.delta_sum, s.avg_delta_pct), (90.0, 30.0));
        assert_eq!((s.first_seen, s.last_seen), (2, 7));
        assert_eq!(s.confidence(), 0.4);
        assert_eq!(s.confidence_rank(), 2);
    }

    #[test]
    fn confidence_is_full_at_five_projects_and_the_rank_orders_like_it() {
        assert_eq!(confidence(FULL_CONFIDENCE_PROJECTS - 1), 0.8);
        assert_eq!(confidence(FULL_CONFIDENCE_PROJECTS), 1.0);
        assert_eq!(confidence(FULL_CONFIDENCE_PROJECTS + 7), 1.0);
        for a in 0..12 {
            for b in 0..12 {
                assert_eq!(
                    confidence(a).total_cmp(&confidence(b)),
                    confidence_rank(a).cmp(&confidence_rank(b)),
                    "{a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn assemble_attaches_entries_to_their_heads() {
        let head = |key: &str| Group {
            key: key.into(),
            dependency: "serde".into(),
            old_version: None,
            new_version: None,
            entries: vec![Entry::first("stale", "x", "wall_ms", 1.0, 1)],
        };
        let mut groups = assemble(
            vec![head("k1"), head("k2")],
            [
                ("k1".to_owned(), Entry::first("a", "x", "wall_ms", 1.0, 1)),
                ("k3".to_owned(), Entry::first("b", "x", "wall_ms", 1.0, 1)),
                ("k1".to_owned(), Entry::first("c", "x", "wall_ms", 1.0, 1)),
            ],
        );
        groups.sort_by(|a, b| a.key.cmp(&b.key));
        let projects: Vec<Vec<&str>> = groups
            .iter()
            .map(|g| g.entries.iter().map(|e| e.project.as_str()).collect())
            .collect();
        assert_eq!(projects, [vec!["a", "c"], vec![]]);
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
