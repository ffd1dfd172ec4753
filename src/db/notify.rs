//! Keeping every PostgreSQL replica's cache of GET latest answers ([`crate::cache`]) fresh.
//!
//! **The guarantee:** a read that starts after an acknowledged write, on any replica, never
//! sees the old answer. How it holds:
//!
//! 1. **Writers announce inside their transaction.** A write that may change benchmarks'
//!    latest answers ends its transaction with [`Invalidator::announce`]: it reads the backend
//!    pids of the other replicas' cache listeners (`pg_stat_activity`, application name
//!    [`LISTENER_APP`], this database) and queues `pg_notify('perfgate_latest', …)` naming the
//!    benchmarks and a token of its own. PostgreSQL delivers the notification only if the
//!    transaction commits.
//! 2. **Listeners drop, then acknowledge.** Each replica runs one listener on a dedicated
//!    connection and thread, asleep in `poll(2)` on its socket. For each batch of notifications
//!    it drops the named entries, then sends one `pg_notify('perfgate_latest_ack', '<its pid>
//!    <tokens>')`.
//! 3. **Writers wait before they answer.** After the commit, and after dropping its own
//!    replica's entries, the writer waits until every listener pid it read has acknowledged its
//!    token (its own replica's listener receives the acks and wakes it). The wait is bounded
//!    ([`ACK_TIMEOUT`]); past it the writer logs a warning, counts a timeout, and answers anyway
//!    (the write is committed).
//! 5. **A lost listener is waited out by its lease.** A listener's thread may not run for a
//!    while after its connection died, so its replica cannot be trusted to notice in time.
//!    Instead the listener renews its replica's cache lease ([`LEASE`]) with a round trip every
//!    [`RENEW_EVERY`], and the cache serves only within the lease (checked by each reader). A
//!    lease runs from the moment a round trip began that a live backend answered, so it ends at
//!    most [`LEASE`] after that backend went away. Before its cache serves, a listener registers
//!    its pid in `cache_listeners`. A registered pid that is gone from `pg_stat_activity` (when
//!    the writer announces, or while it waits for its acknowledgement) holds the writer until
//!    [`LEASE_WAIT`] after it saw the pid gone, or until the pid is no longer registered: its
//!    replica registers a new pid only after its listener turned the cache off. A writer that
//!    waited a lease out removes the row. Leases are timed by `Instant` (a monotonic clock that
//!    stops while a host is suspended): a replica is assumed not to be paused.
//! 4. **A listener serves only while it hears everything.** The cache is off (dropped whole,
//!    neither serving nor filling, every earlier fill ticket stale) from start-up until the
//!    listener listens, and from a lost connection until it listens again. A listener takes its
//!    application name only *after* its `LISTEN` is active, and turns the cache on only after
//!    every transaction in progress at that moment has ended: a writer that read the pids
//!    before the listener had its name (and so will not wait for it) has committed by the time
//!    this replica caches anything, so what the replica reads from then on is new.
//!
//! On SQLite and memory this process is the only writer: announcing is a no-op there.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use diesel::sql_types::{Array, Bool, Integer, Text};
use diesel::RunQueryDsl;

use super::pq::{wait_readable, PqConn};
use super::{DbConn, DbError};
use crate::cache::LatestCache;

/// The channel of invalidations.
pub(crate) const CHANNEL: &str = "perfgate_latest";
/// The channel of listeners' acknowledgements.
pub(crate) const ACK_CHANNEL: &str = "perfgate_latest_ack";
/// The application name of a listening listener (writers wait for these).
pub(crate) const LISTENER_APP: &str = "perfgate-cache-listener";
/// The application name of a listener until its `LISTEN` is active.
const STARTING_APP: &str = "perfgate-cache-listener-starting";
/// PostgreSQL refuses payloads of 8000 bytes or more; this leaves room to spare.
pub(crate) const MAX_PAYLOAD: usize = 7900;
/// How long a committed write waits for the other replicas' listeners at most.
pub(crate) const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a replica's cache serves after its listener's last answered round trip began.
/// A lease that runs out sends every GET latest to the database until the next renewal, and
/// that load slows the renewal further, so it must outlast slow round trips by far: under
/// `bench/run.sh --postgres` (two replicas, PostgreSQL and the load generators saturating
/// 2 cores) a `SELECT 1` took up to 1.2 s, and 400 ms and 2 s leases both ran out and sent
/// thousands of GET latest to the database. Its cost is [`LEASE_WAIT`], paid only by a write
/// that coincides with the loss of a listener whose replica does not come back at once.
pub(crate) const LEASE: Duration = Duration::from_secs(5);
/// How often a listener renews the lease.
const RENEW_EVERY: Duration = Duration::from_millis(250);
/// How long a writer waits after seeing a listener gone: the lease, and a margin for clocks
/// that run at slightly different rates on different hosts.
const LEASE_WAIT: Duration = Duration::from_millis(5250);
/// A writer looks for listeners that went away this long after its commit, then this often.
const VANISHED_FIRST: Duration = Duration::from_millis(25);
const VANISHED_EVERY: Duration = Duration::from_millis(100);
/// Reconnection backoff of the listener.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Payloads

