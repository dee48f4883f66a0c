//! The gate in front of every router: authenticate, check the rule, audit mutations.

use std::cell::RefCell;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::jwt::JwtVerifier;
use crate::auth::policy::{self, Access};
use crate::auth::principal::{Principal, ResourceKind, Role};
use crate::auth::store::{AuditRecord, AuthStore};
use crate::auth::{AuthSettings, TOKEN_PREFIX, generate_token};
use crate::storage::sha256_hex;
use crate::{ApiError, ErrorKind, now_ms};

tokio::task_local! {
    /// The resource a mutation named, set by `authorize` and read by the gate for the audit log.
    static AUDIT_RESOURCE: RefCell<String>;
}

pub struct Authenticator {
    enabled: bool,
    store: AuthStore,
    jwt: Option<JwtVerifier>,
    service_token_hash: Option<String>,
    service_token: Option<String>,
}

impl Authenticator {
    /// Opens the shared auth store under `data_dir`. With auth enabled: requires the service
    /// token, installs the configured admin token, or generates and prints one on first start.
    pub async fn open(
        settings: &AuthSettings,
        storage: &crate::config::StorageSettings,
    ) -> Result<Arc<Self>, ApiError> {
        let store = AuthStore::open(&storage.database("auth")).await?;
        if !settings.enabled {
            return Ok(Arc::new(Self {
                enabled: false,
                store,
                jwt: None,
                service_token_hash: None,
                service_token: None,
            }));
        }
        if settings.service_token.len() < 32 {
            return Err(ApiError::invalid_argument(
                "auth.service_token must be set (32 characters or more) when auth is enabled",
            ));
        }
        let admin = if settings.admin_token.is_empty() {
            None
        } else if !settings.admin_token.starts_with(TOKEN_PREFIX)
            || settings.admin_token.len() < TOKEN_PREFIX.len() + 32
        {
            return Err(ApiError::invalid_argument(format!(
                "auth.admin_token must start with {TOKEN_PREFIX} followed by 32 or more characters"
            )));
        } else {
            Some(settings.admin_token.clone())
        };
        let generated = admin.is_none();
        let admin = admin.unwrap_or_else(generate_token);
        if store.bootstrap_admin(&admin).await? && generated {
            // Printed once, to the console only: there are no default credentials.
            eprintln!(
                "\nmlops: created the first admin token (shown only now, store it safely):\n  {admin}\n"
            );
        }
        Ok(Arc::new(Self {
            enabled: true,
            store,
            jwt: JwtVerifier::from_settings(&settings.jwt)?,
            service_token_hash: Some(sha256_hex(settings.service_token.as_bytes())),
            service_token: Some(settings.service_token.clone()),
        }))
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn store(&self) -> &AuthStore {
        &self.store
    }

    /// The token this service presents to its peers.
    pub fn service_token(&self) -> Option<&str> {
        self.service_token.as_deref()
    }

    /// Who presents these headers. Errors never echo the token.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        if !self.enabled {
            return Ok(Principal::anonymous_admin());
        }
        let missing = || {
            ApiError::new(
                ErrorKind::Unauthenticated,
                "missing bearer token (authorization: Bearer <token>)",
            )
        };
        let value = headers.get(header::AUTHORIZATION).ok_or_else(missing)?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(missing)?;
        let hash = sha256_hex(token.as_bytes());
        if self
            .service_token_hash
            .as_deref()
            .is_some_and(|h| constant_time_eq(h.as_bytes(), hash.as_bytes()))
        {
            return Ok(Principal {
                subject: "service".into(),
                role: Role::Service,
                grants: Vec::new(),
            });
        }
        if token.starts_with(TOKEN_PREFIX) {
            return self.store.verify(token).await;
        }
        match &self.jwt {
            Some(jwt) if token.matches('.').count() == 2 => jwt.verify(token),
            _ => Err(ApiError::new(
                ErrorKind::Unauthenticated,
                "invalid, expired or revoked token",
            )),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// State of the gate middleware: the authenticator and the name of the service it guards.
#[derive(Clone)]
pub struct Gate {
    pub auth: Arc<Authenticator>,
    pub service: &'static str,
}

impl Gate {
    pub fn wrap(self, router: axum::Router) -> axum::Router {
        router.layer(axum::middleware::from_fn_with_state(self, gate))
    }
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

fn deny(error: ApiError, grpc: bool) -> Response {
    if grpc {
        return tonic::Status::new(error.kind.code(), error.message)
            .into_http::<axum::body::Body>();
    }
    let status = match error.kind {
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        _ => StatusCode::FORBIDDEN,
    };
    let mut response = (
        status,
        axum::Json(serde_json::json!({ "error": error.message })),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

async fn gate(State(gate): State<Gate>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let grpc = is_grpc(request.headers());
    let Some(rule) = policy::rule(&path) else {
        let error = ApiError::new(
            ErrorKind::PermissionDenied,
            format!("no policy allows {path}"),
        );
        return deny(error, grpc);
    };
    if rule.access == Access::Public {
        return next.run(request).await;
    }
    // Refused mutations are audited too: they are what an investigation looks for.
    let principal = match gate.auth.authenticate(request.headers()).await {
        Ok(principal) => principal,
        Err(error) => {
            if rule.mutation {
                gate.audit(
                    "unauthenticated",
                    &path,
                    String::new(),
                    format!("{:?}", error.kind.code()),
                )
                .await;
            }
            return deny(error, grpc);
        }
    };
    if let Access::Requires(action) = rule.access
        && let Err(error) = principal.require(action)
    {
        if rule.mutation {
            gate.audit(
                &principal.subject,
                &path,
                String::new(),
                format!("{:?}", error.kind.code()),
            )
            .await;
        }
        return deny(error, grpc);
    }
    request.extensions_mut().insert(principal.clone());
    if !rule.mutation {
        return next.run(request).await;
    }
    let (response, resource) = AUDIT_RESOURCE
        .scope(RefCell::new(String::new()), async {
            let response = next.run(request).await;
            (response, AUDIT_RESOURCE.with(|r| r.borrow().clone()))
        })
        .await;
    let result = match response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
    {
        Some(code) => format!("{:?}", tonic::Code::from_bytes(code.as_bytes())),
        None if grpc => "Ok".to_string(),
        None => response.status().as_u16().to_string(),
    };
    gate.audit(&principal.subject, &path, resource, result)
        .await;
    response
}

impl Gate {
    async fn audit(&self, principal: &str, action: &str, resource: String, result: String) {
        let event = AuditRecord {
            id: 0,
            time_ms: now_ms(),
            service: self.service.to_string(),
            principal: principal.to_string(),
            action: action.to_string(),
            resource,
            result,
        };
        if let Err(error) = self.auth.store().record(&event).await {
            tracing::error!(%error, "audit event not recorded");
        }
    }
}

/// The caller, as the gate authenticated it (`request.extensions().get::<Principal>()`).
pub fn principal(principal: Option<&Principal>) -> Result<&Principal, ApiError> {
    principal.ok_or_else(|| {
        ApiError::new(
            ErrorKind::PermissionDenied,
            "request did not pass the authentication gate",
        )
    })
}

/// Checks the caller's per-resource grants and names the resource in the audit event.
pub fn authorize(
    caller: Option<&Principal>,
    kind: ResourceKind,
    name: &str,
) -> Result<(), ApiError> {
    let _ = AUDIT_RESOURCE.try_with(|r| *r.borrow_mut() = format!("{}:{name}", kind.name()));
    let caller = principal(caller)?;
    if caller.can_see(kind, name) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorKind::PermissionDenied,
            format!("{} may not access {} {name:?}", caller.subject, kind.name()),
        ))
    }
}

/// For list calls: keeps what the caller's grants let it see.
pub fn authorize_visible<T>(
    caller: Option<&Principal>,
    kind: ResourceKind,
    items: Vec<T>,
    name: impl Fn(&T) -> &str,
) -> Result<Vec<T>, ApiError> {
    let caller = principal(caller)?;
    Ok(items
        .into_iter()
        .filter(|item| caller.can_see(kind, name(item)))
        .collect())
}
