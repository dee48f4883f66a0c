//! Pipeline runs survive what production does to them, with every service a separate process:
//! a peer down until the retries run out (then the run is resumed, reusing its finished
//! steps), the orchestrator killed with -9 mid-step (it continues the run on restart), and the
//! training service killed mid-job (the step is retried). No model version is ever registered
//! twice.

use std::process::{Command, Stdio};
use std::time::Duration;

use mlops_e2e::*;
use mlops_proto::v1::orchestrator_service_client::OrchestratorServiceClient;
use mlops_proto::v1::registry_service_client::RegistryServiceClient;
use mlops_proto::v1::{
    GetPipelineRunRequest, JobState, ListModelVersionsRequest, PipelineRun, RunPipelineRequest,
};

/// Stochastic gradient descent for long enough (seconds) that a kill lands mid-job.
const PIPELINE: &str = r#"
name: reliable
dataset:
  name: diabetes
  source: diabetes.csv
train:
  target: target
  model: gradient_descent
  preprocessing:
    - kind: standard_scale
  params:
    learning_rate: 0.0005
    epochs: 1500
    batch_size: 1
    tol: 0
  test_fraction: 0.2
  seed: 42
evaluate:
  metric: r2
  min: 0.3
register:
  model: diabetes-sgd
promote:
  alias: champion
cache: false
retry:
  attempts: 5
  initial_backoff_ms: 200
  max_backoff_ms: 2000
"#;

struct Services {
    dir: tempfile::TempDir,
    database: Option<String>,
    ports: [u16; 6],
    processes: Processes,
}

const ORCHESTRATOR: usize = 0;
const INGESTION: usize = 1;
const TRAINING: usize = 2;
const REGISTRY: usize = 3;
const INFERENCE: usize = 4;
const HTTP: usize = 5;

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

