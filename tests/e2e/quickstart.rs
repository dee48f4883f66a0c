use mlops_e2e::*;
use mlops_ml::selection::train_test_split;
use mlops_ml::{LinearRegression, RegressionMetrics};
use mlops_proto::inference::ModelInferRequest;
use mlops_proto::inference::model_infer_request::InferInputTensor;
use mlops_proto::v1::*;
use ndarray::Axis;

fn infer_request(model: &str, version: &str, rows: &ndarray::Array2<f64>) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.into(),
        model_version: version.into(),
        id: "req-1".into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP64".into(),
            shape: vec![rows.nrows() as i64, rows.ncols() as i64],
            ..Default::default()
        }],
        raw_input_contents: vec![raw_fp64(rows.iter().copied())],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_pipeline_trains_registers_promotes_and_serves() {
    let cluster = TestCluster::quickstart().await;
    let run = cluster.run_pipeline(QUICKSTART_PIPELINE).await;
    assert_eq!(run.state(), JobState::Succeeded, "{}", run.error);
    let steps: Vec<(&str, JobState)> = run
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.state()))
        .collect();
    assert_eq!(
        steps,
        [
            "ingest",
            "train",
            "evaluate",
            "register",
            "promote",
            "smoke_test"
        ]
        .map(|s| (s, JobState::Succeeded))
    );
    assert!(run.promoted);
    assert_eq!(
        (run.model_name.as_str(), run.model_version),
        ("diabetes-linear", 1)
    );

    // The metrics are those of the same fit done here on the same seeded split.
    let (x, y) = diabetes();
    let (train, test) = train_test_split(x.nrows(), 0.2, 42).unwrap();
    let local = LinearRegression::fit(
        x.select(Axis(0), &train).view(),
        y.select(Axis(0), &train).view(),
    )
    .unwrap();
    let predicted = local.predict(x.select(Axis(0), &test).view()).unwrap();
    let expected = RegressionMetrics::compute(y.select(Axis(0), &test).view(), predicted.view());
    for (name, value) in expected.named() {
        let got = run.metrics[name];
        assert!(
            (got - value).abs() < 1e-9 * (1.0 + value.abs()),
            "{name}: {got} vs {value}"
        );
    }
    assert!(
        expected.r2 > 0.3 && expected.r2 < 0.8,
        "diabetes OLS r2 {}",
        expected.r2
    );

    // The registry has the version, its lineage, params and the champion alias.
    let mut registry = cluster.registry();
    let champion = registry
        .get_model_version(GetModelVersionRequest {
            model_name: "diabetes-linear".into(),
            version: 0,
            alias: "champion".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(champion.version, 1);
    assert_eq!(champion.aliases, vec!["champion".to_string()]);
    let lineage = champion.lineage.clone().unwrap();
    assert_eq!(
        (lineage.dataset.as_str(), lineage.dataset_version),
        ("diabetes", 1)
    );
    assert_eq!(lineage.training_job_id, run.training_job_id);
    assert_eq!(champion.feature_names.len(), 10);
    let intercept: f64 = champion.params["intercept"].parse().unwrap();
    assert!((intercept - local.intercept).abs() < 1e-9);
    let bmi: f64 = champion.params["coef.bmi"].parse().unwrap();
    assert!((bmi - local.coefficients[2]).abs() < 1e-9);

    // OIP over gRPC: the champion (no version given) predicts what the local fit predicts.
    let rows = x.select(Axis(0), &[0, 1, 2]);
    let response = cluster
        .inference()
        .model_infer(infer_request("diabetes-linear", "", &rows))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.model_version, "1");
    assert_eq!(response.id, "req-1");
    assert_eq!(response.outputs[0].name, "predictions");
    assert_eq!(response.outputs[0].datatype, "FP64");
    assert_eq!(response.outputs[0].shape, vec![3]);
    let served = decode_fp64(&response.raw_output_contents[0]);
    let want = local.predict(rows.view()).unwrap();
    for (s, w) in served.iter().zip(want.iter()) {
        assert!((s - w).abs() < 1e-9, "{s} vs {w}");
    }

    // Model metadata describes the tensors.
    let metadata = cluster
        .inference()
        .model_metadata(mlops_proto::inference::ModelMetadataRequest {
            name: "diabetes-linear".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(metadata.inputs[0].name, "input");
    assert_eq!(metadata.inputs[0].shape, vec![-1, 10]);
    assert_eq!(metadata.outputs[0].name, "predictions");

    // OIP over REST, typed JSON, nested rows.
    let body = serde_json::json!({
        "id": "rest-1",
        "inputs": [{"name": "input", "shape": [1, 10], "datatype": "FP64", "data": [rows.row(0).to_vec()]}]
    });
    let (status, text) = http(
        cluster.addrs.inference_http,
        "POST",
        "/v2/models/diabetes-linear/infer",
        &body.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    let value = answer["outputs"][0]["data"][0].as_f64().unwrap();
    assert!((value - want[0]).abs() < 1e-9);
    assert_eq!(answer["id"], "rest-1");
    let (status, _) = http(cluster.addrs.inference_http, "GET", "/v2/health/ready", "").await;
    assert_eq!(status, 200);

    // The same pipeline again, with caching off, retrains and registers version 2 but keeps
    // the champion: same data, same seed, so the metric does not beat it.
    let uncached = format!("{QUICKSTART_PIPELINE}\ncache: false\n");
    let second = cluster.run_pipeline(&uncached).await;
    assert_eq!(second.state(), JobState::Succeeded, "{}", second.error);
    assert_eq!(second.model_version, 2);
    assert!(!second.promoted);
    assert!(
        second.steps[1].message.starts_with("job "),
        "{}",
        second.steps[1].message
    );
    assert!(
        second.steps[0].message.contains("unchanged"),
        "{}",
        second.steps[0].message
    );
    let model = registry
        .get_registered_model(GetRegisteredModelRequest {
            name: "diabetes-linear".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(model.latest_version, 2);
    assert_eq!(model.aliases["champion"], 1);
    // Lineage: version 2 was trained to replace the champion, by the second run.
    let v2 = registry
        .get_model_version(GetModelVersionRequest {
            model_name: "diabetes-linear".into(),
            version: 2,
            alias: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .lineage
        .unwrap();
    assert_eq!(
        (v2.parent_version, v2.pipeline_run_id),
        (1, second.id.clone())
    );

    // With caching on, an unchanged pipeline and dataset reuse the last training job: no
    // training, and (one job, one version) no new version.
    let cached = cluster.run_pipeline(QUICKSTART_PIPELINE).await;
    assert_eq!(cached.state(), JobState::Succeeded, "{}", cached.error);
    assert!(
        cached.steps[1].message.starts_with("cache hit: reused job"),
        "{}",
        cached.steps[1].message
    );
    assert_eq!(cached.training_job_id, second.training_job_id);
    assert_eq!(cached.model_version, 2);
    // A changed setting misses, and says which.
    let reseeded = QUICKSTART_PIPELINE.replace("seed: 42", "seed: 7");
    let missed = cluster.run_pipeline(&reseeded).await;
    assert_eq!(missed.state(), JobState::Succeeded, "{}", missed.error);
    assert!(
        missed.steps[1]
            .message
            .starts_with("cache miss (train.seed changed)"),
        "{}",
        missed.steps[1].message
    );
    assert_eq!(missed.model_version, 3);

    // Runs are persisted and listed.
    let runs = cluster
        .orchestrator()
        .list_pipeline_runs(ListPipelineRunsRequest {})
        .await
        .unwrap()
        .into_inner()
        .runs;
    assert_eq!(
        runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec![
            run.id.as_str(),
            second.id.as_str(),
            cached.id.as_str(),
            missed.id.as_str()
        ]
    );

    // Every service exposes Prometheus metrics on its gRPC port.
    let (status, text) = http(cluster.addrs.orchestrator, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    assert!(text.contains("mlops_pipeline_runs_total"), "{text}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_move_and_delete() {
    let cluster = TestCluster::builder().start().await;
    let csv = "a,b,y\n1,2,5\n2,1,4\n3,5,13\n4,4,12\n5,0,5\n6,3,12\n";
    upload_csv(&cluster, "tiny", csv).await.unwrap();
    let mut training = cluster.training();
    for _ in 0..2 {
        let job = training
            .submit_training_job(SubmitTrainingJobRequest {
                dataset: "tiny".into(),
                target_column: "y".into(),
                model_type: "linear".into(),
                register_as: "tiny-model".into(),
                test_fraction: Some(0.34),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        wait_job(&cluster, &job.id).await;
    }
    let mut registry = cluster.registry();
    let set = |version| SetModelAliasRequest {
        model_name: "tiny-model".into(),
        alias: "prod".into(),
        version,
        expected_version: None,
    };
    assert_eq!(
        registry
            .set_model_alias(set(1))
            .await
            .unwrap()
            .into_inner()
            .previous_version,
        0
    );
    assert_eq!(
        registry
            .set_model_alias(set(2))
            .await
            .unwrap()
            .into_inner()
            .previous_version,
        1
    );
    let by_alias = |alias: &str| GetModelVersionRequest {
        model_name: "tiny-model".into(),
        version: 0,
        alias: alias.into(),
    };
    assert_eq!(
        registry
            .get_model_version(by_alias("prod"))
            .await
            .unwrap()
            .into_inner()
            .version,
        2
    );
    registry
        .delete_model_alias(DeleteModelAliasRequest {
            model_name: "tiny-model".into(),
            alias: "prod".into(),
        })
        .await
        .unwrap();
    let gone = registry
        .get_model_version(by_alias("prod"))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    assert!(gone.message().contains("prod"));
    let both = registry
        .get_model_version(GetModelVersionRequest {
            model_name: "tiny-model".into(),
            version: 1,
            alias: "prod".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(both.code(), tonic::Code::InvalidArgument);
    let versions = registry
        .list_model_versions(ListModelVersionsRequest {
            model_name: "tiny-model".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .versions;
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collinear_exactly_linear_data_trains_and_predicts_exactly() {
    let cluster = TestCluster::builder().start().await;
    // b = 2a (collinear), c constant: rank-deficient; y = 3a - b/2 + 7 exactly.
    let mut csv = String::from("a,b,c,y\n");
    for i in 0..40 {
        let a = i as f64 * 0.5;
        let b = 2.0 * a;
        csv.push_str(&format!("{a},{b},1,{}\n", 3.0 * a - b / 2.0 + 7.0));
    }
    upload_csv(&cluster, "collinear", &csv).await.unwrap();
    let job = cluster
        .training()
        .submit_training_job(SubmitTrainingJobRequest {
            dataset: "collinear".into(),
            target_column: "y".into(),
            model_type: "linear".into(),
            register_as: "collinear-model".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let job = wait_job(&cluster, &job.id).await;
    assert_eq!(job.state(), JobState::Succeeded, "{}", job.error);
    assert!(job.metrics["mse"] < 1e-18, "{:?}", job.metrics);
    assert!(
        job.warnings.iter().any(|w| w.contains("rank 1 of 3")),
        "{:?}",
        job.warnings
    );
    let rows = ndarray::array![[100.0, 200.0, 1.0], [-3.0, -6.0, 1.0]];
    let response = cluster
        .inference()
        .model_infer(infer_request("collinear-model", "1", &rows))
        .await
        .unwrap()
        .into_inner();
    let served = decode_fp64(&response.raw_output_contents[0]);
    for (s, a) in served.iter().zip([100.0, -3.0]) {
        let want = 3.0 * a - a + 7.0;
        assert!((s - want).abs() < 1e-9, "{s} vs {want}");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_gate_leaves_the_champion_and_serving_untouched() {
    let cluster = TestCluster::quickstart().await;
    let first = cluster.run_pipeline(QUICKSTART_PIPELINE).await;
    assert_eq!(first.state(), JobState::Succeeded, "{}", first.error);
    let (x, _) = diabetes();
    let rows = x.slice(ndarray::s![0..3, ..]).to_owned();
    let predict = || async {
        let response = cluster
            .inference()
            .model_infer(infer_request("diabetes-linear", "", &rows))
            .await
            .unwrap()
            .into_inner();
        (
            response.model_version.clone(),
            decode_fp64(&response.raw_output_contents[0]),
        )
    };
    let before = predict().await;
    assert_eq!(before.0, "1");

    // The champion's own r2 times 1.5 is out of reach: the gate fails, says why, and nothing
    // after it runs.
    let demanding = format!("{QUICKSTART_PIPELINE}\ncache: false\n").replace(
        "  min: 0.3\n",
        "  min: 0.3\n  checks:\n    - \"r2 >= champion.r2 * 1.5\"\n    - \"rmse <= 1000\"\n",
    );
    let failed = cluster.run_pipeline(&demanding).await;
    assert_eq!(failed.state(), JobState::Failed);
    let evaluate = &failed.steps[2];
    assert_eq!(evaluate.state(), JobState::Failed);
    assert!(
        evaluate
            .message
            .contains("gate failed: r2 >= champion.r2 * 1.5 (")
            && evaluate.message.contains(") fails"),
        "{}",
        evaluate.message
    );
    assert!(
        failed.steps[3..]
            .iter()
            .all(|s| s.state() == JobState::Skipped)
    );
    let model = cluster
        .registry()
        .get_registered_model(GetRegisteredModelRequest {
            name: "diabetes-linear".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((model.latest_version, model.aliases["champion"]), (1, 1));
    assert_eq!(predict().await, before);

    // A check the candidate meets passes, with the numbers compared in the message.
    let fair = demanding.replace("champion.r2 * 1.5", "champion.r2 - 0.01");
    let passed = cluster.run_pipeline(&fair).await;
    assert_eq!(passed.state(), JobState::Succeeded, "{}", passed.error);
    assert!(
        passed.steps[2]
            .message
            .contains("r2 >= champion.r2 - 0.01 ("),
        "{}",
        passed.steps[2].message
    );

    // Parameters: declared with defaults in the file, overridden at submit time, typed.
    let parameterized = format!(
        "parameters:\n  seed: 42\n{}",
        QUICKSTART_PIPELINE.replace("seed: 42", "seed: ${seed}")
    );
    let reseeded = cluster
        .run_pipeline_with(&parameterized, &[("seed", "7")])
        .await;
    let mut orchestrator = cluster.orchestrator();
    assert_eq!(reseeded.state(), JobState::Succeeded, "{}", reseeded.error);
    assert!(
        reseeded.steps[1]
            .message
            .starts_with("cache miss (train.seed changed)"),
        "{}",
        reseeded.steps[1].message
    );
    for (name, value) in [("seed", "seven"), ("unknown", "1")] {
        let status = orchestrator
            .run_pipeline(RunPipelineRequest {
                pipeline_yaml: parameterized.clone(),
                parameters: [(name.to_string(), value.to_string())].into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains(name), "{}", status.message());
    }

    // Malformed checks are refused at submit time, naming the check.
    for bad in [
        "r2 >=",
        "r2 => 0.4",
        "r2 >= champion.accuracy",
        "r2 >= champion.r2 ^ 2",
    ] {
        let yaml = QUICKSTART_PIPELINE.replace(
            "  min: 0.3\n",
            &format!("  min: 0.3\n  checks: [\"{bad}\"]\n"),
        );
        let status = cluster
            .orchestrator()
            .run_pipeline(RunPipelineRequest {
                pipeline_yaml: yaml,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad}");
        assert!(
            status.message().contains("evaluate.checks"),
            "{bad}: {}",
            status.message()
        );
    }
    cluster.stop().await;
}
