//! Registry lifecycle: gapless concurrent versions, compare-and-swap aliases, atomic multi-alias
//! moves with history, protected deletes, search and tags, corrupted artifacts reported as
//! DATA_LOSS, and acknowledged writes surviving SIGKILL.

use mlops_e2e::*;
use mlops_proto::v1::registry_service_client;
use mlops_proto::v1::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_versions_are_gapless_and_aliases_compare_and_swap() {
    let cluster = TestCluster::builder().start().await;
    let digest = store_bundle(&cluster, BUNDLE).await;

    // 200 concurrent creations: numbers 1..=200, none twice.
    let calls = (0..200).map(|_| {
        let mut registry = cluster.registry();
        let request = version_request("busy", &digest);
        tokio::spawn(async move {
            registry
                .create_model_version(request)
                .await
                .map(|r| r.into_inner().version)
        })
    });
    let mut versions: Vec<u32> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, (1..=200).collect::<Vec<u32>>());

    // A version must point at a bundle the store holds.
    let missing = cluster
        .registry()
        .create_model_version(version_request("busy", &"a".repeat(64)))
        .await
        .unwrap_err();
    assert_eq!(
        missing.code(),
        Code::FailedPrecondition,
        "{}",
        missing.message()
    );

    // Compare-and-swap: two promoters that both saw "no champion"; only the first wins.
    let mut registry = cluster.registry();
    let promote = |version, expected| SetModelAliasRequest {
        model_name: "busy".into(),
        alias: "champion".into(),
        version,
        expected_version: expected,
    };
    registry.set_model_alias(promote(7, Some(0))).await.unwrap();
    let lost = registry
        .set_model_alias(promote(9, Some(0)))
        .await
        .unwrap_err();
    assert_refused(&lost, Code::Aborted, "points at version 7");
    assert_eq!(
        registry
            .set_model_alias(promote(9, Some(7)))
            .await
            .unwrap()
            .into_inner()
            .previous_version,
        7
    );
    let to_missing = registry
        .set_model_alias(promote(999, None))
        .await
        .unwrap_err();
    assert_eq!(to_missing.code(), Code::NotFound);

    // Several aliases move together or not at all.
    let moves = |champion_expected| SetModelAliasesRequest {
        model_name: "busy".into(),
        moves: vec![
            AliasMove {
                alias: "challenger".into(),
                version: 9,
                expected_version: Some(0),
            },
            AliasMove {
                alias: "champion".into(),
                version: 10,
                expected_version: Some(champion_expected),
            },
        ],
    };
    assert_eq!(
        registry
            .set_model_aliases(moves(7))
            .await
            .unwrap_err()
            .code(),
        Code::Aborted
    );
    let model = registry
        .get_registered_model(GetRegisteredModelRequest {
            name: "busy".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        !model.aliases.contains_key("challenger"),
        "a failed multi-move changed nothing"
    );
    let previous = registry
        .set_model_aliases(moves(9))
        .await
        .unwrap()
        .into_inner()
        .previous_versions;
    assert_eq!(previous, vec![0, 9]);

    // History, newest first, with who did it.
    registry
        .delete_model_alias(DeleteModelAliasRequest {
            model_name: "busy".into(),
            alias: "challenger".into(),
        })
        .await
        .unwrap();
    let history = registry
        .list_alias_history(ListAliasHistoryRequest {
            model_name: "busy".into(),
            alias: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .changes;
    let moves: Vec<(&str, u32, u32)> = history
        .iter()
        .map(|c| (c.alias.as_str(), c.from_version, c.to_version))
        .collect();
    assert_eq!(
        moves,
        vec![
            ("challenger", 9, 0),
            ("champion", 9, 10),
            ("challenger", 0, 9),
            ("champion", 7, 9),
            ("champion", 0, 7)
        ]
    );
    assert!(
        history
            .iter()
            .all(|c| c.principal == "anonymous" && c.time_ms > 0)
    );

    // A version behind an alias cannot be deleted; another can.
    let behind = registry
        .delete_model_version(DeleteModelVersionRequest {
            model_name: "busy".into(),
            version: 10,
        })
        .await
        .unwrap_err();
    assert_eq!(behind.code(), Code::FailedPrecondition);
    assert!(
        behind.message().contains("champion"),
        "{}",
        behind.message()
    );
    registry
        .delete_model_version(DeleteModelVersionRequest {
            model_name: "busy".into(),
            version: 3,
        })
        .await
        .unwrap();
    let gone = registry
        .get_model_version(GetModelVersionRequest {
            model_name: "busy".into(),
            version: 3,
            alias: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_artifact_is_reported_as_data_loss_never_served() {
    let cluster = TestCluster::builder().start().await;
    let digest = store_bundle(&cluster, BUNDLE).await;
    cluster
        .registry()
        .create_model_version(version_request("fragile", &digest))
        .await
        .unwrap();

    // Flip bytes on disk behind the store's back.
    std::fs::write(
        blob_path(cluster.data_dir(), &digest),
        BUNDLE.replace("1.5", "9.9"),
    )
    .unwrap();

    let request = mlops_proto::inference::ModelInferRequest {
        model_name: "fragile".into(),
        inputs: vec![
            mlops_proto::inference::model_infer_request::InferInputTensor {
                name: "input".into(),
                datatype: "FP64".into(),
                shape: vec![1, 2],
                ..Default::default()
            },
        ],
        raw_input_contents: vec![raw_fp64([1.0, 2.0])],
        ..Default::default()
    };
    let status = cluster.inference().model_infer(request).await.unwrap_err();
    assert_refused(&status, Code::DataLoss, &digest);
    let again = cluster
        .registry()
        .create_model_version(version_request("fragile", &digest))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::DataLoss);
    // A download is refused before any byte of the bundle is sent.
    let download = cluster
        .registry()
        .download_model_version(DownloadModelVersionRequest {
            model_name: "fragile".into(),
            version: 1,
            alias: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(download.code(), Code::DataLoss, "{}", download.message());
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_filters_orders_and_pages_and_tags_are_kept() {
    let cluster = TestCluster::builder().start().await;
    let digest = store_bundle(&cluster, BUNDLE).await;
    let mut registry = cluster.registry();
    for i in 1..=30u32 {
        let mut request = version_request("search-a", &digest);
        request.metrics = [
            ("rmse".to_string(), i as f64),
            ("r2".to_string(), 1.0 - i as f64 / 100.0),
        ]
        .into();
        registry.create_model_version(request).await.unwrap();
    }
    for i in 1..=5u32 {
        let mut request = version_request("search-b", &digest);
        request.metrics = [("rmse".to_string(), i as f64 / 2.0)].into();
        registry.create_model_version(request).await.unwrap();
    }
    for version in [2, 4] {
        let tag = SetModelVersionTagRequest {
            model_name: "search-a".into(),
            version,
            key: "stage".into(),
            value: "prod".into(),
        };
        registry.set_model_version_tag(tag).await.unwrap();
    }
    let champion = SetModelAliasRequest {
        model_name: "search-a".into(),
        alias: "champion".into(),
        version: 5,
        expected_version: None,
    };
    registry.set_model_alias(champion).await.unwrap();

    let search = |request: SearchModelVersionsRequest| {
        let mut registry = cluster.registry();
        async move {
            registry
                .search_model_versions(request)
                .await
                .map(|r| r.into_inner())
        }
    };
    let ids = |page: &SearchModelVersionsResponse| -> Vec<(String, u32)> {
        page.versions
            .iter()
            .map(|v| (v.model_name.clone(), v.version))
            .collect()
    };

    // Metric condition within one model.
    let page = search(SearchModelVersionsRequest {
        model_name: "search-a".into(),
        metric_filters: vec!["rmse < 10".into()],
        order_by: "rmse asc".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        page.versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        (1..10).collect::<Vec<u32>>()
    );

    // Across models, ordered by a metric: the best R2 first. Versions without R2 have no place
    // in that order and are left out.
    let page = search(SearchModelVersionsRequest {
        metric_filters: vec!["rmse <= 2".into()],
        order_by: "r2 desc".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let found = ids(&page);
    assert_eq!(
        &found[..2],
        &[("search-a".to_string(), 1), ("search-a".to_string(), 2)]
    );
    assert_eq!(found.len(), 2, "{found:?}");

    // Pages of 7 cover all 35 versions exactly once, even with versions created
    // between pages (keyset cursors: new rows sort before the cursor, nothing shifts).
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        if !token.is_empty() && seen.len() < 14 {
            let mut request = version_request("search-c", &digest);
            request.metrics = [("rmse".to_string(), 99.0)].into();
            registry.create_model_version(request).await.unwrap();
        }
        let page = search(SearchModelVersionsRequest {
            page_size: 7,
            page_token: token.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
        assert!(page.versions.len() <= 7);
        seen.extend(ids(&page));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    let expected: Vec<(String, u32)> = (1..=30)
        .map(|v| ("search-a".to_string(), v))
        .chain((1..=5).map(|v| ("search-b".to_string(), v)))
        .collect();
    assert_eq!(sorted, expected, "{seen:?}");

    // Tags and aliases as conditions; tags come back on the versions.
    let tagged = search(SearchModelVersionsRequest {
        tags: [("stage".to_string(), "prod".to_string())].into(),
        order_by: "rmse asc".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        tagged
            .versions
            .iter()
            .map(|v| v.version)
            .collect::<Vec<_>>(),
        vec![2, 4]
    );
    assert_eq!(tagged.versions[0].tags["stage"], "prod");
    let behind = search(SearchModelVersionsRequest {
        alias: "champion".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(ids(&behind), vec![("search-a".to_string(), 5)]);
    registry
        .delete_model_version_tag(DeleteModelVersionTagRequest {
            model_name: "search-a".into(),
            version: 2,
            key: "stage".into(),
        })
        .await
        .unwrap();
    let v2 = registry
        .get_model_version(GetModelVersionRequest {
            model_name: "search-a".into(),
            version: 2,
            alias: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(v2.tags.is_empty());

    // Bad queries name what is wrong.
    let bad = [
        (
            SearchModelVersionsRequest {
                metric_filters: vec!["rmse ~ 3".into()],
                ..Default::default()
            },
            "metric_filters",
        ),
        (
            SearchModelVersionsRequest {
                order_by: "r2 sideways".into(),
                ..Default::default()
            },
            "order_by",
        ),
        (
            SearchModelVersionsRequest {
                page_token: "42".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            SearchModelVersionsRequest {
                page_size: 5000,
                ..Default::default()
            },
            "page_size",
        ),
        (
            SearchModelVersionsRequest {
                alias: "../x".into(),
                ..Default::default()
            },
            "alias",
        ),
    ];
    for (request, field) in bad {
        let status = search(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains(field), "{}", status.message());
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_versions_survive_sigkill_mid_burst() {
    use std::process::{Command, Stdio};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let store =
        mlops_core::storage::ArtifactStore::local(&dir.path().join("artifacts"), None).unwrap();
    let digest = store
        .put(bytes::Bytes::from_static(BUNDLE.as_bytes()))
        .await
        .unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let database = test_database(dir.path()).await;
    let start = || {
        let child = Command::new(binary("mlops-registry"))
            .env_clear()
            .envs(database.iter().map(|u| ("MLOPS__STORAGE__DATABASE_URL", u)))
            .env("MLOPS__STORAGE__DATA_DIR", dir.path())
            .env("MLOPS__REGISTRY__LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Processes(vec![("mlops-registry".into(), child)])
    };
    let mut registry_process = start();
    wait_healthy(&url, Duration::from_secs(30)).await.unwrap();

    // Eight writers create versions as fast as they can; every acknowledged number is kept.
    let acked = Arc::new(Mutex::new(Vec::<u32>::new()));
    let channel = mlops_core::client::channel(&url, &Default::default()).unwrap();
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let (acked, digest) = (acked.clone(), digest.clone());
            let mut client = registry_service_client::RegistryServiceClient::new(channel.clone());
            tokio::spawn(async move {
                while let Ok(response) = client
                    .create_model_version(version_request("durable", &digest))
                    .await
                {
                    acked.lock().unwrap().push(response.into_inner().version);
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 60 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // SIGKILL: no shutdown, no flush.
    registry_process.0[0].1.kill().unwrap();
    registry_process.0[0].1.wait().unwrap();
    for writer in writers {
        let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
    }
    let acked = acked.lock().unwrap().clone();

    let mut restarted = start();
    wait_healthy(&url, Duration::from_secs(30)).await.unwrap();
    let mut client = registry_service_client::RegistryServiceClient::new(
        mlops_core::client::channel(&url, &Default::default()).unwrap(),
    );
    let versions = client
        .list_model_versions(ListModelVersionsRequest {
            model_name: "durable".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .versions;
    let numbers: Vec<u32> = versions.iter().map(|v| v.version).collect();
    // Every acknowledged version is there; numbers stay gapless (no half-created version).
    assert!(
        acked.iter().all(|v| numbers.contains(v)),
        "lost an acknowledged version"
    );
    assert_eq!(numbers, (1..=numbers.len() as u32).collect::<Vec<_>>());
    assert!(numbers.len() >= acked.len());
    for version in &versions {
        assert_eq!(version.artifact_digest, digest);
    }
    assert_eq!(
        store.get(&digest).await.unwrap(),
        bytes::Bytes::from_static(BUNDLE.as_bytes())
    );
    // The outbox went down with the data: exactly one creation event per surviving version.
    let created: Vec<u32> = client
        .list_registry_events(ListRegistryEventsRequest {
            model_name: "durable".into(),
            kinds: vec![RegistryEventKind::VersionCreated as i32],
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events
        .iter()
        .rev()
        .map(|e| e.version)
        .collect();
    assert_eq!(created, numbers);
    restarted.terminate_gracefully();
}
