//! Conformance of [`ClusterStore`]: settings created once under concurrency,
//! the leader lease (two holders, expiry on the database's clock, renewal after
//! loss refused) and fencing (a stale fencing number's writes refused inside
//! their transaction, with nothing written).

use std::time::Duration;

use berth_api::OperationState;

use super::{Subject, conformance, new_service, spec};
use crate::store::{Fence, LEADER_LEASE, OperationOutcome, StoreError};

conformance! {
    shared_settings_are_created_once => shared_settings_are_created_once_sqlite, shared_settings_are_created_once_postgres;
    one_holder_at_a_time_until_expiry => one_holder_at_a_time_until_expiry_sqlite, one_holder_at_a_time_until_expiry_postgres;
    a_stale_fence_cannot_write => a_stale_fence_cannot_write_sqlite, a_stale_fence_cannot_write_postgres;
    routes_are_published_in_order_by_the_leader_only => routes_are_published_in_order_by_the_leader_only_sqlite, routes_are_published_in_order_by_the_leader_only_postgres;
}

const LONG: Duration = Duration::from_secs(30);
const SHORT: Duration = Duration::from_millis(300);

/// Sleeps past `SHORT` so a lease taken for it has expired on any clock.
async fn past_expiry() {
    tokio::time::sleep(SHORT * 2).await;
}

async fn shared_settings_are_created_once(subject: Subject) {
    let cluster = subject.stores.cluster.clone();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let cluster = cluster.clone();
            tokio::spawn(async move {
                cluster
                    .setting_or_insert("workspace_token", &format!("token-{i}"))
                    .await
            })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap().unwrap());
    }
    seen.dedup();
    assert_eq!(seen.len(), 1, "every server got the same value: {seen:?}");
    let stored = subject
        .stores
        .store
        .setting("workspace_token")
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some(seen[0].as_str()));
    let subject = subject.reopen().await;
    assert_eq!(
        subject
            .stores
            .cluster
            .setting_or_insert("workspace_token", "late")
            .await
            .unwrap(),
        seen[0],
        "a later server reads the first value"
    );
}

async fn one_holder_at_a_time_until_expiry(subject: Subject) {
    let cluster = &subject.stores.cluster;
    assert_eq!(cluster.lease(LEADER_LEASE).await.unwrap(), None);
    let a = cluster.try_acquire(LEADER_LEASE, "a", SHORT).await.unwrap();
    assert!(a.held_by("a"), "{a:?}");
    assert_eq!(a.fence, 1);
    let b = cluster.try_acquire(LEADER_LEASE, "b", LONG).await.unwrap();
    assert!(!b.held_by("b") && b.held_by("a"), "a holds it: {b:?}");
    assert_eq!(b.fence, 1);
    assert!(cluster.renew(LEADER_LEASE, "a", 1, SHORT).await.unwrap());
    assert!(
        !cluster.renew(LEADER_LEASE, "b", 1, SHORT).await.unwrap(),
        "only the holder renews"
    );

    past_expiry().await;
    let expired = cluster.lease(LEADER_LEASE).await.unwrap().unwrap();
    assert!(!expired.held_by("a"), "expired: {expired:?}");
    assert!(
        !cluster.renew(LEADER_LEASE, "a", 1, LONG).await.unwrap(),
        "a renewal after the expiry fails even before anyone took over"
    );
    let b = cluster.try_acquire(LEADER_LEASE, "b", LONG).await.unwrap();
    assert!(b.held_by("b"), "{b:?}");
    assert_eq!(b.fence, 2, "a change of holder grows the fencing number");
    let again = cluster.try_acquire(LEADER_LEASE, "b", LONG).await.unwrap();
    assert_eq!(again.fence, 2, "the holder re-taking its lease keeps it");
    assert!(
        !cluster.renew(LEADER_LEASE, "a", 1, LONG).await.unwrap(),
        "the old holder's renewal fails after the loss"
    );
    let a = cluster.try_acquire(LEADER_LEASE, "a", LONG).await.unwrap();
    assert!(a.held_by("b"), "b still holds it: {a:?}");

    cluster.release(LEADER_LEASE, "b", 2).await.unwrap();
    let a = cluster.try_acquire(LEADER_LEASE, "a", LONG).await.unwrap();
    assert!(a.held_by("a"), "a released lease is taken at once: {a:?}");
    assert_eq!(a.fence, 3);
}

