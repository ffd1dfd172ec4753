//! env_logger set up to write JSON lines (default) or a readable format. Every line written while
//! a request is being served carries that request's id.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use log::kv::{Key, Value, VisitSource};

use crate::config::LogFormat;
use crate::request_id::with_request_id;

/// Appends a record's key/value pairs to a JSON line as `,"key":value`, skipping the keys the
/// line already has.
struct JsonKv<'a> {
    line: &'a mut Vec<u8>,
    has_request_id: bool,
}

impl<'kvs> VisitSource<'kvs> for JsonKv<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let k = key.as_str();
        if matches!(k, "ts" | "level" | "target" | "msg")
            || (k == "request_id" && self.has_request_id)
        {
            return Ok(());
        }
        let line = &mut *self.line;
        line.push(b',');
        json_str(line, k);
        line.push(b':');
        if let Some(n) = value.to_u64() {
            let _ = write!(line, "{n}");
        } else if let Some(n) = value.to_i64() {
            let _ = write!(line, "{n}");
        } else if let Some(f) = value.to_f64() {
            // Non-finite numbers are not JSON: `null`, as serde_json writes them.
            let _ = serde_json::to_writer(&mut *line, &f);
        } else if let Some(b) = value.to_bool() {
            line.extend_from_slice(if b { b"true" } else { b"false" });
        } else if let Some(s) = value.to_borrowed_str() {
            json_str(line, s);
        } else {
            json_str(line, &value.to_string());
        }
        Ok(())
    }
}

/// `2026-11-30T11:15:25.608888Z`: the date and time are formatted once per second and thread.
fn write_timestamp(out: &mut Vec<u8>) {
    thread_local! {
        static SECOND: std::cell::RefCell<(i64, String)> = const {
            std::cell::RefCell::new((i64::MIN, String::new()))
        };
    }
    let now = chrono::Utc::now();
    let secs = now.timestamp();
    SECOND.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            c.1 = now.format("%Y-%m-%dT%H:%M:%S").to_string();
            c.0 = secs;
        }
        out.extend_from_slice(c.1.as_bytes());
    });
    let micros = now.timestamp_subsec_micros().min(999_999);
    let mut digits = *b".000000Z";
    let mut m = micros;
    for d in digits[1..7].iter_mut().rev() {
        *d = b'0' + (m % 10) as u8;
        m /= 10;
    }
    out.extend_from_slice(&digits);
}

struct TextKv<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for TextKv<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        use std::fmt::Write as _;
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

/// Log lines waiting for the writer thread, and whether it has been started.
struct Sink {
    pending: Mutex<Vec<u8>>,
    wake: Condvar,
}

static SINK: Sink = Sink {
    pending: Mutex::new(Vec::new()),
    wake: Condvar::new(),
};

/// How long a line may wait before it is written.
const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// A backlog this large is written at once, by the thread that logged.
const MAX_PENDING: usize = 256 * 1024;

/// The logger's output: lines are appended to a buffer that a background thread writes to
/// stderr every [`FLUSH_EVERY`], so a request's access line costs a memory copy rather than a
/// `write` system call. Warnings and errors are written through at once. [`flush`] empties the
/// buffer (shutdown calls it); on `kill -9` the last few milliseconds of lines can be lost, never
/// data.
struct BufferedStderr;

/// Set when the writer thread could not start: every line is then written at once.
static WRITE_THROUGH: AtomicBool = AtomicBool::new(false);

/// Held while buffered lines are taken and written (taken before `SINK.pending`), so that lines
/// reach stderr in order and [`flush`] returns only once everything logged before it is written,
/// including a batch the writer thread took just before.
static WRITING: Mutex<()> = Mutex::new(());

