//! A bare libpq connection for `LISTEN`, through `pq-sys` (the same bundled libpq, with TLS,
//! that Diesel uses). Diesel's `PgConnection::notifications_iter` only drains what has already
//! arrived and does not expose the socket, so a listener built on it would have to poll; with
//! the socket a listener thread sleeps in `poll(2)` until the server sends something.
//!
//! The only unsafe code of the crate besides the SQLite planner setting: each call is a plain
//! libpq call on a connection this type owns, and every pointer libpq hands out is copied into
//! Rust values and freed before the call returns.

use std::ffi::{c_char, CStr, CString};
use std::os::fd::RawFd;
use std::ptr::NonNull;

use pq_sys as ffi;

/// One libpq connection, closed on drop. Not shared between threads.
pub(crate) struct PqConn {
    raw: NonNull<ffi::PGconn>,
}

// SAFETY: a PGconn may be moved between threads as long as it is used by one at a time; this
// type is not `Sync` and every method takes `&mut self` or `&self` on its single owner.
unsafe impl Send for PqConn {}

/// A notification as received: its channel, its payload and the notifying backend's pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notification {
    pub channel: String,
    pub payload: String,
    pub be_pid: i32,
}

/// What can go wrong on the listening connection: its message, as libpq words it.
#[derive(Debug, Clone)]
pub(crate) struct PqError(pub String);

impl std::fmt::Display for PqError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.trim_end())
    }
}

fn cstring(s: &str) -> Result<CString, PqError> {
    CString::new(s).map_err(|_| PqError("a connection setting holds a NUL byte".into()))
}

impl PqConn {
    /// Connects with libpq's `(keyword, value)` parameters, the first `dbname` expanded when it
    /// is a URL or connection string (later parameters override what it sets).
    pub(crate) fn connect(params: &[(&str, &str)]) -> Result<PqConn, PqError> {
        let owned: Vec<(CString, CString)> = params
            .iter()
            .map(|(k, v)| Ok((cstring(k)?, cstring(v)?)))
            .collect::<Result<_, PqError>>()?;
        let mut keys: Vec<*const c_char> = owned.iter().map(|(k, _)| k.as_ptr()).collect();
        let mut values: Vec<*const c_char> = owned.iter().map(|(_, v)| v.as_ptr()).collect();
        keys.push(std::ptr::null());
        values.push(std::ptr::null());
        // SAFETY: both arrays are NULL-terminated and point into `owned`, alive for the call;
        // libpq copies what it keeps.
        let raw = unsafe { ffi::PQconnectdbParams(keys.as_ptr(), values.as_ptr(), 1) };
        let raw = NonNull::new(raw).ok_or_else(|| PqError("out of memory".into()))?;
        let conn = PqConn { raw };
        if !conn.is_ok() {
            return Err(PqError(conn.error_message()));
        }
        Ok(conn)
    }

    fn is_ok(&self) -> bool {
        // SAFETY: `raw` is a live connection owned by `self`.
        unsafe { ffi::PQstatus(self.raw.as_ptr()) == ffi::ConnStatusType::CONNECTION_OK }
    }

