//! TLS (and mutual TLS) on every endpoint, and encryption at rest with key rotation.

use std::sync::Arc;
use std::time::Duration;

use mlops_core::client::ClientOptions;
use mlops_e2e::*;
use mlops_proto::v1::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_everywhere_and_plaintext_refused() {
    let certs = tempfile::tempdir().unwrap();
    let cluster = TestCluster::builder()
        .tls(certs.path(), true)
        .source("diabetes.csv", QUICKSTART_CSV)
        .start()
        .await;
    assert_eq!(cluster.scheme, "https");
    // The whole loop, service to service over mutual TLS.
    let run = cluster.run_pipeline(QUICKSTART_PIPELINE).await;
    assert_eq!(run.state(), JobState::Succeeded, "{}", run.error);

    // Plaintext gRPC to a TLS port fails.
    let plain = mlops_core::client::channel(
        &format!("http://{}", cluster.addrs.registry),
        &ClientOptions::default(),
    )
    .unwrap();
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        mlops_proto::v1::registry_service_client::RegistryServiceClient::new(plain)
            .list_registered_models(ListRegisteredModelsRequest {}),
    )
    .await
    .expect("answers promptly");
    assert!(
        refused.is_err(),
        "plaintext call succeeded against a TLS port"
    );

    // TLS without a client certificate is refused under mutual TLS.
    let ca = std::fs::read(certs.path().join("ca.pem")).unwrap();
    let server_only = ClientOptions {
        token: None,
        tls: Some(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&ca)),
        ),
    };
    let anonymous =
        mlops_core::client::channel(&format!("https://{}", cluster.addrs.registry), &server_only)
            .unwrap();
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        mlops_proto::v1::registry_service_client::RegistryServiceClient::new(anonymous)
            .list_registered_models(ListRegisteredModelsRequest {}),
    )
    .await
    .expect("answers promptly");
    assert!(
        refused.is_err(),
        "a client without a certificate got through mutual TLS"
    );

    // REST: plaintext HTTP gets no HTTP answer; HTTPS with a client certificate does.
    let mut tcp = tokio::net::TcpStream::connect(cluster.addrs.inference_http)
        .await
        .unwrap();
    tcp.write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "plaintext REST answered"
    );

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let client_certs: Vec<CertificateDer> =
        CertificateDer::pem_file_iter(certs.path().join("client.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let client_key = PrivateKeyDer::from_pem_file(certs.path().join("client.key")).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(client_certs, client_key)
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(cluster.addrs.inference_http)
        .await
        .unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with a client certificate");
    tls.write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    cluster.stop().await;
}

/// Every file under `dir`, recursively.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_are_encrypted_at_rest_and_survive_key_rotation() {
    let data = tempfile::tempdir().unwrap();
    let (old_key, new_key) = (
        mlops_core::storage::cipher::generate_key(),
        mlops_core::storage::cipher::generate_key(),
    );
    let first = TestCluster::builder()
        .data_dir(data.path())
        .setting("MLOPS__STORAGE__ENCRYPTION__KEY", &old_key)
        .source("diabetes.csv", QUICKSTART_CSV)
        .start()
        .await;
    let run = first.run_pipeline(QUICKSTART_PIPELINE).await;
    assert_eq!(run.state(), JobState::Succeeded, "{}", run.error);
    first.stop().await;

    // Neither the dataset (its column names) nor the model bundle is readable on disk.
    let blobs = files(&data.path().join("artifacts/blobs"));
    assert_eq!(blobs.len(), 2, "{blobs:?}");
    for blob in &blobs {
        let bytes = std::fs::read(blob).unwrap();
        for plaintext in [&b"bmi"[..], b"coefficients", b"PAR1"] {
            assert!(
                !bytes.windows(plaintext.len()).any(|w| w == plaintext),
                "{} holds plaintext",
                blob.display()
            );
        }
    }

    // Rotate: a new active key, the old one kept for reading. Old blobs stay usable.
    let config = data.path().join("rotated.toml");
    std::fs::write(
        &config,
        format!("[storage.encryption]\nkey = \"{new_key}\"\nprevious_keys = [\"{old_key}\"]\n"),
    )
    .unwrap();
    let second = TestCluster::builder()
        .data_dir(data.path())
        .config_file(&config)
        .start()
        .await;
    let (x, _) = diabetes();
    let request = mlops_proto::inference::ModelInferRequest {
        model_name: "diabetes-linear".into(),
        inputs: vec![
            mlops_proto::inference::model_infer_request::InferInputTensor {
                name: "input".into(),
                datatype: "FP64".into(),
                shape: vec![1, 10],
                ..Default::default()
            },
        ],
        raw_input_contents: vec![raw_fp64(x.row(0).iter().copied())],
        ..Default::default()
    };
    let served = second
        .inference()
        .model_infer(request)
        .await
        .expect("old model decrypts after rotation");
    assert!(decode_fp64(&served.get_ref().raw_output_contents[0])[0].is_finite());
    let job = second
        .training()
        .submit_training_job(SubmitTrainingJobRequest {
            dataset: "diabetes".into(),
            target_column: "target".into(),
            model_type: "linear".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let job = wait_job(&second, &job.id).await;
    assert_eq!(
        job.state(),
        JobState::Succeeded,
        "old dataset decrypts after rotation: {}",
        job.error
    );
    second.stop().await;

    // The new bundle is under the new key: the old key alone cannot read it.
    let old_only = mlops_core::storage::ArtifactStore::local(
        &data.path().join("artifacts"),
        mlops_core::storage::Cipher::from_settings(&mlops_core::storage::EncryptionSettings {
            key: old_key,
            ..Default::default()
        })
        .unwrap()
        .map(Arc::new),
    )
    .unwrap();
    assert!(old_only.get(&job.artifact_digest).await.is_err());
}
