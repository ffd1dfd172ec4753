//! The `perfgate-server` binary: parse flags, load the configuration, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use perfgate_server::{run_server, LogFormat, ServerConfig, StorageBackend};
use serde::Serialize;

/// Self-hosted baseline service for perfgate. Flags override `PERFGATE_*` environment variables,
/// which override the TOML file, which overrides the defaults.
#[derive(Parser, Serialize)]
#[command(name = "perfgate-server", version, about)]
struct Cli {
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
    /// Writer shards on PostgreSQL (SQLite always uses one writer) [default: 4]
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
    shutdown_grace: Option<u64>,
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if cli.no_cors {
        cli.cors = Some(false);
    }
    let config = match ServerConfig::load(cli.config.as_deref(), &cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("perfgate-server: {e}");
            return ExitCode::from(2);
        }
    };
    let result = actix_web::rt::System::new().block_on(run_server(config));
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
