//! Keys and audit: authentication lookups, key management, the audit log, and the first-start
//! bootstrap key.

use crate::db::audit::{self, AuditEntry, AuditFilter, AuditRow};
use crate::db::keys::{self as q, KeyRow};
use crate::db::{read_tx, write_tx, DbConn, DbPool};
use crate::domain::access::{BenchFilter, CredentialKind, Principal, Role};
use crate::domain::api_keys::{display_prefix, generate_key, hash_key, key_id_from_hash};
use crate::domain::time::now_micros;
use crate::store_actor;

use super::{Initiator, Op, StoreError};
use crate::db::DbError;

pub(crate) struct KeyStore {
    pool: DbPool,
    /// Compiled benchmark globs of stored keys, by glob: a key's glob is compiled once, not on
    /// every request it authenticates.
    filters: std::collections::HashMap<String, BenchFilter>,
}

store_actor!(KeyStore);

/// Most compiled globs a key store thread keeps (it starts over beyond).
const FILTER_CACHE_MAX: usize = 4096;

impl KeyStore {
    pub(crate) fn new(pool: DbPool) -> Self {
        Self {
            pool,
            filters: std::collections::HashMap::new(),
        }
    }

    /// The compiled glob, from the cache when this thread has compiled it before.
    fn filter(&mut self, glob: &str) -> Option<BenchFilter> {
        if let Some(f) = self.filters.get(glob) {
            return Some(f.clone());
        }
        let f = BenchFilter::from_glob(glob).ok()?;
        if self.filters.len() >= FILTER_CACHE_MAX {
            self.filters.clear();
        }
        self.filters.insert(glob.to_owned(), f.clone());
        Some(f)
    }
}

/// Why a stored key does not authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyRejection {
    Unknown,
    Revoked,
    Expired,
}

/// Looks a key up by its hash, in the database: on every request on PostgreSQL and memory, so a
/// revocation made through any replica takes effect at once; on SQLite when the key cache does
/// not hold the key (`auth::key_cache`, which drops everything on any change).
pub(crate) struct Authenticate {
    pub key_hash: String,
}

impl Op<KeyStore> for Authenticate {
    type Output = Result<Result<Principal, KeyRejection>, StoreError>;
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
        let benchmarks = match &row.pattern {
            Some(p) => match s.filter(p) {
                Some(f) => Some(f),
                None => return Ok(Err(KeyRejection::Unknown)),
            },
            None => None,
        };
        Ok(principal_of(&row, benchmarks).ok_or(KeyRejection::Unknown))
    }
}

/// The principal of a stored key whose glob (if any) is compiled as `benchmarks`.
pub(crate) fn principal_of(row: &KeyRow, benchmarks: Option<BenchFilter>) -> Option<Principal> {
    let role = Role::parse(&row.role)?;
    let mut p = Principal::new(
        row.id.clone(),
        role,
        (row.project != "*").then(|| row.project.clone()),
        benchmarks,
        CredentialKind::ApiKey,
    );
    p.expires_at = row.expires_at;
    Some(p)
}

pub(crate) use crate::domain::api_keys::NewKey;

/// The row and the plain key, which exists only in this value and in the response.
pub struct CreatedKey {
    pub row: KeyRow,
    pub key: String,
}

/// Creates a key and its audit event in one transaction.
pub(crate) fn create_key(
    conn: &mut DbConn,
    new: &NewKey,
    actor: &Initiator,
) -> Result<CreatedKey, DbError> {
    write_tx(conn, |c| insert_key(c, new, actor))
}

/// The statements of [`create_key`], inside the caller's transaction.
fn insert_key(c: &mut DbConn, new: &NewKey, actor: &Initiator) -> Result<CreatedKey, DbError> {
    {
        let now = now_micros();
        let key = generate_key();
        let hash = hash_key(&key);
        let row = KeyRow {
            id: key_id_from_hash(&hash),
            key_hash: hash,
            key_prefix: display_prefix(&key),
            description: new.description.clone(),
            role: new.role.as_str().to_owned(),
            project: new.project.clone(),
            pattern: new.pattern.clone(),
            created_at: now,
            expires_at: new.expires_at,
            revoked_at: None,
        };
        q::insert(c, &row)?;
        let mut extra = serde_json::Map::new();
        extra.insert("role".into(), row.role.clone().into());
        extra.insert("description".into(), row.description.clone().into());
        audit::insert(
            c,
            AuditEntry {
                actor: &actor.principal_id,
                action: "create",
                resource_type: "key",
                resource_id: &row.id,
                project: &row.project,
                request_id: &actor.request_id,
                extra,
            },
            now,
        )?;
        Ok(CreatedKey { row, key })
    }
}

