//! What each command does. Client commands talk gRPC to the services named by `Endpoints`.

use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use mlops_core::CancellationToken;
use mlops_core::client::Channel;
use mlops_core::client::{self, ClientOptions, MAX_MESSAGE_BYTES};
use mlops_core::tensor::{fp64_from_raw, fp64_to_raw};
use mlops_proto::inference::ModelInferRequest;
use mlops_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use mlops_proto::inference::model_infer_request::InferInputTensor;
use mlops_proto::v1::ingestion_service_client::IngestionServiceClient;
use mlops_proto::v1::orchestrator_service_client::OrchestratorServiceClient;
use mlops_proto::v1::registry_service_client::RegistryServiceClient;
use mlops_proto::v1::training_service_client::TrainingServiceClient;
use mlops_proto::v1::upload_dataset_request::Part;
use mlops_proto::v1::*;
use serde_json::{Value, json};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::args::*;
use crate::models::*;
use crate::refs::{Selector, dataset_ref, model_ref};
use crate::stack::{Stack, StackOptions};

pub(crate) const UPLOAD_CHUNK_BYTES: usize = 1 << 20;

/// Where the services are and how to talk to them (token, TLS).
pub struct Ctx {
    pub endpoints: Endpoints,
    pub options: ClientOptions,
}

impl std::ops::Deref for Ctx {
    type Target = Endpoints;
    fn deref(&self) -> &Endpoints {
        &self.endpoints
    }
}

impl Ctx {
    pub fn connect(&self, service: &str, url: &str) -> anyhow::Result<Channel> {
        client::channel(url, &self.options).with_context(|| format!("{service} address"))
    }

    /// For inference: spreads calls over every replica (`a,b,c`, or a name with several
    /// addresses such as a headless Kubernetes Service).
    pub fn connect_balanced(&self, service: &str, url: &str) -> anyhow::Result<Channel> {
        client::balanced_channel(url, &self.options).with_context(|| format!("{service} address"))
    }
}

/// The client side of `--token`, `--ca-cert`, `--client-cert`, `--client-key`.
fn client_options(connection: &Connection) -> anyhow::Result<ClientOptions> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    };
    let tls = match &connection.ca_cert {
        None => None,
        Some(ca) => {
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
            if let (Some(cert), Some(key)) = (&connection.client_cert, &connection.client_key) {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            Some(tls)
        }
    };
    Ok(ClientOptions {
        token: connection.token.clone(),
        tls,
    })
}

/// A gRPC error as a user reads it: which service, what it said.
pub(crate) fn rpc<'a>(
    service: &'static str,
    url: &'a str,
) -> impl Fn(tonic::Status) -> anyhow::Error + 'a {
    move |status| match status.code() {
        tonic::Code::Unavailable => anyhow::anyhow!(
            "cannot reach the {service} service at {url}: {} (is `mlops up` running?)",
            status.message()
        ),
        code => anyhow::anyhow!("{service}: {} ({code:?})", status.message()),
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let e = Ctx {
        options: client_options(&cli.connection)?,
        endpoints: cli.endpoints,
    };
    match cli.command {
        Command::Up(stack) => up(stack).await,
        Command::Quickstart { stack, serve } => quickstart(stack, serve).await,
        Command::Data(DataCommand::Ingest(args)) => ingest(&e, *args).await,
        Command::Data(DataCommand::List) => list_datasets(&e).await,
        Command::Data(DataCommand::Show { dataset, json }) => {
            crate::data::show(&e, &dataset, json).await
        }
        Command::Data(DataCommand::Preview { dataset, rows }) => {
            crate::data::preview(&e, &dataset, rows).await
        }
        Command::Data(DataCommand::Download { dataset, out }) => {
            crate::data::download(&e, &dataset, &out).await
        }
        Command::Data(DataCommand::Alias {
            dataset,
            alias,
            version,
        }) => crate::data::alias(&e, dataset, alias, version).await,
        Command::Train(args) => train(&e, args).await,
        Command::Models(ModelsCommand::List { json }) => list_models(&e, json).await,
        Command::Models(ModelsCommand::Show { model, json }) => show_model(&e, &model, json).await,
        Command::Models(ModelsCommand::Alias {
            model,
            alias,
            version,
            expect,
        }) => set_alias(&e, model, alias, version, expect).await,
        Command::Models(ModelsCommand::History { model, alias }) => {
            alias_history(&e, model, alias).await
        }
        Command::Models(ModelsCommand::Delete { version }) => delete_version(&e, &version).await,
        Command::Models(ModelsCommand::Tag {
            version,
            key,
            value,
        }) => tag_version(&e, &version, key, value).await,
        Command::Models(ModelsCommand::Versions { model, json }) => {
            list_versions(&e, model, json).await
        }
        Command::Models(ModelsCommand::Archive { version }) => {
            set_archived(&e, &version, true).await
        }
        Command::Models(ModelsCommand::Restore { version }) => {
            set_archived(&e, &version, false).await
        }
        Command::Models(ModelsCommand::Gc {
            dry_run,
            min_age_seconds,
        }) => collect_garbage(&e, dry_run, min_age_seconds).await,
        Command::Models(ModelsCommand::Audit {
            model,
            principal,
            limit,
            json,
        }) => {
            let query = ListRegistryEventsRequest {
                model_name: model.unwrap_or_default(),
                principal: principal.unwrap_or_default(),
                limit,
                ..Default::default()
            };
            registry_audit(&e, query, json).await
        }
        Command::Models(ModelsCommand::Watch {
            model,
            after,
            from_now,
            count,
        }) => {
            let request = WatchRegistryRequest {
                after_seq: after,
                model_name: model.unwrap_or_default(),
                from_now,
            };
            watch_registry(&e, request, count).await
        }
        Command::Models(ModelsCommand::Import {
            file,
            model,
            format,
            record,
            metrics,
            tags,
        }) => {
            let header = import_header(model, format, record, &metrics, &tags)?;
            import_version(&e, &file, header).await
        }
        Command::Models(ModelsCommand::Drift { version, json }) => {
            show_drift(&e, &version, json).await
        }
        Command::Models(ModelsCommand::Download { version, out }) => {
            download_version(&e, &version, &out).await
        }
        Command::Models(ModelsCommand::Search {
            model,
            conditions,
            tags,
            alias,
            dataset,
            order_by,
            limit,
            json,
        }) => {
            let query = SearchModelVersionsRequest {
                model_name: model.unwrap_or_default(),
                metric_filters: conditions,
                tags: pairs(&tags, "--tag")?.into_iter().collect(),
                alias: alias.unwrap_or_default(),
                dataset: dataset.unwrap_or_default(),
                order_by,
                ..Default::default()
            };
            search_versions(&e, query, limit, json).await
        }
        Command::Predict { model, json } => predict(&e, &model, &json).await,
        Command::Pipeline(PipelineCommand::Run { file, wait, set }) => {
            let (yaml, parameters) = pipeline_file(&file, &set)?;
            run_pipeline(&e, yaml, parameters, wait).await.map(drop)
        }
        Command::Pipeline(PipelineCommand::Register { file, set }) => {
            let (pipeline_yaml, parameters) = pipeline_file(&file, &set)?;
            let registered =
                OrchestratorServiceClient::new(e.connect("orchestrator", &e.orchestrator)?)
                    .register_pipeline(RegisterPipelineRequest {
                        pipeline_yaml,
                        parameters,
                    })
                    .await
                    .map_err(rpc("orchestrator", &e.orchestrator))?
                    .into_inner();
            println!(
                "registered pipeline {}: {}",
                registered.name,
                trigger_summary(&registered)
            );
            Ok(())
        }
        Command::Pipeline(PipelineCommand::Registered { json }) => list_registered(&e, json).await,
        Command::Pipeline(PipelineCommand::Unregister { name }) => {
            OrchestratorServiceClient::new(e.connect("orchestrator", &e.orchestrator)?)
                .unregister_pipeline(UnregisterPipelineRequest { name: name.clone() })
                .await
                .map_err(rpc("orchestrator", &e.orchestrator))?;
            println!("unregistered pipeline {name}");
            Ok(())
        }
        Command::Pipeline(PipelineCommand::Resume { run, wait }) => {
            resume_run(&e, run, wait).await.map(drop)
        }
        Command::Pipeline(PipelineCommand::Runs) => list_runs(&e).await,
        Command::Pipeline(PipelineCommand::Cancel { run }) => {
            OrchestratorServiceClient::new(e.connect("orchestrator", &e.orchestrator)?)
                .cancel_pipeline_run(CancelPipelineRunRequest { id: run.clone() })
                .await
                .map_err(rpc("orchestrator", &e.orchestrator))?;
            println!("cancelling pipeline run {run}");
            Ok(())
        }
        Command::Lineage(LineageCommand::Model { reference, json }) => {
            crate::lineage::of_model(&e, &reference, json).await
        }
        Command::Lineage(LineageCommand::Dataset { reference, json }) => {
            crate::lineage::of_dataset(&e, &reference, json).await
        }
        Command::Pipeline(PipelineCommand::Show { run, json, svg }) => {
            show_run(&e, run, json, svg.as_deref()).await
        }
        Command::Health { addr } => health(&e, &addr).await,
        Command::Bench(BenchCommand::Infer(args)) => crate::bench::infer(&e, args).await,
        Command::Auth(command) => crate::admin::auth(&e, command).await,
        Command::Dev(command) => crate::admin::dev(command),
    }
}

