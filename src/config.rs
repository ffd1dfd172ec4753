//! Configuration: one `ServerConfig`, layered as defaults → TOML file → `PERFGATE_*` environment →
//! command-line flags (last wins), validated before anything starts.
//!
//! Every key is declared once, in the `config_keys!` table below; the struct, its defaults,
//! the environment keys, the per-key documentation ([`KEYS`]) and the command-line flags
//! ([`ConfigFlags`]) are generated from it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

/// The log format: `configured` when set, else pretty for a terminal and json lines otherwise
/// (a pipe, a file, a log collector).
pub fn resolve_log_format(configured: Option<LogFormat>, stderr_is_terminal: bool) -> LogFormat {
    match configured {
        Some(f) => f,
        None if stderr_is_terminal => LogFormat::Pretty,
        None => LogFormat::Json,
    }
}

/// A configuration that cannot start a server. Rendered as one line; the binary exits with 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// A value that never reaches a log or a panic message: `Debug` and `Display` print
/// `[redacted]`. Read it with [`Secret::expose`].
///
/// (De)serialises as the bare value (`#[serde(transparent)]`): the layering of defaults, file,
/// environment and flags goes through serde, so never serialise a configuration into a log.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }
    pub fn expose(&self) -> &T {
        &self.0
    }
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> std::fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A database URL (or SQLite path) whose `Debug` and `Display` hide the password
/// ([`redact_url`]); the rest stays readable. Read it with [`DatabaseUrl::expose`].
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> Self {
        DatabaseUrl(url)
    }
}

impl FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(DatabaseUrl(s.to_owned()))
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&redact_url(&self.0), f)
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

/// One configuration key: its name (the TOML key; upper-cased with `PERFGATE_`, the
/// environment variable; with dashes, the flag) and its documentation.
#[derive(Debug, Clone, Copy)]
pub struct ConfigKey {
    pub name: &'static str,
    doc: &'static str,
}

impl ConfigKey {
    /// What the key means (also the flag's help text).
    pub fn doc(&self) -> &'static str {
        self.doc.trim()
    }
    /// `PERFGATE_<NAME>`.
    pub fn env_var(&self) -> String {
        format!("PERFGATE_{}", self.name.to_ascii_uppercase())
    }
}

