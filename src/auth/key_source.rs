//! Configured API keys: `--api-keys` and a keys document (`--api-keys-file`, `--api-keys-env`
//! or `--api-keys-command`), held behind a lock that a reload swaps whole.
//!
//! The document is read again on SIGHUP and, for a file, when its content changes (checked every
//! second by reading it: this follows symlinks, so a Kubernetes secret mount, whose `..data`
//! symlink is swapped to a new directory, is seen like any other change). A document that does
//! not load keeps the keys in use; the log says why (never with a secret).

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::keys::StaticKey;
use crate::config::{Secret, ServerConfig};
use crate::domain::key_document::{merge, parse_document, DocumentError, DocumentKeys};

/// A document's SHA-256, or why it could not be read.
pub type Fingerprint = Result<[u8; 32], String>;

/// Longest document read (file, variable or command output).
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// How long `--api-keys-command` may run before it is killed (and the document refused).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a document file is checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Where the keys document comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    File(PathBuf),
    Env(String),
    /// May carry a token on its command line: never shown.
    Command(Secret<String>),
}

impl KeySource {
    /// The configured source (the configuration allows at most one).
    pub fn from_config(c: &ServerConfig) -> Option<KeySource> {
        if let Some(p) = &c.api_keys_file {
            Some(KeySource::File(p.clone()))
        } else if let Some(v) = &c.api_keys_env {
            Some(KeySource::Env(v.clone()))
        } else {
            c.api_keys_command.clone().map(KeySource::Command)
        }
    }

    /// For messages: `file /etc/perfgate/keys.json`, `environment variable KEYS`, `command`.
    pub fn describe(&self) -> String {
        match self {
            KeySource::File(p) => format!("file {}", p.display()),
            KeySource::Env(v) => format!("environment variable {v}"),
            KeySource::Command(_) => "--api-keys-command".to_owned(),
        }
    }

    /// The document's text (blocking: a command may run for [`COMMAND_TIMEOUT`]).
    pub fn read(&self) -> Result<String, String> {
        match self {
            KeySource::File(p) => read_file(p),
            KeySource::Env(v) => match std::env::var(v) {
                Ok(s) if s.len() > MAX_DOCUMENT_BYTES => Err(too_large()),
                Ok(s) => Ok(s),
                Err(std::env::VarError::NotPresent) => Err("the variable is not set".into()),
                Err(std::env::VarError::NotUnicode(_)) => {
                    Err("the variable is not valid UTF-8".into())
                }
            },
            KeySource::Command(c) => run_command(c.expose(), COMMAND_TIMEOUT),
        }
    }

    /// Reads and parses the document; errors are one line, prefixed with the source.
    pub fn load(&self) -> Result<DocumentKeys, String> {
        self.load_fingerprinted().1
    }

    /// [`KeySource::load`], with the SHA-256 of the text read (or why it could not be read):
    /// what a file is compared with to notice a change.
    pub fn load_fingerprinted(&self) -> (Fingerprint, Result<DocumentKeys, String>) {
        match self.read() {
            Ok(text) => (
                Ok(Sha256::digest(text.as_bytes()).into()),
                parse_document(&text).map_err(|e| self.error(&e)),
            ),
            Err(e) => {
                let e = format!("keys document from {}: {e}", self.describe());
                (Err(e.clone()), Err(e))
            }
        }
    }

    fn error(&self, e: &DocumentError) -> String {
        format!("keys document from {}: {e}", self.describe())
    }
}

fn too_large() -> String {
    format!("the document is larger than {MAX_DOCUMENT_BYTES} bytes")
}

fn read_file(p: &std::path::Path) -> Result<String, String> {
    let f = std::fs::File::open(p).map_err(|e| format!("cannot open: {e}"))?;
    let mut buf = Vec::new();
    f.take(MAX_DOCUMENT_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read: {e}"))?;
    if buf.len() > MAX_DOCUMENT_BYTES {
        return Err(too_large());
    }
    String::from_utf8(buf).map_err(|_| "the document is not valid UTF-8".into())
}

/// Runs `sh -c command` (in a process group of its own, so a timeout kills what it started)
/// and returns its standard output. Its standard error is discarded: it may hold secrets.
fn run_command(command: &str, timeout: Duration) -> Result<String, String> {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no standard output")?;
    // Read to the end (so the command never blocks on a full pipe), keeping the first bytes.
    let (sent, output) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match stdout.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if kept.len() <= MAX_DOCUMENT_BYTES {
                        kept.extend_from_slice(&chunk[..n]);
                    }
                }
            }
        }
        let _ = sent.send(kept);
    });
    let deadline = Instant::now() + timeout;
    // The whole group: `sh` and whatever it started.
    let kill_group = |pid: u32| {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() >= deadline => {
                kill_group(child.id());
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the command did not finish within {} s (killed)",
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for the command: {e}")),
        }
    };
    // `sh` is done, but something it left in the background may still hold the output open:
    // the same deadline applies, then the group is killed, which closes it.
    let out = match output.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(out) => out,
        Err(_) => {
            kill_group(child.id());
            return Err(format!(
                "the command's output stayed open beyond {} s (a background process kept it; killed)",
                timeout.as_secs()
            ));
        }
    };
    if !status.success() {
        return Err(match status.code() {
            Some(c) => format!("the command exited with status {c}"),
            None => "the command was killed by a signal".into(),
        });
    }
    if out.len() > MAX_DOCUMENT_BYTES {
        return Err(too_large());
    }
    String::from_utf8(out).map_err(|_| "the command's output is not valid UTF-8".into())
}

