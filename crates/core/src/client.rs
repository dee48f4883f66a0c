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
    Ok(InterceptedService::new(
        endpoint(url, options)?.connect_lazy(),
        bearer(options)?,
    ))
}

/// A channel that spreads calls over several servers: `url` is a comma-separated list, or a
/// name that resolves to several addresses (a headless Kubernetes Service). Each call goes to
/// the next ready server, so one client loads every replica.
pub fn balanced_channel(url: &str, options: &ClientOptions) -> Result<Channel, ApiError> {
    let mut urls: Vec<(String, Option<String>)> = Vec::new();
    for one in url.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        urls.extend(resolve_all(one));
    }
    if urls.len() <= 1 {
        return channel(url.split(',').next().unwrap_or(url).trim(), options);
    }
    let endpoints = urls
        .iter()
        .map(|(u, name)| {
            // An address found by resolving a name still proves that name over TLS.
            let options = ClientOptions {
                token: options.token.clone(),
                tls: match (&options.tls, name) {
                    (Some(tls), Some(name)) => Some(tls.clone().domain_name(name.clone())),
                    (tls, _) => tls.clone(),
                },
            };
            endpoint(u, &options)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(InterceptedService::new(
        tonic::transport::Channel::balance_list(endpoints.into_iter()),
        bearer(options)?,
    ))
}

/// `http://name:port` as one URL per address the name resolves to, each with the name (itself
/// when it resolves to one address or none, or is an address already).
fn resolve_all(url: &str) -> Vec<(String, Option<String>)> {
    use std::net::ToSocketAddrs;
    let itself = || vec![(url.to_string(), None)];
    let Ok(parsed) = url::Url::parse(url) else {
        return itself();
    };
    let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
        return itself();
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return itself();
    }
    let addresses: Vec<std::net::SocketAddr> = match (host, port).to_socket_addrs() {
        Ok(found) => found.collect(),
        Err(_) => return itself(),
    };
    if addresses.len() <= 1 {
        return itself();
    }
    addresses
        .iter()
        .map(|a| (format!("{}://{a}", parsed.scheme()), Some(host.to_string())))
        .collect()
}

fn endpoint(url: &str, options: &ClientOptions) -> Result<Endpoint, ApiError> {
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| ApiError::invalid_argument(format!("invalid endpoint URL {url:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    if let Some(tls) = &options.tls {
        endpoint = endpoint
            .tls_config(tls.clone())
            .map_err(|e| ApiError::invalid_argument(format!("TLS for {url:?}: {e}")))?;
    }
    Ok(endpoint)
}

fn bearer(options: &ClientOptions) -> Result<Bearer, ApiError> {
    Ok(match &options.token {
        Some(token) => Bearer(Some(format!("Bearer {token}").parse().map_err(|_| {
            ApiError::invalid_argument("the token contains characters not allowed in a header")
        })?)),
        None => Bearer(None),
    })
}