fn stack_options(args: &StackArgs) -> StackOptions {
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    if args.auth {
        env.push(("MLOPS__AUTH__ENABLED".into(), "true".into()));
        if !env.iter().any(|(k, _)| k == "MLOPS__AUTH__SERVICE_TOKEN") {
            // Lives only in this process: every service here shares it.
            env.push((
                "MLOPS__AUTH__SERVICE_TOKEN".into(),
                mlops_core::auth::generate_token(),
            ));
        }
    }
    StackOptions {
        config_file: mlops_core::config::settings_file(args.config.clone()),
        data_dir: args.data_dir.clone(),
        ephemeral_ports: false,
        env,
    }
}

fn init_logs() {
    let telemetry = mlops_core::config::TelemetrySettings {
        filter: "warn".into(),
        ..Default::default()
    };
    mlops_core::telemetry::init(&telemetry);
}

async fn up(args: StackArgs) -> anyhow::Result<()> {
    mlops_core::telemetry::init(&Default::default());
    let stack = Stack::start(stack_options(&args)).await?;
    let a = &stack.addrs;
    println!(
        "mlops is up (data in {}):\n  orchestrator {}\n  ingestion    {}\n  training     {}\n  registry     {}\n  inference    {} (gRPC), http://{} (REST)\nCtrl-C to stop.",
        stack.data_dir.display(),
        a.orchestrator,
        a.ingestion,
        a.training,
        a.registry,
        a.inference_grpc,
        a.inference_http
    );
    stack
        .run_until(mlops_core::server::shutdown_on_signal())
        .await?;
    Ok(())
}

async fn quickstart(args: StackArgs, serve: bool) -> anyhow::Result<()> {
    init_logs();
    let started = std::time::Instant::now();
    let stack = Stack::start(stack_options(&args)).await?;
    std::fs::create_dir_all(stack.sources_dir())?;
    std::fs::write(
        stack.sources_dir().join("diabetes.csv"),
        crate::QUICKSTART_CSV,
    )?;
    let a = stack.addrs.clone();
    let url = |addr| format!("{}://{addr}", stack.scheme);
    let endpoints = Ctx {
        endpoints: Endpoints {
            orchestrator: url(a.orchestrator),
            ingestion: url(a.ingestion),
            training: url(a.training),
            registry: url(a.registry),
            inference: url(a.inference_grpc),
        },
        // The in-process operator acts with the stack's own service credentials.
        options: stack.client_options.clone(),
    };
    let stop = CancellationToken::new();
    let serving = tokio::spawn(stack.run_until(stop.clone()));
    let outcome = async {
        run_pipeline(
            &endpoints,
            crate::QUICKSTART_PIPELINE.to_string(),
            Default::default(),
            true,
        )
        .await?;
        let model = "diabetes-linear@champion";
        println!("\nPredictions of {model} for the first 3 patients:");
        let rows = first_rows(3)?;
        predict(&endpoints, model, &serde_json::to_string(&rows)?).await
    }
    .await;
    println!("\nquickstart took {:.1} s", started.elapsed().as_secs_f64());
    if serve && outcome.is_ok() {
        println!("serving; Ctrl-C to stop");
        mlops_core::server::shutdown_on_signal().cancelled().await;
    }
    stop.cancel();
    serving.await.context("stack task")??;
    outcome
}

