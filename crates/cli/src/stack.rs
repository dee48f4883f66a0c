//! All five services in one process: `mlops up`, `mlops quickstart` and the end-to-end tests
//! run exactly this.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use mlops_core::{ApiError, CancellationToken, config};
use tokio::task::JoinSet;

/// How to start the stack.
#[derive(Debug, Clone, Default)]
pub struct StackOptions {
    /// Settings file shared by every service.
    pub config_file: Option<PathBuf>,
    /// Overrides `storage.data_dir`.
    pub data_dir: Option<PathBuf>,
    /// Bind every service to 127.0.0.1 port 0 (tests), ignoring the configured addresses.
    pub ephemeral_ports: bool,
    /// Environment overrides (`MLOPS__SECTION__KEY`); binaries pass `std::env::vars()`.
    pub env: Vec<(String, String)>,
}

/// Where each service listens once started.
#[derive(Debug, Clone)]
pub struct StackAddrs {
    pub orchestrator: SocketAddr,
    pub ingestion: SocketAddr,
    pub training: SocketAddr,
    pub registry: SocketAddr,
    pub inference_grpc: SocketAddr,
    pub inference_http: SocketAddr,
}

pub struct Stack {
    pub addrs: StackAddrs,
    /// `https` when the services serve TLS.
    pub scheme: &'static str,
    /// How an in-process operator (quickstart) reaches the services: the service token, and
    /// the CA when TLS is on.
    pub client_options: mlops_core::client::ClientOptions,
    pub data_dir: PathBuf,
    pub sources_dir: PathBuf,
    shutdown: CancellationToken,
    tasks: JoinSet<Result<(), ApiError>>,
}

fn load<T>(options: &StackOptions) -> Result<T, ApiError>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Default,
{
    config::load(options.config_file.as_deref(), options.env.clone())
        .map_err(|e| ApiError::invalid_argument(e.to_string()))
}

fn apply_common(storage: &mut config::StorageSettings, options: &StackOptions) {
    if let Some(dir) = &options.data_dir {
        storage.data_dir = dir.clone();
    }
}

const EPHEMERAL: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

impl Stack {
    /// Binds every service (so the addresses are known), then serves them in the background.
    /// Services are built in dependency order so each one learns its peers' real addresses.
    pub async fn start(options: StackOptions) -> Result<Self, ApiError> {
        let pick = |configured: SocketAddr| {
            if options.ephemeral_ports {
                EPHEMERAL
            } else {
                configured
            }
        };
        // The orchestrator's settings also say how an in-process operator reaches the stack.
        let mut orchestrator: mlops_orchestrator::Settings = load(&options)?;
        let common = &orchestrator;
        let scheme = if common.tls.enabled { "https" } else { "http" };
        let url = |addr: SocketAddr| format!("{scheme}://{addr}");
        let client_options = mlops_core::client::ClientOptions {
            token: common
                .auth
                .enabled
                .then(|| common.auth.service_token.clone()),
            tls: common.tls.client_config()?,
        };

        let mut registry: mlops_registry::Settings = load(&options)?;
        apply_common(&mut registry.storage, &options);
        registry.registry.listen = pick(registry.registry.listen);
        let registry = mlops_registry::Application::build(registry).await?;

        let mut ingestion: mlops_ingestion::Settings = load(&options)?;
        apply_common(&mut ingestion.storage, &options);
        ingestion.ingestion.listen = pick(ingestion.ingestion.listen);
        let ingestion = mlops_ingestion::Application::build(ingestion).await?;

        let mut training: mlops_training::Settings = load(&options)?;
        apply_common(&mut training.storage, &options);
        training.training.listen = pick(training.training.listen);
        training.endpoints.registry = url(registry.grpc_addr());
        training.endpoints.ingestion = url(ingestion.grpc_addr());
        let training = mlops_training::Application::build(training).await?;

        let mut inference: mlops_inference::Settings = load(&options)?;
        apply_common(&mut inference.storage, &options);
        inference.inference.grpc_listen = pick(inference.inference.grpc_listen);
        inference.inference.http_listen = pick(inference.inference.http_listen);
        inference.endpoints.registry = url(registry.grpc_addr());
        let inference = mlops_inference::Application::build(inference).await?;

        apply_common(&mut orchestrator.storage, &options);
        orchestrator.orchestrator.listen = pick(orchestrator.orchestrator.listen);
        orchestrator.endpoints.registry = url(registry.grpc_addr());
        orchestrator.endpoints.ingestion = url(ingestion.grpc_addr());
        orchestrator.endpoints.training = url(training.grpc_addr());
        orchestrator.endpoints.inference = url(inference.grpc_addr());
        let sources_dir = orchestrator.sources_dir();
        let data_dir = orchestrator.storage.data_dir.clone();
        let orchestrator = mlops_orchestrator::Application::build(orchestrator).await?;

        let addrs = StackAddrs {
            orchestrator: orchestrator.grpc_addr(),
            ingestion: ingestion.grpc_addr(),
            training: training.grpc_addr(),
            registry: registry.grpc_addr(),
            inference_grpc: inference.grpc_addr(),
            inference_http: inference.http_addr(),
        };
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        tasks.spawn(registry.run_until(shutdown.clone()));
        tasks.spawn(ingestion.run_until(shutdown.clone()));
        tasks.spawn(training.run_until(shutdown.clone()));
        tasks.spawn(inference.run_until(shutdown.clone()));
        tasks.spawn(orchestrator.run_until(shutdown.clone()));
        Ok(Self {
            addrs,
            scheme,
            client_options,
            data_dir,
            sources_dir,
            shutdown,
            tasks,
        })
    }

