//! The orchestrator: runs pipelines (ingest -> train -> evaluate -> register -> promote ->
//! smoke test) across the other services and keeps every run and step.

mod app;
mod grpc;
mod pipeline;
mod runner;
mod settings;
mod store;

pub use app::{Application, serve};
pub use pipeline::Pipeline;
pub use settings::{OrchestratorSettings, Settings};
