//! gRPC channels between services and from the CLI.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::ApiError;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Largest message a client or server decodes: uploads and inference batches are big.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// A lazily connecting channel: the peer may start later, calls fail with UNAVAILABLE until
/// it does.
pub fn channel(url: &str) -> Result<Channel, ApiError> {
    Ok(Endpoint::from_shared(url.to_string())
        .map_err(|e| ApiError::invalid_argument(format!("invalid endpoint URL {url:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect_lazy())
}
