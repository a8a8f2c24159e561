//! Conformance of [`EventStore`]: event order, filters and the bound, and
//! webhook delivery cursors.

use super::{Subject, conformance};
use crate::store::{DeliveryRecord, EventQuery, NewEvent, NewWebhook};

conformance! {
    events_keep_order_filter_and_stay_bounded => events_keep_order_filter_and_stay_bounded_sqlite, events_keep_order_filter_and_stay_bounded_postgres;
    webhook_cursors_start_after_existing_events_and_only_advance => webhook_cursors_start_after_existing_events_and_only_advance_sqlite, webhook_cursors_start_after_existing_events_and_only_advance_postgres;
}

fn draft(kind: &str, service: &str) -> NewEvent {
    NewEvent {
        time: "2026-01-01T00:00:00.000Z".into(),
        event_type: kind.into(),
        service: Some(service.into()),
        operation: Some("op".into()),
        data: serde_json::json!({"k": 1}),
    }
}

fn all() -> EventQuery {
    EventQuery {
        limit: 100,
        ..Default::default()
    }
}

async fn events_keep_order_filter_and_stay_bounded(subject: Subject) {
    let events = &subject.stores.events;
    let batch = vec![
        draft("operation.started", "a"),
        draft("service.state_changed", "b"),
        draft("operation.succeeded", "a"),
    ];
    let written = events.insert_events(batch, 100).await.unwrap();
    let ids: Vec<u64> = written.iter().map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let only_a = events
        .events(EventQuery {
            service: Some("a".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        only_a.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids[0], ids[2]]
    );
    let after = events
        .events(EventQuery {
            after: ids[0],
            event_type: Some("operation.succeeded".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].data["k"], 1);
    assert_eq!(after[0].operation.as_deref(), Some("op"));
    let limited = events
        .events(EventQuery {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        limited.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids[..2].to_vec()
    );
    let newest = events
        .insert_events(vec![draft("model.registered", "c")], 2)
        .await
        .unwrap();
    let kept: Vec<u64> = events
        .events(all())
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        kept,
        vec![ids[2], newest[0].id],
        "only the newest `keep` stay"
    );

    // Concurrent batches: ids are unique and every batch is in order.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let events = events.clone();
        tasks.push(tokio::spawn(async move {
            events
                .insert_events(
                    vec![draft("x", &format!("s{i}")), draft("y", &format!("s{i}"))],
                    1000,
                )
                .await
                .unwrap()
        }));
    }
    let mut seen = Vec::new();
    for task in tasks {
        let batch = task.await.unwrap();
        assert!(batch[0].id < batch[1].id);
        seen.extend(batch.into_iter().map(|e| e.id));
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 20);
    assert_eq!(events.events(all()).await.unwrap().len(), 22);
}

fn webhook(id: &str) -> NewWebhook {
    NewWebhook {
        id: id.into(),
        url: "https://example.com/hook".into(),
        events: vec!["*".into()],
        secret: "s3cret".into(),
        created_time: format!("2026-01-01T00:00:0{}.000Z", id.len()),
    }
}

async fn webhook_cursors_start_after_existing_events_and_only_advance(subject: Subject) {
    let events = &subject.stores.events;
    let written = events
        .insert_events(vec![draft("a", "s"), draft("b", "s")], 100)
        .await
        .unwrap();
    let shown = events.insert_webhook(webhook("wh-1")).await.unwrap();
    assert_eq!((shown.id.as_str(), shown.consecutive_failures), ("wh-1", 0));
    let stored = events.webhooks().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].secret, "s3cret");
    assert_eq!(stored[0].webhook.events, vec!["*"]);
    assert_eq!(
        stored[0].delivered_through, written[1].id,
        "owed only newer events"
    );

    let later = events
        .insert_events(vec![draft("c", "s")], 100)
        .await
        .unwrap();
    events
        .record_delivery(
            "wh-1",
            DeliveryRecord {
                event_id: later[0].id,
                status: "failed",
                time: "t1".into(),
                error: Some("503".into()),
                consecutive_failures: 3,
            },
        )
        .await
        .unwrap();
    events
        .record_delivery(
            "wh-1",
            DeliveryRecord {
                event_id: written[0].id,
                status: "delivered",
                time: "t2".into(),
                error: None,
                consecutive_failures: 0,
            },
        )
        .await
        .unwrap();
    let stored = &events.webhooks().await.unwrap()[0];
    assert_eq!(
        stored.delivered_through, later[0].id,
        "the cursor never moves back"
    );
    assert_eq!(
        (
            stored.webhook.last_delivery_status.as_deref(),
            stored.webhook.last_delivery_time.as_deref(),
            stored.webhook.last_error.as_deref(),
            stored.webhook.consecutive_failures
        ),
        (Some("delivered"), Some("t2"), None, 0)
    );
    events.insert_webhook(webhook("wh-22")).await.unwrap();
    let ids: Vec<String> = events
        .webhooks()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.webhook.id)
        .collect();
    assert_eq!(ids, vec!["wh-1", "wh-22"]);
    assert!(events.delete_webhook("wh-1").await.unwrap());
    assert!(!events.delete_webhook("wh-1").await.unwrap());
    assert_eq!(events.webhooks().await.unwrap().len(), 1);
}
