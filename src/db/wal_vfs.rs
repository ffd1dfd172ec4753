//! A SQLite VFS that writes a commit's WAL frames to the file in one system call.
//!
//! SQLite appends a frame to the WAL as two writes, its 24-byte header and its page, so a
//! commit of 50 pages costs 100 `pwrite`s: under uploads that was 30 % of the writer thread's
//! time (`perf record`), most of it the cost of entering the kernel, not of copying. This VFS
//! wraps the platform's default one (`unix`) and changes one thing: writes that append to a
//! WAL are gathered in memory and reach the file as one `pwrite` when the commit's last frame
//! has been appended. What is on the file when anything can look at it is what SQLite would
//! have written itself; only the number of calls changes. The rules that make it so:
//!
//! - **A commit is on the file before the commit exists.** SQLite marks a transaction's last
//!   frame by the database size in its header (bytes 4-7, zero in every other frame); the
//!   buffer is written out as soon as that frame's page has been appended, inside the write
//!   SQLite makes, so a failure is the commit's failure (even when something else wrote out
//!   the buffer between that header and its page, the page's own write writes it). Only then
//!   does SQLite publish the frames to other connections (the wal-index header in shared
//!   memory).
//! - **Only appends wait.** Frames appended at the end of the WAL are gathered, and so is the
//!   WAL header that starts it over (offset 0), which the frames after it extend. A write
//!   anywhere else (a page rewritten in place, a checksum rewritten after a spill) first writes
//!   out what is gathered, then goes straight to the file, as does every other operation on
//!   the WAL (read, sync, size, truncate, file control, close).
//! - **Nothing outlives the write lock.** A transaction that spilled frames and then rolled back
//!   leaves them gathered; another connection may then write at the same offsets. So a
//!   connection's database file (wrapped too, otherwise passed through) writes out every
//!   gathered buffer of the process before it takes or releases a shared-memory lock, and
//!   before the shared-memory barrier that precedes publishing a wal-index header: for a
//!   rolled-back transaction that is while it still holds the write lock, which is what SQLite
//!   itself would have written, earlier. A commit's own frames are never among them (the first
//!   rule wrote them out), only those of transactions that have not committed. A write that
//!   fails there cannot be reported to the transaction whose frames it lost (a barrier returns
//!   nothing, and the next call may be a read whose error SQLite confines to one statement),
//!   so the process aborts: nothing acknowledged depends on those frames, and SQLite recovers
//!   the WAL at the next start.
//!
//! Durability is unchanged: SQLite syncs (or the WAL syncer, `super::wal_sync`, flushes) the
//! file after these writes, exactly as before.

use std::ffi::{c_char, c_int, c_void};
use std::mem::size_of;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use libsqlite3_sys as ffi;

/// The name the VFS is registered under (as the process's default).
const NAME: &std::ffi::CStr = c"perfgate-unix";
/// A gathered buffer larger than this is written out at once, commit or not.
const BUFFER_MAX: usize = 1 << 20;
/// The most one write passes to the real file: the unix VFS keeps the low 17 bits of a length
/// (`seekAndWriteFd`), so a write of 128 KiB or more would be cut short.
const WRITE_MAX: usize = 31 << 12;
/// Size of a WAL frame header, and of the WAL header.
const FRAME_HEADER: c_int = 24;
const WAL_HEADER: c_int = 32;

/// Registers the VFS as the process's default, once, before the first file is opened. A file
/// whose real methods are older than version 3 (not the unix VFS this was written for) is left
/// unwrapped.
pub(super) fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `sqlite3_vfs_find(NULL)` returns the default VFS, which SQLite never frees;
        // the copy made here is leaked, so it lives as long as the process, as registered VFSes
        // must.
        unsafe {
            if ffi::sqlite3_initialize() != ffi::SQLITE_OK {
                return;
            }
            let real = ffi::sqlite3_vfs_find(ptr::null());
            // The copy below reads a version-3 VFS (the unix VFS is one).
            if real.is_null() || (*real).iVersion < 3 {
                return;
            }
            let mut vfs: ffi::sqlite3_vfs = *real;
            vfs.szOsFile = (real_offset() + (*real).szOsFile as usize) as c_int;
            vfs.pNext = ptr::null_mut();
            vfs.zName = NAME.as_ptr();
            vfs.pAppData = real.cast();
            vfs.xOpen = Some(open);
            let vfs = Box::leak(Box::new(vfs));
            let rc = ffi::sqlite3_vfs_register(vfs, 1);
            if rc != ffi::SQLITE_OK {
                log::warn!("could not register the WAL-gathering SQLite VFS (code {rc})");
            }
        }
    });
}