/// Appends to the output buffer; `urgent` (or a full buffer) writes it out now.
fn append(buf: &[u8], urgent: bool) {
    let mut p = SINK.pending.lock().unwrap_or_else(|e| e.into_inner());
    p.extend_from_slice(buf);
    if p.len() >= MAX_PENDING || urgent || WRITE_THROUGH.load(Ordering::Relaxed) {
        drop(p);
        flush();
    }
}

impl Write for BufferedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        append(buf, URGENT.with(|u| u.get()));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Deferred to the writer thread (see `flush()` for a real one).
        Ok(())
    }
}

thread_local! {
    /// Set while a warning or error is being written: it bypasses the buffer.
    static URGENT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn write_stderr(bytes: &[u8]) {
    if !bytes.is_empty() {
        let mut e = std::io::stderr().lock();
        let _ = e.write_all(bytes);
        let _ = e.flush();
        drop(e);
        WRITE_BEHIND.wrote(bytes.len());
    }
}

/// Bytes of log written to a file after which the kernel is asked to start writing them to disk.
/// The access log can take tens of MB a second (one line per request); left to the kernel, the
/// dirty pages pile up until its flusher writes them all at once, 30 s later, and a burst of
/// hundreds of MB on the database's disk makes every fsync of the WAL wait behind it (upload p99
/// 40-170 ms after a read-heavy minute, 9 ms with the log sent to /dev/null). Like PostgreSQL's
/// `*_flush_after`, writing back every few MB keeps the disk's queue short.
const WRITE_BEHIND_BYTES: usize = 2 * 1024 * 1024;

/// Counts what was written since the last writeback request. Only the log-writer thread asks
/// for writeback ([`WriteBehind::due`]), outside the `WRITING` lock: `sync_file_range` can block
/// while the disk's queue is full, and a request thread that flushes a backlog (or a warning)
/// must not wait for it.
struct WriteBehind {
    since: std::sync::atomic::AtomicUsize,
    every: usize,
}

static WRITE_BEHIND: WriteBehind = WriteBehind {
    since: std::sync::atomic::AtomicUsize::new(0),
    every: WRITE_BEHIND_BYTES,
};

impl WriteBehind {
    /// Records `n` bytes written.
    fn wrote(&self, n: usize) {
        self.since.fetch_add(n, Ordering::Relaxed);
    }

    /// Whether `every` bytes have been written since the last time this said so.
    fn due(&self) -> bool {
        if self.since.load(Ordering::Relaxed) < self.every {
            return false;
        }
        self.since.store(0, Ordering::Relaxed);
        true
    }
}

/// Asks the kernel to start writing `fd`'s dirty pages to disk, without waiting for them.
/// Returns whether it was asked: on a pipe the call fails (ESPIPE), as a pipe has nothing to
/// write back; the caller checks once that `fd` is a regular file.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn start_writeback(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range reads nothing but its integer arguments, and `fd` is open for
    // the length of the call (borrowed).
    unsafe { libc::sync_file_range(fd.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_fd: std::os::fd::BorrowedFd<'_>) -> bool {
    false
}

/// Starts the writeback of the log when it goes to a regular file (looked up once: stderr does
/// not change).
fn stderr_writeback() {
    use std::os::fd::AsFd;
    static IS_FILE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let stderr = std::io::stderr();
    if *IS_FILE.get_or_init(|| is_regular_file(stderr.as_fd())) {
        start_writeback(stderr.as_fd());
    }
}

fn is_regular_file(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    fd.try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata())
        .is_ok_and(|m| m.file_type().is_file())
}

/// Writes every buffered line now.
pub fn flush() {
    let _writing = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    let out = {
        let mut p = SINK.pending.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *p)
    };
    write_stderr(&out);
}