/// The first feature rows of the bundled data (everything but the target).
fn first_rows(n: usize) -> anyhow::Result<Vec<Vec<f64>>> {
    let mut reader = csv::Reader::from_reader(crate::QUICKSTART_CSV.as_bytes());
    let mut rows = Vec::new();
    for record in reader.records().take(n) {
        let record = record?;
        let values: Vec<f64> = record.iter().map(str::parse).collect::<Result<_, _>>()?;
        rows.push(values[..values.len() - 1].to_vec());
    }
    Ok(rows)
}

pub(crate) fn spinner(message: impl Into<String>) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("valid template"),
    );
    bar.set_message(message.into());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

async fn ingest(e: &Ctx, args: IngestArgs) -> anyhow::Result<()> {
    let header = crate::data::upload_header(&args)?;
    let content = match &args.file {
        Some(file) => tokio::fs::read(file)
            .await
            .with_context(|| format!("reading {}", file.display()))?,
        None => Vec::new(),
    };
    let bar = ProgressBar::new(content.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("uploading {bar:30} {bytes}/{total_bytes}")
            .expect("valid template"),
    );
    let header = UploadDatasetRequest {
        part: Some(Part::Header(header)),
    };
    let progress = bar.clone();
    let chunks: Vec<Vec<u8>> = content
        .chunks(UPLOAD_CHUNK_BYTES)
        .map(<[u8]>::to_vec)
        .collect();
    let stream = futures::stream::iter(std::iter::once(header)).chain(
        futures::stream::iter(chunks).map(move |chunk| {
            progress.inc(chunk.len() as u64);
            UploadDatasetRequest {
                part: Some(Part::Chunk(chunk)),
            }
        }),
    );
    let response = IngestionServiceClient::new(e.connect("ingestion", &e.ingestion)?)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
        .upload_dataset(stream)
        .await
        .map_err(rpc("ingestion", &e.ingestion))?
        .into_inner();
    bar.finish_and_clear();
    let v = response.version.unwrap_or_default();
    let columns: Vec<String> = v
        .columns
        .iter()
        .map(|c| format!("{}:{}", c.name, crate::data::type_name(c.data_type)))
        .collect();
    println!(
        "{} {}: {} rows, {} columns ({})",
        if response.created {
            "stored"
        } else {
            "unchanged"
        },
        v.id,
        v.row_count,
        v.column_count,
        columns.join(", ")
    );
    if let Some(report) = &v.report {
        crate::data::print_verdict(report);
    }
    Ok(())
}

async fn list_datasets(e: &Ctx) -> anyhow::Result<()> {
    let datasets = IngestionServiceClient::new(e.connect("ingestion", &e.ingestion)?)
        .list_datasets(ListDatasetsRequest {})
        .await
        .map_err(rpc("ingestion", &e.ingestion))?
        .into_inner()
        .datasets;
    println!("{:<32} {:>8}  DESCRIPTION", "NAME", "LATEST");
    for d in datasets {
        println!("{:<32} {:>8}  {}", d.name, d.latest_version, d.description);
    }
    Ok(())
}

fn job_state(state: i32) -> &'static str {
    match JobState::try_from(state).unwrap_or_default() {
        JobState::Pending => "pending",
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Skipped => "skipped",
        JobState::Unspecified => "unknown",
    }
}

fn print_metrics(metrics: &std::collections::HashMap<String, f64>) {
    let mut names: Vec<&String> = metrics.keys().collect();
    names.sort();
    for name in names {
        println!("  {name:<18} {:.6}", metrics[name]);
    }
}

/// `--step KIND[:KEY=VALUE...]` as a preprocessing step; `columns` is a comma list.
fn parse_step(text: &str) -> anyhow::Result<PreprocessingStep> {
    let mut parts = text.split(':');
    let kind = parts.next().unwrap_or_default().trim().to_string();
    if kind.is_empty() {
        bail!("--step takes KIND[:KEY=VALUE...], got {text:?}");
    }
    let mut step = PreprocessingStep {
        kind,
        ..Default::default()
    };
    for part in parts {
        let Some((key, value)) = part.split_once('=') else {
            bail!("--step {text:?}: {part:?} is not KEY=VALUE");
        };
        if key == "columns" {
            step.columns = value.split(',').map(str::to_string).collect();
        } else {
            step.options.insert(key.to_string(), value.to_string());
        }
    }
    Ok(step)
}

fn fit_spec(args: &TrainArgs) -> anyhow::Result<FitSpec> {
    Ok(FitSpec {
        params: crate::models::pairs(&args.params, "--param")?
            .into_iter()
            .collect(),
        grid: crate::models::pairs(&args.grid, "--grid")?
            .into_iter()
            .map(|(k, v)| {
                let values = v.split(',').map(str::to_string).collect();
                (k, ParamValues { values })
            })
            .collect(),
        preprocessing: args
            .steps
            .iter()
            .map(|s| parse_step(s))
            .collect::<anyhow::Result<_>>()?,
        cv_folds: args.cv.unwrap_or(0),
        selection_metric: args.metric.clone().unwrap_or_default(),
        features: args.features.clone(),
    })
}

