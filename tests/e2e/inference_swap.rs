//! Zero-downtime model swaps: inference follows the registry's event stream, loads the new
//! champion in the background and switches atomically. Under steady load no request fails, each
//! answer comes whole from one version, and the hot path never asks the registry.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mlops_e2e::*;
use mlops_proto::inference::ModelInferRequest;
use mlops_proto::inference::model_infer_request::InferInputTensor;
use mlops_proto::v1::*;

fn row_request() -> ModelInferRequest {
    ModelInferRequest {
        model_name: "swap".into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP64".into(),
            shape: vec![1, 2],
            ..Default::default()
        }],
        raw_input_contents: vec![raw_fp64([1.0, 1.0])],
        ..Default::default()
    }
}

/// Registers `BUNDLE` as version 1 of model "swap" (answers 1.5 a - 2 b + 3).
async fn register_swap(cluster: &TestCluster) {
    let digest = store_bundle(cluster, BUNDLE).await;
    cluster
        .registry()
        .create_model_version(version_request("swap", &digest))
        .await
        .unwrap();
}

/// `GetRegisteredModel` calls the registry has served so far (all services share one registry
/// of metrics in this process).
async fn registry_lookups(cluster: &TestCluster) -> u64 {
    let (_, text) = http(cluster.addrs.registry, "GET", "/metrics", "").await;
    text.lines()
        .filter(|l| l.starts_with("mlops_requests_total") && l.contains("GetRegisteredModel"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_the_champion_swaps_versions_without_a_failed_request() {
    let cluster = TestCluster::builder().start().await;
    // Version 1 answers 1.5 - 2 + 3 = 2.5 for the row [1, 1]; version 2 answers 102.5.
    let first = store_bundle(&cluster, BUNDLE).await;
    let second = store_bundle(&cluster, &BUNDLE.replace("3.0", "103.0")).await;
    let mut registry = cluster.registry();
    for digest in [&first, &second] {
        registry
            .create_model_version(version_request("swap", digest))
            .await
            .unwrap();
    }
    let champion = |version| SetModelAliasRequest {
        model_name: "swap".into(),
        alias: "champion".into(),
        version,
        expected_version: None,
    };
    registry.set_model_alias(champion(1)).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    // Clients that have been answered by version 2.
    let swapped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (mut inference, stop, swapped) =
                (cluster.inference(), stop.clone(), swapped.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                let mut seen_second = false;
                while !stop.load(Ordering::Relaxed) {
                    let outcome = inference.model_infer(row_request()).await.map(|r| {
                        let r = r.into_inner();
                        (r.model_version, decode_fp64(&r.raw_output_contents[0])[0])
                    });
                    if !seen_second && matches!(&outcome, Ok((v, _)) if v == "2") {
                        seen_second = true;
                        swapped.fetch_add(1, Ordering::Relaxed);
                    }
                    answers.push(outcome);
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lookups_before = registry_lookups(&cluster).await;
    // The first request looked the champion up once (and the metric is read right).
    assert!(lookups_before >= 1);
    registry.set_model_alias(champion(2)).await.unwrap();
    // Until every client has been answered by version 2 (bounded: a loaded machine, such as
    // CI running the whole suite, may take longer than a quiet one), and a little more.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while swapped.load(Ordering::Relaxed) < 4 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    for client in clients {
        let answers = client.await.unwrap();
        total += answers.len();
        let mut last_version = String::from("1");
        for answer in answers {
            let (version, value) = answer.expect("no request fails during the swap");
            let expected = if version == "1" { 2.5 } else { 102.5 };
            assert_eq!(value, expected, "version {version} answered {value}");
            // Each client sees version 1, then version 2, never back.
            assert!(version >= last_version, "{last_version} then {version}");
            last_version = version;
        }
        assert_eq!(last_version, "2", "the swap reached every client");
    }
    assert!(total > 100, "only {total} requests ran");
    // One lookup when the alias moved, none per request. (Tests running alongside share the
    // process's metrics and add a few of their own: the bound is loose, the difference is not.)
    let lookups = registry_lookups(&cluster).await - lookups_before;
    assert!(
        lookups * 10 < total as u64,
        "{lookups} registry lookups for {total} requests"
    );
    cluster.stop().await;
}

/// `mlops bench infer` drives the server over gRPC and REST, checks every answer, and refuses
/// to report numbers for a target that only answers errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_reports_checked_throughput_over_grpc_and_rest() {
    let cluster = TestCluster::builder().start().await;
    register_swap(&cluster).await;
    let grpc = format!("http://{}", cluster.addrs.inference_grpc);
    let rest = format!("http://{}", cluster.addrs.inference_http);
    let (over_grpc, over_rest, refused) = tokio::task::spawn_blocking(move || {
        let run = |extra: &[&str]| {
            let mut args = vec!["bench", "infer", "--model", "swap", "--duration", "0.5"];
            args.extend_from_slice(extra);
            args.push("--json");
            serde_json::from_str::<serde_json::Value>(&mlops_cli(&args, &[], None)).unwrap()
        };
        let over_grpc = run(&["--target", &grpc, "--concurrency", "4", "--batch", "8"]);
        let over_rest = run(&["--target", &rest, "--protocol", "http", "--features", "2"]);
        // Open loop: 200 requests/s for half a second is about 100 requests, not as many as
        // the server can take.
        let paced = run(&["--target", &grpc, "--rate", "200", "--concurrency", "4"]);
        let paced_requests = paced["requests"].as_u64().unwrap();
        assert!((70..=105).contains(&paced_requests), "{paced}");
        let refused = std::process::Command::new(binary("mlops"))
            .args([
                "bench",
                "infer",
                "--target",
                &grpc,
                "--model",
                "nope",
                "--features",
                "2",
            ])
            .output()
            .unwrap();
        (over_grpc, over_rest, refused)
    })
    .await
    .unwrap();
    for report in [&over_grpc, &over_rest] {
        assert_eq!(report["errors"], 0, "{report}");
        assert!(report["requests"].as_u64().unwrap() > 10, "{report}");
        assert!(
            report["latency_ms"]["p99"].as_f64().unwrap() > 0.0,
            "{report}"
        );
    }
    // Features came from the model's metadata; rows = requests x batch.
    assert_eq!(over_grpc["features"], 2);
    assert_eq!(over_grpc["batch"], 8);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("first request failed"), "{stderr}");
    cluster.stop().await;
}

/// Past `max_in_flight`, requests are refused at once with RESOURCE_EXHAUSTED (not queued
/// without bound); the others are answered correctly and health probes stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_in_flight_limit_are_shed_not_queued() {
    let cluster = TestCluster::builder()
        .setting("MLOPS__INFERENCE__MAX_IN_FLIGHT", "1")
        .start()
        .await;
    register_swap(&cluster).await;
    let rows = 5_000;
    let big = ModelInferRequest {
        model_name: "swap".into(),
        model_version: "1".into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP64".into(),
            shape: vec![rows, 2],
            ..Default::default()
        }],
        raw_input_contents: vec![raw_fp64((0..rows * 2).map(|_| 1.0))],
        ..Default::default()
    };
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (mut inference, request) = (cluster.inference(), big.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for _ in 0..20 {
                    outcomes.push(inference.model_infer(request.clone()).await);
                }
                outcomes
            })
        })
        .collect();
    let (status, _) = http(cluster.addrs.inference_http, "GET", "/v2/health/ready", "").await;
    assert_eq!(status, 200, "health probes are never shed");
    let (mut answered, mut shed) = (0, 0);
    for client in clients {
        for outcome in client.await.unwrap() {
            match outcome {
                Ok(response) => {
                    let values = decode_fp64(&response.into_inner().raw_output_contents[0]);
                    assert_eq!(values.len(), rows as usize);
                    assert!(values.iter().all(|v| *v == 2.5));
                    answered += 1;
                }
                Err(status) => {
                    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                    assert!(
                        status.message().contains("in flight"),
                        "{}",
                        status.message()
                    );
                    shed += 1;
                }
            }
        }
    }
    assert!(answered > 0 && shed > 0, "{answered} answered, {shed} shed");
    // Once the burst is over, requests are served again.
    cluster.inference().model_infer(big).await.unwrap();
    cluster.stop().await;
}