    pub fn sources_dir(&self) -> &Path {
        &self.sources_dir
    }

    /// Serves until `stop` fires or a service fails, then shuts every service down.
    pub async fn run_until(mut self, stop: CancellationToken) -> Result<(), ApiError> {
        let outcome = tokio::select! {
            _ = stop.cancelled() => Ok(()),
            Some(joined) = self.tasks.join_next() => match joined {
                Ok(result) => result,
                Err(e) => Err(ApiError::internal(format!("service task: {e}"))),
            },
        };
        self.shutdown().await;
        outcome
    }

    /// Stops accepting, drains in-flight calls, waits for every service.
    pub async fn shutdown(&mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const EXAMPLE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/mlops.example.toml"
    );

    #[test]
    fn the_example_settings_file_parses_for_every_service() {
        let file = Some(Path::new(EXAMPLE));
        let orchestrator: mlops_orchestrator::Settings = config::load(file, []).unwrap();
        assert_eq!(orchestrator.orchestrator.listen.port(), 50051);
        let ingestion: mlops_ingestion::Settings = config::load(file, []).unwrap();
        assert_eq!(ingestion.ingestion.max_upload_bytes, 1 << 30);
        let training: mlops_training::Settings = config::load(file, []).unwrap();
        assert_eq!(training.endpoints.registry, "http://127.0.0.1:50054");
        let registry: mlops_registry::Settings = config::load(file, []).unwrap();
        assert_eq!(registry.storage.data_dir, PathBuf::from(".mlops"));
        let inference: mlops_inference::Settings = config::load(file, []).unwrap();
        assert_eq!(inference.inference.default_alias, "champion");

        // No section in the file that no service reads (a typo would be silently ignored).
        let text = std::fs::read_to_string(EXAMPLE).unwrap();
        let known = [
            "storage",
            "storage.encryption",
            "storage.s3",
            "auth",
            "auth.jwt",
            "tls",
            "limits",
            "telemetry",
            "endpoints",
            "orchestrator",
            "ingestion",
            "training",
            "registry",
            "inference",
            "inference.prediction_log",
            "inference.batching",
            "inference.drift",
        ];
        for line in text.lines().filter(|l| l.starts_with('[')) {
            let section = line.trim_matches(|c| c == '[' || c == ']');
            assert!(known.contains(&section), "unknown section {section}");
        }
    }

