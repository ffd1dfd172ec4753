//! The `perfgate-server` binary: parse flags, load the configuration, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use perfgate_server::{ops, run_server, LogFormat, ServerConfig, StorageBackend};
use serde::Serialize;

/// Self-hosted baseline service for perfgate. Flags override `PERFGATE_*` environment variables,
/// which override the TOML file, which overrides the defaults.
#[derive(Parser)]
#[command(
    name = "perfgate-server",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Manage API keys directly in the database (bootstrap or recovery, no HTTP API needed)
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
    /// Write every table (baselines, verdicts, fleet events, keys as hashes, audit) as JSON lines to stdout
    Export {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Read JSON lines from `export` on stdin into the database (idempotent)
    Import {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Mint an HS256 JWT for testing (`Authorization: Token <jwt>`)
    Token {
        /// Shared secret (as given to the server's --jwt-secret) [env: PERFGATE_JWT_SECRET]
        #[arg(long)]
        secret: Option<String>,
        /// Project the token is for, or '*'
        #[arg(long)]
        project: String,
        /// Comma-separated scopes: read, write, promote, delete, admin
        #[arg(long)]
        scopes: String,
        /// Subject (the audit actor becomes jwt:<sub>)
        #[arg(long, default_value = "operator")]
        sub: String,
        /// iss claim (required when the server sets --jwt-issuer)
        #[arg(long)]
        issuer: Option<String>,
        /// aud claim (required when the server sets --jwt-audience)
        #[arg(long)]
        audience: Option<String>,
        /// Lifetime in seconds
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
}

/// Where the key commands find the database (same layering as the server).
#[derive(Args, Serialize)]
struct DbArgs {
    /// TOML configuration file
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Storage backend [default: sqlite, or postgres for a postgres:// URL]
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    storage_type: Option<StorageBackend>,
    /// SQLite file or postgres:// URL [env: PERFGATE_DATABASE_URL]
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    database_url: Option<String>,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print it (shown once)
    Create {
        #[command(flatten)]
        db: DbArgs,
        /// viewer, contributor, promoter or admin
        #[arg(long)]
        role: String,
        /// Project, or '*' for every project
        #[arg(long, default_value = "*")]
        project: String,
        #[arg(long, default_value = "created with perfgate-server keys create")]
        description: String,
        /// Benchmark glob, e.g. 'bench-*'
        #[arg(long)]
        pattern: Option<String>,
        /// RFC 3339 expiry (in the future)
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List keys (never the keys themselves)
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a key by id
    Revoke {
        #[command(flatten)]
        db: DbArgs,
        id: String,
    },
}

#[derive(Args, Serialize)]
struct ServeArgs {
    /// TOML configuration file [default: config/perfgate.toml when present]
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Listen address, host or host:port [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    bind: Option<String>,
    /// Listen port (overrides the port of --bind)
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    /// Storage backend [default: sqlite, or postgres for a postgres:// URL]
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    storage_type: Option<StorageBackend>,
    /// SQLite file (default perfgate.db) or postgres://user:pass@host/db
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    database_url: Option<String>,
    /// API key, role:key[:project[:benchmark_regex]]; repeatable
    #[arg(long = "api-keys", value_name = "SPEC")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    api_keys: Vec<String>,
    /// Turn CORS off
    #[arg(long)]
    #[serde(skip)]
    no_cors: bool,
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    cors: Option<bool>,
    /// Seconds a request may wait for storage [default: 30]
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<u64>,
    /// Log filter: error, warn, info, debug, trace (or env_logger directives) [default: info]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_level: Option<String>,
    /// Log format [default: json]
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<LogFormat>,
    /// Largest request body in bytes [default: 2097152]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_body_bytes: Option<usize>,
    /// Reader connections and threads [default: 4]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    read_pool_size: Option<u32>,
    /// Writer shards on PostgreSQL (SQLite always uses one writer) [default: 2]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    write_shards: Option<u32>,
    /// Requests that may wait on storage at once before 503 [default: 1024]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_in_flight: Option<usize>,
    /// HTTP worker threads, 0 = one per core [default: 0]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    workers: Option<usize>,
    /// Seconds in-flight requests get to finish on shutdown [default: 30]
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    shutdown_timeout: Option<u64>,
    /// HS256 secret for static JWTs (at least 32 bytes)
    #[arg(long, value_name = "SECRET")]
    #[serde(skip_serializing_if = "Option::is_none")]
    jwt_secret: Option<String>,
    /// Required iss claim of static JWTs
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    jwt_issuer: Option<String>,
    /// Required aud claim of static JWTs
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    jwt_audience: Option<String>,
    /// GitHub Actions OIDC mapping org/repo:project:role[:ref_pattern]; repeatable
    #[arg(long, value_name = "MAPPING")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    github_oidc: Vec<String>,
    /// GitHub OIDC issuer (GitHub Enterprise Server has its own)
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    github_oidc_issuer: Option<String>,
    /// Audience GitHub tokens must carry [default: perfgate]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    github_oidc_audience: Option<String>,
    /// GitLab CI OIDC mapping group/project:project:role[:ref_pattern]; repeatable
    #[arg(long, value_name = "MAPPING")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    gitlab_oidc: Vec<String>,
    /// GitLab OIDC issuer [default: https://gitlab.com]
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    gitlab_oidc_issuer: Option<String>,
    /// Audience GitLab tokens must carry [default: perfgate]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    gitlab_oidc_audience: Option<String>,
    /// Custom OIDC provider issuer=URL,jwks_url=URL,audience=AUD,claim=FIELD,mapping=ID:PROJECT:ROLE[;…]; repeatable
    #[arg(long, value_name = "SPEC")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    oidc_provider: Vec<String>,
    /// Requests per second per credential, 0 = no limit [default: 0]
    #[arg(long, value_name = "RPS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit: Option<u32>,
    /// Burst per credential [default: the rate]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit_burst: Option<u32>,
    /// Longest request URL in bytes (414 above) [default: 8192]
    #[arg(long, value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_url_bytes: Option<usize>,
    /// Largest total request header size in bytes (431 above) [default: 16384]
    #[arg(long, value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_header_bytes: Option<usize>,
    /// Deepest JSON nesting accepted in a body (400 above) [default: 64]
    #[arg(long, value_name = "LEVELS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_json_depth: Option<usize>,
    /// Seconds a client gets to send its request head and its body (408 after) [default: 10]
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    client_timeout: Option<u64>,
    /// Open connections per worker thread [default: 10000]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections: Option<usize>,
    /// Serve the dashboard's files from DIR first (index.html, assets/…), embedded ones otherwise
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    static_dir: Option<std::path::PathBuf>,
    /// Seconds between periodic JWKS refreshes [default: 300]
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    jwks_refresh_interval: Option<u64>,
    /// Minimum seconds between JWKS refreshes triggered by an unknown kid [default: 10]
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    jwks_min_refresh_interval: Option<u64>,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("perfgate-server: {msg}");
    ExitCode::from(2)
}

fn db_config(db: &DbArgs) -> Result<ServerConfig, String> {
    ServerConfig::load(db.config.as_deref(), db).map_err(|e| e.to_string())
}

/// Runs an operator command; an `Err` is printed as one line and exits with 2.
fn run_command(cmd: Command) -> Result<(), String> {
    match cmd {
        Command::Keys { action } => match action {
            KeysCommand::Create {
                db,
                role,
                project,
                description,
                pattern,
                expires_at,
            } => {
                let k = ops::keys_create(
                    &db_config(&db)?,
                    &role,
                    &project,
                    &description,
                    pattern.as_deref(),
                    expires_at.as_deref(),
                )?;
                eprintln!(
                    "created key {} (role {}, project {}); it is shown only once:",
                    k.row.id, k.row.role, k.row.project
                );
                println!("{}", k.key);
            }
            KeysCommand::List { db } => {
                let keys = ops::keys_list(&db_config(&db)?)?;
                println!("{}", serde_json::json!({ "keys": keys }));
            }
            KeysCommand::Revoke { db, id } => {
                let row = ops::keys_revoke(&db_config(&db)?, &id)?;
                println!("revoked {}", row.id);
            }
        },
        Command::Export { db } => {
            let cfg = db_config(&db)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let n = ops::export(&cfg, &mut out)?;
            eprintln!("exported {n} rows");
        }
        Command::Import { db } => {
            let cfg = db_config(&db)?;
            let n = ops::import(&cfg, std::io::stdin().lock())?;
            eprintln!("imported {n} rows (rows already present were kept)");
        }
        Command::Token {
            secret,
            project,
            scopes,
            sub,
            issuer,
            audience,
            ttl,
        } => {
            let secret = secret
                .or_else(|| std::env::var("PERFGATE_JWT_SECRET").ok())
                .ok_or("--secret (or PERFGATE_JWT_SECRET) is required")?;
            let t = ops::token(&ops::TokenRequest {
                secret: &secret,
                sub: &sub,
                project: &project,
                scopes: &scopes,
                issuer: issuer.as_deref(),
                audience: audience.as_deref(),
                ttl: std::time::Duration::from_secs(ttl),
            })?;
            println!("{t}");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(cmd) = cli.command {
        return match run_command(cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        };
    }
    let mut args = cli.serve;
    if args.no_cors {
        args.cors = Some(false);
    }
    let config = match ServerConfig::load(args.config.as_deref(), &args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("perfgate-server: {e}");
            return ExitCode::from(2);
        }
    };
    let result = actix_web::rt::System::new().block_on(run_server(config));
    perfgate_server::logging::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ perfgate_server::ServerError::Config(_)) => {
            eprintln!("perfgate-server: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("perfgate-server: {e}");
            ExitCode::FAILURE
        }
    }
}
