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
            "data", "check", "linear", "ridge", "tree", "gate", "register", "smoke", "promote"
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
    let check = &run.steps[1];
    assert!(
        check.message.starts_with("valid: diabetes@1: 442 rows"),
        "{}",
        check.message
    );
    assert!(
        trains
            .iter()
            .all(|s| s.started_at_ms >= check.finished_at_ms)
    );

    // The best candidate by held-out R² is the run's, and what was registered.
    let best = trains
        .iter()
        .max_by(|a, b| a.metrics["r2"].total_cmp(&b.metrics["r2"]))
        .unwrap();
    assert_eq!(run.training_job_id, best.training_job_id);
    assert_eq!(run.metrics["r2"], best.metrics["r2"]);
    let gate = &run.steps[5];
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
    let (smoke, promote) = (&run.steps[7], &run.steps[8]);
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
    let reseeded = cluster.run_pipeline_with(&yaml, &[("seed", "7")]).await;
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
            "[✓ data] → [✓ check] → [✓ linear | ✓ ridge | ✓ tree] → [✗ gate] → [- register] → [- smoke] → [- promote]"
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
        "data", "check", "linear", "ridge", "tree", "gate", "register", "smoke", "promote", "r2",
        "rmse",
    ] {
        assert!(svg.contains(&format!(">{name}<")), "{name}");
    }

    // Data that fails the checks stops the run before anything trains.
    let too_few = cluster
        .run_pipeline_with(&yaml, &[("min_rows", "1000")])
        .await;
    assert_eq!(too_few.state(), JobState::Failed);
    assert!(
        too_few
            .error
            .contains("step check failed: invalid data: 442 rows, fewer than min_rows 1000"),
        "{}",
        too_few.error
    );
    assert!(
        too_few
            .steps
            .iter()
            .filter(|s| s.kind == "train")
            .all(|s| s.state() == JobState::Skipped && s.training_job_id.is_empty())
    );

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
    // Where in the file, and why.
    let steps_line = yaml.lines().position(|l| l == "steps:").unwrap() + 1;
    assert!(
        status.message().starts_with(&format!(
            "line {steps_line}: steps: the needs form a cycle through smoke, promote"
        )),
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

/// Sends unversioned requests until `stop`, counting the answers by version.
async fn traffic(
    cluster: &TestCluster,
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::collections::BTreeMap<String, u64> {
    let (x, _) = diabetes();
    let row = vec![x.row(0).to_vec()];
    let mut inference = cluster.inference();
    let mut answered = std::collections::BTreeMap::new();
    while !*stop.borrow() {
        let response = inference
            .model_infer(fp64_request("diabetes-linear", "", &row))
            .await
            .unwrap()
            .into_inner();
        *answered.entry(response.model_version).or_insert(0) += 1;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    answered
}

async fn aliases(cluster: &TestCluster) -> std::collections::HashMap<String, u32> {
    cluster
        .registry()
        .get_registered_model(mlops_proto::v1::GetRegisteredModelRequest {
            name: "diabetes-linear".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .aliases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_serves_a_share_of_live_traffic_before_the_promotion() {
    let cluster = TestCluster::quickstart().await;
    let first = cluster.run_pipeline(QUICKSTART_PIPELINE).await;
    assert_eq!(first.state(), JobState::Succeeded, "{}", first.error);
    assert!(first.promoted);

    // Ridge as the challenger, on half of the live traffic for two seconds.
    let canary = QUICKSTART_PIPELINE.replace("model: linear", "model: ridge")
        + "canary: {share: 0.5, duration_seconds: 2, min_requests: 20, timeout_seconds: 60, \
           max_latency_ratio: 1000}\n";
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let load = {
        let cluster = &cluster;
        async move { traffic(cluster, stopped).await }
    };
    let run = async {
        let run = cluster.run_pipeline(&canary).await;
        stop.send(true).unwrap();
        run
    };
    let (run, answered) = tokio::join!(run, load);
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
            "ingest",
            "train",
            "evaluate",
            "register",
            "canary",
            "promote",
            "smoke_test"
        ]
    );
    let step = &run.steps[4];
    assert!(
        step.message
            .starts_with("canary passed: 50% of the traffic for "),
        "{}",
        step.message
    );
    assert!(
        step.message.contains("diabetes-linear:2 "),
        "{}",
        step.message
    );
    // Both versions answered live requests; the challenger at least the 20 it needed.
    assert!(
        answered.get("1").copied().unwrap_or(0) >= 20,
        "{answered:?}"
    );
    assert!(
        answered.get("2").copied().unwrap_or(0) >= 20,
        "{answered:?}"
    );
    // The canary is down again: every unversioned request goes to the champion.
    let after = aliases(&cluster).await;
    assert!(!after.contains_key("canary"), "{after:?}");
    let champion = after["champion"].to_string();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let load = traffic(&cluster, stopped);
    let stopper = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        stop.send(true).unwrap();
    };
    let (quiet, ()) = tokio::join!(load, stopper);
    assert_eq!(quiet.keys().collect::<Vec<_>>(), [&champion], "{quiet:?}");

    // One canary per model: while another run's canary is live, this one refuses to start
    // and leaves it alone.
    cluster
        .registry()
        .set_model_alias(mlops_proto::v1::SetModelAliasRequest {
            model_name: "diabetes-linear".into(),
            alias: "canary".into(),
            version: 1,
            expected_version: None,
        })
        .await
        .unwrap();
    let blocked = cluster
        .run_pipeline(
            &(QUICKSTART_PIPELINE
                .replace("model: linear", "model: elastic_net")
                .replace("min: 0.3", "min: -10")
                + "canary: {duration_seconds: 1, min_requests: 1}\n"),
        )
        .await;
    assert_eq!(blocked.state(), JobState::Failed);
    assert!(
        blocked
            .error
            .contains("another canary of diabetes-linear is live (diabetes-linear:1"),
        "{}",
        blocked.error
    );
    assert_eq!(aliases(&cluster).await.get("canary"), Some(&1));
    cluster
        .registry()
        .delete_model_alias(mlops_proto::v1::DeleteModelAliasRequest {
            model_name: "diabetes-linear".into(),
            alias: "canary".into(),
        })
        .await
        .unwrap();

    // A challenger that cannot meet the latency bound fails its canary: not promoted, the
    // champion and its traffic untouched.
    let strict = QUICKSTART_PIPELINE.replace("model: linear", "model: lasso")
        + "canary: {share: 0.5, duration_seconds: 1, min_requests: 10, max_latency_ratio: 0.000001}\n";
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let load = traffic(&cluster, stopped);
    let run = async {
        let run = cluster.run_pipeline(&strict).await;
        stop.send(true).unwrap();
        run
    };
    let (failed, _) = tokio::join!(run, load);
    assert_eq!(failed.state(), JobState::Failed);
    assert!(
        failed.error.contains("canary failed: mean latency"),
        "{}",
        failed.error
    );
    assert!(!failed.promoted);
    let after = aliases(&cluster).await;
    assert!(!after.contains_key("canary"), "{after:?}");
    assert_eq!(after["champion"].to_string(), champion);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_scores_candidate_and_champion_on_the_same_evaluation_dataset() {
    use mlops_proto::v1::{EvaluateModelRequest, GetTrainingJobRequest};
    let cluster = TestCluster::quickstart().await;
    // The last 100 patients, as a fixed evaluation set.
    let lines: Vec<&str> = QUICKSTART_CSV.lines().collect();
    let eval_csv = std::iter::once(lines[0])
        .chain(lines[lines.len() - 100..].iter().copied())
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    upload_csv(&cluster, "diabetes-eval", &eval_csv)
        .await
        .unwrap();
    let on_eval = QUICKSTART_PIPELINE.replace(
        "  min: 0.3\n",
        "  min: 0.3\n  dataset: diabetes-eval@1\n  checks: [\"r2 >= champion.r2 * 0.9\"]\n",
    );
    assert_ne!(on_eval, QUICKSTART_PIPELINE);

    let first = cluster.run_pipeline(&on_eval).await;
    assert_eq!(first.state(), JobState::Succeeded, "{}", first.error);
    assert_eq!(first.evaluated_on, "diabetes-eval@1 (100 rows)");
    let gate = &first.steps[2];
    assert!(
        gate.message
            .starts_with("on diabetes-eval@1 (100 rows): gate passed: r2 = "),
        "{}",
        gate.message
    );
    // The gate's r2 is the model's on those 100 rows: predicted through inference and scored
    // here, it is the same number; the job's holdout r2 is another.
    let (x, y) = diabetes();
    let rows = x.nrows();
    let tail = x.slice(ndarray::s![rows - 100.., ..]).to_owned();
    let truth = y.slice(ndarray::s![rows - 100..]).to_owned();
    let tail_rows: Vec<Vec<f64>> = tail.outer_iter().map(|r| r.to_vec()).collect();
    let response = cluster
        .inference()
        .model_infer(fp64_request(
            "diabetes-linear",
            &first.model_version.to_string(),
            &tail_rows,
        ))
        .await
        .unwrap()
        .into_inner();
    let predicted = decode_fp64(&response.raw_output_contents[0]);
    let mean = truth.mean().unwrap();
    let residual: f64 = truth
        .iter()
        .zip(&predicted)
        .map(|(t, p)| (t - p).powi(2))
        .sum();
    let total: f64 = truth.iter().map(|t| (t - mean).powi(2)).sum();
    let r2 = 1.0 - residual / total;
    assert!(
        (first.metrics["r2"] - r2).abs() < 1e-9,
        "{} vs {r2}",
        first.metrics["r2"]
    );
    assert!(
        (first.steps[1].metrics["r2"] - r2).abs() > 1e-6,
        "holdout differs"
    );

    // A challenger: the champion is scored again on the same rows, not taken as recorded.
    let ridge = on_eval.replace("model: linear", "model: ridge");
    let second = cluster.run_pipeline(&ridge).await;
    assert_eq!(second.champion_version, first.model_version);
    assert!(
        (second.champion_metrics["r2"] - first.metrics["r2"]).abs() < 1e-12,
        "{:?} vs {:?}",
        second.champion_metrics,
        first.metrics
    );
    assert!(
        second.steps[2]
            .message
            .contains("r2 >= champion.r2 * 0.9 ("),
        "{}",
        second.steps[2].message
    );

    // Bad requests name what is wrong.
    let digest = cluster
        .training()
        .get_training_job(GetTrainingJobRequest {
            id: first.training_job_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .artifact_digest;
    upload_csv(&cluster, "no-target", "age,sex\n1,2\n3,4\n")
        .await
        .unwrap();
    for (digest, dataset, code, needle) in [
        (
            digest.as_str(),
            "no-target",
            Code::InvalidArgument,
            "\"target\"",
        ),
        (digest.as_str(), "missing", Code::NotFound, "missing"),
        (
            "not-a-digest",
            "diabetes-eval",
            Code::InvalidArgument,
            "artifact_digest",
        ),
    ] {
        let status = cluster
            .training()
            .evaluate_model(EvaluateModelRequest {
                artifact_digest: digest.into(),
                dataset: dataset.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(status.message().contains(needle), "{}", status.message());
    }
    let status = cluster
        .orchestrator()
        .run_pipeline(RunPipelineRequest {
            pipeline_yaml: on_eval.replace("diabetes-eval@1", "diabetes eval"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("evaluate.dataset"),
        "{}",
        status.message()
    );
    // Missing data is refused at submit time too, and nothing starts.
    let before = runs(&cluster).await;
    let sourceless =
        "name: p\ndataset: {name: nowhere}\ntrain: {target: y}\nregister: {model: m}\n";
    for (yaml, needle) in [
        (
            on_eval.replace("diabetes-eval@1", "diabetes-eval@9"),
            "evaluate.dataset",
        ),
        (sourceless.to_string(), "dataset.name"),
    ] {
        let status = cluster
            .orchestrator()
            .run_pipeline(RunPipelineRequest {
                pipeline_yaml: yaml,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_refused(&status, Code::NotFound, needle);
    }
    assert_eq!(runs(&cluster).await, before);
    cluster.stop().await;
}
