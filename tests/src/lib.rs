//! Test support: a `TestCluster` of all five services in this process on random ports, gRPC
//! clients for it, and helpers to find the built binaries.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mlops_cli::stack::{Stack, StackAddrs, StackOptions};
use mlops_core::client::{Channel, ClientOptions};
use mlops_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use mlops_proto::v1::auth_service_client::AuthServiceClient;
use mlops_proto::v1::ingestion_service_client::IngestionServiceClient;
use mlops_proto::v1::orchestrator_service_client::OrchestratorServiceClient;
use mlops_proto::v1::registry_service_client::RegistryServiceClient;
use mlops_proto::v1::training_service_client::TrainingServiceClient;
use mlops_proto::v1::{JobState, PipelineRun, RunPipelineRequest, WatchPipelineRunRequest};

pub use mlops_cli::{QUICKSTART_CSV, QUICKSTART_PIPELINE};

pub struct TestCluster {
    pub addrs: StackAddrs,
    /// The first admin token, when the cluster was built with auth.
    pub admin_token: Option<String>,
    /// `http` or `https`.
    pub scheme: &'static str,
    client: Client,
    stack: Option<Stack>,
    /// Owned temp dir, unless the builder was given a data dir.
    _data: Option<tempfile::TempDir>,
    data_dir: PathBuf,
}

#[derive(Default)]
pub struct TestClusterBuilder {
    env: Vec<(String, String)>,
    sources: Vec<(String, Vec<u8>)>,
    admin_token: Option<String>,
    data_dir: Option<PathBuf>,
    config_file: Option<PathBuf>,
}

impl TestClusterBuilder {
    /// A settings override, as `MLOPS__SECTION__KEY`.
    pub fn setting(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// A file placed in the orchestrator's sources directory.
    pub fn source(mut self, name: &str, content: impl Into<Vec<u8>>) -> Self {
        self.sources.push((name.into(), content.into()));
        self
    }

    /// Reuse a data directory (e.g. to restart a cluster on the same data).
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    /// A settings file, as `mlops up --config` takes.
    pub fn config_file(mut self, file: &Path) -> Self {
        self.config_file = Some(file.to_path_buf());
        self
    }

    /// TLS on every endpoint, with certificates from `mlops dev certs` written to `dir`.
    pub fn tls(self, dir: &Path, mutual: bool) -> Self {
        mlops_cli::admin::write_certs(dir, &["localhost".into(), "127.0.0.1".into()])
            .expect("certificates");
        let path = |name: &str| dir.join(name).display().to_string();
        self.setting("MLOPS__TLS__ENABLED", "true")
            .setting("MLOPS__TLS__CERT_FILE", &path("server.pem"))
            .setting("MLOPS__TLS__KEY_FILE", &path("server.key"))
            .setting("MLOPS__TLS__CA_FILE", &path("ca.pem"))
            .setting("MLOPS__TLS__MUTUAL", if mutual { "true" } else { "false" })
    }

    /// Bearer tokens required everywhere; the cluster's default clients use the admin token.
    pub fn auth(mut self) -> Self {
        let admin = mlops_core::auth::generate_token();
        self.env
            .push(("MLOPS__AUTH__ENABLED".into(), "true".into()));
        self.env.push((
            "MLOPS__AUTH__SERVICE_TOKEN".into(),
            mlops_core::auth::generate_token(),
        ));
        self.env
            .push(("MLOPS__AUTH__ADMIN_TOKEN".into(), admin.clone()));
        self.admin_token = Some(admin);
        self
    }

    pub async fn start(mut self) -> TestCluster {
        let owned = match self.data_dir {
            Some(_) => None,
            None => Some(tempfile::tempdir().expect("temp dir")),
        };
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| owned.as_ref().expect("owned dir").path().to_path_buf());
        if let Some(url) = test_database(&data_dir).await {
            self.env.push(("MLOPS__STORAGE__DATABASE_URL".into(), url));
        }
        let stack = Stack::start(StackOptions {
            config_file: self.config_file,
            data_dir: Some(data_dir.clone()),
            ephemeral_ports: true,
            env: self.env,
        })
        .await
        .expect("stack starts");
        std::fs::create_dir_all(stack.sources_dir()).expect("sources dir");
        for (name, content) in &self.sources {
            std::fs::write(stack.sources_dir().join(name), content).expect("source written");
        }
        let options = ClientOptions {
            token: self.admin_token.clone(),
            tls: stack.client_options.tls.clone(),
        };
        TestCluster {
            addrs: stack.addrs.clone(),
            admin_token: self.admin_token,
            scheme: stack.scheme,
            client: Client {
                addrs: stack.addrs.clone(),
                scheme: stack.scheme,
                options,
            },
            stack: Some(stack),
            _data: owned,
            data_dir,
        }
    }
}

