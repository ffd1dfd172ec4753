//! In-process cache of `GET …/latest` response bodies.
//!
//! On `memory` and SQLite this process alone writes (the server holds an exclusive lock on the
//! file; see [`crate::db::SqliteOwner`]). On PostgreSQL other replicas write too: their writes
//! reach this cache through `NOTIFY` ([`crate::db::notify`]), and the cache is on only while
//! this replica's listener is connected.
//!
//! Correctness rests on three rules:
//! - **Every local write invalidates** the entries it may change, in the actor, after the
//!   transaction ends and before the client hears the answer (upload, promote, delete); a
//!   write on another replica invalidates through its notification, which the writer waits
//!   for before it answers.
//! - **A fill never resurrects an invalidated value.** A reader takes the cache's generation
//!   *before* it reads the database, and stores what it read only if no invalidation happened
//!   since (checked under the same lock that invalidations take). A read that raced a write is
//!   served but not kept.
//! - **Switching the cache on or off bumps the generation too**, so a read that began while
//!   invalidations could be missed (the listener down) never lands.
//!
//! - **On PostgreSQL the cache serves only within its lease** ([`LatestCache::leased`]): the
//!   listener renews it with a round trip on its connection, so a replica whose listener lost
//!   the server stops serving within the lease even when the listener's thread has not yet
//!   noticed; writers that see a listener gone wait the lease out ([`crate::db::notify`]).
//!
//! The cache holds at most its `budget` of bytes of bodies; beyond that, arbitrary
//! entries are dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use actix_web::http::header::HeaderValue;
use actix_web::web::Bytes;

/// A rendered `200` answer of GET latest.
#[derive(Debug)]
pub(crate) struct CachedLatest {
    pub etag: HeaderValue,
    /// The quoted ETag as text, for `If-None-Match` comparison.
    pub etag_str: String,
    pub body: Bytes,
}

#[derive(Default)]
struct Entries {
    /// project → benchmark → entry: looked up by `&str`, without building a key.
    map: HashMap<String, HashMap<String, Arc<CachedLatest>>>,
    bytes: usize,
}

/// Until when a leased cache may serve: nanoseconds after `base`, 0 before the first renewal.
struct Lease {
    base: Instant,
    until: AtomicU64,
}

impl Lease {
    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    fn valid(&self) -> bool {
        let until = self.until.load(Ordering::Acquire);
        until != 0 && self.nanos(Instant::now()) < until
    }
}

pub(crate) struct LatestCache {
    /// Changed only under the `entries` write lock, and read under its lock (or before it).
    enabled: AtomicBool,
    /// PostgreSQL: entries are served only while the listener's lease runs.
    lease: Option<Lease>,
    budget: usize,
    generation: AtomicU64,
    entries: RwLock<Entries>,
}

/// Taken before a database read; lets the result be stored afterwards.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FillTicket(u64);

impl LatestCache {
    pub(crate) fn new(enabled: bool, budget: usize) -> Self {
        Self {
            enabled: AtomicBool::new(enabled),
            lease: None,
            budget,
            generation: AtomicU64::new(0),
            entries: RwLock::new(Entries::default()),
        }
    }

    /// A cache that starts off and, once on, serves only until the lease last renewed with
    /// [`renew_lease`](Self::renew_lease) (PostgreSQL replicas).
    pub(crate) fn leased(budget: usize) -> Self {
        Self {
            lease: Some(Lease {
                base: Instant::now(),
                until: AtomicU64::new(0),
            }),
            ..Self::new(false, budget)
        }
    }

    /// Lets a leased cache serve until `until` (no-op on a cache without a lease).
    pub(crate) fn renew_lease(&self, until: Instant) {
        if let Some(l) = &self.lease {
            l.until.fetch_max(l.nanos(until).max(1), Ordering::AcqRel);
        }
    }

