//! The `perfgate-server` binary: parse flags, load the configuration, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use perfgate_server::config::ConfigFlags;
use perfgate_server::{ops, run_server, ServerConfig, StorageBackend};
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
    /// Judge a CI run's receipts against each benchmark's history on a server (exit 0 pass/warn, 1 fail, 3 inconclusive, 2 error)
    Gate {
        /// Server URL (with or without /api/v1) [env: PERFGATE_SERVER_URL]
        #[arg(long, env = "PERFGATE_SERVER_URL")]
        url: String,
        /// Project [env: PERFGATE_PROJECT]
        #[arg(long, env = "PERFGATE_PROJECT")]
        project: String,
        /// API key or JWT [env: PERFGATE_API_KEY]
        #[arg(long, env = "PERFGATE_API_KEY", hide_env_values = true)]
        key: String,
        /// Runner class label: history only from runs with the same label
        #[arg(long)]
        runner: Option<String>,
        /// Once final and not failed, store the runs as baseline versions
        #[arg(long)]
        record: bool,
        /// Post the receipts as a confirmation attempt of this gate
        #[arg(long, value_name = "GATE_ID")]
        attempt_of: Option<String>,
        /// Metric to judge (repeatable; default: the project's settings)
        #[arg(long = "metric", value_name = "METRIC")]
        metrics: Vec<String>,
        /// Git ref of the run [env: GITHUB_REF, CI_COMMIT_REF_NAME]
        #[arg(long)]
        git_ref: Option<String>,
        /// Commit of the run [env: GITHUB_SHA, CI_COMMIT_SHA]
        #[arg(long)]
        git_sha: Option<String>,
        /// A pull request's merge base: history ends at the runs recorded for it
        #[arg(long)]
        base_sha: Option<String>,
        /// perfgate.run.v1 receipts, one per benchmark
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
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

/// The server's flags: `--config` and one flag per configuration key (generated with the
/// keys, see `perfgate_server::config`).
#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file [default: config/perfgate.toml when present]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    flags: ConfigFlags,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("perfgate-server: {msg}");
    ExitCode::from(2)
}

fn db_config(db: &DbArgs) -> Result<ServerConfig, String> {
    ServerConfig::load(db.config.as_deref(), db).map_err(|e| e.to_string())
}

/// The first of these environment variables that is set (CI systems name them differently).
fn ci_env(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

/// Runs an operator command; an `Err` is printed as one line and exits with 2.
fn run_command(cmd: Command) -> Result<ExitCode, String> {
    if let Command::Gate {
        url,
        project,
        key,
        runner,
        record,
        attempt_of,
        metrics,
        git_ref,
        git_sha,
        base_sha,
        files,
    } = cmd
    {
        let cmd = perfgate_server::client::gate::GateCommand {
            url,
            project,
            key,
            files,
            runner,
            record,
            attempt_of,
            metrics,
            git_ref: git_ref.or_else(|| ci_env(&["GITHUB_REF", "CI_COMMIT_REF_NAME"])),
            git_sha: git_sha.or_else(|| ci_env(&["GITHUB_SHA", "CI_COMMIT_SHA"])),
            base_sha,
        };
        let outcome = perfgate_server::client::gate::run(&cmd)?;
        return Ok(ExitCode::from(outcome.exit_code()));
    }
    run_operator(cmd).map(|()| ExitCode::SUCCESS)
}

fn run_operator(cmd: Command) -> Result<(), String> {
    match cmd {
        Command::Gate { .. } => return Err("internal: gate is not an operator command".into()),
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

/// At most two malloc arenas (unless `MALLOC_ARENA_MAX` says otherwise): glibc gives threads
/// arenas of their own up to 8 per core, and memory freed in one stays with it; the server runs
/// about 40 threads. Two arenas keep the peak RSS under load about 6 MB lower (bench/run.sh
/// --scale, "1M spread").
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt sets a tunable of glibc's allocator; it is called first thing in
        // main, before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    if let Some(cmd) = cli.command {
        return match run_command(cmd) {
            Ok(code) => code,
            Err(e) => fail(e),
        };
    }
    let args = cli.serve;
    let config = match ServerConfig::load(args.config.as_deref(), &args.flags) {
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
            eprintln!("perfgate-server: {}", with_causes(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line (`storage: could not connect to the database:
/// connection to server … failed: SSL error: certificate verify failed`): at start-up the
/// operator needs the cause. Causes already spelt out by the message are not repeated.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use perfgate_server::config::KEYS;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// The operator commands' database flags are hand-written (they take a subset); each must
    /// be a configuration key, spelt like the server's flag, and serialise under the key's name.
    #[test]
    fn db_flags_are_config_keys() {
        let cmd = DbArgs::augment_args(clap::Command::new("db"));
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if id == "config" {
                continue;
            }
            assert!(KEYS.iter().any(|k| k.name == id), "--{id} is not a key");
            assert_eq!(a.get_long(), Some(id.replace('_', "-").as_str()));
        }
        let db = DbArgs {
            config: None,
            storage_type: Some(StorageBackend::Sqlite),
            database_url: Some("x.db".into()),
        };
        let v = serde_json::to_value(&db).unwrap();
        for k in v.as_object().unwrap().keys() {
            assert!(KEYS.iter().any(|key| key.name == k), "{k}");
        }
    }
}
