//! Drift of live inputs against the training profile a bundle carries: quiet on data like the
//! training data, loud on shifted data, through the ModelDrift RPC, Prometheus and the CLI.

use mlops_e2e::*;
use mlops_proto::inference::ModelDriftRequest;
use mlops_proto::v1::{JobState, SubmitTrainingJobRequest};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_inputs_drift_only_when_their_distribution_moves() {
    let cluster = TestCluster::builder()
        .setting("MLOPS__INFERENCE__DRIFT__WINDOW", "400")
        .setting("MLOPS__INFERENCE__DRIFT__INTERVAL_SECONDS", "1")
        .start()
        .await;
    let csv = std::fs::read_to_string(repo_root().join("examples/datasets/diabetes.csv")).unwrap();
    upload_csv(&cluster, "diabetes", &csv).await.unwrap();
    let job = cluster
        .training()
        .submit_training_job(SubmitTrainingJobRequest {
            dataset: "diabetes".into(),
            target_column: "target".into(),
            model_type: "ridge".into(),
            register_as: "drifty".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let job = wait_job(&cluster, &job.id).await;
    assert_eq!(job.state(), JobState::Succeeded, "{}", job.error);

    let drift = || async {
        cluster
            .inference()
            .model_drift(ModelDriftRequest {
                name: "drifty".into(),
                version: String::new(),
            })
            .await
    };
    let (x, _) = diabetes();
    let rows: Vec<Vec<f64>> = x.outer_iter().map(|r| r.to_vec()).collect();
    cluster.send_rows("drifty", &rows[..400]).await;
    let quiet = drift().await.unwrap().into_inner();
    assert_eq!(quiet.features.len(), 10);
    assert!(
        quiet
            .features
            .iter()
            .all(|f| f.method == "ks" && f.samples == 400)
    );
    assert!(!quiet.dataset_drift, "{quiet:?}");
    assert!(quiet.drifted_share <= 0.2, "{quiet:?}");

    // Every feature moves by about two standard deviations.
    let shifted: Vec<Vec<f64>> = rows[..400]
        .iter()
        .map(|r| r.iter().map(|v| v + 0.1).collect())
        .collect();
    cluster.send_rows("drifty", &shifted).await;
    let loud = drift().await.unwrap().into_inner();
    assert!(loud.dataset_drift, "{loud:?}");
    assert!(
        loud.features
            .iter()
            .all(|f| f.drifted && f.p_value < 1e-6 && f.psi > 0.5)
    );

    // Prometheus gauges, recomputed every second here.
    let mut published = false;
    for _ in 0..50 {
        let (_, metrics) = http(cluster.addrs.inference_http, "GET", "/metrics", "").await;
        if metrics.contains("mlops_inference_drift_share{model=\"drifty\",version=\"1\"} 1") {
            published = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(published, "drift gauges not published");

    let out = mlops_cli(
        &["models", "drift", "drifty:1", "--json"],
        &[(
            "inference",
            format!("http://{}", cluster.addrs.inference_grpc),
        )],
        None,
    );
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["dataset_drift"], true);
    assert_eq!(report["features"].as_array().unwrap().len(), 10);

    // A version without a profile says so.
    let status = cluster
        .inference()
        .model_drift(ModelDriftRequest {
            name: "nope".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{}", status.message());
    cluster.stop().await;
}