fn start_writer() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let r = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(|| {
                // Two buffers swapped under the lock, each keeping its capacity (up to
                // `KEEP`): the threads that log append without regrowing the buffer from
                // empty every interval.
                const KEEP: usize = 64 * 1024;
                let mut out = Vec::new();
                loop {
                    {
                        let p = SINK.pending.lock().unwrap_or_else(|e| e.into_inner());
                        drop(SINK.wake.wait_timeout(p, FLUSH_EVERY));
                    }
                    let writing = WRITING.lock().unwrap_or_else(|e| e.into_inner());
                    {
                        let mut p = SINK.pending.lock().unwrap_or_else(|e| e.into_inner());
                        std::mem::swap(&mut *p, &mut out);
                    }
                    write_stderr(&out);
                    drop(writing);
                    if WRITE_BEHIND.due() {
                        stderr_writeback();
                    }
                    out.clear();
                    if out.capacity() > KEEP {
                        out = Vec::new();
                    }
                }
            });
        if r.is_err() {
            // No thread: every line is written through.
            WRITE_THROUGH.store(true, Ordering::Relaxed);
        }
    });
}

/// A JSON string (quoted and escaped) appended to `out`.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    {
        // Nothing to escape (route templates, request ids, methods): copied as is.
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// How access lines are written: not at all (the filter drops `access` at info), straight into
/// the output buffer as JSON, or through `log` (the readable format).
static ACCESS: AtomicU8 = AtomicU8::new(ACCESS_VIA_LOG);
const ACCESS_OFF: u8 = 0;
const ACCESS_JSON: u8 = 1;
const ACCESS_VIA_LOG: u8 = 2;

/// One request's access line.
pub(crate) struct AccessLine<'a> {
    pub method: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub elapsed: Duration,
    pub request_id: &'a str,
    pub server_request_id: &'a str,
}

/// Writes a request's access line (`target` `access`, level info). In JSON it is the line the
/// logger would write (the same fields), built in one buffer and appended to the output without
/// going through `log`: on a cached GET latest the logger's formatting was a sixth of the
/// request's cost.
pub(crate) fn access(a: &AccessLine<'_>) {
    match ACCESS.load(Ordering::Relaxed) {
        ACCESS_OFF => {}
        ACCESS_JSON => {
            thread_local! {
                /// The line being built, reused (one allocation per thread, not per request).
                static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
            }
            // Neither building nor appending a line logs, so the buffer is never borrowed twice.
            LINE.with_borrow_mut(|line| {
                line.clear();
                access_json(line, a);
                append(line, false);
            });
        }
        _ => {
            let ms = a.elapsed.as_secs_f64() * 1000.0;
            log::info!(
                target: "access",
                method = a.method,
                route = a.route,
                status = a.status,
                duration_ms = (ms * 1000.0).round() / 1000.0,
                request_id = a.request_id,
                server_request_id = a.server_request_id;
                "{} {} {} {ms:.3}ms", a.method, a.route, a.status
            );
        }
    }
}

