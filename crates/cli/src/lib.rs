//! The `mlops` command: a client for every service, plus `mlops up` and `mlops quickstart`,
//! which run the whole stack in this process.

pub mod admin;
pub mod args;
pub mod bench;
pub mod commands;
pub mod data;
pub mod lineage;
pub mod models;
pub mod plot;
pub mod refs;
pub mod report;
pub mod stack;

/// The bundled quickstart: a real dataset and the pipeline that uses it.
pub const QUICKSTART_CSV: &str = include_str!("../../../examples/datasets/diabetes.csv");
pub const QUICKSTART_PIPELINE: &str = include_str!("../../../examples/pipelines/quickstart.yaml");
