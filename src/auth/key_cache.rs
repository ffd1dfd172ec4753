//! Database keys a server has authenticated, kept so that the next request with the same key
//! neither waits for the key store nor reads the key (a SQLite file only).
//!
//! **A change of any key reaches every later request.** The table `key_changes` holds a
//! counter that triggers on `api_keys` move with every insert, update and delete, whoever
//! makes it: this server, the `keys` command on the same file while the server runs, an
//! import. Every lookup first reads the counter (one row, a statement prepared once, on a
//! connection of the key store's read pool); if it moved since the cache was last checked,
//! every entry is dropped. A request that starts after a revocation committed therefore reads
//! the new counter and finds the cache empty.
//!
//! **A fill never brings back what a change dropped.** A lookup that misses hands out the
//! cache's generation, taken after the counter was read and before the key store reads the
//! key; the answer is kept only if no drop happened since. A read that raced a change is used
//! for its own request, as it would have been without the cache, and not kept.
//!
//! Only keys that authenticated are kept (never an unknown, revoked or expired one), with
//! their expiry, which every hit checks. When no read connection is free, or the counter cannot
//! be read, the request takes the key store's path as before and nothing is kept.
//!
//! The counter is read on the request's own thread, which is why only a SQLite file in WAL
//! mode caches: its readers never wait for the writer. The memory backend's readers can (its
//! locks are a rollback journal's), and PostgreSQL replicas would need a round trip to
//! PostgreSQL to notice another replica's change, which is what the cache saves.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use diesel::prelude::*;

use crate::db::schema::key_changes;
use crate::db::DbPool;
use crate::domain::access::Principal;

/// Most keys kept; past it the cache starts over.
const MAX_KEYS: usize = 10_000;

pub(crate) struct KeyCache {
    /// The key store's read pool: the counter is read on a connection that is free.
    pool: DbPool,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// By SHA-256 of the key (hex), as `api_keys.key_hash`.
    keys: HashMap<String, Principal>,
    /// Moves with every drop.
    generation: u64,
    /// The counter as last read.
    changes: Option<i64>,
}

/// What a lookup found.
pub(crate) enum Lookup {
    /// The key, as the key store last authenticated it (its expiry still to be checked).
    Hit(Principal),
    /// Not kept: [`KeyCache::fill`] keeps what the key store answers, unless a change came
    /// between.
    Miss(Ticket),
    /// The counter could not be read: ask the key store, keep nothing.
    Unchecked,
}

/// The generation a miss saw.
pub(crate) struct Ticket(u64);

impl KeyCache {
    pub(crate) fn new(pool: DbPool) -> KeyCache {
        KeyCache {
            pool,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The counter of key changes, read now; `None` when no connection is free or the read
    /// failed.
    fn changes(&self) -> Option<i64> {
        let mut c = self.pool.try_get()?;
        key_changes::table
            .find(1)
            .select(key_changes::n)
            .first::<i64>(&mut *c)
            .ok()
    }

    /// The key with SHA-256 `hash`, after dropping everything should any key have changed.
    pub(crate) fn lookup(&self, hash: &str) -> Lookup {
        let Some(n) = self.changes() else {
            return Lookup::Unchecked;
        };
        let mut g = self.inner();
        if g.changes != Some(n) {
            g.keys.clear();
            g.generation += 1;
            g.changes = Some(n);
        }
        match g.keys.get(hash) {
            Some(p) => Lookup::Hit(p.clone()),
            None => Lookup::Miss(Ticket(g.generation)),
        }
    }

    /// Keeps what the key store answered for a miss, unless something was dropped since.
    pub(crate) fn fill(&self, ticket: Ticket, hash: String, principal: Principal) {
        let mut g = self.inner();
        if g.generation != ticket.0 {
            return;
        }
        if g.keys.len() >= MAX_KEYS {
            g.keys.clear();
        }
        g.keys.insert(hash, principal);
    }
}
