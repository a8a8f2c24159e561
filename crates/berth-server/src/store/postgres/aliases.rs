//! PostgreSQL statements for model aliases and follow state.

use berth_api::ModelAlias;
use tokio_postgres::GenericClient;

use super::{PgStore, col, db, u32_of};
use crate::store::{FollowState, Result, StoreError};

fn opt_i64(value: Option<u32>) -> Option<i64> {
    value.map(i64::from)
}

fn opt_u32(value: Option<i64>, what: &'static str) -> Result<Option<u32>> {
    value.map(|v| u32_of(v, what)).transpose()
}

pub(super) async fn upsert_follow(client: &impl GenericClient, state: &FollowState) -> Result<()> {
    if state.is_empty() {
        client
            .execute(
                "DELETE FROM follow_state WHERE service = $1 AND reference = $2",
                &[&state.service, &state.reference],
            )
            .await
            .map_err(db("delete follow state"))?;
        return Ok(());
    }
    client
        .execute(
            "INSERT INTO follow_state (service, reference, pending, pending_cause, in_flight, \
             in_flight_operation, rejected) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (service, reference) DO UPDATE SET pending = excluded.pending, \
             pending_cause = excluded.pending_cause, in_flight = excluded.in_flight, \
             in_flight_operation = excluded.in_flight_operation, rejected = excluded.rejected",
            &[
                &state.service,
                &state.reference,
                &opt_i64(state.pending),
                &state.pending_cause,
                &opt_i64(state.in_flight),
                &state.in_flight_operation,
                &opt_i64(state.rejected),
            ],
        )
        .await
        .map_err(db("write follow state"))?;
    Ok(())
}

impl PgStore {
    /// Points `alias` at `name:version` and writes `follows` in the same
    /// transaction; returns the alias and the version it pointed at before.
    pub(super) async fn put_alias(
        &self,
        name: &str,
        alias: &str,
        version: u32,
        now: &str,
        follows: Vec<FollowState>,
    ) -> Result<(ModelAlias, Option<u32>)> {
        let mut conn = self.conn().await?;
        let tx = super::client_mut(&mut conn)
            .transaction()
            .await
            .map_err(db("begin alias move"))?;
        // Shared lock on the name's counter row: a delete of the version waits.
        tx.execute(
            "SELECT 1 FROM model_names WHERE name = $1 FOR SHARE",
            &[&name],
        )
        .await
        .map_err(db("lock model name"))?;
        let exists: bool = col(
            &tx.query_one(
                "SELECT EXISTS (SELECT 1 FROM models WHERE name = $1 AND version = $2)",
                &[&name, &i64::from(version)],
            )
            .await
            .map_err(db("read model"))?,
            0,
        )?;
        if !exists {
            return Err(StoreError::ModelNotFound(format!("{name}:{version}")));
        }
        let previous: Option<i64> = tx
            .query_opt(
                "SELECT version FROM model_aliases WHERE model_name = $1 AND alias = $2 FOR UPDATE",
                &[&name, &alias],
            )
            .await
            .map_err(db("read alias"))?
            .map(|row| col(&row, 0))
            .transpose()?;
        tx.execute(
            "INSERT INTO model_aliases (model_name, alias, version, updated_time) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (model_name, alias) DO UPDATE SET version = excluded.version, \
             updated_time = excluded.updated_time",
            &[&name, &alias, &i64::from(version), &now],
        )
        .await
        .map_err(db("write alias"))?;
        for state in &follows {
            upsert_follow(&tx, state).await?;
        }
        tx.commit().await.map_err(db("commit alias move"))?;
        Ok((
            ModelAlias {
                name: name.to_owned(),
                alias: alias.to_owned(),
                version,
                updated_time: now.to_owned(),
            },
            opt_u32(previous, "alias version")?,
        ))
    }

    /// Removes an alias; returns the version it pointed at.
    pub(super) async fn drop_alias(&self, name: &str, alias: &str) -> Result<u32> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                "DELETE FROM model_aliases WHERE model_name = $1 AND alias = $2 RETURNING version",
                &[&name, &alias],
            )
            .await
            .map_err(db("delete alias"))?
            .ok_or_else(|| StoreError::AliasNotFound {
                name: name.to_owned(),
                alias: alias.to_owned(),
            })?;
        u32_of(col(&row, 0)?, "alias version")
    }

    /// Aliases of one model name, or of all, by name then alias.
    pub(super) async fn all_aliases(&self, name: Option<&str>) -> Result<Vec<ModelAlias>> {
        let conn = self.conn().await?;
        conn.query(
            "SELECT model_name, alias, version, updated_time FROM model_aliases \
             WHERE $1::TEXT IS NULL OR model_name = $1 ORDER BY model_name, alias",
            &[&name],
        )
        .await
        .map_err(db("list aliases"))?
        .iter()
        .map(|r| {
            Ok(ModelAlias {
                name: col(r, 0)?,
                alias: col(r, 1)?,
                version: u32_of(col(r, 2)?, "alias version")?,
                updated_time: col(r, 3)?,
            })
        })
        .collect()
    }

    /// The follow state of one service, or of every service.
    pub(super) async fn follows(&self, service: Option<&str>) -> Result<Vec<FollowState>> {
        let conn = self.conn().await?;
        conn.query(
            "SELECT service, reference, pending, pending_cause, in_flight, \
             in_flight_operation, rejected FROM follow_state \
             WHERE $1::TEXT IS NULL OR service = $1 ORDER BY service, reference",
            &[&service],
        )
        .await
        .map_err(db("list follow state"))?
        .iter()
        .map(|r| {
            Ok(FollowState {
                service: col(r, 0)?,
                reference: col(r, 1)?,
                pending: opt_u32(col(r, 2)?, "pending version")?,
                pending_cause: col(r, 3)?,
                in_flight: opt_u32(col(r, 4)?, "in-flight version")?,
                in_flight_operation: col(r, 5)?,
                rejected: opt_u32(col(r, 6)?, "rejected version")?,
            })
        })
        .collect()
    }

    /// Writes (or, when empty, deletes) follow state rows in one transaction.
    pub(super) async fn write_follows(&self, states: Vec<FollowState>) -> Result<()> {
        let mut conn = self.conn().await?;
        let tx = super::client_mut(&mut conn)
            .transaction()
            .await
            .map_err(db("begin follow state"))?;
        for state in &states {
            upsert_follow(&tx, state).await?;
        }
        tx.commit().await.map_err(db("commit follow state"))
    }
}
