//! `mlops data`: the upload header from flags, and a version's schema, report and profile.

use anyhow::{Context, bail};
use mlops_proto::v1::ingestion_service_client::IngestionServiceClient;
use mlops_proto::v1::*;
use serde_json::json;

use crate::args::IngestArgs;
use crate::commands::{Ctx, rpc};
use crate::refs::dataset_ref;

pub fn type_name(data_type: i32) -> &'static str {
    DataType::try_from(data_type)
        .unwrap_or_default()
        .short_name()
}

fn parse_type(text: &str) -> anyhow::Result<DataType> {
    DataType::from_short_name(text).with_context(|| {
        format!("--type: unknown type {text:?} (int64, float64, bool, string, timestamp)")
    })
}

fn split<'a>(item: &'a str, flag: &str) -> anyhow::Result<(&'a str, &'a str)> {
    item.split_once('=')
        .with_context(|| format!("{flag} takes COL=VALUE, got {item:?}"))
}

/// The upload header (CSV options, declared columns, masking) from `mlops data ingest` flags.
pub fn upload_header(args: &IngestArgs) -> anyhow::Result<UploadHeader> {
    let mut columns: Vec<ColumnSpec> = Vec::new();
    fn spec<'a>(columns: &'a mut Vec<ColumnSpec>, name: &str) -> &'a mut ColumnSpec {
        if let Some(i) = columns.iter().position(|c| c.name == name) {
            return &mut columns[i];
        }
        columns.push(ColumnSpec {
            name: name.to_string(),
            ..Default::default()
        });
        columns.last_mut().expect("just pushed")
    }
    for item in &args.types {
        let (column, ty) = split(item, "--type")?;
        spec(&mut columns, column).data_type = parse_type(ty)? as i32;
    }
    for column in &args.not_null {
        spec(&mut columns, column).not_null = true;
    }
    for column in &args.unique {
        spec(&mut columns, column).unique = true;
    }
    for item in &args.ranges {
        let (column, range) = split(item, "--range")?;
        let (lo, hi) = range
            .split_once(':')
            .with_context(|| format!("--range takes COL=MIN:MAX, got {item:?}"))?;
        let number = |t: &str| -> anyhow::Result<Option<f64>> {
            if t.is_empty() {
                Ok(None)
            } else {
                Ok(Some(t.parse().with_context(|| {
                    format!("--range: {t:?} is not a number")
                })?))
            }
        };
        let entry = spec(&mut columns, column);
        entry.min = number(lo)?;
        entry.max = number(hi)?;
    }
    for item in &args.allowed {
        let (column, values) = split(item, "--allowed")?;
        spec(&mut columns, column).allowed = values.split(',').map(String::from).collect();
    }
    let masking = args
        .masks
        .iter()
        .map(|item| {
            let (column, action) = split(item, "--mask")?;
            let (action, parameter) = action.split_once(':').unwrap_or((action, ""));
            Ok(MaskRule {
                column: column.to_string(),
                action: action.to_string(),
                parameter: parameter.to_string(),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let csv = CsvOptions {
        delimiter: args.delimiter.clone().unwrap_or_default(),
        has_header: Some(!args.no_header),
        quote: String::new(),
        null_markers: args.null_markers.clone(),
    };
    Ok(UploadHeader {
        name: args.name.clone(),
        description: args.description.clone(),
        csv: Some(csv),
        columns,
        masking,
        uri: args.uri.clone().unwrap_or_default(),
        format: args.format.clone().unwrap_or_default(),
    })
}

pub fn print_verdict(report: &ValidationReport) {
    if report.passed {
        println!("validation passed");
    } else {
        println!("validation FAILED:");
        for failure in &report.failures {
            println!("  - {failure}");
        }
    }
}

pub async fn show(e: &Ctx, reference: &str, as_json: bool) -> anyhow::Result<()> {
    let v = IngestionServiceClient::new(e.connect("ingestion", &e.ingestion)?)
        .get_dataset_version(dataset_ref(reference)?)
        .await
        .map_err(rpc("ingestion", &e.ingestion))?
        .into_inner();
    let report = v.report.clone().unwrap_or_default();
    if as_json {
        let value = json!({
            "id": v.id,
            "digest": v.digest,
            "rows": v.row_count,
            "columns": v.columns.iter().map(|c| json!({"name": c.name, "type": type_name(c.data_type)})).collect::<Vec<_>>(),
            "report": {
                "passed": report.passed,
                "failures": report.failures,
                "duplicate_rows": report.duplicate_rows,
                "type_error_count": report.type_error_count,
                "type_errors": report.type_errors.iter().map(|t| json!({"line": t.line, "column": t.column, "value": t.value, "expected": t.expected})).collect::<Vec<_>>(),
                "columns": report.columns.iter().map(|c| json!({"name": c.name, "null_count": c.null_count, "null_share": c.null_share, "out_of_range": c.out_of_range, "not_allowed": c.not_allowed, "duplicates": c.duplicates})).collect::<Vec<_>>(),
            },
            "profile": v.profile.iter().map(|p| json!({
                "name": p.name, "kind": p.kind, "count": p.count, "missing": p.missing,
                "mean": p.mean, "std": p.std, "min": p.min, "max": p.max,
                "quantiles": {"p5": p.quantiles.get(5), "p25": p.quantiles.get(25), "p50": p.quantiles.get(50), "p75": p.quantiles.get(75), "p95": p.quantiles.get(95)},
                "distinct": p.distinct, "top": p.top, "other": p.other,
            })).collect::<Vec<_>>(),
            "masking": v.masking.iter().map(|m| json!({"column": m.column, "action": m.action, "parameter": m.parameter})).collect::<Vec<_>>(),
        });
        println!("{value}");
        return Ok(());
    }
    println!(
        "{}: {} rows, {} bytes, sha256 {}",
        v.id, v.row_count, v.size_bytes, v.digest
    );
    println!(
        "\n  {:<24} {:<10} {:>8} {:>7} {:>12} {:>12} {:>12}",
        "column", "type", "nulls", "null%", "mean/top", "min", "max"
    );
    for column in &v.columns {
        let nulls = report.columns.iter().find(|c| c.name == column.name);
        let profile = v.profile.iter().find(|p| p.name == column.name);
        let (centre, min, max) = match profile {
            Some(p) if p.kind == "numeric" => (
                format!("{:.4}", p.mean),
                format!("{:.4}", p.min),
                format!("{:.4}", p.max),
            ),
            Some(p) => {
                let top = p
                    .top
                    .iter()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(k, v)| format!("{k} ({:.0}%)", v * 100.0))
                    .unwrap_or_default();
                (top, String::new(), String::new())
            }
            None => Default::default(),
        };
        println!(
            "  {:<24} {:<10} {:>8} {:>6.1}% {:>12} {:>12} {:>12}",
            column.name,
            type_name(column.data_type),
            nulls.map_or(0, |n| n.null_count),
            nulls.map_or(0.0, |n| n.null_share * 100.0),
            centre,
            min,
            max
        );
    }
    println!(
        "\n{} duplicate rows, {} type errors",
        report.duplicate_rows, report.type_error_count
    );
    for t in &report.type_errors {
        println!(
            "  line {}, column {:?}: {:?} is not {}",
            t.line, t.column, t.value, t.expected
        );
    }
    for m in &v.masking {
        println!("masked: {} ({} {})", m.column, m.action, m.parameter);
    }
    print_verdict(&report);
    Ok(())
}

pub async fn alias(e: &Ctx, dataset: String, alias: String, version: u32) -> anyhow::Result<()> {
    let set = IngestionServiceClient::new(e.connect("ingestion", &e.ingestion)?)
        .set_dataset_alias(SetDatasetAliasRequest {
            dataset,
            alias,
            version,
        })
        .await
        .map_err(rpc("ingestion", &e.ingestion))?
        .into_inner();
    println!("{}@{} -> version {}", set.dataset, set.alias, set.version);
    Ok(())
}

pub async fn preview(e: &Ctx, reference: &str, rows: u32) -> anyhow::Result<()> {
    let request = dataset_ref(reference)?;
    let response = IngestionServiceClient::new(e.connect("ingestion", &e.ingestion)?)
        .preview_dataset_version(PreviewDatasetVersionRequest {
            dataset: request.dataset,
            version: request.version,
            alias: request.alias,
            rows,
        })
        .await
        .map_err(rpc("ingestion", &e.ingestion))?
        .into_inner();
    let version = response.version.unwrap_or_default();
    let mut table: Vec<Vec<String>> =
        vec![version.columns.iter().map(|c| c.name.clone()).collect()];
    for row in &response.rows {
        table.push(
            row.values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    if row.missing.contains(&(i as u32)) {
                        "NA".to_string()
                    } else {
                        v.clone()
                    }
                })
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..table[0].len())
        .map(|c| {
            table
                .iter()
                .map(|r| r.get(c).map_or(0, |v| v.chars().count()))
                .max()
                .unwrap_or(0)
                .min(32)
        })
        .collect();
    println!(
        "{} ({} of {} rows)",
        version.id,
        response.rows.len(),
        version.row_count
    );
    for row in &table {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(v, w)| {
                let cut: String = v.chars().take(*w).collect();
                format!("{cut:<w$}")
            })
            .collect();
        println!("  {}", cells.join("  "));
    }
    Ok(())
}

