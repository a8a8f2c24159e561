//! Conformance of [`ServiceStore`]: one running operation per service (also
//! under 50 concurrent changes), revisions, operations and their logs, state
//! transitions, traffic, interrupted operations, model references.

use berth_api::{OperationError, OperationState, OperationType, ServiceState, TrafficShare};

use super::{Subject, conformance, new_service, spec};
use crate::store::{OperationOutcome, ServiceChange, StoreError, test_model};

conformance! {
    one_of_fifty_concurrent_changes_wins => one_of_fifty_concurrent_changes_wins_sqlite, one_of_fifty_concurrent_changes_wins_postgres;
    revisions_operations_and_states => revisions_operations_and_states_sqlite, revisions_operations_and_states_postgres;
    traffic_rollouts_and_interrupted_operations => traffic_rollouts_and_interrupted_operations_sqlite, traffic_rollouts_and_interrupted_operations_postgres;
    services_hold_the_models_they_use => services_hold_the_models_they_use_sqlite, services_hold_the_models_they_use_postgres;
}

const NOW: &str = "2026-01-01T00:00:01.000Z";

fn update(name: &str, operation: &str, based_on: u32, models: &[&str]) -> ServiceChange {
    ServiceChange {
        name: name.into(),
        kind: OperationType::Update,
        operation_id: operation.into(),
        now: NOW.into(),
        based_on: Some(based_on),
        new_revision: Some(spec(models)),
        target: None,
        description: None,
        tags: None,
        properties: None,
        keys: None,
    }
}

fn failure(code: &str) -> OperationError {
    OperationError {
        code: code.into(),
        step: "start".into(),
        message: "no".into(),
        output: vec!["line".into()],
    }
}

async fn one_of_fifty_concurrent_changes_wins(subject: Subject) {
    let services = subject.stores.services.clone();
    services
        .create_service(new_service("svc", "op-0", spec(&["m:1"])))
        .await
        .unwrap();
    services
        .finish_operation(
            "op-0",
            OperationOutcome::Succeeded {
                serving_revision: 1,
            },
            NOW,
        )
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let services = services.clone();
        tasks.push(tokio::spawn(async move {
            services
                .change_service(update("svc", &format!("op-{}", i + 1), 1, &["m:1"]))
                .await
        }));
    }
    let (mut won, mut refused) = (Vec::new(), 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(operation) => won.push(operation),
            Err(StoreError::OperationInProgress { service, .. }) => {
                assert_eq!(service, "svc");
                refused += 1;
            }
            Err(other) => panic!("expected 409 OperationInProgress, got {other:?}"),
        }
    }
    assert_eq!((won.len(), refused), (1, 49), "exactly one change wins");
    let service = services.service("svc").await.unwrap();
    assert_eq!(
        service.latest_revision, 2,
        "only the winner wrote a revision"
    );
    assert_eq!(service.last_operation.as_deref(), Some(won[0].id.as_str()));
    assert_eq!(services.revisions("svc").await.unwrap().len(), 2);
}

