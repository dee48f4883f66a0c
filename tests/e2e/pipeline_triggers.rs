//! Registered pipelines start their own runs: on a cron schedule (never more at once than
//! max_concurrent), on each new version of their dataset (trained on that version), and when
//! the served model drifts (retraining, at most once per interval). Bad registrations are
//! refused at submit time and register nothing.

use std::time::Duration;

use mlops_e2e::*;
use mlops_proto::v1::{
    JobState, ListPipelineRunsRequest, ListRegisteredPipelinesRequest, PipelineRun,
    RegisterPipelineRequest, RegisteredPipeline, UnregisterPipelineRequest,
};
use tonic::Code;

async fn register(cluster: &TestCluster, yaml: &str) -> Result<RegisteredPipeline, tonic::Status> {
    cluster
        .orchestrator()
        .register_pipeline(RegisterPipelineRequest {
            pipeline_yaml: yaml.into(),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn registered(cluster: &TestCluster) -> Vec<RegisteredPipeline> {
    cluster
        .orchestrator()
        .list_registered_pipelines(ListRegisteredPipelinesRequest {})
        .await
        .unwrap()
        .into_inner()
        .pipelines
}

async fn runs_of(cluster: &TestCluster, pipeline: &str) -> Vec<PipelineRun> {
    let mut runs: Vec<PipelineRun> = cluster
        .orchestrator()
        .list_pipeline_runs(ListPipelineRunsRequest {})
        .await
        .unwrap()
        .into_inner()
        .runs
        .into_iter()
        .filter(|r| r.pipeline == pipeline)
        .collect();
    runs.sort_by_key(|r| r.created_at_ms);
    runs
}

/// Waits (bounded) for a run of `pipeline` whose trigger starts with `trigger`, then for its
/// end.
async fn triggered_run(cluster: &TestCluster, pipeline: &str, trigger: &str) -> PipelineRun {
    for _ in 0..300 {
        let found = runs_of(cluster, pipeline)
            .await
            .into_iter()
            .find(|r| r.trigger.starts_with(trigger));
        if let Some(run) = found {
            return cluster.wait_for_run(&run.id).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "no run of {pipeline} started by {trigger:?}: {:?}",
        registered(cluster).await
    );
}

const ON_NEW_DATA: &str = r#"
name: on-new-data
dataset:
  name: fresh
train:
  target: target
  model: linear
register:
  model: fresh-linear
promote:
  alias: champion
triggers:
  new_dataset_version: true
"#;

/// Seconds of stochastic gradient descent per run, retrained every time.
const TICKING: &str = r#"
name: ticking
dataset:
  name: diabetes
  source: diabetes.csv
train:
  target: target
  model: gradient_descent
  preprocessing:
    - kind: standard_scale
  params:
    learning_rate: 0.00005
    epochs: 800
    batch_size: 1
    tol: 0
register:
  model: diabetes-sgd
cache: false
triggers:
  schedule: "* * * * * *"
  max_concurrent: 1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_pipelines_run_on_new_dataset_versions_and_on_a_schedule() {
    let cluster = TestCluster::builder()
        .source("diabetes.csv", QUICKSTART_CSV)
        .setting("MLOPS__ORCHESTRATOR__TRIGGER_POLL_MS", "200")
        .start()
        .await;

    // Refused at submit time, with the field and the reason; nothing registered.
    let scheduled = |schedule: &str| {
        QUICKSTART_PIPELINE.to_string() + &format!("triggers:\n  schedule: \"{schedule}\"\n")
    };
    for (yaml, needle) in [
        (scheduled("61 * * * *"), "triggers.schedule"),
        (scheduled("every day"), "not a cron expression"),
        (QUICKSTART_PIPELINE.to_string(), "needs at least one of"),
        (
            QUICKSTART_PIPELINE.to_string() + "triggers:\n  new_dataset_version: true\n",
            "triggers.new_dataset_version",
        ),
        (
            QUICKSTART_PIPELINE.to_string() + "triggers:\n  colour: red\n",
            "colour",
        ),
        (
            QUICKSTART_PIPELINE.to_string() + "triggers:\n  drift: {share: 2}\n",
            "triggers.drift.share",
        ),
        (
            scheduled("* * * * *") + "  max_concurrent: 0\n",
            "triggers.max_concurrent",
        ),
    ] {
        let status = register(&cluster, &yaml).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{yaml}");
        assert!(status.message().contains(needle), "{}", status.message());
    }
    assert!(registered(&cluster).await.is_empty());

    // A new version of the dataset starts a run trained on exactly that version.
    let on_data = register(&cluster, ON_NEW_DATA).await.unwrap();
    assert!(on_data.on_new_dataset_version);
    assert_eq!(on_data.seen_dataset_version, 0);
    upload_csv(&cluster, "fresh", QUICKSTART_CSV).await.unwrap();
    let first = triggered_run(&cluster, "on-new-data", "new version fresh@1").await;
    assert_eq!(first.state(), JobState::Succeeded, "{}", first.error);
    assert_eq!(
        (first.dataset.as_str(), first.dataset_version),
        ("fresh", 1)
    );
    let fewer_rows: String = QUICKSTART_CSV
        .lines()
        .take(400)
        .map(|line| format!("{line}\n"))
        .collect();
    upload_csv(&cluster, "fresh", &fewer_rows).await.unwrap();
    let second = triggered_run(&cluster, "on-new-data", "new version fresh@2").await;
    assert_eq!(second.state(), JobState::Succeeded, "{}", second.error);
    assert_eq!(second.dataset_version, 2);
    assert_ne!(second.training_job_id, first.training_job_id);
    let state = registered(&cluster).await;
    assert_eq!(state[0].runs_started, 2, "{state:?}");
    assert_eq!(state[0].seen_dataset_version, 2);
    assert_eq!(runs_of(&cluster, "on-new-data").await.len(), 2);

    // Every second, for runs that take several (uncached gradient descent, its rate so small
    // that every epoch still improves, so it never stops early): firings while one is active
    // are skipped, never run at once.
    let every_second = TICKING.to_string();
    let ticking = register(&cluster, &every_second).await.unwrap();
    assert!(ticking.next_scheduled_at_ms > ticking.registered_at_ms);
    let mut finished = Vec::new();
    for _ in 0..300 {
        finished = runs_of(&cluster, "ticking")
            .await
            .into_iter()
            .filter(|r| r.state() == JobState::Succeeded)
            .collect();
        if finished.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(finished.len() >= 2, "{:?}", registered(&cluster).await);
    assert!(
        finished
            .iter()
            .all(|r| r.trigger.starts_with("schedule 20"))
    );

    let addrs = [(
        "orchestrator",
        format!("http://{}", cluster.addrs.orchestrator),
    )];
    let listed = tokio::task::spawn_blocking(move || {
        mlops_cli(&["pipeline", "registered", "--json"], &addrs, None)
    })
    .await
    .unwrap();
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["on-new-data", "ticking"]);
    assert_eq!(listed[1]["schedule"], "* * * * * *");
    assert!(listed[1]["skipped"].as_u64().unwrap() >= 1, "{listed}");

    cluster
        .orchestrator()
        .unregister_pipeline(UnregisterPipelineRequest {
            name: "ticking".into(),
        })
        .await
        .unwrap();
    let status = cluster
        .orchestrator()
        .unregister_pipeline(UnregisterPipelineRequest {
            name: "ticking".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // The run in flight (if any) ends; then nothing starts.
    for run in runs_of(&cluster, "ticking").await {
        cluster.wait_for_run(&run.id).await;
    }
    let stopped = runs_of(&cluster, "ticking").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = runs_of(&cluster, "ticking").await;
    assert_eq!(after.len(), stopped.len());
    for pair in after.windows(2) {
        assert!(
            pair[1].created_at_ms >= pair[0].finished_at_ms,
            "runs overlapped although max_concurrent is 1: {pair:?}"
        );
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_of_the_served_model_starts_its_retraining_pipeline_once_per_interval() {
    let cluster = TestCluster::builder()
        .source("diabetes.csv", QUICKSTART_CSV)
        .setting("MLOPS__ORCHESTRATOR__TRIGGER_POLL_MS", "200")
        .setting("MLOPS__INFERENCE__DRIFT__WINDOW", "400")
        .start()
        .await;
    let first = cluster.run_pipeline(QUICKSTART_PIPELINE).await;
    assert_eq!(first.state(), JobState::Succeeded, "{}", first.error);
    assert!(first.promoted);

    let retraining = QUICKSTART_PIPELINE.to_string()
        + "triggers:\n  drift: {share: 0.5, min_interval_seconds: 3600}\n";
    let entry = register(&cluster, &retraining).await.unwrap();
    assert_eq!(entry.drift_share, 0.5);

    // Live inputs like the training data: no drift, no run.
    let (x, _) = diabetes();
    let rows: Vec<Vec<f64>> = x.outer_iter().map(|r| r.to_vec()).collect();
    // Each window in one request: the trigger never sees it half replaced.
    cluster
        .inference()
        .model_infer(fp64_request("diabetes-linear", "", &rows[..400]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(runs_of(&cluster, "quickstart").await.len(), 1);
    let quiet = registered(&cluster).await;
    assert_eq!(quiet[0].runs_started, 0, "{quiet:?}");
    assert_eq!(quiet[0].last_error, "", "{quiet:?}");

    // Every feature moves by about two standard deviations: retraining starts.
    let shifted: Vec<Vec<f64>> = rows[..400]
        .iter()
        .map(|r| r.iter().map(|v| v + 0.1).collect())
        .collect();
    cluster
        .inference()
        .model_infer(fp64_request("diabetes-linear", "", &shifted))
        .await
        .unwrap();
    let retrained = triggered_run(
        &cluster,
        "quickstart",
        "drift: 100% of the features of diabetes-linear:1",
    )
    .await;
    assert_eq!(
        retrained.state(),
        JobState::Succeeded,
        "{}",
        retrained.error
    );

    // The model still drifts, but the interval has not passed: no second run.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let runs = runs_of(&cluster, "quickstart").await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    let state = registered(&cluster).await;
    assert_eq!(state[0].runs_started, 1, "{state:?}");
    assert_eq!(state[0].last_run_id, retrained.id);
    assert!(state[0].last_drift_run_at_ms > 0);
    cluster.stop().await;
}