/// The file SQLite allocates for this VFS: the wrapper, then the real VFS's file.
#[repr(C)]
struct ShimFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    /// Set for a WAL; null for a main database file.
    wal: *mut Wal,
}

/// Where the real file starts in the allocation (8-byte aligned).
const fn real_offset() -> usize {
    size_of::<ShimFile>().div_ceil(8) * 8
}

/// A WAL's gathered writes.
struct Wal {
    real: *mut ffi::sqlite3_file,
    buf: Mutex<Gathered>,
    /// `buf` holds data: read without its lock by [`flush_all`], which skips the WALs that
    /// hold none (and so never waits for one that is busy syncing).
    has_data: AtomicBool,
}

impl Wal {
    /// Writes out the gathered bytes (`g` is this WAL's locked buffer).
    ///
    /// # Safety
    /// The WAL's file is open.
    unsafe fn flush(&self, g: &mut Gathered) -> c_int {
        // SAFETY: per the contract.
        let rc = unsafe { g.flush(self.real) };
        self.has_data.store(false, Ordering::Release);
        rc
    }
}

// SAFETY: `real` is used only under `buf`'s lock (or by the thread closing the file, after it
// left the registry), and SQLite's unix files may be used from any thread.
unsafe impl Send for Wal {}
unsafe impl Sync for Wal {}

#[derive(Default)]
struct Gathered {
    data: Vec<u8>,
    /// Offset of `data[0]` in the file.
    at: i64,
    /// End of the frames appended since the WAL header was last written: writes at or past it
    /// append; writes before it rewrite.
    end: i64,
    /// The last write appended a commit frame's header: its page ends the commit (kept when
    /// something writes out the buffer in between).
    commit_next: bool,
}

/// WALs open in this process, by address; read by the database files' lock and barrier calls.
static WALS: Mutex<Vec<usize>> = Mutex::new(Vec::new());
/// How many of them have gathered writes (the lock calls look no further when none has).
static PENDING: AtomicUsize = AtomicUsize::new(0);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gathered {
    /// Writes the gathered bytes to the file, if any.
    ///
    /// # Safety
    /// `real` is the open real file this buffer belongs to.
    unsafe fn flush(&mut self, real: *mut ffi::sqlite3_file) -> c_int {
        if self.data.is_empty() {
            return ffi::SQLITE_OK;
        }
        let mut rc = ffi::SQLITE_OK;
        for (i, chunk) in self.data.chunks(WRITE_MAX).enumerate() {
            #[cfg(test)]
            WAL_WRITES.fetch_add(1, Ordering::SeqCst);
            // SAFETY: per the contract; the methods of an open file are set.
            rc = unsafe {
                match (*(*real).pMethods).xWrite {
                    Some(w) => w(
                        real,
                        chunk.as_ptr().cast(),
                        chunk.len() as c_int,
                        self.at + (i * WRITE_MAX) as i64,
                    ),
                    None => ffi::SQLITE_IOERR_WRITE,
                }
            };
            if rc != ffi::SQLITE_OK {
                break;
            }
        }
        self.data.clear();
        if self.data.capacity() > 2 * BUFFER_MAX {
            self.data.shrink_to(BUFFER_MAX);
        }
        PENDING.fetch_sub(1, Ordering::AcqRel);
        rc
    }
}

