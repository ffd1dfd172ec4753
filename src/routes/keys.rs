//! Key management (contract §8): create, list, revoke. Admin scope; a project admin manages
//! only its own project's keys and cannot mint keys for every project. A real credential even in
//! local mode ([`Credentialed`]).

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::json::JsonBody;
use crate::actors::key_store::{CreateKey, ListKeys, NewKey, RevokeKey};
use crate::actors::Initiator;
use crate::api::{CreateKeyResponse, KeyEntry};
use crate::api::{ListKeysResponse, RevokeKeyResponse};
use crate::auth::extract::Credentialed;
use crate::auth::{Access, CredentialKind, Gate, Principal};
use crate::domain::time::to_rfc3339;
use crate::error::ApiError;
use crate::request_id::current_request_id;
use crate::state::AppState;

/// Key management: admins not bound to some benchmarks.
fn require_key_admin(p: &Principal, what: &'static str) -> Result<(), ApiError> {
    p.allow(Access::Administer {
        project: None,
        what,
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct CreateKeyBody {
    description: String,
    role: String,
    project: String,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
}

#[utoipa::path(post, operation_id = "keys_create_key", path = "/api/v1/keys", tag = "keys", security(("bearer" = []), ("token" = [])),
    request_body = CreateKeyBody,
    responses((status = 201, description = "Created; the key is shown only here", body = crate::api::CreateKeyResponse), (status = 415, description = "Not JSON", body = crate::openapi::ErrorBody), (status = 422, description = "Wrong shape", body = crate::openapi::ErrorBody), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn create_key(
    Credentialed(principal): Credentialed,
    state: web::Data<AppState>,
    body: JsonBody<CreateKeyBody>,
) -> Result<HttpResponse, ApiError> {
    // A key bound to some benchmarks could otherwise mint a key wider than itself.
    require_key_admin(&principal, "create keys")?;
    let b = body.parse()?;
    let new = NewKey::validate(
        &b.description,
        &b.role,
        &b.project,
        b.pattern.as_deref(),
        b.expires_at.as_deref(),
    )?;
    // A project admin creates keys of its own project only (never `*`).
    principal.allow(Access::Administer {
        project: Some(&new.project),
        what: "create keys",
    })?;
    // A CI job's token lives minutes; a key made from it would outlive it.
    if principal.kind == CredentialKind::Oidc && !state.config.oidc_can_create_keys {
        crate::metrics::auth_failure("forbidden_scope");
        return Err(ApiError::forbidden(
            "OIDC tokens cannot create API keys on this server (see oidc_can_create_keys)",
        ));
    }
    // Never wider than the caller: the new key's scopes within the caller's own.
    if !new.role.scopes().is_subset_of(principal.scopes) {
        crate::metrics::auth_failure("forbidden_scope");
        return Err(ApiError::forbidden(format!(
            "Cannot create a key with role '{}': it has scopes the caller does not hold",
            new.role
        )));
    }
    // Nor longer-lived: a caller that expires caps the new key's expiry at its own.
    let mut new = new;
    if let Some(own) = principal.expires_at {
        new.expires_at = Some(new.expires_at.map_or(own, |e| e.min(own)));
    }
    let created = state
        .keys
        .write(
            "keys",
            CreateKey {
                new,
                actor: Initiator {
                    principal_id: principal.id.clone(),
                    request_id: current_request_id(),
                },
            },
        )
        .await??;
    let r = created.row;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/keys/{}", r.id)))
        .json(CreateKeyResponse {
            id: r.id,
            key: created.key,
            description: r.description,
            role: r.role,
            project: r.project,
            pattern: r.pattern,
            created_at: to_rfc3339(r.created_at),
            expires_at: r.expires_at.map(to_rfc3339),
        }))
}

#[utoipa::path(get, operation_id = "keys_list_keys", path = "/api/v1/keys", tag = "keys", security(("bearer" = []), ("token" = [])),
    responses((status = 200, description = "Keys newest first, revoked included", body = crate::api::ListKeysResponse), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn list_keys(
    Credentialed(principal): Credentialed,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_key_admin(&principal, "manage keys")?;
    let rows = state
        .keys
        .read(ListKeys {
            caller: principal.clone(),
        })
        .await??;
    let keys: Vec<KeyEntry> = rows.iter().map(KeyEntry::from_row).collect();
    Ok(HttpResponse::Ok().json(ListKeysResponse { keys }))
}

#[utoipa::path(delete, operation_id = "keys_revoke_key", path = "/api/v1/keys/{id}", tag = "keys", security(("bearer" = []), ("token" = [])),
    params(("id" = String, Path, description = "Key id")),
    responses((status = 200, description = "Revoked", body = crate::api::RevokeKeyResponse), (status = 404, description = "Unknown", body = crate::openapi::ErrorBody), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 401, description = "Missing or invalid credential", body = crate::openapi::ErrorBody), (status = 403, description = "Forbidden", body = crate::openapi::ErrorBody), (status = 503, description = "Storage unavailable or overloaded", body = crate::openapi::ErrorBody)))]
pub(crate) async fn revoke_key(
    Credentialed(principal): Credentialed,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_key_admin(&principal, "manage keys")?;
    let id = path.into_inner();
    if !crate::domain::ids::is_row_id(&id) {
        return Err(ApiError::not_found(format!("API key {id} not found")));
    }
    let row = state
        .keys
        .write(
            "keys",
            RevokeKey {
                id,
                caller: principal.clone(),
                actor: Initiator {
                    principal_id: principal.id.clone(),
                    request_id: current_request_id(),
                },
            },
        )
        .await??;
    Ok(HttpResponse::Ok().json(RevokeKeyResponse {
        id: row.id,
        revoked_at: row.revoked_at.map(to_rfc3339),
    }))
}
