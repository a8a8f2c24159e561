//! PostgreSQL [`ClusterStore`]: settings inserted if absent, the lease row
//! taken with one upsert on the database's clock (`now()`), and the fence check
//! every fenced write runs first in its transaction (`FOR SHARE` on the lease
//! row, so a change of holder waits for the write to commit, or the write sees
//! the new holder and is refused).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_postgres::GenericClient;

use super::{PgStore, col, db, u64_of};
use crate::store::cluster::ttl_ms;
use crate::store::{
    ClusterStore, Fence, LeaseView, PublishedRoute, Result, ServiceStore, StoreError,
};

const VIEW: &str = "holder, fence, (EXTRACT(EPOCH FROM (expires_at - now())) * 1000)::BIGINT";

fn view(row: &tokio_postgres::Row) -> Result<LeaseView> {
    Ok(LeaseView {
        holder: col(row, 0)?,
        fence: u64_of(col(row, 1)?, "lease fence")?,
        expires_in_ms: col(row, 2)?,
    })
}

/// Advisory lock key serialising route publications, so versions commit in
/// order and a follower reading "after version N" never skips one.
const ROUTE_LOCK: i64 = 0x6265_7274_6803;

impl PgStore {
    /// Refuses the transaction unless this handle's fence holds its lease now
    /// (a no-op for an unfenced handle).
    pub(super) async fn check_fence(&self, tx: &impl GenericClient) -> Result<()> {
        match &self.fence {
            Some(fence) => check(tx, fence).await,
            None => Ok(()),
        }
    }
}

/// Refuses the transaction unless `fence` holds its lease now.
async fn check(tx: &impl GenericClient, fence: &Fence) -> Result<()> {
    let number = fence.number();
    let held = tx
            .query_opt(
                "SELECT 1 FROM berth_leases WHERE name = $1 AND fence = $2 AND expires_at > now() FOR SHARE",
                &[&fence.lease(), &super::i64_of(number)],
            )
            .await
            .map_err(db("check the fencing number"))?;
    match held {
        Some(_) => Ok(()),
        None => Err(StoreError::Fenced {
            lease: fence.lease(),
            fence: number,
        }),
    }
}

#[async_trait]
impl ClusterStore for PgStore {
    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String> {
        let conn = self.conn().await?;
        conn.execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            &[&key, &value],
        )
        .await
        .map_err(db("insert setting"))?;
        let row = conn
            .query_one("SELECT value FROM settings WHERE key = $1", &[&key])
            .await
            .map_err(db("read setting"))?;
        col(&row, 0)
    }

    async fn try_acquire(&self, lease: &str, holder: &str, ttl: Duration) -> Result<LeaseView> {
        let conn = self.conn().await?;
        let taken = conn
            .query_opt(
                &format!(
                    "INSERT INTO berth_leases AS l (name, holder, fence, expires_at) \
                     VALUES ($1, $2, 1, now() + $3::float8 * interval '1 millisecond') \
                     ON CONFLICT (name) DO UPDATE SET \
                        fence = CASE WHEN l.holder = excluded.holder AND l.expires_at > now() \
                                THEN l.fence ELSE l.fence + 1 END, \
                        holder = excluded.holder, expires_at = excluded.expires_at \
                     WHERE l.holder = excluded.holder OR l.expires_at <= now() \
                     RETURNING {VIEW}"
                ),
                &[&lease, &holder, &(ttl_ms(ttl) as f64)],
            )
            .await
            .map_err(db("take the lease"))?;
        if let Some(row) = taken {
            return view(&row);
        }
        let row = conn
            .query_one(
                &format!("SELECT {VIEW} FROM berth_leases WHERE name = $1"),
                &[&lease],
            )
            .await
            .map_err(db("read the lease"))?;
        view(&row)
    }

    async fn renew(&self, lease: &str, holder: &str, fence: u64, ttl: Duration) -> Result<bool> {
        let conn = self.conn().await?;
        let n = conn
            .execute(
                "UPDATE berth_leases SET expires_at = now() + $4::float8 * interval '1 millisecond' \
                 WHERE name = $1 AND holder = $2 AND fence = $3 AND expires_at > now()",
                &[&lease, &holder, &super::i64_of(fence), &(ttl_ms(ttl) as f64)],
            )
            .await
            .map_err(db("renew the lease"))?;
        Ok(n == 1)
    }

    async fn release(&self, lease: &str, holder: &str, fence: u64) -> Result<()> {
        let conn = self.conn().await?;
        conn.execute(
            "UPDATE berth_leases SET expires_at = now() \
             WHERE name = $1 AND holder = $2 AND fence = $3 AND expires_at > now()",
            &[&lease, &holder, &super::i64_of(fence)],
        )
        .await
        .map_err(db("release the lease"))?;
        Ok(())
    }

    async fn lease(&self, lease: &str) -> Result<Option<LeaseView>> {
        let conn = self.conn().await?;
        conn.query_opt(
            &format!("SELECT {VIEW} FROM berth_leases WHERE name = $1"),
            &[&lease],
        )
        .await
        .map_err(db("read the lease"))?
        .map(|row| view(&row))
        .transpose()
    }

    async fn in_flight_operations(&self) -> Result<Vec<String>> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                "SELECT id FROM operations WHERE state IN ('NotStarted', 'Running') ORDER BY created_time, id",
                &[],
            )
            .await
            .map_err(db("list operations in flight"))?;
        rows.iter().map(|row| col(row, 0)).collect()
    }

    fn fenced_services(&self, fence: Arc<Fence>) -> Arc<dyn ServiceStore> {
        Arc::new(Self {
            pool: self.pool.clone(),
            fence: Some(fence),
        })
    }

    async fn publish_route(
        &self,
        fence: &Fence,
        service: &str,
        route: Option<&str>,
    ) -> Result<u64> {
        let mut conn = self.conn().await?;
        let tx = super::client_mut(&mut conn)
            .transaction()
            .await
            .map_err(db("begin route publication"))?;
        check(&tx, fence).await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ROUTE_LOCK])
            .await
            .map_err(db("take the route lock"))?;
        let row = tx
            .query_one(
                "INSERT INTO berth_routes (service, route, version) \
                 VALUES ($1, $2, (SELECT COALESCE(MAX(version), 0) + 1 FROM berth_routes)) \
                 ON CONFLICT (service) DO UPDATE SET route = excluded.route, version = excluded.version \
                 RETURNING version",
                &[&service, &route],
            )
            .await
            .map_err(db("publish the route"))?;
        let version = u64_of(col(&row, 0)?, "route version")?;
        tx.commit().await.map_err(db("commit route publication"))?;
        Ok(version)
    }

    async fn routes_since(&self, after: u64) -> Result<Vec<PublishedRoute>> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                "SELECT service, route, version FROM berth_routes WHERE version > $1 ORDER BY version",
                &[&super::i64_of(after)],
            )
            .await
            .map_err(db("read published routes"))?;
        rows.iter()
            .map(|row| {
                Ok(PublishedRoute {
                    service: col(row, 0)?,
                    route: col(row, 1)?,
                    version: u64_of(col(row, 2)?, "route version")?,
                })
            })
            .collect()
    }

    async fn ping(&self) -> Result<()> {
        let conn = self.conn().await?;
        conn.query_one("SELECT 1", &[]).await.map_err(db("ping"))?;
        Ok(())
    }
}
