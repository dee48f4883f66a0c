//! `mlops bench infer`: a closed-loop load generator for any Open Inference Protocol server.
//! `concurrency` workers each keep one request in flight; every answer is checked, and only
//! successful ones are timed.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mlops_core::tensor::fp64_to_raw;
use mlops_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use mlops_proto::inference::model_infer_request::InferInputTensor;
use mlops_proto::inference::{ModelInferRequest, ModelMetadataRequest};
use serde_json::json;

use crate::args::{BenchInferArgs, BenchProtocol};
use crate::commands::Ctx;

const WARM_UP: Duration = Duration::from_secs(1);

/// What one worker saw during the measured window.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

/// One way of sending the same request over and over.
#[derive(Clone)]
enum Sender {
    Grpc(
        GrpcInferenceServiceClient<mlops_core::client::Channel>,
        Box<ModelInferRequest>,
    ),
    Http(reqwest::Client, String, bytes::Bytes),
}

impl Sender {
    async fn send(&mut self) -> Result<(), String> {
        match self {
            Sender::Grpc(client, request) => client
                .model_infer(*request.clone())
                .await
                .map(drop)
                .map_err(|s| format!("{:?}: {}", s.code(), s.message())),
            Sender::Http(client, url, body) => {
                let response = client
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = response.status();
                // Read the whole answer: a server is not done until it has sent it.
                let text = response.bytes().await.map_err(|e| e.to_string())?;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&text)))
                }
            }
        }
    }
}

