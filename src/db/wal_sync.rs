//! Group commits acknowledged once the WAL is on disk, with the disk's flush off the writer's
//! path.
//!
//! With `synchronous = FULL`, SQLite fsyncs the WAL inside every commit, and the process's one
//! writer waits for the disk before it can start the next batch. A group commit on a SQLite file
//! instead commits with `synchronous = NORMAL` (its WAL frames are written, not flushed) and
//! hands its answers to a [`WalSync`]: a thread that fsyncs the WAL file and only then answers
//! every batch committed before that fsync began. Meanwhile the writer applies the next batch,
//! so one batch's flush overlaps the next one's statements.
//!
//! What is acknowledged is as durable as before: an answer is sent after an fsync of the WAL
//! that began after its commit had written its frames, and SQLite's recovery keeps the WAL up to
//! its last valid commit (each frame's checksum chains to the previous one), so a durable
//! commit never depends on a later one. Checkpoints still flush the WAL before copying it into
//! the database (SQLite does so in `NORMAL` too). What is new is a window in which other
//! connections can read a commit whose writer has not been answered yet; a power loss in that
//! window loses that commit (a killed process does not: its frames are in the kernel's page
//! cache), as it loses any request that was never answered.
//!
//! An fsync that fails leaves the file's state unknown (Linux reports the error once and may
//! have dropped the pages), so after one failure every later write is answered 503 until the
//! server restarts and SQLite recovers the WAL from the disk.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// What runs once the flush that covers a commit has ended: `Err` carries the reason it failed.
pub(crate) type Synced = Box<dyn FnOnce(Result<(), String>) + Send>;

/// How the flush is done: the WAL file, or (in tests) a function.
enum Target {
    /// Opened once, while a connection holds the WAL open: SQLite deletes the file only when
    /// the last connection closes, and an fsync through any descriptor of a file flushes the
    /// pages written through every other one.
    Wal(File),
    #[cfg(test)]
    Test(Box<dyn FnMut() -> io::Result<()> + Send>),
}

impl Target {
    fn sync(&mut self) -> io::Result<()> {
        match self {
            Target::Wal(file) => file.sync_data(),
            #[cfg(test)]
            Target::Test(f) => f(),
        }
    }
}

#[derive(Default)]
struct State {
    waiting: Vec<Synced>,
    /// Set by the first failed flush, for good.
    failed: Option<String>,
    thread: bool,
    stopping: bool,
}

