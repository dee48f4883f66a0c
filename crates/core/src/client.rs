//! gRPC channels between services and from the CLI: lazily connecting, with the caller's
//! bearer token on every call and TLS when configured.

use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{ClientTlsConfig, Endpoint};

use crate::ApiError;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Largest message a client decodes or encodes: uploads and inference batches are big.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Adds `authorization: Bearer <token>` to every call when a token is set.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The channel type every client in the workspace uses.
pub type Channel = InterceptedService<tonic::transport::Channel, Bearer>;

/// How to reach a peer: which token to present and which CA to trust.
#[derive(Clone, Default)]
pub struct ClientOptions {
    pub token: Option<String>,
    pub tls: Option<ClientTlsConfig>,
}

/// A lazily connecting channel: the peer may start later, calls fail with UNAVAILABLE until
/// it does.
pub fn channel(url: &str, options: &ClientOptions) -> Result<Channel, ApiError> {
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| ApiError::invalid_argument(format!("invalid endpoint URL {url:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    if let Some(tls) = &options.tls {
        endpoint = endpoint
            .tls_config(tls.clone())
            .map_err(|e| ApiError::invalid_argument(format!("TLS for {url:?}: {e}")))?;
    }
    let bearer = match &options.token {
        Some(token) => Bearer(Some(format!("Bearer {token}").parse().map_err(|_| {
            ApiError::invalid_argument("the token contains characters not allowed in a header")
        })?)),
        None => Bearer(None),
    };
    Ok(InterceptedService::new(endpoint.connect_lazy(), bearer))
}
