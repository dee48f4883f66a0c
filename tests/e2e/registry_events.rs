//! Registry events and retention: WatchRegistry replays from a cursor and survives restarts
//! without losing an event, the audit log keeps before/after, archived versions leave search,
//! and garbage collection removes only unreferenced bundles (with a dry run first).

use std::time::Duration;

use futures::StreamExt;
use mlops_e2e::*;
use mlops_proto::v1::*;
use tonic::Code;

type Events = tonic::Streaming<RegistryEvent>;

async fn watch(cluster: &TestCluster, request: WatchRegistryRequest) -> Events {
    cluster
        .registry()
        .watch_registry(request)
        .await
        .unwrap()
        .into_inner()
}

async fn next_events(events: &mut Events, n: usize) -> Vec<RegistryEvent> {
    let mut got = Vec::new();
    while got.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream is open")
            .expect("an event, not an error");
        got.push(event);
    }
    got
}

fn kinds(events: &[RegistryEvent]) -> Vec<RegistryEventKind> {
    events.iter().map(|e| e.kind()).collect()
}

fn alias_request(model: &str, alias: &str, version: u32) -> SetModelAliasRequest {
    SetModelAliasRequest {
        model_name: model.into(),
        alias: alias.into(),
        version,
        expected_version: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_replays_from_a_cursor_across_restarts_and_audit_keeps_before_and_after() {
    use RegistryEventKind::*;
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::builder().data_dir(dir.path()).start().await;
    let digest = store_bundle(&cluster, BUNDLE).await;
    let mut registry = cluster.registry();

    // A live watcher sees each change as it commits.
    let mut live = watch(
        &cluster,
        WatchRegistryRequest {
            model_name: "watched".into(),
            ..Default::default()
        },
    )
    .await;
    registry
        .create_model_version(version_request("watched", &digest))
        .await
        .unwrap();
    registry
        .create_model_version(version_request("other", &digest))
        .await
        .unwrap();
    registry
        .set_model_alias(alias_request("watched", "champion", 1))
        .await
        .unwrap();
    let first = next_events(&mut live, 3).await;
    assert_eq!(kinds(&first), [ModelCreated, VersionCreated, AliasSet]);
    assert!(first.iter().all(|e| e.model_name == "watched"));
    assert!(first.windows(2).all(|w| w[0].seq < w[1].seq));
    let created: serde_json::Value = serde_json::from_str(&first[1].after).unwrap();
    assert_eq!(created["artifact_digest"], digest.as_str());
    assert_eq!(first[2].key, "champion");
    assert_eq!(first[2].before, "");
    let last_seen = first[2].seq;

    // Changes made while nobody watches, then a restart: the outbox keeps them.
    registry
        .create_model_version(version_request("watched", &digest))
        .await
        .unwrap();
    registry
        .set_model_alias(alias_request("watched", "champion", 2))
        .await
        .unwrap();
    cluster.stop().await;
    // The watch ends with the server instead of holding its shutdown up.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = live.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the watch stream outlived the server");

    let cluster = TestCluster::builder().data_dir(dir.path()).start().await;
    let mut registry = cluster.registry();
    let mut resumed = watch(
        &cluster,
        WatchRegistryRequest {
            model_name: "watched".into(),
            after_seq: last_seen,
            from_now: false,
        },
    )
    .await;
    let mut from_now = watch(
        &cluster,
        WatchRegistryRequest {
            from_now: true,
            ..Default::default()
        },
    )
    .await;
    let missed = next_events(&mut resumed, 2).await;
    assert_eq!(kinds(&missed), [VersionCreated, AliasSet]);
    assert!(missed[0].seq > last_seen);
    let moved: serde_json::Value = serde_json::from_str(&missed[1].after).unwrap();
    let was: serde_json::Value = serde_json::from_str(&missed[1].before).unwrap();
    assert_eq!(
        (was["version"].as_u64(), moved["version"].as_u64()),
        (Some(1), Some(2))
    );

    // Tags and deletes are events too; `from_now` sees only what follows.
    registry
        .set_model_version_tag(SetModelVersionTagRequest {
            model_name: "watched".into(),
            version: 1,
            key: "stage".into(),
            value: "old".into(),
        })
        .await
        .unwrap();
    registry
        .delete_model_version(DeleteModelVersionRequest {
            model_name: "watched".into(),
            version: 1,
        })
        .await
        .unwrap();
    let later = next_events(&mut resumed, 2).await;
    assert_eq!(kinds(&later), [TagSet, VersionDeleted]);
    assert_eq!(
        kinds(&next_events(&mut from_now, 2).await),
        [TagSet, VersionDeleted]
    );
    let deleted: serde_json::Value = serde_json::from_str(&later[1].before).unwrap();
    assert_eq!(deleted["artifact_digest"], digest.as_str());
    assert_eq!(later[1].after, "");

    // The audit log: filtered by model and kind, newest first, with before and after.
    let audit = registry
        .list_registry_events(ListRegistryEventsRequest {
            model_name: "watched".into(),
            kinds: vec![AliasSet as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0].before, r#"{"version":1}"#);
    assert_eq!(audit[0].after, r#"{"version":2}"#);
    assert_eq!(audit[1].before, "");
    // Paging back from a seq.
    let older = registry
        .list_registry_events(ListRegistryEventsRequest {
            before_seq: audit[0].seq,
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(older.len(), 1);
    assert!(older[0].seq < audit[0].seq);
    // The alias history reads the same log.
    let history = registry
        .list_alias_history(ListAliasHistoryRequest {
            model_name: "watched".into(),
            alias: "champion".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .changes;
    assert_eq!(
        history
            .iter()
            .map(|c| (c.from_version, c.to_version))
            .collect::<Vec<_>>(),
        [(1, 2), (0, 1)]
    );
    let bad = registry
        .list_registry_events(ListRegistryEventsRequest {
            kinds: vec![99],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("kinds"), "{}", bad.message());
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_versions_leave_search_and_gc_removes_only_unreferenced_bundles() {
    let cluster = TestCluster::builder().start().await;
    let kept = store_bundle(&cluster, BUNDLE).await;
    let shared = store_bundle(&cluster, &BUNDLE.replace("3.0", "4.0")).await;
    let mut registry = cluster.registry();
    for digest in [&kept, &shared, &shared] {
        registry
            .create_model_version(version_request("retained", digest))
            .await
            .unwrap();
    }
    registry
        .set_model_alias(alias_request("retained", "champion", 1))
        .await
        .unwrap();

    // Archive: not behind an alias, leaves search, takes no alias, comes back on restore.
    let archive = |version| ArchiveModelVersionRequest {
        model_name: "retained".into(),
        version,
    };
    let refused = registry
        .archive_model_version(archive(1))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("champion"),
        "{}",
        refused.message()
    );
    let archived = registry
        .archive_model_version(archive(2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(archived.status(), ModelVersionStatus::Archived);
    let again = registry
        .archive_model_version(archive(2))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    let found = |include_archived| {
        let mut registry = cluster.registry();
        async move {
            registry
                .search_model_versions(SearchModelVersionsRequest {
                    model_name: "retained".into(),
                    include_archived,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .versions
                .iter()
                .map(|v| v.version)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(found(false).await, [3, 1]);
    assert_eq!(found(true).await, [3, 2, 1]);
    let alias = registry
        .set_model_alias(alias_request("retained", "challenger", 2))
        .await
        .unwrap_err();
    assert_eq!(alias.code(), Code::FailedPrecondition);
    assert!(alias.message().contains("archived"), "{}", alias.message());
    registry
        .restore_model_version(RestoreModelVersionRequest {
            model_name: "retained".into(),
            version: 2,
        })
        .await
        .unwrap();
    assert_eq!(found(false).await, [3, 2, 1]);

    // Deleting one of two versions that share a bundle leaves nothing to collect.
    let delete = |version| DeleteModelVersionRequest {
        model_name: "retained".into(),
        version,
    };
    let gc = |dry_run, min_age_seconds| {
        let mut registry = cluster.registry();
        async move {
            registry
                .collect_garbage(CollectGarbageRequest {
                    dry_run,
                    min_age_seconds,
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    registry.delete_model_version(delete(3)).await.unwrap();
    assert!(gc(true, 0).await.digests.is_empty());
    // The last reference gone, the bundle is garbage: a dry run lists it and deletes nothing.
    registry.delete_model_version(delete(2)).await.unwrap();
    let dry = gc(true, 0).await;
    assert_eq!(dry.digests, std::slice::from_ref(&shared));
    assert!(dry.bytes > 0 && dry.dry_run);
    assert!(blob_path(cluster.data_dir(), &shared).exists());
    // Too young for a grace period of an hour.
    assert!(gc(false, 3600).await.digests.is_empty());
    let collected = gc(false, 0).await;
    assert_eq!(collected.digests, std::slice::from_ref(&shared));
    assert!(!blob_path(cluster.data_dir(), &shared).exists());
    assert!(blob_path(cluster.data_dir(), &kept).exists());
    assert!(gc(true, 0).await.digests.is_empty());
    // A collected bundle cannot back a new version; the kept one still can.
    let gone = registry
        .create_model_version(version_request("retained", &shared))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::FailedPrecondition);
    // Numbers are never reused: versions 2 and 3 are gone, the next one is 4.
    let next = registry
        .create_model_version(version_request("retained", &kept))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.version, 4);
    let events = registry
        .list_registry_events(ListRegistryEventsRequest {
            kinds: vec![
                RegistryEventKind::ArtifactsCollected as i32,
                RegistryEventKind::VersionArchived as i32,
                RegistryEventKind::VersionRestored as i32,
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(
        kinds(&events),
        [
            RegistryEventKind::ArtifactsCollected,
            RegistryEventKind::VersionRestored,
            RegistryEventKind::VersionArchived
        ]
    );
    assert!(events[0].after.contains(&shared));
    cluster.stop().await;
}

/// Two registry replicas on one database (SQLite file or PostgreSQL): version numbers stay
/// gapless across both, and a watcher on one sees what the other commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_a_database_number_versions_and_notify_together() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestCluster::builder().data_dir(dir.path()).start().await;
    let b = TestCluster::builder().data_dir(dir.path()).start().await;
    let digest = store_bundle(&a, BUNDLE).await;
    let mut watcher = watch(
        &a,
        WatchRegistryRequest {
            model_name: "shared".into(),
            ..Default::default()
        },
    )
    .await;
    let writers: Vec<_> = [&a, &b]
        .iter()
        .flat_map(|cluster| (0..10).map(|_| cluster.registry()))
        .map(|mut registry| {
            let digest = digest.clone();
            tokio::spawn(async move {
                registry
                    .create_model_version(version_request("shared", &digest))
                    .await
                    .unwrap()
                    .into_inner()
                    .version
            })
        })
        .collect();
    let mut numbers = Vec::new();
    for writer in writers {
        numbers.push(writer.await.unwrap());
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=20).collect::<Vec<u32>>());
    // The model creation plus twenty versions, whichever replica committed them.
    let events = next_events(&mut watcher, 21).await;
    let mut seen: Vec<u32> = events
        .iter()
        .filter(|e| e.kind() == RegistryEventKind::VersionCreated)
        .map(|e| e.version)
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, numbers);
    a.stop().await;
    b.stop().await;
}

/// A token limited to some models searches and reads the log as if the others did not exist:
/// no row, page token or event of theirs reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_tokens_see_only_their_models_in_search_and_audit() {
    let cluster = TestCluster::builder().auth().start().await;
    let digest = store_bundle(&cluster, BUNDLE).await;
    let mut admin = cluster.registry();
    for model in ["team-a-churn", "secret-model", "team-a-fraud"] {
        for _ in 0..3 {
            admin
                .create_model_version(version_request(model, &digest))
                .await
                .unwrap();
        }
    }
    let token = cluster.token("team-a", "viewer", &["model:team-a-*"]).await;
    let mut scoped = cluster.as_token(Some(&token)).registry();
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = scoped
            .search_model_versions(SearchModelVersionsRequest {
                page_size: 2,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!page.versions.is_empty(), "an empty page before the end");
        seen.extend(page.versions.iter().map(|v| v.model_name.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        // The cursor inside the token names only what the caller may see.
        let cursor = String::from_utf8(
            (1..page.next_page_token.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&page.next_page_token[i..i + 2], 16).unwrap())
                .collect(),
        )
        .unwrap();
        assert!(!cursor.contains("secret"), "{cursor}");
        page_token = page.next_page_token;
    }
    assert_eq!(seen.len(), 6);
    assert!(seen.iter().all(|m| m.starts_with("team-a-")), "{seen:?}");
    let events = scoped
        .list_registry_events(ListRegistryEventsRequest {
            limit: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events.len(), 3, "a full page of visible events");
    assert!(events.iter().all(|e| e.model_name.starts_with("team-a-")));
    cluster.stop().await;
}
