//! `mlops models` commands for a version's lifecycle beyond training: listing, archiving,
//! garbage collection, the audit log and watch, and moving bundles in and out.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use futures::StreamExt;
use mlops_core::storage::sha256_hex;
use mlops_proto::v1::registry_service_client::RegistryServiceClient;
use mlops_proto::v1::*;
use serde_json::{Value, json};

use crate::commands::{Ctx, UPLOAD_CHUNK_BYTES, rpc, status_name, version_json};
use crate::refs::{Selector, model_ref};

fn registry(e: &Ctx) -> anyhow::Result<RegistryServiceClient<mlops_core::client::Channel>> {
    Ok(RegistryServiceClient::new(
        e.connect("registry", &e.registry)?,
    ))
}

pub async fn list_versions(e: &Ctx, model_name: String, as_json: bool) -> anyhow::Result<()> {
    let versions = registry(e)?
        .list_model_versions(ListModelVersionsRequest { model_name })
        .await
        .map_err(rpc("registry", &e.registry))?
        .into_inner()
        .versions;
    if as_json {
        let all: Vec<Value> = versions.iter().map(version_json).collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    println!(
        "{:>7}  {:<8} {:<6} {:>10} {:>10}  {:<20} CREATED_BY",
        "VERSION", "STATUS", "FORMAT", "RMSE", "R2", "ALIASES"
    );
    for v in versions {
        let metric = |name: &str| {
            v.metrics
                .get(name)
                .map_or("-".to_string(), |m| format!("{m:.4}"))
        };
        println!(
            "{:>7}  {:<8} {:<6} {:>10} {:>10}  {:<20} {}",
            v.version,
            status_name(v.status),
            v.format,
            metric("rmse"),
            metric("r2"),
            v.aliases.join(","),
            v.created_by
        );
    }
    Ok(())
}

fn exact_version(reference: &str, verb: &str) -> anyhow::Result<(String, u32)> {
    match model_ref(reference)? {
        (model, Selector::Version(version)) => Ok((model, version)),
        _ => bail!("name the version to {verb} as MODEL:VERSION"),
    }
}

pub async fn set_archived(e: &Ctx, reference: &str, archive: bool) -> anyhow::Result<()> {
    let mut client = registry(e)?;
    let verb = if archive { "archive" } else { "restore" };
    let (model_name, version) = exact_version(reference, verb)?;
    let result = if archive {
        client
            .archive_model_version(ArchiveModelVersionRequest {
                model_name: model_name.clone(),
                version,
            })
            .await
    } else {
        client
            .restore_model_version(RestoreModelVersionRequest {
                model_name: model_name.clone(),
                version,
            })
            .await
    };
    let v = result.map_err(rpc("registry", &e.registry))?.into_inner();
    println!("{model_name}:{version} is {}", status_name(v.status));
    Ok(())
}

pub async fn collect_garbage(e: &Ctx, dry_run: bool, min_age_seconds: u64) -> anyhow::Result<()> {
    let garbage = registry(e)?
        .collect_garbage(CollectGarbageRequest {
            dry_run,
            min_age_seconds,
        })
        .await
        .map_err(rpc("registry", &e.registry))?
        .into_inner();
    for digest in &garbage.digests {
        println!("sha256 {digest}");
    }
    println!(
        "{} {} bundle(s), {} bytes",
        if dry_run { "would delete" } else { "deleted" },
        garbage.digests.len(),
        garbage.bytes
    );
    Ok(())
}

fn kind_name(kind: i32) -> String {
    RegistryEventKind::try_from(kind)
        .map(|k| {
            k.as_str_name()
                .trim_start_matches("REGISTRY_EVENT_KIND_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| kind.to_string())
}

fn event_json(event: &RegistryEvent) -> Value {
    let state = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    json!({
        "seq": event.seq,
        "kind": kind_name(event.kind),
        "model_name": event.model_name,
        "version": event.version,
        "key": event.key,
        "principal": event.principal,
        "time_ms": event.time_ms,
        "before": state(&event.before),
        "after": state(&event.after),
    })
}

pub async fn registry_audit(
    e: &Ctx,
    query: ListRegistryEventsRequest,
    as_json: bool,
) -> anyhow::Result<()> {
    let events = registry(e)?
        .list_registry_events(query)
        .await
        .map_err(rpc("registry", &e.registry))?
        .into_inner()
        .events;
    if as_json {
        let all: Vec<Value> = events.iter().map(event_json).collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    println!(
        "{:>6}  {:<14} {:<18} {:<24} {:<16} CHANGE",
        "SEQ", "TIME_MS", "KIND", "MODEL:VERSION", "BY"
    );
    for event in events {
        let target = match (event.version, event.key.as_str()) {
            (0, _) => event.model_name.clone(),
            (v, "") => format!("{}:{v}", event.model_name),
            (v, key) => format!("{}:{v} {key}", event.model_name),
        };
        let shorten = |text: &str| {
            if text.is_empty() {
                "-".to_string()
            } else if text.len() > 60 {
                format!("{}...", &text[..text.floor_char_boundary(57)])
            } else {
                text.to_string()
            }
        };
        println!(
            "{:>6}  {:<14} {:<18} {:<24} {:<16} {} -> {}",
            event.seq,
            event.time_ms,
            kind_name(event.kind),
            target,
            event.principal,
            shorten(&event.before),
            shorten(&event.after)
        );
    }
    Ok(())
}

pub async fn watch_registry(
    e: &Ctx,
    request: WatchRegistryRequest,
    count: Option<usize>,
) -> anyhow::Result<()> {
    let mut events = registry(e)?
        .watch_registry(request)
        .await
        .map_err(rpc("registry", &e.registry))?
        .into_inner();
    let mut seen = 0;
    while count.is_none_or(|n| seen < n) {
        let Some(event) = events.next().await else {
            break;
        };
        let event = event.map_err(rpc("registry", &e.registry))?;
        println!("{}", event_json(&event));
        std::io::stdout().flush()?;
        seen += 1;
    }
    Ok(())
}

pub(crate) fn pairs(items: &[String], flag: &str) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|item| {
            item.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("{flag} takes KEY=VALUE, got {item:?}"))
        })
        .collect()
}

/// The import header from flags and, when given, a downloaded version record.
pub fn import_header(
    model: Option<String>,
    format: Option<String>,
    record: Option<PathBuf>,
    metrics: &[String],
    tags: &[String],
) -> anyhow::Result<ImportHeader> {
    let mut header = ImportHeader {
        format: format.unwrap_or_default(),
        ..Default::default()
    };
    if let Some(path) = record {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let record: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a version record (JSON)", path.display()))?;
        let text_of = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let map_of = |v: &Value| -> HashMap<String, String> {
            v.as_object()
                .map(|o| o.iter().map(|(k, v)| (k.clone(), text_of(v))).collect())
                .unwrap_or_default()
        };
        header.model_name = text_of(&record["model_name"]);
        header.expected_digest = text_of(&record["artifact_digest"]);
        header.target = text_of(&record["target"]);
        header.feature_names = record["feature_names"]
            .as_array()
            .map(|a| a.iter().map(text_of).collect())
            .unwrap_or_default();
        header.metrics = record["metrics"]
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                    .collect()
            })
            .unwrap_or_default();
        header.params = map_of(&record["params"]);
        header.tags = map_of(&record["tags"]);
        let lineage = &record["lineage"];
        let source = match text_of(&lineage["source"]) {
            // A copy of a copy keeps pointing at the original.
            source if !source.is_empty() => source,
            _ => format!("{}:{}", header.model_name, record["version"]),
        };
        header.lineage = Some(Lineage {
            dataset: text_of(&lineage["dataset"]),
            dataset_version: lineage["dataset_version"].as_u64().unwrap_or_default() as u32,
            dataset_digest: text_of(&lineage["dataset_digest"]),
            training_job_id: text_of(&lineage["training_job_id"]),
            pipeline_run_id: text_of(&lineage["pipeline_run_id"]),
            parent_version: lineage["parent_version"].as_u64().unwrap_or_default() as u32,
            source,
        });
        if header.format.is_empty() {
            header.format = text_of(&record["format"]);
        }
    }
    if let Some(model) = model {
        header.model_name = model;
    }
    if header.model_name.is_empty() {
        bail!("name the model to import into with --model (or give --record)");
    }
    for (name, value) in pairs(metrics, "--metric")? {
        let value: f64 = value
            .parse()
            .with_context(|| format!("--metric {name}: {value:?} is not a number"))?;
        header.metrics.insert(name, value);
    }
    header.tags.extend(pairs(tags, "--tag")?);
    Ok(header)
}

