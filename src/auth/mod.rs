//! Who is calling, and what they may do (contract §2).

pub mod extract;
pub mod jwt;
pub(crate) mod key_cache;
/// `--api-keys` and the keys document, swapped whole on reload.
pub mod key_source;
/// API key format, hashing and `--api-keys` (pure rules, in `domain/`).
pub use crate::domain::api_keys as keys;
pub mod oidc;

use crate::error::ApiError;

pub use crate::domain::access::{
    Access, BenchFilter, CredentialKind, Denied, Grant, Principal, Role, Scope, Scopes,
};

/// The permission gate of the HTTP layer: [`Principal::check`], with refusals counted and
/// answered 403.
pub(crate) trait Gate {
    fn allow(&self, access: Access<'_>) -> Result<(), ApiError>;
    /// `scope` on `project` (and on `benchmark` when the request names one).
    fn authorize(
        &self,
        scope: Scope,
        project: &str,
        benchmark: Option<&str>,
    ) -> Result<(), ApiError> {
        self.allow(Access::Project {
            scope,
            project,
            benchmark,
        })
    }
}

impl Gate for Principal {
    fn allow(&self, access: Access<'_>) -> Result<(), ApiError> {
        self.check(access).map_err(|d| {
            crate::metrics::auth_failure(d.reason());
            ApiError::forbidden(d.to_string())
        })
    }
}