/// gRPC clients for every service of a cluster, presenting one set of credentials.
#[derive(Clone)]
pub struct Client {
    addrs: StackAddrs,
    scheme: &'static str,
    pub options: ClientOptions,
}

impl Client {
    pub fn channel(&self, addr: std::net::SocketAddr) -> Channel {
        mlops_core::client::channel(&format!("{}://{addr}", self.scheme), &self.options)
            .expect("channel")
    }
    pub fn ingestion(&self) -> IngestionServiceClient<Channel> {
        IngestionServiceClient::new(self.channel(self.addrs.ingestion))
    }
    pub fn training(&self) -> TrainingServiceClient<Channel> {
        TrainingServiceClient::new(self.channel(self.addrs.training))
    }
    pub fn registry(&self) -> RegistryServiceClient<Channel> {
        RegistryServiceClient::new(self.channel(self.addrs.registry))
    }
    pub fn inference(&self) -> GrpcInferenceServiceClient<Channel> {
        GrpcInferenceServiceClient::new(self.channel(self.addrs.inference_grpc))
    }
    pub fn orchestrator(&self) -> OrchestratorServiceClient<Channel> {
        OrchestratorServiceClient::new(self.channel(self.addrs.orchestrator))
    }
    pub fn auth(&self) -> AuthServiceClient<Channel> {
        AuthServiceClient::new(self.channel(self.addrs.orchestrator))
    }