async fn a_stale_fence_cannot_write(subject: Subject) {
    let cluster = subject.stores.cluster.clone();
    let services = subject.stores.services.clone();
    services
        .create_service(new_service("svc", "op-1", spec(&["m:1"])))
        .await
        .unwrap();

    let old = Fence::new(LEADER_LEASE);
    let old_writer = cluster.fenced_services(old.clone());
    let refused = old_writer.add_event("op-1", 1, "before any lease").await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { fence: 0, .. })),
        "{refused:?}"
    );
    let lease = cluster
        .try_acquire(LEADER_LEASE, "old", SHORT)
        .await
        .unwrap();
    old.set(lease.fence);
    old_writer
        .add_event("op-1", 2, "while leading")
        .await
        .unwrap();

    // The old leader pauses past its expiry; another server takes over.
    past_expiry().await;
    let new = Fence::new(LEADER_LEASE);
    let lease = cluster
        .try_acquire(LEADER_LEASE, "new", LONG)
        .await
        .unwrap();
    assert!(lease.held_by("new"));
    new.set(lease.fence);
    let new_writer = cluster.fenced_services(new);

    for refused in [
        old_writer.add_event("op-1", 3, "stale").await,
        old_writer
            .finish_operation(
                "op-1",
                OperationOutcome::Succeeded {
                    serving_revision: 1,
                },
                "2026-01-01T00:00:02.000Z",
            )
            .await,
        old_writer
            .fail_interrupted_operations("2026-01-01T00:00:02.000Z", |_| false)
            .await
            .map(drop),
        old_writer
            .set_service_state("svc", berth_api::ServiceState::Healthy)
            .await,
    ] {
        assert!(
            matches!(
                &refused,
                Err(StoreError::Fenced {
                    lease: LEADER_LEASE,
                    fence: 1
                })
            ),
            "{refused:?}"
        );
    }
    let op = services.operation("op-1", 0).await.unwrap();
    assert_eq!(
        op.state,
        OperationState::Running,
        "the stale end was not written"
    );
    assert!(
        op.events.iter().all(|e| e.message != "stale"),
        "the stale log line was not written: {:?}",
        op.events
    );
    assert!(op.events.iter().any(|e| e.message == "while leading"));

    new_writer
        .finish_operation(
            "op-1",
            OperationOutcome::Succeeded {
                serving_revision: 1,
            },
            "2026-01-01T00:00:03.000Z",
        )
        .await
        .unwrap();
    assert_eq!(
        services.operation("op-1", 0).await.unwrap().state,
        OperationState::Succeeded
    );
    // Unfenced handles (the management API's) write intent whoever leads.
    assert!(cluster.in_flight_operations().await.unwrap().is_empty());
}

async fn routes_are_published_in_order_by_the_leader_only(subject: Subject) {
    let cluster = &subject.stores.cluster;
    let fence = Fence::new(LEADER_LEASE);
    let refused = cluster.publish_route(&fence, "svc", Some("r1")).await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { .. })),
        "{refused:?}"
    );
    let lease = cluster.try_acquire(LEADER_LEASE, "a", LONG).await.unwrap();
    fence.set(lease.fence);
    let v1 = cluster
        .publish_route(&fence, "svc", Some("r1"))
        .await
        .unwrap();
    let v2 = cluster
        .publish_route(&fence, "other", Some("o1"))
        .await
        .unwrap();
    let v3 = cluster.publish_route(&fence, "svc", None).await.unwrap();
    assert!(v1 < v2 && v2 < v3, "{v1} {v2} {v3}");
    let all = cluster.routes_since(0).await.unwrap();
    let seen: Vec<(&str, Option<&str>)> = all
        .iter()
        .map(|r| (r.service.as_str(), r.route.as_deref()))
        .collect();
    assert_eq!(seen, [("other", Some("o1")), ("svc", None)]);
    let after = cluster.routes_since(v2).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!((after[0].service.as_str(), after[0].version), ("svc", v3));

    cluster
        .release(LEADER_LEASE, "a", lease.fence)
        .await
        .unwrap();
    let stale = cluster.publish_route(&fence, "svc", Some("late")).await;
    assert!(matches!(stale, Err(StoreError::Fenced { .. })), "{stale:?}");
    assert!(cluster.routes_since(v3).await.unwrap().is_empty());
}
