//! The registry service: registered models, immutable numbered versions with metrics, params
//! and lineage, and aliases that move between versions.

mod app;
mod grpc;
mod model_file;
mod search;
mod settings;
mod store;

pub use app::{Application, serve};
pub use settings::{RegistrySettings, Settings};
