//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "mlops",
    version,
    about = "Ingest, train, register, serve and orchestrate ML models"
)]
pub struct Cli {
    #[command(flatten)]
    pub endpoints: Endpoints,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the services are (for client commands).
#[derive(Debug, Clone, Args)]
pub struct Endpoints {
    #[arg(
        long,
        global = true,
        env = "MLOPS_ORCHESTRATOR_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub orchestrator: String,
    #[arg(
        long,
        global = true,
        env = "MLOPS_INGESTION_ADDR",
        default_value = "http://127.0.0.1:50052"
    )]
    pub ingestion: String,
    #[arg(
        long,
        global = true,
        env = "MLOPS_TRAINING_ADDR",
        default_value = "http://127.0.0.1:50053"
    )]
    pub training: String,
    #[arg(
        long,
        global = true,
        env = "MLOPS_REGISTRY_ADDR",
        default_value = "http://127.0.0.1:50054"
    )]
    pub registry: String,
    #[arg(
        long,
        global = true,
        env = "MLOPS_INFERENCE_ADDR",
        default_value = "http://127.0.0.1:8001"
    )]
    pub inference: String,
}

#[derive(Debug, Clone, Args)]
pub struct StackArgs {
    /// Where metadata and artifacts live (default `.mlops`, or `storage.data_dir`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Settings file (TOML) shared by every service.
    #[arg(long, env = "MLOPS_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run all five services in this process on their default ports.
    Up(StackArgs),
    /// Start the stack, run the quickstart pipeline on the bundled diabetes data, show results.
    Quickstart {
        #[command(flatten)]
        stack: StackArgs,
        /// Keep serving after the quickstart instead of exiting.
        #[arg(long)]
        serve: bool,
    },
    /// Datasets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Submit a training job.
    Train(TrainArgs),
    /// Registered models.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Predict with a served model: `mlops predict M[:V|@ALIAS] --json '[[...], ...]'`.
    Predict {
        model: String,
        /// Rows of features, as a JSON array of arrays.
        #[arg(long)]
        json: String,
    },
    /// Pipelines.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// Check a service's gRPC health (exit 0 when SERVING); used by container health checks.
    Health {
        /// The service URL, e.g. http://127.0.0.1:50052.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        addr: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Upload a CSV file as a new version of a dataset.
    Ingest {
        file: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List datasets.
    List,
}

#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// `NAME` or `NAME@VERSION` (default: latest version).
    #[arg(long)]
    pub dataset: String,
    #[arg(long)]
    pub target: String,
    #[arg(long, default_value = "linear")]
    pub model: String,
    /// Register the fitted model under this name.
    #[arg(long)]
    pub register_as: Option<String>,
    #[arg(long)]
    pub test_fraction: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Follow the job until it ends.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List registered models.
    List,
    /// Show a version: `M`, `M:V` or `M@ALIAS`.
    Show {
        model: String,
        #[arg(long)]
        json: bool,
    },
    /// Point an alias at a version.
    Alias {
        model: String,
        alias: String,
        version: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Run a pipeline file.
    Run {
        file: PathBuf,
        /// Follow the run until it ends; exit non-zero when it fails.
        #[arg(long)]
        wait: bool,
    },
    /// List pipeline runs.
    Runs,
}
