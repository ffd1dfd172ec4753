//! Minimal blocking Chrome DevTools Protocol driver for end-to-end browser tests.
//!
//! Launches headless Chromium with `--remote-debugging-pipe`: CDP messages are
//! NUL-terminated JSON; the child reads commands on its fd 3 and writes replies and
//! events on its fd 4. A reader thread routes replies by `id` to the waiting caller
//! and appends events (with their `sessionId`) to a shared log. Every wait is bounded
//! by a timeout; the child is SIGKILLed and its temporary profile removed on drop.
//! Nothing in here panics: failures are `Err(String)` (with Chromium's stderr tail
//! where that helps).
// Test support: `pub` for the test files; `unsafe` for the process group of the browser (pre_exec, kill).
#![allow(dead_code, unreachable_pub, unsafe_code)]

use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Bound on a single CDP command (and on `navigate`'s wait for the load event).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

extern "C" {
    fn dup2(old: i32, new: i32) -> i32;
    fn fcntl(fd: i32, cmd: i32, ...) -> i32;
    fn close(fd: i32) -> i32;
    fn kill(pid: i32, sig: i32) -> i32;
}
const F_DUPFD: i32 = 0;
const SIGKILL: i32 = 9;

const FLAGS: &str = "--headless --no-sandbox --disable-gpu --disable-background-networking \
    --remote-debugging-pipe --no-first-run --disable-extensions --window-size=1280,900";

#[derive(Default)]
struct Log {
    events: Vec<Value>,
    closed: bool,
}

/// State shared with the reader thread.
#[derive(Default)]
struct Shared {
    pending: Mutex<HashMap<u64, mpsc::Sender<Value>>>,
    log: Mutex<Log>,
    changed: Condvar,
}

/// Poison-tolerant lock: a panicking test thread must not wedge everybody else.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Conn {
    writer: Mutex<std::io::PipeWriter>,
    next_id: AtomicU64,
    shared: Arc<Shared>,
    stderr_path: PathBuf,
}

/// A CDP message without its `id`.
fn msg(session: Option<&str>, method: &str, params: Value) -> Value {
    let mut m = json!({ "method": method, "params": params });
    if let Some(s) = session {
        m["sessionId"] = json!(s);
    }
    m
}

impl Conn {
    fn stderr_tail(&self) -> String {
        let bytes = std::fs::read(&self.stderr_path).unwrap_or_default();
        let tail = String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(2000)..]);
        format!("\n--- chromium stderr (tail) ---\n{tail}")
    }

    fn closed(&self, method: &Value) -> String {
        let tail = self.stderr_tail();
        format!("CDP {method}: browser connection closed{tail}")
    }

    fn send(&self, id: u64, mut msg: Value) -> Result<(), String> {
        msg["id"] = json!(id);
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        let mut w = lock(&self.writer);
        let res = w.write_all(&bytes).and_then(|_| w.flush());
        res.map_err(|e| format!("CDP {}: write failed: {e}", msg["method"]))
    }

    fn call(&self, msg: Value, timeout: Duration) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let method = msg["method"].clone();
        let (tx, rx) = mpsc::channel();
        {
            // Check `closed` under the log lock so a dying reader cannot miss our sender.
            let log = lock(&self.shared.log);
            if log.closed {
                return Err(self.closed(&method));
            }
            lock(&self.shared.pending).insert(id, tx);
        }
        if let Err(e) = self.send(id, msg) {
            lock(&self.shared.pending).remove(&id);
            return Err(e);
        }
        let reply = match rx.recv_timeout(timeout) {
            Ok(v) => v,
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(self.closed(&method)),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                lock(&self.shared.pending).remove(&id);
                return Err(format!("CDP {method}: no reply within {timeout:?}"));
            }
        };
        match reply.get("error") {
            Some(err) => Err(format!("CDP {method} failed: {err}")),
            None => Ok(reply.get("result").cloned().unwrap_or(Value::Null)),
        }
    }
}

fn reader_loop(pipe: std::io::PipeReader, shared: Arc<Shared>) {
    let mut reader = BufReader::with_capacity(1 << 16, pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(0, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if buf.last() == Some(&0) {
            buf.pop();
        }
        let Ok(msg) = serde_json::from_slice::<Value>(&buf) else {
            continue;
        };
        if let Some(id) = msg.get("id").and_then(Value::as_u64) {
            // Replies nobody waits for (timed out, fire-and-forget) are dropped.
            if let Some(tx) = lock(&shared.pending).remove(&id) {
                let _ = tx.send(msg);
            }
        } else {
            lock(&shared.log).events.push(msg);
            shared.changed.notify_all();
        }
    }
    lock(&shared.log).closed = true;
    lock(&shared.pending).clear(); // wakes every waiting caller with Disconnected
    shared.changed.notify_all();
}

/// The chromium `launch` would use: env `PERFGATE_CHROMIUM`, else the first of
/// `chromium`, `chromium-browser`, `google-chrome` on PATH.
pub fn find_chromium() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("PERFGATE_CHROMIUM").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        let err = format!("PERFGATE_CHROMIUM={}: no such file", p.display());
        return if p.is_file() { Ok(p) } else { Err(err) };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let exe = dir.join(name);
            let meta = exe.metadata();
            if meta.is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0) {
                return Ok(exe);
            }
        }
    }
    Err("no chromium found: set PERFGATE_CHROMIUM or put chromium on PATH".into())
}