pub async fn infer(e: &Ctx, args: BenchInferArgs) -> anyhow::Result<()> {
    if args.concurrency == 0 || args.connections == 0 || args.batch == 0 {
        bail!("--concurrency, --connections and --batch must be at least 1");
    }
    if !(args.duration.is_finite() && args.duration > 0.0) {
        bail!("--duration must be a positive number of seconds");
    }
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        bail!("--rate must be a positive number of requests per second");
    }
    // Each worker's share of the schedule: one request every `interval`.
    let interval = args
        .rate
        .map(|rate| Duration::from_secs_f64(args.concurrency as f64 / rate));
    let connections = args.connections.min(args.concurrency);
    let features = match args.features {
        Some(n) => n,
        None => features_from_metadata(e, &args).await?,
    };
    // Values in [-0.5, 0.5): realistic for scaled features, different per row.
    let values: Vec<f64> = (0..args.batch * features)
        .map(|i| ((i * 7919) % 1000) as f64 / 1000.0 - 0.5)
        .collect();
    let senders: Vec<Sender> = match args.protocol {
        BenchProtocol::Grpc => {
            let request = ModelInferRequest {
                model_name: args.model.clone(),
                model_version: args.model_version.clone(),
                inputs: vec![InferInputTensor {
                    name: args.input_name.clone(),
                    datatype: "FP64".into(),
                    shape: vec![args.batch as i64, features as i64],
                    ..Default::default()
                }],
                raw_input_contents: vec![fp64_to_raw(values.iter().copied())],
                ..Default::default()
            };
            (0..connections)
                .map(|_| {
                    let channel = e.connect_balanced("inference", &args.target)?;
                    Ok(Sender::Grpc(
                        GrpcInferenceServiceClient::new(channel)
                            .max_decoding_message_size(usize::MAX)
                            .max_encoding_message_size(usize::MAX),
                        Box::new(request.clone()),
                    ))
                })
                .collect::<anyhow::Result<_>>()?
        }
        BenchProtocol::Http => {
            mlops_core::tls::install_crypto_provider();
            let version = if args.model_version.is_empty() {
                String::new()
            } else {
                format!("/versions/{}", args.model_version)
            };
            let url = format!(
                "{}/v2/models/{}{version}/infer",
                args.target.trim_end_matches('/'),
                args.model
            );
            let body = bytes::Bytes::from(serde_json::to_vec(&json!({
                "inputs": [{
                    "name": args.input_name,
                    "shape": [args.batch, features],
                    "datatype": "FP64",
                    "data": values,
                }]
            }))?);
            (0..connections)
                .map(|_| {
                    let client = reqwest::Client::builder()
                        .pool_max_idle_per_host(args.concurrency)
                        .tcp_nodelay(true)
                        .build()?;
                    Ok(Sender::Http(client, url.clone(), body.clone()))
                })
                .collect::<anyhow::Result<_>>()?
        }
    };
    // One request first: a benchmark of errors measures nothing.
    senders[0]
        .clone()
        .send()
        .await
        .map_err(|error| anyhow::anyhow!("the first request failed: {error}"))?;

    let started = Instant::now();
    let measure_from = started + WARM_UP;
    let deadline = measure_from + Duration::from_secs_f64(args.duration);
    let concurrency = args.concurrency as f64;
    let workers: Vec<_> = (0..args.concurrency)
        .map(|i| {
            let mut sender = senders[i % senders.len()].clone();
            // Workers start staggered across one interval, so the schedule is even.
            let mut due = interval.map(|every| started + every.mul_f64(i as f64 / concurrency));
            tokio::spawn(async move {
                let mut tally = Tally::default();
                loop {
                    // Open loop: wait for the slot, and time from it even when running late.
                    let sent = match (due.as_mut(), interval) {
                        (Some(slot), Some(every)) => {
                            let this = *slot;
                            *slot += every;
                            tokio::time::sleep_until(this.into()).await;
                            this
                        }
                        _ => Instant::now(),
                    };
                    if sent >= deadline {
                        break;
                    }
                    let outcome = sender.send().await;
                    if sent < measure_from {
                        continue;
                    }
                    match outcome {
                        Ok(()) => tally.latencies_us.push(sent.elapsed().as_micros() as u64),
                        Err(error) => {
                            tally.errors += 1;
                            tally.first_error.get_or_insert(error);
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for worker in workers {
        let tally = worker.await.context("a load worker failed")?;
        latencies.extend(tally.latencies_us);
        errors += tally.errors;
        if first_error.is_none() {
            first_error = tally.first_error;
        }
    }
    let measured = started.elapsed().saturating_sub(WARM_UP).as_secs_f64();
    latencies.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index] as f64 / 1000.0
    };
    let requests = latencies.len() as f64 / measured;
    let report = json!({
        "target": args.target,
        "protocol": format!("{:?}", args.protocol).to_lowercase(),
        "model": args.model,
        "concurrency": args.concurrency,
        "rate": args.rate,
        "connections": connections,
        "batch": args.batch,
        "features": features,
        "seconds": measured,
        "requests": latencies.len(),
        "errors": errors,
        "requests_per_second": requests,
        "rows_per_second": requests * args.batch as f64,
        "latency_ms": {
            "p50": percentile(0.50),
            "p90": percentile(0.90),
            "p99": percentile(0.99),
            "max": percentile(1.0),
        },
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{} {} model {:?}: concurrency {}, batch {} x {} features, {:.1} s",
            report["protocol"].as_str().unwrap_or_default(),
            args.target,
            args.model,
            args.concurrency,
            args.batch,
            features,
            measured
        );
        println!(
            "  {:.0} requests/s ({:.0} rows/s), {} ok, {} errors",
            requests,
            requests * args.batch as f64,
            latencies.len(),
            errors
        );
        println!(
            "  latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
            percentile(0.50),
            percentile(0.90),
            percentile(0.99),
            percentile(1.0)
        );
    }
    if let Some(error) = first_error {
        eprintln!("first error: {error}");
    }
    if latencies.is_empty() {
        bail!("no request succeeded in the measured window");
    }
    Ok(())
}

/// The feature count from the model's metadata: the last dimension of its first input.
async fn features_from_metadata(e: &Ctx, args: &BenchInferArgs) -> anyhow::Result<usize> {
    if args.protocol == BenchProtocol::Http {
        bail!("give --features with --protocol http");
    }
    let metadata = GrpcInferenceServiceClient::new(e.connect_balanced("inference", &args.target)?)
        .model_metadata(ModelMetadataRequest {
            name: args.model.clone(),
            version: args.model_version.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("model metadata from {}: {}", args.target, s.message()))?
        .into_inner();
    metadata
        .inputs
        .first()
        .and_then(|input| input.shape.last())
        .filter(|n| **n > 0)
        .map(|n| *n as usize)
        .context("the model's metadata gives no feature count: pass --features")
}
