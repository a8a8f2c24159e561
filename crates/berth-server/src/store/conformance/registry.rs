//! Conformance of the registry side of [`Store`]: model versions, metadata,
//! environments, snapshots, settings, compute targets, aliases and follow
//! state, and what survives reopening the store.

use std::collections::BTreeMap;

use super::{Subject, conformance};
use crate::store::{
    FollowState, ModelChanges, ModelFilter, NewEnvironment, NewModelFile, NewSnapshot, StoreError,
    StoredComputeTarget, test_model,
};

conformance! {
    versions_are_never_reused => versions_are_never_reused_sqlite, versions_are_never_reused_postgres;
    concurrent_registrations_get_distinct_versions => concurrent_registrations_get_distinct_versions_sqlite, concurrent_registrations_get_distinct_versions_postgres;
    model_metadata_filters_and_files => model_metadata_filters_and_files_sqlite, model_metadata_filters_and_files_postgres;
    environments_snapshots_and_settings => environments_snapshots_and_settings_sqlite, environments_snapshots_and_settings_postgres;
    compute_targets => compute_targets_sqlite, compute_targets_postgres;
    aliases_and_follow_states => aliases_and_follow_states_sqlite, aliases_and_follow_states_postgres;
    everything_is_restored_after_reopening => everything_is_restored_after_reopening_sqlite, everything_is_restored_after_reopening_postgres;
}

async fn versions_are_never_reused(subject: Subject) {
    let store = &subject.stores.store;
    for expected in 1..=3 {
        let model = store
            .insert_model(test_model("m", "sha256:01"))
            .await
            .unwrap();
        assert_eq!(model.version, expected);
    }
    store.delete_model("m", 3).await.unwrap();
    let model = store
        .insert_model(test_model("m", "sha256:02"))
        .await
        .unwrap();
    assert_eq!(
        model.version, 4,
        "a deleted newest version is not handed out again"
    );
    for v in [1, 2, 4] {
        store.delete_model("m", v).await.unwrap();
    }
    assert!(matches!(
        store.model("m", None).await,
        Err(StoreError::ModelNotFound(_))
    ));
    let model = store
        .insert_model(test_model("m", "sha256:03"))
        .await
        .unwrap();
    assert_eq!(model.version, 5, "deleting every version keeps the counter");
    let other = store
        .insert_model(test_model("n", "sha256:04"))
        .await
        .unwrap();
    assert_eq!(other.version, 1, "counters are per name");
}

async fn concurrent_registrations_get_distinct_versions(subject: Subject) {
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = subject.stores.store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .insert_model(test_model("c", &format!("sha256:{i:02}")))
                .await
                .map(|m| m.version)
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap().unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=20).collect::<Vec<u32>>());
}

