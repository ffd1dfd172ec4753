//! Configuration: one `ServerConfig`, layered as defaults → TOML file → `PERFGATE_*` environment →
//! command-line flags (last wins), validated before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer, Serialize};

/// Where baselines live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// SQLite in memory (same schema and queries as `sqlite`); lost on exit.
    Memory,
    /// One SQLite file in WAL mode (the default).
    Sqlite,
    /// PostgreSQL; several replicas may share one database.
    Postgres,
}

impl StorageBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            StorageBackend::Memory => "memory",
            StorageBackend::Sqlite => "sqlite",
            StorageBackend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Pretty,
}

/// A configuration that cannot start a server. Rendered as one line; the binary exits with 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Every setting of the server. Field names are the TOML keys and, upper-cased with the
/// `PERFGATE_` prefix, the environment variables.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listen address, `host:port` (or just a host, with `port`).
    pub bind: String,
    /// Overrides the port of `bind`.
    pub port: Option<u16>,
    /// `memory`, `sqlite` or `postgres`. When unset: postgres for a `postgres://` URL, else sqlite.
    pub storage_type: Option<StorageBackend>,
    /// SQLite file path (or `sqlite://path`) or PostgreSQL URL.
    pub database_url: Option<String>,
    /// `role:key[:project[:benchmark_regex]]`, repeatable.
    #[serde(deserialize_with = "string_or_list")]
    pub api_keys: Vec<String>,
    /// CORS for browsers on other origins (on by default).
    pub cors: bool,
    /// Seconds a request may wait for storage before 503 `timeout`.
    pub timeout: u64,
    /// env_logger filter: `error`, `warn`, `info`, `debug`, `trace`, or per-module directives.
    pub log_level: String,
    pub log_format: LogFormat,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Reader connections (and reader threads) per pool.
    pub read_pool_size: u32,
    /// Writer shards; one project's writes always go to the same shard. SQLite always uses one.
    pub write_shards: u32,
    /// Requests that may wait on storage at once; beyond it the server answers 503.
    pub max_in_flight: usize,
    /// HTTP worker threads (0 = one per core).
    pub workers: usize,
    /// Seconds in-flight requests get to finish on SIGTERM/Ctrl-C.
    pub shutdown_timeout: u64,
    /// HS256 secret for static JWTs (`Authorization: Token <jwt>`).
    pub jwt_secret: Option<String>,
    /// Required `iss` of static JWTs.
    pub jwt_issuer: Option<String>,
    /// Required `aud` of static JWTs.
    pub jwt_audience: Option<String>,
    /// GitHub Actions OIDC mappings, `org/repo:project:role[:ref_pattern]`.
    #[serde(deserialize_with = "string_or_list")]
    pub github_oidc: Vec<String>,
    pub github_oidc_issuer: String,
    pub github_oidc_audience: String,
    /// GitLab CI OIDC mappings, `group/project:project:role[:ref_pattern]`.
    #[serde(deserialize_with = "string_or_list")]
    pub gitlab_oidc: Vec<String>,
    pub gitlab_oidc_issuer: String,
    pub gitlab_oidc_audience: String,
    /// Custom OIDC providers,
    /// `issuer=URL,jwks_url=URL,audience=AUD,claim=FIELD,mapping=ID:PROJECT:ROLE[;…]`.
    #[serde(deserialize_with = "string_or_list")]
    pub oidc_provider: Vec<String>,
    /// Requests per second allowed per credential (0 = no limit).
    pub rate_limit: u32,
    /// Burst per credential (default: the rate).
    pub rate_limit_burst: Option<u32>,
    /// Longest request URL (path and query), in bytes; longer gets 414.
    pub max_url_bytes: usize,
    /// Largest total size of the request headers, in bytes; larger gets 431.
    pub max_header_bytes: usize,
    /// Deepest JSON nesting accepted in a body; deeper gets 400.
    pub max_json_depth: usize,
    /// Seconds a client gets to send its request head, and its body; slower clients are cut
    /// off (408) without holding a worker.
    pub client_timeout: u64,
    /// Open connections accepted per worker thread; more wait in the listen backlog.
    pub max_connections: usize,
    /// A directory whose files override the embedded dashboard (`index.html`, `assets/…`).
    pub static_dir: Option<std::path::PathBuf>,
    /// Seconds between periodic JWKS refreshes.
    pub jwks_refresh_interval: u64,
    /// Minimum seconds between refreshes triggered by an unknown `kid`.
    pub jwks_min_refresh_interval: u64,
}

