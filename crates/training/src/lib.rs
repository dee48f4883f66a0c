//! The training service: jobs that load a dataset version, fit a model, evaluate it on a
//! held-out split, store the bundle and register it.

mod app;
mod dataset;
mod grpc;
mod jobs;
mod settings;
mod store;

pub use app::{Application, serve};
/// Checks a fit spec as a job submission does (pipelines check theirs with it at submit time).
pub use grpc::train_spec;
pub use settings::{Settings, TrainingSettings};
