//! Embedding the server in another program, under a plain tokio runtime: `run_server` brings
//! up its own actix System. Run with `cargo run --example embedded`.

use perfgate_server::{run_server, ServerConfig, StorageBackend};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = ServerConfig::new()
        .bind("0.0.0.0:8080")
        .unwrap()
        .storage_backend(StorageBackend::Sqlite)
        .sqlite_path("perfgate.db");
    run_server(config).await?;
    Ok(())
}