/// Every configured key (`--api-keys` and the document), by SHA-256 of the key.
pub struct ConfiguredKeys {
    /// `--api-keys`: fixed for the process's life.
    fixed: HashMap<String, StaticKey>,
    /// `fixed` and the current document together; a reload swaps the whole map.
    current: RwLock<Arc<HashMap<String, StaticKey>>>,
    /// The current document's keys alone (for reload summaries).
    document: RwLock<Arc<DocumentKeys>>,
}

/// What a reload changed, by entry id (ids are not secret).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub keys: usize,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Same id, different secret or grant.
    pub changed: Vec<String>,
}

impl ConfiguredKeys {
    /// `--api-keys` and, when configured, the document's keys.
    pub fn new(
        fixed: HashMap<String, StaticKey>,
        document: Option<DocumentKeys>,
    ) -> Result<Self, DocumentError> {
        let document = document.unwrap_or_default();
        let all = merge(&fixed, &document)?;
        Ok(ConfiguredKeys {
            fixed,
            current: RwLock::new(Arc::new(all)),
            document: RwLock::new(Arc::new(document)),
        })
    }

    /// The key whose SHA-256 is `hash`.
    pub fn get(&self, hash: &str) -> Option<StaticKey> {
        self.with(hash, StaticKey::clone)
    }

    /// `f` of the key with this hash, without copying it.
    pub fn with<R>(&self, hash: &str, f: impl FnOnce(&StaticKey) -> R) -> Option<R> {
        let map = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        map.get(hash).map(f)
    }