    fn error_message(&self) -> String {
        // SAFETY: libpq returns a NUL-terminated string owned by the connection, valid until the
        // next call on it; it is copied at once.
        unsafe {
            let p = ffi::PQerrorMessage(self.raw.as_ptr());
            if p.is_null() {
                return "connection lost".into();
            }
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }

    /// The server process serving this connection.
    pub(crate) fn backend_pid(&self) -> i32 {
        // SAFETY: `raw` is a live connection owned by `self`.
        unsafe { ffi::PQbackendPID(self.raw.as_ptr()) }
    }

    /// The connection's socket, to wait on with `poll(2)`.
    pub(crate) fn socket(&self) -> Option<RawFd> {
        // SAFETY: `raw` is a live connection owned by `self`.
        let fd = unsafe { ffi::PQsocket(self.raw.as_ptr()) };
        (fd >= 0).then_some(fd)
    }

    /// Runs `sql` (one statement, no parameters) and answers the rows as text (NULL as None).
    /// Notifications that arrive meanwhile are kept for [`Self::notifications`].
    pub(crate) fn exec(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, PqError> {
        let sql = cstring(sql)?;
        // SAFETY: `sql` is NUL-terminated and outlives the call; the result is read, then
        // cleared exactly once below.
        unsafe {
            let res = ffi::PQexec(self.raw.as_ptr(), sql.as_ptr());
            if res.is_null() {
                return Err(PqError(self.error_message()));
            }
            let status = ffi::PQresultStatus(res);
            let out = match status {
                ffi::ExecStatusType::PGRES_COMMAND_OK => Ok(Vec::new()),
                ffi::ExecStatusType::PGRES_TUPLES_OK => {
                    let (rows, cols) = (ffi::PQntuples(res), ffi::PQnfields(res));
                    let mut out = Vec::with_capacity(rows.max(0) as usize);
                    for r in 0..rows {
                        let mut row = Vec::with_capacity(cols.max(0) as usize);
                        for f in 0..cols {
                            row.push(if ffi::PQgetisnull(res, r, f) != 0 {
                                None
                            } else {
                                let v = ffi::PQgetvalue(res, r, f);
                                Some(CStr::from_ptr(v).to_string_lossy().into_owned())
                            });
                        }
                        out.push(row);
                    }
                    Ok(out)
                }
                _ => {
                    let m = ffi::PQresultErrorMessage(res);
                    let msg = if m.is_null() {
                        String::new()
                    } else {
                        CStr::from_ptr(m).to_string_lossy().into_owned()
                    };
                    Err(PqError(if msg.is_empty() {
                        self.error_message()
                    } else {
                        msg
                    }))
                }
            };
            ffi::PQclear(res);
            out
        }
    }

    /// Reads what the server has sent (without blocking). An error means the connection is
    /// gone.
    pub(crate) fn consume_input(&mut self) -> Result<(), PqError> {
        // SAFETY: `raw` is a live connection owned by `self`.
        let ok = unsafe { ffi::PQconsumeInput(self.raw.as_ptr()) } == 1;
        if ok && self.is_ok() {
            Ok(())
        } else {
            Err(PqError(self.error_message()))
        }
    }

    /// The notifications received so far, oldest first.
    pub(crate) fn notifications(&mut self) -> Vec<Notification> {
        let mut out = Vec::new();
        loop {
            // SAFETY: PQnotifies hands over a struct (with its strings in the same block) that
            // the caller frees with PQfreemem; it is copied, then freed exactly once.
            unsafe {
                let n = ffi::PQnotifies(self.raw.as_ptr());
                if n.is_null() {
                    return out;
                }
                let text = |p: *mut c_char| {
                    if p.is_null() {
                        String::new()
                    } else {
                        CStr::from_ptr(p).to_string_lossy().into_owned()
                    }
                };
                out.push(Notification {
                    channel: text((*n).relname),
                    payload: text((*n).extra),
                    be_pid: (*n).be_pid,
                });
                ffi::PQfreemem(n.cast());
            }
        }
    }
}

impl Drop for PqConn {
    fn drop(&mut self) {
        // SAFETY: `raw` is owned by `self` and not used after this.
        unsafe { ffi::PQfinish(self.raw.as_ptr()) }
    }
}

/// Waits until one of `fds` is readable (or hung up), or `timeout` passes (None: no limit);
/// answers which are. Interrupted waits resume (with their whole timeout).
pub(crate) fn wait_readable(
    fds: &[RawFd],
    timeout: Option<std::time::Duration>,
) -> Result<Vec<bool>, std::io::Error> {
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as libc::c_int);
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `polled` is a valid array of `polled.len()` pollfd structs for the call.
        let n = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, ms) };
        if n >= 0 {
            return Ok(polled.iter().map(|p| p.revents != 0).collect());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
