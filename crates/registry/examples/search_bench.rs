//! SearchModelVersions at scale: seeds a registry with 100,000 versions (100 models x 1,000,
//! three metrics each, tags on every tenth, aliases on a few), then times searches over gRPC
//! against the real service in this process. Also times CreateModelVersion through gRPC.
//!
//! Run: `scripts/bench/registry_search.sh` (release build; prints a Markdown table).

use std::time::{Duration, Instant};

use mlops_core::CancellationToken;
use mlops_core::storage::ArtifactStore;
use mlops_proto::v1::registry_service_client::RegistryServiceClient;
use mlops_proto::v1::*;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

const MODELS: u32 = 100;
const VERSIONS_PER_MODEL: u32 = 1_000;
const RUNS: usize = 50;
const BUNDLE: &str = r#"{"format_version":1,"model_type":"linear","feature_names":["a","b"],"target":"y","coefficients":[1.5,-2.0],"intercept":3.0}"#;

/// A deterministic spread of metric values (no RNG dependency needed).
fn noise(i: u64) -> f64 {
    let x = i
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let versions: u32 = std::env::var("BENCH_VERSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MODELS * VERSIONS_PER_MODEL);
    let per_model = versions / MODELS;
    let dir = tempfile::tempdir()?;
    let mut settings = mlops_registry::Settings::default();
    settings.storage.data_dir = dir.path().to_path_buf();
    settings.registry.listen = "127.0.0.1:0".parse()?;
    settings.telemetry.filter = "warn".into();
    let digest = ArtifactStore::open(&settings.storage)?
        .put(BUNDLE.as_bytes().to_vec().into())
        .await?;

    // Build once so the migrations run, then seed the tables the way CreateModelVersion fills
    // them, in one transaction.
    drop(mlops_registry::Application::build(settings.clone()).await?);
    let seeded = Instant::now();
    seed(&dir.path().join("registry.db"), per_model, &digest).await?;
    let seed_time = seeded.elapsed();

    let app = mlops_registry::Application::build(settings).await?;
    let url = format!("http://{}", app.grpc_addr());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until(shutdown.clone()));
    let mut client =
        RegistryServiceClient::new(mlops_core::client::channel(&url, &Default::default())?);

    println!(
        "{} versions ({MODELS} models x {per_model}) seeded in {:.1} s\n",
        MODELS * per_model,
        seed_time.as_secs_f64()
    );
    println!("| query | results | median ms | p95 ms |\n|---|---:|---:|---:|");
    let queries: Vec<(&str, SearchModelVersionsRequest)> = vec![
        ("newest 50, all models", search(|_| {})),
        (
            "one model, newest 50",
            search(|r| r.model_name = "model-042".into()),
        ),
        (
            "`rmse < 20`, newest first",
            search(|r| r.metric_filters = vec!["rmse < 20".into()]),
        ),
        (
            "`rmse < 20` ordered by rmse",
            search(|r| {
                r.metric_filters = vec!["rmse < 20".into()];
                r.order_by = "rmse asc".into();
            }),
        ),
        (
            "top 50 by `r2 desc`, all models",
            search(|r| r.order_by = "r2 desc".into()),
        ),
        (
            "`r2 > 0.9` and `mae < 5`",
            search(|r| r.metric_filters = vec!["r2 > 0.9".into(), "mae < 5".into()]),
        ),
        (
            "tag stage=prod, one model",
            search(|r| {
                r.model_name = "model-042".into();
                r.tags = [("stage".to_string(), "prod".to_string())].into();
            }),
        ),
        (
            "tag stage=prod, all models",
            search(|r| r.tags = [("stage".to_string(), "prod".to_string())].into()),
        ),
        (
            "alias champion, all models",
            search(|r| r.alias = "champion".into()),
        ),
        (
            "dataset ds-7, version 7",
            search(|r| {
                r.dataset = "ds-7".into();
                r.dataset_version = 7;
            }),
        ),
    ];
    for (name, request) in queries {
        let mut results = 0;
        let times = time(
            RUNS,
            || {
                let (mut client, request) = (client.clone(), request.clone());
                async move {
                    let page = client.search_model_versions(request).await?.into_inner();
                    Ok(page.versions.len())
                }
            },
            &mut results,
        )
        .await?;
        row(name, results, &times);
    }

    // Keyset paging: the 100th page costs what the first does.
    let mut token = String::new();
    let mut page_times = Vec::new();
    for _ in 0..100 {
        let request = SearchModelVersionsRequest {
            page_size: 50,
            page_token: token.clone(),
            ..Default::default()
        };
        let started = Instant::now();
        let page = client.search_model_versions(request).await?.into_inner();
        page_times.push(started.elapsed());
        token = page.next_page_token;
    }
    row("pages 91-100 of newest-first paging", 50, &page_times[90..]);

    // Writes through the real path: read + verify the bundle, insert, event, commit.
    let writes = 500;
    let started = Instant::now();
    for _ in 0..writes {
        client
            .create_model_version(CreateModelVersionRequest {
                model_name: "model-000".into(),
                model_type: "linear".into(),
                artifact_digest: digest.clone(),
                metrics: [("rmse".to_string(), 10.0)].into(),
                ..Default::default()
            })
            .await?;
    }
    let elapsed = started.elapsed();
    println!(
        "\nCreateModelVersion, one client, {writes} calls on top: {:.2} ms each ({:.0}/s)",
        elapsed.as_secs_f64() * 1000.0 / writes as f64,
        writes as f64 / elapsed.as_secs_f64()
    );
    shutdown.cancel();
    server.await??;
    Ok(())
}