/// Revokes a key (and writes the audit event) in one transaction. `visible` says which keys
/// the caller may see: others are reported as not found.
pub(crate) fn revoke_key(
    conn: &mut DbConn,
    id: &str,
    visible: impl Fn(&KeyRow) -> bool,
    actor: &Initiator,
) -> Result<KeyRow, StoreError> {
    write_tx(conn, |c| {
        let row = q::find_by_id(c, id)?
            .filter(|r| visible(r))
            .ok_or_else(|| StoreError::NotFound(format!("API key {id} not found")))?;
        if row.revoked_at.is_some() {
            return Ok(row); // already revoked: idempotent, no second event
        }
        let now = now_micros();
        q::revoke(c, id, now)?;
        audit::insert(
            c,
            AuditEntry {
                actor: &actor.principal_id,
                action: "delete",
                resource_type: "key",
                resource_id: id,
                project: &row.project,
                request_id: &actor.request_id,
                extra: serde_json::Map::new(),
            },
            now,
        )?;
        Ok(KeyRow {
            revoked_at: Some(now),
            ..row
        })
    })
}

pub(crate) struct CreateKey {
    pub new: NewKey,
    pub actor: Initiator,
}

impl Op<KeyStore> for CreateKey {
    type Output = Result<CreatedKey, StoreError>;
    fn run(self, s: &mut KeyStore) -> Self::Output {
        let mut c = s.pool.get().map_err(DbError::from)?;
        Ok(create_key(&mut c, &self.new, &self.actor)?)
    }
}

/// A stored key the caller may see and revoke: one no wider than itself
/// ([`Principal::may_manage_key`]).
pub(crate) fn manageable_by(caller: &Principal, row: &KeyRow) -> bool {
    Role::parse(&row.role)
        .is_some_and(|r| caller.may_manage_key(&row.project, r.scopes(), row.expires_at))
}

pub(crate) struct RevokeKey {
    pub id: String,
    /// Keys the caller may not manage are not found.
    pub caller: Principal,
    pub actor: Initiator,
}

impl Op<KeyStore> for RevokeKey {
    type Output = Result<KeyRow, StoreError>;
    fn run(self, s: &mut KeyStore) -> Self::Output {
        let mut c = s.pool.get().map_err(DbError::from)?;
        let caller = &self.caller;
        revoke_key(&mut c, &self.id, |r| manageable_by(caller, r), &self.actor)
    }
}

/// The keys the caller may manage, newest first.
pub(crate) struct ListKeys {
    pub caller: Principal,
}

impl Op<KeyStore> for ListKeys {
    type Output = Result<Vec<KeyRow>, StoreError>;
    fn run(self, s: &mut KeyStore) -> Self::Output {
        let mut c = s.pool.get()?;
        let mut rows = q::list(&mut c, self.caller.project.as_deref())?;
        rows.retain(|r| manageable_by(&self.caller, r));
        Ok(rows)
    }
}

pub(crate) struct ListAudit {
    pub filter: AuditFilter,
}

impl Op<KeyStore> for ListAudit {
    type Output = Result<(Vec<AuditRow>, i64), StoreError>;
    fn run(self, s: &mut KeyStore) -> Self::Output {
        let mut c = s.pool.get()?;
        read_tx(&mut c, |c| Ok(audit::list(c, &self.filter)?))
    }
}

/// What start-up without any configured credential found.
#[derive(Debug)]
pub(crate) enum Bootstrap {
    /// A fresh database: this admin key was created (shown once, only its hash is stored).
    Created(String),
    /// The database holds keys (revoked or not): they are the credentials.
    HasKeys,
    /// The database holds data but no key: minting an admin key for whoever reads the log would
    /// hand that data to them. Start-up stops.
    Refused,
}

/// With no credential configured at all, a truly fresh install (no key, no data) gets one admin
/// key, printed once on stderr; only its hash is stored. A database that has held a key keeps
/// using its keys (revoking every key later does not bring a bootstrap key back); one that holds
/// data but has never held a key is refused. Replicas starting together take an advisory lock,
/// so only one of them creates the key.
pub(crate) fn ensure_bootstrap_key(conn: &mut DbConn) -> Result<Bootstrap, DbError> {
    write_tx(conn, |c| {
        crate::db::lock_bootstrap(c)?;
        if q::count_all(c)? > 0 {
            return Ok(Bootstrap::HasKeys);
        }
        if q::holds_data(c)? {
            return Ok(Bootstrap::Refused);
        }
        let new = NewKey {
            description: "bootstrap admin key (created on first start)".into(),
            role: Role::Admin,
            project: "*".into(),
            pattern: None,
            expires_at: None,
        };
        let actor = Initiator {
            principal_id: "system:bootstrap".into(),
            request_id: "startup".into(),
        };
        Ok(Bootstrap::Created(insert_key(c, &new, &actor)?.key))
    })
}