/// Triton's statistics and repository extensions: counters per version, an index of what is
/// registered and loaded, and unload/load by registered name only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_and_repository_control_follow_triton() {
    use mlops_proto::inference::model_repository_parameter::ParameterChoice;
    use mlops_proto::inference::*;
    let cluster = TestCluster::builder().start().await;
    let digest = store_bundle(&cluster, BUNDLE).await;
    for model in ["swap", "idle"] {
        cluster
            .registry()
            .create_model_version(version_request(model, &digest))
            .await
            .unwrap();
    }
    let mut inference = cluster.inference();
    let extensions = inference
        .server_metadata(ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner()
        .extensions;
    assert!(
        extensions.contains(&"statistics".to_string()),
        "{extensions:?}"
    );
    // Triton's ModelConfig describes the same tensors as the metadata.
    let config = inference
        .model_config(ModelConfigRequest {
            name: "swap".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert_eq!(config.input[0].name, "input");
    assert_eq!(config.input[0].data_type(), DataType::TypeFp64);
    assert_eq!(config.input[0].dims, [2]);
    assert_eq!(
        (
            config.output[0].name.as_str(),
            config.output[0].dims.as_slice()
        ),
        ("predictions", &[1][..])
    );
    assert!(config.max_batch_size > 0);
    for rows in 1..=3i64 {
        let mut request = row_request();
        request.inputs[0].shape = vec![rows, 2];
        request.raw_input_contents = vec![raw_fp64((0..rows * 2).map(|_| 1.0))];
        inference.model_infer(request).await.unwrap();
    }
    let mut wrong = row_request();
    wrong.inputs[0].shape = vec![1, 3];
    inference.model_infer(wrong).await.unwrap_err();

    let stats = inference
        .model_statistics(ModelStatisticsRequest {
            name: "swap".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .model_stats;
    let [swap] = stats.as_slice() else {
        panic!("{stats:?}")
    };
    let counters = swap.inference_stats.unwrap();
    assert_eq!((swap.inference_count, swap.execution_count), (6, 3));
    assert_eq!(counters.success.unwrap().count, 3);
    assert_eq!(counters.fail.unwrap().count, 1);
    assert_eq!(counters.compute_infer.unwrap().count, 3);
    assert!(swap.last_inference > 0);
    // The same, for Prometheus: labelled by model and version, compute time apart.
    let (_, metrics) = http(cluster.addrs.inference_http, "GET", "/metrics", "").await;
    for needle in [
        "mlops_inference_compute_seconds",
        "mlops_inference_batch_rows",
        "mlops_inference_loaded_models",
    ] {
        assert!(metrics.contains(needle), "{needle} missing");
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("mlops_inference_requests_total")
                && l.contains("model=\"swap\"")
                && l.contains("version=\"1\"")),
        "no per-model request counter"
    );

    let index = |ready| {
        let mut inference = cluster.inference();
        async move {
            inference
                .repository_index(RepositoryIndexRequest {
                    repository_name: String::new(),
                    ready,
                })
                .await
                .unwrap()
                .into_inner()
                .models
                .into_iter()
                .map(|m| (m.name, m.version, m.state, m.reason))
                .collect::<Vec<_>>()
        }
    };
    let all = index(false).await;
    assert!(all.contains(&("swap".into(), "1".into(), "READY".into(), String::new())));
    assert!(
        all.iter().any(|m| m.0 == "idle" && m.2 == "UNAVAILABLE"),
        "{all:?}"
    );
    assert!(index(true).await.iter().all(|m| m.0 == "swap"));

    // Unloaded: refused until loaded again, by name and version only.
    inference
        .repository_model_unload(RepositoryModelUnloadRequest {
            model_name: "swap".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let refused = inference.model_infer(row_request()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("unloaded"),
        "{}",
        refused.message()
    );
    assert!(
        index(false)
            .await
            .iter()
            .any(|m| m.0 == "swap" && m.3.contains("unloaded"))
    );
    let load = |name: &str, key: &str, value: ParameterChoice| RepositoryModelLoadRequest {
        model_name: name.into(),
        parameters: [(
            key.to_string(),
            ModelRepositoryParameter {
                parameter_choice: Some(value),
            },
        )]
        .into(),
        ..Default::default()
    };
    for (request, code, needle) in [
        (
            load("swap", "config", ParameterChoice::StringParam("{}".into())),
            tonic::Code::InvalidArgument,
            "never from a path",
        ),
        (
            load("../swap", "version", ParameterChoice::Int64Param(1)),
            tonic::Code::InvalidArgument,
            "model_name",
        ),
        (
            load("absent", "version", ParameterChoice::Int64Param(1)),
            tonic::Code::NotFound,
            "absent",
        ),
    ] {
        let status = inference.repository_model_load(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(status.message().contains(needle), "{}", status.message());
    }
    // A load that fails leaves the unload in force.
    let failed = inference
        .repository_model_load(load("swap", "version", ParameterChoice::Int64Param(99)))
        .await
        .unwrap_err();
    assert_eq!(failed.code(), tonic::Code::NotFound, "{}", failed.message());
    let still = inference.model_infer(row_request()).await.unwrap_err();
    assert_eq!(still.code(), tonic::Code::FailedPrecondition);
    inference
        .repository_model_load(load("swap", "version", ParameterChoice::Int64Param(1)))
        .await
        .unwrap();
    inference.model_infer(row_request()).await.unwrap();
    cluster.stop().await;
}

/// `parameters {"explain": true}` adds each feature's contribution and the base value, which
/// sum to the prediction; over gRPC and REST alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explanations_sum_to_the_prediction() {
    use mlops_proto::inference::InferParameter;
    use mlops_proto::inference::infer_parameter::ParameterChoice;
    let cluster = TestCluster::builder().start().await;
    register_swap(&cluster).await;
    let explain = |choice: ParameterChoice| {
        let mut request = row_request();
        request.inputs[0].shape = vec![2, 2];
        request.raw_input_contents = vec![raw_fp64([1.0, 1.0, 2.0, -1.0])];
        request.parameters = [(
            "explain".to_string(),
            InferParameter {
                parameter_choice: Some(choice),
            },
        )]
        .into();
        request
    };
    let answer = cluster
        .inference()
        .model_infer(explain(ParameterChoice::BoolParam(true)))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = answer.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["predictions", "contributions", "base_value"]);
    // Coefficients [1.5, -2.0], intercept 3.0.
    assert_eq!(decode_fp64(&answer.raw_output_contents[0]), [2.5, 8.0]);
    assert_eq!(
        decode_fp64(&answer.raw_output_contents[1]),
        [1.5, -2.0, 3.0, 2.0]
    );
    assert_eq!(decode_fp64(&answer.raw_output_contents[2]), [3.0, 3.0]);
    let bad = cluster
        .inference()
        .model_infer(explain(ParameterChoice::Int64Param(1)))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("explain"), "{}", bad.message());

    let body = r#"{"parameters":{"explain":true},"inputs":[{"name":"input","shape":[1,2],"datatype":"FP64","data":[1,1]}]}"#;
    let (status, text) = http(
        cluster.addrs.inference_http,
        "POST",
        "/v2/models/swap/infer",
        body,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let rest: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(rest["outputs"][1]["name"], "contributions");
    assert_eq!(rest["outputs"][1]["data"], serde_json::json!([1.5, -2.0]));
    // Integer and boolean inputs, in their own typed fields.
    for (datatype, data) in [
        ("INT64", "[1,1]"),
        ("INT32", "[1,1]"),
        ("BOOL", "[true,true]"),
    ] {
        let body = format!(
            r#"{{"inputs":[{{"name":"input","shape":[1,2],"datatype":"{datatype}","data":{data}}}]}}"#
        );
        let (status, text) = http(
            cluster.addrs.inference_http,
            "POST",
            "/v2/models/swap/infer",
            &body,
        )
        .await;
        assert_eq!(status, 200, "{datatype}: {text}");
        let rest: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            rest["outputs"][0]["data"],
            serde_json::json!([2.5]),
            "{datatype}"
        );
    }
    cluster.stop().await;
}

/// One tensor per feature, named like the features, in any order and numeric datatype.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tensor_per_feature_is_accepted() {
    use mlops_proto::inference::InferTensorContents;
    let cluster = TestCluster::builder().start().await;
    register_swap(&cluster).await;
    let column = |name: &str, datatype: &str, shape: Vec<i64>, contents| InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape,
        contents: Some(contents),
        ..Default::default()
    };
    let b = column(
        "b",
        "FP32",
        vec![2, 1],
        InferTensorContents {
            fp32_contents: vec![1.0, -1.0],
            ..Default::default()
        },
    );
    let a = column(
        "a",
        "INT64",
        vec![2],
        InferTensorContents {
            int64_contents: vec![1, 2],
            ..Default::default()
        },
    );
    let request = |inputs| ModelInferRequest {
        model_name: "swap".into(),
        inputs,
        ..Default::default()
    };
    let answer = cluster
        .inference()
        .model_infer(request(vec![b.clone(), a.clone()]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decode_fp64(&answer.raw_output_contents[0]), [2.5, 8.0]);
    for (inputs, needle) in [
        (vec![a.clone()], "missing input tensor \"b\""),
        (vec![a.clone(), a.clone(), b.clone()], "appears twice"),
        (
            vec![a, b, column("c", "FP64", vec![2], Default::default())],
            "unknown input tensor \"c\"",
        ),
    ] {
        let status = cluster
            .inference()
            .model_infer(request(inputs))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains(needle), "{}", status.message());
    }
    cluster.stop().await;
}

/// The client spreads its calls over every replica it is given: two inference servers, one
/// `--target a,b`, and both serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_balances_over_every_replica() {
    use mlops_proto::inference::ModelStatisticsRequest;
    let replicas = [
        TestCluster::builder().start().await,
        TestCluster::builder().start().await,
    ];
    for cluster in &replicas {
        register_swap(cluster).await;
    }
    let target = replicas
        .iter()
        .map(|c| format!("http://{}", c.addrs.inference_grpc))
        .collect::<Vec<_>>()
        .join(",");
    let report = tokio::task::spawn_blocking(move || {
        mlops_cli(
            &[
                "bench",
                "infer",
                "--target",
                &target,
                "--model",
                "swap",
                "--duration",
                "0.5",
                "--connections",
                "1",
                "--concurrency",
                "8",
                "--json",
            ],
            &[],
            None,
        )
    })
    .await
    .unwrap();
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["errors"], 0, "{report}");
    for cluster in &replicas {
        let stats = cluster
            .inference()
            .model_statistics(ModelStatisticsRequest {
                name: "swap".into(),
                version: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let executed = stats.model_stats[0].execution_count;
        assert!(executed > 10, "a replica served only {executed} requests");
    }
    for cluster in replicas {
        cluster.stop().await;
    }
}

/// The sampled prediction log: inputs, outputs, version and latency, written in batches to the
/// artifact store, the last partial batch at shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_predictions_are_logged_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::builder()
        .data_dir(dir.path())
        .setting("MLOPS__INFERENCE__PREDICTION_LOG__SAMPLE", "0.5")
        .setting("MLOPS__INFERENCE__PREDICTION_LOG__BATCH", "3")
        .setting("MLOPS__INFERENCE__PREDICTION_LOG__FLUSH_SECONDS", "3600")
        .start()
        .await;
    register_swap(&cluster).await;
    for i in 0..8 {
        let mut request = row_request();
        request.id = format!("req-{i}");
        request.raw_input_contents = vec![raw_fp64([i as f64, 1.0])];
        cluster.inference().model_infer(request).await.unwrap();
    }
    let data_dir = cluster.data_dir().to_path_buf();
    // Stopping flushes the partial batch.
    cluster.stop().await;
    let store =
        mlops_core::storage::ArtifactStore::local(&data_dir.join("artifacts"), None).unwrap();
    let files = store.list_named("prediction-logs/swap").await.unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    let mut records = Vec::new();
    for file in &files {
        let text = store.get_named(file).await.unwrap();
        for line in String::from_utf8(text.to_vec()).unwrap().lines() {
            records.push(serde_json::from_str::<serde_json::Value>(line).unwrap());
        }
    }
    // Half the requests, evenly: 4 of 8, in batches of 3 + 1.
    assert_eq!(records.len(), 4);
    for record in &records {
        assert_eq!(record["model"], "swap");
        assert_eq!(record["version"], 1);
        let x = record["inputs"][0][0].as_f64().unwrap();
        assert_eq!(record["id"], format!("req-{x}"));
        // 1.5 x - 2 + 3
        assert_eq!(record["outputs"]["predictions"][0], 1.5 * x + 1.0);
        assert!(record["latency_ms"].as_f64().unwrap() >= 0.0);
    }
}