    /// Uploads CSV text through the real streaming RPC, in small chunks so rows straddle
    /// messages.
    pub async fn upload_csv(
        &self,
        name: &str,
        csv: &str,
    ) -> Result<mlops_proto::v1::UploadDatasetResponse, tonic::Status> {
        use mlops_proto::v1::upload_dataset_request::Part;
        use mlops_proto::v1::{UploadDatasetRequest, UploadHeader};
        let header = UploadHeader {
            name: name.into(),
            ..Default::default()
        };
        let mut messages = vec![UploadDatasetRequest {
            part: Some(Part::Header(header)),
        }];
        messages.extend(csv.as_bytes().chunks(7).map(|c| UploadDatasetRequest {
            part: Some(Part::Chunk(c.to_vec())),
        }));
        self.ingestion()
            .upload_dataset(futures::stream::iter(messages))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Follows a training job until it ends (bounded) and returns its last state.
    pub async fn wait_job(&self, id: &str) -> mlops_proto::v1::TrainingJob {
        use futures::StreamExt;
        use mlops_proto::v1::WatchTrainingJobRequest;
        let mut stream = self
            .training()
            .watch_training_job(WatchTrainingJobRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner();
        let mut last = None;
        let mut stages = Vec::new();
        while let Some(job) = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("job progresses")
        {
            let job = job.unwrap();
            stages.push(job.stage.clone());
            last = Some(job);
        }
        let last = last.expect("at least one update");
        assert!(
            matches!(last.state(), JobState::Succeeded | JobState::Failed),
            "{stages:?}"
        );
        last
    }
}

impl TestCluster {
    pub fn builder() -> TestClusterBuilder {
        TestClusterBuilder::default()
    }

    /// The quickstart's data in place.
    pub async fn quickstart() -> Self {
        Self::builder()
            .source("diabetes.csv", QUICKSTART_CSV)
            .start()
            .await
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Clients presenting `token` (or none).
    pub fn as_token(&self, token: Option<&str>) -> Client {
        let mut client = self.client.clone();
        client.options.token = token.map(str::to_string);
        client
    }

    pub fn ingestion(&self) -> IngestionServiceClient<Channel> {
        self.client.ingestion()
    }
    pub fn training(&self) -> TrainingServiceClient<Channel> {
        self.client.training()
    }
    pub fn registry(&self) -> RegistryServiceClient<Channel> {
        self.client.registry()
    }
    pub fn inference(&self) -> GrpcInferenceServiceClient<Channel> {
        self.client.inference()
    }
    pub fn orchestrator(&self) -> OrchestratorServiceClient<Channel> {
        self.client.orchestrator()
    }
    pub fn auth(&self) -> AuthServiceClient<Channel> {
        self.client.auth()
    }

    /// Creates an API token with `role` (and optional grants) through the real AuthService.
    pub async fn token(&self, name: &str, role: &str, resources: &[&str]) -> String {
        self.auth()
            .create_token(mlops_proto::v1::CreateTokenRequest {
                name: name.into(),
                role: role.into(),
                resources: resources.iter().map(|r| r.to_string()).collect(),
                ttl_seconds: 0,
            })
            .await
            .expect("token created")
            .into_inner()
            .token
    }

    /// Runs a pipeline through the orchestrator and waits (bounded) for its end.
    pub async fn run_pipeline(&self, yaml: &str) -> PipelineRun {
        self.run_pipeline_with(yaml, &[]).await
    }

    /// `run_pipeline` with values for the file's parameters.
    pub async fn run_pipeline_with(&self, yaml: &str, parameters: &[(&str, &str)]) -> PipelineRun {
        let mut orchestrator = self.orchestrator();
        let run = orchestrator
            .run_pipeline(RunPipelineRequest {
                pipeline_yaml: yaml.into(),
                parameters: parameters
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            })
            .await
            .expect("run accepted")
            .into_inner();
        self.wait_for_run(&run.id).await
    }

    /// Sends rows of numeric features to a model's unversioned route, 50 at a time.
    pub async fn send_rows(&self, model: &str, rows: &[Vec<f64>]) {
        for chunk in rows.chunks(50) {
            self.inference()
                .model_infer(fp64_request(model, "", chunk))
                .await
                .expect("inference answers");
        }
    }

    /// Follows a run (bounded) to its end.
    pub async fn wait_for_run(&self, id: &str) -> PipelineRun {
        use futures::StreamExt;
        let mut orchestrator = self.orchestrator();
        let mut updates = orchestrator
            .watch_pipeline_run(WatchPipelineRunRequest { id: id.into() })
            .await
            .expect("watch")
            .into_inner();
        let mut last = PipelineRun {
            id: id.into(),
            ..Default::default()
        };
        let deadline = tokio::time::sleep(Duration::from_secs(120));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                update = updates.next() => match update {
                    Some(update) => last = update.expect("run update"),
                    None => break,
                },
                _ = &mut deadline => panic!("pipeline run {} did not finish: {last:?}", last.id),
            }
        }
        assert!(
            matches!(last.state(), JobState::Succeeded | JobState::Failed),
            "{last:?}"
        );
        last
    }

    /// Graceful shutdown of every service.
    pub async fn stop(mut self) {
        if let Some(mut stack) = self.stack.take() {
            stack.shutdown().await;
        }
    }
}

/// With `MLOPS_TEST_DATABASE_URL` set (a PostgreSQL server URL), the database a cluster on
/// `data_dir` keeps its tables in: one per data directory, created on first use, so a restart
/// on the same directory finds its data again. Unset: None, and services use SQLite files.
pub async fn test_database(data_dir: &Path) -> Option<String> {
    use sqlx::{Connection, Executor};
    let server = std::env::var("MLOPS_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    let name = format!(
        "mlops_test_{}",
        &mlops_core::storage::sha256_hex(data_dir.to_string_lossy().as_bytes())[..20]
    );
    let mut admin = sqlx::PgConnection::connect(&server)
        .await
        .expect("MLOPS_TEST_DATABASE_URL answers");
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&mut admin)
        .await
        .expect("pg_database");
    if exists.is_none() {
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("test database created");
    }
    let mut url = url::Url::parse(&server).expect("MLOPS_TEST_DATABASE_URL is a URL");
    url.set_path(&name);
    Some(url.to_string())
}