async fn train(e: &Ctx, args: TrainArgs) -> anyhow::Result<()> {
    let mut reference = dataset_ref(&args.dataset)?;
    if !reference.alias.is_empty() {
        // A job records a version number: resolve the alias now.
        reference.version = IngestionServiceClient::new(e.connect("ingestion", &e.ingestion)?)
            .get_dataset_version(reference.clone())
            .await
            .map_err(rpc("ingestion", &e.ingestion))?
            .into_inner()
            .version;
    }
    let (dataset, dataset_version) = (reference.dataset, reference.version);
    let fit = fit_spec(&args)?;
    let mut training = TrainingServiceClient::new(e.connect("training", &e.training)?);
    let job = training
        .submit_training_job(SubmitTrainingJobRequest {
            dataset,
            dataset_version,
            target_column: args.target,
            model_type: args.model,
            register_as: args.register_as.unwrap_or_default(),
            test_fraction: args.test_fraction,
            seed: args.seed,
            fit: Some(fit),
        })
        .await
        .map_err(rpc("training", &e.training))?
        .into_inner();
    println!("submitted training job {}", job.id);
    if !args.wait {
        return Ok(());
    }
    let bar = spinner("queued");
    let mut updates = training
        .watch_training_job(WatchTrainingJobRequest { id: job.id.clone() })
        .await
        .map_err(rpc("training", &e.training))?
        .into_inner();
    let mut last = job;
    while let Some(update) = updates.next().await {
        last = update.map_err(rpc("training", &e.training))?;
        let detail = if let Some(loss) = last.loss_curve.last() {
            format!(
                " epoch {} loss {loss:.6} {}",
                last.loss_curve.len(),
                crate::plot::sparkline(&last.loss_curve, 30)
            )
        } else if let Some(c) = last.candidates.last() {
            format!(
                " candidate {}, {} folds scored",
                last.candidates.len(),
                c.fold_scores.len()
            )
        } else {
            String::new()
        };
        bar.set_message(format!(
            "{} ({:.0}%){detail}",
            last.stage,
            last.progress * 100.0
        ));
    }
    bar.finish_and_clear();
    if last.state() != JobState::Succeeded {
        bail!(
            "training job {} {}: {}",
            last.id,
            job_state(last.state),
            last.error
        );
    }
    println!(
        "job {} succeeded on {}@{} ({} train / {} test rows)",
        last.id, last.dataset, last.dataset_version, last.train_rows, last.test_rows
    );
    print_metrics(&last.metrics);
    print_fit(&last);
    if let Some(path) = &args.loss_svg {
        if last.loss_curve.is_empty() {
            bail!(
                "--loss-svg: {} records no loss curve (only gradient_descent does)",
                last.model_type
            );
        }
        let title = format!(
            "{} on {}@{}",
            last.model_type, last.dataset, last.dataset_version
        );
        std::fs::write(path, crate::plot::loss_svg(&title, &last.loss_curve))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("loss curve written to {}", path.display());
    }
    if !last.model_name.is_empty() {
        println!("registered {}:{}", last.model_name, last.model_version);
    }
    Ok(())
}

/// Grid scores, the loss curve and warnings of a finished job.
fn print_fit(job: &TrainingJob) {
    if !job.candidates.is_empty() {
        println!("cross-validation ({}):", job.selection_metric);
        for c in &job.candidates {
            let mut params: Vec<String> =
                c.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            params.sort();
            println!("  {:<40} {:.6} ± {:.6}", params.join(" "), c.mean, c.std);
        }
    }
    if let (Some(first), Some(last)) = (job.loss_curve.first(), job.loss_curve.last()) {
        println!(
            "loss {} {first:.6} -> {last:.6} over {} epochs",
            crate::plot::sparkline(&job.loss_curve, 40),
            job.loss_curve.len()
        );
    }
    if !job.importance.is_empty() {
        println!(
            "permutation importance ({} drop on held-out rows):",
            job.selection_metric
        );
        let mut ranked: Vec<&FeatureImportance> = job.importance.iter().collect();
        ranked.sort_by(|a, b| b.mean.total_cmp(&a.mean));
        for i in ranked {
            println!("  {:<24} {:>10.6} ± {:.6}", i.feature, i.mean, i.std);
        }
    }
    for warning in &job.warnings {
        println!("warning: {warning}");
    }
}

