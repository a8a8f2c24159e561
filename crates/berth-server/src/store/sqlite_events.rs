//! SQLite implementation of [`EventStore`].

use async_trait::async_trait;
use berth_api::{Event, Webhook};
use rusqlite::params;

use super::events::{DeliveryRecord, EventQuery, EventStore, NewEvent, NewWebhook, StoredWebhook};
use super::sqlite::db;
use super::{Result, SqliteStore, corrupt};

const WEBHOOK_COLUMNS: &str = "id, url, events, secret, created_time, last_status, last_time, \
     last_error, consecutive_failures, delivered_through";

type RawEvent = (u64, String, String, Option<String>, Option<String>, String);

fn finish_event(raw: RawEvent) -> Result<Event> {
    let (id, time, event_type, service, operation, data) = raw;
    Ok(Event {
        id,
        event_type,
        time,
        service,
        operation,
        data: serde_json::from_str(&data).map_err(corrupt("event data"))?,
    })
}

type RawWebhook = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    u32,
    u64,
);

fn finish_webhook(raw: RawWebhook) -> Result<StoredWebhook> {
    let (id, url, events, secret, created_time, status, time, error, failures, through) = raw;
    Ok(StoredWebhook {
        webhook: Webhook {
            id,
            url,
            events: serde_json::from_str(&events).map_err(corrupt("webhook events"))?,
            created_time,
            last_delivery_status: status,
            last_delivery_time: time,
            last_error: error,
            consecutive_failures: failures,
        },
        secret,
        delivered_through: through,
    })
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn insert_events(&self, events: Vec<NewEvent>, keep: u64) -> Result<Vec<Event>> {
        self.write(move |conn| {
            let tx = conn.transaction().map_err(db("begin event insert"))?;
            let mut out = Vec::with_capacity(events.len());
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO events (time, type, service, operation, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .map_err(db("prepare event insert"))?;
                for event in events {
                    stmt.execute(params![
                        event.time,
                        event.event_type,
                        event.service,
                        event.operation,
                        event.data.to_string()
                    ])
                    .map_err(db("insert event"))?;
                    out.push(Event {
                        id: tx.last_insert_rowid() as u64,
                        event_type: event.event_type,
                        time: event.time,
                        service: event.service,
                        operation: event.operation,
                        data: event.data,
                    });
                }
            }
            if let Some(last) = out.last()
                && last.id > keep
            {
                tx.execute("DELETE FROM events WHERE id <= ?1", params![last.id - keep])
                    .map_err(db("prune events"))?;
            }
            tx.commit().map_err(db("commit events"))?;
            Ok(out)
        })
        .await
    }

    async fn events(&self, query: EventQuery) -> Result<Vec<Event>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, time, type, service, operation, data FROM events \
                     WHERE id > ?1 AND (?2 IS NULL OR service = ?2) AND (?3 IS NULL OR type = ?3) \
                     ORDER BY id LIMIT ?4",
                )
                .map_err(db("prepare event list"))?;
            let rows = stmt
                .query_map(
                    params![
                        query.after as i64,
                        query.service,
                        query.event_type,
                        query.limit as i64
                    ],
                    |row| RawEvent::try_from(row),
                )
                .map_err(db("list events"))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(finish_event(row.map_err(db("list events"))?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn insert_webhook(&self, new: NewWebhook) -> Result<Webhook> {
        self.write(move |conn| {
            let events = serde_json::to_string(&new.events).map_err(corrupt("webhook events"))?;
            conn.execute(
                "INSERT INTO webhooks (id, url, events, secret, created_time, delivered_through) \
                 VALUES (?1, ?2, ?3, ?4, ?5, (SELECT COALESCE(MAX(id), 0) FROM events))",
                params![new.id, new.url, events, new.secret, new.created_time],
            )
            .map_err(db("insert webhook"))?;
            Ok(Webhook {
                id: new.id,
                url: new.url,
                events: new.events,
                created_time: new.created_time,
                last_delivery_status: None,
                last_delivery_time: None,
                last_error: None,
                consecutive_failures: 0,
            })
        })
        .await
    }

    async fn webhooks(&self) -> Result<Vec<StoredWebhook>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY created_time, id"
                ))
                .map_err(db("prepare webhook list"))?;
            let rows = stmt
                .query_map([], |row| RawWebhook::try_from(row))
                .map_err(db("list webhooks"))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(finish_webhook(row.map_err(db("list webhooks"))?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |conn| {
            let n = conn
                .execute("DELETE FROM webhooks WHERE id = ?1", params![id])
                .map_err(db("delete webhook"))?;
            Ok(n > 0)
        })
        .await
    }

    async fn record_delivery(&self, id: &str, record: DeliveryRecord) -> Result<()> {
        let id = id.to_owned();
        self.write(move |conn| {
            conn.execute(
                "UPDATE webhooks SET last_status = ?1, last_time = ?2, last_error = ?3, \
                 consecutive_failures = ?4, delivered_through = MAX(delivered_through, ?6) \
                 WHERE id = ?5",
                params![
                    record.status,
                    record.time,
                    record.error,
                    record.consecutive_failures,
                    id,
                    record.event_id
                ],
            )
            .map_err(db("record webhook delivery"))?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(kind: &str, service: &str) -> NewEvent {
        NewEvent {
            time: crate::now_rfc3339(),
            event_type: kind.into(),
            service: Some(service.into()),
            operation: None,
            data: serde_json::json!({"k": 1}),
        }
    }

    #[tokio::test]
    async fn events_keep_order_filter_and_stay_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).await.unwrap();
        let batch = vec![
            draft("operation.started", "a"),
            draft("service.state_changed", "b"),
            draft("operation.succeeded", "a"),
        ];
        let written = store.insert_events(batch, 100).await.unwrap();
        assert_eq!(
            written.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        let only_a = store
            .events(EventQuery {
                service: Some("a".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(only_a.iter().map(|e| e.id).collect::<Vec<_>>(), vec![1, 3]);
        let after = store
            .events(EventQuery {
                after: 1,
                event_type: Some("operation.succeeded".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].data["k"], 1);
        store
            .insert_events(vec![draft("model.registered", "c")], 2)
            .await
            .unwrap();
        let all = store
            .events(EventQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), vec![3, 4]);
    }
}
