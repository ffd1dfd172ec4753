//! perfgate-server: a self-hosted REST service that keeps performance baselines for CI.
//!
//! ```no_run
//! use perfgate_server::{run_server, ServerConfig, StorageBackend};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = ServerConfig::new()
//!         .bind("0.0.0.0:8080")?
//!         .storage_backend(StorageBackend::Sqlite)
//!         .sqlite_path("perfgate.db");
//!     run_server(config).await?;
//!     Ok(())
//! }
//! ```

pub mod actors;
pub mod api;
pub mod auth;
pub mod cache;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod logging;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod ops;
pub mod request_id;
pub mod routes;
pub mod server;
pub mod state;
pub mod transfer;

pub use config::{ConfigError, LogFormat, ServerConfig, StorageBackend};
pub use server::{run_server, ServerError};