async fn list_models(e: &Ctx, as_json: bool) -> anyhow::Result<()> {
    let models = RegistryServiceClient::new(e.connect("registry", &e.registry)?)
        .list_registered_models(ListRegisteredModelsRequest {})
        .await
        .map_err(rpc("registry", &e.registry))?
        .into_inner()
        .models;
    if as_json {
        let all: Vec<Value> = models
            .iter()
            .map(|m| {
                json!({
                    "name": m.name,
                    "description": m.description,
                    "latest_version": m.latest_version,
                    "aliases": m.aliases,
                    "created_at_ms": m.created_at_ms,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    println!("{:<32} {:>8}  ALIASES", "NAME", "LATEST");
    for m in models {
        let mut aliases: Vec<String> = m.aliases.iter().map(|(a, v)| format!("{a}={v}")).collect();
        aliases.sort();
        println!(
            "{:<32} {:>8}  {}",
            m.name,
            m.latest_version,
            aliases.join(", ")
        );
    }
    Ok(())
}

pub(crate) async fn fetch_version(e: &Ctx, reference: &str) -> anyhow::Result<ModelVersion> {
    let (model_name, selector) = model_ref(reference)?;
    let (version, alias) = selector.version_and_alias();
    Ok(
        RegistryServiceClient::new(e.connect("registry", &e.registry)?)
            .get_model_version(GetModelVersionRequest {
                model_name,
                version,
                alias,
            })
            .await
            .map_err(rpc("registry", &e.registry))?
            .into_inner(),
    )
}

pub(crate) fn version_json(v: &ModelVersion) -> Value {
    let lineage = v.lineage.clone().unwrap_or_default();
    let signature = v.signature.as_ref();
    json!({
        "model_name": v.model_name,
        "version": v.version,
        "model_type": v.model_type,
        "aliases": v.aliases,
        "artifact_digest": v.artifact_digest,
        "metrics": v.metrics,
        "params": v.params,
        "feature_names": v.feature_names,
        "target": v.target,
        "lineage": {
            "dataset": lineage.dataset,
            "dataset_version": lineage.dataset_version,
            "dataset_digest": lineage.dataset_digest,
            "training_job_id": lineage.training_job_id,
            "pipeline_run_id": lineage.pipeline_run_id,
            "parent_version": lineage.parent_version,
            "source": lineage.source,
        },
        "created_at_ms": v.created_at_ms,
        "created_by": v.created_by,
        "tags": v.tags,
        "status": status_name(v.status),
        "format": v.format,
        "size_bytes": v.size_bytes,
        "signature": signature.map(|s| json!({
            "inputs": s.inputs.iter().map(spec_json).collect::<Vec<_>>(),
            "outputs": s.outputs.iter().map(spec_json).collect::<Vec<_>>(),
        })),
    })
}

fn spec_json(spec: &TensorSpec) -> Value {
    json!({ "name": spec.name, "datatype": spec.datatype, "shape": spec.shape })
}

pub(crate) fn status_name(status: i32) -> &'static str {
    match ModelVersionStatus::try_from(status) {
        Ok(ModelVersionStatus::Archived) => "archived",
        _ => "ready",
    }
}

async fn show_model(e: &Ctx, reference: &str, as_json: bool) -> anyhow::Result<()> {
    let v = fetch_version(e, reference).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&version_json(&v))?);
        return Ok(());
    }
    let lineage = v.lineage.clone().unwrap_or_default();
    println!(
        "{}:{} ({}){}",
        v.model_name,
        v.version,
        v.model_type,
        if v.aliases.is_empty() {
            String::new()
        } else {
            format!(" aliases: {}", v.aliases.join(", "))
        }
    );
    println!(
        "target: {}   features: {}",
        v.target,
        v.feature_names.join(", ")
    );
    println!(
        "lineage: dataset {}@{} (sha256 {}), training job {}",
        lineage.dataset, lineage.dataset_version, lineage.dataset_digest, lineage.training_job_id
    );
    println!("artifact: sha256 {}", v.artifact_digest);
    println!("metrics:");
    print_metrics(&v.metrics);
    println!("params:");
    let mut params: Vec<_> = v.params.iter().collect();
    params.sort();
    for (name, value) in params {
        println!("  {name:<16} {value}");
    }
    Ok(())
}

async fn set_alias(
    e: &Ctx,
    model_name: String,
    alias: String,
    version: u32,
    expect: Option<u32>,
) -> anyhow::Result<()> {
    let previous = RegistryServiceClient::new(e.connect("registry", &e.registry)?)
        .set_model_alias(SetModelAliasRequest {
            model_name: model_name.clone(),
            alias: alias.clone(),
            version,
            expected_version: expect,
        })
        .await
        .map_err(rpc("registry", &e.registry))?
        .into_inner()
        .previous_version;
    match previous {
        0 => println!("{model_name}@{alias} -> version {version}"),
        p => println!("{model_name}@{alias} -> version {version} (was {p})"),
    }
    Ok(())
}

async fn alias_history(e: &Ctx, model_name: String, alias: Option<String>) -> anyhow::Result<()> {
    let changes = RegistryServiceClient::new(e.connect("registry", &e.registry)?)
        .list_alias_history(ListAliasHistoryRequest {
            model_name,
            alias: alias.unwrap_or_default(),
        })
        .await
        .map_err(rpc("registry", &e.registry))?
        .into_inner()
        .changes;
    println!(
        "{:<14} {:<16} {:>5} -> {:<5} BY",
        "TIME_MS", "ALIAS", "FROM", "TO"
    );
    let shown = |v: u32| {
        if v == 0 {
            "-".to_string()
        } else {
            v.to_string()
        }
    };
    for c in changes {
        println!(
            "{:<14} {:<16} {:>5} -> {:<5} {}",
            c.time_ms,
            c.alias,
            shown(c.from_version),
            shown(c.to_version),
            c.principal
        );
    }
    Ok(())
}

async fn delete_version(e: &Ctx, reference: &str) -> anyhow::Result<()> {
    let (model_name, selector) = model_ref(reference)?;
    let Selector::Version(version) = selector else {
        bail!("name the version to delete as MODEL:VERSION");
    };
    RegistryServiceClient::new(e.connect("registry", &e.registry)?)
        .delete_model_version(DeleteModelVersionRequest {
            model_name: model_name.clone(),
            version,
        })
        .await
        .map_err(rpc("registry", &e.registry))?;
    println!("deleted {model_name}:{version}");
    Ok(())
}

async fn tag_version(e: &Ctx, reference: &str, key: String, value: String) -> anyhow::Result<()> {
    let (model_name, selector) = model_ref(reference)?;
    let Selector::Version(version) = selector else {
        bail!("name the version to tag as MODEL:VERSION");
    };
    RegistryServiceClient::new(e.connect("registry", &e.registry)?)
        .set_model_version_tag(SetModelVersionTagRequest {
            model_name: model_name.clone(),
            version,
            key: key.clone(),
            value,
        })
        .await
        .map_err(rpc("registry", &e.registry))?;
    println!("tagged {model_name}:{version} with {key}");
    Ok(())
}

/// Fetches pages until `limit` results or the end.
async fn search_versions(
    e: &Ctx,
    mut query: SearchModelVersionsRequest,
    limit: usize,
    as_json: bool,
) -> anyhow::Result<()> {
    let mut registry = RegistryServiceClient::new(e.connect("registry", &e.registry)?);
    let mut found = Vec::new();
    loop {
        query.page_size = (limit - found.len()).clamp(1, 1000) as u32;
        let page = registry
            .search_model_versions(query.clone())
            .await
            .map_err(rpc("registry", &e.registry))?
            .into_inner();
        found.extend(page.versions);
        if page.next_page_token.is_empty() || found.len() >= limit {
            break;
        }
        query.page_token = page.next_page_token;
    }
    found.truncate(limit);
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&found.iter().map(version_json).collect::<Vec<_>>())?
        );
        return Ok(());
    }
    println!(
        "{:<32} {:>7}  {:>10} {:>10}  {:<20} TAGS",
        "MODEL", "VERSION", "RMSE", "R2", "ALIASES"
    );
    for v in found {
        let metric = |name: &str| {
            v.metrics
                .get(name)
                .map_or("-".to_string(), |m| format!("{m:.4}"))
        };
        let mut tags: Vec<String> = v.tags.iter().map(|(k, t)| format!("{k}={t}")).collect();
        tags.sort();
        println!(
            "{:<32} {:>7}  {:>10} {:>10}  {:<20} {}",
            v.model_name,
            v.version,
            metric("rmse"),
            metric("r2"),
            v.aliases.join(","),
            tags.join(",")
        );
    }
    Ok(())
}

