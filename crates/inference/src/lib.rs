//! The inference service: registered models served over the Open Inference Protocol, gRPC
//! (Triton/KServe clients work unchanged) and REST. Stateless: models are resolved through the
//! registry and held in memory only.

mod app;
mod batching;
mod drift;
mod grpc;
mod models;
mod onnx;
mod prediction_log;
mod repository;
mod rest;
mod settings;
pub mod tensor;

pub use app::{Application, serve};
pub use drift::DriftSettings;
pub use settings::{InferenceSettings, Settings};
pub use tensor::{INPUT_NAME, OUTPUT_NAME};
