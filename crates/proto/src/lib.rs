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