    /// Every Deployment in the Kubernetes manifests configures its service with settings the
    /// service knows (an unknown key would stop it at start), and every port a probe or a
    /// Service names is one its container opens.
    #[test]
    fn kubernetes_manifests_configure_every_service_with_known_settings() {
        use serde_json::Value;
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/kubernetes/mlops.yaml"
        ))
        .unwrap();
        let documents: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        let of_kind = |kind: &str| -> Vec<&Value> {
            documents.iter().filter(|d| d["kind"] == kind).collect()
        };
        let config: Vec<(String, String)> = of_kind("ConfigMap")[0]["data"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let secret = |key: &str| match key {
            "database-url" => "postgres://mlops:secret@postgres:5432/mlops".to_string(),
            _ => "k".repeat(43),
        };
        let mut ports_by_app = HashMap::new();
        for deployment in of_kind("Deployment") {
            let spec = &deployment["spec"]["template"]["spec"];
            let container = &spec["containers"][0];
            let mut env = config.clone();
            for var in container["env"].as_array().unwrap() {
                let value = match var["value"].as_str() {
                    Some(value) => value.to_string(),
                    None => secret(var["valueFrom"]["secretKeyRef"]["key"].as_str().unwrap()),
                };
                env.push((var["name"].as_str().unwrap().to_string(), value));
            }
            env.retain(|(k, _)| k.starts_with("MLOPS__"));
            let binary = container["command"][0].as_str().unwrap();
            let loaded = match binary {
                "mlops-registry" => config::load::<mlops_registry::Settings>(None, env).map(drop),
                "mlops-ingestion" => config::load::<mlops_ingestion::Settings>(None, env).map(drop),
                "mlops-training" => config::load::<mlops_training::Settings>(None, env).map(drop),
                "mlops-orchestrator" => {
                    config::load::<mlops_orchestrator::Settings>(None, env).map(drop)
                }
                "mlops-inference" => config::load::<mlops_inference::Settings>(None, env).map(drop),
                other => panic!("no service binary {other}"),
            };
            assert!(loaded.is_ok(), "{binary}: {:?}", loaded.err());
            let ports: Vec<(String, i64)> = container["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap().to_string(),
                        p["containerPort"].as_i64().unwrap(),
                    )
                })
                .collect();
            for probe in ["readinessProbe", "livenessProbe"] {
                let port = container[probe]["grpc"]["port"]
                    .as_i64()
                    .or(container[probe]["httpGet"]["port"].as_i64())
                    .unwrap_or_else(|| panic!("{binary} has no {probe}"));
                assert!(ports.iter().any(|(_, p)| *p == port), "{binary} {probe}");
            }
            let app = deployment["metadata"]["labels"]["app"].as_str().unwrap();
            ports_by_app.insert(app.to_string(), ports);
        }
        for service in of_kind("Service") {
            let app = service["spec"]["selector"]["app"].as_str().unwrap();
            let ports = &ports_by_app[app];
            for port in service["spec"]["ports"].as_array().unwrap() {
                let target = port["targetPort"].as_str().unwrap();
                assert!(
                    ports.iter().any(|(name, _)| name == target),
                    "{app}: {target}"
                );
            }
        }
        // The endpoints the services call each other on are Services here.
        for (key, value) in &config {
            if let Some(service) = key.strip_prefix("MLOPS__ENDPOINTS__") {
                let name = service.to_lowercase();
                assert!(value.contains(&format!("//{name}:")), "{key}={value}");
                assert!(
                    of_kind("Service")
                        .iter()
                        .any(|s| s["metadata"]["name"] == name.as_str())
                );
            }
        }
    }

    #[test]
    fn a_typo_in_a_key_is_an_error_naming_it() {
        let env = [(
            "MLOPS__INFERENCE__GRPC_LISTN".to_string(),
            "0.0.0.0:1".to_string(),
        )];
        let error = config::load::<mlops_inference::Settings>(None, env)
            .unwrap_err()
            .to_string();
        assert!(error.contains("grpc_listn"), "{error}");
    }
}