/// Writes out every WAL buffer of the process that holds data (see the module's documentation).
/// A failure aborts the process.
fn flush_all() {
    if PENDING.load(Ordering::Acquire) == 0 {
        return;
    }
    let wals = lock(&WALS);
    for &w in wals.iter() {
        // SAFETY: a registered `Wal` is alive until its file leaves the registry, which takes
        // this lock first.
        let wal = unsafe { &*(w as *const Wal) };
        if !wal.has_data.load(Ordering::Acquire) {
            continue;
        }
        let mut g = lock(&wal.buf);
        // SAFETY: the file of a registered `Wal` is open.
        let rc = unsafe { wal.flush(&mut g) };
        if rc != ffi::SQLITE_OK {
            eprintln!("perfgate-server: writing gathered WAL frames of an uncommitted transaction failed (SQLite code {rc}); aborting, as that transaction cannot be told");
            crate::logging::flush();
            std::process::abort();
        }
    }
}

/// Defines a method that calls the real file's method of the same name with the same arguments
/// (`$or` where the real file has none).
macro_rules! pass {
    ($name:ident, $m:ident, $or:expr, ($($a:ident: $t:ty),*) -> $r:ty) => {
        unsafe extern "C" fn $name(f: *mut ffi::sqlite3_file, $($a: $t),*) -> $r {
            // SAFETY: SQLite calls the methods of open files only; the real file of an open
            // wrapper is open, its methods set.
            let real = (*(f as *const ShimFile)).real;
            match (*(*real).pMethods).$m {
                Some(m) => m(real, $($a),*),
                None => $or,
            }
        }
    };
}

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite passes this VFS and an allocation of its `szOsFile` bytes; `pAppData` is
    // the real VFS (see `install`).
    let real_vfs = (*vfs).pAppData as *mut ffi::sqlite3_vfs;
    let Some(real_open) = (*real_vfs).xOpen else {
        return ffi::SQLITE_CANTOPEN;
    };
    if flags & (ffi::SQLITE_OPEN_WAL | ffi::SQLITE_OPEN_MAIN_DB) == 0 {
        // Journals and temporary files: the real file in place, with its own methods.
        return real_open(real_vfs, name, file, flags, out_flags);
    }
    let real = (file as *mut u8).add(real_offset()) as *mut ffi::sqlite3_file;
    ptr::write(
        file as *mut ShimFile,
        ShimFile {
            base: ffi::sqlite3_file {
                pMethods: ptr::null(),
            },
            real,
            wal: ptr::null_mut(),
        },
    );
    let rc = real_open(real_vfs, name, real, flags, out_flags);
    if rc != ffi::SQLITE_OK || (*real).pMethods.is_null() {
        // The wrapper has no methods, so SQLite will not close it: close the real file here
        // should it have been left open.
        if !(*real).pMethods.is_null() {
            if let Some(close) = (*(*real).pMethods).xClose {
                close(real);
            }
        }
        return if rc == ffi::SQLITE_OK {
            ffi::SQLITE_CANTOPEN
        } else {
            rc
        };
    }
    if (*(*real).pMethods).iVersion < 3 {
        // Not the VFS this wrapper was written for: the real file in place, unwrapped.
        if let Some(close) = (*(*real).pMethods).xClose {
            close(real);
        }
        return real_open(real_vfs, name, file, flags, out_flags);
    }
    let s = &mut *(file as *mut ShimFile);
    if flags & ffi::SQLITE_OPEN_WAL != 0 {
        let wal = Box::into_raw(Box::new(Wal {
            real,
            buf: Mutex::new(Gathered::default()),
            has_data: AtomicBool::new(false),
        }));
        lock(&WALS).push(wal as usize);
        s.wal = wal;
        s.base.pMethods = &WAL_METHODS;
    } else {
        s.base.pMethods = &DB_METHODS;
    }
    ffi::SQLITE_OK
}

// Methods that both kinds of file pass through.
pass!(any_lock, xLock, ffi::SQLITE_IOERR_LOCK, (l: c_int) -> c_int);
pass!(any_unlock, xUnlock, ffi::SQLITE_IOERR_UNLOCK, (l: c_int) -> c_int);
pass!(any_check_reserved, xCheckReservedLock, ffi::SQLITE_IOERR_LOCK, (out: *mut c_int) -> c_int);
pass!(any_sector_size, xSectorSize, 4096, () -> c_int);
pass!(any_device_characteristics, xDeviceCharacteristics, 0, () -> c_int);
pass!(any_shm_map, xShmMap, ffi::SQLITE_IOERR_SHMMAP,
    (pg: c_int, pgsz: c_int, extend: c_int, out: *mut *mut c_void) -> c_int);