    /// Whether lookups may be answered: on, and within the lease if there is one.
    fn serving(&self) -> bool {
        self.enabled.load(Ordering::Acquire) && self.lease.as_ref().is_none_or(Lease::valid)
    }

    #[cfg(test)]
    pub(crate) fn disabled() -> Self {
        Self::new(false, 0)
    }

    pub(crate) fn get(&self, project: &str, benchmark: &str) -> Option<Arc<CachedLatest>> {
        let hit = self.lookup(project, benchmark);
        crate::metrics::latest_cache(if hit.is_some() {
            "hit"
        } else if self.serving() {
            "miss"
        } else {
            "off"
        });
        hit
    }

    /// [`get`](Self::get) without counting: a caller that may still take the ordinary path,
    /// which counts the lookup once, counts a hit itself.
    pub(crate) fn peek(&self, project: &str, benchmark: &str) -> Option<Arc<CachedLatest>> {
        self.lookup(project, benchmark)
    }

    fn lookup(&self, project: &str, benchmark: &str) -> Option<Arc<CachedLatest>> {
        if !self.serving() {
            return None;
        }
        let e = self.entries.read().unwrap_or_else(|p| p.into_inner());
        // Switched off (or the lease ran out) while this waited for the lock.
        if !self.serving() {
            return None;
        }
        e.map.get(project)?.get(benchmark).cloned()
    }

    /// Turns the cache on or off (the PostgreSQL listener: on once it listens, off when its
    /// connection is lost). Either way every entry is dropped and every ticket taken so far
    /// becomes stale, so no read that began before the switch is stored.
    pub(crate) fn set_enabled(&self, on: bool) {
        let mut e = self.entries.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.enabled.store(on, Ordering::Release);
        e.map.clear();
        e.bytes = 0;
    }

    /// Forgets every entry (a write too large to name its benchmarks one by one).
    pub(crate) fn invalidate_all(&self) {
        let mut e = self.entries.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        e.map.clear();
        e.bytes = 0;
    }

    /// Call before reading the database for a later [`fill`](Self::fill).
    pub(crate) fn ticket(&self) -> FillTicket {
        FillTicket(self.generation.load(Ordering::Acquire))
    }