async fn revisions_operations_and_states(subject: Subject) {
    let services = &subject.stores.services;
    let created = services
        .create_service(new_service("svc", "op-1", spec(&["m:1"])))
        .await
        .unwrap();
    assert_eq!(
        (
            created.operation_type,
            created.state,
            created.target_revision
        ),
        (OperationType::Create, OperationState::Running, Some(1))
    );
    assert_eq!(created.events[0].message, "Create accepted: revision 1");
    let service = services.service("svc").await.unwrap();
    assert_eq!(
        (
            service.state,
            service.serving_revision,
            service.latest_revision
        ),
        (ServiceState::Transitioning, None, 1)
    );
    assert_eq!(service.keys.primary_key, "k1");
    assert!(matches!(
        services
            .create_service(new_service("svc", "op-x", spec(&["m:1"])))
            .await,
        Err(StoreError::ServiceExists(name)) if name == "svc"
    ));
    match services
        .change_service(update("svc", "op-x", 1, &["m:2"]))
        .await
    {
        Err(StoreError::OperationInProgress {
            operation, kind, ..
        }) => assert_eq!((operation.as_str(), kind.as_str()), ("op-1", "Create")),
        other => panic!("expected OperationInProgress, got {other:?}"),
    }
    assert!(matches!(
        services.start_delete("svc", "op-x", NOW).await,
        Err(StoreError::OperationInProgress { .. })
    ));
    assert!(matches!(
        services.operation("op-x", 0).await,
        Err(StoreError::OperationNotFound(_))
    ));

    services.add_event("op-1", 5, "building").await.unwrap();
    services.add_event("op-1", 9, "started").await.unwrap();
    let log = services.operation("op-1", 1).await.unwrap().events;
    assert_eq!(
        log.iter()
            .map(|e| (e.seq, e.message.as_str()))
            .collect::<Vec<_>>(),
        vec![(1, "building"), (2, "started")]
    );
    services
        .finish_operation(
            "op-1",
            OperationOutcome::Succeeded {
                serving_revision: 1,
            },
            NOW,
        )
        .await
        .unwrap();
    let done = services.operation("op-1", 0).await.unwrap();
    assert_eq!(done.state, OperationState::Succeeded);
    assert_eq!(done.end_time.as_deref(), Some(NOW));
    let service = services.service("svc").await.unwrap();
    assert_eq!(
        (service.state, service.serving_revision),
        (ServiceState::Healthy, Some(1))
    );

    assert!(matches!(
        services
            .change_service(update("svc", "op-x", 7, &["m:2"]))
            .await,
        Err(StoreError::Moved { now: Some(1), .. })
    ));
    let updated = services
        .change_service(update("svc", "op-2", 1, &["m:2"]))
        .await
        .unwrap();
    assert_eq!(updated.target_revision, Some(2));
    services
        .finish_operation(
            "op-2",
            OperationOutcome::Failed(failure("CrashLoopBackOff")),
            NOW,
        )
        .await
        .unwrap();
    let failed = services.operation("op-2", 0).await.unwrap();
    assert_eq!(failed.state, OperationState::Failed);
    assert_eq!(failed.error.unwrap().code, "CrashLoopBackOff");
    let service = services.service("svc").await.unwrap();
    assert_eq!(
        (
            service.state,
            service.serving_revision,
            service.latest_revision
        ),
        (ServiceState::Failed, Some(1), 2)
    );
    assert_eq!(service.error.unwrap().output, vec!["line"]);

    // A rollback rolls out an existing revision without writing one.
    let rollback = ServiceChange {
        kind: OperationType::Rollback,
        new_revision: None,
        target: Some(1),
        description: Some("back".into()),
        ..update("svc", "op-3", 1, &[])
    };
    assert_eq!(
        services
            .change_service(rollback)
            .await
            .unwrap()
            .target_revision,
        Some(1)
    );
    services
        .finish_operation(
            "op-3",
            OperationOutcome::Succeeded {
                serving_revision: 1,
            },
            NOW,
        )
        .await
        .unwrap();
    let service = services.service("svc").await.unwrap();
    assert_eq!(
        (
            service.state,
            service.latest_revision,
            service.error.is_none()
        ),
        (ServiceState::Healthy, 2, true)
    );
    assert_eq!(service.description.as_deref(), Some("back"));
    let missing = ServiceChange {
        kind: OperationType::Rollback,
        new_revision: None,
        target: Some(9),
        ..update("svc", "op-x", 1, &[])
    };
    assert!(matches!(
        services.change_service(missing).await,
        Err(StoreError::RevisionNotFound { revision: 9, .. })
    ));

    // Staging writes a revision without an operation.
    assert_eq!(
        services
            .stage_revision("svc", &spec(&["m:3"]), 2, NOW)
            .await
            .unwrap(),
        3
    );
    assert!(matches!(
        services
            .stage_revision("svc", &spec(&["m:3"]), 2, NOW)
            .await,
        Err(StoreError::Moved { .. })
    ));
    let revisions = services.revisions("svc").await.unwrap();
    assert_eq!(
        revisions
            .iter()
            .map(|(n, _, s)| (*n, s.models.clone()))
            .collect::<Vec<_>>(),
        vec![
            (1, vec!["m:1".to_owned()]),
            (2, vec!["m:2".to_owned()]),
            (3, vec!["m:3".to_owned()])
        ]
    );
    assert_eq!(
        services.revision("svc", 2).await.unwrap().models,
        vec!["m:2"]
    );

    // Observed states apply only to a serving service.
    services
        .set_service_state("svc", ServiceState::Unhealthy)
        .await
        .unwrap();
    assert_eq!(
        services.service("svc").await.unwrap().state,
        ServiceState::Unhealthy
    );

    // A key change completes without changing the serving revision.
    let keys = ServiceChange {
        kind: OperationType::RegenerateKey,
        new_revision: None,
        target: None,
        keys: Some(berth_api::ServiceKeys {
            primary_key: "n1".into(),
            secondary_key: "n2".into(),
        }),
        ..update("svc", "op-4", 1, &[])
    };
    services.change_service(keys).await.unwrap();
    services
        .finish_operation("op-4", OperationOutcome::Completed, NOW)
        .await
        .unwrap();
    let service = services.service("svc").await.unwrap();
    assert_eq!(
        (service.state, service.keys.primary_key.as_str()),
        (ServiceState::Healthy, "n1")
    );

    services.start_delete("svc", "op-5", NOW).await.unwrap();
    services
        .finish_operation("op-5", OperationOutcome::Deleted, NOW)
        .await
        .unwrap();
    assert!(matches!(
        services.service("svc").await,
        Err(StoreError::ServiceNotFound(_))
    ));
    assert!(services.list_services().await.unwrap().is_empty());
    assert_eq!(
        services.operation("op-5", 0).await.unwrap().state,
        OperationState::Succeeded,
        "the operation outlives its service"
    );
}

