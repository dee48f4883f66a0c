//! The gRPC contracts, generated from `proto/` at build time.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod mlops {
    pub mod v1 {
        tonic::include_proto!("mlops.v1");
    }
}

pub mod inference {
    tonic::include_proto!("inference");
}

/// The subset of ONNX's model format the registry reads on import.
pub mod onnx {
    tonic::include_proto!("onnx");
}

/// Encoded `FileDescriptorSet` of every contract, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("descriptor");

pub use mlops::v1;

impl v1::DataType {
    /// The name users write in CLI flags and pipeline files.
    pub fn short_name(self) -> &'static str {
        match self {
            Self::Int64 => "int64",
            Self::Float64 => "float64",
            Self::String => "string",
            Self::Bool => "bool",
            Self::Timestamp => "timestamp",
            Self::Unspecified => "unspecified",
        }
    }

    /// The type a short name (or its shorthand: int, float, str) names.
    pub fn from_short_name(name: &str) -> Option<Self> {
        Some(match name {
            "int64" | "int" => Self::Int64,
            "float64" | "float" => Self::Float64,
            "string" | "str" => Self::String,
            "bool" => Self::Bool,
            "timestamp" => Self::Timestamp,
            _ => return None,
        })
    }
}
