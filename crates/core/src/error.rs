//! The error taxonomy: every service error has a kind, and the kind alone decides the gRPC code.

use tonic::{Code, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    ResourceExhausted,
    Unauthenticated,
    PermissionDenied,
    Unavailable,
    /// A concurrent change won (compare-and-swap lost): retry with fresh state.
    Aborted,
    /// Stored bytes no longer match their digest, or fail authentication.
    DataLoss,
    Internal,
}

impl ErrorKind {
    pub fn code(self) -> Code {
        match self {
            Self::InvalidArgument => Code::InvalidArgument,
            Self::NotFound => Code::NotFound,
            Self::AlreadyExists => Code::AlreadyExists,
            Self::FailedPrecondition => Code::FailedPrecondition,
            Self::ResourceExhausted => Code::ResourceExhausted,
            Self::Unauthenticated => Code::Unauthenticated,
            Self::PermissionDenied => Code::PermissionDenied,
            Self::Unavailable => Code::Unavailable,
            Self::Aborted => Code::Aborted,
            Self::DataLoss => Code::DataLoss,
            Self::Internal => Code::Internal,
        }
    }
}

/// An error a client can act on: a kind and a message that names the offending field or object.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::AlreadyExists, message)
    }
    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::FailedPrecondition, message)
    }
    pub fn resource_exhausted(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceExhausted, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    pub fn aborted(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Aborted, message)
    }
    pub fn data_loss(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::DataLoss, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Keeps the code and message of an error another service returned.
    pub fn from_status(context: &str, status: &Status) -> Self {
        let kind = match status.code() {
            Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidArgument,
            Code::NotFound => ErrorKind::NotFound,
            Code::AlreadyExists => ErrorKind::AlreadyExists,
            Code::FailedPrecondition => ErrorKind::FailedPrecondition,
            Code::Aborted => ErrorKind::Aborted,
            Code::DataLoss => ErrorKind::DataLoss,
            Code::ResourceExhausted => ErrorKind::ResourceExhausted,
            Code::Unauthenticated => ErrorKind::Unauthenticated,
            Code::PermissionDenied => ErrorKind::PermissionDenied,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => ErrorKind::Unavailable,
            // tonic reports a connection that broke mid-call (the peer was killed) as UNKNOWN
            // "transport error": the peer is unavailable, which is worth a retry.
            Code::Unknown if status.message() == "transport error" => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        };
        Self::new(kind, format!("{context}: {}", status.message()))
    }
}

/// The one mapping to a gRPC status. Internal details are logged, not sent to the client.
pub fn to_status(kind: ErrorKind, message: String) -> Status {
    if kind == ErrorKind::Internal {
        tracing::error!(error = %message, "internal error");
        return Status::internal("internal error; see the server log");
    }
    Status::new(kind.code(), message)
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        to_status(error.kind, error.message)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::internal(format!("database: {error}"))
    }
}

impl From<object_store::Error> for ApiError {
    fn from(error: object_store::Error) -> Self {
        match error {
            object_store::Error::NotFound { path, .. } => {
                Self::not_found(format!("artifact {path} not found"))
            }
            // Network and remote-store failures (S3 down, throttled): worth a retry.
            object_store::Error::Generic { store, source } => {
                Self::unavailable(format!("artifact store ({store}): {source}"))
            }
            other => Self::internal(format!("artifact store: {other}")),
        }
    }
}

impl From<std::io::Error> for ApiError {
    fn from(error: std::io::Error) -> Self {
        Self::internal(format!("i/o: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_connection_is_unavailable_and_other_unknowns_internal() {
        let broken = Status::new(Code::Unknown, "transport error");
        assert_eq!(
            ApiError::from_status("training", &broken).kind,
            ErrorKind::Unavailable
        );
        let odd = Status::new(Code::Unknown, "something else");
        assert_eq!(
            ApiError::from_status("training", &odd).kind,
            ErrorKind::Internal
        );
    }

    #[test]
    fn kinds_map_to_codes_and_internal_details_stay_private() {
        let status = Status::from(ApiError::not_found("model 'm' not found"));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "model 'm' not found");
        let status = Status::from(ApiError::internal("disk path /secret failed"));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("/secret"));
    }

    #[test]
    fn status_from_a_peer_keeps_its_code() {
        let peer = Status::not_found("dataset 'x' not found");
        let error = ApiError::from_status("ingestion", &peer);
        assert_eq!(error.kind, ErrorKind::NotFound);
        assert!(error.message.contains("dataset 'x'"));
    }
}