async fn show_drift(e: &Ctx, reference: &str, as_json: bool) -> anyhow::Result<()> {
    let (name, selector) = model_ref(reference)?;
    let version = match selector {
        Selector::Latest => String::new(),
        Selector::Version(v) => v.to_string(),
        Selector::Alias(_) => fetch_version(e, reference).await?.version.to_string(),
    };
    let report = GrpcInferenceServiceClient::new(e.connect_balanced("inference", &e.inference)?)
        .model_drift(mlops_proto::inference::ModelDriftRequest { name, version })
        .await
        .map_err(rpc("inference", &e.inference))?
        .into_inner();
    if as_json {
        let features: Vec<serde_json::Value> = report
            .features
            .iter()
            .map(|f| {
                serde_json::json!({
                    "feature": f.feature, "method": f.method, "statistic": f.statistic,
                    "p_value": if f.p_value.is_nan() { None } else { Some(f.p_value) },
                    "psi": f.psi, "threshold": f.threshold, "drifted": f.drifted,
                    "samples": f.samples,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "model": report.model_name, "version": report.model_version,
                "drifted_share": report.drifted_share, "dataset_drift": report.dataset_drift,
                "features": features,
            })
        );
        return Ok(());
    }
    println!(
        "{}:{}: {:.0}% of features drifted{}",
        report.model_name,
        report.model_version,
        report.drifted_share * 100.0,
        if report.dataset_drift {
            " (dataset drift)"
        } else {
            ""
        }
    );
    println!(
        "  {:<24} {:<15} {:>10} {:>10} {:>8} {:>8}  drift",
        "feature", "method", "statistic", "p-value", "psi", "samples"
    );
    for f in &report.features {
        let p = if f.p_value.is_nan() {
            "-".to_string()
        } else {
            format!("{:.4}", f.p_value)
        };
        println!(
            "  {:<24} {:<15} {:>10.4} {:>10} {:>8.4} {:>8}  {}",
            f.feature,
            f.method,
            f.statistic,
            p,
            f.psi,
            f.samples,
            if f.drifted { "yes" } else { "no" }
        );
    }
    Ok(())
}

async fn predict(e: &Ctx, reference: &str, rows_json: &str) -> anyhow::Result<()> {
    let rows: Vec<Vec<f64>> = serde_json::from_str(rows_json)
        .context("--json must be an array of rows of numbers, e.g. [[1.0, 2.0]]")?;
    let width = rows.first().map_or(0, Vec::len);
    if rows.is_empty() || rows.iter().any(|r| r.len() != width) {
        bail!("--json must hold at least one row, all of the same length");
    }
    // Aliases are resolved by the registry so the answer names the exact version used.
    let (model_name, selector) = model_ref(reference)?;
    let model_version = match selector {
        Selector::Latest => String::new(),
        Selector::Version(v) => v.to_string(),
        Selector::Alias(_) => fetch_version(e, reference).await?.version.to_string(),
    };
    let raw = fp64_to_raw(rows.iter().flatten().copied());
    let response = GrpcInferenceServiceClient::new(e.connect_balanced("inference", &e.inference)?)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
        .model_infer(ModelInferRequest {
            model_name,
            model_version,
            inputs: vec![InferInputTensor {
                name: "input".into(),
                datatype: "FP64".into(),
                shape: vec![rows.len() as i64, width as i64],
                ..Default::default()
            }],
            raw_input_contents: vec![raw],
            ..Default::default()
        })
        .await
        .map_err(rpc("inference", &e.inference))?
        .into_inner();
    let predictions: Vec<f64> = response
        .raw_output_contents
        .first()
        .map(|raw| fp64_from_raw(raw))
        .unwrap_or_default();
    println!(
        "{}",
        json!({"model_name": response.model_name, "model_version": response.model_version, "predictions": predictions})
    );
    Ok(())
}

/// A pipeline file's text and the `--set NAME=VALUE` parameters given for it.
fn pipeline_file(
    file: &std::path::Path,
    set: &[String],
) -> anyhow::Result<(String, std::collections::HashMap<String, String>)> {
    let yaml =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let parameters = set
        .iter()
        .map(|item| {
            item.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--set {item:?}: expected NAME=VALUE"))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((yaml, parameters))
}

/// A registered pipeline's triggers in a few words.
fn trigger_summary(p: &RegisteredPipeline) -> String {
    let mut parts = Vec::new();
    if !p.schedule.is_empty() {
        parts.push(format!("schedule {:?}", p.schedule));
    }
    if p.on_new_dataset_version {
        parts.push(format!(
            "each new dataset version (after v{})",
            p.seen_dataset_version
        ));
    }
    if p.drift_share > 0.0 {
        parts.push(format!(
            "drift of {:.0}% of the features (at most every {}s)",
            p.drift_share * 100.0,
            p.drift_min_interval_seconds
        ));
    }
    format!("{}; at most {} active", parts.join(", "), p.max_concurrent)
}

async fn list_registered(e: &Ctx, as_json: bool) -> anyhow::Result<()> {
    let pipelines = OrchestratorServiceClient::new(e.connect("orchestrator", &e.orchestrator)?)
        .list_registered_pipelines(ListRegisteredPipelinesRequest {})
        .await
        .map_err(rpc("orchestrator", &e.orchestrator))?
        .into_inner()
        .pipelines;
    if as_json {
        let shown: Vec<Value> = pipelines
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "pipeline_digest": p.pipeline_digest,
                    "registered_by": p.registered_by,
                    "registered_at_ms": p.registered_at_ms,
                    "schedule": p.schedule,
                    "max_concurrent": p.max_concurrent,
                    "on_new_dataset_version": p.on_new_dataset_version,
                    "drift_share": p.drift_share,
                    "drift_min_interval_seconds": p.drift_min_interval_seconds,
                    "next_scheduled_at_ms": p.next_scheduled_at_ms,
                    "seen_dataset_version": p.seen_dataset_version,
                    "runs_started": p.runs_started,
                    "skipped": p.skipped,
                    "last_run_id": p.last_run_id,
                    "last_event": p.last_event,
                    "last_error": p.last_error,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&shown)?);
        return Ok(());
    }
    for p in pipelines {
        println!("{}: {}", p.name, trigger_summary(&p));
        println!(
            "  runs started {}, skipped {}{}",
            p.runs_started,
            p.skipped,
            if p.last_event.is_empty() {
                String::new()
            } else {
                format!("; last: {}", p.last_event)
            }
        );
        if !p.last_error.is_empty() {
            println!("  error: {}", p.last_error);
        }
    }
    Ok(())
}

/// Writes the run's SVG report, with the champion its gate compared against and the selected
/// job's loss curve.
async fn write_run_report(
    e: &Ctx,
    run: &PipelineRun,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    // The champion the gate compared against, on the gate's data, unless this run's own
    // version became it.
    let champion =
        (run.champion_version > 0 && run.champion_version != run.model_version).then(|| {
            (
                format!("champion {}:{}", run.model_name, run.champion_version),
                run.champion_metrics.clone(),
            )
        });
    let loss_curve = if run.training_job_id.is_empty() {
        Vec::new()
    } else {
        TrainingServiceClient::new(e.connect("training", &e.training)?)
            .get_training_job(GetTrainingJobRequest {
                id: run.training_job_id.clone(),
            })
            .await
            .map_err(rpc("training", &e.training))?
            .into_inner()
            .loss_curve
    };
    let svg = crate::report::run_svg(
        run,
        champion
            .as_ref()
            .map(|(label, metrics)| (label.as_str(), metrics)),
        &loss_curve,
    );
    std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// A step's state as one mark, for the terminal.
fn state_mark(state: i32) -> &'static str {
    match JobState::try_from(state).unwrap_or_default() {
        JobState::Succeeded => "✓",
        JobState::Failed => "✗",
        JobState::Running => "…",
        JobState::Skipped => "-",
        _ => "·",
    }
}

async fn run_pipeline(
    e: &Ctx,
    pipeline_yaml: String,
    parameters: std::collections::HashMap<String, String>,
    wait: bool,
) -> anyhow::Result<PipelineRun> {
    let mut orchestrator =
        OrchestratorServiceClient::new(e.connect("orchestrator", &e.orchestrator)?);
    let run = orchestrator
        .run_pipeline(RunPipelineRequest {
            pipeline_yaml,
            parameters,
        })
        .await
        .map_err(rpc("orchestrator", &e.orchestrator))?
        .into_inner();
    println!("started pipeline run {} ({})", run.id, run.pipeline);
    follow_run(e, orchestrator, run, wait).await
}

async fn resume_run(e: &Ctx, id: String, wait: bool) -> anyhow::Result<PipelineRun> {
    let mut orchestrator =
        OrchestratorServiceClient::new(e.connect("orchestrator", &e.orchestrator)?);
    let run = orchestrator
        .resume_pipeline_run(ResumePipelineRunRequest { id })
        .await
        .map_err(rpc("orchestrator", &e.orchestrator))?
        .into_inner();
    let reused: Vec<&str> = run
        .steps
        .iter()
        .filter(|s| s.state() == JobState::Succeeded)
        .map(|s| s.name.as_str())
        .collect();
    println!(
        "resumed pipeline run {} ({}), reusing: {}",
        run.id,
        run.pipeline,
        if reused.is_empty() {
            "nothing".to_string()
        } else {
            reused.join(", ")
        }
    );
    follow_run(e, orchestrator, run, wait).await
}

/// Follows a run to its end with a live view of the running step, then prints every step.
async fn follow_run(
    e: &Ctx,
    mut orchestrator: OrchestratorServiceClient<Channel>,
    run: PipelineRun,
    wait: bool,
) -> anyhow::Result<PipelineRun> {
    if !wait {
        return Ok(run);
    }
    let mut updates = orchestrator
        .watch_pipeline_run(WatchPipelineRunRequest { id: run.id.clone() })
        .await
        .map_err(rpc("orchestrator", &e.orchestrator))?
        .into_inner();
    // One bar per step (steps that run at the same time move together); drawn on a terminal
    // only, and cleared before the summary.
    let view = indicatif::MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:14} {bar:24} {percent:>3}% {wide_msg}")
        .expect("valid template")
        .progress_chars("█▉▊▋▌▍▎▏ ");
    let bars: Vec<ProgressBar> = run
        .steps
        .iter()
        .map(|_| {
            let bar = view.add(ProgressBar::new(100));
            bar.set_style(style.clone());
            bar
        })
        .collect();
    let show = |run: &PipelineRun| {
        for (bar, step) in bars.iter().zip(&run.steps) {
            bar.set_prefix(format!("{} {}", state_mark(step.state), step.name));
            bar.set_position((step.progress.clamp(0.0, 1.0) * 100.0).round() as u64);
            bar.set_message(step.message.clone());
        }
    };
    show(&run);
    let mut last = run;
    while let Some(update) = updates.next().await {
        last = update.map_err(rpc("orchestrator", &e.orchestrator))?;
        show(&last);
    }
    view.clear().ok();
    for step in &last.steps {
        let attempts = if step.attempts > 1 {
            format!(" ({} attempts)", step.attempts)
        } else {
            String::new()
        };
        println!(
            "  {:<10} {:<9} {}{attempts}",
            step.name,
            job_state(step.state),
            step.message
        );
    }
    if last.state() != JobState::Succeeded {
        bail!("pipeline run {} failed: {}", last.id, last.error);
    }
    println!(
        "run {} succeeded: {}:{} metrics:",
        last.id, last.model_name, last.model_version
    );
    print_metrics(&last.metrics);
    println!(
        "{}",
        if last.promoted {
            format!(
                "promoted {}:{} to champion",
                last.model_name, last.model_version
            )
        } else {
            format!(
                "{}:{} was not promoted (the champion is as good or better)",
                last.model_name, last.model_version
            )
        }
    );
    Ok(last)
}

