//! A pipeline as a graph of steps: candidates that need only the data train at the same time,
//! the evaluate step picks the best and gates it, the smoke test runs before the promotion,
//! and a rerun reuses every candidate from the cache. A bad graph is refused at submit time.

use mlops_e2e::*;
use mlops_proto::v1::{
    GetModelVersionRequest, JobState, ListPipelineRunsRequest, RunPipelineRequest,
};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_train_side_by_side_and_the_best_one_is_gated_and_served() {
    let cluster = TestCluster::quickstart().await;
    let yaml =
        std::fs::read_to_string(repo_root().join("examples/pipelines/diabetes-candidates.yaml"))
            .unwrap();

    let run = cluster.run_pipeline(&yaml).await;
    assert_eq!(
        run.state(),
        JobState::Succeeded,
        "{}: {:?}",
        run.error,
        run.steps
    );
    let names: Vec<&str> = run.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "data", "linear", "ridge", "tree", "gate", "register", "smoke", "promote"
        ]
    );
    assert!(
        run.steps.iter().all(|s| s.progress == 1.0),
        "{:?}",
        run.steps
    );
    let trains: Vec<_> = run.steps.iter().filter(|s| s.kind == "train").collect();
    assert_eq!(trains.len(), 3);
    // Side by side: each started before any of them finished.
    let last_start = trains.iter().map(|s| s.started_at_ms).max().unwrap();
    let first_end = trains.iter().map(|s| s.finished_at_ms).min().unwrap();
    assert!(last_start <= first_end, "{trains:?}");
    // And after what they need.
    let data = &run.steps[0];
    assert!(
        trains
            .iter()
            .all(|s| s.started_at_ms >= data.finished_at_ms)
    );

    // The best candidate by held-out R² is the run's, and what was registered.
    let best = trains
        .iter()
        .max_by(|a, b| a.metrics["r2"].total_cmp(&b.metrics["r2"]))
        .unwrap();
    assert_eq!(run.training_job_id, best.training_job_id);
    assert_eq!(run.metrics["r2"], best.metrics["r2"]);
    let gate = &run.steps[4];
    assert!(
        gate.message
            .starts_with(&format!("selected {} (r2 ", best.name)),
        "{}",
        gate.message
    );
    for other in trains.iter().filter(|s| s.name != best.name) {
        assert!(gate.message.contains(&other.name), "{}", gate.message);
    }
    let version = cluster
        .registry()
        .get_model_version(GetModelVersionRequest {
            model_name: "diabetes-best".into(),
            version: 0,
            alias: "champion".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(version.version, run.model_version);
    assert_eq!(
        version.lineage.unwrap().training_job_id,
        best.training_job_id
    );
    // The smoke test ran against the registered version before the promotion.
    let (smoke, promote) = (&run.steps[6], &run.steps[7]);
    assert!(smoke.finished_at_ms <= promote.started_at_ms);
    assert!(
        smoke
            .message
            .starts_with(&format!("diabetes-best:{} predicted", run.model_version)),
        "{}",
        smoke.message
    );

    // Same data, same sections: every candidate comes from the cache, same version.
    let again = cluster.run_pipeline(&yaml).await;
    assert_eq!(again.state(), JobState::Succeeded, "{}", again.error);
    for step in again.steps.iter().filter(|s| s.kind == "train") {
        assert!(step.message.starts_with("cache hit"), "{}", step.message);
    }
    assert_eq!(again.model_version, run.model_version);

    // Another seed: every candidate trains again, and the best one is measured against the
    // champion; it is worse by more than the 5% the gate allows, so nothing is registered.
    let reseeded = cluster
        .orchestrator()
        .run_pipeline(RunPipelineRequest {
            pipeline_yaml: yaml.clone(),
            parameters: [("seed".to_string(), "7".to_string())].into(),
        })
        .await
        .unwrap()
        .into_inner();
    let reseeded = cluster.wait_for_run(&reseeded.id).await;
    assert_eq!(reseeded.state(), JobState::Failed);
    assert!(
        reseeded
            .error
            .contains("gate failed: rmse <= champion.rmse * 1.05"),
        "{}",
        reseeded.error
    );
    assert_eq!(reseeded.model_version, 0);
    assert_eq!(reseeded.champion_version, run.model_version);

    // The terminal picture shows the candidates side by side; the SVG report adds the metrics
    // against the champion.
    let addrs = [
        (
            "orchestrator",
            format!("http://{}", cluster.addrs.orchestrator),
        ),
        ("registry", format!("http://{}", cluster.addrs.registry)),
        ("training", format!("http://{}", cluster.addrs.training)),
    ];
    let report = cluster.data_dir().join("report.svg");
    let (id, path) = (reseeded.id.clone(), report.display().to_string());
    let shown = tokio::task::spawn_blocking(move || {
        mlops_cli(&["pipeline", "show", &id, "--svg", &path], &addrs, None)
    })
    .await
    .unwrap();
    assert!(
        shown.contains(
            "[✓ data] → [✓ linear | ✓ ridge | ✓ tree] → [✗ gate] → [- register] → [- smoke] → [- promote]"
        ),
        "{shown}"
    );
    let svg = std::fs::read_to_string(&report).unwrap();
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(
        svg.contains(&format!("champion diabetes-best:{}", run.model_version)),
        "{svg}"
    );
    let selected = reseeded
        .steps
        .iter()
        .find(|s| s.kind == "train" && s.training_job_id == reseeded.training_job_id)
        .unwrap();
    assert!(svg.contains(&format!("{} (selected)", selected.name)));
    for name in [
        "data", "linear", "ridge", "tree", "gate", "register", "smoke", "promote", "r2", "rmse",
    ] {
        assert!(svg.contains(&format!(">{name}<")), "{name}");
    }

    // A cycle is refused at submit time with the steps on it; nothing starts.
    let before = runs(&cluster).await;
    let cyclic = yaml.replace("needs: [register]", "needs: [promote]");
    let status = cluster
        .orchestrator()
        .run_pipeline(RunPipelineRequest {
            pipeline_yaml: cyclic,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("cycle through smoke, promote"),
        "{}",
        status.message()
    );
    assert_eq!(runs(&cluster).await, before);
    cluster.stop().await;
}

async fn runs(cluster: &TestCluster) -> usize {
    cluster
        .orchestrator()
        .list_pipeline_runs(ListPipelineRunsRequest {})
        .await
        .unwrap()
        .into_inner()
        .runs
        .len()
}