    /// Stores a value read after `ticket` was taken, unless a write invalidated anything since.
    pub(crate) fn fill(
        &self,
        ticket: FillTicket,
        project: &str,
        benchmark: &str,
        value: Arc<CachedLatest>,
    ) {
        if !self.enabled.load(Ordering::Acquire) || value.body.len() > self.budget {
            return;
        }
        let mut e = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) != ticket.0
            || !self.enabled.load(Ordering::Acquire)
        {
            return;
        }
        while e.bytes + value.body.len() > self.budget {
            // Drop an arbitrary entry (HashMap order is effectively random).
            let Some(p) = e.map.keys().next().cloned() else {
                break;
            };
            let inner = e.map.get_mut(&p).expect("key just seen");
            let b = inner.keys().next().cloned();
            let freed = b.and_then(|b| inner.remove(&b)).map_or(0, |v| v.body.len());
            if inner.is_empty() {
                e.map.remove(&p);
            }
            e.bytes -= freed;
        }
        let old = e
            .map
            .entry(project.to_owned())
            .or_default()
            .insert(benchmark.to_owned(), value.clone());
        e.bytes += value.body.len();
        e.bytes -= old.map_or(0, |o| o.body.len());
    }

    /// Forgets the latest of one benchmark. Call after every write that may change it (commit
    /// or not), before acknowledging the write.
    pub(crate) fn invalidate(&self, project: &str, benchmark: &str) {
        let mut e = self.entries.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut freed = 0;
        if let Some(inner) = e.map.get_mut(project) {
            freed = inner.remove(benchmark).map_or(0, |v| v.body.len());
            if inner.is_empty() {
                e.map.remove(project);
            }
        }
        e.bytes -= freed;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let e = self.entries.read().unwrap_or_else(|p| p.into_inner());
        e.map.values().map(HashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &str) -> Arc<CachedLatest> {
        Arc::new(CachedLatest {
            etag: HeaderValue::from_static("\"x\""),
            etag_str: "\"x\"".into(),
            body: Bytes::copy_from_slice(body.as_bytes()),
        })
    }

    #[test]
    fn a_fill_that_raced_a_write_is_not_kept() {
        let c = LatestCache::new(true, 1 << 20);
        let t = c.ticket();
        c.invalidate("p", "b");
        c.fill(t, "p", "b", entry("old"));
        assert!(c.get("p", "b").is_none());
        let t = c.ticket();
        c.fill(t, "p", "b", entry("new"));
        assert_eq!(&c.get("p", "b").unwrap().body[..], b"new");
        c.invalidate("p", "b");
        assert!(c.get("p", "b").is_none());
    }

    #[test]
    fn stays_within_budget() {
        let c = LatestCache::new(true, 10);
        for i in 0..20 {
            let t = c.ticket();
            c.fill(t, "p", &format!("b{i}"), entry("abcd"));
        }
        assert!(c.len() <= 2);
        let e = c.entries.read().unwrap();
        assert!(e.bytes <= 10);
    }

    #[test]
    fn switching_drops_everything_and_stales_tickets() {
        let c = LatestCache::new(false, 1 << 20);
        // Off: nothing is stored.
        let before = c.ticket();
        c.fill(before, "p", "b", entry("x"));
        assert!(c.get("p", "b").is_none());
        // A read that began while off must not land once on.
        c.set_enabled(true);
        c.fill(before, "p", "b", entry("stale"));
        assert!(c.get("p", "b").is_none());
        let t = c.ticket();
        c.fill(t, "p", "b", entry("fresh"));
        assert_eq!(&c.get("p", "b").unwrap().body[..], b"fresh");
        // A read in flight when the listener is lost must not land after it reconnects.
        let t = c.ticket();
        c.set_enabled(false);
        assert!(c.get("p", "b").is_none());
        c.set_enabled(true);
        c.fill(t, "p", "b", entry("stale"));
        assert!(c.get("p", "b").is_none());
        let t = c.ticket();
        c.fill(t, "p", "b", entry("x"));
        c.fill(t, "q", "b", entry("y"));
        c.invalidate_all();
        assert_eq!(c.len(), 0);
        c.fill(t, "p", "b", entry("stale"));
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn a_leased_cache_serves_only_within_its_lease() {
        use std::time::Duration;
        let c = LatestCache::leased(1 << 20);
        c.set_enabled(true);
        // On, but never renewed: nothing is served.
        let t = c.ticket();
        c.fill(t, "p", "b", entry("x"));
        assert_eq!(c.len(), 1);
        assert!(c.get("p", "b").is_none());
        c.renew_lease(Instant::now() + Duration::from_secs(60));
        assert_eq!(&c.get("p", "b").unwrap().body[..], b"x");
        // A renewal never shortens the lease.
        c.renew_lease(Instant::now());
        assert!(c.get("p", "b").is_some());
        // Run out: the entry stays but is not served.
        let c = LatestCache::leased(1 << 20);
        c.set_enabled(true);
        c.renew_lease(Instant::now() + Duration::from_millis(500));
        let t = c.ticket();
        c.fill(t, "p", "b", entry("x"));
        assert!(c.get("p", "b").is_some());
        std::thread::sleep(Duration::from_millis(600));
        assert!(c.get("p", "b").is_none());
        // A cache without a lease serves as long as it is on.
        let c = LatestCache::new(true, 1 << 20);
        let t = c.ticket();
        c.fill(t, "p", "b", entry("x"));
        assert!(c.get("p", "b").is_some());
    }

    #[test]
    fn disabled_never_stores() {
        let c = LatestCache::disabled();
        let t = c.ticket();
        c.fill(t, "p", "b", entry("x"));
        assert!(c.get("p", "b").is_none());
    }
}