/// A two-feature linear bundle, as a training job writes it.
pub const BUNDLE: &str = r#"{"format_version":1,"model_type":"linear","feature_names":["a","b"],"target":"y","coefficients":[1.5,-2.0],"intercept":3.0}"#;

/// Puts a bundle into the cluster's artifact store, as a training job would.
pub async fn store_bundle(cluster: &TestCluster, text: &str) -> String {
    mlops_core::storage::ArtifactStore::local(&cluster.data_dir().join("artifacts"), None)
        .unwrap()
        .put(bytes::Bytes::copy_from_slice(text.as_bytes()))
        .await
        .unwrap()
}

/// Where the artifact store keeps a blob, for tests that damage or look for it.
pub fn blob_path(data_dir: &Path, digest: &str) -> PathBuf {
    data_dir.join(format!("artifacts/blobs/sha256/{}/{digest}", &digest[..2]))
}

/// A CreateModelVersion request for a `BUNDLE` stored under `digest`.
pub fn version_request(model: &str, digest: &str) -> mlops_proto::v1::CreateModelVersionRequest {
    mlops_proto::v1::CreateModelVersionRequest {
        model_name: model.into(),
        model_type: "linear".into(),
        artifact_digest: digest.into(),
        feature_names: vec!["a".into(), "b".into()],
        target: "y".into(),
        ..Default::default()
    }
}

/// A built binary of this workspace (`cargo build --workspace` puts them beside `deps/`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` before `cargo test --workspace`",
        path.display()
    );
    path
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// A port nothing listens on right now, drawn below the kernel's ephemeral range (32768 and
/// up by default). A port `bind(0)` hands out comes from that range, where any outgoing
/// connection's local end can take it before the server binds it: a CI run failed on a
/// registry that found its port in use.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    const PORTS: std::ops::Range<u16> = 10_000..32_000;
    loop {
        // A fresh random key per call: a random number without a dependency.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let port = PORTS.start + (random % u64::from(PORTS.end - PORTS.start)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// `n` consecutive free ports (for a published port range).
pub fn free_ports(n: u16) -> Vec<u16> {
    loop {
        let base = free_port();
        if base.checked_add(n).is_none() {
            continue;
        }
        let all_free =
            (base..base + n).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            return (base..base + n).collect();
        }
    }
}

/// Waits until a service's gRPC health check answers SERVING.
pub async fn wait_healthy(url: &str, timeout: Duration) -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let channel = mlops_core::client::channel(url, &ClientOptions::default())?;
        let status = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await;
        if matches!(&status, Ok(r) if r.get_ref().status() == ServingStatus::Serving) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("{url} not healthy after {timeout:?}: {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asserts that a call was refused with `code` and a message naming `needle`.
#[track_caller]
pub fn assert_refused(status: &tonic::Status, code: tonic::Code, needle: &str) {
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(status.message().contains(needle), "{}", status.message());
}

/// Uploads CSV text as a dataset version through the real streaming RPC, with the cluster's
/// default credentials.
pub async fn upload_csv(
    cluster: &TestCluster,
    name: &str,
    csv: &str,
) -> Result<mlops_proto::v1::UploadDatasetResponse, tonic::Status> {
    cluster.client.upload_csv(name, csv).await
}

/// Follows a training job to its end with the cluster's default credentials.
pub async fn wait_job(cluster: &TestCluster, id: &str) -> mlops_proto::v1::TrainingJob {
    cluster.client.wait_job(id).await
}

/// One HTTP/1.1 request on a fresh connection; returns the status code and the body.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    http_as(addr, method, path, body, None).await
}

/// [`http`] with `authorization: Bearer <token>`.
pub async fn http_as(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n{body}",
        body.len(),
        token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    // Chunked bodies: good enough to search in; JSON bodies from axum carry a content-length.
    let _ = head;
    (status, body.to_string())
}