pass!(any_shm_unmap, xShmUnmap, ffi::SQLITE_OK, (delete: c_int) -> c_int);
pass!(any_unfetch, xUnfetch, ffi::SQLITE_OK, (o: i64, p: *mut c_void) -> c_int);

unsafe extern "C" fn any_fetch(
    f: *mut ffi::sqlite3_file,
    o: i64,
    n: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: as in `pass!`; `out` is SQLite's out-pointer.
    let real = (*(f as *const ShimFile)).real;
    match (*(*real).pMethods).xFetch {
        Some(m) => m(real, o, n, out),
        None => {
            *out = ptr::null_mut();
            ffi::SQLITE_OK
        }
    }
}

// ---- A main database file: passed through, but its shared-memory lock and barrier calls
// ---- write out gathered WAL frames first.

pass!(db_close, xClose, ffi::SQLITE_OK, () -> c_int);
pass!(db_read, xRead, ffi::SQLITE_IOERR_READ, (b: *mut c_void, n: c_int, o: i64) -> c_int);
pass!(db_write, xWrite, ffi::SQLITE_IOERR_WRITE, (b: *const c_void, n: c_int, o: i64) -> c_int);
pass!(db_truncate, xTruncate, ffi::SQLITE_IOERR_TRUNCATE, (size: i64) -> c_int);
pass!(db_sync, xSync, ffi::SQLITE_IOERR_FSYNC, (flags: c_int) -> c_int);
pass!(db_file_size, xFileSize, ffi::SQLITE_IOERR_FSTAT, (out: *mut i64) -> c_int);
pass!(db_file_control, xFileControl, ffi::SQLITE_NOTFOUND, (op: c_int, arg: *mut c_void) -> c_int);
pass!(real_shm_lock, xShmLock, ffi::SQLITE_IOERR_SHMLOCK, (o: c_int, n: c_int, flags: c_int) -> c_int);
pass!(real_shm_barrier, xShmBarrier, (), () -> ());

unsafe extern "C" fn db_shm_lock(
    f: *mut ffi::sqlite3_file,
    o: c_int,
    n: c_int,
    fl: c_int,
) -> c_int {
    flush_all();
    real_shm_lock(f, o, n, fl)
}

unsafe extern "C" fn db_shm_barrier(f: *mut ffi::sqlite3_file) {
    flush_all();
    real_shm_barrier(f)
}

static DB_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(db_close),
    xRead: Some(db_read),
    xWrite: Some(db_write),
    xTruncate: Some(db_truncate),
    xSync: Some(db_sync),
    xFileSize: Some(db_file_size),
    xLock: Some(any_lock),
    xUnlock: Some(any_unlock),
    xCheckReservedLock: Some(any_check_reserved),
    xFileControl: Some(db_file_control),
    xSectorSize: Some(any_sector_size),
    xDeviceCharacteristics: Some(any_device_characteristics),
    xShmMap: Some(any_shm_map),
    xShmLock: Some(db_shm_lock),
    xShmBarrier: Some(db_shm_barrier),
    xShmUnmap: Some(any_shm_unmap),
    xFetch: Some(any_fetch),
    xUnfetch: Some(any_unfetch),
};

// ---- A WAL: appends gathered, every other method after writing them out.

/// Defines a method that writes out the WAL's gathered frames, then calls the real method (with
/// the buffer still locked, so that no other thread writes it out meanwhile).
macro_rules! after_flush {
    ($name:ident, $m:ident, $or:expr, ($($a:ident: $t:ty),*)) => {
        unsafe extern "C" fn $name(f: *mut ffi::sqlite3_file, $($a: $t),*) -> c_int {
            // SAFETY: an open WAL of this VFS: its `Wal` is alive, its real file open.
            let wal = &*(*(f as *const ShimFile)).wal;
            let mut g = lock(&wal.buf);
            match wal.flush(&mut g) {
                ffi::SQLITE_OK => match (*(*wal.real).pMethods).$m {
                    Some(m) => m(wal.real, $($a),*),
                    None => $or,
                },
                rc => rc,
            }
        }
    };
}

