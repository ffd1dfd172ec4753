//! Operator commands that work straight against the database, without the HTTP API:
//! bootstrap or recover keys (`keys create|list|revoke`) and mint test JWTs (`token`).

use std::time::Duration;

use crate::actors::key_store::{create_key, revoke_key, CreatedKey};
use crate::actors::Initiator;
use crate::api::KeyEntry;
use crate::auth::jwt::{mint, Audience, Claims};
use crate::config::{ServerConfig, StorageBackend};
use crate::db::keys::KeyRow;
use crate::db::{Storage, StorageOptions};
use crate::domain::api_keys::NewKey;

fn open(cfg: &ServerConfig) -> Result<Storage, String> {
    let backend = cfg.backend().map_err(|e| e.to_string())?;
    if backend == StorageBackend::Memory {
        return Err("key commands need a persistent database (sqlite or postgres)".into());
    }
    let url = match backend {
        StorageBackend::Postgres => cfg.database_url_exposed().unwrap_or_default().to_owned(),
        _ => cfg.sqlite_file().to_string_lossy().into_owned(),
    };
    Storage::open(StorageOptions {
        backend,
        url,
        read_pool_size: 1,
        write_pool_size: 1,
        connect_timeout: Duration::from_secs(10),
        busy_timeout: Duration::from_secs(10),
        sqlite_synchronous: "FULL",
        sqlite_heap_limit: cfg.sqlite_heap_limit(),
        pg: crate::db::PgPoolOptions::default(),
    })
    .map_err(|e| format!("cannot open the database: {e}"))
}

fn operator() -> Initiator {
    Initiator {
        principal_id: format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "operator".into())
        ),
        request_id: format!("cli-{}", uuid::Uuid::new_v4().simple()).into(),
    }
}

pub fn keys_create(
    cfg: &ServerConfig,
    role: &str,
    project: &str,
    description: &str,
    pattern: Option<&str>,
    expires_at: Option<&str>,
) -> Result<CreatedKey, String> {
    let new = NewKey::validate(description, role, project, pattern, expires_at)
        .map_err(|e| e.to_string())?;
    let storage = open(cfg)?;
    let mut c = storage.write_pool.get().map_err(|e| e.to_string())?;
    create_key(&mut c, &new, &operator()).map_err(|e| e.to_string())
}

pub fn keys_list(cfg: &ServerConfig) -> Result<Vec<KeyEntry>, String> {
    let storage = open(cfg)?;
    let mut c = storage.read_pool.get().map_err(|e| e.to_string())?;
    let rows = crate::db::keys::list(&mut c, None).map_err(|e| e.to_string())?;
    Ok(rows.iter().map(KeyEntry::from_row).collect())
}

pub fn keys_revoke(cfg: &ServerConfig, id: &str) -> Result<KeyRow, String> {
    let storage = open(cfg)?;
    let mut c = storage.write_pool.get().map_err(|e| e.to_string())?;
    revoke_key(&mut c, id, |_| true, &operator()).map_err(|e| match e {
        crate::actors::StoreError::NotFound(m) => m,
        other => format!("{other:?}"),
    })
}

pub struct TokenRequest<'a> {
    pub secret: &'a str,
    pub sub: &'a str,
    pub project: &'a str,
    pub scopes: &'a str,
    pub issuer: Option<&'a str>,
    pub audience: Option<&'a str>,
    pub ttl: Duration,
}

pub fn token(r: &TokenRequest<'_>) -> Result<String, String> {
    if r.secret.len() < 32 {
        return Err("the secret must be at least 32 bytes (as the server requires)".into());
    }
    let scopes: Vec<String> = r
        .scopes
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    for s in &scopes {
        if !["read", "write", "promote", "delete", "admin"].contains(&s.as_str()) {
            return Err(format!(
                "unknown scope {s:?} (read, write, promote, delete, admin)"
            ));
        }
    }
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        sub: r.sub.to_owned(),
        project_id: r.project.to_owned(),
        scopes,
        exp: now + r.ttl.as_secs(),
        iat: Some(now),
        nbf: Some(now),
        iss: r.issuer.map(str::to_owned),
        aud: r.audience.map(|a| Audience::One(a.to_owned())),
    };
    mint(r.secret, &claims).map_err(|e| e.to_string())
}

/// `perfgate-server export`: the whole database as JSON lines on `out`.
pub fn export(cfg: &ServerConfig, out: &mut impl std::io::Write) -> Result<u64, String> {
    let storage = open(cfg)?;
    let mut c = storage.read_pool.get().map_err(|e| e.to_string())?;
    crate::transfer::export(&mut c, out).map_err(|e| format!("export failed: {e}"))
}

/// `perfgate-server import`: JSON lines from `input` into the database (idempotent).
pub fn import(cfg: &ServerConfig, input: impl std::io::BufRead) -> Result<u64, String> {
    let storage = open(cfg)?;
    // A running server caches answers of the SQLite file it owns: no import behind its back.
    let _owner = match storage.backend {
        StorageBackend::Sqlite => {
            Some(crate::db::SqliteOwner::acquire(&cfg.sqlite_file()).map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    let mut c = storage.write_pool.get().map_err(|e| e.to_string())?;
    crate::transfer::import(&mut c, input).map_err(|e| format!("import failed: {e}"))
}
