//! Moving models in and out of the registry: ONNX files exported by skl2onnx imported with their
//! signature read from the file, bad files refused with nothing stored, verified streamed
//! downloads, and a version copied to another registry with its lineage through the CLI.

use std::path::PathBuf;

use futures::StreamExt;
use mlops_e2e::*;
use mlops_proto::v1::import_model_version_request::Part;
use mlops_proto::v1::*;
use tonic::Code;

fn onnx_fixture(name: &str) -> (Vec<u8>, serde_json::Value) {
    let dir = repo_root().join("tests/fixtures/onnx");
    let bytes = std::fs::read(dir.join(format!("{name}.onnx"))).unwrap();
    let signature =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.signature.json"))).unwrap())
            .unwrap();
    (bytes, signature)
}

fn import_messages(
    header: ImportHeader,
    data: &[u8],
    chunk: usize,
) -> Vec<ImportModelVersionRequest> {
    let mut messages = vec![ImportModelVersionRequest {
        part: Some(Part::Header(header)),
    }];
    messages.extend(data.chunks(chunk).map(|c| ImportModelVersionRequest {
        part: Some(Part::Chunk(c.to_vec())),
    }));
    messages
}

async fn import(
    cluster: &TestCluster,
    messages: Vec<ImportModelVersionRequest>,
) -> Result<ModelVersion, tonic::Status> {
    cluster
        .registry()
        .import_model_version(futures::stream::iter(messages))
        .await
        .map(|r| r.into_inner())
}