after_flush!(wal_read, xRead, ffi::SQLITE_IOERR_READ, (b: *mut c_void, n: c_int, o: i64));
after_flush!(wal_sync, xSync, ffi::SQLITE_IOERR_FSYNC, (flags: c_int));
after_flush!(wal_file_size, xFileSize, ffi::SQLITE_IOERR_FSTAT, (out: *mut i64));
after_flush!(wal_file_control, xFileControl, ffi::SQLITE_NOTFOUND, (op: c_int, arg: *mut c_void));
after_flush!(wal_truncate_real, xTruncate, ffi::SQLITE_IOERR_TRUNCATE, (size: i64));

unsafe extern "C" fn wal_truncate(f: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: an open WAL of this VFS.
    let rc = wal_truncate_real(f, size);
    let wal = &*(*(f as *const ShimFile)).wal;
    let mut g = lock(&wal.buf);
    g.end = g.end.min(size);
    rc
}

unsafe extern "C" fn wal_close(f: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes an open file once and does not use it after.
    let wal = (*(f as *const ShimFile)).wal;
    lock(&WALS).retain(|&w| w != wal as usize);
    let wal = Box::from_raw(wal);
    let flushed = wal.flush(&mut lock(&wal.buf));
    let closed = match (*(*wal.real).pMethods).xClose {
        Some(m) => m(wal.real),
        None => ffi::SQLITE_OK,
    };
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

unsafe extern "C" fn wal_write(
    f: *mut ffi::sqlite3_file,
    b: *const c_void,
    n: c_int,
    o: i64,
) -> c_int {
    // SAFETY: an open WAL of this VFS; SQLite passes `n` readable bytes at `b`.
    let wal = &*(*(f as *const ShimFile)).wal;
    let bytes = std::slice::from_raw_parts(b as *const u8, n.max(0) as usize);
    let mut g = lock(&wal.buf);
    if !g.data.is_empty() && o != g.at + g.data.len() as i64 {
        let rc = wal.flush(&mut g);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    if o == 0 && n == WAL_HEADER {
        // The WAL (re)starts: the frames that follow append from here.
        g.end = 0;
    }
    if o < g.end {
        // A rewrite: after what was gathered (written out above), straight to the file.
        #[cfg(test)]
        WAL_WRITES.fetch_add(1, Ordering::SeqCst);
        return match (*(*wal.real).pMethods).xWrite {
            Some(m) => m(wal.real, b, n, o),
            None => ffi::SQLITE_IOERR_WRITE,
        };
    }
    if g.data.is_empty() {
        g.at = o;
        PENDING.fetch_add(1, Ordering::AcqRel);
        wal.has_data.store(true, Ordering::Release);
    }
    g.data.extend_from_slice(bytes);
    g.end = o + i64::from(n);
    let ends_commit = if n == FRAME_HEADER {
        // Bytes 4-7 of a frame header: the database size after a commit, 0 in other frames.
        g.commit_next = bytes[4..8] != [0, 0, 0, 0];
        false
    } else {
        std::mem::take(&mut g.commit_next)
    };
    if ends_commit || g.data.len() >= BUFFER_MAX {
        return wal.flush(&mut g);
    }
    ffi::SQLITE_OK
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(wal_close),
    xRead: Some(wal_read),
    xWrite: Some(wal_write),
    xTruncate: Some(wal_truncate),
    xSync: Some(wal_sync),
    xFileSize: Some(wal_file_size),
    xLock: Some(any_lock),
    xUnlock: Some(any_unlock),
    xCheckReservedLock: Some(any_check_reserved),
    xFileControl: Some(wal_file_control),
    xSectorSize: Some(any_sector_size),
    xDeviceCharacteristics: Some(any_device_characteristics),
    xShmMap: Some(any_shm_map),
    xShmLock: Some(real_shm_lock),
    xShmBarrier: Some(real_shm_barrier),
    xShmUnmap: Some(any_shm_unmap),
    xFetch: Some(any_fetch),
    xUnfetch: Some(any_unfetch),
};

/// Real writes to WALs, counted for the tests.
#[cfg(test)]
static WAL_WRITES: AtomicUsize = AtomicUsize::new(0);

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    /// A raw connection: these tests watch SQLite's calls into the VFS, under Diesel's layer.
    struct Db(*mut ffi::sqlite3);

    // SAFETY: SQLite is built thread-safe; each `Db` is used by one thread at a time.
    unsafe impl Send for Db {}

    impl Db {
        fn open(path: &std::path::Path) -> Db {
            install();
            let p = CString::new(path.to_str().unwrap()).unwrap();
            let mut db = ptr::null_mut();
            // SAFETY: valid C string and out-pointer.
            let rc = unsafe {
                ffi::sqlite3_open_v2(
                    p.as_ptr(),
                    &mut db,
                    ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE,
                    ptr::null(),
                )
            };
            assert_eq!(rc, ffi::SQLITE_OK);
            let db = Db(db);
            db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; PRAGMA wal_autocheckpoint = 0;");
            db
        }

        fn exec(&self, sql: &str) {
            let s = CString::new(sql).unwrap();
            // SAFETY: an open connection and a valid C string.
            let rc = unsafe {
                ffi::sqlite3_exec(self.0, s.as_ptr(), None, ptr::null_mut(), ptr::null_mut())
            };
            assert_eq!(rc, ffi::SQLITE_OK, "{sql}");
        }

        /// Fails unless `PRAGMA integrity_check` finds the file sound.
        fn assert_intact(&self) {
            assert_eq!(
                self.int(
                    "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check <> 'ok'"
                ),
                0
            );
        }

        /// The first column of the first row of `sql`, as an integer.
        fn int(&self, sql: &str) -> i64 {
            let s = CString::new(sql).unwrap();
            let mut st = ptr::null_mut();
            // SAFETY: an open connection, a valid statement, finalized before returning.
            unsafe {
                assert_eq!(
                    ffi::sqlite3_prepare_v2(self.0, s.as_ptr(), -1, &mut st, ptr::null_mut()),
                    ffi::SQLITE_OK
                );
                assert_eq!(ffi::sqlite3_step(st), ffi::SQLITE_ROW, "{sql}");
                let v = ffi::sqlite3_column_int64(st, 0);
                ffi::sqlite3_finalize(st);
                v
            }
        }
    }

    impl Drop for Db {
        fn drop(&mut self) {
            // SAFETY: opened by `open`, closed once.
            unsafe { ffi::sqlite3_close(self.0) };
        }
    }

    /// A directory of its own, removed when dropped.
    struct Dir(std::path::PathBuf);

    impl Dir {
        fn path(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir() -> Dir {
        let d =
            std::env::temp_dir().join(format!("perfgate-vfs-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&d).unwrap();
        Dir(d)
    }

    /// The WAL's frames as (page number, commit size), read from the file itself.
    fn frames(wal: &std::path::Path) -> Vec<(u32, u32)> {
        let b = std::fs::read(wal).unwrap();
        let page = u32::from_be_bytes(b[8..12].try_into().unwrap()) as usize;
        b[32..]
            .chunks_exact(24 + page)
            .map(|f| {
                (
                    u32::from_be_bytes(f[0..4].try_into().unwrap()),
                    u32::from_be_bytes(f[4..8].try_into().unwrap()),
                )
            })
            .collect()
    }

    #[test]
    fn a_commit_is_on_the_file_in_one_write_when_it_returns() {
        let d = dir();
        let path = d.path().join("t.db");
        let db = Db::open(&path);
        // SAFETY: the default VFS and its name live as long as the process.
        let default =
            unsafe { std::ffi::CStr::from_ptr((*ffi::sqlite3_vfs_find(ptr::null())).zName) };
        assert_eq!(default, NAME);
        db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)");
        let before = frames(&path.with_extension("db-wal")).len();
        let writes = WAL_WRITES.load(Ordering::SeqCst);
        // About 60 pages in one transaction: 120 writes without the VFS.
        db.exec("BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) INSERT INTO t (v) SELECT randomblob(1000) FROM n; COMMIT;");
        // Read from the file, not through SQLite: the frames and the commit mark are there.
        let f = frames(&path.with_extension("db-wal"));
        assert!(f.len() >= before + 50, "{} frames", f.len());
        assert!(f[before..f.len() - 1].iter().all(|&(_, c)| c == 0));
        assert_ne!(f.last().unwrap().1, 0, "the last frame marks the commit");
        // Other tests of this process may write WALs meanwhile: at most a few writes each.
        let n = WAL_WRITES.load(Ordering::SeqCst) - writes;
        assert!(n < 20, "{n} writes for {} frames", f.len() - before);
        assert_eq!(db.int("SELECT count(*) FROM t"), 200);
        db.assert_intact();
    }

    #[test]
    fn frames_of_a_rolled_back_spill_never_land_on_a_later_commit() {
        let d = dir();
        let path = d.path().join("t.db");
        let a = Db::open(&path);
        a.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT, v BLOB)");
        let b = Db::open(&path);
        for round in 0..5 {
            // A tiny page cache spills A's transaction into the WAL before its end; then it
            // rolls back, and B commits at the same offsets of the WAL.
            a.exec("PRAGMA cache_size = 10");
            a.exec("BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) INSERT INTO t (who, v) SELECT 'a', randomblob(900) FROM n;");
            a.exec("ROLLBACK");
            // B's commit is larger than A's spill: it covers every offset A wrote.
            b.exec(&format!("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400) INSERT INTO t (who, v) SELECT 'b{round}', zeroblob(900) FROM n"));
            // A reads the WAL again (and flushes, were anything still gathered).
            assert_eq!(a.int("SELECT count(*) FROM t WHERE who = 'a'"), 0);
        }
        drop((a, b));
        // Reopened from the files alone: recovery reads the WAL as it is on the file.
        let c = Db::open(&path);
        assert_eq!(c.int("SELECT count(*) FROM t WHERE who LIKE 'b%'"), 2000);
        assert_eq!(
            c.int("SELECT sum(length(v)) FROM t WHERE who LIKE 'b%' AND v = zeroblob(900)"),
            2000 * 900
        );
        assert_eq!(c.int("SELECT count(*) FROM t WHERE who = 'a'"), 0);
        c.assert_intact();
    }

    #[test]
    fn readers_in_other_threads_see_whole_commits_only() {
        let d = dir();
        let path = d.path().join("t.db");
        let w = Db::open(&path);
        w.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER, pad BLOB)");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (path, stop) = (path.clone(), stop.clone());
                std::thread::spawn(move || {
                    let r = Db::open(&path);
                    let mut reads = 0;
                    let mut last = 0;
                    while !stop.load(Ordering::SeqCst) {
                        // Every commit inserts +k and -k: a torn read shows a non-zero sum.
                        assert_eq!(r.int("SELECT coalesce(sum(v), 0) FROM t"), 0);
                        let n = r.int("SELECT count(*) FROM t");
                        assert!(n >= last && n % 2 == 0, "{n} rows after {last}");
                        last = n;
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        let commit = |k: i64| {
            w.exec(&format!(
                "BEGIN; INSERT INTO t (v, pad) VALUES ({k}, randomblob(2000)); INSERT INTO t (v, pad) VALUES (-{k}, randomblob(2000)); COMMIT;"
            ))
        };
        for k in 1..=300 {
            commit(k);
            if k % 100 == 0 {
                w.exec("PRAGMA wal_checkpoint(PASSIVE)");
            }
        }
        stop.store(true, Ordering::SeqCst);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
        // The WAL starts over after a complete checkpoint (its header counts the restarts):
        // the frames that follow are gathered from the start of the file again.
        w.exec("PRAGMA wal_checkpoint(RESTART)");
        for k in 301..=400 {
            commit(k);
        }
        let wal = std::fs::read(path.with_extension("db-wal")).unwrap();
        assert!(u32::from_be_bytes(wal[12..16].try_into().unwrap()) > 0);
        assert_eq!(w.int("SELECT coalesce(sum(v), 0) FROM t"), 0);
        drop(w);
        let c = Db::open(&path);
        assert_eq!(c.int("SELECT count(*) FROM t"), 800);
        c.assert_intact();
    }
}