/// Dynamic batching: concurrent requests of different sizes share batches, each caller gets
/// exactly its own rows back, and a request that lies about its shape is refused alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_requests_get_their_own_rows_and_a_liar_is_refused_alone() {
    let cluster = TestCluster::builder()
        .setting("MLOPS__INFERENCE__BATCHING__MAX_DELAY_US", "3000")
        .setting("MLOPS__INFERENCE__BATCHING__MAX_ROWS", "64")
        .start()
        .await;
    register_swap(&cluster).await;
    let clients: Vec<_> = (0..16)
        .map(|client| {
            let mut inference = cluster.inference();
            tokio::spawn(async move {
                for round in 0..10 {
                    let rows = 1 + (client + round) % 5;
                    // Each row unique to this caller and round: a = client*100 + round, b = row.
                    let values: Vec<f64> = (0..rows)
                        .flat_map(|row| [(client * 100 + round) as f64, row as f64])
                        .collect();
                    let lie = client % 4 == 0 && round % 3 == 0;
                    let mut request = row_request();
                    request.model_version = "1".into();
                    // A liar claims one row more than it sends.
                    request.inputs[0].shape = vec![rows as i64 + i64::from(lie), 2];
                    request.raw_input_contents = vec![raw_fp64(values.iter().copied())];
                    let outcome = inference.model_infer(request).await;
                    if lie {
                        let status = outcome.unwrap_err();
                        assert_eq!(status.code(), tonic::Code::InvalidArgument);
                        continue;
                    }
                    let response = outcome.unwrap().into_inner();
                    assert_eq!(response.outputs[0].shape, vec![rows as i64]);
                    let expected: Vec<f64> = values
                        .chunks(2)
                        .map(|r| 1.5 * r[0] - 2.0 * r[1] + 3.0)
                        .collect();
                    assert_eq!(decode_fp64(&response.raw_output_contents[0]), expected);
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    // Requests did share batches.
    let (_, metrics) = http(cluster.addrs.inference_http, "GET", "/metrics", "").await;
    let read = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    let (requests, batches) = (
        read("mlops_inference_batch_requests_sum"),
        read("mlops_inference_batch_requests_count"),
    );
    assert!(
        requests > batches,
        "{requests} requests in {batches} batches"
    );
    cluster.stop().await;
}