/// The features and target of the bundled diabetes data.
pub fn diabetes() -> (ndarray::Array2<f64>, ndarray::Array1<f64>) {
    let mut reader = csv::Reader::from_reader(QUICKSTART_CSV.as_bytes());
    let rows: Vec<Vec<f64>> = reader
        .records()
        .map(|r| {
            r.expect("record")
                .iter()
                .map(|v| v.parse().expect("number"))
                .collect()
        })
        .collect();
    let p = rows[0].len() - 1;
    let x = ndarray::Array2::from_shape_fn((rows.len(), p), |(i, j)| rows[i][j]);
    let y = ndarray::Array1::from_iter(rows.iter().map(|r| r[p]));
    (x, y)
}

/// Raw little-endian FP64 bytes of a matrix, row-major, as OIP clients send them.
/// An inference request of rows of FP64 features in one `input` tensor; `version` "" is the
/// model's default route.
pub fn fp64_request(
    model: &str,
    version: &str,
    rows: &[Vec<f64>],
) -> mlops_proto::inference::ModelInferRequest {
    use mlops_proto::inference::model_infer_request::InferInputTensor;
    mlops_proto::inference::ModelInferRequest {
        model_name: model.into(),
        model_version: version.into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP64".into(),
            shape: vec![rows.len() as i64, rows.first().map_or(0, Vec::len) as i64],
            ..Default::default()
        }],
        raw_input_contents: vec![raw_fp64(rows.iter().flatten().copied())],
        ..Default::default()
    }
}

pub fn raw_fp64(values: impl IntoIterator<Item = f64>) -> Vec<u8> {
    mlops_core::tensor::fp64_to_raw(values)
}

/// An upload of a header alone (the server reads `header.uri` itself).
pub fn header_only(
    header: mlops_proto::v1::UploadHeader,
) -> impl futures::Stream<Item = mlops_proto::v1::UploadDatasetRequest> {
    futures::stream::iter(vec![mlops_proto::v1::UploadDatasetRequest {
        part: Some(mlops_proto::v1::upload_dataset_request::Part::Header(
            header,
        )),
    }])
}

/// `data` gzipped, as a client would upload a compressed file.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

pub fn decode_fp64(raw: &[u8]) -> Vec<f64> {
    mlops_core::tensor::fp64_from_raw(raw)
}

/// Runs the `mlops` CLI binary with the given service addresses; returns stdout, panicking with
/// stderr when it fails.
pub fn mlops_cli(args: &[&str], addrs: &[(&str, String)], token: Option<&str>) -> String {
    let mut command = std::process::Command::new(binary("mlops"));
    command.args(args);
    if let Some(token) = token {
        command.env("MLOPS_TOKEN", token);
    }
    for (name, url) in addrs {
        command.env(format!("MLOPS_{}_ADDR", name.to_uppercase()), url);
    }
    let output = command.output().expect("mlops runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "mlops {args:?} failed:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Runs the quickstart pipeline file through the `mlops` binary and checks it promoted v1.
pub async fn run_quickstart_with_cli(addrs: &[(&'static str, String)], token: &str) {
    let pipeline = repo_root().join("examples/pipelines/quickstart.yaml");
    let (addrs, token) = (addrs.to_vec(), token.to_string());
    let out = tokio::task::spawn_blocking(move || {
        mlops_cli(
            &["pipeline", "run", pipeline.to_str().unwrap(), "--wait"],
            &addrs,
            Some(&token),
        )
    })
    .await
    .unwrap();
    assert!(
        out.contains("promoted diabetes-linear:1 to champion"),
        "{out}"
    );
}

/// Children killed on drop, so a failing test leaves no process behind.
#[derive(Default)]
pub struct Processes(pub Vec<(String, std::process::Child)>);

impl Processes {
    /// SIGTERM to each, then waits: each must exit 0 (graceful shutdown) within 15 s.
    pub fn terminate_gracefully(&mut self) {
        for (name, child) in &mut self.0 {
            let status = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            assert!(
                status.map(|s| s.success()).unwrap_or(false),
                "cannot signal {name}"
            );
        }
        for (name, child) in &mut self.0 {
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            loop {
                if let Some(status) = child.try_wait().expect("wait") {
                    assert!(
                        status.success(),
                        "{name} exited with {status} after SIGTERM"
                    );
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{name} did not stop after SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.0.clear();
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