impl std::fmt::Debug for ServerConfig {
    // Hand-written so that API keys and database passwords never reach a log or a panic message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("bind", &self.bind)
            .field("port", &self.port)
            .field("storage_type", &self.storage_type)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field(
                "api_keys",
                &format_args!("[{} redacted]", self.api_keys.len()),
            )
            .field("cors", &self.cors)
            .field("timeout", &self.timeout)
            .field("log_level", &self.log_level)
            .field("log_format", &self.log_format)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("read_pool_size", &self.read_pool_size)
            .field("write_shards", &self.write_shards)
            .field("max_in_flight", &self.max_in_flight)
            .field("workers", &self.workers)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "***"))
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("github_oidc", &self.github_oidc)
            .field("github_oidc_issuer", &self.github_oidc_issuer)
            .field("github_oidc_audience", &self.github_oidc_audience)
            .field("gitlab_oidc", &self.gitlab_oidc)
            .field("gitlab_oidc_issuer", &self.gitlab_oidc_issuer)
            .field("gitlab_oidc_audience", &self.gitlab_oidc_audience)
            .field("oidc_provider", &self.oidc_provider)
            .field("rate_limit", &self.rate_limit)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .field("max_url_bytes", &self.max_url_bytes)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("max_json_depth", &self.max_json_depth)
            .field("client_timeout", &self.client_timeout)
            .field("max_connections", &self.max_connections)
            .field("static_dir", &self.static_dir)
            .field("jwks_refresh_interval", &self.jwks_refresh_interval)
            .field("jwks_min_refresh_interval", &self.jwks_min_refresh_interval)
            .finish()
    }
}

/// `postgres://user:secret@host/db?password=x` → `postgres://user:***@host/db?password=***`.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((creds, host)) => {
                let user = creds.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            None => base.to_owned(),
        },
        None => base.to_owned(),
    };
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        // An environment variable holds several keys separated by whitespace.
        OneOrMany::One(s) => s.split_whitespace().map(str::to_owned).collect(),
        OneOrMany::Many(v) => v,
    })
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            port: None,
            storage_type: None,
            database_url: None,
            api_keys: Vec::new(),
            cors: true,
            timeout: 30,
            log_level: "info".into(),
            log_format: LogFormat::Json,
            max_body_bytes: 2 * 1024 * 1024,
            read_pool_size: 4,
            write_shards: 2,
            max_in_flight: 1024,
            workers: 0,
            shutdown_timeout: 30,
            jwt_secret: None,
            jwt_issuer: None,
            jwt_audience: None,
            github_oidc: Vec::new(),
            github_oidc_issuer: "https://token.actions.githubusercontent.com".into(),
            github_oidc_audience: "perfgate".into(),
            gitlab_oidc: Vec::new(),
            gitlab_oidc_issuer: "https://gitlab.com".into(),
            gitlab_oidc_audience: "perfgate".into(),
            oidc_provider: Vec::new(),
            rate_limit: 0,
            rate_limit_burst: None,
            max_url_bytes: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_json_depth: 64,
            client_timeout: 10,
            max_connections: 10_000,
            static_dir: None,
            jwks_refresh_interval: 300,
            jwks_min_refresh_interval: 10,
        }
    }
}

/// Keys read from `PERFGATE_*`. Other `PERFGATE_` variables (test harness settings, say) are
/// not ours and are ignored rather than refused.
const ENV_KEYS: &[&str] = &[
    "bind",
    "port",
    "storage_type",
    "database_url",
    "api_keys",
    "cors",
    "timeout",
    "log_level",
    "log_format",
    "max_body_bytes",
    "read_pool_size",
    "write_shards",
    "max_in_flight",
    "workers",
    "shutdown_timeout",
    "jwt_secret",
    "jwt_issuer",
    "jwt_audience",
    "github_oidc",
    "github_oidc_issuer",
    "github_oidc_audience",
    "gitlab_oidc",
    "gitlab_oidc_issuer",
    "gitlab_oidc_audience",
    "oidc_provider",
    "jwks_refresh_interval",
    "jwks_min_refresh_interval",
    "rate_limit",
    "rate_limit_burst",
    "max_url_bytes",
    "max_header_bytes",
    "max_json_depth",
    "client_timeout",
    "max_connections",
    "static_dir",
];

impl ServerConfig {
    pub fn new() -> Self {
        Self::default()
    }