/// What a notification asks a listener to drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Invalidation {
    Pairs(Vec<(String, String)>),
    All,
}

/// The payloads announcing `pairs` under `token`: `<token>` then `\n<project>\t<benchmark>`
/// per pair (names hold neither tabs nor newlines), split so that each stays within
/// [`MAX_PAYLOAD`] bytes; a pair too large for any payload turns the whole into one
/// "drop everything" payload (`<token>\n*`).
pub(crate) fn encode(token: &str, pairs: &[(&str, &str)]) -> Vec<String> {
    let all = || vec![format!("{token}\n*")];
    let mut out = Vec::new();
    let mut cur = token.to_owned();
    for (p, b) in pairs {
        let line = 2 + p.len() + b.len();
        // Validated names hold neither; anything else is not sent piecemeal.
        if token.len() + line > MAX_PAYLOAD || [p, b].iter().any(|s| s.contains(['\n', '\t'])) {
            return all();
        }
        if cur.len() + line > MAX_PAYLOAD {
            out.push(std::mem::replace(&mut cur, token.to_owned()));
        }
        cur.push('\n');
        cur.push_str(p);
        cur.push('\t');
        cur.push_str(b);
    }
    if cur.len() > token.len() {
        out.push(cur);
    }
    out
}

/// A token as writers make them: the replica's id, a dot, a sequence number.
fn valid_token(t: &str) -> bool {
    !t.is_empty() && t.len() <= 64 && t.bytes().all(|c| c.is_ascii_hexdigit() || c == b'.')
}

/// The token and what to drop; anything unreadable drops everything (a payload without a
/// readable token, such as an import's `*`, is not acknowledged).
pub(crate) fn decode(payload: &str) -> (Option<&str>, Invalidation) {
    let mut lines = payload.split('\n');
    let token = lines.next().filter(|t| valid_token(t));
    let mut pairs = Vec::new();
    for l in lines {
        match l.split_once('\t') {
            Some((p, b)) if !p.is_empty() && !b.is_empty() => {
                pairs.push((p.to_owned(), b.to_owned()))
            }
            _ => return (token, Invalidation::All),
        }
    }
    if token.is_none() || pairs.is_empty() {
        return (token, Invalidation::All);
    }
    (token, Invalidation::Pairs(pairs))
}

/// Acknowledgement payloads: `<pid>` then ` <token>` per token, split to fit.
pub(crate) fn encode_acks(pid: i32, tokens: &[&str]) -> Vec<String> {
    let head = pid.to_string();
    let mut out = Vec::new();
    let mut cur = head.clone();
    for t in tokens {
        if cur.len() + 1 + t.len() > MAX_PAYLOAD {
            out.push(std::mem::replace(&mut cur, head.clone()));
        }
        cur.push(' ');
        cur.push_str(t);
    }
    if cur.len() > head.len() {
        out.push(cur);
    }
    out
}

pub(crate) fn decode_ack(payload: &str) -> Option<(i32, Vec<&str>)> {
    let mut parts = payload.split(' ');
    let pid = parts.next()?.parse().ok()?;
    Some((pid, parts.filter(|t| valid_token(t)).collect()))
}

// ---------------------------------------------------------------------------------------------
// This replica's side

/// This replica's part in the exchange: its id, the writes waiting for acknowledgements, and
/// its listener's backend pid.
pub(crate) struct Peers {
    /// Random per process: the prefix of every token this replica's writers make.
    replica: String,
    seq: AtomicU64,
    /// The listener's backend pid while it is connected, else 0.
    own_pid: AtomicI32,
    /// Write sequence → the listener pids it still waits for.
    pending: Mutex<HashMap<u64, HashSet<i32>>>,
    acked: Condvar,
    cache: Arc<LatestCache>,
}

impl Peers {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, HashSet<i32>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn own_token(&self, token: &str) -> Option<u64> {
        token
            .strip_prefix(self.replica.as_str())?
            .strip_prefix('.')?
            .parse()
            .ok()
    }

    /// `pid` has dropped what the writes of `tokens` changed.
    fn acknowledged(&self, pid: i32, tokens: &[&str]) {
        let mut g = self.lock();
        let mut woke = false;
        for t in tokens {
            if let Some(waiting) = self.own_token(t).and_then(|seq| g.get_mut(&seq)) {
                woke |= waiting.remove(&pid);
            }
        }
        drop(g);
        if woke {
            self.acked.notify_all();
        }
    }

    fn up(&self) {
        self.cache.set_enabled(true);
        crate::metrics::METRICS.cache_listener_connected.set(1);
    }

    fn down(&self) {
        self.cache.set_enabled(false);
        self.own_pid.store(0, Ordering::Release);
        crate::metrics::METRICS.cache_listener_connected.set(0);
    }
}

