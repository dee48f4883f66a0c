//! JWT verification: HS256 and RS256, issuer, audience and expiry always checked.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};

use crate::auth::JwtSettings;
use crate::auth::principal::{Grant, Principal, Role};
use crate::{ApiError, ErrorKind};

pub struct JwtVerifier {
    hs256: Option<DecodingKey>,
    rs256: Option<DecodingKey>,
    issuer: String,
    audience: String,
    role_claim: String,
    resources_claim: String,
}

fn rejected(reason: &str) -> ApiError {
    ApiError::new(
        ErrorKind::Unauthenticated,
        format!("invalid token: {reason}"),
    )
}

impl JwtVerifier {
    /// `None` when no JWT key is configured.
    pub fn from_settings(settings: &JwtSettings) -> Result<Option<Self>, ApiError> {
        if !settings.configured() {
            return Ok(None);
        }
        if settings.issuer.is_empty() || settings.audience.is_empty() {
            return Err(ApiError::invalid_argument(
                "auth.jwt.issuer and auth.jwt.audience are required with a JWT key",
            ));
        }
        let hs256 = (!settings.hs256_secret.is_empty())
            .then(|| DecodingKey::from_secret(settings.hs256_secret.as_bytes()));
        let rs256 = if settings.rs256_public_key_file.is_empty() {
            None
        } else {
            let pem = std::fs::read(&settings.rs256_public_key_file).map_err(|e| {
                ApiError::invalid_argument(format!(
                    "auth.jwt.rs256_public_key_file cannot be read: {e}"
                ))
            })?;
            Some(DecodingKey::from_rsa_pem(&pem).map_err(|e| {
                ApiError::invalid_argument(format!(
                    "auth.jwt.rs256_public_key_file is not an RSA public key: {e}"
                ))
            })?)
        };
        Ok(Some(Self {
            hs256,
            rs256,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            role_claim: settings.role_claim.clone(),
            resources_claim: settings.resources_claim.clone(),
        }))
    }

    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let header = decode_header(token).map_err(|_| rejected("malformed"))?;
        // The key is chosen by algorithm among those configured: no algorithm confusion.
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self.rs256.as_ref(),
            _ => None,
        }
        .ok_or_else(|| rejected("unsupported signing algorithm"))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        let claims = decode::<Map<String, Value>>(token, key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                rejected(match e.kind() {
                    K::ExpiredSignature => "expired",
                    K::InvalidIssuer => "wrong issuer",
                    K::InvalidAudience => "wrong audience",
                    K::InvalidSignature => "bad signature",
                    _ => "not verifiable",
                })
            })?
            .claims;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let role = claims
            .get(&self.role_claim)
            .and_then(Value::as_str)
            .and_then(|r| Role::parse(r).ok())
            .ok_or_else(|| rejected("no valid role claim"))?;
        let grants = match claims.get(&self.resources_claim) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| rejected("resource claim holds a non-string"))
                        .and_then(Grant::parse)
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(rejected("resource claim is not a list")),
        };
        Ok(Principal {
            subject: format!("jwt:{subject}"),
            role,
            grants,
        })
    }
}
