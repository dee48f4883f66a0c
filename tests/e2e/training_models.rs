//! The ML toolkit through the platform: grid search with cross-validation, classifiers served
//! with labels and probabilities, gradient descent's loss curve over gRPC and the CLI, and bad
//! fit specs refused with the field named.

use mlops_e2e::*;
use mlops_proto::inference::model_infer_request::InferInputTensor;
use mlops_proto::inference::{ModelInferRequest, ModelMetadataRequest};
use mlops_proto::v1::{
    EvaluateModelRequest, FitSpec, JobState, ParamValues, PreprocessingStep,
    SubmitTrainingJobRequest,
};
use tonic::Code;

fn dataset(name: &str) -> String {
    std::fs::read_to_string(repo_root().join(format!("examples/datasets/{name}.csv"))).unwrap()
}

fn step(kind: &str) -> PreprocessingStep {
    PreprocessingStep {
        kind: kind.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grid_searched_classifier_is_served_with_labels_and_probabilities() {
    let cluster = TestCluster::builder().start().await;
    upload_csv(&cluster, "iris", &dataset("iris"))
        .await
        .unwrap();
    let fit = FitSpec {
        grid: [(
            "C".to_string(),
            ParamValues {
                values: vec!["0.01".into(), "1".into(), "100".into()],
            },
        )]
        .into(),
        preprocessing: vec![step("standard_scale")],
        cv_folds: 5,
        selection_metric: "f1_macro".into(),
        ..Default::default()
    };
    let job = cluster
        .training()
        .submit_training_job(SubmitTrainingJobRequest {
            dataset: "iris".into(),
            target_column: "species".into(),
            model_type: "logistic".into(),
            register_as: "iris".into(),
            fit: Some(fit),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let job = wait_job(&cluster, &job.id).await;
    assert_eq!(job.state(), JobState::Succeeded, "{}", job.error);
    assert_eq!(job.task, "classification");
    assert_eq!(job.selection_metric, "f1_macro");
    assert_eq!(job.candidates.len(), 3);
    assert!(job.candidates.iter().all(|c| c.fold_scores.len() == 5));
    // The strongest penalty (C = 0.01) underfits iris; the chosen one is the best mean.
    let best = job
        .candidates
        .iter()
        .max_by(|a, b| a.mean.total_cmp(&b.mean))
        .unwrap();
    assert_eq!(job.params["C"], best.params["C"]);
    assert_ne!(job.params["C"], "0.01");
    assert!(job.metrics["accuracy"] > 0.85, "{:?}", job.metrics);
    assert!(job.metrics.contains_key("roc_auc") && job.metrics.contains_key("log_loss"));
    // Permutation importance on the held-out rows: the petals separate the species.
    assert_eq!(job.importance.len(), 4);
    let top = job
        .importance
        .iter()
        .max_by(|a, b| a.mean.total_cmp(&b.mean))
        .unwrap();
    assert!(top.feature.starts_with("petal"), "{:?}", job.importance);

    let metadata = cluster
        .inference()
        .model_metadata(ModelMetadataRequest {
            name: "iris".into(),
            version: "1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let outputs: Vec<(&str, &str)> = metadata
        .outputs
        .iter()
        .map(|o| (o.name.as_str(), o.datatype.as_str()))
        .collect();
    assert_eq!(
        outputs,
        vec![("predictions", "BYTES"), ("probabilities", "FP64")]
    );

    // A typical setosa and a typical virginica, raw (the bundle scales them itself).
    let rows = [5.0, 3.4, 1.5, 0.2, 6.7, 3.0, 5.6, 2.2];
    let response = cluster
        .inference()
        .model_infer(ModelInferRequest {
            model_name: "iris".into(),
            inputs: vec![InferInputTensor {
                name: "input".into(),
                datatype: "FP64".into(),
                shape: vec![2, 4],
                ..Default::default()
            }],
            raw_input_contents: vec![raw_fp64(rows)],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let labels = mlops_core::tensor::bytes_elements(&response.raw_output_contents[0]).unwrap();
    assert_eq!(labels, vec![&b"setosa"[..], &b"virginica"[..]]);
    let proba = decode_fp64(&response.raw_output_contents[1]);
    assert_eq!(response.outputs[1].shape, vec![2, 3]);
    for row in proba.chunks(3) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{row:?}");
    }
    assert!(proba[0] > 0.9 && proba[5] > 0.6, "{proba:?}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gradient_descent_reports_its_loss_curve_through_grpc_and_the_cli() {
    let cluster = TestCluster::builder().start().await;
    upload_csv(&cluster, "diabetes", &dataset("diabetes"))
        .await
        .unwrap();
    let mut fit = FitSpec {
        params: [
            ("learning_rate".to_string(), "0.05".to_string()),
            ("epochs".to_string(), "300".to_string()),
        ]
        .into(),
        preprocessing: vec![step("standard_scale")],
        ..Default::default()
    };
    let job = cluster
        .training()
        .submit_training_job(SubmitTrainingJobRequest {
            dataset: "diabetes".into(),
            target_column: "target".into(),
            model_type: "gradient_descent".into(),
            fit: Some(fit.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let job = wait_job(&cluster, &job.id).await;
    assert_eq!(job.state(), JobState::Succeeded, "{}", job.error);
    assert!(!job.loss_curve.is_empty() && job.loss_curve.len() <= 300);
    assert!(job.loss_curve.last().unwrap() < &(job.loss_curve[0] * 0.5));
    assert!(job.metrics["r2"] > 0.3, "{:?}", job.metrics);

    // The same through the binary: a sparkline in the output and an SVG file on request.
    let svg = cluster.data_dir().join("loss.svg");
    let addrs = vec![
        ("ingestion", format!("http://{}", cluster.addrs.ingestion)),
        ("training", format!("http://{}", cluster.addrs.training)),
    ];
    let out = mlops_cli(
        &[
            "train",
            "--dataset",
            "diabetes",
            "--target",
            "target",
            "--model",
            "gradient_descent",
            "--param",
            "learning_rate=0.05",
            "--param",
            "epochs=100",
            "--param",
            "batch_size=32",
            "--step",
            "standard_scale",
            "--wait",
            "--loss-svg",
            svg.to_str().unwrap(),
        ],
        &addrs,
        None,
    );
    assert!(out.contains("loss ") && out.contains(" epochs"), "{out}");
    assert!(out.chars().any(|c| ('▁'..='█').contains(&c)), "{out}");
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(drawn.starts_with("<svg") && drawn.contains("<polyline"));

    // A learning rate far too large diverges and says so.
    fit.params.insert("learning_rate".into(), "5".into());
    let job = cluster
        .training()
        .submit_training_job(SubmitTrainingJobRequest {
            dataset: "diabetes".into(),
            target_column: "target".into(),
            model_type: "gradient_descent".into(),
            fit: Some(fit),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let job = wait_job(&cluster, &job.id).await;
    assert_eq!(job.state(), JobState::Failed);
    assert!(job.error.contains("learning_rate 5"), "{}", job.error);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_fit_specs_are_refused_naming_the_reason() {
    let cluster = TestCluster::builder().start().await;
    upload_csv(
        &cluster,
        "small",
        "a,b,y\n1,2,3\n2,3,5\n3,5,8\n4,4,8\n5,7,12\n6,6,12\n",
    )
    .await
    .unwrap();
    let submit = |model: &str, fit: FitSpec| SubmitTrainingJobRequest {
        dataset: "small".into(),
        target_column: "y".into(),
        model_type: model.into(),
        fit: Some(fit),
        ..Default::default()
    };
    let cases = [
        (
            submit(
                "ridge",
                FitSpec {
                    params: [("alpah".to_string(), "1".to_string())].into(),
                    ..Default::default()
                },
            ),
            "alpah",
        ),
        (
            submit(
                "ridge",
                FitSpec {
                    grid: [("alpha".to_string(), ParamValues { values: vec![] })].into(),
                    ..Default::default()
                },
            ),
            "no values",
        ),
        (
            submit(
                "ridge",
                FitSpec {
                    cv_folds: 50,
                    ..Default::default()
                },
            ),
            "cv_folds",
        ),
        (
            submit(
                "ridge",
                FitSpec {
                    preprocessing: vec![step("whiten")],
                    ..Default::default()
                },
            ),
            "whiten",
        ),
        (
            submit(
                "ridge",
                FitSpec {
                    selection_metric: "accuracy".into(),
                    ..Default::default()
                },
            ),
            "accuracy",
        ),
        (submit("forest", FitSpec::default()), "model_type"),
        (
            submit(
                "linear",
                FitSpec {
                    features: vec!["nope".into()],
                    ..Default::default()
                },
            ),
            "nope",
        ),
        (
            submit(
                "linear",
                FitSpec {
                    features: vec!["a".into(), "b".into(), "a".into()],
                    ..Default::default()
                },
            ),
            "\"a\" is listed more than once",
        ),
    ];
    for (request, needle) in cases {
        let status = cluster
            .training()
            .submit_training_job(request)
            .await
            .unwrap_err();
        assert_refused(&status, Code::InvalidArgument, needle);
    }

    // A single class only shows in the data: the job fails and says why.
    upload_csv(&cluster, "one-class", "a,label\n1,x\n2,x\n3,x\n4,x\n5,x\n")
        .await
        .unwrap();
    let job = cluster
        .training()
        .submit_training_job(SubmitTrainingJobRequest {
            dataset: "one-class".into(),
            target_column: "label".into(),
            model_type: "logistic".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let job = wait_job(&cluster, &job.id).await;
    assert_eq!(job.state(), JobState::Failed);
    assert!(job.error.contains("single class"), "{}", job.error);
    cluster.stop().await;
}

/// `rows` rows of a, b and y = 2a + b.
fn linear_csv(rows: usize) -> String {
    let mut csv = String::from("a,b,y\n");
    for i in 0..rows {
        let (a, b) = (i as f64 / 10.0, (i % 7) as f64);
        csv += &format!("{a},{b},{}\n", 2.0 * a + b);
    }
    csv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataset_over_the_training_memory_limit_fails_naming_the_setting_and_fewer_columns_fit() {
    // 4 KiB: 200 rows of three numbers (4,800 bytes) do not fit, two columns of them do.
    let cluster = TestCluster::builder()
        .setting("MLOPS__TRAINING__MAX_DATASET_BYTES", "4096")
        .start()
        .await;
    upload_csv(&cluster, "lines", &linear_csv(200))
        .await
        .unwrap();
    let submit = |features: Vec<String>| SubmitTrainingJobRequest {
        dataset: "lines".into(),
        target_column: "y".into(),
        model_type: "linear".into(),
        fit: Some(FitSpec {
            features,
            ..Default::default()
        }),
        ..Default::default()
    };
    let job = cluster
        .training()
        .submit_training_job(submit(vec![]))
        .await
        .unwrap()
        .into_inner();
    let job = wait_job(&cluster, &job.id).await;
    assert_eq!(job.state(), JobState::Failed);
    assert!(
        job.error.contains("training.max_dataset_bytes") && job.error.contains("200 rows of 3"),
        "{}",
        job.error
    );

    let job = cluster
        .training()
        .submit_training_job(submit(vec!["a".into()]))
        .await
        .unwrap()
        .into_inner();
    let job = wait_job(&cluster, &job.id).await;
    assert_eq!(job.state(), JobState::Succeeded, "{}", job.error);
    assert!(!job.artifact_digest.is_empty());

    // Evaluation reads through the same limit: its own columns fit, a bigger version does not.
    let evaluate = |dataset: &str| EvaluateModelRequest {
        artifact_digest: job.artifact_digest.clone(),
        dataset: dataset.into(),
        ..Default::default()
    };
    let scored = cluster
        .training()
        .evaluate_model(evaluate("lines"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scored.rows, 200);
    upload_csv(&cluster, "more-lines", &linear_csv(400))
        .await
        .unwrap();
    let status = cluster
        .training()
        .evaluate_model(evaluate("more-lines"))
        .await
        .unwrap_err();
    assert_refused(
        &status,
        Code::ResourceExhausted,
        "training.max_dataset_bytes",
    );
    cluster.stop().await;
}

fn bytes_raw(items: &[&str]) -> Vec<u8> {
    let mut raw = Vec::new();
    for item in items {
        raw.extend_from_slice(&(item.len() as u32).to_le_bytes());
        raw.extend_from_slice(item.as_bytes());
    }
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_with_a_categorical_input_is_trained_and_served_on_text_tensors() {
    let cluster = TestCluster::builder().start().await;
    let mut csv = String::from("size,color,price\n");
    let offsets = [("red", 10.0), ("green", 20.0), ("blue", 0.0)];
    for i in 0..90 {
        let (color, offset) = offsets[i % 3];
        let size = (i % 11) as f64;
        let noise = ((i * 7) % 5) as f64 * 0.001;
        csv.push_str(&format!("{size},{color},{}\n", 3.0 * size + offset + noise));
    }
    upload_csv(&cluster, "paint", &csv).await.unwrap();
    let fit = FitSpec {
        params: [("alpha".to_string(), "0.0001".to_string())].into(),
        preprocessing: vec![PreprocessingStep {
            kind: "one_hot".into(),
            columns: vec!["color".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let job = cluster
        .training()
        .submit_training_job(SubmitTrainingJobRequest {
            dataset: "paint".into(),
            target_column: "price".into(),
            model_type: "ridge".into(),
            register_as: "paint".into(),
            fit: Some(fit),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let job = wait_job(&cluster, &job.id).await;
    assert_eq!(job.state(), JobState::Succeeded, "{}", job.error);
    assert!(job.metrics["r2"] > 0.999, "{:?}", job.metrics);

    let metadata = cluster
        .inference()
        .model_metadata(ModelMetadataRequest {
            name: "paint".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let inputs: Vec<(&str, &str)> = metadata
        .inputs
        .iter()
        .map(|i| (i.name.as_str(), i.datatype.as_str()))
        .collect();
    assert_eq!(inputs, vec![("size", "FP64"), ("color", "BYTES")]);

    let request = |colors: Vec<u8>, explain: bool| {
        let mut r = ModelInferRequest {
            model_name: "paint".into(),
            inputs: vec![
                InferInputTensor {
                    name: "color".into(),
                    datatype: "BYTES".into(),
                    shape: vec![2],
                    ..Default::default()
                },
                InferInputTensor {
                    name: "size".into(),
                    datatype: "FP64".into(),
                    shape: vec![2],
                    ..Default::default()
                },
            ],
            raw_input_contents: vec![colors, raw_fp64([2.0, 5.0])],
            ..Default::default()
        };
        if explain {
            r.parameters.insert(
                "explain".into(),
                mlops_proto::inference::InferParameter {
                    parameter_choice: Some(
                        mlops_proto::inference::infer_parameter::ParameterChoice::BoolParam(true),
                    ),
                },
            );
        }
        r
    };
    let response = cluster
        .inference()
        .model_infer(request(bytes_raw(&["green", "blue"]), true))
        .await
        .unwrap()
        .into_inner();
    let predictions = decode_fp64(&response.raw_output_contents[0]);
    assert!((predictions[0] - 26.0).abs() < 0.05, "{predictions:?}");
    assert!((predictions[1] - 15.0).abs() < 0.05, "{predictions:?}");
    // Contributions are over the encoded features and sum to prediction - base.
    let shares = decode_fp64(&response.raw_output_contents[1]);
    let base = decode_fp64(&response.raw_output_contents[2]);
    let features = response.outputs[1].shape[1] as usize;
    assert_eq!(features, 4, "size + three one-hot columns");
    for row in 0..2 {
        let total: f64 = shares[row * features..(row + 1) * features].iter().sum();
        assert!((total + base[row] - predictions[row]).abs() < 1e-9);
    }

    for (colors, needle) in [
        (bytes_raw(&["green", "purple"]), "purple"),
        (vec![9, 0, 0, 0, b'r'], "length prefix"),
        (bytes_raw(&["green"]), "color"),
    ] {
        let status = cluster
            .inference()
            .model_infer(request(colors, false))
            .await
            .unwrap_err();
        assert_refused(&status, Code::InvalidArgument, needle);
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_classification_example_pipeline_grid_searches_gates_and_serves_species() {
    let cluster = TestCluster::builder()
        .source("iris.csv", dataset("iris"))
        .start()
        .await;
    let yaml =
        std::fs::read_to_string(repo_root().join("examples/pipelines/iris-logistic.yaml")).unwrap();
    let run = cluster.run_pipeline(&yaml).await;
    assert_eq!(run.state(), JobState::Succeeded, "{run:?}");
    assert!(run.promoted);
    assert!(run.metrics["accuracy"] >= 0.85, "{:?}", run.metrics);
    let smoke = run.steps.iter().find(|s| s.name == "smoke_test").unwrap();
    assert!(smoke.message.contains("setosa"), "{}", smoke.message);
    let job = cluster
        .training()
        .get_training_job(mlops_proto::v1::GetTrainingJobRequest {
            id: run.training_job_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.candidates.len(), 5);
    assert_eq!(job.selection_metric, "f1_macro");
    let ingest = run.steps.iter().find(|s| s.name == "ingest").unwrap();
    assert!(
        ingest.message.contains("validation passed"),
        "{}",
        ingest.message
    );

    // Data that breaks a declared constraint stops the run before anything is trained.
    let strict = yaml.replace("name: iris\n", "name: iris-strict\n").replace(
        "allowed: [setosa, versicolor, virginica]",
        "allowed: [setosa, versicolor]",
    );
    let failed = cluster.run_pipeline(&strict).await;
    assert_eq!(failed.state(), JobState::Failed);
    assert!(
        failed.error.contains("failed validation") && failed.error.contains("species"),
        "{}",
        failed.error
    );
    assert!(failed.training_job_id.is_empty());
    cluster.stop().await;
}
