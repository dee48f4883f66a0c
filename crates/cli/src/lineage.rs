//! `mlops lineage`: from a served model version back to the run, the dataset version, its
//! validation report and source, and the pipeline file's digest; from a dataset version
//! forward to every model version trained on it.

use mlops_proto::v1::ingestion_service_client::IngestionServiceClient;
use mlops_proto::v1::orchestrator_service_client::OrchestratorServiceClient;
use mlops_proto::v1::registry_service_client::RegistryServiceClient;
use mlops_proto::v1::*;
use serde_json::{Value, json};

use crate::commands::{Ctx, fetch_version, rpc};
use crate::refs::dataset_ref;

/// Back from a model version (`M:V`, `M@ALIAS` or `M`, the latest).
pub async fn of_model(e: &Ctx, reference: &str, as_json: bool) -> anyhow::Result<()> {
    let model = fetch_version(e, reference).await?;
    let lineage = model.lineage.clone().unwrap_or_default();
    let run = if lineage.pipeline_run_id.is_empty() {
        None
    } else {
        let found = OrchestratorServiceClient::new(e.connect("orchestrator", &e.orchestrator)?)
            .get_pipeline_run(GetPipelineRunRequest {
                id: lineage.pipeline_run_id.clone(),
            })
            .await;
        match found {
            Ok(run) => Some(run.into_inner()),
            Err(status) if status.code() == tonic::Code::NotFound => None,
            Err(status) => return Err(rpc("orchestrator", &e.orchestrator)(status)),
        }
    };
    let dataset = if lineage.dataset.is_empty() {
        None
    } else {
        let found = IngestionServiceClient::new(e.connect("ingestion", &e.ingestion)?)
            .get_dataset_version(GetDatasetVersionRequest {
                dataset: lineage.dataset.clone(),
                version: lineage.dataset_version,
                ..Default::default()
            })
            .await;
        match found {
            Ok(version) => Some(version.into_inner()),
            Err(status) if status.code() == tonic::Code::NotFound => None,
            Err(status) => return Err(rpc("ingestion", &e.ingestion)(status)),
        }
    };
    let report = dataset.as_ref().and_then(|d| d.report.clone());
    let source = dataset.as_ref().and_then(|d| d.source.clone());
    if as_json {
        let shown = json!({
            "model": {"name": model.model_name, "version": model.version,
                      "artifact_digest": model.artifact_digest, "aliases": model.aliases,
                      "parent_version": lineage.parent_version, "imported_from": lineage.source},
            "training_job_id": lineage.training_job_id,
            "run": run.as_ref().map(|r| json!({
                "id": r.id, "pipeline": r.pipeline, "pipeline_digest": r.pipeline_digest,
                "state": r.state().as_str_name(), "resumes": r.resumes,
            })),
            "dataset": dataset.as_ref().map(|d| json!({
                "id": d.id, "digest": d.digest, "rows": d.row_count,
                "validation_passed": report.as_ref().map(|r| r.passed),
                "validation_failures": report.as_ref().map(|r| r.failures.clone()),
                "source": source.as_ref().map(source_json),
            })),
        });
        println!("{}", serde_json::to_string_pretty(&shown)?);
        return Ok(());
    }
    println!(
        "model {}:{} (bundle {})",
        model.model_name,
        model.version,
        short(&model.artifact_digest)
    );
    if lineage.parent_version > 0 {
        println!(
            "  trained to replace {}:{}",
            model.model_name, lineage.parent_version
        );
    }
    if !lineage.source.is_empty() {
        println!("  imported from {}", lineage.source);
    }
    if !lineage.training_job_id.is_empty() {
        println!("  <- training job {}", lineage.training_job_id);
    }
    match &run {
        Some(run) => println!(
            "  <- pipeline run {} ({}, pipeline file sha256 {}, {}{})",
            run.id,
            run.pipeline,
            short(&run.pipeline_digest),
            run.state().as_str_name(),
            if run.resumes > 0 {
                format!(", resumed {} times", run.resumes)
            } else {
                String::new()
            }
        ),
        None if !lineage.pipeline_run_id.is_empty() => {
            println!(
                "  <- pipeline run {} (no longer recorded)",
                lineage.pipeline_run_id
            )
        }
        None => {}
    }
    match &dataset {
        Some(d) => {
            println!(
                "  <- dataset {} ({} rows, Parquet sha256 {})",
                d.id,
                d.row_count,
                short(&d.digest)
            );
            if let Some(report) = &report {
                if report.passed {
                    println!("     validation passed");
                } else {
                    println!("     validation FAILED: {}", report.failures.join("; "));
                }
            }
            if let Some(source) = &source {
                println!(
                    "  <- {} {} ({}, {}, {} bytes, sha256 {}){}",
                    source.kind,
                    if source.uri.is_empty() {
                        "from the client"
                    } else {
                        &source.uri
                    },
                    source.format,
                    source.compression,
                    source.size_bytes,
                    short(&source.sha256),
                    if source.ingested_by.is_empty() {
                        String::new()
                    } else {
                        format!(" by {}", source.ingested_by)
                    }
                );
            }
        }
        None if !lineage.dataset.is_empty() => println!(
            "  <- dataset {}@{} (no longer recorded)",
            lineage.dataset, lineage.dataset_version
        ),
        None => {}
    }
    Ok(())
}

/// Forward from a dataset version (`D`, `D@V` or `D@ALIAS`) to every model version trained
/// on it.
pub async fn of_dataset(e: &Ctx, reference: &str, as_json: bool) -> anyhow::Result<()> {
    let dataset = IngestionServiceClient::new(e.connect("ingestion", &e.ingestion)?)
        .get_dataset_version(dataset_ref(reference)?)
        .await
        .map_err(rpc("ingestion", &e.ingestion))?
        .into_inner();
    let mut registry = RegistryServiceClient::new(e.connect("registry", &e.registry)?);
    let mut versions = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = registry
            .search_model_versions(SearchModelVersionsRequest {
                dataset: dataset.dataset.clone(),
                dataset_version: dataset.version,
                page_size: 1000,
                page_token,
                include_archived: true,
                ..Default::default()
            })
            .await
            .map_err(rpc("registry", &e.registry))?
            .into_inner();
        versions.extend(page.versions);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    if as_json {
        let shown: Vec<Value> = versions
            .iter()
            .map(|v| {
                let lineage = v.lineage.clone().unwrap_or_default();
                json!({
                    "model": v.model_name, "version": v.version, "aliases": v.aliases,
                    "training_job_id": lineage.training_job_id,
                    "pipeline_run_id": lineage.pipeline_run_id, "metrics": v.metrics,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"dataset": dataset.id, "models": shown}))?
        );
        return Ok(());
    }
    println!(
        "dataset {} ({} rows) -> {} model versions",
        dataset.id,
        dataset.row_count,
        versions.len()
    );
    for v in &versions {
        let lineage = v.lineage.clone().unwrap_or_default();
        let aliases = if v.aliases.is_empty() {
            String::new()
        } else {
            format!(" [{}]", v.aliases.join(", "))
        };
        println!(
            "  -> {}:{}{aliases} (job {}, run {})",
            v.model_name,
            v.version,
            or_dash(&lineage.training_job_id),
            or_dash(&lineage.pipeline_run_id)
        );
    }
    Ok(())
}

fn source_json(source: &DatasetSource) -> Value {
    json!({
        "kind": source.kind, "uri": source.uri, "format": source.format,
        "compression": source.compression, "size_bytes": source.size_bytes,
        "sha256": source.sha256, "ingested_by": source.ingested_by,
    })
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}
