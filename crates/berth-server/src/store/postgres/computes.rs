//! PostgreSQL statements for compute targets.

use super::{PgStore, col, db};
use crate::store::{Result, StoreError, StoredComputeTarget};

const COLUMNS: &str = "name, compute_type, attached, properties, created_time, kubernetes";

fn decode(row: &tokio_postgres::Row) -> Result<StoredComputeTarget> {
    let properties: String = col(row, 3)?;
    Ok(StoredComputeTarget {
        name: col(row, 0)?,
        compute_type: col(row, 1)?,
        attached: col(row, 2)?,
        properties: serde_json::from_str(&properties).map_err(|e| StoreError::Corrupt {
            what: "compute target properties",
            detail: e.to_string(),
        })?,
        created_time: col(row, 4)?,
        kubernetes: col::<Option<String>>(row, 5)?
            .map(|k| serde_json::from_str(&k))
            .transpose()
            .map_err(|e| StoreError::Corrupt {
                what: "compute target kubernetes settings",
                detail: e.to_string(),
            })?,
    })
}

impl PgStore {
    /// Inserts a target unless one of that name exists, which is returned
    /// instead (`false`).
    pub(super) async fn put_compute(
        &self,
        new: StoredComputeTarget,
    ) -> Result<(bool, StoredComputeTarget)> {
        let kubernetes = new
            .kubernetes
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt {
                what: "compute target kubernetes settings",
                detail: e.to_string(),
            })?;
        let conn = self.conn().await?;
        let inserted = conn
            .execute(
                "INSERT INTO compute_targets (name, compute_type, attached, properties, created_time, kubernetes) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING",
                &[
                    &new.name,
                    &new.compute_type,
                    &new.attached,
                    &new.properties.to_string(),
                    &new.created_time,
                    &kubernetes,
                ],
            )
            .await
            .map_err(db("insert compute target"))?;
        let row = conn
            .query_one(
                &format!("SELECT {COLUMNS} FROM compute_targets WHERE name = $1"),
                &[&new.name],
            )
            .await
            .map_err(db("read compute target"))?;
        Ok((inserted == 1, decode(&row)?))
    }

    /// One target.
    pub(super) async fn get_compute(&self, name: &str) -> Result<Option<StoredComputeTarget>> {
        let conn = self.conn().await?;
        conn.query_opt(
            &format!("SELECT {COLUMNS} FROM compute_targets WHERE name = $1"),
            &[&name],
        )
        .await
        .map_err(db("read compute target"))?
        .as_ref()
        .map(decode)
        .transpose()
    }

    /// Every target, by name.
    pub(super) async fn all_computes(&self) -> Result<Vec<StoredComputeTarget>> {
        let conn = self.conn().await?;
        conn.query(
            &format!("SELECT {COLUMNS} FROM compute_targets ORDER BY name"),
            &[],
        )
        .await
        .map_err(db("list compute targets"))?
        .iter()
        .map(decode)
        .collect()
    }

    /// Deletes a target; `false` when there was none.
    pub(super) async fn remove_compute(&self, name: &str) -> Result<bool> {
        let conn = self.conn().await?;
        conn.execute("DELETE FROM compute_targets WHERE name = $1", &[&name])
            .await
            .map(|n| n == 1)
            .map_err(db("delete compute target"))
    }
}