async fn model_metadata_filters_and_files(subject: Subject) {
    let store = &subject.stores.store;
    let mut first = test_model("m", "sha256:aa");
    first.tags = BTreeMap::from([("stage".into(), "dev".into())]);
    first.properties = BTreeMap::from([("acc".into(), "0.9".into())]);
    first.framework = Some("ScikitLearn".into());
    first.files.push(NewModelFile {
        path: "a/extra.txt".into(),
        size: 5,
        digest: "sha256:bb".into(),
        mode: 0o755,
    });
    store.insert_model(first).await.unwrap();
    store
        .insert_model(test_model("m", "sha256:cc"))
        .await
        .unwrap();
    store
        .insert_model(test_model("other", "sha256:dd"))
        .await
        .unwrap();

    let one = store.model("m", Some(1)).await.unwrap();
    assert_eq!(one.size, 8);
    assert_eq!(one.file_count, 2);
    let paths: Vec<String> = one.files.unwrap().into_iter().map(|f| f.path).collect();
    assert_eq!(paths, vec!["a/extra.txt", "m.bin"]);
    let files = store.model_files("m", 1).await.unwrap();
    assert_eq!((files[0].mode, files[1].mode), (0o755, 0o644));
    assert_eq!(store.model("m", None).await.unwrap().version, 2);

    let ids = |models: Vec<berth_api::Model>| models.into_iter().map(|m| m.id).collect::<Vec<_>>();
    let all = store.list_models(&ModelFilter::default()).await.unwrap();
    assert_eq!(
        ids(all),
        vec!["other:1", "m:2", "m:1"],
        "newest registration first"
    );
    let tagged = ModelFilter {
        tags: vec![("stage".into(), Some("dev".into()))],
        ..Default::default()
    };
    assert_eq!(ids(store.list_models(&tagged).await.unwrap()), vec!["m:1"]);
    let has_key = ModelFilter {
        properties: vec![("acc".into(), None)],
        framework: Some("ScikitLearn".into()),
        ..Default::default()
    };
    assert_eq!(ids(store.list_models(&has_key).await.unwrap()), vec!["m:1"]);
    let wrong_value = ModelFilter {
        tags: vec![("stage".into(), Some("prod".into()))],
        ..Default::default()
    };
    assert!(store.list_models(&wrong_value).await.unwrap().is_empty());
    let latest = ModelFilter {
        latest: true,
        ..Default::default()
    };
    assert_eq!(
        ids(store.list_models(&latest).await.unwrap()),
        vec!["other:1", "m:2"]
    );
    let named = ModelFilter {
        name: Some("m".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(store.list_models(&named).await.unwrap()),
        vec!["m:2", "m:1"]
    );

    let updated = store
        .update_model(
            "m",
            1,
            ModelChanges {
                description: Some("new".into()),
                add_tags: BTreeMap::from([("x".into(), "1".into())]),
                remove_tags: vec!["stage".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.description.as_deref(), Some("new"));
    assert_eq!(updated.tags, BTreeMap::from([("x".into(), "1".into())]));
    let refused = store
        .update_model(
            "m",
            1,
            ModelChanges {
                add_properties: BTreeMap::from([("acc".into(), "1".into())]),
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );
    assert_eq!(
        store.model("m", Some(1)).await.unwrap().properties["acc"],
        "0.9"
    );

    assert!(store.blob_referenced("sha256:bb").await.unwrap());
    let mut blobs = store.referenced_blobs().await.unwrap();
    blobs.sort();
    assert_eq!(
        blobs,
        vec!["sha256:aa", "sha256:bb", "sha256:cc", "sha256:dd"]
    );
    let freed = store.delete_model("m", 1).await.unwrap();
    assert_eq!(freed.len(), 2);
    assert!(!store.blob_referenced("sha256:bb").await.unwrap());
    assert!(matches!(
        store.model("m", Some(1)).await,
        Err(StoreError::ModelNotFound(id)) if id == "m:1"
    ));
}

fn environment(name: &str, requirement: &str) -> NewEnvironment {
    NewEnvironment {
        name: name.into(),
        spec: berth_api::EnvironmentSpec {
            python_version: Some("3.11".into()),
            requested_python_version: None,
            requirements: vec![requirement.into()],
            environment_variables: BTreeMap::new(),
            interpreter_path: None,
        },
        spec_digest: format!("sha256:{requirement}"),
        build_hash: "b".into(),
        warnings: vec!["w".into()],
        description: None,
        created_time: "2026-01-01T00:00:00.000Z".into(),
    }
}

async fn environments_snapshots_and_settings(subject: Subject) {
    let store = &subject.stores.store;
    let (created, first) = store
        .register_environment(environment("env", "numpy"))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(first.version, 1);
    let (created, same) = store
        .register_environment(environment("env", "numpy"))
        .await
        .unwrap();
    assert!(!created, "the same spec is not a new version");
    assert_eq!(same.version, 1);
    let (_, second) = store
        .register_environment(environment("env", "pandas"))
        .await
        .unwrap();
    assert_eq!(second.version, 2);
    assert_eq!(second.spec.requirements, vec!["pandas"]);
    assert_eq!(second.warnings, vec!["w"]);
    store
        .register_environment(environment("other", "x"))
        .await
        .unwrap();
    assert_eq!(store.environment("env", None).await.unwrap().version, 2);
    assert_eq!(
        store
            .environment("env", Some(1))
            .await
            .unwrap()
            .spec
            .requirements,
        vec!["numpy"]
    );
    assert!(matches!(
        store.environment("env", Some(9)).await,
        Err(StoreError::EnvironmentNotFound(id)) if id == "env:9"
    ));
    let versions = |list: Vec<crate::store::StoredEnvironment>| {
        list.into_iter()
            .map(|e| format!("{}:{}", e.name, e.version))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        versions(store.list_environments(None, false).await.unwrap()),
        vec!["other:1", "env:2", "env:1"]
    );
    assert_eq!(
        versions(store.list_environments(None, true).await.unwrap()),
        vec!["other:1", "env:2"]
    );
    assert_eq!(
        versions(store.list_environments(Some("env"), true).await.unwrap()),
        vec!["env:2"]
    );

    let snapshot = NewSnapshot {
        digest: "sha256:snap".into(),
        created_time: "t".into(),
        files: vec![
            NewModelFile {
                path: "score.py".into(),
                size: 10,
                digest: "sha256:s1".into(),
                mode: 0o644,
            },
            NewModelFile {
                path: "lib/a.py".into(),
                size: 2,
                digest: "sha256:s2".into(),
                mode: 0o600,
            },
        ],
    };
    let (inserted, shown) = store.insert_snapshot(snapshot.clone()).await.unwrap();
    assert!(inserted);
    assert_eq!((shown.size, shown.file_count), (12, 2));
    let (inserted, _) = store.insert_snapshot(snapshot).await.unwrap();
    assert!(!inserted, "a snapshot is stored once");
    let (_, files) = store.snapshot("sha256:snap").await.unwrap();
    assert_eq!(
        files
            .iter()
            .map(|f| f.file.path.as_str())
            .collect::<Vec<_>>(),
        vec!["lib/a.py", "score.py"]
    );
    assert!(store.blob_referenced("sha256:s2").await.unwrap());
    assert!(matches!(
        store.snapshot("sha256:none").await,
        Err(StoreError::SnapshotNotFound(_))
    ));

    assert_eq!(store.setting("k").await.unwrap(), None);
    store.set_setting("k", "1").await.unwrap();
    store.set_setting("k", "2").await.unwrap();
    assert_eq!(store.setting("k").await.unwrap().as_deref(), Some("2"));
}

async fn compute_targets(subject: Subject) {
    let store = &subject.stores.store;
    let target = StoredComputeTarget {
        name: "aks".into(),
        compute_type: "AKS".into(),
        attached: true,
        properties: serde_json::json!({"cluster": "c1", "nodes": 3}),
        created_time: "t".into(),
        kubernetes: Some(berth_api::KubernetesAttach {
            kubeconfig: Some("apiVersion: v1".into()),
            in_cluster: false,
            namespace: "ml".into(),
            image: "berth".into(),
            server_url: Some("https://berth.internal".into()),
        }),
    };
    let (inserted, stored) = store.put_compute_target(target.clone()).await.unwrap();
    assert!(inserted);
    assert_eq!(stored, target);
    let mut again = target.clone();
    again.attached = false;
    let (inserted, stored) = store.put_compute_target(again).await.unwrap();
    assert!(!inserted, "an existing target is returned, not replaced");
    assert_eq!(stored, target);
    let mut second = target.clone();
    second.name = "a-first".into();
    store.put_compute_target(second).await.unwrap();
    let names: Vec<String> = store
        .list_compute_targets()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["a-first", "aks"]);
    assert_eq!(store.compute_target("aks").await.unwrap(), Some(target));
    assert!(store.delete_compute_target("aks").await.unwrap());
    assert!(!store.delete_compute_target("aks").await.unwrap());
    assert_eq!(store.compute_target("aks").await.unwrap(), None);
}

async fn aliases_and_follow_states(subject: Subject) {
    let store = &subject.stores.store;
    for i in 0..3 {
        store
            .insert_model(test_model("m", &format!("sha256:{i:02}")))
            .await
            .unwrap();
    }
    let (alias, previous) = store
        .set_alias("m", "champion", 1, "t1", Vec::new())
        .await
        .unwrap();
    assert_eq!((alias.version, previous), (1, None));
    let mut follow = FollowState::new("svc", "m@champion");
    follow.pending = Some(2);
    follow.pending_cause = Some("alias moved m@champion 1 → 2".into());
    let (_, previous) = store
        .set_alias("m", "champion", 2, "t2", vec![follow.clone()])
        .await
        .unwrap();
    assert_eq!(previous, Some(1));
    store
        .set_alias("m", "canary", 3, "t3", Vec::new())
        .await
        .unwrap();
    let shown = store.model("m", Some(1)).await.unwrap();
    assert_eq!(
        shown.aliases.into_iter().collect::<Vec<_>>(),
        vec![("canary".to_owned(), 3), ("champion".to_owned(), 2)]
    );
    assert_eq!(store.alias_version("m", "champion").await.unwrap(), 2);
    assert_eq!(
        store.follow_states(Some("svc")).await.unwrap(),
        vec![follow.clone()]
    );
    match store.delete_model("m", 2).await {
        Err(StoreError::ModelAliased { id, aliases }) => {
            assert_eq!(
                (id.as_str(), aliases),
                ("m:2", vec!["m@champion".to_owned()])
            );
        }
        other => panic!("expected ModelAliased, got {other:?}"),
    }
    // A refused move writes nothing.
    let mut other = FollowState::new("svc2", "m@champion");
    other.pending = Some(9);
    assert!(matches!(
        store.set_alias("m", "champion", 9, "t", vec![other]).await,
        Err(StoreError::ModelNotFound(id)) if id == "m:9"
    ));
    assert_eq!(store.follow_states(None).await.unwrap().len(), 1);
    assert_eq!(store.remove_alias("m", "champion").await.unwrap(), 2);
    assert!(matches!(
        store.remove_alias("m", "champion").await,
        Err(StoreError::AliasNotFound { .. })
    ));
    store.delete_model("m", 2).await.unwrap();
    let all = store.aliases(None).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].alias.as_str(), all[0].version), ("canary", 3));

    // A registration writes the new version as its followers' pending target.
    let mut latest = FollowState::new("svc", "m@latest");
    latest.rejected = Some(3);
    latest.pending_cause = Some("old".into());
    let model = store
        .insert_model_following(test_model("m", "sha256:ff"), vec![latest])
        .await
        .unwrap();
    assert_eq!(model.version, 4);
    let states = store.follow_states(Some("svc")).await.unwrap();
    let latest = states.iter().find(|s| s.reference == "m@latest").unwrap();
    assert_eq!(
        (
            latest.pending,
            latest.rejected,
            latest.pending_cause.clone()
        ),
        (Some(4), Some(3), None)
    );
    // An empty state is deleted.
    store
        .put_follow_states(vec![
            FollowState::new("svc", "m@latest"),
            FollowState::new("svc", "m@champion"),
        ])
        .await
        .unwrap();
    assert!(store.follow_states(None).await.unwrap().is_empty());
}

