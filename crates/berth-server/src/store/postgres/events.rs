//! PostgreSQL implementation of [`EventStore`]. Appends hold a transaction
//! advisory lock, so ids commit in increasing order on every server.

use async_trait::async_trait;
use berth_api::{Event, Webhook};

use super::{EVENT_LOCK, PgStore, col, corrupt, db, i64_of, u32_of, u64_of};
use crate::store::{
    DeliveryRecord, EventQuery, EventStore, NewEvent, NewWebhook, Result, StoredWebhook,
};

const WEBHOOK_COLUMNS: &str = "id, url, events, secret, created_time, last_status, last_time, \
     last_error, consecutive_failures, delivered_through";

fn event_of(row: &tokio_postgres::Row) -> Result<Event> {
    let data: String = col(row, 5)?;
    Ok(Event {
        id: u64_of(col(row, 0)?, "event id")?,
        time: col(row, 1)?,
        event_type: col(row, 2)?,
        service: col(row, 3)?,
        operation: col(row, 4)?,
        data: serde_json::from_str(&data).map_err(corrupt("event data"))?,
    })
}

fn webhook_of(row: &tokio_postgres::Row) -> Result<StoredWebhook> {
    let events: String = col(row, 2)?;
    Ok(StoredWebhook {
        webhook: Webhook {
            id: col(row, 0)?,
            url: col(row, 1)?,
            events: serde_json::from_str(&events).map_err(corrupt("webhook events"))?,
            created_time: col(row, 4)?,
            last_delivery_status: col(row, 5)?,
            last_delivery_time: col(row, 6)?,
            last_error: col(row, 7)?,
            consecutive_failures: u32_of(col(row, 8)?, "consecutive failures")?,
        },
        secret: col(row, 3)?,
        delivered_through: u64_of(col(row, 9)?, "delivered through")?,
    })
}

#[async_trait]
impl EventStore for PgStore {
    async fn insert_events(&self, events: Vec<NewEvent>, keep: u64) -> Result<Vec<Event>> {
        let mut conn = self.conn().await?;
        let tx = super::client_mut(&mut conn)
            .transaction()
            .await
            .map_err(db("begin event insert"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&EVENT_LOCK])
            .await
            .map_err(db("take the event lock"))?;
        let insert = tx
            .prepare(
                "INSERT INTO events (time, type, service, operation, data) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .await
            .map_err(db("prepare event insert"))?;
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            let row = tx
                .query_one(
                    &insert,
                    &[
                        &event.time,
                        &event.event_type,
                        &event.service,
                        &event.operation,
                        &event.data.to_string(),
                    ],
                )
                .await
                .map_err(db("insert event"))?;
            out.push(Event {
                id: u64_of(col(&row, 0)?, "event id")?,
                event_type: event.event_type,
                time: event.time,
                service: event.service,
                operation: event.operation,
                data: event.data,
            });
        }
        if let Some(last) = out.last()
            && last.id > keep
        {
            tx.execute(
                "DELETE FROM events WHERE id <= $1",
                &[&i64_of(last.id - keep)],
            )
            .await
            .map_err(db("prune events"))?;
        }
        tx.commit().await.map_err(db("commit events"))?;
        Ok(out)
    }

    async fn events(&self, query: EventQuery) -> Result<Vec<Event>> {
        let conn = self.conn().await?;
        conn.query(
            "SELECT id, time, type, service, operation, data FROM events \
             WHERE id > $1 AND ($2::TEXT IS NULL OR service = $2) AND ($3::TEXT IS NULL OR type = $3) \
             ORDER BY id LIMIT $4",
            &[
                &i64_of(query.after),
                &query.service,
                &query.event_type,
                &i64_of(query.limit as u64),
            ],
        )
        .await
        .map_err(db("list events"))?
        .iter()
        .map(event_of)
        .collect()
    }

    async fn insert_webhook(&self, new: NewWebhook) -> Result<Webhook> {
        let events = serde_json::to_string(&new.events).map_err(corrupt("webhook events"))?;
        let mut conn = self.conn().await?;
        let tx = super::client_mut(&mut conn)
            .transaction()
            .await
            .map_err(db("begin webhook insert"))?;
        // Under the event lock: the cursor starts after every committed event.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&EVENT_LOCK])
            .await
            .map_err(db("take the event lock"))?;
        tx.execute(
            "INSERT INTO webhooks (id, url, events, secret, created_time, delivered_through) \
             VALUES ($1, $2, $3, $4, $5, (SELECT COALESCE(MAX(id), 0) FROM events))",
            &[&new.id, &new.url, &events, &new.secret, &new.created_time],
        )
        .await
        .map_err(db("insert webhook"))?;
        tx.commit().await.map_err(db("commit webhook insert"))?;
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
    }

    async fn webhooks(&self) -> Result<Vec<StoredWebhook>> {
        let conn = self.conn().await?;
        conn.query(
            &format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY created_time, id"),
            &[],
        )
        .await
        .map_err(db("list webhooks"))?
        .iter()
        .map(webhook_of)
        .collect()
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool> {
        let conn = self.conn().await?;
        let n = conn
            .execute("DELETE FROM webhooks WHERE id = $1", &[&id])
            .await
            .map_err(db("delete webhook"))?;
        Ok(n > 0)
    }

    async fn record_delivery(&self, id: &str, record: DeliveryRecord) -> Result<()> {
        let conn = self.conn().await?;
        conn.execute(
            "UPDATE webhooks SET last_status = $1, last_time = $2, last_error = $3, \
             consecutive_failures = $4, delivered_through = GREATEST(delivered_through, $6) \
             WHERE id = $5",
            &[
                &record.status,
                &record.time,
                &record.error,
                &i64::from(record.consecutive_failures),
                &id,
                &i64_of(record.event_id),
            ],
        )
        .await
        .map_err(db("record webhook delivery"))?;
        Ok(())
    }
}
