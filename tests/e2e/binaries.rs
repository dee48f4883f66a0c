//! The real binaries as separate processes, configured only by environment variables, driven
//! by the real `mlops` CLI.

use std::process::{Command, Stdio};
use std::time::Duration;

use mlops_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_binaries_run_the_quickstart_as_separate_processes() {
    let dir = tempfile::tempdir().unwrap();
    let admin = mlops_core::auth::generate_token();
    let sources = dir.path().join("sources");
    std::fs::create_dir_all(&sources).unwrap();
    std::fs::write(sources.join("diabetes.csv"), QUICKSTART_CSV).unwrap();
    let port = |_: &str| free_port();
    let (orchestrator, ingestion, training, registry, inference, http) = (
        port("o"),
        port("i"),
        port("t"),
        port("r"),
        port("g"),
        port("h"),
    );
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    let common = [
        (
            "MLOPS__STORAGE__DATA_DIR",
            dir.path().join("data").display().to_string(),
        ),
        ("MLOPS__ENDPOINTS__INGESTION", url(ingestion)),
        ("MLOPS__ENDPOINTS__TRAINING", url(training)),
        ("MLOPS__ENDPOINTS__REGISTRY", url(registry)),
        ("MLOPS__ENDPOINTS__INFERENCE", url(inference)),
        ("MLOPS__TELEMETRY__FORMAT", "json".to_string()),
        ("MLOPS__AUTH__ENABLED", "true".to_string()),
        (
            "MLOPS__AUTH__SERVICE_TOKEN",
            mlops_core::auth::generate_token(),
        ),
        ("MLOPS__AUTH__ADMIN_TOKEN", admin.clone()),
    ];
    let services: [(&str, Vec<(&str, String)>); 5] = [
        (
            "mlops-registry",
            vec![("MLOPS__REGISTRY__LISTEN", format!("127.0.0.1:{registry}"))],
        ),
        (
            "mlops-ingestion",
            vec![("MLOPS__INGESTION__LISTEN", format!("127.0.0.1:{ingestion}"))],
        ),
        (
            "mlops-training",
            vec![("MLOPS__TRAINING__LISTEN", format!("127.0.0.1:{training}"))],
        ),
        (
            "mlops-inference",
            vec![
                (
                    "MLOPS__INFERENCE__GRPC_LISTEN",
                    format!("127.0.0.1:{inference}"),
                ),
                ("MLOPS__INFERENCE__HTTP_LISTEN", format!("127.0.0.1:{http}")),
            ],
        ),
        (
            "mlops-orchestrator",
            vec![
                (
                    "MLOPS__ORCHESTRATOR__LISTEN",
                    format!("127.0.0.1:{orchestrator}"),
                ),
                (
                    "MLOPS__ORCHESTRATOR__SOURCES_DIR",
                    sources.display().to_string(),
                ),
            ],
        ),
    ];
    // The suite's database when it runs against PostgreSQL (`MLOPS_TEST_DATABASE_URL`).
    let database: Vec<(&str, String)> = test_database(dir.path())
        .await
        .map(|url| ("MLOPS__STORAGE__DATABASE_URL", url))
        .into_iter()
        .collect();
    let mut processes = Processes::default();
    for (name, env) in services {
        let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
        let child = Command::new(binary(name))
            .current_dir(dir.path())
            .env_clear()
            .envs(common.iter().cloned())
            .envs(database.iter().cloned())
            .envs(env)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        processes.0.push((name.to_string(), child));
    }
    for p in [registry, ingestion, training, inference, orchestrator] {
        wait_healthy(&url(p), Duration::from_secs(30))
            .await
            .unwrap();
    }

    let addrs = [
        ("orchestrator", url(orchestrator)),
        ("ingestion", url(ingestion)),
        ("training", url(training)),
        ("registry", url(registry)),
        ("inference", url(inference)),
    ];
    run_quickstart_with_cli(&addrs, &admin).await;

    let shown: serde_json::Value = serde_json::from_str(&mlops_cli(
        &["models", "show", "diabetes-linear@champion", "--json"],
        &addrs,
        Some(&admin),
    ))
    .unwrap();
    assert_eq!(shown["version"], 1);
    assert_eq!(shown["lineage"]["dataset"], "diabetes");
    assert!(
        shown["params"]["coef.bmi"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .is_ok()
    );

    let (x, _) = diabetes();
    let row = serde_json::to_string(&vec![x.row(0).to_vec()]).unwrap();
    let predicted: serde_json::Value = serde_json::from_str(&mlops_cli(
        &["predict", "diabetes-linear@champion", "--json", &row],
        &addrs,
        Some(&admin),
    ))
    .unwrap();
    assert_eq!(predicted["model_version"], "1");
    let intercept: f64 = shown["params"]["intercept"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let names = shown["feature_names"].as_array().unwrap();
    let expected = intercept
        + names
            .iter()
            .zip(x.row(0))
            .map(|(n, v)| {
                shown["params"][format!("coef.{}", n.as_str().unwrap())]
                    .as_str()
                    .unwrap()
                    .parse::<f64>()
                    .unwrap()
                    * v
            })
            .sum::<f64>();
    let got = predicted["predictions"][0].as_f64().unwrap();
    assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");

    let runs = mlops_cli(&["pipeline", "runs"], &addrs, Some(&admin));
    assert!(
        runs.contains("quickstart") && runs.contains("succeeded"),
        "{runs}"
    );
    let listed = mlops_cli(&["models", "list"], &addrs, Some(&admin));
    assert!(listed.contains("champion=1"), "{listed}");

    // Tags and search from the CLI.
    mlops_cli(
        &["models", "tag", "diabetes-linear:1", "stage", "prod"],
        &addrs,
        Some(&admin),
    );
    let found = mlops_cli(
        &[
            "models",
            "search",
            "--where",
            "r2 > 0.3",
            "--tag",
            "stage=prod",
            "--order-by",
            "r2 desc",
            "--json",
        ],
        &addrs,
        Some(&admin),
    );
    let found: serde_json::Value = serde_json::from_str(&found).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found[0]["tags"]["stage"], "prod");

    // Alias history and compare-and-swap from the CLI.
    let history = mlops_cli(
        &["models", "history", "diabetes-linear"],
        &addrs,
        Some(&admin),
    );
    assert!(
        history.contains("champion") && history.contains("service"),
        "{history}"
    );
    let stale = Command::new(binary("mlops"))
        .args([
            "models",
            "alias",
            "diabetes-linear",
            "champion",
            "1",
            "--expect",
            "0",
        ])
        .env("MLOPS_REGISTRY_ADDR", url(registry))
        .env("MLOPS_TOKEN", &admin)
        .output()
        .unwrap();
    assert!(!stale.status.success());
    assert!(
        String::from_utf8_lossy(&stale.stderr).contains("Aborted"),
        "{}",
        String::from_utf8_lossy(&stale.stderr)
    );

    // `mlops auth`: an admin mints a viewer token; the viewer can read but not move aliases.
    let create = [
        "auth", "token", "create", "--name", "watcher", "--role", "viewer",
    ];
    let viewer = mlops_cli(&create, &addrs, Some(&admin)).trim().to_string();
    assert!(viewer.starts_with("mlops_"), "{viewer}");
    let me = mlops_cli(&["auth", "whoami"], &addrs, Some(&viewer));
    assert!(me.contains("watcher (viewer)"), "{me}");
    let refused = Command::new(binary("mlops"))
        .args(["models", "alias", "diabetes-linear", "champion", "1"])
        .env("MLOPS_REGISTRY_ADDR", url(registry))
        .env("MLOPS_TOKEN", &viewer)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("PermissionDenied") && !stderr.contains(&viewer),
        "{stderr}"
    );
    let audit = mlops_cli(&["auth", "audit", "--limit", "200"], &addrs, Some(&admin));
    assert!(
        audit.contains("/mlops.v1.OrchestratorService/RunPipeline"),
        "{audit}"
    );
    assert!(
        audit.contains("watcher") && audit.contains("SetModelAlias"),
        "{audit}"
    );
    let tokens = mlops_cli(&["auth", "token", "list"], &addrs, Some(&admin));
    assert!(
        tokens.contains("watcher") && !tokens.contains(&viewer),
        "{tokens}"
    );

    processes.terminate_gracefully();
}