/// Declares every configuration key once and generates from the table:
///
/// * [`ServerConfig`]: one public field per key, with its serde attributes, and its `Default`;
/// * [`KEYS`]: name and documentation per key; `ENV_KEYS`: the `PERFGATE_*` keys read;
/// * [`ConfigFlags`]: the clap flags, `--name-with-dashes`, every one optional, serialised as
///   the last configuration layer (only the flags given).
///
/// Entries (the doc comment is the key's documentation and its flag's help text; an optional
/// `#[flag(...)]` adds clap `#[arg(...)]` settings such as `value_name`):
///
/// ```text
/// /// Meaning.
/// #[flag(value_name = "SECS")]
/// name: Type = default,   // a value with a default; the flag takes a value
/// name: Option<Type>,     // unset by default
/// name: [Type],           // a list: a TOML array, whitespace-separated in the environment;
///                         // the flag is repeatable
/// #[flag(off = "no-name")]
/// name: bool = true,      // the flag `--no-name` sets it to false
/// #[flag(on)]
/// name: bool = false,     // the flag `--name` sets it to true
/// ```
macro_rules! config_keys {
    // `#[flag(off = "no-x")] x: bool = default`: a switch that turns the key off.
    (@munch [$($done:tt)*]
        $(#[doc = $doc:literal])*
        #[flag(off = $off:literal)]
        $name:ident : bool = $default:expr,
        $($rest:tt)*
    ) => {
        config_keys!(@munch [$($done)* {
            $name [$($doc)*] [bool] [$default] []
            [bool] [long = $off] [skip_serializing_if = "is_false", serialize_with = "serialize_not"]
            [concat!("Turn `", stringify!($name), "` off: ")] [false]
        }] $($rest)*);
    };
    // `#[flag(on)] x: bool = false`: a switch `--x` that turns the key on.
    (@munch [$($done:tt)*]
        $(#[doc = $doc:literal])*
        #[flag(on)]
        $name:ident : bool = $default:expr,
        $($rest:tt)*
    ) => {
        config_keys!(@munch [$($done)* {
            $name [$($doc)*] [bool] [$default] []
            [bool] [long] [skip_serializing_if = "is_false"]
            [""] [false]
        }] $($rest)*);
    };
    // `x: Option<T>`: unset by default.
    (@munch [$($done:tt)*]
        $(#[doc = $doc:literal])*
        $(#[flag($($arg:tt)*)])?
        $name:ident : Option<$ty:ty>,
        $($rest:tt)*
    ) => {
        config_keys!(@munch [$($done)* {
            $name [$($doc)*] [Option<$ty>] [None] []
            [Option<$ty>] [long $(, $($arg)*)?] [skip_serializing_if = "Option::is_none"]
            [""] [true]
        }] $($rest)*);
    };
    // `x: [T]`: a list, empty by default.
    (@munch [$($done:tt)*]
        $(#[doc = $doc:literal])*
        $(#[flag($($arg:tt)*)])?
        $name:ident : [$ty:ty],
        $($rest:tt)*
    ) => {
        config_keys!(@munch [$($done)* {
            $name [$($doc)*] [Vec<$ty>] [Vec::new()] [deserialize_with = "string_or_list"]
            [Vec<$ty>] [long $(, $($arg)*)?] [skip_serializing_if = "Vec::is_empty"]
            [""] [true]
        }] $($rest)*);
    };
    // `x: T = default`.
    (@munch [$($done:tt)*]
        $(#[doc = $doc:literal])*
        $(#[flag($($arg:tt)*)])?
        $name:ident : $ty:ty = $default:expr,
        $($rest:tt)*
    ) => {
        config_keys!(@munch [$($done)* {
            $name [$($doc)*] [$ty] [$default] []
            [Option<$ty>] [long $(, $($arg)*)?] [skip_serializing_if = "Option::is_none"]
            [""] [true]
        }] $($rest)*);
    };
    // Every entry normalised: generate.
    (@munch [$({
        $name:ident [$($doc:literal)*] [$($ty:tt)*] [$default:expr] [$($serde:tt)*]
        [$($flag_ty:tt)*] [$($arg:tt)*] [$($flag_serde:tt)*]
        [$help_prefix:expr] [$show_default:literal]
    })*]) => {
        /// Every setting of the server. Field names are the TOML keys and, upper-cased with the
        /// `PERFGATE_` prefix, the environment variables. `Debug` is safe to log: secrets are
        /// [`Secret`]s and the database URL's password is redacted.
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct ServerConfig {
            $(
                $(#[doc = $doc])*
                #[serde($($serde)*)]
                pub $name: $($ty)*,
            )*
        }

        impl Default for ServerConfig {
            fn default() -> Self {
                Self { $($name: $default,)* }
            }
        }

        /// Every configuration key, in declaration order.
        pub const KEYS: &[ConfigKey] = &[$(ConfigKey {
            name: stringify!($name),
            doc: concat!($($doc),*),
        }),*];

        /// Keys read from `PERFGATE_*`. Other `PERFGATE_` variables (test harness settings, say)
        /// are not ours and are ignored rather than refused.
        const ENV_KEYS: &[&str] = &[$(stringify!($name)),*];

        /// The command-line flag of every key (flatten it into a clap parser). Serialises only
        /// the flags given, as the last layer of [`ServerConfig::load`].
        #[derive(Debug, Default, clap::Args, Serialize)]
        pub struct ConfigFlags {
            $(
                #[arg($($arg)*, help = flag_help(
                    stringify!($name),
                    $help_prefix,
                    concat!($($doc),*),
                    $show_default,
                ))]
                #[serde($($flag_serde)*)]
                pub $name: $($flag_ty)*,
            )*
        }
    };
    ($($entries:tt)*) => {
        config_keys!(@munch [] $($entries)*);
    };
}

config_keys! {
    /// Local single-user sandbox: loopback only, port 8484 and SQLite in the user's data
    /// directory unless given, and no credential needed except for keys and audit.
    #[flag(on)]
    local: bool = false,
    /// Listen address, `host` or `host:port`.
    #[flag(value_name = "ADDR")]
    bind: String = "127.0.0.1:8080".into(),
    /// Listen port (overrides the port of `bind`).
    port: Option<u16>,
    /// Storage backend. When unset: postgres for a `postgres://` URL, else sqlite.
    storage_type: Option<StorageBackend>,
    /// SQLite file (default `perfgate.db`, or `sqlite://path`) or
    /// `postgres://user:pass@host/db`.
    #[flag(value_name = "URL")]
    database_url: Option<DatabaseUrl>,
    /// API key `role:key[:project[:benchmark_regex]]`; repeatable (whitespace-separated in
    /// the environment).
    #[flag(value_name = "SPEC")]
    api_keys: [Secret<String>],
    /// File holding an API keys document (JSON or TOML, perfgate 0.18.1's format), re-read on
    /// SIGHUP and when it changes. Exclusive with `api_keys_env` and `api_keys_command`.
    #[flag(value_name = "PATH")]
    api_keys_file: Option<PathBuf>,
    /// Environment variable holding an API keys document. Exclusive with `api_keys_file` and
    /// `api_keys_command`.
    #[flag(value_name = "VAR")]
    api_keys_env: Option<String>,
    /// Command (run with `sh -c`, at most 10 s) whose standard output is an API keys document;
    /// re-run on SIGHUP. Exclusive with `api_keys_file` and `api_keys_env`.
    #[flag(value_name = "CMD")]
    api_keys_command: Option<Secret<String>>,
    /// CORS for browsers on other origins (on by default).
    #[flag(off = "no-cors")]
    cors: bool = true,
    /// Seconds a request may wait for storage before 503 `timeout`.
    #[flag(value_name = "SECS")]
    timeout: u64 = 30,
    /// Log filter: `error`, `warn`, `info`, `debug`, `trace`, or env_logger directives.
    log_level: String = "info".into(),
    /// Log format: json lines or pretty. When unset: pretty when stderr is a terminal, json
    /// otherwise.
    log_format: Option<LogFormat>,
    /// Largest accepted request body, in bytes (413 above).
    max_body_bytes: usize = 2 * 1024 * 1024,
    /// Reader threads per store, each with a reader connection of its own.
    read_pool_size: u32 = 4,
    /// Writer shards on PostgreSQL; one project's writes always go to the same shard. SQLite
    /// always uses one writer.
    write_shards: u32 = 2,
    /// Most connections one replica opens to PostgreSQL (0 = what the pools need:
    /// 4 + 7 × read_pool_size + 5 × write_shards, the cache listener included); readers, then
    /// shards, shrink to fit.
    #[flag(value_name = "N")]
    pg_max_connections: u32 = 0,
    /// Connections each PostgreSQL pool keeps open when idle.
    #[flag(value_name = "N")]
    pg_min_connections: u32 = 1,
    /// Seconds a request waits for a PostgreSQL connection before 503 (at most `timeout`).
    #[flag(value_name = "SECS")]
    pg_acquire_timeout: u64 = 5,
    /// Seconds an idle PostgreSQL connection beyond the minimum is kept (0 = forever).
    #[flag(value_name = "SECS")]
    pg_idle_timeout: u64 = 600,
    /// Seconds before a PostgreSQL connection is replaced by a fresh one (0 = never).
    #[flag(value_name = "SECS")]
    pg_max_lifetime: u64 = 1800,
    /// Seconds a PostgreSQL statement or lock wait may take (default: 80 % of `timeout`).
    #[flag(value_name = "SECS")]
    pg_statement_timeout: Option<u64>,
    /// Requests that may wait on storage at once; beyond it the server answers 503.
    max_in_flight: usize = 1024,
    /// HTTP worker threads (0 = one per core).
    workers: usize = 0,
    /// Seconds in-flight requests get to finish on SIGTERM/Ctrl-C.
    #[flag(value_name = "SECS")]
    shutdown_timeout: u64 = 30,
    /// HS256 secret for static JWTs (`Authorization: Token <jwt>`), at least 32 bytes.
    #[flag(value_name = "SECRET")]
    jwt_secret: Option<Secret<String>>,
    /// Required `iss` claim of static JWTs.
    jwt_issuer: Option<String>,
    /// Required `aud` claim of static JWTs.
    jwt_audience: Option<String>,
    /// GitHub Actions OIDC mapping `org/repo:project:role[:ref_pattern[:protected]]`; repeatable.
    #[flag(value_name = "MAPPING")]
    github_oidc: [String],
    /// GitHub OIDC issuer (GitHub Enterprise Server has its own).
    #[flag(value_name = "URL")]
    github_oidc_issuer: String = "https://token.actions.githubusercontent.com".into(),
    /// Audience GitHub tokens must carry.
    github_oidc_audience: String = "perfgate".into(),
    /// GitLab CI OIDC mapping `group/project:project:role[:ref_pattern[:protected]]`; repeatable.
    #[flag(value_name = "MAPPING")]
    gitlab_oidc: [String],
    /// GitLab OIDC issuer (a self-managed GitLab's URL).
    #[flag(value_name = "URL")]
    gitlab_oidc_issuer: String = "https://gitlab.com".into(),
    /// Audience GitLab tokens must carry.
    gitlab_oidc_audience: String = "perfgate".into(),
    /// Custom OIDC provider
    /// `issuer=URL,jwks_url=URL,audience=AUD,claim=FIELD,mapping=ID:PROJECT:ROLE[:REF[:protected]][;…]`;
    /// repeatable.
    #[flag(value_name = "SPEC")]
    oidc_provider: [String],
    /// Requests per second allowed per credential (0 = no limit); beyond it 429.
    #[flag(value_name = "RPS")]
    rate_limit: u32 = 0,
    /// Burst per credential (default: the rate).
    #[flag(value_name = "N")]
    rate_limit_burst: Option<u32>,
    /// Longest request URL (path and query), in bytes; longer gets 414.
    #[flag(value_name = "BYTES")]
    max_url_bytes: usize = 8 * 1024,
    /// Largest total size of the request headers, in bytes; larger gets 431.
    #[flag(value_name = "BYTES")]
    max_header_bytes: usize = 16 * 1024,
    /// Deepest JSON nesting accepted in a body; deeper gets 400.
    #[flag(value_name = "LEVELS")]
    max_json_depth: usize = 64,
    /// Seconds a client gets to send its request head, and its body; slower clients are cut
    /// off (408) without holding a worker.
    #[flag(value_name = "SECS")]
    client_timeout: u64 = 10,
    /// Open connections accepted per worker thread; more wait in the listen backlog.
    #[flag(value_name = "N")]
    max_connections: usize = 10_000,
    /// A directory whose files override the embedded dashboard (`index.html`, `assets/…`).
    #[flag(value_name = "DIR")]
    static_dir: Option<PathBuf>,
    /// Seconds between periodic JWKS refreshes.
    #[flag(value_name = "SECS")]
    jwks_refresh_interval: u64 = 300,
    /// Minimum seconds between JWKS refreshes triggered by an unknown `kid`.
    #[flag(value_name = "SECS")]
    jwks_min_refresh_interval: u64 = 10,
    /// Whether OIDC tokens (CI jobs) may create API keys; off by default, since a key outlives
    /// the job's token.
    #[flag(value_name = "BOOL")]
    oidc_can_create_keys: bool = false,
    /// Megabytes this process may spend on caches: a third for rendered GET latest answers, the
    /// rest for SQLite's page caches (its soft heap limit, shared by every connection).
    #[flag(value_name = "MB")]
    memory_budget_mb: u64 = 20,
    /// Purge soft-deleted baseline versions, verdicts, gates and decisions older than this many
    /// days, every hour (0 = keep everything). Live baselines are never purged by age.
    #[flag(value_name = "DAYS")]
    retention_days: u32 = 0,
    /// Milliseconds between change-point passes (0 = no change points).
    #[flag(value_name = "MS")]
    change_point_interval_ms: u64 = 10_000,
    /// Milliseconds a run waits before the change-point pass reads it, so the other benchmarks of
    /// its CI run (same commit and runner) have arrived to estimate the run's common shift.
    #[flag(value_name = "MS")]
    change_point_delay_ms: u64 = 30_000,
}

/// Local mode's port when none is given: the one `perfgate run --local-db` posts to.
pub const LOCAL_PORT: u16 = 8484;

/// Local mode's SQLite file, in [`local_data_dir`].
pub const LOCAL_DB_FILE: &str = "local.db";

/// The directory of local mode's database on `os` (`std::env::consts::OS`): Linux and other
/// Unixes `$XDG_DATA_HOME/perfgate-server` (when absolute) or
/// `~/.local/share/perfgate-server`; macOS `~/Library/Application Support/perfgate-server`;
/// Windows `%APPDATA%\perfgate-server`. Never perfgate's own `~/.perfgate` (another schema).
/// `None` when the variables it needs are unset or empty.
pub fn local_data_dir(
    os: &str,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    let var = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = match os {
        "windows" => var("APPDATA")?,
        "macos" => var("HOME")?.join("Library").join("Application Support"),
        _ => match var("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
            Some(p) => p,
            None => var("HOME")?.join(".local").join("share"),
        },
    };
    Some(base.join("perfgate-server"))
}

/// A flag's help: `prefix`, the key's documentation and, when `show_default`, its default value.
fn flag_help(name: &str, prefix: &str, doc: &str, show_default: bool) -> String {
    let doc = format!("{prefix}{}", doc.trim().trim_end_matches('.'));
    let default = serde_json::to_value(ServerConfig::default())
        .ok()
        .and_then(|mut v| v.get_mut(name).map(serde_json::Value::take));
    match default {
        Some(serde_json::Value::String(s)) if show_default => format!("{doc} [default: {s}]"),
        Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) if show_default => {
            format!("{doc} [default: {v}]")
        }
        _ => doc,
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `--no-cors` (true) is the override `cors = false`.
fn serialize_not<S: Serializer>(b: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(!*b)
}

/// A libpq keyword/value connection string (`host=db password='s e' sslmode=require`) with the
/// values of secret keywords replaced by `***` (quoted values, with `\'` and `\\` escapes, are
/// read whole).
fn redact_dsn(dsn: &str) -> String {
    let mut out = String::with_capacity(dsn.len());
    let mut chars = dsn.chars().peekable();
    loop {
        while let Some(c) = chars.next_if(|c| c.is_whitespace()) {
            out.push(c);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        if key.is_empty() && chars.peek().is_none() {
            return out;
        }
        out.push_str(&key);
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next_if_eq(&'=').is_none() {
            continue;
        }
        out.push('=');
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            value.push('\'');
            while let Some(c) = chars.next() {
                value.push(c);
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => break,
                    _ => {}
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        if is_secret_param(&key) {
            out.push_str("***");
        } else {
            out.push_str(&value);
        }
    }
}

/// Query parameters of a database URL that hold a secret: `password`, `sslpassword` and any
/// other whose (percent-decoded, case-insensitive) name mentions a password, secret, token or
/// key (`sslkey` names a file; hiding it costs nothing).
fn is_secret_param(name: &str) -> bool {
    let name = percent_encoding::percent_decode_str(name)
        .decode_utf8_lossy()
        .to_ascii_lowercase();
    ["pass", "secret", "token", "key", "auth", "credential"]
        .iter()
        .any(|s| name.contains(s))
}

/// `postgres://user:secret@host/db?password=x&sslpassword=y` →
/// `postgres://user:***@host/db?password=***&sslpassword=***`.
pub fn redact_url(url: &str) -> String {
    if !url.contains("://") && url.contains('=') {
        return redact_dsn(url);
    }
    // Credentials first: everything up to the last `@` (a password may hold `?`, `/` or `@`;
    // hiding too much is harmless), then the query of what follows.
    let (head, rest) = match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((creds, host)) => {
                let user = creds.split(':').next().unwrap_or("");
                (format!("{scheme}://{user}:***@"), host)
            }
            None => (format!("{scheme}://"), rest),
        },
        None => (String::new(), url),
    };
    let (base, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let mut out = head;
    out.push_str(base);
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if is_secret_param(k) => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

fn string_or_list<'de, D: Deserializer<'de>, T: From<String>>(d: D) -> Result<Vec<T>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        // An environment variable holds several keys separated by whitespace.
        OneOrMany::One(s) => s
            .split_whitespace()
            .map(|s| T::from(s.to_owned()))
            .collect(),
        OneOrMany::Many(v) => v.into_iter().map(T::from).collect(),
    })
}

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
        self.database_url = Some(DatabaseUrl(p.as_ref().to_string_lossy().into_owned()));
        self
    }
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(DatabaseUrl(url.into()));
        self
    }
    /// Adds a key in the `--api-keys` syntax: `role:key[:project[:benchmark_regex]]`.
    pub fn api_key(mut self, spec: impl Into<String>) -> Self {
        self.api_keys.push(Secret(spec.into()));
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
        self.log_format = Some(f);
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
        self.jwt_secret = Some(Secret(secret.into()));
        self
    }

    /// The `api_keys` entries, exposed (they contain the keys).
    pub fn api_key_specs(&self) -> Vec<&str> {
        self.api_keys.iter().map(|k| k.expose().as_str()).collect()
    }

    /// The database URL as configured, password included (for connecting, never for logs).
    pub fn database_url_exposed(&self) -> Option<&str> {
        self.database_url.as_ref().map(DatabaseUrl::expose)
    }

    /// The log format in effect: the configured one, else pretty on a terminal and json lines
    /// otherwise.
    pub fn effective_log_format(&self) -> LogFormat {
        use std::io::IsTerminal;
        resolve_log_format(self.log_format, std::io::stderr().is_terminal())
    }

    /// How many of `api_keys_file`, `api_keys_env` and `api_keys_command` are set (at most one
    /// may be).
    fn key_document_sources(&self) -> Vec<&'static str> {
        let mut set = Vec::new();
        if self.api_keys_file.is_some() {
            set.push("api_keys_file");
        }
        if self.api_keys_env.is_some() {
            set.push("api_keys_env");
        }
        if self.api_keys_command.is_some() {
            set.push("api_keys_command");
        }
        set
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
        // The layers above the defaults, kept apart so that `local` can tell a bind address
        // given from the default one.
        let mut fig = Figment::new();
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
        let address_given = fig.contains("bind") || fig.contains("port");
        let fig = Figment::from(Serialized::defaults(ServerConfig::default())).merge(fig);
        let cfg: ServerConfig = fig.extract().map_err(|e| {
            let e = e
                .into_iter()
                .next()
                .map(|e| e.to_string())
                .unwrap_or_default();
            ConfigError(format!("invalid configuration: {e}"))
        })?;
        let cfg = cfg.resolve_local(address_given, &|k| std::env::var_os(k))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Local mode's defaults, made explicit: port [`LOCAL_PORT`] when no address was given
    /// (`address_given`: `bind` or `port` set by the file, the environment or a flag), else the
    /// address's own port; SQLite in [`local_data_dir`] when no database URL was given (and the
    /// backend is SQLite). Idempotent; a configuration that is not local is returned unchanged.
    /// `env` reads the environment (`XDG_DATA_HOME`, `HOME`, `APPDATA`).
    pub fn resolve_local(
        mut self,
        address_given: bool,
        env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Self, ConfigError> {
        if !self.local {
            return Ok(self);
        }
        if self.port.is_none() {
            let port = if address_given {
                self.socket_addr()?.port()
            } else {
                LOCAL_PORT
            };
            self.port = Some(port);
        }
        if self.database_url.is_none() && self.backend()? == StorageBackend::Sqlite {
            let dir = local_data_dir(std::env::consts::OS, env).ok_or_else(|| {
                ConfigError(
                    "local mode: no data directory (set HOME, XDG_DATA_HOME or APPDATA), or give --database-url"
                        .into(),
                )
            })?;
            self.database_url = Some(DatabaseUrl(
                dir.join(LOCAL_DB_FILE).to_string_lossy().into_owned(),
            ));
        }
        Ok(self)
    }

    /// Local mode (`local`, the builder of perfgate's own `perfgate serve`). The defaults of
    /// local mode (port, data directory) are applied when the server starts.
    pub fn local_mode(mut self, on: bool) -> Self {
        self.local = on;
        self
    }

    /// The backend, from `storage_type` and the URL scheme (never from a trial connection).
    pub fn backend(&self) -> Result<StorageBackend, ConfigError> {
        let url_is_pg = self
            .database_url
            .as_ref()
            .map(DatabaseUrl::expose)
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

    /// Whether answers carry CORS headers: `cors`, except in local mode, which answers without
    /// a key (no other origin may call it from a browser).
    pub fn serves_cors(&self) -> bool {
        self.cors && !self.local
    }

    /// Bytes of rendered GET latest answers kept: a third of `memory_budget_mb`.
    pub fn latest_cache_bytes(&self) -> usize {
        usize::try_from((self.memory_budget_mb << 20) / 3).unwrap_or(usize::MAX)
    }

    /// SQLite's soft heap limit: the rest of `memory_budget_mb`.
    pub fn sqlite_heap_limit(&self) -> u64 {
        (self.memory_budget_mb << 20) - (self.memory_budget_mb << 20) / 3
    }

    /// SQLite file path (for the sqlite backend).
    pub fn sqlite_file(&self) -> PathBuf {
        let raw = self
            .database_url
            .as_ref()
            .map_or("perfgate.db", DatabaseUrl::expose);
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
        let addr = self.socket_addr()?;
        if self.local && !addr.ip().is_loopback() {
            return Err(ConfigError(format!(
                "local mode answers without credentials, so it listens on loopback only (127.0.0.1 or ::1), not {}",
                addr.ip()
            )));
        }
        let sources = self.key_document_sources();
        if sources.len() > 1 {
            return Err(ConfigError(format!(
                "{} are mutually exclusive: the keys document comes from one place",
                sources.join(" and ")
            )));
        }
        if self
            .api_keys_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
            || self
                .api_keys_env
                .as_ref()
                .is_some_and(|v| v.trim().is_empty())
            || self
                .api_keys_command
                .as_ref()
                .is_some_and(|c| c.expose().trim().is_empty())
        {
            return Err(ConfigError(format!(
                "{} must not be empty",
                sources.first().copied().unwrap_or("api_keys_file")
            )));
        }
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
        if !(4..=1_048_576).contains(&self.memory_budget_mb) {
            return Err(ConfigError(
                "memory_budget_mb must be between 4 and 1048576".into(),
            ));
        }
        if self.retention_days > 36_500 {
            return Err(ConfigError(
                "retention_days must be at most 36500 (0 = keep everything)".into(),
            ));
        }
        if self.pg_acquire_timeout == 0 {
            return Err(ConfigError(
                "pg_acquire_timeout must be at least 1 second".into(),
            ));
        }
        if self.pg_statement_timeout == Some(0) {
            return Err(ConfigError(
                "pg_statement_timeout must be at least 1 second".into(),
            ));
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

    fn env_of<'a>(
        vars: &'a [(&'a str, &'a str)],
    ) -> impl Fn(&str) -> Option<std::ffi::OsString> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| std::ffi::OsString::from(*v))
        }
    }

    #[test]
    fn local_data_dir_per_platform() {
        let env = env_of(&[
            ("HOME", "/home/u"),
            ("XDG_DATA_HOME", "/xdg"),
            ("APPDATA", "C:\\Users\\u\\AppData\\Roaming"),
        ]);
        assert_eq!(
            local_data_dir("linux", &env),
            Some(PathBuf::from("/xdg/perfgate-server"))
        );
        assert_eq!(
            local_data_dir("macos", &env),
            Some(PathBuf::from(
                "/home/u/Library/Application Support/perfgate-server"
            ))
        );
        assert_eq!(
            local_data_dir("windows", &env),
            Some(PathBuf::from("C:\\Users\\u\\AppData\\Roaming").join("perfgate-server"))
        );
        // A relative or empty XDG_DATA_HOME is ignored (the XDG specification).
        for xdg in ["", "rel/dir"] {
            let vars = [("HOME", "/home/u"), ("XDG_DATA_HOME", xdg)];
            let env = env_of(&vars);
            assert_eq!(
                local_data_dir("freebsd", &env),
                Some(PathBuf::from("/home/u/.local/share/perfgate-server"))
            );
        }
        assert_eq!(local_data_dir("linux", &env_of(&[])), None);
        assert_eq!(local_data_dir("windows", &env_of(&[("HOME", "/h")])), None);
        // Never perfgate's own data directory.
        let d = local_data_dir("linux", &env_of(&[("HOME", "/home/u")])).unwrap();
        assert!(!d.to_string_lossy().contains(".perfgate"), "{d:?}");
    }

    #[test]
    fn local_mode_defaults_and_loopback_only() {
        let env = env_of(&[("HOME", "/home/u"), ("XDG_DATA_HOME", "/xdg")]);
        let plain = ServerConfig::new().resolve_local(false, &env).unwrap();
        assert_eq!((plain.port, plain.database_url.is_none()), (None, true));

        let c = ServerConfig::new()
            .local_mode(true)
            .resolve_local(false, &env)
            .unwrap();
        assert_eq!(c.socket_addr().unwrap().to_string(), "127.0.0.1:8484");
        assert_eq!(
            c.sqlite_file(),
            PathBuf::from("/xdg/perfgate-server/local.db")
        );
        c.validate().unwrap();
        // Idempotent.
        let again = c.clone().resolve_local(false, &env_of(&[])).unwrap();
        assert_eq!(again.port, c.port);
        assert_eq!(again.sqlite_file(), c.sqlite_file());

        // An address given keeps its port; an explicit database wins; memory needs no file.
        let c = ServerConfig::new()
            .local_mode(true)
            .bind("127.0.0.1:9000")
            .unwrap()
            .database_url("/tmp/mine.db")
            .resolve_local(true, &env_of(&[]))
            .unwrap();
        assert_eq!(c.socket_addr().unwrap().port(), 9000);
        assert_eq!(c.sqlite_file(), PathBuf::from("/tmp/mine.db"));
        let c = ServerConfig::new()
            .local_mode(true)
            .storage_backend(StorageBackend::Memory)
            .resolve_local(false, &env_of(&[]))
            .unwrap();
        assert!(c.database_url.is_none());
        let e = ServerConfig::new()
            .local_mode(true)
            .resolve_local(false, &env_of(&[]))
            .unwrap_err();
        assert!(e.0.contains("no data directory"), "{e}");

        for addr in ["0.0.0.0:8484", "192.168.1.5:80", "[::]:8484"] {
            let c = ServerConfig::new()
                .local_mode(true)
                .bind(addr)
                .unwrap()
                .resolve_local(true, &env)
                .unwrap();
            let e = c.validate().unwrap_err().0;
            assert!(e.contains("loopback only"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
        for addr in ["127.0.0.1:1", "[::1]:2"] {
            let mut c = ServerConfig::new().local_mode(true).bind(addr).unwrap();
            c = c.resolve_local(true, &env).unwrap();
            c.validate().unwrap();
        }
        // Not local: any address.
        ServerConfig::new()
            .bind("0.0.0.0:1")
            .unwrap()
            .validate()
            .unwrap();
    }

    #[test]
    fn local_flag_and_layers() {
        let c = ServerConfig::load(None, flags(&["--local", "--storage-type", "memory"])).unwrap();
        assert!(c.local);
        assert_eq!(c.socket_addr().unwrap().port(), LOCAL_PORT);
        // `--port` and `--bind` are honoured.
        let c = ServerConfig::load(
            None,
            flags(&["--local", "--storage-type", "memory", "--port", "9"]),
        )
        .unwrap();
        assert_eq!(c.socket_addr().unwrap().to_string(), "127.0.0.1:9");
        let c = ServerConfig::load(
            None,
            flags(&[
                "--local",
                "--storage-type",
                "memory",
                "--bind",
                "127.0.0.1:8080",
            ]),
        )
        .unwrap();
        assert_eq!(c.socket_addr().unwrap().port(), 8080);
        let e = ServerConfig::load(None, flags(&["--local", "--bind", "0.0.0.0"]))
            .unwrap_err()
            .0;
        assert!(e.contains("loopback only"), "{e}");
        // The switch serialises only when given, as `local = true`.
        assert_eq!(
            serde_json::to_value(flags(&["--local"])).unwrap(),
            serde_json::json!({"local": true})
        );
        // TOML.
        let dir = std::env::temp_dir().join(format!("pgcfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, "local = true\nstorage_type = \"memory\"\n").unwrap();
        let c = ServerConfig::load(Some(&f), flags(&[])).unwrap();
        assert!(c.local);
        assert_eq!(c.socket_addr().unwrap().port(), LOCAL_PORT);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = ServerConfig::new()
            .database_url("postgres://app:hunter2@db/perf")
            .api_key("admin:pg_live_abcdefghijklmnopqrstuvwxyz012345")
            .api_key("viewer:pg_test_zyxwvutsrqponmlkjihgfedcba543210")
            .jwt_secret("jwt-secret-jwt-secret-jwt-secret-0123");
        for d in [format!("{c:?}"), format!("{c:#?}")] {
            assert!(!d.contains("hunter2"), "{d}");
            assert!(!d.contains("pg_live_abc"), "{d}");
            assert!(!d.contains("pg_test_zyx"), "{d}");
            assert!(!d.contains("jwt-secret"), "{d}");
            assert!(d.contains("postgres://app:***@db/perf"), "{d}");
            assert!(d.contains("[redacted]"), "{d}");
        }
        let url = c.database_url.as_ref().unwrap();
        assert_eq!(url.to_string(), "postgres://app:***@db/perf");
        assert_eq!(url.expose(), "postgres://app:hunter2@db/perf");
        let secret = c.jwt_secret.as_ref().unwrap();
        assert_eq!(secret.to_string(), "[redacted]");
        assert_eq!(secret.expose(), "jwt-secret-jwt-secret-jwt-secret-0123");
        assert_eq!(
            c.api_key_specs()[1],
            "viewer:pg_test_zyxwvutsrqponmlkjihgfedcba543210"
        );
        assert_eq!(
            redact_url("postgres://db/perf?user=app&password=hunter2&sslmode=disable"),
            "postgres://db/perf?user=app&password=***&sslmode=disable"
        );
    }

    /// Issue 15 #12: every secret parameter of a database URL is hidden, not just `password`.
    #[test]
    fn redacts_every_secret_parameter() {
        let url = "postgres://app:pw1@db/perf?sslmode=verify-full&sslpassword=pw2&PassWord=pw3\
                   &sslkey=/k.pem&pass%77ord=pw4&sslrootcert=/ca.pem&application_name=x";
        let r = redact_url(url);
        for secret in ["pw1", "pw2", "pw3", "pw4", "/k.pem"] {
            assert!(!r.contains(secret), "{secret} in {r}");
        }
        assert_eq!(
            r,
            "postgres://app:***@db/perf?sslmode=verify-full&sslpassword=***&PassWord=***\
             &sslkey=***&pass%77ord=***&sslrootcert=/ca.pem&application_name=x"
        );
        let c = ServerConfig::new().database_url(url);
        assert!(!format!("{c:?}").contains("pw2"));
    }

    #[test]
    fn every_secret_key_is_redacted() {
        // A key whose name says it is secret must have a redacting type; a new `*_secret`,
        // `*_password` or `*_keys` key declared as a plain string fails here.
        let mut c = ServerConfig::new();
        let v = serde_json::to_value(&c).unwrap();
        // `*_file` and `*_env` keys name where a secret is found, not the secret.
        let secretish = |k: &str| {
            ["secret", "password", "keys", "database_url", "token"]
                .iter()
                .any(|s| k.contains(s))
                && !k.ends_with("_file")
                && !k.ends_with("_env")
        };
        let mut json = serde_json::Map::new();
        // A switch holds no secret, whatever its name (`oidc_can_create_keys`).
        for k in KEYS
            .iter()
            .filter(|k| secretish(k.name) && !v[k.name].is_boolean())
        {
            let probe = match &v[k.name] {
                serde_json::Value::Array(_) => serde_json::json!(["admin:PROBE-VALUE"]),
                _ => serde_json::json!("postgres://u:PROBE-VALUE@h/db"),
            };
            json.insert(k.name.to_owned(), probe);
        }
        assert!(json.len() >= 3, "{json:?}");
        let mut fig = serde_json::to_value(&c).unwrap();
        fig.as_object_mut().unwrap().extend(json);
        c = serde_json::from_value(fig).unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("PROBE-VALUE"), "{d}");
    }

    #[test]
    fn log_format_flag_wins_else_terminal_decides() {
        use LogFormat::{Json, Pretty};
        assert_eq!(resolve_log_format(None, true), Pretty);
        assert_eq!(resolve_log_format(None, false), Json);
        for tty in [true, false] {
            assert_eq!(resolve_log_format(Some(Json), tty), Json);
            assert_eq!(resolve_log_format(Some(Pretty), tty), Pretty);
        }
        assert_eq!(ServerConfig::new().log_format, None);
        let c = ServerConfig::load(None, flags(&["--log-format", "json"])).unwrap();
        assert_eq!(c.log_format, Some(Json));
        assert_eq!(c.effective_log_format(), Json);
    }

    #[test]
    fn key_document_sources_are_exclusive() {
        let c = ServerConfig::load(
            None,
            flags(&["--api-keys-file", "/k.json", "--api-keys-env", "KEYS"]),
        );
        let e = c.unwrap_err().0;
        assert!(
            e.contains("api_keys_file and api_keys_env are mutually exclusive"),
            "{e}"
        );
        let e = ServerConfig::load(
            None,
            flags(&[
                "--api-keys-env",
                "KEYS",
                "--api-keys-command",
                "op read secret-token-123",
            ]),
        )
        .unwrap_err()
        .0;
        assert!(e.contains("api_keys_env and api_keys_command"), "{e}");
        assert!(!e.contains("secret-token"), "{e}");
        let e = ServerConfig::load(None, flags(&["--api-keys-env", " "]))
            .unwrap_err()
            .0;
        assert!(e.contains("api_keys_env must not be empty"), "{e}");
        let c = ServerConfig::load(
            None,
            flags(&["--api-keys-command", "cat k.json", "--api-keys", "a"]),
        )
        .unwrap();
        assert_eq!(c.api_keys_command.unwrap().expose(), "cat k.json");
        assert!(
            !format!("{:?}", flags(&["--api-keys-command", "op read tok-9"])).contains("tok-9")
        );
    }

    #[test]
    fn keys_are_documented_and_have_flags() {
        use clap::Args;
        let cmd = ConfigFlags::augment_args(clap::Command::new("t"));
        let mut flags: Vec<String> = cmd
            .get_arguments()
            .map(|a| a.get_long().expect("every key's flag is long").to_owned())
            .collect();
        let mut expected: Vec<String> = KEYS
            .iter()
            .map(|k| match k.name {
                "cors" => "no-cors".to_owned(),
                n => n.replace('_', "-"),
            })
            .collect();
        flags.sort();
        expected.sort();
        assert_eq!(flags, expected, "one flag per key, no flag without a key");
        for a in cmd.get_arguments() {
            assert!(a.get_help().is_some_and(|h| !h.to_string().is_empty()));
        }
        for k in KEYS {
            assert!(!k.doc().is_empty(), "{} has no documentation", k.name);
        }
        // The generated struct and the key list agree with serde's view of the struct.
        let v = serde_json::to_value(ServerConfig::default()).unwrap();
        let fields: Vec<&String> = v.as_object().unwrap().keys().collect();
        let names: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        assert_eq!(fields, names);
        assert_eq!(ENV_KEYS, names.as_slice());
    }

    #[derive(clap::Parser)]
    struct FlagsOnly {
        #[command(flatten)]
        flags: ConfigFlags,
    }

    fn flags(args: &[&str]) -> ConfigFlags {
        use clap::Parser;
        FlagsOnly::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap()
            .flags
    }

    #[test]
    fn flags_serialise_only_what_was_given() {
        assert_eq!(
            serde_json::to_value(flags(&[])).unwrap(),
            serde_json::json!({})
        );
        let f = flags(&[
            "--no-cors",
            "--port",
            "9",
            "--api-keys",
            "a",
            "--api-keys",
            "b",
            "--jwt-secret",
            "s3cret",
            "--database-url",
            "postgres://u:pw@h/db",
            "--storage-type",
            "postgres",
            "--log-format",
            "pretty",
            "--static-dir",
            "/tmp",
        ]);
        assert!(!format!("{f:?}").contains("s3cret"));
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            serde_json::json!({
                "port": 9,
                "storage_type": "postgres",
                "database_url": "postgres://u:pw@h/db",
                "api_keys": ["a", "b"],
                "cors": false,
                "log_format": "pretty",
                "jwt_secret": "s3cret",
                "static_dir": "/tmp",
            })
        );
    }

    #[test]
    fn readme_table_and_example_toml_list_every_key() {
        let readme = include_str!("../README.md");
        let table: Vec<&str> = readme
            .lines()
            .skip_while(|l| !l.starts_with("| Flag | TOML key"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .collect();
        let mut rows = Vec::new();
        for row in &table {
            let cols: Vec<&str> = row.split('|').map(str::trim).collect();
            if cols[1].starts_with("`--config ") {
                continue;
            }
            let key = cols[2].split('`').nth(1).unwrap_or_default();
            let k = KEYS
                .iter()
                .find(|k| k.name == key)
                .unwrap_or_else(|| panic!("README row for unknown key {key:?}: {row}"));
            let flag = match k.name {
                "cors" => "--no-cors".to_owned(),
                n => format!("--{}", n.replace('_', "-")),
            };
            assert!(
                cols[1].starts_with(&format!("`{flag}`"))
                    || cols[1].starts_with(&format!("`{flag} ")),
                "README flag of {key}: {row}"
            );
            assert!(
                cols[2].contains(&format!("`{}`", k.env_var())),
                "README env of {key}: {row}"
            );
            rows.push(key);
        }
        let mut names: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        rows.sort();
        names.sort();
        assert_eq!(rows, names, "the README table has one row per key");

        let example = include_str!("../config/perfgate.example.toml");
        for k in KEYS {
            assert!(
                example.lines().any(|l| {
                    let l = l.trim_start_matches(['#', ' ']);
                    l.strip_prefix(k.name)
                        .is_some_and(|r| r.trim_start().starts_with('='))
                }),
                "config/perfgate.example.toml does not document {}",
                k.name
            );
        }
    }

    #[test]
    fn example_toml_loads() {
        let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/perfgate.example.toml");
        let c = ServerConfig::load(Some(&f), serde_json::json!({})).unwrap();
        assert_eq!(c.bind, "127.0.0.1:8080");
    }

    #[test]
    fn flags_are_the_last_layer() {
        let dir = std::env::temp_dir().join(format!("pgcfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(
            &f,
            "cors = true
timeout = 5
workers = 3
",
        )
        .unwrap();
        let c = ServerConfig::load(Some(&f), flags(&["--no-cors", "--timeout", "7"])).unwrap();
        assert!(!c.cors);
        assert_eq!((c.timeout, c.workers), (7, 3));
        let c = ServerConfig::load(Some(&f), flags(&[])).unwrap();
        assert!(c.cors);
        assert_eq!(c.timeout, 5);
        std::fs::remove_dir_all(dir).unwrap();
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

    #[test]
    fn redacts_keyword_value_connection_strings() {
        assert_eq!(
            redact_url("host=db port=5432 password=hunter2 sslmode=verify-full"),
            "host=db port=5432 password=*** sslmode=verify-full"
        );
        assert_eq!(
            redact_url("host=db password = 'it\\'s a secret' sslpassword=x  user=app"),
            "host=db password=*** sslpassword=***  user=app"
        );
        assert_eq!(
            redact_url("host=db sslkey=/etc/key.pem sslrootcert=/etc/ca.pem"),
            "host=db sslkey=*** sslrootcert=/etc/ca.pem"
        );
        let r = redact_url(
            "postgres://app:pw@db/x?sslmode=verify-full&sslrootcert=/ca.pem&sslpassword=z",
        );
        assert!(!r.contains("pw@") && !r.contains("=z"), "{r}");
        assert!(r.contains("sslrootcert=/ca.pem"), "{r}");
        // Never panics, whatever the input.
        for s in [
            "=",
            "a=",
            "='",
            "a='\\",
            " = = ",
            "password='unterminated",
            "x=y=z",
        ] {
            assert!(!redact_url(s).contains("unterminated"), "{s}");
        }
    }
}
