//! Persisted API keys: authentication lookups and the first-start bootstrap key.

use crate::auth::keys::{display_prefix, generate_key, hash_key, key_id_from_hash};
use crate::auth::{BenchFilter, Principal, Role};
use crate::db::keys::{self as q, KeyRow};
use crate::db::{write_tx, DbConn, DbPool};
use crate::domain::time::now_micros;
use crate::error::DbError;
use crate::store_actor;

use super::Op;

pub struct KeyStore {
    pool: DbPool,
}

store_actor!(KeyStore);

impl KeyStore {
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }
}

/// Why a stored key does not authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRejection {
    Unknown,
    Revoked,
    Expired,
}

/// Looks a key up by its hash. Read from the database on every request, so a revocation made
/// through any replica takes effect at once.
pub struct Authenticate {
    pub key_hash: String,
}

impl Op<KeyStore> for Authenticate {
    type Output = Result<Result<Principal, KeyRejection>, DbError>;
    fn run(self, s: &mut KeyStore) -> Self::Output {
        let mut c = s.pool.get()?;
        let Some(row) = q::find_by_hash(&mut c, &self.key_hash)? else {
            return Ok(Err(KeyRejection::Unknown));
        };
        if row.revoked_at.is_some() {
            return Ok(Err(KeyRejection::Revoked));
        }
        if row.expires_at.is_some_and(|e| e <= now_micros()) {
            return Ok(Err(KeyRejection::Expired));
        }
        Ok(principal_of(&row).ok_or(KeyRejection::Unknown))
    }
}

pub fn principal_of(row: &KeyRow) -> Option<Principal> {
    let role = Role::parse(&row.role)?;
    let benchmarks = match &row.pattern {
        Some(p) => Some(BenchFilter::from_glob(p).ok()?),
        None => None,
    };
    Some(Principal {
        id: row.id.clone(),
        role,
        scopes: role.scopes(),
        project: (row.project != "*").then(|| row.project.clone()),
        benchmarks,
    })
}

/// With no credential configured at all, a fresh install gets one admin key, printed once on
/// stderr; only its hash is stored. Returns the key when one was created.
pub fn ensure_bootstrap_key(conn: &mut DbConn) -> Result<Option<String>, DbError> {
    write_tx(conn, |c| {
        let now = now_micros();
        if q::count_active(c, now)? > 0 {
            return Ok(None);
        }
        let key = generate_key();
        let hash = hash_key(&key);
        q::insert(
            c,
            &KeyRow {
                id: key_id_from_hash(&hash),
                key_hash: hash,
                key_prefix: display_prefix(&key),
                description: "bootstrap admin key (created on first start)".into(),
                role: "admin".into(),
                project: "*".into(),
                pattern: None,
                created_at: now,
                expires_at: None,
                revoked_at: None,
            },
        )?;
        Ok(Some(key))
    })
}