async fn everything_is_restored_after_reopening(subject: Subject) {
    use berth_api::OperationType;
    let store = subject.stores.store.clone();
    store
        .insert_model(test_model("m", "sha256:01"))
        .await
        .unwrap();
    store
        .insert_model(test_model("m", "sha256:02"))
        .await
        .unwrap();
    store.delete_model("m", 2).await.unwrap();
    store
        .set_alias("m", "prod", 1, "t", Vec::new())
        .await
        .unwrap();
    store.set_setting("workspace", "w").await.unwrap();
    let services = subject.stores.services.clone();
    let created = services
        .create_service(super::new_service("svc", "op-1", super::spec(&["m:1"])))
        .await
        .unwrap();
    assert_eq!(created.operation_type, OperationType::Create);
    subject
        .stores
        .events
        .insert_events(
            vec![crate::store::NewEvent {
                time: "t".into(),
                event_type: "model.registered".into(),
                service: None,
                operation: None,
                data: serde_json::json!({}),
            }],
            100,
        )
        .await
        .unwrap();
    drop((store, services));

    let subject = subject.reopen().await;
    let store = &subject.stores.store;
    assert_eq!(store.model("m", None).await.unwrap().version, 1);
    assert_eq!(store.alias_version("m", "prod").await.unwrap(), 1);
    assert_eq!(
        store.setting("workspace").await.unwrap().as_deref(),
        Some("w")
    );
    let model = store
        .insert_model(test_model("m", "sha256:03"))
        .await
        .unwrap();
    assert_eq!(model.version, 3, "the version counter survives reopening");
    let service = subject.stores.services.service("svc").await.unwrap();
    assert_eq!(service.last_operation.as_deref(), Some("op-1"));
    let operation = subject.stores.services.operation("op-1", 0).await.unwrap();
    assert_eq!(operation.state, berth_api::OperationState::Running);
    let events = subject
        .stores
        .events
        .events(crate::store::EventQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    let next = subject
        .stores
        .events
        .insert_events(
            vec![crate::store::NewEvent {
                time: "t".into(),
                event_type: "x".into(),
                service: None,
                operation: None,
                data: serde_json::json!({}),
            }],
            100,
        )
        .await
        .unwrap();
    assert!(next[0].id > events[0].id, "event ids keep increasing");
}