/// What the stores call around their writes: drops this replica's entries, and on PostgreSQL
/// tells the other replicas and waits for them.
#[derive(Clone)]
pub(crate) struct Invalidator {
    cache: Arc<LatestCache>,
    peers: Option<Arc<Peers>>,
}

/// A committed write's wait for the listeners it named (see [`Invalidator::settle`]).
pub(crate) struct AckWait {
    peers: Arc<Peers>,
    seq: u64,
    /// Registered listeners found gone → when their replica's lease has surely run out.
    gone: HashMap<i32, Instant>,
    /// Gone listeners whose lease ran out: their rows are removed when the wait ends.
    expired: Vec<i32>,
}

#[derive(diesel::QueryableByName)]
struct ListenerRow {
    #[diesel(sql_type = Integer)]
    pid: i32,
    /// Connected as a listener now (else only registered).
    #[diesel(sql_type = Bool)]
    live: bool,
}

impl Invalidator {
    /// For storage this process alone writes (SQLite, memory).
    pub(crate) fn local(cache: Arc<LatestCache>) -> Self {
        Self { cache, peers: None }
    }

    /// For PostgreSQL: `cache` must start off; [`spawn_listener`] turns it on.
    pub(crate) fn replicated(cache: Arc<LatestCache>) -> Self {
        let peers = Peers {
            replica: uuid::Uuid::new_v4().simple().to_string(),
            seq: AtomicU64::new(0),
            own_pid: AtomicI32::new(0),
            pending: Mutex::new(HashMap::new()),
            acked: Condvar::new(),
            cache: cache.clone(),
        };
        Self {
            cache,
            peers: Some(Arc::new(peers)),
        }
    }

    /// Call last inside a write transaction that may change the latest answer of `pairs`:
    /// queues the notification (delivered on commit) and names the listeners to wait for.
    /// Nothing to do on SQLite and memory, or when no other replica listens.
    pub(crate) fn announce(
        &self,
        c: &mut DbConn,
        pairs: &[(&str, &str)],
    ) -> Result<Option<AckWait>, DbError> {
        let (Some(peers), DbConn::Pg(pg)) = (&self.peers, c) else {
            return Ok(None);
        };
        if pairs.is_empty() {
            return Ok(None);
        }
        // The first look at pg_stat_activity in this transaction: a fresh view. A listener that
        // takes its name (and registers) later turns its cache on only after this transaction
        // has ended. Registered pids that are gone belong to replicas whose lease may still run.
        let rows = diesel::sql_query(
            "SELECT coalesce(a.pid, l.pid) AS pid, a.pid IS NOT NULL AS live \
             FROM (SELECT pid FROM pg_stat_activity \
                   WHERE application_name = $1 AND datname = current_database() AND pid <> $2) a \
             FULL JOIN (SELECT pid FROM cache_listeners WHERE replica <> $3) l ON l.pid = a.pid",
        )
        .bind::<Text, _>(LISTENER_APP)
        .bind::<Integer, _>(peers.own_pid.load(Ordering::Acquire))
        .bind::<Text, _>(&peers.replica)
        .load::<ListenerRow>(pg)?;
        let seen = Instant::now();
        let (live, gone): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r.live);
        let pids: HashSet<i32> = live.into_iter().map(|r| r.pid).collect();
        let gone: HashMap<i32, Instant> = gone
            .into_iter()
            .map(|r| (r.pid, seen + LEASE_WAIT))
            .collect();
        if pids.is_empty() && gone.is_empty() {
            return Ok(None);
        }
        let mut unique: Vec<(&str, &str)> = pairs.to_vec();
        unique.sort_unstable();
        unique.dedup();
        let seq = peers.seq.fetch_add(1, Ordering::Relaxed);
        let token = format!("{}.{seq}", peers.replica);
        for payload in encode(&token, &unique) {
            diesel::sql_query("SELECT pg_notify($1, $2)")
                .bind::<Text, _>(CHANNEL)
                .bind::<Text, _>(payload)
                .execute(pg)?;
        }
        // Registered before the commit, so no acknowledgement can arrive before its waiter.
        peers.lock().insert(seq, pids);
        Ok(Some(AckWait {
            peers: peers.clone(),
            seq,
            gone,
            expired: Vec::new(),
        }))
    }

    /// Call after the transaction (committed or not), before answering the client: drops this
    /// replica's entries of `pairs`, then, when the transaction committed and announced,
    /// waits for the other replicas' listeners. `c` is the writer's connection (idle).
    pub(crate) fn settle(
        &self,
        c: &mut DbConn,
        pairs: &[(&str, &str)],
        committed: bool,
        wait: Option<AckWait>,
    ) {
        for (p, b) in pairs {
            self.cache.invalidate(p, b);
        }
        if let (true, Some(w)) = (committed, wait) {
            w.wait(c);
        }
    }
}

