//! Security through the real interfaces: deny by default for every RPC in the contracts,
//! token lifecycle, JWTs, roles, grants, audit, TLS and encryption at rest.

use std::time::Duration;

use bytes::{Buf, BufMut};
use mlops_core::auth::policy::{self, Access, Action};
use mlops_e2e::*;
use mlops_proto::v1::*;
use prost::Message;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Sends and receives raw message bytes, to call any method named in the descriptor set.
#[derive(Default, Clone)]
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let bytes = src.chunk().to_vec();
        src.advance(bytes.len());
        Ok(Some(bytes))
    }
}

/// Calls `path` with one empty message; returns the first status the call produced.
async fn call(client: &Client, addr: std::net::SocketAddr, path: &str) -> Code {
    let mut grpc = tonic::client::Grpc::new(client.channel(addr));
    grpc.ready().await.expect("channel ready");
    let request = tonic::Request::new(futures::stream::iter(vec![Vec::<u8>::new()]));
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(path.to_string()).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        match grpc.streaming(request, path, RawCodec).await {
            Err(status) => status.code(),
            Ok(response) => match response.into_inner().message().await {
                Err(status) => status.code(),
                Ok(_) => Code::Ok,
            },
        }
    })
    .await;
    // A watch stream that stays open has passed the gate.
    outcome.unwrap_or(Code::Ok)
}

