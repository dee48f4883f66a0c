//! AuthService: tokens, whoami and the audit log over gRPC.

use std::sync::Arc;

use mlops_proto::v1::auth_service_server::AuthService;
use mlops_proto::v1::*;
use tonic::{Request, Response, Status};

use crate::ApiError;
use crate::auth::gate::{Authenticator, principal};
use crate::auth::generate_token;
use crate::auth::principal::{Grant, Principal, Role};
use crate::auth::store::TokenRecord;
use crate::ids::{validate_id, validate_name};

pub struct AuthApi {
    pub auth: Arc<Authenticator>,
}

fn info(record: TokenRecord) -> TokenInfo {
    TokenInfo {
        id: record.id,
        name: record.name,
        role: record.role,
        resources: record.resources,
        created_at_ms: record.created_at_ms,
        expires_at_ms: record.expires_at_ms,
        revoked_at_ms: record.revoked_at_ms,
        created_by: record.created_by,
    }
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn create_token(
        &self,
        request: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        let caller = principal(request.extensions().get::<Principal>())?
            .subject
            .clone();
        let request = request.into_inner();
        validate_name("name", &request.name)?;
        let role = Role::parse(&request.role)?;
        let grants = request
            .resources
            .iter()
            .map(|r| Grant::parse(r))
            .collect::<Result<Vec<_>, _>>()?;
        if request.ttl_seconds > 10 * 365 * 24 * 3600 {
            return Err(ApiError::invalid_argument("ttl_seconds is over ten years").into());
        }
        let token = generate_token();
        let record = self
            .auth
            .store()
            .create_token(
                &token,
                &request.name,
                role,
                &grants,
                request.ttl_seconds,
                &caller,
            )
            .await?;
        tracing::info!(token_id = %record.id, name = %record.name, role = %record.role, "token created");
        Ok(Response::new(CreateTokenResponse {
            token,
            info: Some(info(record)),
        }))
    }

    async fn list_tokens(
        &self,
        _request: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        let tokens = self
            .auth
            .store()
            .tokens()
            .await?
            .into_iter()
            .map(info)
            .collect();
        Ok(Response::new(ListTokensResponse { tokens }))
    }

    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        let id = request.into_inner().id;
        validate_id("id", &id)?;
        self.auth.store().revoke(&id).await?;
        tracing::info!(token_id = %id, "token revoked");
        Ok(Response::new(RevokeTokenResponse {}))
    }

    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        let caller = principal(request.extensions().get::<Principal>())?;
        Ok(Response::new(WhoAmIResponse {
            subject: caller.subject.clone(),
            role: caller.role.name().into(),
            resources: caller.grants.iter().map(Grant::text).collect(),
            actions: caller
                .role
                .actions()
                .iter()
                .map(|a| a.name().to_string())
                .collect(),
        }))
    }

    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Result<Response<ListAuditEventsResponse>, Status> {
        let request = request.into_inner();
        let events = self
            .auth
            .store()
            .audit_events(request.limit, &request.principal)
            .await?
            .into_iter()
            .map(|e| AuditEvent {
                id: e.id,
                time_ms: e.time_ms,
                service: e.service,
                principal: e.principal,
                action: e.action,
                resource: e.resource,
                result: e.result,
            })
            .collect();
        Ok(Response::new(ListAuditEventsResponse { events }))
    }
}
