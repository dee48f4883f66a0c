use mlops_e2e::*;
use mlops_proto::inference::ModelInferRequest;
use mlops_proto::inference::model_infer_request::InferInputTensor;
use mlops_proto::v1::*;
use tonic::Code;

fn assert_status(
    result: Result<impl std::fmt::Debug, tonic::Status>,
    code: Code,
    needles: &[&str],
) {
    let status = result.expect_err("the call must fail");
    assert_eq!(status.code(), code, "{}", status.message());
    for needle in needles {
        assert!(
            status.message().contains(needle),
            "{:?} does not mention {needle:?}",
            status.message()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_csv_uploads_are_rejected_and_leave_nothing_behind() {
    let cluster = TestCluster::builder().start().await;
    let cases: [(&str, &[&str]); 5] = [
        ("a,y\n1,2\n3,x\n", &["line 3", "\"y\"", "\"x\""]),
        (
            "a,flag\n1,true\n2,maybe\n",
            &["line 3", "\"flag\"", "\"maybe\""],
        ),
        ("a,y\n1,2\n3,4,5\n", &["line 3", "3 fields"]),
        ("a,y\n", &["no data rows"]),
        ("", &["empty"]),
    ];
    for (csv, needles) in cases {
        assert_status(
            upload_csv(&cluster, "broken", csv).await,
            Code::InvalidArgument,
            needles,
        );
    }
    assert_status(
        upload_csv(&cluster, "../etc", "a,y\n1,2\n").await,
        Code::InvalidArgument,
        &["header.name"],
    );
    assert_status(
        upload_csv(&cluster, ".hidden", "a,y\n1,2\n").await,
        Code::InvalidArgument,
        &["header.name"],
    );

    // Nothing half-written: no dataset, no blob, no spool file.
    let datasets = cluster
        .ingestion()
        .list_datasets(ListDatasetsRequest {})
        .await
        .unwrap()
        .into_inner()
        .datasets;
    assert!(datasets.is_empty(), "{datasets:?}");
    let tmp: Vec<_> = std::fs::read_dir(cluster.data_dir().join("tmp"))
        .unwrap()
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
    assert!(!cluster.data_dir().join("artifacts/blobs").exists());
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_things_are_not_found_by_name() {
    let cluster = TestCluster::builder().start().await;
    let submit = SubmitTrainingJobRequest {
        dataset: "no-such-data".into(),
        target_column: "y".into(),
        model_type: "linear".into(),
        ..Default::default()
    };
    assert_status(
        cluster.training().submit_training_job(submit).await,
        Code::NotFound,
        &["no-such-data"],
    );
    let get = GetModelVersionRequest {
        model_name: "no-such-model".into(),
        ..Default::default()
    };
    assert_status(
        cluster.registry().get_model_version(get).await,
        Code::NotFound,
        &["no-such-model"],
    );
    let get = GetDatasetVersionRequest {
        dataset: "no-such-data".into(),
        version: 3,
        ..Default::default()
    };
    assert_status(
        cluster.ingestion().get_dataset_version(get).await,
        Code::NotFound,
        &["no-such-data"],
    );
    let infer = ModelInferRequest {
        model_name: "no-such-model".into(),
        ..Default::default()
    };
    assert_status(
        cluster.inference().model_infer(infer).await,
        Code::NotFound,
        &["no-such-model"],
    );
    let job = GetTrainingJobRequest {
        id: "0123456789abcdef0123456789abcdef".into(),
    };
    assert_status(
        cluster.training().get_training_job(job).await,
        Code::NotFound,
        &["0123456789abcdef"],
    );
    let (status, body) = http(
        cluster.addrs.inference_http,
        "GET",
        "/v2/models/no-such-model",
        "",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no-such-model"), "{body}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_training_and_pipeline_requests_name_the_field() {
    let cluster = TestCluster::builder()
        .source("data.csv", "a,y\n1,2\n2,4\n3,6\n4,8\n")
        .start()
        .await;
    upload_csv(&cluster, "data", "a,y\n1,2\n2,4\n3,6\n4,8\n")
        .await
        .unwrap();
    let base = SubmitTrainingJobRequest {
        dataset: "data".into(),
        target_column: "y".into(),
        model_type: "linear".into(),
        ..Default::default()
    };
    let mut training = cluster.training();
    let wrong_target = SubmitTrainingJobRequest {
        target_column: "price".into(),
        ..base.clone()
    };
    assert_status(
        training.submit_training_job(wrong_target).await,
        Code::InvalidArgument,
        &["\"price\"", "columns: a, y"],
    );
    let wrong_model = SubmitTrainingJobRequest {
        model_type: "forest".into(),
        ..base.clone()
    };
    assert_status(
        training.submit_training_job(wrong_model).await,
        Code::InvalidArgument,
        &["model_type", "forest"],
    );
    let wrong_fraction = SubmitTrainingJobRequest {
        test_fraction: Some(1.5),
        ..base.clone()
    };
    assert_status(
        training.submit_training_job(wrong_fraction).await,
        Code::InvalidArgument,
        &["test_fraction"],
    );
    let wrong_name = SubmitTrainingJobRequest {
        register_as: "a/b".into(),
        ..base.clone()
    };
    assert_status(
        training.submit_training_job(wrong_name).await,
        Code::InvalidArgument,
        &["register_as"],
    );

    let mut orchestrator = cluster.orchestrator();
    let traversal = "name: p\ndataset: {name: d, source: ../../etc/passwd}\ntrain: {target: y}\nregister: {model: m}\n";
    let run = RunPipelineRequest {
        pipeline_yaml: traversal.into(),
        ..Default::default()
    };
    assert_status(
        orchestrator.run_pipeline(run).await,
        Code::InvalidArgument,
        &["dataset.source"],
    );
    let missing =
        "name: p\ndataset: {name: d, source: nope.csv}\ntrain: {target: y}\nregister: {model: m}\n";
    let run = RunPipelineRequest {
        pipeline_yaml: missing.into(),
        ..Default::default()
    };
    assert_status(
        orchestrator.run_pipeline(run).await,
        Code::NotFound,
        &["nope.csv"],
    );

    // A gate that fails stops the run before anything is registered.
    let strict = "name: strict\ndataset: {name: d, source: data.csv}\ntrain: {target: y, test_fraction: 0.5}\n\
                  evaluate: {metric: mse, max: -1}\nregister: {model: strict-model}\n";
    let run = cluster.run_pipeline(strict).await;
    assert_eq!(run.state(), JobState::Failed);
    assert!(run.error.contains("evaluate"), "{}", run.error);
    let states: Vec<JobState> = run.steps.iter().map(|s| s.state()).collect();
    assert_eq!(
        states,
        [
            JobState::Succeeded,
            JobState::Succeeded,
            JobState::Failed,
            JobState::Skipped,
            JobState::Skipped,
            JobState::Skipped
        ]
    );
    let get = GetRegisteredModelRequest {
        name: "strict-model".into(),
    };
    assert_status(
        cluster.registry().get_registered_model(get).await,
        Code::NotFound,
        &["strict-model"],
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_inference_requests_name_the_tensor() {
    let cluster = TestCluster::builder()
        .setting("MLOPS__INFERENCE__MAX_REQUEST_BYTES", "1048576")
        .start()
        .await;
    upload_csv(
        &cluster,
        "pairs",
        "a,b,y\n1,2,3\n2,3,5\n3,5,8\n4,4,8\n5,1,6\n",
    )
    .await
    .unwrap();
    let job = cluster
        .training()
        .submit_training_job(SubmitTrainingJobRequest {
            dataset: "pairs".into(),
            target_column: "y".into(),
            model_type: "linear".into(),
            register_as: "pairs-model".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    wait_job(&cluster, &job.id).await;

    let request = |name: &str, datatype: &str, shape: Vec<i64>, raw: Vec<u8>| ModelInferRequest {
        model_name: "pairs-model".into(),
        inputs: vec![InferInputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape,
            ..Default::default()
        }],
        raw_input_contents: vec![raw],
        ..Default::default()
    };
    let two = raw_fp64([1.0, 2.0]);
    let mut inference = cluster.inference();
    let ok = inference
        .model_infer(request("input", "FP64", vec![1, 2], two.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!((decode_fp64(&ok.raw_output_contents[0])[0] - 3.0).abs() < 1e-9);
    let cases = [
        (
            request("features", "FP64", vec![1, 2], two.clone()),
            "\"features\"",
        ),
        (
            request("input", "BYTES", vec![1, 2], two.clone()),
            "\"input\"",
        ),
        (
            request("input", "FP64", vec![1, 3], two.clone()),
            "\"input\"",
        ),
        (
            request("input", "FP64", vec![2, 2], two.clone()),
            "\"input\"",
        ),
        (
            request("input", "FP64", vec![1, 2], raw_fp64([1.0])),
            "\"input\"",
        ),
    ];
    for (case, needle) in cases {
        assert_status(
            inference.model_infer(case).await,
            Code::InvalidArgument,
            &[needle],
        );
    }
    let wrong_version = ModelInferRequest {
        model_version: "7".into(),
        ..request("input", "FP64", vec![1, 2], two)
    };
    assert_status(
        inference.model_infer(wrong_version).await,
        Code::NotFound,
        &["version 7"],
    );
    // Over the configured message size (1 MiB here): RESOURCE_EXHAUSTED, and serving goes on.
    let rows = 80_000;
    let oversized = request(
        "input",
        "FP64",
        vec![rows, 2],
        raw_fp64((0..rows * 2).map(|v| v as f64)),
    );
    assert_status(
        inference.model_infer(oversized).await,
        Code::ResourceExhausted,
        &["too large"],
    );
    inference
        .model_infer(request("input", "FP64", vec![1, 2], raw_fp64([1.0, 2.0])))
        .await
        .unwrap();
    let (status, body) = http(
        cluster.addrs.inference_http,
        "POST",
        "/v2/models/pairs-model/infer",
        r#"{"inputs":[{"name":"input","shape":[1,3],"datatype":"FP64","data":[1,2,3]}]}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\\\"input\\\""), "{body}");
    cluster.stop().await;
}