pub async fn download(e: &Ctx, reference: &str, out: &std::path::Path) -> anyhow::Result<()> {
    use futures::StreamExt;
    use mlops_proto::v1::download_dataset_version_response::Part;
    use sha2::Digest;
    use std::io::Write;
    let request = dataset_ref(reference)?;
    let mut stream = IngestionServiceClient::new(e.connect("ingestion", &e.ingestion)?)
        .download_dataset_version(DownloadDatasetVersionRequest {
            dataset: request.dataset,
            version: request.version,
            alias: request.alias,
        })
        .await
        .map_err(rpc("ingestion", &e.ingestion))?
        .into_inner();
    // Written as it arrives into a file beside `out`, renamed into place only once the bytes
    // match the version's digest: any size streams through, and nothing partial is left.
    let dir = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => std::path::Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing into {}", dir.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut size = 0u64;
    let mut version = None;
    while let Some(message) = stream.next().await {
        match message.map_err(rpc("ingestion", &e.ingestion))?.part {
            Some(Part::Version(v)) => version = Some(v),
            Some(Part::Chunk(chunk)) => {
                hasher.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk)
                    .with_context(|| format!("writing {}", out.display()))?;
            }
            None => {}
        }
    }
    let version = version.context("the server sent no version record")?;
    let digest = hex::encode(hasher.finalize());
    if digest != version.digest {
        bail!(
            "downloaded bytes have sha256 {digest}, the version says {}: nothing was written",
            version.digest
        );
    }
    file.as_file().sync_all()?;
    file.persist(out)
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "{} -> {} ({size} bytes, sha256 {digest})",
        version.id,
        out.display(),
    );
    Ok(())
}
