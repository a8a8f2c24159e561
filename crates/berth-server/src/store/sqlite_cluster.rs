//! SQLite [`ClusterStore`]: the same lease rules as PostgreSQL's on SQLite's
//! clock (one server per SQLite file, so the lease only matters to the
//! conformance suite and to fenced writes), each step one immediate
//! transaction on the one writer connection.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::cluster::ttl_ms;
use super::sqlite::db;
use super::{
    ClusterStore, Fence, LeaseView, PublishedRoute, Result, ServiceStore, SqliteStore, StoreError,
};

/// The database's clock, Unix milliseconds.
const NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";

/// Refuses the transaction unless `fence` holds its lease now (a no-op for `None`).
pub(super) fn check_fence(conn: &Connection, fence: Option<&Fence>) -> Result<()> {
    let Some(fence) = fence else {
        return Ok(());
    };
    let number = fence.number();
    let held = conn
        .query_row(
            &format!(
                "SELECT 1 FROM berth_leases WHERE name = ?1 AND fence = ?2 AND expires_ms > {NOW_MS}"
            ),
            params![fence.lease(), i64::try_from(number).unwrap_or(i64::MAX)],
            |_| Ok(()),
        )
        .optional()
        .map_err(db("check the fencing number"))?;
    match held {
        Some(()) => Ok(()),
        None => Err(StoreError::Fenced {
            lease: fence.lease(),
            fence: number,
        }),
    }
}

fn read_lease(conn: &Connection, lease: &str) -> Result<Option<LeaseView>> {
    conn.query_row(
        &format!("SELECT holder, fence, expires_ms - {NOW_MS} FROM berth_leases WHERE name = ?1"),
        params![lease],
        |r| {
            Ok(LeaseView {
                holder: r.get(0)?,
                fence: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                expires_in_ms: r.get(2)?,
            })
        },
    )
    .optional()
    .map_err(db("read the lease"))
}

fn begin(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db("begin lease change"))
}

#[async_trait]
impl ClusterStore for SqliteStore {
    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |conn| {
            let tx = begin(conn)?;
            tx.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
                params![key, value],
            )
            .map_err(db("insert setting"))?;
            let stored: String = tx
                .query_row(
                    "SELECT value FROM settings WHERE key = ?1",
                    params![key],
                    |r| r.get(0),
                )
                .map_err(db("read setting"))?;
            tx.commit().map_err(db("commit setting"))?;
            Ok(stored)
        })
        .await
    }

    async fn try_acquire(&self, lease: &str, holder: &str, ttl: Duration) -> Result<LeaseView> {
        let (lease, holder, ttl) = (lease.to_owned(), holder.to_owned(), ttl_ms(ttl));
        self.write(move |conn| {
            let tx = begin(conn)?;
            let current = read_lease(&tx, &lease)?;
            let next_fence = match &current {
                None => Some(1),
                Some(l) if l.held_by(&holder) => Some(l.fence),
                Some(l) if l.expires_in_ms <= 0 => Some(l.fence + 1),
                Some(_) => None,
            };
            if let Some(fence) = next_fence {
                tx.execute(
                    &format!(
                        "INSERT INTO berth_leases (name, holder, fence, expires_ms) VALUES (?1, ?2, ?3, {NOW_MS} + ?4) \
                         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, fence = excluded.fence, expires_ms = excluded.expires_ms"
                    ),
                    params![lease, holder, i64::try_from(fence).unwrap_or(i64::MAX), ttl],
                )
                .map_err(db("take the lease"))?;
            }
            let after = read_lease(&tx, &lease)?.ok_or_else(|| StoreError::Corrupt {
                what: "lease",
                detail: format!("`{lease}` vanished while it was taken"),
            })?;
            tx.commit().map_err(db("commit lease change"))?;
            Ok(after)
        })
        .await
    }

    async fn renew(&self, lease: &str, holder: &str, fence: u64, ttl: Duration) -> Result<bool> {
        let (lease, holder, ttl) = (lease.to_owned(), holder.to_owned(), ttl_ms(ttl));
        let fence = i64::try_from(fence).unwrap_or(i64::MAX);
        self.write(move |conn| {
            conn.execute(
                &format!(
                    "UPDATE berth_leases SET expires_ms = {NOW_MS} + ?4 \
                     WHERE name = ?1 AND holder = ?2 AND fence = ?3 AND expires_ms > {NOW_MS}"
                ),
                params![lease, holder, fence, ttl],
            )
            .map(|n| n == 1)
            .map_err(db("renew the lease"))
        })
        .await
    }

    async fn release(&self, lease: &str, holder: &str, fence: u64) -> Result<()> {
        let (lease, holder) = (lease.to_owned(), holder.to_owned());
        let fence = i64::try_from(fence).unwrap_or(i64::MAX);
        self.write(move |conn| {
            conn.execute(
                &format!(
                    "UPDATE berth_leases SET expires_ms = {NOW_MS} \
                     WHERE name = ?1 AND holder = ?2 AND fence = ?3 AND expires_ms > {NOW_MS}"
                ),
                params![lease, holder, fence],
            )
            .map(drop)
            .map_err(db("release the lease"))
        })
        .await
    }

    async fn lease(&self, lease: &str) -> Result<Option<LeaseView>> {
        let lease = lease.to_owned();
        self.read(move |conn| read_lease(conn, &lease)).await
    }

    async fn in_flight_operations(&self) -> Result<Vec<String>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT id FROM operations WHERE state IN ('NotStarted', 'Running') ORDER BY created_time, id",
                )
                .map_err(db("list operations in flight"))?;
            let rows = stmt
                .query_map([], |r| r.get(0))
                .map_err(db("list operations in flight"))?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
                .map_err(db("list operations in flight"))
        })
        .await
    }

    fn fenced_services(&self, fence: Arc<Fence>) -> Arc<dyn ServiceStore> {
        Arc::new(Self {
            inner: self.inner.clone(),
            fence: Some(fence),
        })
    }

    async fn publish_route(
        &self,
        fence: &Fence,
        service: &str,
        route: Option<&str>,
    ) -> Result<u64> {
        let (service, route) = (service.to_owned(), route.map(str::to_owned));
        let held = Fence::new(fence.lease());
        held.set(fence.number());
        self.write(move |conn| {
            let tx = begin(conn)?;
            check_fence(&tx, Some(&held))?;
            let version: i64 = tx
                .query_row(
                    "INSERT INTO berth_routes (service, route, version) \
                     VALUES (?1, ?2, (SELECT COALESCE(MAX(version), 0) + 1 FROM berth_routes)) \
                     ON CONFLICT (service) DO UPDATE SET route = excluded.route, version = excluded.version \
                     RETURNING version",
                    params![service, route],
                    |r| r.get(0),
                )
                .map_err(db("publish the route"))?;
            tx.commit().map_err(db("commit route publication"))?;
            Ok(u64::try_from(version).unwrap_or(0))
        })
        .await
    }

    async fn routes_since(&self, after: u64) -> Result<Vec<PublishedRoute>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT service, route, version FROM berth_routes WHERE version > ?1 ORDER BY version",
                )
                .map_err(db("read published routes"))?;
            let rows = stmt
                .query_map(params![after], |r| {
                    Ok(PublishedRoute {
                        service: r.get(0)?,
                        route: r.get(1)?,
                        version: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                    })
                })
                .map_err(db("read published routes"))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db("read published routes"))
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        self.read(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(db("ping"))
        })
        .await
    }
}
