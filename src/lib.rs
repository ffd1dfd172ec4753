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

pub(crate) mod actors;
pub(crate) mod api;
pub mod auth;
pub(crate) mod cache;
pub mod client;
pub mod config;
pub(crate) mod db;
pub mod domain;
pub(crate) mod error;
pub mod logging;
pub(crate) mod metrics;
pub(crate) mod middleware;
pub(crate) mod openapi;
pub mod ops;
pub(crate) mod request_id;
pub mod routes;
pub(crate) mod server;
pub(crate) mod state;
pub(crate) mod transfer;

pub use config::{ConfigError, LogFormat, ServerConfig, StorageBackend};
pub use server::{run_server, ServerError};