/// `n` in decimal.
fn push_int(line: &mut Vec<u8>, n: impl itoa::Integer) {
    line.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `ms` milliseconds with three decimals (`12.345`).
fn push_millis(line: &mut Vec<u8>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    push_int(line, micros / 1000);
    let frac = micros % 1000;
    line.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// The JSON access line of `a`, appended to `line` (written by hand: `write!` with its number
/// formatting was a fifth of the cost of a cached GET latest's access line).
fn access_json(line: &mut Vec<u8>, a: &AccessLine<'_>) {
    line.extend_from_slice(b"{\"ts\":\"");
    write_timestamp(line);
    line.extend_from_slice(b"\",\"level\":\"INFO\",\"target\":\"access\",\"msg\":\"");
    let msg_start = line.len();
    line.extend_from_slice(a.method.as_bytes());
    line.push(b' ');
    line.extend_from_slice(a.route.as_bytes());
    line.push(b' ');
    push_int(line, a.status);
    line.push(b' ');
    push_millis(line, a.elapsed);
    line.extend_from_slice(b"ms");
    if !line[msg_start..]
        .iter()
        .all(|b| *b >= 0x20 && *b != b'"' && *b != b'\\' && *b < 0x7f)
    {
        let msg = String::from_utf8_lossy(&line[msg_start..]).into_owned();
        line.truncate(msg_start - 1);
        json_str(line, &msg);
    } else {
        line.push(b'"');
    }
    line.extend_from_slice(b",\"method\":");
    json_str(line, a.method);
    line.extend_from_slice(b",\"route\":");
    json_str(line, a.route);
    line.extend_from_slice(b",\"status\":");
    push_int(line, a.status);
    line.extend_from_slice(b",\"duration_ms\":");
    push_millis(line, a.elapsed);
    line.extend_from_slice(b",\"request_id\":");
    json_str(line, a.request_id);
    line.extend_from_slice(b",\"server_request_id\":");
    json_str(line, a.server_request_id);
    line.extend_from_slice(b"}\n");
}

/// actix-http logs at ERROR a connection it closed over the client's mistake (a request head it
/// could not parse, one over its size limit, a client that went away): `stream error: …`, with
/// the empty 400/431 it answered. Nothing is wrong with the server, so these are logged at INFO,
/// as the access lines of the 4xx the server answers itself are.
struct ClientMistakesAreInfo(env_logger::Logger);

impl ClientMistakesAreInfo {
    fn is_client_mistake(record: &log::Record<'_>) -> bool {
        record.level() == log::Level::Error
            && record.target().starts_with("actix_http::h1")
            && record
                .args()
                .as_str()
                .map_or_else(|| record.args().to_string(), str::to_owned)
                .starts_with("stream error:")
    }
}

impl log::Log for ClientMistakesAreInfo {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if Self::is_client_mistake(record) {
            self.0.log(
                &log::Record::builder()
                    .args(*record.args())
                    .level(log::Level::Info)
                    .target(record.target())
                    .module_path(record.module_path())
                    .file(record.file())
                    .line(record.line())
                    .key_values(record.key_values())
                    .build(),
            );
        } else {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// Installs the global logger. `level` is an env_logger filter (`info`, `debug`,
/// `perfgate_server=debug,actix_web=warn`, …). Calling it twice is harmless.
pub fn init(level: &str, format: LogFormat) {
    let mut b = env_logger::Builder::new();
    b.parse_filters(level);
    start_writer();
    b.target(env_logger::Target::Pipe(Box::new(BufferedStderr)));
    match format {
        LogFormat::Json => {
            b.format(|buf, record| {
                URGENT.with(|u| u.set(record.level() <= log::Level::Warn));
                let mut line = Vec::with_capacity(256);
                line.extend_from_slice(b"{\"ts\":\"");
                write_timestamp(&mut line);
                line.extend_from_slice(b"\",\"level\":\"");
                line.extend_from_slice(record.level().as_str().as_bytes());
                line.extend_from_slice(b"\",\"target\":");
                json_str(&mut line, record.target());
                let has_id = with_request_id(|id| {
                    if let Some(id) = id {
                        line.extend_from_slice(b",\"request_id\":");
                        json_str(&mut line, id);
                    }
                    id.is_some()
                });
                line.extend_from_slice(b",\"msg\":");
                match record.args().as_str() {
                    Some(m) => json_str(&mut line, m),
                    None => json_str(&mut line, &record.args().to_string()),
                }
                let _ = record.key_values().visit(&mut JsonKv {
                    line: &mut line,
                    has_request_id: has_id,
                });
                line.extend_from_slice(b"}\n");
                buf.write_all(&line)
            });
        }
        LogFormat::Pretty => {
            b.format(|buf, record| {
                URGENT.with(|u| u.set(record.level() <= log::Level::Warn));
                let mut kv = String::new();
                let _ = record.key_values().visit(&mut TextKv(&mut kv));
                let rid = with_request_id(|id| id.map(|i| format!(" [{i}]")).unwrap_or_default());
                writeln!(
                    buf,
                    "{} {:5} {}{}: {}{}",
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    record.level(),
                    record.target(),
                    rid,
                    record.args(),
                    kv
                )
            });
        }
    }
    let logger = b.build();
    let access_meta = log::Metadata::builder()
        .target("access")
        .level(log::Level::Info)
        .build();
    let access = match format {
        _ if !log::Log::enabled(&logger, &access_meta) => ACCESS_OFF,
        LogFormat::Json => ACCESS_JSON,
        LogFormat::Pretty => ACCESS_VIA_LOG,
    };
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(ClientMistakesAreInfo(logger))).is_ok() {
        log::set_max_level(max);
        ACCESS.store(access, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use chrono::SubsecRound;

    #[test]
    fn access_lines_are_json_with_their_numbers() {
        for (micros, shown) in [
            (0, "0.000"),
            (7, "0.007"),
            (12_345, "12.345"),
            (1_234_000, "1234.000"),
            (3_600_000_123, "3600000.123"),
        ] {
            for route in ["/api/v1/projects/{project}/baselines", "/odd\"route\u{1}"] {
                let mut line = Vec::new();
                super::access_json(
                    &mut line,
                    &super::AccessLine {
                        method: "GET",
                        route,
                        status: 404,
                        elapsed: std::time::Duration::from_micros(micros),
                        request_id: "ci-7",
                        server_request_id: "abc",
                    },
                );
                assert_eq!(line.last(), Some(&b'\n'));
                let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
                assert_eq!(v["msg"], format!("GET {route} 404 {shown}ms"));
                assert_eq!(v["route"], route);
                assert_eq!(v["status"], 404);
                let text = String::from_utf8(line.clone()).unwrap();
                assert!(
                    text.contains(&format!(",\"duration_ms\":{shown},")),
                    "{text}"
                );
                assert_eq!(
                    (&v["level"], &v["target"], &v["method"]),
                    (&"INFO".into(), &"access".into(), &"GET".into())
                );
                assert_eq!(
                    (&v["request_id"], &v["server_request_id"]),
                    (&"ci-7".into(), &"abc".into())
                );
            }
        }
    }

    #[test]
    fn writeback_is_asked_every_few_megabytes() {
        let w = super::WriteBehind {
            since: std::sync::atomic::AtomicUsize::new(0),
            every: 1000,
        };
        w.wrote(600);
        assert!(!w.due());
        w.wrote(600);
        assert!(w.due(), "1,200 bytes since the last request");
        assert!(!w.due(), "the count starts over");
        w.wrote(999);
        assert!(!w.due());
        w.wrote(1);
        assert!(w.due());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn writeback_is_asked_of_regular_files_only() {
        use std::io::Write;
        use std::os::fd::AsFd;
        let path = std::env::temp_dir().join(format!(
            "perfgate-writeback-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&vec![b'x'; 1 << 20]).unwrap();
        assert!(super::start_writeback(f.as_fd()));
        drop(f);
        std::fs::remove_file(&path).unwrap();
        let (_read, write) = std::io::pipe().unwrap();
        assert!(!super::start_writeback(write.as_fd()));
    }

    #[test]
    fn timestamps_are_rfc3339_with_microseconds() {
        for _ in 0..3 {
            let mut out = Vec::new();
            let before = chrono::Utc::now();
            super::write_timestamp(&mut out);
            let after = chrono::Utc::now();
            let text = String::from_utf8(out).unwrap();
            assert_eq!(text.len(), 27, "{text}");
            assert!(text.ends_with('Z') && text.as_bytes()[19] == b'.', "{text}");
            let t = chrono::DateTime::parse_from_rfc3339(&text).unwrap();
            let t = t.with_timezone(&chrono::Utc);
            assert!(t >= before.trunc_subsecs(6) && t <= after, "{text}");
            std::thread::sleep(std::time::Duration::from_millis(400));
        }
    }
}