/// Inside a write transaction that may change any latest answer (an import): every listening
/// replica drops its whole cache when it commits. Nobody waits for it: an import is not a
/// client's write.
pub(crate) fn announce_everything(c: &mut DbConn) -> diesel::QueryResult<()> {
    if let DbConn::Pg(pg) = c {
        diesel::sql_query("SELECT pg_notify($1, '*')")
            .bind::<Text, _>(CHANNEL)
            .execute(pg)?;
    }
    Ok(())
}

impl AckWait {
    /// Waits, then answers the outcome counted in `perfgate_cache_ack_waits_total`.
    fn wait(mut self, c: &mut DbConn) -> &'static str {
        let peers = self.peers.clone();
        let started = Instant::now();
        let deadline = started + ACK_TIMEOUT;
        let mut look = started + VANISHED_FIRST;
        let mut g = peers.lock();
        loop {
            let left: Vec<i32> = g
                .get(&self.seq)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            let now = Instant::now();
            let expired = &mut self.expired;
            self.gone.retain(|&pid, &mut until| {
                let running = now < until;
                if !running {
                    expired.push(pid);
                }
                running
            });
            if left.is_empty() && self.gone.is_empty() {
                drop(g);
                let outcome = if self.expired.is_empty() {
                    "acked"
                } else {
                    "lease"
                };
                crate::metrics::cache_ack_wait(started.elapsed(), outcome);
                self.forget_expired(c);
                return outcome;
            }
            // The deadline bounds the wait for acknowledgements; a lease found gone is waited
            // out in any case (at most LEASE_WAIT after it was seen).
            if now >= deadline && !left.is_empty() {
                drop(g);
                log::warn!(
                    "{} replica cache listener(s) (backend pids {left:?}, gone: {:?}) did not confirm an invalidation within {} s; answering anyway: their GET latest may serve the old answer until the notification arrives",
                    left.len() + self.gone.len(),
                    self.gone.keys().collect::<Vec<_>>(),
                    ACK_TIMEOUT.as_secs()
                );
                crate::metrics::cache_ack_wait(started.elapsed(), "timeout");
                // Listeners found gone still get their lease waited out (at most LEASE_WAIT
                // past the deadline).
                if let Some(&last) = self.gone.values().max() {
                    std::thread::sleep(last.saturating_duration_since(Instant::now()));
                    self.expired.extend(self.gone.keys());
                }
                self.forget_expired(c);
                return "timeout";
            }
            if now >= look {
                drop(g);
                let asked: Vec<i32> = left.iter().chain(self.gone.keys()).copied().collect();
                let found = listener_states(c, &asked);
                let seen = Instant::now();
                g = peers.lock();
                if let Some(found) = found {
                    let mut waiting = g.get_mut(&self.seq);
                    for st in found {
                        if st.live {
                            continue;
                        }
                        // Gone without its acknowledgement: its replica may serve until its
                        // lease runs out, unless it is no longer registered (it registered
                        // again after its cache went off, or it never served).
                        if let Some(w) = waiting.as_deref_mut() {
                            if w.remove(&st.pid) && st.registered {
                                self.gone.insert(st.pid, seen + LEASE_WAIT);
                            }
                        }
                        if !st.registered {
                            self.gone.remove(&st.pid);
                        }
                    }
                }
                look = Instant::now() + VANISHED_EVERY;
                continue;
            }
            let mut until = if left.is_empty() {
                look
            } else {
                deadline.min(look)
            };
            if let Some(&first) = self.gone.values().min() {
                until = until.min(first);
            }
            g = match peers
                .acked
                .wait_timeout(g, until.saturating_duration_since(now))
            {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// Removes the registrations of gone listeners whose leases have run out (a replica that
    /// comes back registers again before it serves).
    fn forget_expired(&self, c: &mut DbConn) {
        let DbConn::Pg(pg) = c else {
            return;
        };
        if self.expired.is_empty() {
            return;
        }
        // Never the row of a live listener (a pid the server gave out again).
        let r = diesel::sql_query(
            "DELETE FROM cache_listeners WHERE pid = ANY($1) AND pid NOT IN \
             (SELECT pid FROM pg_stat_activity \
              WHERE application_name = $2 AND datname = current_database())",
        )
        .bind::<Array<Integer>, _>(&self.expired)
        .bind::<Text, _>(LISTENER_APP)
        .execute(pg);
        if let Err(e) = r {
            log::debug!(
                "could not remove gone cache listeners {:?}: {e}",
                self.expired
            );
        }
    }
}

impl Drop for AckWait {
    fn drop(&mut self) {
        self.peers.lock().remove(&self.seq);
    }
}

#[derive(diesel::QueryableByName)]
struct ListenerState {
    #[diesel(sql_type = Integer)]
    pid: i32,
    /// Connected as a listener.
    #[diesel(sql_type = Bool)]
    live: bool,
    /// Registered in `cache_listeners`.
    #[diesel(sql_type = Bool)]
    registered: bool,
}

/// Whether each of `pids` is a connected listener and whether it is registered (None when that
/// cannot be told).
fn listener_states(c: &mut DbConn, pids: &[i32]) -> Option<Vec<ListenerState>> {
    let DbConn::Pg(pg) = c else {
        return None;
    };
    diesel::sql_query(
        "SELECT p AS pid, \
             EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = p \
                     AND a.application_name = $2 AND a.datname = current_database()) AS live, \
             EXISTS (SELECT 1 FROM cache_listeners l WHERE l.pid = p) AS registered \
         FROM unnest($1::int4[]) AS p",
    )
    .bind::<Array<Integer>, _>(pids)
    .bind::<Text, _>(LISTENER_APP)
    .load::<ListenerState>(pg)
    .ok()
}

// ---------------------------------------------------------------------------------------------
// The listener

/// Stops the listener thread when dropped (its wake-up socket closes), and waits a little for
/// it to remove its registration.
pub(crate) struct ListenerHandle {
    stop: Option<std::os::unix::net::UnixStream>,
    stopped: std::sync::mpsc::Receiver<()>,
}

impl Drop for ListenerHandle {
    fn drop(&mut self) {
        drop(self.stop.take());
        let _ = self.stopped.recv_timeout(Duration::from_secs(1));
    }
}

/// Starts this replica's listener on a connection of its own to `url` (the pools' URL, TLS
/// settings included). It turns the cache on once it listens.
pub(crate) fn spawn_listener(
    url: String,
    inv: &Invalidator,
) -> Result<ListenerHandle, std::io::Error> {
    let peers = inv
        .peers
        .clone()
        .ok_or_else(|| std::io::Error::other("a listener needs a replicated invalidator"))?;
    peers.down();
    let (stop, wake) = std::os::unix::net::UnixStream::pair()?;
    let (done, stopped) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("cache-listener".into())
        .spawn(move || {
            listen_forever(&url, &peers, &wake);
            let _ = done.send(());
        })?;
    Ok(ListenerHandle {
        stop: Some(stop),
        stopped,
    })
}

enum Ended {
    Stopped,
    Lost(String),
}

fn listen_forever(url: &str, peers: &Peers, wake: &std::os::unix::net::UnixStream) {
    let mut backoff = BACKOFF_MIN;
    // Whether the connection was up, and whether its absence has been logged.
    let (mut was_up, mut logged) = (false, false);
    loop {
        let mut up = false;
        let ended = session(url, peers, wake, &mut || {
            up = true;
            if was_up || logged {
                log::info!("cache listener reconnected: GET latest answers are cached again");
            } else {
                log::info!("cache listener listening: GET latest answers are cached");
            }
        });
        peers.down();
        match ended {
            Ended::Stopped => return,
            Ended::Lost(e) => {
                if up {
                    backoff = BACKOFF_MIN;
                    logged = false;
                    was_up = true;
                }
                if !logged {
                    log::warn!(
                        "cache listener {}: {e}; the GET latest cache is off until it reconnects",
                        if up || was_up {
                            "lost its connection"
                        } else {
                            "cannot connect"
                        }
                    );
                    logged = true;
                }
            }
        }
        // Sleep the backoff, or less if asked to stop.
        if sleep_or_stop(wake, backoff) {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// True when the stop socket closed.
fn sleep_or_stop(wake: &std::os::unix::net::UnixStream, d: Duration) -> bool {
    wait_readable(&[wake.as_raw_fd()], Some(d))
        .map(|r| r.first().copied().unwrap_or(false))
        .unwrap_or(false)
}

/// One connection's life: connect, listen, take the name, wait out the transactions in
/// progress, turn the cache on, then drop and acknowledge until the connection is lost.
fn session(
    url: &str,
    peers: &Peers,
    wake: &std::os::unix::net::UnixStream,
    on_up: &mut dyn FnMut(),
) -> Ended {
    let lost = |e: super::pq::PqError| Ended::Lost(e.to_string());
    let params = [
        ("connect_timeout", "10"),
        // A dead peer is noticed even while nothing is sent (the URL may override these).
        ("keepalives", "1"),
        ("keepalives_idle", "30"),
        ("keepalives_interval", "10"),
        ("keepalives_count", "3"),
        ("dbname", url),
        ("application_name", STARTING_APP),
    ];
    let mut conn = match PqConn::connect(&params) {
        Ok(c) => c,
        Err(e) => return lost(e),
    };
    let Some(sock) = conn.socket() else {
        return Ended::Lost("no socket".into());
    };
    let pid = conn.backend_pid();
    peers.own_pid.store(pid, Ordering::Release);
    let setup = (|| {
        conn.exec(&format!("LISTEN {CHANNEL}"))?;
        conn.exec(&format!("LISTEN {ACK_CHANNEL}"))?;
        // Only now, with LISTEN active: writers that see this name are heard.
        conn.exec(&format!("SET application_name = '{LISTENER_APP}'"))?;
        // Registered before the cache serves: once this pid is gone, writers wait out the lease.
        // (The replica id is hex.)
        conn.exec(&format!(
            "INSERT INTO cache_listeners (replica, pid) VALUES ('{}', pg_backend_pid()) \
             ON CONFLICT (replica) DO UPDATE SET pid = excluded.pid",
            peers.replica
        ))?;
        let snap = conn.exec("SELECT pg_current_snapshot()::text")?;
        Ok::<_, super::pq::PqError>(snap.into_iter().next().and_then(|r| r.into_iter().next()))
    })();
    let snapshot = match setup {
        Ok(Some(Some(s)))
            if s.bytes()
                .all(|c| c.is_ascii_digit() || c == b':' || c == b',') =>
        {
            s
        }
        Ok(_) => return Ended::Lost("unexpected snapshot".into()),
        Err(e) => return lost(e),
    };
    // Writers that read the listener pids before this one had its name do not wait for it:
    // the cache stays off until every transaction in progress then has ended. Meanwhile
    // notifications are answered, so that writers who do wait for it are not held up.
    let check = format!(
        "SELECT coalesce(bool_and(pg_xact_status(x) IS DISTINCT FROM 'in progress'), true)::text \
         FROM pg_snapshot_xip('{snapshot}'::pg_snapshot) AS x"
    );
    let mut renewed;
    loop {
        if let Err(e) = conn.consume_input() {
            return lost(e);
        }
        if let Err(e) = handle(&mut conn, peers, pid) {
            return lost(e);
        }
        renewed = Instant::now();
        match conn.exec(&check) {
            Ok(rows)
                if rows
                    .first()
                    .and_then(|r| r.first())
                    .cloned()
                    .flatten()
                    .as_deref()
                    == Some("true") =>
            {
                break
            }
            Ok(_) => {}
            Err(e) => return lost(e),
        }
        if sleep_or_stop(wake, Duration::from_millis(10)) {
            return stopped(&mut conn, peers);
        }
    }
    // The round trip that found the transactions ended is the lease's first renewal.
    peers.cache.renew_lease(renewed + LEASE);
    peers.up();
    on_up();
    loop {
        if let Err(e) = conn.consume_input() {
            return lost(e);
        }
        let received = match handle(&mut conn, peers, pid) {
            Ok(r) => r,
            Err(e) => return lost(e),
        };
        let now = Instant::now();
        let due = renewed + RENEW_EVERY;
        if now >= due {
            // An answer proves the backend was alive after `now`: the lease runs from then.
            // PostgreSQL sends the notifications it has pending before it answers, so they are
            // applied first.
            if let Err(e) = conn.exec("SELECT 1") {
                return lost(e);
            }
            if let Err(e) = handle(&mut conn, peers, pid) {
                return lost(e);
            }
            peers.cache.renew_lease(now + LEASE);
            renewed = now;
            continue;
        }
        if received {
            continue;
        }
        match wait_readable(
            &[sock, wake.as_raw_fd()],
            Some(due - now + Duration::from_millis(1)),
        ) {
            Ok(r) if r.get(1).copied().unwrap_or(false) => return stopped(&mut conn, peers),
            Ok(_) => {}
            Err(e) => return Ended::Lost(format!("poll: {e}")),
        }
    }
}

/// A clean stop: the cache goes off, so no writer needs to wait for this replica any more.
fn stopped(conn: &mut PqConn, peers: &Peers) -> Ended {
    peers.down();
    let _ = conn.exec(&format!(
        "DELETE FROM cache_listeners WHERE replica = '{}' AND pid = pg_backend_pid()",
        peers.replica
    ));
    Ended::Stopped
}

/// Drops what the received notifications name and acknowledges them (one notification per
/// batch); records acknowledgements addressed to this replica. True when anything was received.
fn handle(conn: &mut PqConn, peers: &Peers, pid: i32) -> Result<bool, super::pq::PqError> {
    let received = conn.notifications();
    if received.is_empty() {
        return Ok(false);
    }
    let mut tokens: Vec<String> = Vec::new();
    for n in &received {
        if n.channel == CHANNEL {
            let (token, what) = decode(&n.payload);
            // This replica's own writes drop its entries themselves, before they answer.
            if token.is_some_and(|t| peers.own_token(t).is_some()) {
                continue;
            }
            match what {
                Invalidation::All => peers.cache.invalidate_all(),
                Invalidation::Pairs(pairs) => {
                    for (p, b) in &pairs {
                        peers.cache.invalidate(p, b);
                    }
                }
            }
            if let Some(t) = token {
                tokens.push(t.to_owned());
            }
        } else if n.channel == ACK_CHANNEL {
            if let Some((from, acked)) = decode_ack(&n.payload) {
                peers.acknowledged(from, &acked);
            }
        }
    }
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    for payload in encode_acks(pid, &refs) {
        // Digits, hex, dots and spaces only (tokens are checked when decoded).
        conn.exec(&format!("SELECT pg_notify('{ACK_CHANNEL}', '{payload}')"))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let pairs = [("proj", "bench/a"), ("p2", "b.c_d-e")];
        let out = encode("abc.1", &pairs);
        assert_eq!(out, vec!["abc.1\nproj\tbench/a\np2\tb.c_d-e".to_owned()]);
        let (t, what) = decode(&out[0]);
        assert_eq!(t, Some("abc.1"));
        assert_eq!(
            what,
            Invalidation::Pairs(vec![
                ("proj".into(), "bench/a".into()),
                ("p2".into(), "b.c_d-e".into())
            ])
        );
        assert!(encode("abc.1", &[]).is_empty());
    }

    #[test]
    fn large_announcements_are_split_within_the_limit() {
        let names: Vec<String> = (0..2000).map(|i| format!("benchmark-{i:05}")).collect();
        let pairs: Vec<(&str, &str)> = names.iter().map(|b| ("project", b.as_str())).collect();
        let out = encode("f00d.42", &pairs);
        assert!(out.len() > 1, "{} payloads", out.len());
        let mut back = Vec::new();
        for p in &out {
            assert!(p.len() <= MAX_PAYLOAD && p.len() < 8000, "{}", p.len());
            let (t, what) = decode(p);
            assert_eq!(t, Some("f00d.42"));
            match what {
                Invalidation::Pairs(v) => back.extend(v),
                Invalidation::All => panic!("split, not dropped whole"),
            }
        }
        let want: Vec<(String, String)> = pairs
            .iter()
            .map(|(p, b)| (p.to_string(), b.to_string()))
            .collect();
        assert_eq!(back, want);
    }

    #[test]
    fn a_pair_too_large_for_one_payload_drops_everything() {
        let huge = "b".repeat(MAX_PAYLOAD);
        let out = encode("1.2", &[("p", "b"), ("p", &huge)]);
        assert_eq!(out, vec!["1.2\n*".to_owned()]);
        assert_eq!(decode(&out[0]), (Some("1.2"), Invalidation::All));
        // A name that could break the format is never sent piecemeal either.
        assert_eq!(encode("1.2", &[("p", "a\tb")]), vec!["1.2\n*".to_owned()]);
    }

    #[test]
    fn unreadable_payloads_drop_everything() {
        assert_eq!(decode(""), (None, Invalidation::All));
        assert_eq!(decode("not a token!\np\tb"), (None, Invalidation::All));
        assert_eq!(decode("ab.1\nno-tab"), (Some("ab.1"), Invalidation::All));
        assert_eq!(decode("ab.1"), (Some("ab.1"), Invalidation::All));
    }

    #[test]
    fn acks_round_trip_and_split() {
        let tokens: Vec<String> = (0..1000).map(|i| format!("{:032x}.{i}", i)).collect();
        let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
        let out = encode_acks(4242, &refs);
        assert!(out.len() > 1);
        let mut back = Vec::new();
        for p in &out {
            assert!(p.len() <= MAX_PAYLOAD);
            let (pid, t) = decode_ack(p).unwrap();
            assert_eq!(pid, 4242);
            back.extend(t.into_iter().map(str::to_owned));
        }
        assert_eq!(back, tokens);
        assert!(encode_acks(1, &[]).is_empty());
        assert_eq!(decode_ack("x 1.2"), None);
        // Tokens that could not have been made are ignored.
        assert_eq!(decode_ack("7 ab.1 ';--"), Some((7, vec!["ab.1"])));
    }

    #[test]
    fn acknowledgements_reach_only_this_replicas_writes() {
        let inv = Invalidator::replicated(Arc::new(LatestCache::leased(1 << 20)));
        let peers = inv.peers.clone().unwrap();
        peers.lock().insert(7, [10, 11].into_iter().collect());
        let mine = format!("{}.7", peers.replica);
        peers.acknowledged(10, &[&mine, "0000.7"]);
        assert_eq!(peers.lock()[&7], [11].into_iter().collect());
        peers.acknowledged(11, &["0000.7"]);
        assert_eq!(peers.lock()[&7].len(), 1);
        peers.acknowledged(11, &[&mine]);
        assert!(peers.lock()[&7].is_empty());
        let w = AckWait {
            peers: peers.clone(),
            seq: 7,
            gone: HashMap::new(),
            expired: Vec::new(),
        };
        drop(w);
        assert!(
            peers.lock().is_empty(),
            "a wait that ends forgets its entry"
        );
    }

    /// Replica B's listener lost its backend but its thread never ran again, so B never turned
    /// its cache off. A writer on replica A answers only once B's cache no longer serves: B's
    /// lease has run out. Three ways: B found gone when A announces; B gone while A waits for
    /// its acknowledgement; and B found gone but registered again (its listener came back, which
    /// it does only after its cache went off), when A need not wait the lease out.
    #[test]
    fn a_writer_waits_out_the_lease_of_a_listener_that_never_noticed() {
        use diesel::Connection;
        let Some(url) = crate::db::testdb::postgres_url() else {
            return;
        };
        crate::db::migrations::run_migrations(crate::config::StorageBackend::Postgres, &url)
            .unwrap();
        let mut admin = diesel::PgConnection::establish(&url).unwrap();
        #[derive(Clone, Copy, Debug, PartialEq)]
        enum Case {
            GoneAtAnnounce,
            GoneWhileWaiting,
            RegisteredAgain,
        }
        for case in [
            Case::GoneAtAnnounce,
            Case::GoneWhileWaiting,
            Case::RegisteredAgain,
        ] {
            // B's listener, by hand: listening, named, registered.
            let cache_b = Arc::new(LatestCache::leased(1 << 20));
            let inv_b = Invalidator::replicated(cache_b.clone());
            let replica_b = inv_b.peers.as_ref().unwrap().replica.clone();
            let mut listener =
                PqConn::connect(&[("dbname", url.as_str()), ("application_name", LISTENER_APP)])
                    .unwrap();
            listener.exec(&format!("LISTEN {CHANNEL}")).unwrap();
            listener
                .exec(&format!(
                    "INSERT INTO cache_listeners (replica, pid) VALUES ('{replica_b}', pg_backend_pid())"
                ))
                .unwrap();
            cache_b.set_enabled(true);
            let ticket = cache_b.ticket();
            cache_b.fill(
                ticket,
                "p",
                "b",
                Arc::new(crate::cache::CachedLatest {
                    etag: actix_web::http::header::HeaderValue::from_static("\"v1\""),
                    etag_str: "\"v1\"".into(),
                    body: actix_web::web::Bytes::from_static(b"v1"),
                }),
            );
            let pid_b = listener.backend_pid();
            // The last renewal, right before the backend goes.
            let renewed = Instant::now();
            listener.exec("SELECT 1").unwrap();
            cache_b.renew_lease(renewed + LEASE);
            let mut kill = || {
                diesel::sql_query("SELECT pg_terminate_backend($1)")
                    .bind::<Integer, _>(pid_b)
                    .execute(&mut admin)
                    .unwrap();
                let t0 = Instant::now();
                while still_listening(&mut admin, pid_b) {
                    assert!(t0.elapsed() < Duration::from_secs(10), "the backend stays");
                    std::thread::sleep(Duration::from_millis(5));
                }
            };
            // A writes.
            let inv_a = Invalidator::replicated(Arc::new(LatestCache::leased(1 << 20)));
            let mut c = DbConn::Pg(diesel::PgConnection::establish(&url).unwrap());
            if case != Case::GoneWhileWaiting {
                kill();
            }
            let wait = c
                .transaction(|c| inv_a.announce(c, &[("p", "b")]))
                .unwrap()
                .expect("A waits for B");
            if case == Case::GoneWhileWaiting {
                kill();
            }
            // B registers again from another connection (not named a listener: nothing to
            // acknowledge), after its cache went off.
            let _again = (case == Case::RegisteredAgain).then(|| {
                cache_b.set_enabled(false);
                let mut again = PqConn::connect(&[("dbname", url.as_str())]).unwrap();
                again
                    .exec(&format!(
                        "UPDATE cache_listeners SET pid = pg_backend_pid() WHERE replica = '{replica_b}'"
                    ))
                    .unwrap();
                again
            });
            if case != Case::RegisteredAgain {
                assert!(
                    cache_b.get("p", "b").is_some() || renewed.elapsed() >= LEASE,
                    "B still serves when A starts waiting ({case:?})"
                );
            }
            let outcome = wait.wait(&mut c);
            assert!(
                cache_b.get("p", "b").is_none(),
                "B still serves its cache after A answered ({case:?})"
            );
            #[derive(diesel::QueryableByName)]
            struct N {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n: i64,
            }
            let rows: N = diesel::sql_query("SELECT count(*) AS n FROM cache_listeners")
                .get_result(&mut admin)
                .unwrap();
            if case == Case::RegisteredAgain {
                assert_eq!(outcome, "acked", "no lease to wait out");
                assert_eq!(rows.n, 1, "B's new registration stays");
                diesel::sql_query("DELETE FROM cache_listeners")
                    .execute(&mut admin)
                    .unwrap();
            } else {
                assert_eq!(outcome, "lease", "{case:?}");
                assert!(renewed.elapsed() >= LEASE, "answered within B's lease");
                // The writer that waited the lease out removed B's registration.
                assert_eq!(rows.n, 0, "{case:?}");
            }
        }
    }

    fn still_listening(admin: &mut diesel::PgConnection, pid: i32) -> bool {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let n: N = diesel::sql_query("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1")
            .bind::<Integer, _>(pid)
            .get_result(admin)
            .unwrap();
        n.n > 0
    }
}