pub async fn import_version(e: &Ctx, file: &Path, header: ImportHeader) -> anyhow::Result<()> {
    use import_model_version_request::Part;
    let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let progress = crate::commands::spinner(format!("importing {}", file.display()));
    let mut messages = vec![ImportModelVersionRequest {
        part: Some(Part::Header(header)),
    }];
    messages.extend(
        data.chunks(UPLOAD_CHUNK_BYTES)
            .map(|chunk| ImportModelVersionRequest {
                part: Some(Part::Chunk(chunk.to_vec())),
            }),
    );
    let result = registry(e)?
        .import_model_version(futures::stream::iter(messages))
        .await;
    progress.finish_and_clear();
    let v = result.map_err(rpc("registry", &e.registry))?.into_inner();
    println!(
        "imported {} as {}:{} ({}, sha256 {})",
        file.display(),
        v.model_name,
        v.version,
        v.format,
        v.artifact_digest
    );
    Ok(())
}

/// Writes `<model>-v<version>.<onnx|json>` and its record `<model>-v<version>.record.json`,
/// each atomically, after checking the bytes against the digest.
pub async fn download_version(e: &Ctx, reference: &str, out: &Path) -> anyhow::Result<()> {
    use download_model_version_response::Part;
    let (model_name, selector) = model_ref(reference)?;
    let (version, alias) = selector.version_and_alias();
    let mut stream = registry(e)?
        .download_model_version(DownloadModelVersionRequest {
            model_name,
            version,
            alias,
        })
        .await
        .map_err(rpc("registry", &e.registry))?
        .into_inner();
    let mut record = None;
    let mut data = Vec::new();
    while let Some(message) = stream.next().await {
        match message.map_err(rpc("registry", &e.registry))?.part {
            Some(Part::Version(v)) => record = Some(v),
            Some(Part::Chunk(chunk)) => data.extend_from_slice(&chunk),
            None => {}
        }
    }
    let v = record.context("the registry sent no version record")?;
    // The name becomes a file name: take nothing from the wire as a path.
    mlops_core::ids::validate_name("model_name", &v.model_name)?;
    let digest = sha256_hex(&data);
    if digest != v.artifact_digest {
        bail!(
            "the download hashes to {digest}, not {}: nothing was written",
            v.artifact_digest
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let extension = if v.format == "onnx" { "onnx" } else { "json" };
    let stem = format!("{}-v{}", v.model_name, v.version);
    let bundle = out.join(format!("{stem}.{extension}"));
    let record_path = out.join(format!("{stem}.record.json"));
    write_atomically(&bundle, &data)?;
    write_atomically(
        &record_path,
        serde_json::to_string_pretty(&version_json(&v))?.as_bytes(),
    )?;
    println!(
        "{} ({} bytes, sha256 {digest})\n{}",
        bundle.display(),
        data.len(),
        record_path.display()
    );
    Ok(())
}

fn write_atomically(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing into {}", dir.display()))?;
    file.write_all(data)?;
    file.as_file().sync_all()?;
    file.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