    /// `host:port`, e.g. `0.0.0.0:8080`.
    pub fn bind(mut self, addr: &str) -> Result<Self, ConfigError> {
        addr.parse::<SocketAddr>()
            .map_err(|e| ConfigError(format!("invalid bind address {addr:?}: {e}")))?;
        self.bind = addr.to_owned();
        self.port = None;
        Ok(self)
    }
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
    pub fn storage_backend(mut self, b: StorageBackend) -> Self {
        self.storage_type = Some(b);
        self
    }
    pub fn sqlite_path(mut self, p: impl AsRef<Path>) -> Self {
        self.database_url = Some(p.as_ref().to_string_lossy().into_owned());
        self
    }
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(url.into());
        self
    }
    /// Adds a key in the `--api-keys` syntax: `role:key[:project[:benchmark_regex]]`.
    pub fn api_key(mut self, spec: impl Into<String>) -> Self {
        self.api_keys.push(spec.into());
        self
    }
    pub fn cors(mut self, on: bool) -> Self {
        self.cors = on;
        self
    }
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t.as_secs().max(1);
        self
    }
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }
    pub fn log_level(mut self, level: impl Into<String>) -> Self {
        self.log_level = level.into();
        self
    }
    pub fn log_format(mut self, f: LogFormat) -> Self {
        self.log_format = f;
        self
    }
    pub fn read_pool_size(mut self, n: u32) -> Self {
        self.read_pool_size = n;
        self
    }
    pub fn write_shards(mut self, n: u32) -> Self {
        self.write_shards = n;
        self
    }
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }
    /// Accepts HS256 JWTs signed with `secret`.
    pub fn jwt_secret(mut self, secret: impl Into<String>) -> Self {
        self.jwt_secret = Some(secret.into());
        self
    }

    /// True when some credential besides API keys is configured.
    pub fn has_token_auth(&self) -> bool {
        self.jwt_secret.is_some()
            || !self.github_oidc.is_empty()
            || !self.gitlab_oidc.is_empty()
            || !self.oidc_provider.is_empty()
    }

    /// Layers defaults, the TOML file, the environment and `overrides` (the flags).
    pub fn load(
        config_file: Option<&Path>,
        overrides: impl Serialize,
    ) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(ServerConfig::default()));
        match config_file {
            Some(p) => {
                if !p.exists() {
                    return Err(ConfigError(format!(
                        "config file {} does not exist",
                        p.display()
                    )));
                }
                fig = fig.merge(Toml::file_exact(p));
            }
            None => {
                let default = Path::new("config/perfgate.toml");
                if default.exists() {
                    fig = fig.merge(Toml::file_exact(default));
                }
            }
        }
        fig = fig
            .merge(Env::prefixed("PERFGATE_").split("__").only(ENV_KEYS))
            .merge(Serialized::defaults(overrides));
        let cfg: ServerConfig = fig.extract().map_err(|e| {
            let e = e
                .into_iter()
                .next()
                .map(|e| e.to_string())
                .unwrap_or_default();
            ConfigError(format!("invalid configuration: {e}"))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The backend, from `storage_type` and the URL scheme (never from a trial connection).
    pub fn backend(&self) -> Result<StorageBackend, ConfigError> {
        let url_is_pg = self
            .database_url
            .as_deref()
            .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"));
        match (self.storage_type, url_is_pg) {
            (Some(StorageBackend::Postgres), _) => {
                if self.database_url.is_none() {
                    return Err(ConfigError(
                        "storage type postgres needs --database-url postgres://…".into(),
                    ));
                }
                if !url_is_pg {
                    return Err(ConfigError(
                        "storage type postgres needs a postgres:// or postgresql:// database URL"
                            .into(),
                    ));
                }
                Ok(StorageBackend::Postgres)
            }
            (Some(b), true) => Err(ConfigError(format!(
                "storage type {} does not take a postgres:// database URL",
                b.as_str()
            ))),
            (Some(b), false) => Ok(b),
            (None, true) => Ok(StorageBackend::Postgres),
            (None, false) => Ok(StorageBackend::Sqlite),
        }
    }

    /// SQLite file path (for the sqlite backend).
    pub fn sqlite_file(&self) -> PathBuf {
        let raw = self.database_url.as_deref().unwrap_or("perfgate.db");
        let raw = raw.strip_prefix("sqlite://").unwrap_or(raw);
        PathBuf::from(raw)
    }

    pub fn socket_addr(&self) -> Result<SocketAddr, ConfigError> {
        let with_port = |host: &str, port: u16| format!("{host}:{port}");
        let s = match (self.bind.parse::<SocketAddr>(), self.port) {
            (Ok(mut a), Some(p)) => {
                a.set_port(p);
                return Ok(a);
            }
            (Ok(a), None) => return Ok(a),
            (Err(_), p) => with_port(self.bind.trim_matches(['[', ']']), p.unwrap_or(8080)),
        };
        let s = if s.matches(':').count() > 1 && !s.starts_with('[') {
            // Bare IPv6 host.
            let (h, p) = s.rsplit_once(':').unwrap_or((&s, "8080"));
            format!("[{h}]:{p}")
        } else {
            s
        };
        s.parse::<SocketAddr>()
            .map_err(|e| ConfigError(format!("invalid bind address {:?}: {e}", self.bind)))
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.timeout.max(1))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.backend()?;
        self.socket_addr()?;
        if self.max_body_bytes < 1024 {
            return Err(ConfigError("max_body_bytes must be at least 1024".into()));
        }
        if self.read_pool_size == 0 || self.read_pool_size > 256 {
            return Err(ConfigError(
                "read_pool_size must be between 1 and 256".into(),
            ));
        }
        if self.write_shards == 0 || self.write_shards > 64 {
            return Err(ConfigError("write_shards must be between 1 and 64".into()));
        }
        if self.max_in_flight == 0 {
            return Err(ConfigError("max_in_flight must be at least 1".into()));
        }
        if self.timeout == 0 {
            return Err(ConfigError("timeout must be at least 1 second".into()));
        }
        if self.log_level.trim().is_empty() {
            return Err(ConfigError("log_level must not be empty".into()));
        }
        crate::auth::keys::parse_static_keys(&self.api_keys)
            .map_err(|e| ConfigError(e.to_string()))?;
        crate::auth::jwt::JwtVerifier::from_config(self)?;
        crate::auth::oidc::providers_from_config(self)?;
        if self.rate_limit_burst == Some(0) {
            return Err(ConfigError("rate_limit_burst must be at least 1".into()));
        }
        if self.max_url_bytes < 256 || self.max_header_bytes < 1024 {
            return Err(ConfigError(
                "max_url_bytes must be at least 256 and max_header_bytes at least 1024".into(),
            ));
        }
        if let Some(d) = &self.static_dir {
            if !d.is_dir() {
                return Err(ConfigError(format!(
                    "static_dir {} is not a readable directory",
                    d.display()
                )));
            }
        }
        if self.client_timeout == 0 || self.max_connections == 0 {
            return Err(ConfigError(
                "client_timeout and max_connections must be at least 1".into(),
            ));
        }
        if self.max_json_depth < 8 || self.max_json_depth > 128 {
            return Err(ConfigError(
                "max_json_depth must be between 8 and 128".into(),
            ));
        }
        if self.jwks_refresh_interval == 0 || self.jwks_min_refresh_interval == 0 {
            return Err(ConfigError(
                "jwks_refresh_interval and jwks_min_refresh_interval must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_resolution() {
        let c = ServerConfig::new();
        assert_eq!(c.backend().unwrap(), StorageBackend::Sqlite);
        let c = ServerConfig::new().database_url("postgres://u:p@h/db");
        assert_eq!(c.backend().unwrap(), StorageBackend::Postgres);
        let c = ServerConfig::new()
            .storage_backend(StorageBackend::Memory)
            .database_url("postgres://h/db");
        assert!(c.backend().is_err());
        let c = ServerConfig::new().storage_backend(StorageBackend::Postgres);
        assert!(c.backend().is_err());
        let c = ServerConfig::new().database_url("sqlite://x/y.db");
        assert_eq!(c.sqlite_file(), PathBuf::from("x/y.db"));
    }

    #[test]
    fn bind_and_port() {
        let c = ServerConfig::new().bind("0.0.0.0:9000").unwrap();
        assert_eq!(c.socket_addr().unwrap().port(), 9000);
        let c = c.port(1234);
        assert_eq!(c.socket_addr().unwrap().to_string(), "0.0.0.0:1234");
        let mut c = ServerConfig::new();
        c.bind = "::1".into();
        assert_eq!(c.socket_addr().unwrap().to_string(), "[::1]:8080");
        assert!(ServerConfig::new().bind("nope").is_err());
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = ServerConfig::new()
            .database_url("postgres://app:hunter2@db/perf")
            .api_key("admin:pg_live_abcdefghijklmnopqrstuvwxyz012345");
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2"), "{d}");
        assert!(!d.contains("pg_live_abc"), "{d}");
        assert!(d.contains("postgres://app:***@db/perf"));
        assert_eq!(
            redact_url("postgres://db/perf?user=app&password=hunter2&sslmode=disable"),
            "postgres://db/perf?user=app&password=***&sslmode=disable"
        );
    }

    #[test]
    fn unknown_toml_key_is_refused() {
        let dir = std::env::temp_dir().join(format!("pgcfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, "bind = \"127.0.0.1:9\"\nbogus = 1\n").unwrap();
        let e = ServerConfig::load(Some(&f), serde_json::json!({})).unwrap_err();
        assert!(e.0.contains("bogus"), "{e}");
        std::fs::write(&f, "bind = \"127.0.0.1:9\"\ntimeout = 5\n").unwrap();
        let c = ServerConfig::load(Some(&f), serde_json::json!({"timeout": 7})).unwrap();
        assert_eq!(c.timeout, 7);
        assert_eq!(c.bind, "127.0.0.1:9");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
