//! env_logger set up to write JSON lines (default) or a readable format. Every line written while
//! a request is being served carries that request's id.

use std::io::Write;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use log::kv::{Key, Value, VisitSource};

use crate::config::LogFormat;
use crate::request_id::with_request_id;

struct JsonKv<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> VisitSource<'kvs> for JsonKv<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let v = if let Some(n) = value.to_u64() {
            serde_json::Value::from(n)
        } else if let Some(n) = value.to_i64() {
            serde_json::Value::from(n)
        } else if let Some(f) = value.to_f64() {
            serde_json::Value::from(f)
        } else if let Some(b) = value.to_bool() {
            serde_json::Value::from(b)
        } else {
            serde_json::Value::from(value.to_string())
        };
        self.0.insert(key.as_str().to_owned(), v);
        Ok(())
    }
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

impl Write for BufferedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut p = SINK.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.extend_from_slice(buf);
        if p.len() >= MAX_PENDING || URGENT.with(|u| u.get()) {
            let out = std::mem::take(&mut *p);
            drop(p);
            write_stderr(&out);
        }
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
    }
}

/// Writes every buffered line now.
pub fn flush() {
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
            .spawn(|| loop {
                let out = {
                    let p = SINK.pending.lock().unwrap_or_else(|e| e.into_inner());
                    let (mut p, _) = SINK
                        .wake
                        .wait_timeout(p, FLUSH_EVERY)
                        .unwrap_or_else(|e| e.into_inner());
                    std::mem::take(&mut *p)
                };
                write_stderr(&out);
            });
        if r.is_err() {
            // No thread: every line is written through.
            URGENT.with(|u| u.set(true));
        }
    });
}

/// A JSON string (quoted and escaped) appended to `out`.
fn json_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
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
                let _ = write!(
                    line,
                    "{}",
                    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ")
                );
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
                let mut kv = serde_json::Map::new();
                let _ = record.key_values().visit(&mut JsonKv(&mut kv));
                for (k, v) in &kv {
                    if matches!(k.as_str(), "ts" | "level" | "target" | "msg") {
                        continue;
                    }
                    if k == "request_id" && has_id {
                        continue;
                    }
                    line.push(b',');
                    json_str(&mut line, k);
                    line.push(b':');
                    let _ = serde_json::to_writer(&mut line, v);
                }
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
    let _ = b.try_init();
}