impl Services {
    /// Starts `name`; the orchestrator may be pointed at another registry address.
    async fn start(&mut self, name: &str, registry: u16) {
        let p = self.ports;
        let listen = |port: u16| format!("127.0.0.1:{port}");
        let own: Vec<(&str, String)> = match name {
            "mlops-registry" => vec![("MLOPS__REGISTRY__LISTEN", listen(p[REGISTRY]))],
            "mlops-ingestion" => vec![("MLOPS__INGESTION__LISTEN", listen(p[INGESTION]))],
            "mlops-training" => vec![("MLOPS__TRAINING__LISTEN", listen(p[TRAINING]))],
            "mlops-inference" => vec![
                ("MLOPS__INFERENCE__GRPC_LISTEN", listen(p[INFERENCE])),
                ("MLOPS__INFERENCE__HTTP_LISTEN", listen(p[HTTP])),
            ],
            _ => vec![
                ("MLOPS__ORCHESTRATOR__LISTEN", listen(p[ORCHESTRATOR])),
                (
                    "MLOPS__ORCHESTRATOR__SOURCES_DIR",
                    self.dir.path().join("sources").display().to_string(),
                ),
            ],
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .unwrap();
        let child = Command::new(binary(name))
            .current_dir(self.dir.path())
            .env_clear()
            .env(
                "MLOPS__STORAGE__DATA_DIR",
                self.dir.path().join("data").display().to_string(),
            )
            .envs(
                self.database
                    .iter()
                    .map(|u| ("MLOPS__STORAGE__DATABASE_URL", u.clone())),
            )
            .env("MLOPS__ENDPOINTS__INGESTION", url(p[INGESTION]))
            .env("MLOPS__ENDPOINTS__TRAINING", url(p[TRAINING]))
            .env("MLOPS__ENDPOINTS__REGISTRY", url(registry))
            .env("MLOPS__ENDPOINTS__INFERENCE", url(p[INFERENCE]))
            .envs(own)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.processes.0.push((name.to_string(), child));
        let port = match name {
            "mlops-registry" => p[REGISTRY],
            "mlops-ingestion" => p[INGESTION],
            "mlops-training" => p[TRAINING],
            "mlops-inference" => p[INFERENCE],
            _ => p[ORCHESTRATOR],
        };
        wait_healthy(&url(port), Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{name} did not start: {e}\n{}", self.log(name)));
    }

    /// SIGKILL: no shutdown code runs.
    fn kill9(&mut self, name: &str) {
        let index = self
            .processes
            .0
            .iter()
            .position(|(n, _)| n == name)
            .expect("running");
        let (_, mut child) = self.processes.0.remove(index);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    fn orchestrator(&self) -> OrchestratorServiceClient<mlops_core::client::Channel> {
        let channel =
            mlops_core::client::channel(&url(self.ports[ORCHESTRATOR]), &Default::default())
                .unwrap();
        OrchestratorServiceClient::new(channel)
    }

    async fn run(&self, id: &str) -> PipelineRun {
        self.orchestrator()
            .get_pipeline_run(GetPipelineRunRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner()
    }

    async fn until(&self, id: &str, done: impl Fn(&PipelineRun) -> bool) -> PipelineRun {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
        loop {
            let run = self.run(id).await;
            if done(&run) {
                return run;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "run {id} stuck: {run:?}\n{}",
                self.log("mlops-orchestrator")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn start_run(&self) -> PipelineRun {
        self.orchestrator()
            .run_pipeline(RunPipelineRequest {
                pipeline_yaml: PIPELINE.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// The run once its training job is running.
    async fn training(&self, id: &str) -> PipelineRun {
        self.until(id, |r| {
            step(r, "train").state() == JobState::Running && !r.training_job_id.is_empty()
        })
        .await
    }

    async fn finished(&self, id: &str) -> PipelineRun {
        self.until(id, |r| {
            matches!(r.state(), JobState::Succeeded | JobState::Failed)
        })
        .await
    }

    async fn versions(&self) -> Vec<mlops_proto::v1::ModelVersion> {
        let channel =
            mlops_core::client::channel(&url(self.ports[REGISTRY]), &Default::default()).unwrap();
        RegistryServiceClient::new(channel)
            .list_model_versions(ListModelVersionsRequest {
                model_name: "diabetes-sgd".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .versions
    }
}

fn step<'a>(run: &'a PipelineRun, name: &str) -> &'a mlops_proto::v1::StepState {
    run.steps.iter().find(|s| s.name == name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_survive_retries_resumes_and_kill_9_without_registering_twice() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sources")).unwrap();
    std::fs::write(dir.path().join("sources/diabetes.csv"), QUICKSTART_CSV).unwrap();
    let database = test_database(dir.path()).await;
    let ports = free_ports(6);
    let mut services = Services {
        dir,
        database,
        ports: [ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]],
        processes: Processes::default(),
    };
    let registry = services.ports[REGISTRY];
    for name in [
        "mlops-registry",
        "mlops-ingestion",
        "mlops-training",
        "mlops-inference",
    ] {
        services.start(name, registry).await;
    }

    // 1. The orchestrator is given a registry address where nothing answers: the evaluate
    // step (which gates against the champion in the registry) is retried with backoff, then
    // the run fails naming the cause.
    // The port stays this test's, so no other test's server can take it over while the run
    // retries (one did: its answer, UNIMPLEMENTED, is not worth a retry); every connection is
    // dropped at once.
    let refusing = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = refusing.local_addr().unwrap().port();
    std::thread::spawn(move || refusing.incoming().for_each(drop));
    services.start("mlops-orchestrator", nowhere).await;
    let first = services.start_run().await;
    let failed = services.finished(&first.id).await;
    assert_eq!(failed.state(), JobState::Failed, "{failed:?}");
    let evaluate = step(&failed, "evaluate");
    assert_eq!(evaluate.state(), JobState::Failed);
    assert_eq!(evaluate.attempts, 5, "{evaluate:?}");
    assert_eq!(step(&failed, "register").state(), JobState::Skipped);
    assert!(
        failed.error.contains("gave up after 5 attempts"),
        "{}",
        failed.error
    );
    assert_eq!(step(&failed, "train").state(), JobState::Succeeded);
    // Its log keeps every attempt, each retry's cause and wait, and the outcome.
    let log = &evaluate.log;
    assert_eq!(log.len(), 5 + 4 + 1, "{log:#?}");
    assert_eq!(
        log.iter()
            .filter(|l| l.contains(" attempt ") && l.ends_with(" started"))
            .count(),
        5
    );
    assert_eq!(
        log.iter().filter(|l| l.contains("; retrying in ")).count(),
        4
    );
    assert!(
        log[9].contains(" failed: ") && log[9].ends_with("(gave up after 5 attempts)"),
        "{log:#?}"
    );
    let job = failed.training_job_id.clone();

    // 2. Fixed and restarted, the run is resumed from the CLI: ingest and train are reused
    // (same training job), the rest runs.
    services.kill9("mlops-orchestrator");
    services.start("mlops-orchestrator", registry).await;
    let addrs = [("orchestrator", url(services.ports[ORCHESTRATOR]))];
    let shown = mlops_cli(&["pipeline", "resume", &first.id, "--wait"], &addrs, None);
    assert!(shown.contains("reusing: ingest, train\n"), "{shown}");
    let resumed = services.run(&first.id).await;
    assert_eq!(resumed.state(), JobState::Succeeded, "{resumed:?}");
    assert_eq!(resumed.training_job_id, job);
    assert_eq!(resumed.resumes, 1);
    assert_eq!(step(&resumed, "train").attempts, 1);
    assert_eq!(services.versions().await.len(), 1);
    let shown = mlops_cli(&["pipeline", "show", &first.id], &addrs, None);
    assert!(
        shown.contains("[✓ ingest] → [✓ train] → [✓ evaluate] → [✓ register]"),
        "{shown}"
    );
    assert!(shown.contains("resumed 1 times"), "{shown}");
    assert!(
        shown.contains("log of evaluate:") && shown.contains(" attempt 6 started"),
        "{shown}"
    );
    // A run that did not fail cannot be resumed.
    let status = services
        .orchestrator()
        .resume_pipeline_run(mlops_proto::v1::ResumePipelineRunRequest {
            id: first.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);

    // 3. kill -9 of the orchestrator while it trains: restarted, it continues the run (the
    // training job is followed, not resubmitted) and registers exactly once.
    let second = services.start_run().await;
    let training = services.training(&second.id).await;
    services.kill9("mlops-orchestrator");
    services.start("mlops-orchestrator", registry).await;
    let done = services.finished(&second.id).await;
    assert_eq!(done.state(), JobState::Succeeded, "{done:?}");
    assert_eq!(done.resumes, 1);
    assert_eq!(done.training_job_id, training.training_job_id);
    let versions = services.versions().await;
    assert_eq!(versions.len(), 2);
    let lineage = versions
        .iter()
        .find(|v| v.version == done.model_version)
        .and_then(|v| v.lineage.clone())
        .unwrap();
    assert_eq!(lineage.pipeline_run_id, second.id);

    // 4. kill -9 of the training service mid-job: the step is retried, the job submitted
    // again after the restart, and the run completes.
    let third = services.start_run().await;
    let training = services.training(&third.id).await;
    services.kill9("mlops-training");
    tokio::time::sleep(Duration::from_millis(300)).await;
    services.start("mlops-training", registry).await;
    let done = services.finished(&third.id).await;
    assert_eq!(
        done.state(),
        JobState::Succeeded,
        "{done:?}\n{}",
        services.log("mlops-orchestrator")
    );
    let train = step(&done, "train");
    assert!(train.attempts >= 2, "{train:?}");
    assert_ne!(done.training_job_id, training.training_job_id);
    assert_eq!(services.versions().await.len(), 3);

    // 5. Cancelled mid-train from the CLI, the run ends failed as cancelled; resumed, it
    // follows the job it had started instead of training again.
    let fifth = services.start_run().await;
    let training = services.training(&fifth.id).await;
    let addrs_orchestrator = [("orchestrator", url(services.ports[ORCHESTRATOR]))];
    mlops_cli(
        &["pipeline", "cancel", &fifth.id],
        &addrs_orchestrator,
        None,
    );
    let cancelled = services.finished(&fifth.id).await;
    assert_eq!(cancelled.state(), JobState::Failed);
    assert_eq!(cancelled.error, "cancelled during step train");
    let status = services
        .orchestrator()
        .cancel_pipeline_run(mlops_proto::v1::CancelPipelineRunRequest {
            id: fifth.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    mlops_cli(
        &["pipeline", "resume", &fifth.id, "--wait"],
        &addrs_orchestrator,
        None,
    );
    let resumed = services.run(&fifth.id).await;
    assert_eq!(resumed.state(), JobState::Succeeded, "{resumed:?}");
    assert_eq!(resumed.training_job_id, training.training_job_id);
    assert_eq!(services.versions().await.len(), 4);

    // Lineage, from the CLI: back from the served version to the run, the pipeline file's
    // digest, the dataset version, its report and its source; forward from the dataset.
    let p = services.ports;
    let addrs = [
        ("orchestrator", url(p[ORCHESTRATOR])),
        ("ingestion", url(p[INGESTION])),
        ("registry", url(p[REGISTRY])),
    ];
    let reference = format!("diabetes-sgd:{}", done.model_version);
    let back: serde_json::Value = serde_json::from_str(&mlops_cli(
        &["lineage", "model", &reference, "--json"],
        &addrs,
        None,
    ))
    .unwrap();
    assert_eq!(back["run"]["id"], third.id);
    assert_eq!(
        back["run"]["pipeline_digest"],
        mlops_core::storage::sha256_hex(PIPELINE.as_bytes())
    );
    assert_eq!(back["training_job_id"], done.training_job_id);
    assert_eq!(back["dataset"]["id"], "diabetes@1");
    assert_eq!(back["dataset"]["validation_passed"], true);
    assert_eq!(back["dataset"]["source"]["kind"], "upload");
    assert_eq!(
        back["dataset"]["source"]["sha256"],
        mlops_core::storage::sha256_hex(QUICKSTART_CSV.as_bytes())
    );
    let forward = mlops_cli(&["lineage", "dataset", "diabetes@1"], &addrs, None);
    assert!(forward.contains("-> 4 model versions"), "{forward}");
    assert!(forward.contains(&third.id), "{forward}");
}
