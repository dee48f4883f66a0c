//! Artifacts in S3 (or anything speaking its API): the quickstart trains, registers and serves
//! with every blob in the bucket and none on local disk; the registry imports, downloads,
//! detects a tampered object as DATA_LOSS and garbage-collects in the bucket.
//!
//! Runs when MLOPS_TEST_S3_ENDPOINT names an S3-compatible server with the bucket `mlops-test`
//! (`scripts/s3-for-tests.sh` starts one; `.ci/run` does).

use std::sync::Arc;

use futures::StreamExt;
use mlops_e2e::*;
use mlops_proto::inference::ModelInferRequest;
use mlops_proto::inference::model_infer_request::InferInputTensor;
use mlops_proto::v1::*;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tonic::Code;

const BUCKET: &str = "mlops-test";

/// The test bucket, seen directly.
fn test_bucket(endpoint: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(BUCKET)
            .with_endpoint(endpoint)
            .with_region("us-east-1")
            .with_allow_http(true)
            .build()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_live_in_s3_through_training_serving_and_the_registry() {
    let Ok(endpoint) = std::env::var("MLOPS_TEST_S3_ENDPOINT") else {
        eprintln!("skipped: set MLOPS_TEST_S3_ENDPOINT (scripts/s3-for-tests.sh) to run");
        return;
    };
    let prefix = format!("run-{}", mlops_core::ids::new_id());
    let cluster = TestCluster::builder()
        .source("diabetes.csv", QUICKSTART_CSV)
        .setting(
            "MLOPS__STORAGE__ARTIFACT_URL",
            &format!("s3://{BUCKET}/{prefix}"),
        )
        .setting("MLOPS__STORAGE__S3__ENDPOINT", &endpoint)
        .setting("MLOPS__STORAGE__S3__REGION", "us-east-1")
        .setting("MLOPS__STORAGE__S3__ALLOW_HTTP", "true")
        .start()
        .await;
    // The same bucket, seen directly.
    let bucket: Arc<dyn ObjectStore> = test_bucket(&endpoint);
    let object =
        |digest: &str| StorePath::from(format!("{prefix}/blobs/sha256/{}/{digest}", &digest[..2]));

    // Ingest, train, register, promote, serve: every blob in the bucket.
    let run = cluster.run_pipeline(QUICKSTART_PIPELINE).await;
    assert_eq!(run.state(), JobState::Succeeded, "{}", run.error);
    let mut registry = cluster.registry();
    let champion = registry
        .get_model_version(GetModelVersionRequest {
            model_name: "diabetes-linear".into(),
            version: 0,
            alias: "champion".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let dataset_digest = champion.lineage.clone().unwrap().dataset_digest;
    for digest in [&champion.artifact_digest, &dataset_digest] {
        bucket.head(&object(digest)).await.unwrap();
    }
    assert!(
        !cluster.data_dir().join("artifacts/blobs").exists(),
        "blobs were written to local disk"
    );
    let row = [
        0.038, 0.051, 0.062, 0.022, -0.044, -0.035, -0.043, -0.003, 0.020, -0.018,
    ];
    let predicted = cluster
        .inference()
        .model_infer(ModelInferRequest {
            model_name: "diabetes-linear".into(),
            inputs: vec![InferInputTensor {
                name: "input".into(),
                datatype: "FP64".into(),
                shape: vec![1, 10],
                ..Default::default()
            }],
            raw_input_contents: vec![raw_fp64(row)],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let value = decode_fp64(&predicted.raw_output_contents[0])[0];
    assert!(value.is_finite() && value > 0.0, "{value}");

    // Import and download through the bucket.
    let onnx = std::fs::read(repo_root().join("tests/fixtures/onnx/diabetes_linear.onnx")).unwrap();
    let imported = registry
        .import_model_version(futures::stream::iter([
            ImportModelVersionRequest {
                part: Some(import_model_version_request::Part::Header(ImportHeader {
                    model_name: "onnx-in-s3".into(),
                    ..Default::default()
                })),
            },
            ImportModelVersionRequest {
                part: Some(import_model_version_request::Part::Chunk(onnx.clone())),
            },
        ]))
        .await
        .unwrap()
        .into_inner();
    let download = |version: u32| {
        let mut registry = cluster.registry();
        async move {
            let mut stream = registry
                .download_model_version(DownloadModelVersionRequest {
                    model_name: "onnx-in-s3".into(),
                    version,
                    alias: String::new(),
                })
                .await?
                .into_inner();
            let mut data = Vec::new();
            while let Some(message) = stream.next().await {
                if let Some(download_model_version_response::Part::Chunk(chunk)) = message?.part {
                    data.extend(chunk);
                }
            }
            Ok::<_, tonic::Status>(data)
        }
    };
    assert_eq!(download(1).await.unwrap(), onnx);

    // An object changed behind the registry's back is refused, never served.
    let key = object(&imported.artifact_digest);
    bucket
        .put(&key, PutPayload::from(b"tampered".to_vec()))
        .await
        .unwrap();
    let tampered = download(1).await.unwrap_err();
    assert_eq!(tampered.code(), Code::DataLoss, "{}", tampered.message());

    // Deleting the version makes its object garbage; GC deletes it from the bucket.
    registry
        .delete_model_version(DeleteModelVersionRequest {
            model_name: "onnx-in-s3".into(),
            version: 1,
        })
        .await
        .unwrap();
    let collected = registry
        .collect_garbage(CollectGarbageRequest {
            dry_run: false,
            min_age_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        collected.digests,
        std::slice::from_ref(&imported.artifact_digest)
    );
    assert!(matches!(
        bucket.head(&key).await,
        Err(object_store::Error::NotFound { .. })
    ));
    bucket
        .head(&object(&champion.artifact_digest))
        .await
        .unwrap();
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datasets_import_from_allowed_s3_prefixes_only() {
    let Ok(endpoint) = std::env::var("MLOPS_TEST_S3_ENDPOINT") else {
        eprintln!("skipped: set MLOPS_TEST_S3_ENDPOINT (scripts/s3-for-tests.sh) to run");
        return;
    };
    let prefix = format!("imports-{}", mlops_core::ids::new_id());
    let bucket: Arc<dyn ObjectStore> = test_bucket(&endpoint);
    let iris = std::fs::read(repo_root().join("examples/datasets/iris.csv")).unwrap();
    let gzipped = gzip(&iris);
    for (key, bytes) in [
        (format!("{prefix}/allowed/iris.csv.gz"), gzipped.clone()),
        (
            format!("{prefix}/private/secret.csv"),
            b"secret,y\n1,2\n".to_vec(),
        ),
    ] {
        bucket
            .put(&StorePath::from(key), PutPayload::from(bytes))
            .await
            .unwrap();
    }
    let cluster = TestCluster::builder()
        .setting(
            "MLOPS__INGESTION__IMPORT_S3_PREFIXES",
            &format!("s3://{BUCKET}/{prefix}/allowed/"),
        )
        .setting("MLOPS__STORAGE__S3__ENDPOINT", &endpoint)
        .setting("MLOPS__STORAGE__S3__REGION", "us-east-1")
        .setting("MLOPS__STORAGE__S3__ALLOW_HTTP", "true")
        .start()
        .await;
    let by_uri = |uri: String| {
        header_only(UploadHeader {
            name: "from-s3".into(),
            uri,
            ..Default::default()
        })
    };
    let mut ingestion = cluster.ingestion();
    let uri = format!("s3://{BUCKET}/{prefix}/allowed/iris.csv.gz");
    let version = ingestion
        .upload_dataset(by_uri(uri.clone()))
        .await
        .unwrap()
        .into_inner()
        .version
        .unwrap();
    assert_eq!(version.row_count, 150);
    let source = version.source.unwrap();
    assert_eq!(
        (source.kind.as_str(), source.uri.as_str()),
        ("uri", uri.as_str())
    );
    assert_eq!(source.compression, "gzip");
    assert_eq!(source.sha256, mlops_core::storage::sha256_hex(&gzipped));
    for (uri, code) in [
        (
            format!("s3://{BUCKET}/{prefix}/private/secret.csv"),
            Code::PermissionDenied,
        ),
        (
            format!("s3://{BUCKET}/{prefix}/allowed/../private/secret.csv"),
            Code::InvalidArgument,
        ),
        (
            format!("s3://{BUCKET}/{prefix}/allowed%2f..%2fprivate/secret.csv"),
            Code::InvalidArgument,
        ),
        (
            format!("s3://other-bucket/{prefix}/allowed/iris.csv.gz"),
            Code::PermissionDenied,
        ),
        (
            format!("s3://{BUCKET}/{prefix}/allowed-not/iris.csv.gz"),
            Code::PermissionDenied,
        ),
        (
            format!("s3://{BUCKET}/{prefix}/allowed/missing.csv"),
            Code::NotFound,
        ),
    ] {
        let status = ingestion
            .upload_dataset(by_uri(uri.clone()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{uri}: {}", status.message());
        assert!(
            !status.message().contains("secret,y"),
            "{}",
            status.message()
        );
    }
    cluster.stop().await;
}
