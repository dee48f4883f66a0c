//! Authentication and deny-by-default authorization for every endpoint, and the audit log.
//!
//! Every request passes the [`gate`]: its path must have an explicit rule in [`policy`] (no
//! rule: PERMISSION_DENIED), the bearer token must verify (opaque API token, JWT, or the
//! service token), and the caller's role must allow the rule's action. Handlers then check
//! per-resource grants with [`authorize`], which also names the resource in the audit event.

pub mod api;
pub mod gate;
pub mod jwt;
pub mod policy;
pub mod principal;
pub mod store;

pub use gate::{Authenticator, Gate, authorize, authorize_visible};
pub use policy::{Access, Action, Rule};
pub use principal::{Principal, ResourceKind, Role};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Off for the zero-setup `mlops up`; on in the compose deployment.
    pub enabled: bool,
    /// An opaque token (`mlops_...`) to install as the admin token on first start. When empty
    /// and no admin token exists, one is generated and printed once.
    pub admin_token: String,
    /// The token services present to each other. Required when auth is enabled.
    pub service_token: String,
    pub jwt: JwtSettings,
}

/// JWTs from an OIDC provider or another issuer: HS256 with a shared secret, RS256 with the
/// issuer's public key. Issuer, audience and expiry are always checked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct JwtSettings {
    pub hs256_secret: String,
    /// PEM file of the RS256 public key.
    pub rs256_public_key_file: String,
    pub issuer: String,
    pub audience: String,
    /// The claim holding the role (viewer, data_scientist, deployer, admin).
    pub role_claim: String,
    /// Optional claim holding per-resource grants (a list of "kind:pattern").
    pub resources_claim: String,
}

impl Default for JwtSettings {
    fn default() -> Self {
        Self {
            hs256_secret: String::new(),
            rs256_public_key_file: String::new(),
            issuer: String::new(),
            audience: String::new(),
            role_claim: "mlops_role".into(),
            resources_claim: "mlops_resources".into(),
        }
    }
}

impl JwtSettings {
    pub fn configured(&self) -> bool {
        !self.hs256_secret.is_empty() || !self.rs256_public_key_file.is_empty()
    }
}

/// Tokens look like `mlops_` followed by 64 hex digits.
pub const TOKEN_PREFIX: &str = "mlops_";

/// A fresh random opaque token.
pub fn generate_token() -> String {
    format!(
        "{TOKEN_PREFIX}{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}