fn fresh_temp_dir() -> Result<PathBuf, String> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::UNIX_EPOCH
        .elapsed()
        .unwrap_or_default()
        .subsec_nanos();
    let dir = std::env::temp_dir().join(format!("perfgate-cdp-{}-{n}-{t}", std::process::id()));
    match std::fs::create_dir_all(dir.join("profile")) {
        Ok(()) => Ok(dir),
        Err(e) => Err(format!("creating {}: {e}", dir.display())),
    }
}

fn str_field(v: &Value, key: &str) -> Result<String, String> {
    let s = v[key].as_str().map(str::to_string);
    s.ok_or(format!("CDP reply lacks {key}: {v}"))
}

/// A headless Chromium child plus its CDP connection.
pub struct Browser {
    conn: Arc<Conn>,
    child: Child,
    dir: PathBuf,
}

impl Browser {
    /// Finds chromium (see [`find_chromium`]), launches it headless with a fresh
    /// profile and checks that it answers on the pipe.
    pub fn launch() -> Result<Browser, String> {
        let exe = find_chromium()?;
        let dir = fresh_temp_dir()?;
        let result = Self::spawn(&exe, &dir);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        result
    }

    fn spawn(exe: &Path, dir: &Path) -> Result<Browser, String> {
        let stderr_path = dir.join("chromium-stderr.log");
        let stderr = std::fs::File::create(&stderr_path).map_err(|e| format!("stderr log: {e}"))?;
        // std pipes are O_CLOEXEC, so the parent's ends never leak into the child.
        let (child_in, parent_out) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
        let (parent_in, child_out) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
        let (cin, cout) = (child_in.as_raw_fd(), child_out.as_raw_fd());
        let mut cmd = Command::new(exe);
        cmd.args(FLAGS.split_whitespace())
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0); // so that drop can kill helper processes too
                               // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Move both ends to fds >= 10 first: dup2(3, 3) would be a no-op that keeps
                // FD_CLOEXEC, and dup2(x, 3) could clobber the other end if it were fd 3.
                let (hi_in, hi_out) = (fcntl(cin, F_DUPFD, 10), fcntl(cout, F_DUPFD, 10));
                if hi_in < 0 || hi_out < 0 || dup2(hi_in, 3) < 0 || dup2(hi_out, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                close(hi_in);
                close(hi_out);
                Ok(())
            });
        }
        let child = cmd.spawn();
        let child = child.map_err(|e| format!("spawning {}: {e}", exe.display()))?;
        drop((child_in, child_out)); // so that EOF on our end means chromium is gone
        let shared = Arc::new(Shared::default());
        let reader_shared = Arc::clone(&shared);
        let (writer, next_id) = (Mutex::new(parent_out), AtomicU64::new(1));
        let conn = Arc::new(Conn {
            writer,
            next_id,
            shared,
            stderr_path,
        });
        let dir = dir.to_path_buf();
        let mut browser = Browser { conn, child, dir };
        std::thread::Builder::new()
            .name("cdp-reader".into())
            .spawn(move || reader_loop(parent_in, reader_shared))
            .map_err(|e| format!("spawning reader thread: {e}"))?;
        if let Err(e) = browser.call("Browser.getVersion", json!({})) {
            let status = browser.child.try_wait().ok().flatten();
            let status = status
                .map(|s| format!(" (exited: {s})"))
                .unwrap_or_default();
            let tail = if e.contains("--- chromium stderr") {
                String::new()
            } else {
                browser.conn.stderr_tail()
            };
            return Err(format!(
                "chromium did not answer on the pipe{status}: {e}{tail}"
            ));
        }
        Ok(browser)
    }

    fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        self.conn.call(msg(None, method, params), CALL_TIMEOUT)
    }

    /// Process id of the chromium child.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Temporary directory (profile + `chromium-stderr.log`), removed on drop.
    pub fn temp_dir(&self) -> &Path {
        &self.dir
    }

    /// Opens a page (Target.createTarget + Target.attachToTarget flatten=true) and
    /// enables the Page, Runtime and Network domains on it.
    pub fn new_page(&self) -> Result<Page, String> {
        let target = self.call("Target.createTarget", json!({ "url": "about:blank" }))?;
        let target_id = str_field(&target, "targetId")?;
        let attach = json!({ "targetId": target_id, "flatten": true });
        let session = str_field(&self.call("Target.attachToTarget", attach)?, "sessionId")?;
        let conn = Arc::clone(&self.conn);
        let page = Page {
            conn,
            session,
            target_id,
        };
        for enable in ["Page.enable", "Runtime.enable", "Network.enable"] {
            page.call(enable, json!({}))?;
        }
        Ok(page)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The child leads its own process group (process_group(0)): kill helpers too.
        // Guard against pid <= 1, where kill(-pid) would hit our own group or everything.
        if let Ok(pid @ 2..) = i32::try_from(self.child.id()) {
            // SAFETY: plain syscall with plain integer arguments.
            unsafe { kill(-pid, SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for _ in 0..10 {
            if std::fs::remove_dir_all(&self.dir).is_ok() || !self.dir.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One tab: a CDP session id plus a shared handle to the browser connection.
/// Usable only while its `Browser` lives; afterwards every call is an `Err`.
pub struct Page {
    conn: Arc<Conn>,
    session: String,
    target_id: String,
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

/// A JSON string is a valid JS string literal.
fn js_str(s: &str) -> String {
    Value::from(s).to_string()
}

/// Text of a CDP `ExceptionDetails`: the error's description (message + stack) if any.
fn exception_text(d: &Value) -> String {
    let desc = d["exception"]["description"].as_str();
    desc.or(d["text"].as_str())
        .unwrap_or("exception")
        .to_string()
}

/// Text of a `console.*` argument (a `Runtime.RemoteObject`).
fn arg_text(a: &Value) -> String {
    match (&a["value"], a["description"].as_str()) {
        (Value::String(s), _) => s.clone(),
        (_, Some(d)) => d.to_string(),
        (Value::Null, None) => a["type"].as_str().unwrap_or("?").to_string(),
        (v, None) => v.to_string(),
    }
}

impl Page {
    fn call_within(&self, method: &str, params: Value, t: Duration) -> Result<Value, String> {
        self.conn.call(msg(Some(&self.session), method, params), t)
    }

    /// Generic CDP command on this page's session; 30 s timeout; CDP error -> Err.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        self.call_within(method, params, CALL_TIMEOUT)
    }

    fn is_mine(&self, event: &Value, method: &str) -> bool {
        event["method"] == method && event["sessionId"] == self.session.as_str()
    }

    /// `params` of this page's logged events named `method`.
    fn my_events(&self, method: &str) -> Vec<Value> {
        let log = lock(&self.conn.shared.log);
        let mine = log.events.iter().filter(|e| self.is_mine(e, method));
        mine.map(|e| e["params"].clone()).collect()
    }

    /// Page.navigate, then waits (30 s at most) for this page's next Page.loadEventFired.
    /// Network errors (`errorText`) are an Err; same-document navigations return at once.
    pub fn navigate(&self, url: &str) -> Result<(), String> {
        let start = lock(&self.conn.shared.log).events.len();
        let res = self.call("Page.navigate", json!({ "url": url }))?;
        if let Some(err) = res["errorText"].as_str().filter(|e| !e.is_empty()) {
            return Err(format!("navigate {url}: {err}"));
        }
        if res.get("loaderId").is_none() {
            return Ok(());
        }
        let deadline = Instant::now() + CALL_TIMEOUT;
        let mut log = lock(&self.conn.shared.log);
        loop {
            let mut new_events = log.events[start..].iter();
            if new_events.any(|e| self.is_mine(e, "Page.loadEventFired")) {
                return Ok(());
            } else if log.closed {
                return Err(format!("navigate {url}: browser connection closed"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "navigate {url}: no load event within {CALL_TIMEOUT:?}"
                ));
            }
            let woke = self.conn.shared.changed.wait_timeout(log, left);
            log = woke.unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    fn eval_within(&self, js: &str, timeout: Duration) -> Result<Value, String> {
        let params = json!({ "expression": js, "awaitPromise": true, "returnByValue": true });
        let res = self.call_within("Runtime.evaluate", params, timeout)?;
        if let Some(details) = res.get("exceptionDetails") {
            let text = exception_text(details);
            return Err(format!("JS exception in `{js}`: {text}"));
        }
        Ok(res["result"].get("value").cloned().unwrap_or(Value::Null))
    }

    /// Runtime.evaluate (awaitPromise, returnByValue): `undefined` -> Null, a thrown
    /// exception or rejected promise -> Err with its text.
    pub fn eval(&self, js: &str) -> Result<Value, String> {
        self.eval_within(js, CALL_TIMEOUT)
    }

    /// Polls `js_condition` every 50 ms until its value is truthy and returns it.
    /// Exceptions count as "not yet". The Err on timeout names condition and last value.
    pub fn wait_for(&self, js_condition: &str, timeout: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let last = match self.eval_within(js_condition, left.max(Duration::from_millis(200))) {
                Ok(v) if truthy(&v) => return Ok(v),
                Ok(v) => v.to_string(),
                Err(e) => e,
            };
            if left < Duration::from_millis(50) {
                let cond = js_condition;
                return Err(format!(
                    "wait_for `{cond}`: timed out after {timeout:?}, last: {last}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `body` (JS using `el`) on the first match of `css_selector`; Err if none.
    fn with_element(&self, what: &str, css_selector: &str, body: &str) -> Result<(), String> {
        let sel = js_str(css_selector);
        let js = format!(
            "(() => {{ const el = document.querySelector({sel}); if (!el) return false; \
             {body}; return true; }})()"
        );
        match self.eval(&js)? {
            Value::Bool(true) => Ok(()),
            _ => Err(format!("{what}: no element matches `{css_selector}`")),
        }
    }

    /// Scrolls the first element matching `css_selector` into view and clicks it.
    pub fn click(&self, css_selector: &str) -> Result<(), String> {
        let body = "el.scrollIntoView({block: 'center'}); el.click()";
        self.with_element("click", css_selector, body)
    }

    /// Sets `.value` through the prototype's setter (so framework-controlled inputs
    /// notice) and dispatches bubbling `input` and `change` events.
    pub fn fill(&self, css_selector: &str, value: &str) -> Result<(), String> {
        let body = format!(
            "el.focus(); const v = {}; \
             const d = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(el), 'value'); \
             if (d && d.set) d.set.call(el, v); else el.value = v; \
             el.dispatchEvent(new Event('input', {{bubbles: true}})); \
             el.dispatchEvent(new Event('change', {{bubbles: true}}))",
            js_str(value)
        );
        self.with_element("fill", css_selector, &body)
    }

    /// Emulation.setDeviceMetricsOverride with device scale factor 1. With `mobile`, a
    /// page lacking `<meta name=viewport content="width=device-width">` lays out at 980px.
    pub fn set_viewport(&self, width: u32, height: u32, mobile: bool) -> Result<(), String> {
        let mut p = json!({ "width": width, "height": height, "mobile": mobile });
        p["deviceScaleFactor"] = json!(1);
        self.call("Emulation.setDeviceMetricsOverride", p).map(drop)
    }

    /// Full-page PNG (captureBeyondViewport) written to `path`, creating parent dirs.
    pub fn screenshot(&self, path: &Path) -> Result<(), String> {
        use base64::Engine as _;
        let p = json!({ "format": "png", "captureBeyondViewport": true });
        let data = str_field(&self.call("Page.captureScreenshot", p)?, "data")?;
        let png = base64::engine::general_purpose::STANDARD.decode(data);
        let png = png.map_err(|e| format!("screenshot base64: {e}"))?;
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        std::fs::write(path, png).map_err(|e| format!("writing {}: {e}", path.display()))
    }

    /// URLs of this page's Network.requestWillBeSent events so far, in order, duplicates
    /// kept: documents, scripts, styles, images, fetch/XHR, redirect hops.
    /// `data:` URLs are excluded.
    pub fn requested_urls(&self) -> Vec<String> {
        let sent = self.my_events("Network.requestWillBeSent");
        let urls = sent.iter().filter_map(|p| p["request"]["url"].as_str());
        urls.filter(|u| !u.starts_with("data:"))
            .map(String::from)
            .collect()
    }

    /// Uncaught exceptions (Runtime.exceptionThrown) and `console.error` calls
    /// (Runtime.consoleAPICalled with type "error") on this page so far, as text.
    pub fn console_errors(&self) -> Vec<String> {
        let log = lock(&self.conn.shared.log);
        let mut out = Vec::new();
        for e in &log.events {
            let p = &e["params"];
            if self.is_mine(e, "Runtime.exceptionThrown") {
                out.push(exception_text(&p["exceptionDetails"]));
            } else if self.is_mine(e, "Runtime.consoleAPICalled") && p["type"] == "error" {
                let args = p["args"].as_array().map(Vec::as_slice).unwrap_or_default();
                out.push(args.iter().map(arg_text).collect::<Vec<_>>().join(" "));
            }
        }
        out
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // Fire and forget: the reply finds no waiter and is dropped by the reader.
        let id = self.conn.next_id.fetch_add(1, Ordering::Relaxed);
        let close = json!({ "targetId": self.target_id });
        let _ = self.conn.send(id, msg(None, "Target.closeTarget", close));
    }
}