struct Inner {
    state: Mutex<State>,
    ready: Condvar,
    /// Held while flushing: the thread and a caller flushing inline never overlap.
    target: Mutex<Target>,
    /// `PRAGMA synchronous` for the writer's other commits, restored after each group commit.
    restore: &'static str,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The syncer of one SQLite file's WAL (see the module's documentation). Cloned into the write
/// pool; its thread starts with the first commit and ends when [`WalSyncOwner`] is dropped.
#[derive(Clone)]
pub(crate) struct WalSync(Arc<Inner>);

/// Stops the syncer's thread, once it has answered everything handed to it, when dropped.
pub(crate) struct WalSyncOwner {
    sync: WalSync,
    /// The connection that opened the WAL, kept open for as long as the syncer flushes it:
    /// SQLite deletes the WAL when its last connection closes (and the next one creates a new
    /// file, which the syncer's descriptor would not reach). Closed after the thread ended.
    _keep: Option<Mutex<diesel::SqliteConnection>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl WalSync {
    /// The syncer of the WAL of the database file `db` (`<db>-wal`), which `keep`, a connection
    /// that has read the database, holds open; the writer's commits otherwise use
    /// `synchronous = restore`.
    pub(crate) fn for_database(
        db: PathBuf,
        restore: &'static str,
        keep: Option<diesel::SqliteConnection>,
    ) -> io::Result<WalSyncOwner> {
        let mut wal = db.into_os_string();
        wal.push("-wal");
        let mut owner = Self::with_target(Target::Wal(File::open(wal)?), restore);
        owner._keep = keep.map(Mutex::new);
        Ok(owner)
    }

    /// A syncer whose flush is `f` (tests of what waits for it).
    #[cfg(test)]
    pub(crate) fn for_test(f: impl FnMut() -> io::Result<()> + Send + 'static) -> WalSyncOwner {
        Self::with_target(Target::Test(Box::new(f)), "FULL")
    }

    /// Whether the file this syncer flushes is the one named `path` (and not a deleted one).
    #[cfg(all(test, unix))]
    pub(crate) fn flushes(&self, path: &std::path::Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        match &*lock(&self.0.target) {
            Target::Wal(f) => {
                let (open, named) = (f.metadata().unwrap(), std::fs::metadata(path).unwrap());
                open.nlink() > 0 && open.ino() == named.ino() && open.dev() == named.dev()
            }
            Target::Test(_) => false,
        }
    }

    fn with_target(target: Target, restore: &'static str) -> WalSyncOwner {
        WalSyncOwner {
            sync: WalSync(Arc::new(Inner {
                state: Mutex::new(State::default()),
                ready: Condvar::new(),
                target: Mutex::new(target),
                restore,
                thread: Mutex::new(None),
            })),
            _keep: None,
        }
    }

    /// Why a flush failed, if one did: the writer then stores nothing more (see the module's
    /// documentation).
    pub(crate) fn failed(&self) -> Option<String> {
        lock(&self.0.state).failed.clone()
    }

    /// The `PRAGMA synchronous` value the writer returns to after a group commit.
    pub(crate) fn restore(&self) -> &'static str {
        self.0.restore
    }

    /// Runs `done` once an fsync of the WAL that began after this call has ended. Call it after
    /// the commit: the commit's frames are then written, and that fsync makes them durable.
    pub(crate) fn after_sync(&self, done: Synced) {
        let mut s = lock(&self.0.state);
        if let Some(e) = &s.failed {
            let e = e.clone();
            drop(s);
            return done(Err(e));
        }
        if s.stopping {
            drop(s);
            return done(self.sync_now());
        }
        s.waiting.push(done);
        let start = !s.thread;
        s.thread = true;
        drop(s);
        self.0.ready.notify_one();
        if start {
            self.spawn();
        }
    }

    /// One fsync of the WAL, unless an earlier one failed.
    fn sync_now(&self) -> Result<(), String> {
        let mut target = lock(&self.0.target);
        if let Some(e) = &lock(&self.0.state).failed {
            return Err(e.clone());
        }
        match target.sync() {
            Ok(()) => Ok(()),
            Err(e) => {
                let msg = format!(
                    "Storage could not flush its write-ahead log ({e}); the outcome of writes \
                     since is unknown; restart the server"
                );
                log::error!("{msg}");
                lock(&self.0.state).failed = Some(msg.clone());
                Err(msg)
            }
        }
    }

    fn spawn(&self) {
        let sync = self.clone();
        let spawned = std::thread::Builder::new()
            .name("wal-sync".into())
            .spawn(move || sync.run());
        match spawned {
            Ok(t) => *lock(&self.0.thread) = Some(t),
            Err(e) => {
                // No thread: everything is flushed and answered inline from now on.
                log::warn!("cannot start the WAL syncer: {e}");
                let waiting = {
                    let mut s = lock(&self.0.state);
                    s.stopping = true;
                    std::mem::take(&mut s.waiting)
                };
                if !waiting.is_empty() {
                    let r = self.sync_now();
                    for done in waiting {
                        done(r.clone());
                    }
                }
            }
        }
    }

    fn run(self) {
        loop {
            let batch = {
                let mut s = lock(&self.0.state);
                while s.waiting.is_empty() && !s.stopping {
                    s = self.0.ready.wait(s).unwrap_or_else(|e| e.into_inner());
                }
                if s.waiting.is_empty() {
                    return;
                }
                std::mem::take(&mut s.waiting)
            };
            let r = self.sync_now();
            for done in batch {
                done(r.clone());
            }
        }
    }
}

impl WalSyncOwner {
    pub(crate) fn sync(&self) -> &WalSync {
        &self.sync
    }
}

impl Drop for WalSyncOwner {
    fn drop(&mut self) {
        let inner = &self.sync.0;
        lock(&inner.state).stopping = true;
        inner.ready.notify_all();
        let thread = lock(&inner.thread).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A syncer whose every flush waits for the test's go-ahead and reports on `flushes`.
    fn gated() -> (
        WalSyncOwner,
        mpsc::Sender<io::Result<()>>,
        mpsc::Receiver<()>,
    ) {
        let (go, gate) = mpsc::channel::<io::Result<()>>();
        let (started, flushes) = mpsc::channel();
        let gate = Mutex::new(gate);
        let owner = WalSync::with_target(
            Target::Test(Box::new(move || {
                let _ = started.send(());
                lock(&gate)
                    .recv()
                    .unwrap_or_else(|_| Err(io::Error::other("test over")))
            })),
            "FULL",
        );
        (owner, go, flushes)
    }

    fn answer(owner: &WalSyncOwner) -> mpsc::Receiver<Result<(), String>> {
        let (tx, rx) = mpsc::channel();
        owner.sync().after_sync(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        rx
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[test]
    fn nothing_is_answered_before_its_flush_ends() {
        let (owner, go, flushes) = gated();
        let first = answer(&owner);
        flushes.recv_timeout(WAIT).expect("a flush starts");
        // Handed over while that flush runs: it needs the next one.
        let second = answer(&owner);
        std::thread::sleep(Duration::from_millis(50));
        assert!(first.try_recv().is_err(), "answered before its flush ended");
        go.send(Ok(())).unwrap();
        assert_eq!(first.recv_timeout(WAIT).unwrap(), Ok(()));
        flushes.recv_timeout(WAIT).expect("a second flush starts");
        assert!(
            second.try_recv().is_err(),
            "answered by a flush that began before it"
        );
        go.send(Ok(())).unwrap();
        assert_eq!(second.recv_timeout(WAIT).unwrap(), Ok(()));
    }

    #[test]
    fn one_flush_answers_everything_handed_over_before_it() {
        let (owner, go, flushes) = gated();
        let first = answer(&owner);
        flushes.recv_timeout(WAIT).unwrap();
        let more: Vec<_> = (0..5).map(|_| answer(&owner)).collect();
        go.send(Ok(())).unwrap();
        first.recv_timeout(WAIT).unwrap().unwrap();
        flushes.recv_timeout(WAIT).unwrap();
        go.send(Ok(())).unwrap();
        for rx in more {
            assert_eq!(rx.recv_timeout(WAIT).unwrap(), Ok(()));
        }
        // Nothing was left waiting: no third flush.
        assert!(flushes.recv_timeout(Duration::from_millis(100)).is_err());
    }

    #[test]
    fn a_failed_flush_fails_every_later_write() {
        let (owner, go, flushes) = gated();
        let first = answer(&owner);
        flushes.recv_timeout(WAIT).unwrap();
        go.send(Err(io::Error::other("EIO"))).unwrap();
        let e = first.recv_timeout(WAIT).unwrap().unwrap_err();
        assert!(e.contains("EIO") && e.contains("restart"), "{e}");
        // Later commits are refused without another flush: one that succeeded would not say
        // whether the pages of the failed one reached the disk.
        assert!(owner.sync().failed().is_some_and(|f| f.contains("EIO")));
        let later = answer(&owner);
        assert!(later.recv_timeout(WAIT).unwrap().is_err());
        assert!(flushes.recv_timeout(Duration::from_millis(100)).is_err());
    }

    #[test]
    fn stopping_answers_what_is_waiting_and_later_writes_inline() {
        let (owner, go, flushes) = gated();
        let first = answer(&owner);
        flushes.recv_timeout(WAIT).unwrap();
        let second = answer(&owner);
        let sync = owner.sync().clone();
        // Dropping the owner waits for the thread, which first answers what is waiting.
        let stopper = std::thread::spawn(move || drop(owner));
        go.send(Ok(())).unwrap();
        go.send(Ok(())).unwrap();
        stopper.join().unwrap();
        assert_eq!(first.recv_timeout(WAIT).unwrap(), Ok(()));
        assert_eq!(second.recv_timeout(WAIT).unwrap(), Ok(()));
        // After the thread stopped, the caller flushes itself.
        go.send(Ok(())).unwrap();
        let (tx, rx) = mpsc::channel();
        sync.after_sync(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        assert_eq!(rx.try_recv(), Ok(Ok(())));
    }

    #[test]
    fn the_wal_file_is_flushed() {
        let file = crate::db::testdb::SqliteFile::new();
        let db = PathBuf::from(file.path());
        assert!(
            WalSync::for_database(db.clone(), "FULL", None).is_err(),
            "no WAL file: no syncer"
        );
        let wal = PathBuf::from(format!("{}-wal", file.path()));
        std::fs::write(&wal, b"frames").unwrap();
        let owner = WalSync::for_database(db, "FULL", None).unwrap();
        assert_eq!(answer(&owner).recv_timeout(WAIT).unwrap(), Ok(()));
        assert_eq!(owner.sync().failed(), None);
        // The descriptor outlives the name (as at shutdown, once the last connection deleted it).
        std::fs::remove_file(&wal).unwrap();
        assert_eq!(answer(&owner).recv_timeout(WAIT).unwrap(), Ok(()));
    }
}