/// Every RPC in every contract, as (service address, full method path).
fn every_rpc(cluster: &TestCluster) -> Vec<(std::net::SocketAddr, String)> {
    let set = prost_types::FileDescriptorSet::decode(mlops_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut rpcs = Vec::new();
    for file in &set.file {
        for service in &file.service {
            let full = format!("{}.{}", file.package(), service.name());
            let addr = match service.name() {
                "IngestionService" => cluster.addrs.ingestion,
                "TrainingService" => cluster.addrs.training,
                "RegistryService" => cluster.addrs.registry,
                "OrchestratorService" | "AuthService" => cluster.addrs.orchestrator,
                "GRPCInferenceService" => cluster.addrs.inference_grpc,
                other => panic!("service {other} has no address in this test: add it"),
            };
            for method in &service.method {
                rpcs.push((addr, format!("/{full}/{}", method.name())));
            }
        }
    }
    rpcs.push((
        cluster.addrs.registry,
        "/grpc.health.v1.Health/Check".into(),
    ));
    rpcs.push((
        cluster.addrs.registry,
        "/grpc.health.v1.Health/Watch".into(),
    ));
    rpcs.push((
        cluster.addrs.registry,
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo".into(),
    ));
    // Both ways: no RPC without a rule, no rule for an RPC that does not exist.
    for (path, _) in policy::GRPC_RULES {
        assert!(
            rpcs.iter().any(|(_, p)| p == path),
            "policy names {path}, which no contract defines"
        );
    }
    assert_eq!(rpcs.len(), policy::GRPC_RULES.len());
    rpcs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_has_a_policy_and_denies_by_default() {
    let cluster = TestCluster::builder().auth().start().await;
    let viewer = cluster.token("viewer-1", "viewer", &[]).await;
    let anonymous = cluster.as_token(None);
    let forged = cluster.as_token(Some(
        "mlops_0000000000000000000000000000000000000000000000000000000000000000",
    ));
    let as_viewer = cluster.as_token(Some(&viewer));
    for (addr, path) in every_rpc(&cluster) {
        let rule = policy::rule(&path).unwrap_or_else(|| panic!("{path} has no explicit policy"));
        let code = call(&anonymous, addr, &path).await;
        let forged_code = call(&forged, addr, &path).await;
        let viewer_code = call(&as_viewer, addr, &path).await;
        match rule.access {
            Access::Public => {
                assert_ne!(code, Code::Unauthenticated, "{path} is public");
            }
            Access::Authenticated => {
                assert_eq!(code, Code::Unauthenticated, "{path} without a token");
                assert_eq!(
                    forged_code,
                    Code::Unauthenticated,
                    "{path} with a forged token"
                );
                assert!(
                    !matches!(viewer_code, Code::Unauthenticated | Code::PermissionDenied),
                    "{path}: {viewer_code:?}"
                );
            }
            Access::Requires(action) => {
                assert_eq!(code, Code::Unauthenticated, "{path} without a token");
                assert_eq!(
                    forged_code,
                    Code::Unauthenticated,
                    "{path} with a forged token"
                );
                if matches!(action, Action::Read | Action::Predict) {
                    assert!(
                        !matches!(viewer_code, Code::Unauthenticated | Code::PermissionDenied),
                        "{path}: a viewer may {action:?}, got {viewer_code:?}"
                    );
                } else {
                    assert_eq!(
                        viewer_code,
                        Code::PermissionDenied,
                        "{path}: a viewer may not {action:?}"
                    );
                }
            }
        }
    }
    // A method no rule names is refused even with the admin token.
    let admin = cluster.as_token(cluster.admin_token.as_deref());
    assert_eq!(
        call(
            &admin,
            cluster.addrs.registry,
            "/mlops.v1.RegistryService/DropAll"
        )
        .await,
        Code::PermissionDenied
    );

    // HTTP: health open, the rest needs a token.
    let (status, _) = http(cluster.addrs.inference_http, "GET", "/v2/health/live", "").await;
    assert_eq!(status, 200);
    for path in ["/v2/models/m", "/metrics", "/v2"] {
        let (status, body) = http(cluster.addrs.inference_http, "GET", path, "").await;
        assert_eq!(status, 401, "{path}: {body}");
    }
    let (status, _) = http(cluster.addrs.orchestrator, "GET", "/metrics", "").await;
    assert_eq!(status, 401);
    cluster.stop().await;
}

fn code<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_grants_revocation_expiry_and_audit() {
    let cluster = TestCluster::builder().auth().start().await;
    let scientist = cluster.token("alice", "data_scientist", &[]).await;
    let deployer = cluster.token("dora", "deployer", &[]).await;
    let viewer = cluster.token("victor", "viewer", &[]).await;
    let scoped = cluster
        .token(
            "scoped",
            "data_scientist",
            &["dataset:churn*", "model:churn-*"],
        )
        .await;
    let alice = cluster.as_token(Some(&scientist));

    // A data scientist uploads and trains a registered model.
    let csv = "a,b,y\n1,2,5\n2,1,4\n3,5,13\n4,4,12\n5,0,5\n6,3,12\n";
    alice.upload_csv("sales", csv).await.unwrap();
    let job = alice
        .training()
        .submit_training_job(SubmitTrainingJobRequest {
            dataset: "sales".into(),
            target_column: "y".into(),
            model_type: "linear".into(),
            register_as: "sales-model".into(),
            test_fraction: Some(0.34),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let job = alice.wait_job(&job.id).await;
    assert_eq!(job.state(), JobState::Succeeded, "{}", job.error);

    // ...but may not move aliases; a deployer may, and may not delete datasets; a viewer may not
    // move aliases either.
    let alias = || SetModelAliasRequest {
        model_name: "sales-model".into(),
        alias: "champion".into(),
        version: 1,
        expected_version: None,
    };
    assert_eq!(
        code(alice.registry().set_model_alias(alias()).await),
        Code::PermissionDenied
    );
    let dora = cluster.as_token(Some(&deployer));
    assert_eq!(
        code(dora.registry().set_model_alias(alias()).await),
        Code::Ok
    );
    let delete = || DeleteDatasetRequest {
        name: "sales".into(),
    };
    assert_eq!(
        code(dora.ingestion().delete_dataset(delete()).await),
        Code::PermissionDenied
    );
    let victor = cluster.as_token(Some(&viewer));
    assert_eq!(
        code(victor.registry().set_model_alias(alias()).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            victor
                .registry()
                .list_registered_models(ListRegisteredModelsRequest {})
                .await
        ),
        Code::Ok
    );

    // Grants narrow a token to its resources, in calls and in lists.
    let narrow = cluster.as_token(Some(&scoped));
    let get = |name: &str| GetRegisteredModelRequest { name: name.into() };
    assert_eq!(
        code(
            narrow
                .registry()
                .get_registered_model(get("sales-model"))
                .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        code(narrow.upload_csv("sales", csv).await),
        Code::PermissionDenied
    );
    narrow.upload_csv("churn", csv).await.unwrap();
    let listed = narrow
        .ingestion()
        .list_datasets(ListDatasetsRequest {})
        .await
        .unwrap()
        .into_inner()
        .datasets;
    assert_eq!(
        listed.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        vec!["churn"]
    );

    // Admin deletes; the dataset is gone.
    assert_eq!(
        code(cluster.ingestion().delete_dataset(delete()).await),
        Code::Ok
    );
    let gone = cluster
        .ingestion()
        .get_dataset(GetDatasetRequest {
            name: "sales".into(),
        })
        .await;
    assert_eq!(code(gone), Code::NotFound);

    // Revocation takes effect at once.
    let tokens = cluster
        .auth()
        .list_tokens(ListTokensRequest {})
        .await
        .unwrap()
        .into_inner()
        .tokens;
    let victor_id = tokens
        .iter()
        .find(|t| t.name == "victor")
        .unwrap()
        .id
        .clone();
    assert!(
        tokens.iter().all(|t| !format!("{t:?}").contains(&viewer)),
        "token text must never be listed"
    );
    cluster
        .auth()
        .revoke_token(RevokeTokenRequest { id: victor_id })
        .await
        .unwrap();
    let revoked = victor
        .registry()
        .list_registered_models(ListRegisteredModelsRequest {})
        .await
        .unwrap_err();
    assert_eq!(revoked.code(), Code::Unauthenticated);
    assert!(
        !revoked.message().contains(&viewer),
        "errors never echo the token"
    );

    // Expiry.
    let short = cluster
        .auth()
        .create_token(CreateTokenRequest {
            name: "short".into(),
            role: "viewer".into(),
            resources: vec![],
            ttl_seconds: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let short_client = cluster.as_token(Some(&short));
    assert_eq!(
        code(
            short_client
                .registry()
                .list_registered_models(ListRegisteredModelsRequest {})
                .await
        ),
        Code::Ok
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        code(
            short_client
                .registry()
                .list_registered_models(ListRegisteredModelsRequest {})
                .await
        ),
        Code::Unauthenticated
    );

    // Non-admins cannot manage tokens or read the audit log.
    let mint = CreateTokenRequest {
        name: "x".into(),
        role: "admin".into(),
        resources: vec![],
        ttl_seconds: 0,
    };
    assert_eq!(
        code(alice.auth().create_token(mint).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            alice
                .auth()
                .list_audit_events(ListAuditEventsRequest::default())
                .await
        ),
        Code::PermissionDenied
    );
    let me = alice
        .auth()
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (me.subject.as_str(), me.role.as_str()),
        ("alice", "data_scientist")
    );

    // The audit log has every mutation with principal, action, resource and result.
    let events = cluster
        .auth()
        .list_audit_events(ListAuditEventsRequest {
            limit: 200,
            principal: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let find = |principal: &str, action: &str, result: &str| {
        events
            .iter()
            .find(|e| e.principal == principal && e.action.ends_with(action) && e.result == result)
    };
    let upload = find("alice", "/UploadDataset", "Ok").expect("alice's upload audited");
    assert_eq!(
        (upload.service.as_str(), upload.resource.as_str()),
        ("ingestion", "dataset:sales")
    );
    assert!(
        find("dora", "/DeleteDataset", "PermissionDenied").is_some(),
        "a mutation refused at the gate is audited"
    );
    assert!(
        find("dora", "/SetModelAlias", "Ok").is_some_and(|e| e.resource == "model:sales-model")
    );
    assert!(
        find("scoped", "/UploadDataset", "PermissionDenied")
            .is_some_and(|e| e.resource == "dataset:sales")
    );
    assert!(find("alice", "/SubmitTrainingJob", "Ok").is_some());
    assert!(
        find("service", "/CreateModelVersion", "Ok").is_some(),
        "service-to-service calls are audited too"
    );
    for event in &events {
        for secret in [&scientist, &deployer, &viewer, &scoped] {
            assert!(!format!("{event:?}").contains(secret.as_str()));
        }
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_are_checked_for_signature_issuer_audience_and_expiry() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let fixtures = repo_root().join("tests/fixtures/jwt");
    let secret = "a-long-shared-secret-for-hs256-tests-only";
    let cluster = TestCluster::builder()
        .auth()
        .setting("MLOPS__AUTH__JWT__HS256_SECRET", secret)
        .setting(
            "MLOPS__AUTH__JWT__RS256_PUBLIC_KEY_FILE",
            fixtures.join("rs256-test-public.pem").to_str().unwrap(),
        )
        .setting("MLOPS__AUTH__JWT__ISSUER", "https://idp.example.com")
        .setting("MLOPS__AUTH__JWT__AUDIENCE", "mlops")
        .start()
        .await;
    let now = mlops_core::now_ms() / 1000;
    let claims = |iss: &str, aud: &str, exp: i64, role: &str| serde_json::json!({"sub": "bob@example.com", "iss": iss, "aud": aud, "exp": exp, "mlops_role": role});
    let hs = |claims: serde_json::Value, key: &str| {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap()
    };
    let private = std::fs::read(fixtures.join("rs256-test-private.pem")).unwrap();
    let rs = |claims: serde_json::Value| {
        encode(
            &Header::new(Algorithm::RS256),
            &claims,
            &EncodingKey::from_rsa_pem(&private).unwrap(),
        )
        .unwrap()
    };
    let whoami = |token: String| {
        let client = cluster.as_token(Some(&token));
        async move { client.auth().who_am_i(WhoAmIRequest {}).await }
    };
    let good = whoami(hs(
        claims("https://idp.example.com", "mlops", now + 600, "deployer"),
        secret,
    ))
    .await
    .unwrap();
    assert_eq!(good.get_ref().subject, "jwt:bob@example.com");
    assert_eq!(good.get_ref().role, "deployer");
    assert!(
        whoami(rs(claims(
            "https://idp.example.com",
            "mlops",
            now + 600,
            "viewer"
        )))
        .await
        .is_ok()
    );

    let rejected = [
        (
            "expired",
            hs(
                claims("https://idp.example.com", "mlops", now - 60, "admin"),
                secret,
            ),
        ),
        (
            "wrong issuer",
            hs(
                claims("https://evil.example.com", "mlops", now + 600, "admin"),
                secret,
            ),
        ),
        (
            "wrong audience",
            hs(
                claims("https://idp.example.com", "other", now + 600, "admin"),
                secret,
            ),
        ),
        (
            "bad signature",
            hs(
                claims("https://idp.example.com", "mlops", now + 600, "admin"),
                "another-secret-entirely",
            ),
        ),
        (
            "no valid role claim",
            hs(
                claims("https://idp.example.com", "mlops", now + 600, "root"),
                secret,
            ),
        ),
    ];
    for (reason, token) in rejected {
        let status = whoami(token).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{reason}");
        assert!(
            status.message().contains(reason),
            "{reason}: {}",
            status.message()
        );
    }
    // Tampering with the payload of a valid token breaks its signature.
    let valid = rs(claims(
        "https://idp.example.com",
        "mlops",
        now + 600,
        "viewer",
    ));
    let mut parts: Vec<String> = valid.split('.').map(str::to_string).collect();
    let forged = base64_url(
        &serde_json::to_vec(&claims(
            "https://idp.example.com",
            "mlops",
            now + 600,
            "admin",
        ))
        .unwrap(),
    );
    parts[1] = forged;
    assert_eq!(
        whoami(parts.join(".")).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    // An unsigned token ("alg": "none") is refused.
    let none = format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    assert_eq!(
        whoami(none).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    cluster.stop().await;
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