async fn traffic_rollouts_and_interrupted_operations(subject: Subject) {
    let services = &subject.stores.services;
    for name in ["a", "b"] {
        services
            .create_service(new_service(name, &format!("{name}-1"), spec(&["m:1"])))
            .await
            .unwrap();
        services
            .finish_operation(
                &format!("{name}-1"),
                OperationOutcome::Succeeded {
                    serving_revision: 1,
                },
                NOW,
            )
            .await
            .unwrap();
        services
            .change_service(update(name, &format!("{name}-2"), 1, &["m:2"]))
            .await
            .unwrap();
    }
    // `a` is interrupted mid-rollout with the candidate exposed, `b` before.
    let rollout: crate::store::StoredRollout = serde_json::from_value(serde_json::json!({
        "status": {
            "operationId": "a-2", "strategy": "canary", "candidate": 2, "baseline": 1, "step": 1, "steps": 1,
            "weights": {"1": 90, "2": 10}, "phase": "Baking", "gates": []
        },
        "progress": {"exposed": true}
    }))
    .unwrap_or_else(|e| panic!("rollout fixture: {e}"));
    services.set_rollout("a-2", &rollout).await.unwrap();
    let shown = services.operation("a-2", 0).await.unwrap();
    assert_eq!(shown.rollout.unwrap().candidate, 2);
    match services
        .change_service(update("a", "a-x", 1, &["m:3"]))
        .await
    {
        Err(StoreError::OperationInProgress { kind, .. }) => {
            assert!(kind.contains("canary rollout of revision 2"), "{kind}")
        }
        other => panic!("expected OperationInProgress, got {other:?}"),
    }
    fn exposed(r: &crate::store::StoredRollout) -> bool {
        r.progress["exposed"] == true
    }
    let ended = services
        .fail_interrupted_operations(NOW, exposed)
        .await
        .unwrap();
    let mut states: Vec<(String, OperationState)> =
        ended.iter().map(|o| (o.id.clone(), o.state)).collect();
    states.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        states,
        vec![
            ("a-2".to_owned(), OperationState::RolledBack),
            ("b-2".to_owned(), OperationState::Failed)
        ]
    );
    assert_eq!(
        services.service("a").await.unwrap().state,
        ServiceState::Healthy
    );
    let b = services.service("b").await.unwrap();
    assert_eq!(
        (b.state, b.serving_revision),
        (ServiceState::Failed, Some(1))
    );
    assert!(
        services
            .fail_interrupted_operations(NOW, exposed)
            .await
            .unwrap()
            .is_empty()
    );

    let split = vec![
        TrafficShare {
            revision: 1,
            weight: 70,
            role: "stable".into(),
            name: None,
        },
        TrafficShare {
            revision: 2,
            weight: 30,
            role: "split".into(),
            name: Some("blue".into()),
        },
    ];
    let op = services
        .start_traffic_change("a", "a-3", &split, NOW)
        .await
        .unwrap();
    assert_eq!(
        (op.operation_type, op.target_revision),
        (OperationType::Traffic, Some(1))
    );
    assert_eq!(services.requested_traffic("a-3").await.unwrap(), split);
    assert!(services.requested_traffic("a-1").await.unwrap().is_empty());
    services
        .finish_operation(
            "a-3",
            OperationOutcome::Split {
                serving_revision: 1,
                traffic: split.clone(),
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(services.service("a").await.unwrap().traffic, Some(split));

    services
        .change_service(update("a", "a-4", 1, &["m:3"]))
        .await
        .unwrap();
    services
        .finish_operation(
            "a-4",
            OperationOutcome::RolledBack(failure("GateFailed")),
            NOW,
        )
        .await
        .unwrap();
    let a = services.service("a").await.unwrap();
    assert_eq!(
        (a.state, a.serving_revision),
        (ServiceState::Healthy, Some(1))
    );
    assert_eq!(
        services.operation("a-4", 0).await.unwrap().state,
        OperationState::RolledBack
    );
}

async fn services_hold_the_models_they_use(subject: Subject) {
    let store = &subject.stores.store;
    let services = &subject.stores.services;
    store
        .insert_model(test_model("m", "sha256:01"))
        .await
        .unwrap();
    store
        .insert_model(test_model("m", "sha256:02"))
        .await
        .unwrap();
    services
        .create_service(new_service("svc", "op-1", spec(&["m:1"])))
        .await
        .unwrap();
    match store.delete_model("m", 1).await {
        Err(StoreError::ModelInUse { id, services }) => {
            assert_eq!((id.as_str(), services), ("m:1", vec!["svc".to_owned()]))
        }
        other => panic!("expected ModelInUse, got {other:?}"),
    }
    assert_eq!(
        store.model("m", Some(1)).await.unwrap().used_by,
        vec!["svc"]
    );
    services
        .finish_operation(
            "op-1",
            OperationOutcome::Succeeded {
                serving_revision: 1,
            },
            NOW,
        )
        .await
        .unwrap();
    services
        .change_service(update("svc", "op-2", 1, &["m:2"]))
        .await
        .unwrap();
    services
        .finish_operation(
            "op-2",
            OperationOutcome::Succeeded {
                serving_revision: 2,
            },
            NOW,
        )
        .await
        .unwrap();
    assert!(store.model("m", Some(1)).await.unwrap().used_by.is_empty());
    store.delete_model("m", 1).await.unwrap();
    assert!(matches!(
        store.delete_model("m", 2).await,
        Err(StoreError::ModelInUse { .. })
    ));
}