async fn show_run(
    e: &Ctx,
    id: String,
    as_json: bool,
    svg: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let run = OrchestratorServiceClient::new(e.connect("orchestrator", &e.orchestrator)?)
        .get_pipeline_run(GetPipelineRunRequest { id })
        .await
        .map_err(rpc("orchestrator", &e.orchestrator))?
        .into_inner();
    if let Some(path) = svg {
        write_run_report(e, &run, path).await?;
    }
    let duration = |started: i64, finished: i64| {
        if started > 0 && finished >= started {
            format!("{:.1}s", (finished - started) as f64 / 1000.0)
        } else {
            "-".into()
        }
    };
    if as_json {
        let steps: Vec<Value> = run
            .steps
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "kind": s.kind,
                    "needs": s.needs,
                    "training_job_id": s.training_job_id,
                    "metrics": s.metrics,
                    "log": s.log,
                    "state": job_state(s.state),
                    "attempts": s.attempts,
                    "message": s.message,
                    "started_at_ms": s.started_at_ms,
                    "finished_at_ms": s.finished_at_ms,
                })
            })
            .collect();
        let shown = json!({
            "id": run.id,
            "pipeline": run.pipeline,
            "state": job_state(run.state),
            "error": run.error,
            "resumes": run.resumes,
            "trigger": run.trigger,
            "dataset": run.dataset,
            "dataset_version": run.dataset_version,
            "training_job_id": run.training_job_id,
            "model_name": run.model_name,
            "model_version": run.model_version,
            "promoted": run.promoted,
            "metrics": run.metrics,
            "steps": steps,
        });
        println!("{}", serde_json::to_string_pretty(&shown)?);
        return Ok(());
    }
    println!(
        "run {} ({}): {}{}{}",
        run.id,
        run.pipeline,
        job_state(run.state),
        if run.resumes > 0 {
            format!(", resumed {} times", run.resumes)
        } else {
            String::new()
        },
        if run.trigger.is_empty() {
            String::new()
        } else {
            format!(", started by {}", run.trigger)
        }
    );
    // The graph by levels: a step sits one level after the deepest step it needs, so steps
    // side by side in [a | b] run at the same time.
    let levels = crate::report::step_levels(&run.steps);
    let depth = levels.iter().copied().max().unwrap_or(0);
    let columns: Vec<String> = (0..=depth)
        .map(|d| {
            let cells: Vec<String> = run
                .steps
                .iter()
                .zip(&levels)
                .filter(|(_, level)| **level == d)
                .map(|(s, _)| format!("{} {}", state_mark(s.state), s.name))
                .collect();
            format!("[{}]", cells.join(" | "))
        })
        .filter(|c| c != "[]")
        .collect();
    println!("  {}", columns.join(" → "));
    println!(
        "  {:<12} {:<9} {:>8} {:>8}  MESSAGE",
        "STEP", "STATE", "ATTEMPTS", "TIME"
    );
    for s in &run.steps {
        println!(
            "  {:<12} {:<9} {:>8} {:>8}  {}",
            s.name,
            job_state(s.state),
            s.attempts,
            duration(s.started_at_ms, s.finished_at_ms),
            s.message
        );
    }
    // The log of each step that did not go through at once: its retries and failures.
    for s in run
        .steps
        .iter()
        .filter(|s| s.attempts > 1 || s.state() == JobState::Failed)
    {
        println!("  log of {}:", s.name);
        for line in &s.log {
            println!("    {line}");
        }
    }
    if run.dataset_version > 0 {
        println!("  dataset {}@{}", run.dataset, run.dataset_version);
    }
    if !run.training_job_id.is_empty() {
        println!("  training job {}", run.training_job_id);
    }
    if run.model_version > 0 {
        println!(
            "  model {}:{}{}",
            run.model_name,
            run.model_version,
            if run.promoted { " (promoted)" } else { "" }
        );
    }
    if !run.metrics.is_empty() {
        print_metrics(&run.metrics);
    }
    if !run.error.is_empty() {
        println!("  error: {}", run.error);
    }
    Ok(())
}