fn search(edit: impl FnOnce(&mut SearchModelVersionsRequest)) -> SearchModelVersionsRequest {
    let mut request = SearchModelVersionsRequest {
        page_size: 50,
        ..Default::default()
    };
    edit(&mut request);
    request
}

async fn time<F, Fut>(runs: usize, call: F, results: &mut usize) -> anyhow::Result<Vec<Duration>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
{
    *results = call().await?; // warm-up
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        call().await?;
        times.push(started.elapsed());
    }
    Ok(times)
}

fn row(name: &str, results: usize, times: &[Duration]) {
    let mut ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let p95 = ms[((ms.len() as f64 * 0.95).ceil() as usize).min(ms.len()) - 1];
    println!(
        "| {name} | {results} | {:.2} | {:.2} |",
        ms[ms.len() / 2],
        p95
    );
}

async fn seed(path: &std::path::Path, per_model: u32, digest: &str) -> anyhow::Result<()> {
    let mut db = SqliteConnectOptions::new()
        .filename(path)
        .foreign_keys(true)
        .connect()
        .await?;
    let mut tx = db.begin().await?;
    let mut i: u64 = 0;
    for m in 0..MODELS {
        let model = format!("model-{m:03}");
        sqlx::query(
            "INSERT INTO registered_models (name, description, created_at_ms, last_version) \
             VALUES (?, '', 0, ?)",
        )
        .bind(&model)
        .bind(per_model as i64)
        .execute(&mut *tx)
        .await?;
        for v in 1..=per_model {
            i += 1;
            let (rmse, r2, mae) = (
                5.0 + 95.0 * noise(i),
                noise(i + 7),
                1.0 + 49.0 * noise(i + 13),
            );
            let metrics = format!(r#"{{"rmse":{rmse},"r2":{r2},"mae":{mae}}}"#);
            sqlx::query(
                "INSERT INTO model_versions (model_name, version, model_type, artifact_digest, metrics, params, \
                 feature_names, target, dataset, dataset_version, dataset_digest, training_job_id, created_at_ms, created_by, \
                 status, signature, format, size_bytes) \
                 VALUES (?, ?, 'linear', ?, ?, '{}', '[\"a\",\"b\"]', 'y', ?, ?, '', '', ?, 'bench', 1, '{}', 'mlops', 120)",
            )
            .bind(&model)
            .bind(v as i64)
            .bind(digest)
            .bind(&metrics)
            .bind(format!("ds-{}", i % 50))
            .bind((i % 10) as i64)
            .bind(1_700_000_000_000i64 + i as i64 * 1000)
            .execute(&mut *tx)
            .await?;
            for (name, value) in [("rmse", rmse), ("r2", r2), ("mae", mae)] {
                sqlx::query("INSERT INTO model_version_metrics (model_name, version, name, value) VALUES (?, ?, ?, ?)")
                    .bind(&model)
                    .bind(v as i64)
                    .bind(name)
                    .bind(value)
                    .execute(&mut *tx)
                    .await?;
            }
            if v % 10 == 0 {
                sqlx::query("INSERT INTO model_version_tags (model_name, version, key, value) VALUES (?, ?, 'stage', ?)")
                    .bind(&model)
                    .bind(v as i64)
                    .bind(if v % 20 == 0 { "prod" } else { "staging" })
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query("INSERT INTO model_aliases (model_name, alias, version, updated_at_ms) VALUES (?, 'champion', ?, 0)")
            .bind(&model)
            .bind((per_model / 2) as i64)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