fn blobs(cluster: &TestCluster) -> usize {
    fn count(dir: PathBuf) -> usize {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        count(e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
    }
    count(cluster.data_dir().join("artifacts/blobs"))
}

fn spec_json(specs: &[TensorSpec]) -> serde_json::Value {
    specs
        .iter()
        .map(|s| serde_json::json!({"name": s.name, "datatype": s.datatype, "shape": s.shape}))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onnx_imports_with_its_signature_and_bad_files_store_nothing() {
    let cluster = TestCluster::builder()
        .setting("MLOPS__REGISTRY__MAX_BUNDLE_BYTES", "4096")
        .start()
        .await;
    let (onnx, golden) = onnx_fixture("iris_logistic");
    let header = ImportHeader {
        model_name: "iris".into(),
        metrics: [("accuracy".to_string(), 0.97)].into(),
        tags: [("framework".to_string(), "sklearn".to_string())].into(),
        expected_digest: mlops_core::storage::sha256_hex(&onnx),
        ..Default::default()
    };
    // Small chunks: the file arrives in many pieces.
    let version = import(&cluster, import_messages(header.clone(), &onnx, 100))
        .await
        .unwrap();
    assert_eq!((version.version, version.format.as_str()), (1, "onnx"));
    assert_eq!(version.model_type, "onnx");
    assert_eq!(version.size_bytes, onnx.len() as u64);
    assert_eq!(version.tags["framework"], "sklearn");
    let signature = version.signature.clone().unwrap();
    assert_eq!(spec_json(&signature.inputs), golden["inputs"]);
    assert_eq!(spec_json(&signature.outputs), golden["outputs"]);

    // The download streams the same bytes back, record first.
    let mut stream = cluster
        .registry()
        .download_model_version(DownloadModelVersionRequest {
            model_name: "iris".into(),
            version: 1,
            alias: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut record = None;
    let mut data = Vec::new();
    while let Some(message) = stream.next().await {
        match message.unwrap().part.unwrap() {
            download_model_version_response::Part::Version(v) => {
                assert!(data.is_empty(), "the record comes first");
                record = Some(v);
            }
            download_model_version_response::Part::Chunk(c) => data.extend(c),
        }
    }
    assert_eq!(data, onnx);
    assert_eq!(record.unwrap().artifact_digest, version.artifact_digest);

    let stored = blobs(&cluster);
    let refused = |messages, code: Code, needle: &'static str| {
        let cluster = &cluster;
        async move {
            let status = import(cluster, messages).await.unwrap_err();
            assert_eq!(status.code(), code, "{}", status.message());
            assert!(status.message().contains(needle), "{}", status.message());
        }
    };
    let named = |name: &str| ImportHeader {
        model_name: name.into(),
        ..Default::default()
    };
    refused(
        import_messages(named("junk"), b"this is not a model", 64),
        Code::InvalidArgument,
        "not a valid ONNX model",
    )
    .await;
    refused(
        import_messages(named("junk"), &onnx[..onnx.len() / 3], 64),
        Code::InvalidArgument,
        "not a valid",
    )
    .await;
    refused(
        import_messages(
            ImportHeader {
                format: "pickle".into(),
                ..named("junk")
            },
            &onnx,
            64,
        ),
        Code::InvalidArgument,
        "format",
    )
    .await;
    refused(
        import_messages(
            ImportHeader {
                expected_digest: "0".repeat(64),
                ..named("junk")
            },
            &onnx,
            64,
        ),
        Code::InvalidArgument,
        "expected_digest",
    )
    .await;
    refused(
        import_messages(named("big"), &vec![b'x'; 5000], 1000),
        Code::ResourceExhausted,
        "max_bundle_bytes",
    )
    .await;
    refused(
        import_messages(named("../../etc"), &onnx, 64),
        Code::InvalidArgument,
        "model_name",
    )
    .await;
    refused(
        import_messages(named("empty"), b"", 64),
        Code::InvalidArgument,
        "empty",
    )
    .await;
    refused(
        vec![ImportModelVersionRequest {
            part: Some(Part::Chunk(onnx.clone())),
        }],
        Code::InvalidArgument,
        "header",
    )
    .await;
    assert_eq!(blobs(&cluster), stored, "a refused import stored bytes");
    let models = cluster
        .registry()
        .list_registered_models(ListRegisteredModelsRequest {})
        .await
        .unwrap()
        .into_inner()
        .models;
    assert_eq!(
        models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["iris"]
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_is_copied_to_another_registry_with_its_lineage() {
    let source = TestCluster::quickstart().await;
    source.run_pipeline(QUICKSTART_PIPELINE).await;
    let target = TestCluster::builder().start().await;
    let out = tempfile::tempdir().unwrap();
    let addrs = |cluster: &TestCluster| {
        vec![(
            "registry",
            format!("{}://{}", cluster.scheme, cluster.addrs.registry),
        )]
    };
    let (from, to) = (addrs(&source), addrs(&target));
    let dir = out.path().to_path_buf();
    let (downloaded, imported, shown, versions) = tokio::task::spawn_blocking(move || {
        let dir_arg = dir.to_str().unwrap();
        let downloaded = mlops_cli(
            &[
                "models",
                "download",
                "diabetes-linear@champion",
                "--out",
                dir_arg,
            ],
            &from,
            None,
        );
        let bundle = dir.join("diabetes-linear-v1.json");
        let record = dir.join("diabetes-linear-v1.record.json");
        let imported = mlops_cli(
            &[
                "models",
                "import",
                bundle.to_str().unwrap(),
                "--record",
                record.to_str().unwrap(),
                "--model",
                "copied",
                "--tag",
                "copied-from=staging",
            ],
            &to,
            None,
        );
        let shown = mlops_cli(&["models", "show", "copied:1", "--json"], &to, None);
        // The rest of the lifecycle through the CLI, on the copy.
        mlops_cli(&["models", "archive", "copied:1"], &to, None);
        let versions = mlops_cli(&["models", "versions", "copied"], &to, None);
        mlops_cli(&["models", "restore", "copied:1"], &to, None);
        let listed = mlops_cli(&["models", "list", "--json"], &to, None);
        let audit = mlops_cli(
            &["models", "audit", "--model", "copied", "--json"],
            &to,
            None,
        );
        let watched = mlops_cli(
            &["models", "watch", "--model", "copied", "--count", "2"],
            &to,
            None,
        );
        let gc = mlops_cli(&["models", "gc", "--dry-run"], &to, None);
        (
            downloaded,
            imported,
            shown,
            (versions, listed, audit, watched, gc),
        )
    })
    .await
    .unwrap();
    let (versions, listed, audit, watched, gc) = versions;
    assert!(versions.contains("archived"), "{versions}");
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["name"], "copied");
    let audit: serde_json::Value = serde_json::from_str(&audit).unwrap();
    let kinds: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "version_restored",
            "version_archived",
            "version_created",
            "model_created"
        ]
    );
    assert_eq!(audit[0]["before"]["status"], "archived");
    let watched: Vec<serde_json::Value> = watched
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(watched[1]["kind"], "version_created");
    assert!(gc.contains("would delete 0 bundle(s)"), "{gc}");
    assert!(downloaded.contains("sha256"), "{downloaded}");
    assert!(imported.contains("as copied:1"), "{imported}");

    let original = source
        .registry()
        .get_model_version(GetModelVersionRequest {
            model_name: "diabetes-linear".into(),
            version: 1,
            alias: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let copy: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let lineage = original.lineage.clone().unwrap();
    assert_eq!(copy["artifact_digest"], original.artifact_digest.as_str());
    assert_eq!(copy["metrics"]["r2"], original.metrics["r2"]);
    assert_eq!(copy["lineage"]["dataset"], lineage.dataset.as_str());
    assert_eq!(
        copy["lineage"]["dataset_digest"],
        lineage.dataset_digest.as_str()
    );
    assert_eq!(
        copy["lineage"]["training_job_id"],
        lineage.training_job_id.as_str()
    );
    assert_eq!(
        copy["lineage"]["pipeline_run_id"],
        lineage.pipeline_run_id.as_str()
    );
    assert!(!lineage.pipeline_run_id.is_empty());
    assert_eq!(copy["lineage"]["source"], "diabetes-linear:1");
    assert_eq!(copy["tags"]["copied-from"], "staging");
    assert_eq!(copy["signature"]["inputs"][0]["shape"][1], 10);
    source.stop().await;
    target.stop().await;
}