    pub fn is_empty(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// The document's keys now in use.
    pub fn document_len(&self) -> usize {
        self.document
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Replaces the document's keys (requests already authenticated keep their principal).
    pub fn replace_document(&self, document: DocumentKeys) -> Result<ReloadSummary, DocumentError> {
        let all = merge(&self.fixed, &document)?;
        let by_id = |d: &DocumentKeys| -> HashMap<String, (String, String)> {
            d.iter()
                .map(|(h, k)| {
                    (
                        k.principal.id.clone(),
                        (h.clone(), format!("{:?}", k.principal)),
                    )
                })
                .collect()
        };
        let mut doc_lock = self.document.write().unwrap_or_else(|e| e.into_inner());
        let old = by_id(&doc_lock);
        let new = by_id(&document);
        let mut s = ReloadSummary {
            keys: document.len(),
            ..ReloadSummary::default()
        };
        for (id, v) in &new {
            match old.get(id) {
                None => s.added.push(id.clone()),
                Some(o) if o != v => s.changed.push(id.clone()),
                Some(_) => {}
            }
        }
        s.removed = old
            .keys()
            .filter(|id| !new.contains_key(*id))
            .cloned()
            .collect();
        s.added.sort();
        s.removed.sort();
        s.changed.sort();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(all);
        *doc_lock = Arc::new(document);
        Ok(s)
    }

    /// Reads `source` again and swaps its keys in; on failure the keys in use stay. Logs the
    /// outcome either way; returns the fingerprint of what was read.
    pub async fn reload(self: &Arc<Self>, source: &KeySource, trigger: &str) -> Fingerprint {
        let src = source.clone();
        let (fingerprint, loaded) =
            actix_web::rt::task::spawn_blocking(move || src.load_fingerprinted())
                .await
                .unwrap_or_else(|_| {
                    let e = "the reload task failed".to_owned();
                    (Err(e.clone()), Err(e))
                });
        self.apply(source, trigger, loaded);
        fingerprint
    }

    fn apply(&self, source: &KeySource, trigger: &str, loaded: Result<DocumentKeys, String>) {
        let result = loaded.and_then(|doc| {
            log_expired(&doc);
            self.replace_document(doc).map_err(|e| source.error(&e))
        });
        match result {
            Ok(s) => {
                let list = |v: &[String]| {
                    if v.is_empty() {
                        "none".to_owned()
                    } else {
                        v.join(", ")
                    }
                };
                log::info!(
                    "API keys reloaded ({trigger}) from {}: {} keys; added: {}; removed: {}; changed: {}",
                    source.describe(),
                    s.keys,
                    list(&s.added),
                    list(&s.removed),
                    list(&s.changed)
                );
            }
            Err(e) => log::warn!(
                "API keys not reloaded ({trigger}), the {} keys in use stay: {e}",
                self.document_len()
            ),
        }
    }
}

/// Warns about document entries that have already expired (they are refused, 401).
pub fn log_expired(doc: &DocumentKeys) {
    let now = crate::domain::time::now_micros();
    let mut expired: Vec<&str> = doc
        .values()
        .filter(|k| k.principal.expires_at.is_some_and(|e| e <= now))
        .map(|k| k.principal.id.as_str())
        .collect();
    if !expired.is_empty() {
        expired.sort_unstable();
        log::warn!(
            "keys document: entries already expired (refused): {}",
            expired.join(", ")
        );
    }
}

/// The SHA-256 of a file's content, or why it cannot be read (worded as
/// [`KeySource::load_fingerprinted`] words it).
fn file_fingerprint(source: &KeySource, p: &std::path::Path) -> Fingerprint {
    read_file(p)
        .map(|t| Sha256::digest(t.as_bytes()).into())
        .map_err(|e| format!("keys document from {}: {e}", source.describe()))
}

/// Reloads the document on SIGHUP and, for a file, when its content changes; runs for the
/// process's life. `loaded` is the fingerprint of the document loaded at start-up. `hangup` is
/// registered before the server starts listening, so an early SIGHUP reloads rather than
/// ending the process.
pub async fn reload_loop(
    keys: Arc<ConfiguredKeys>,
    source: KeySource,
    loaded: Fingerprint,
    mut hangup: tokio::signal::unix::Signal,
) {
    let file = match &source {
        KeySource::File(p) => Some(p.clone()),
        _ => None,
    };
    let fingerprint = |p: PathBuf| {
        let src = source.clone();
        async move {
            actix_web::rt::task::spawn_blocking(move || file_fingerprint(&src, &p))
                .await
                .unwrap_or_else(|_| Err("the check failed".into()))
        }
    };
    // What the keys in use were read from (or why the last read failed).
    let mut seen = loaded;
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            got = hangup.recv() => {
                if got.is_none() {
                    return;
                }
                seen = keys.reload(&source, "SIGHUP").await;
            }
            _ = tick.tick(), if file.is_some() => {
                let Some(p) = &file else { continue };
                let now = fingerprint(p.clone()).await;
                if now == seen {
                    continue;
                }
                seen = match now {
                    // Loaded from a fresh read: the content may have moved on since this check.
                    Ok(_) => keys.reload(&source, "file changed").await,
                    Err(e) => {
                        log::warn!(
                            "API keys not reloaded (file changed), the {} keys in use stay: {e}",
                            keys.document_len()
                        );
                        Err(e)
                    }
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_output_status_and_timeout() {
        assert_eq!(run_command("printf '[]'", COMMAND_TIMEOUT).unwrap(), "[]");
        let e = run_command("echo secret-stderr >&2; exit 9", COMMAND_TIMEOUT).unwrap_err();
        assert_eq!(e, "the command exited with status 9");
        let started = Instant::now();
        let e = run_command("sleep 30 & sleep 30", Duration::from_millis(300)).unwrap_err();
        assert!(e.contains("did not finish within"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // `sh` exits at once, but a background process keeps the output open: still bounded.
        let started = Instant::now();
        let e = run_command("sleep 30 & printf '[]'", Duration::from_millis(300)).unwrap_err();
        assert!(e.contains("stayed open"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let e =
            run_command("head -c 1100000 /dev/zero | tr '\\0' ' '", COMMAND_TIMEOUT).unwrap_err();
        assert!(e.contains("larger than"), "{e}");
    }

    #[test]
    fn sources_and_reload_summaries() {
        let s1 = "pg_live_abcdefghijklmnopqrstuvwxyz012345";
        let s2 = "pg_live_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
        let doc = |entries: &[(&str, &str, &str)]| {
            let v: Vec<String> = entries
                .iter()
                .map(|(id, role, s)| format!(r#"{{"id":"{id}","role":"{role}","secret":"{s}"}}"#))
                .collect();
            parse_document(&format!("[{}]", v.join(","))).unwrap()
        };
        let keys = ConfiguredKeys::new(HashMap::new(), Some(doc(&[("a", "admin", s1)]))).unwrap();
        assert!(keys.get(&crate::domain::api_keys::hash_key(s1)).is_some());
        let s = keys
            .replace_document(doc(&[("a", "viewer", s1), ("b", "viewer", s2)]))
            .unwrap();
        assert_eq!(s.added, ["b"]);
        assert_eq!(s.changed, ["a"]);
        let s = keys.replace_document(doc(&[("b", "viewer", s2)])).unwrap();
        assert_eq!(s.removed, ["a"]);
        assert!(keys.get(&crate::domain::api_keys::hash_key(s1)).is_none());
        assert_eq!(keys.document_len(), 1);

        let e = KeySource::Env("PERFGATE_SURELY_UNSET_VARIABLE_17".into())
            .load()
            .unwrap_err();
        assert_eq!(
            e,
            "keys document from environment variable PERFGATE_SURELY_UNSET_VARIABLE_17: the variable is not set"
        );
        let e = KeySource::Command(Secret::new("exit 3 # token-xyz".into()))
            .load()
            .unwrap_err();
        assert_eq!(
            e,
            "keys document from --api-keys-command: the command exited with status 3"
        );
        let e = KeySource::File("/nonexistent/keys.json".into())
            .load()
            .unwrap_err();
        assert!(
            e.starts_with("keys document from file /nonexistent/keys.json: cannot open"),
            "{e}"
        );
    }
}
