//! End-to-end scenarios: real services, real gRPC.

mod bad_input;
mod binaries;
mod compose;
mod inference_drift;
mod inference_onnx;
mod inference_swap;
mod ingestion_quality;
mod pipeline_graph;
mod pipeline_reliability;
mod pipeline_triggers;
mod quickstart;
mod registry_events;
mod registry_lifecycle;
mod registry_transfer;
mod s3_storage;
mod security;
mod training_models;
mod transport_and_storage;
