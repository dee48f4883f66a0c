//! The containers: build the image, `docker compose up`, run the quickstart pipeline from the
//! host CLI, check a prediction, tear down. Runs when MLOPS_E2E_DOCKER=1 (`.ci/run` sets it).

use std::process::Command;
use std::time::Duration;

use mlops_e2e::*;

/// `docker compose` (plugin) when present, else the standalone `docker-compose`.
fn compose_command() -> Vec<String> {
    let plugin = Command::new("docker").args(["compose", "version"]).output();
    if plugin.map(|o| o.status.success()).unwrap_or(false) {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

struct Project {
    command: Vec<String>,
    name: String,
    env: Vec<(String, String)>,
}

impl Project {
    fn run(&self, args: &[&str]) -> std::process::Output {
        let file = repo_root().join("deploy/docker-compose.yaml");
        Command::new(&self.command[0])
            .args(&self.command[1..])
            .args(["-f", file.to_str().unwrap(), "-p", &self.name])
            .args(args)
            .envs(self.env.iter().cloned())
            .output()
            .expect("compose runs")
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let logs = self.run(&["logs", "--no-color"]);
        if std::thread::panicking() {
            eprintln!("compose logs:\n{}", String::from_utf8_lossy(&logs.stdout));
        }
        let _ = self.run(&["down", "-v", "--remove-orphans"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_stack_runs_the_quickstart() {
    if std::env::var("MLOPS_E2E_DOCKER").as_deref() != Ok("1") {
        eprintln!("skipped: set MLOPS_E2E_DOCKER=1 to run the docker compose test");
        return;
    }
    let tag = format!("e2e-{}", std::process::id());
    let build = Command::new(repo_root().join("scripts/docker-build.sh"))
        .env("MLOPS_DOCKER_PROFILE", "debug")
        .env("MLOPS_DOCKER_SKIP_BUILD", "1")
        .env("MLOPS_IMAGE_TAG", &tag)
        .output()
        .expect("docker-build.sh runs");
    assert!(
        build.status.success(),
        "image build failed:\n{}\n{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );

    let ports: Vec<(&str, u16)> = ["ORCHESTRATOR", "INGESTION", "TRAINING", "REGISTRY"]
        .into_iter()
        .map(|name| (name, free_port()))
        .collect();
    let mut env: Vec<(String, String)> = ports
        .iter()
        .map(|(n, p)| (format!("MLOPS_{n}_PORT"), p.to_string()))
        .collect();
    // Three inference replicas, each published on a port of these ranges.
    let (grpc_ports, http_ports) = (free_ports(3), free_ports(3));
    let range = |p: &[u16]| format!("{}-{}", p[0], p[2]);
    env.push(("MLOPS_INFERENCE_GRPC_PORTS".into(), range(&grpc_ports)));
    env.push(("MLOPS_INFERENCE_HTTP_PORTS".into(), range(&http_ports)));
    env.push(("MLOPS_IMAGE_TAG".into(), tag.clone()));
    let admin = mlops_core::auth::generate_token();
    env.push(("MLOPS_ADMIN_TOKEN".into(), admin.clone()));
    env.push((
        "MLOPS_SERVICE_TOKEN".into(),
        mlops_core::auth::generate_token(),
    ));
    let project = Project {
        command: compose_command(),
        name: format!("mlopse2e{}", std::process::id()),
        env,
    };
    // One replica more at a time: docker races when several containers of a service take
    // ports from one published range at once (docker/compose#7188).
    for replicas in 1..=3 {
        let scale = format!("inference={replicas}");
        let up = project.run(&["up", "-d", "--no-recreate", "--scale", &scale]);
        assert!(
            up.status.success(),
            "compose up ({scale}) failed: {}",
            String::from_utf8_lossy(&up.stderr)
        );
    }

    let url = |name: &str| {
        format!(
            "http://127.0.0.1:{}",
            ports.iter().find(|(n, _)| *n == name).unwrap().1
        )
    };
    let replicas: Vec<String> = grpc_ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    for address in ["REGISTRY", "INGESTION", "TRAINING", "ORCHESTRATOR"]
        .into_iter()
        .map(url)
        .chain(replicas.iter().cloned())
    {
        wait_healthy(&address, Duration::from_secs(90))
            .await
            .unwrap();
    }
    // The client spreads its calls over every replica.
    let addrs = [
        ("orchestrator", url("ORCHESTRATOR")),
        ("ingestion", url("INGESTION")),
        ("training", url("TRAINING")),
        ("registry", url("REGISTRY")),
        ("inference", replicas.join(",")),
    ];
    run_quickstart_with_cli(&addrs, &admin).await;

    let (x, _) = diabetes();
    let row = serde_json::to_string(&vec![x.row(0).to_vec()]).unwrap();
    let predicted: serde_json::Value = serde_json::from_str(&mlops_cli(
        &["predict", "diabetes-linear", "--json", &row],
        &addrs,
        Some(&admin),
    ))
    .unwrap();
    assert_eq!(predicted["model_version"], "1");
    assert!(predicted["predictions"][0].as_f64().unwrap().is_finite());

    // A short load through the balanced client reaches every replica.
    mlops_cli(
        &[
            "bench",
            "infer",
            "--target",
            &replicas.join(","),
            "--model",
            "diabetes-linear",
            "--features",
            "10",
            "--concurrency",
            "8",
            "--duration",
            "2",
        ],
        &addrs,
        Some(&admin),
    );
    for port in &http_ports {
        let addr = ([127, 0, 0, 1], *port).into();
        let (_, metrics) = http_as(addr, "GET", "/metrics", "", Some(&admin)).await;
        let served: f64 = metrics
            .lines()
            .filter(|l| {
                l.starts_with("mlops_inference_requests_total")
                    && l.contains("outcome=\"success\"")
                    && l.contains("model=\"diabetes-linear\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(
            served > 0.0,
            "replica on :{port} served nothing:\n{metrics}"
        );
    }

    // REST from the host, through a published HTTP port.
    let addr = ([127, 0, 0, 1], http_ports[0]).into();
    let (status, body) = http_as(addr, "GET", "/v2/models/diabetes-linear", "", Some(&admin)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = http(addr, "GET", "/v2/models/diabetes-linear", "").await;
    assert_eq!(status, 401, "the compose deployment requires a token");
    drop(project);
    let _ = Command::new("docker")
        .args(["image", "rm", &format!("mlops:{tag}")])
        .output();
}