async fn list_runs(e: &Ctx) -> anyhow::Result<()> {
    let runs = OrchestratorServiceClient::new(e.connect("orchestrator", &e.orchestrator)?)
        .list_pipeline_runs(ListPipelineRunsRequest {})
        .await
        .map_err(rpc("orchestrator", &e.orchestrator))?
        .into_inner()
        .runs;
    println!(
        "{:<32}  {:<16} {:<9} {:<24} {:>8}  {:<8}  STARTED BY",
        "RUN", "PIPELINE", "STATE", "MODEL", "R2", "PROMOTED"
    );
    for r in runs {
        let model = if r.model_version > 0 {
            format!("{}:{}", r.model_name, r.model_version)
        } else {
            "-".into()
        };
        let r2 = r
            .metrics
            .get("r2")
            .map_or("-".to_string(), |v| format!("{v:.4}"));
        // The trigger's first words: "schedule ...", "new version d@3", "drift: ...".
        let started_by: String = if r.trigger.is_empty() {
            "a caller".into()
        } else {
            r.trigger.chars().take(32).collect()
        };
        println!(
            "{:<32}  {:<16} {:<9} {:<24} {:>8}  {:<8}  {}",
            r.id,
            r.pipeline,
            job_state(r.state),
            model,
            r2,
            if r.promoted { "yes" } else { "no" },
            started_by
        );
    }
    Ok(())
}

async fn health(e: &Ctx, addr: &str) -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        HealthClient::new(e.connect("service", addr)?).check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .context("health check timed out")?
    .map_err(rpc("health", addr))?
    .into_inner();
    if response.status() != ServingStatus::Serving {
        bail!("{addr} is {:?}", response.status());
    }
    println!("{addr} SERVING");
    Ok(())
}
