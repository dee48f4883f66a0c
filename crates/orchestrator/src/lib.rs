//! The orchestrator: runs pipelines (ingest -> train -> evaluate -> register -> promote ->
//! smoke test) across the other services and keeps every run and step; starts the runs of
//! registered pipelines on their triggers (schedule, new dataset version, drift).

mod app;
mod grpc;
mod pipeline;
mod runner;
mod settings;
mod store;
mod triggers;

pub use app::{Application, serve};
pub use pipeline::Pipeline;
pub use settings::{OrchestratorSettings, Settings};
