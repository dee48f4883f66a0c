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
    #[command(flatten)]
    pub connection: Connection,
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

/// Credentials and TLS for client commands.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// Bearer token: an opaque `mlops_...` token or a JWT.
    #[arg(long, global = true, env = "MLOPS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) that signed the services' certificates; use https:// addresses.
    #[arg(long, global = true, env = "MLOPS_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    #[arg(long, global = true, env = "MLOPS_CLIENT_CERT")]
    pub client_cert: Option<PathBuf>,
    #[arg(long, global = true, env = "MLOPS_CLIENT_KEY")]
    pub client_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct StackArgs {
    /// Require bearer tokens on every call; the first start prints an admin token.
    #[arg(long)]
    pub auth: bool,
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
    /// Where a model version came from, or what was trained on a dataset version.
    #[command(subcommand)]
    Lineage(LineageCommand),
    /// Load generators.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Tokens, roles and the audit log (an admin token is needed when auth is on).
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Development helpers: TLS certificates, encryption keys.
    #[command(subcommand)]
    Dev(DevCommand),
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
    Ingest(Box<IngestArgs>),
    /// List datasets.
    List,
    /// Point an alias (prod, candidate, ...) at a version; `NAME@ALIAS` then names it.
    Alias {
        dataset: String,
        alias: String,
        version: u32,
    },
    /// The first rows of a version.
    Preview {
        dataset: String,
        #[arg(long, default_value_t = 10)]
        rows: u32,
    },
    /// Save a version's Parquet file (its digest is checked).
    Download {
        dataset: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// A version's schema, validation report and profile: `NAME`, `NAME@VERSION` or `NAME@ALIAS`.
    Show {
        dataset: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// A local CSV (plain, gzip or zstd), uploaded in chunks.
    #[arg(required_unless_present = "uri")]
    pub file: Option<PathBuf>,
    /// Instead of a local file: a file the server reads under its ingestion.import_root.
    #[arg(long, conflicts_with = "file")]
    pub uri: Option<String>,
    #[arg(long)]
    pub name: String,
    #[arg(long, default_value = "")]
    pub description: String,
    /// csv, jsonl or parquet (default: recognised from the data).
    #[arg(long)]
    pub format: Option<String>,
    /// Field separator (one character).
    #[arg(long)]
    pub delimiter: Option<String>,
    /// The first line is data; columns are named c1, c2, ...
    #[arg(long)]
    pub no_header: bool,
    /// A value read as missing (repeatable; default "", NA, N/A, null, NULL).
    #[arg(long = "null", value_name = "MARKER")]
    pub null_markers: Vec<String>,
    /// Declare a column's type, COL=int64|float64|bool|string|timestamp (repeatable).
    #[arg(long = "type", value_name = "COL=TYPE")]
    pub types: Vec<String>,
    /// Columns that must have no missing value (repeatable).
    #[arg(long = "not-null", value_name = "COL")]
    pub not_null: Vec<String>,
    /// Columns whose values must not repeat (repeatable).
    #[arg(long = "unique", value_name = "COL")]
    pub unique: Vec<String>,
    /// A numeric range, COL=MIN:MAX (either side may be empty; repeatable).
    #[arg(long = "range", value_name = "COL=MIN:MAX")]
    pub ranges: Vec<String>,
    /// The values a column may hold, COL=A,B,C (repeatable).
    #[arg(long = "allowed", value_name = "COL=A,B")]
    pub allowed: Vec<String>,
    /// Mask a column before it is stored, COL=drop|redact|hash|round:DIGITS|truncate_date:day|month|year
    /// (repeatable).
    #[arg(long = "mask", value_name = "COL=ACTION")]
    pub masks: Vec<String>,
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
    /// A hyperparameter, KEY=VALUE (repeatable), e.g. `--param alpha=0.5`.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Values to grid-search, KEY=V1,V2,... (repeatable), e.g. `--grid alpha=0.1,1,10`.
    #[arg(long = "grid", value_name = "KEY=V1,V2")]
    pub grid: Vec<String>,
    /// A preprocessing step, KIND[:KEY=VALUE...] (repeatable, applied in order), e.g.
    /// `--step impute:strategy=median:columns=age,bmi --step standard_scale`.
    #[arg(long = "step", value_name = "KIND[:KEY=VALUE]")]
    pub steps: Vec<String>,
    /// Cross-validation folds (stratified for classifiers); 5 by default with a grid.
    #[arg(long)]
    pub cv: Option<u32>,
    /// The metric that picks the best grid candidate (r2, rmse, accuracy, f1, roc_auc, ...).
    #[arg(long)]
    pub metric: Option<String>,
    /// Feature columns, comma-separated (default: all but the target).
    #[arg(long, value_delimiter = ',')]
    pub features: Vec<String>,
    /// Follow the job until it ends.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: also write the loss curve (gradient descent) as an SVG file.
    #[arg(long, value_name = "FILE", requires = "wait")]
    pub loss_svg: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List registered models.
    List {
        #[arg(long)]
        json: bool,
    },
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
        /// Only if the alias still points at this version (0: only if it does not exist).
        #[arg(long)]
        expect: Option<u32>,
    },
    /// Every move of a model's aliases, newest first.
    History {
        model: String,
        #[arg(long)]
        alias: Option<String>,
    },
    /// Delete a version (`M:V`); refused while an alias points at it.
    Delete { version: String },
    /// Set a tag on a version: `mlops models tag M:V KEY VALUE`.
    Tag {
        version: String,
        key: String,
        value: String,
    },
    /// A model's versions, oldest first.
    Versions {
        model: String,
        #[arg(long)]
        json: bool,
    },
    /// Archive a version (`M:V`): kept and downloadable, out of search, cannot take an alias.
    Archive { version: String },
    /// Bring an archived version (`M:V`) back.
    Restore { version: String },
    /// Delete the bundles of deleted versions that nothing references.
    Gc {
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Only bundles orphaned at least this long ago.
        #[arg(long, default_value_t = 0)]
        min_age_seconds: u64,
    },
    /// The registry's audit log, newest first: who changed what, before and after.
    Audit {
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        principal: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Follow registry events as JSON lines (replayed from `--after`, then live).
    Watch {
        #[arg(long)]
        model: Option<String>,
        /// Resume after this event seq (0: from the first event).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Only events from now on.
        #[arg(long)]
        from_now: bool,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Import a model file (ONNX, or a bundle from `mlops models download`) as a new version.
    Import {
        file: PathBuf,
        /// The model to add the version to (default: the record's model).
        #[arg(long)]
        model: Option<String>,
        /// "onnx" or "mlops" (default: detected).
        #[arg(long)]
        format: Option<String>,
        /// The version record `mlops models download` wrote: metrics, params, tags and lineage
        /// come from it, and the file must match its digest.
        #[arg(long)]
        record: Option<PathBuf>,
        /// NAME=VALUE (repeatable).
        #[arg(long = "metric")]
        metrics: Vec<String>,
        /// KEY=VALUE (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// Drift of a served version's live inputs against its training profile (`M`, `M:V` or
    /// `M@ALIAS`), from the inference service.
    Drift {
        version: String,
        #[arg(long)]
        json: bool,
    },
    /// Download a version's bundle (`M`, `M:V` or `M@ALIAS`) and its record into a directory.
    Download {
        version: String,
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Find versions: `--where "rmse < 50"`, `--tag k=v`, `--alias`, `--dataset`, `--order-by "r2 desc"`.
    Search {
        #[arg(long)]
        model: Option<String>,
        /// A metric condition (repeatable), e.g. "rmse < 50".
        #[arg(long = "where")]
        conditions: Vec<String>,
        /// KEY=VALUE (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        #[arg(long)]
        alias: Option<String>,
        #[arg(long)]
        dataset: Option<String>,
        /// "created" (newest first) or "<metric> asc|desc".
        #[arg(long, default_value = "created")]
        order_by: String,
        /// Most results to show (all pages are fetched up to this many).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
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
        /// A value for one of the file's parameters, NAME=VALUE (repeatable).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    /// Register a pipeline file whose `triggers` start its runs (schedule, new dataset
    /// version, drift); registering a name again replaces it.
    Register {
        file: PathBuf,
        /// A value for one of the file's parameters, NAME=VALUE (repeatable).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    /// Registered pipelines: their triggers, runs started and skipped, the last event.
    Registered {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a registered pipeline's triggers (runs already started go on).
    Unregister { name: String },
    /// Continue a failed run from its failed step, reusing the steps that succeeded.
    Resume {
        run: String,
        /// Follow the run until it ends; exit non-zero when it fails.
        #[arg(long)]
        wait: bool,
    },
    /// Stop a running run (it ends failed as cancelled, and can be resumed).
    Cancel { run: String },
    /// List pipeline runs.
    Runs,
    /// One run: its graph of steps with their states, attempts, times and messages.
    Show {
        run: String,
        /// Print the run as JSON.
        #[arg(long)]
        json: bool,
        /// Also write an SVG report: the graph, each candidate's metrics against the
        /// champion's, and the selected job's loss curve.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum LineageCommand {
    /// Back from a model version (`M:V`, `M@ALIAS`, `M`): training job, pipeline run and its
    /// file's digest, dataset version, validation report and source.
    Model {
        reference: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Forward from a dataset version (`D`, `D@V`, `D@ALIAS`): every model version trained on it.
    Dataset {
        reference: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Who the server thinks you are.
    Whoami,
    /// The roles and what each may do.
    Roles,
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Recent mutations in every service, newest first.
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        principal: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// viewer, data_scientist, deployer or admin.
        #[arg(long)]
        role: String,
        /// Limit the token to resources, e.g. `model:churn-*` (repeatable).
        #[arg(long = "resource")]
        resources: Vec<String>,
        /// Lifetime in seconds; 0 never expires.
        #[arg(long, default_value_t = 0)]
        ttl_seconds: u64,
    },
    List,
    Revoke {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Write a local CA and server/client certificates (PEM) for TLS and mutual TLS.
    Certs {
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Names and addresses the server certificate is valid for (repeatable).
        #[arg(long = "host", default_values_t = ["localhost", "127.0.0.1", "orchestrator", "ingestion", "training", "registry", "inference"].map(String::from))]
        hosts: Vec<String>,
    },
    /// Print a fresh 256-bit key (base64) for storage.encryption.key.
    Key,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Drive any Open Inference Protocol server (ours, Triton, MLServer) and report throughput
    /// and latency percentiles. Every answer is checked: an error is counted, not timed.
    Infer(BenchInferArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BenchInferArgs {
    /// gRPC (`http://host:8001`) or, with `--protocol http`, REST (`http://host:8000`) address.
    /// Over gRPC, `a,b,c` or a name with several addresses spreads the load over them all.
    #[arg(long)]
    pub target: String,
    #[arg(long)]
    pub model: String,
    /// Model version ("" = the server's default).
    #[arg(long, default_value = "")]
    pub model_version: String,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Connections they share (HTTP/2 multiplexes the rest).
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Seconds of measurement, after one second of warm-up.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Rows per request.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Open loop: send this many requests per second in all, on a fixed schedule, and time each
    /// from when it was due (so a stalled server cannot hide its queueing). Unset: closed loop,
    /// each worker sends as soon as its previous answer arrives.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Features per row (default: read from the model's metadata).
    #[arg(long)]
    pub features: Option<usize>,
    /// Input tensor name.
    #[arg(long, default_value = "input")]
    pub input_name: String,
    #[arg(long, value_enum, default_value_t = BenchProtocol::Grpc)]
    pub protocol: BenchProtocol,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchProtocol {
    Grpc,
    Http,
}
