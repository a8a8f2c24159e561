//! `berth admin migrate` at the store level: a SQLite store populated through
//! the traits, copied into an empty PostgreSQL store, reads the same through
//! the traits; a non-empty target is refused.

use berth_api::OperationType;

use super::{new_service, pg, spec};
use crate::store::postgres::import::copy_from_sqlite;
use crate::store::{
    DeliveryRecord, EventQuery, FollowState, ModelFilter, NewEvent, NewModelFile, NewSnapshot,
    NewWebhook, OperationOutcome, PgStore, ServiceStore, SqliteStore, Store, StoreError,
    StoredComputeTarget, test_model,
};
use crate::store::{EventStore, NewEnvironment};

async fn populate(store: &SqliteStore) {
    for i in 0..3 {
        store
            .insert_model(test_model("m", &format!("sha256:{i:02}")))
            .await
            .unwrap();
    }
    store.delete_model("m", 3).await.unwrap();
    let mut follow = FollowState::new("svc", "m@prod");
    follow.pending = Some(2);
    store
        .set_alias("m", "prod", 2, "t", vec![follow])
        .await
        .unwrap();
    store.set_setting("k", "v").await.unwrap();
    store
        .register_environment(NewEnvironment {
            name: "env".into(),
            spec: berth_api::EnvironmentSpec {
                python_version: None,
                requested_python_version: None,
                requirements: vec!["numpy".into()],
                environment_variables: Default::default(),
                interpreter_path: None,
            },
            spec_digest: "sha256:e".into(),
            build_hash: "b".into(),
            warnings: Vec::new(),
            description: Some("d".into()),
            created_time: "t".into(),
        })
        .await
        .unwrap();
    store
        .insert_snapshot(NewSnapshot {
            digest: "sha256:snap".into(),
            created_time: "t".into(),
            files: vec![NewModelFile {
                path: "score.py".into(),
                size: 1,
                digest: "sha256:s".into(),
                mode: 0o644,
            }],
        })
        .await
        .unwrap();
    store
        .put_compute_target(StoredComputeTarget {
            name: "aks".into(),
            compute_type: "AKS".into(),
            attached: true,
            properties: serde_json::json!({"a": 1}),
            created_time: "t".into(),
            kubernetes: None,
        })
        .await
        .unwrap();
    store
        .create_service(new_service("svc", "op-1", spec(&["m:1"])))
        .await
        .unwrap();
    store
        .finish_operation(
            "op-1",
            OperationOutcome::Succeeded {
                serving_revision: 1,
            },
            "t",
        )
        .await
        .unwrap();
    store
        .change_service(crate::store::ServiceChange {
            name: "svc".into(),
            kind: OperationType::Update,
            operation_id: "op-2".into(),
            now: "t".into(),
            based_on: Some(1),
            new_revision: Some(spec(&["m:2"])),
            target: None,
            description: None,
            tags: None,
            properties: None,
            keys: None,
        })
        .await
        .unwrap();
    store.add_event("op-2", 3, "building").await.unwrap();
    let events: Vec<NewEvent> = (0..5)
        .map(|i| NewEvent {
            time: "t".into(),
            event_type: format!("e{i}"),
            service: Some("svc".into()),
            operation: None,
            data: serde_json::json!({"i": i}),
        })
        .collect();
    // Keep 3 of 5: the copy must continue after id 5, not after 3 rows.
    store.insert_events(events, 3).await.unwrap();
    store
        .insert_webhook(NewWebhook {
            id: "wh".into(),
            url: "https://example.com".into(),
            events: vec!["*".into()],
            secret: "s".into(),
            created_time: "t".into(),
        })
        .await
        .unwrap();
    store
        .record_delivery(
            "wh",
            DeliveryRecord {
                event_id: 5,
                status: "delivered",
                time: "t".into(),
                error: None,
                consecutive_failures: 0,
            },
        )
        .await
        .unwrap();
}

/// What both stores must answer alike, as comparable text.
async fn view<S: Store + ServiceStore + EventStore>(store: &S) -> Vec<String> {
    let mut out = Vec::new();
    for model in store.list_models(&ModelFilter::default()).await.unwrap() {
        let files = store.model_files(&model.name, model.version).await.unwrap();
        out.push(format!(
            "model {} {:?} {:?} {:?}",
            model.id,
            model.used_by,
            model.aliases,
            files
                .iter()
                .map(|f| (&f.file.path, &f.file.digest, f.mode))
                .collect::<Vec<_>>()
        ));
    }
    out.push(format!("aliases {:?}", store.aliases(None).await.unwrap()));
    out.push(format!(
        "follows {:?}",
        store.follow_states(None).await.unwrap()
    ));
    out.push(format!("setting {:?}", store.setting("k").await.unwrap()));
    for env in store.list_environments(None, false).await.unwrap() {
        out.push(format!("env {}:{} {:?}", env.name, env.version, env.spec));
    }
    out.push(format!(
        "snapshot {:?}",
        store.snapshot("sha256:snap").await.unwrap()
    ));
    out.push(format!(
        "computes {:?}",
        store.list_compute_targets().await.unwrap()
    ));
    for service in store.list_services().await.unwrap() {
        out.push(format!("service {service:?}"));
        out.push(format!(
            "revisions {:?}",
            store.revisions(&service.name).await.unwrap()
        ));
    }
    for op in ["op-1", "op-2"] {
        out.push(format!(
            "operation {:?}",
            store.operation(op, 0).await.unwrap()
        ));
    }
    let events = store
        .events(EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    out.push(format!("events {events:?}"));
    out.push(format!("webhooks {:?}", store.webhooks().await.unwrap()));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sqlite_store_copied_to_postgres_reads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("berth.db"))
        .await
        .unwrap();
    populate(&sqlite).await;
    let target = PgStore::open(&pg::fresh_database().await).await.unwrap();
    let copied = copy_from_sqlite(&sqlite, &target).await.unwrap();
    let rows = |table: &str| copied.iter().find(|c| c.table == table).unwrap().rows;
    assert_eq!(
        (
            rows("models"),
            rows("events"),
            rows("revisions"),
            rows("operation_events")
        ),
        (2, 3, 2, 3)
    );
    assert_eq!(view(&sqlite).await, view(&target).await);

    // Counters and sequences continue where the source stopped.
    assert_eq!(
        target
            .insert_model(test_model("m", "sha256:09"))
            .await
            .unwrap()
            .version,
        4
    );
    let next = target
        .insert_events(
            vec![NewEvent {
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
    assert_eq!(next[0].id, 6);
    match target
        .change_service(crate::store::ServiceChange {
            name: "svc".into(),
            kind: OperationType::Redeploy,
            operation_id: "op-3".into(),
            now: "t".into(),
            based_on: Some(1),
            new_revision: None,
            target: Some(1),
            description: None,
            tags: None,
            properties: None,
            keys: None,
        })
        .await
    {
        Err(StoreError::OperationInProgress { operation, .. }) => assert_eq!(operation, "op-2"),
        other => panic!("the copied running operation must still block: {other:?}"),
    }

    // A second copy into the now non-empty target is refused, changing nothing.
    match copy_from_sqlite(&sqlite, &target).await {
        Err(StoreError::Invalid(problems)) => {
            assert!(problems[0].contains("not empty"), "{problems:?}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        target
            .list_models(&ModelFilter::default())
            .await
            .unwrap()
            .len(),
        3
    );
}
