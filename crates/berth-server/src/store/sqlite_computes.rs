//! SQLite statements for compute targets.

use rusqlite::{OptionalExtension, params};

use super::computes::StoredComputeTarget;
use super::sqlite::{SqliteStore, db};
use super::{Result, StoreError};

const COLUMNS: &str = "name, compute_type, attached, properties, created_time, kubernetes";

type Row = (String, String, bool, String, String, Option<String>);

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn decode(
    (name, compute_type, attached, properties, created_time, kubernetes): Row,
) -> Result<StoredComputeTarget> {
    let properties = serde_json::from_str(&properties).map_err(|e| StoreError::Corrupt {
        what: "compute target properties",
        detail: e.to_string(),
    })?;
    let kubernetes = kubernetes
        .map(|k| serde_json::from_str(&k))
        .transpose()
        .map_err(|e| StoreError::Corrupt {
            what: "compute target kubernetes settings",
            detail: e.to_string(),
        })?;
    Ok(StoredComputeTarget {
        name,
        compute_type,
        attached,
        properties,
        created_time,
        kubernetes,
    })
}

impl SqliteStore {
    /// Inserts a target unless one of that name exists, which is returned
    /// instead (`false`).
    pub(super) async fn put_compute(
        &self,
        new: StoredComputeTarget,
    ) -> Result<(bool, StoredComputeTarget)> {
        self.write(move |conn| {
            let properties = new.properties.to_string();
            let kubernetes = new
                .kubernetes
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| StoreError::Corrupt {
                    what: "compute target kubernetes settings",
                    detail: e.to_string(),
                })?;
            let inserted = conn
                .execute(
                    "INSERT INTO compute_targets (name, compute_type, attached, properties, created_time, kubernetes) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (name) DO NOTHING",
                    params![new.name, new.compute_type, new.attached, properties, new.created_time, kubernetes],
                )
                .map_err(db("insert compute target"))?;
            let stored = conn
                .query_row(
                    &format!("SELECT {COLUMNS} FROM compute_targets WHERE name = ?1"),
                    params![new.name],
                    row,
                )
                .map_err(db("read compute target"))?;
            Ok((inserted == 1, decode(stored)?))
        })
        .await
    }

    /// One target.
    pub(super) async fn get_compute(&self, name: &str) -> Result<Option<StoredComputeTarget>> {
        let name = name.to_owned();
        self.read(move |conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM compute_targets WHERE name = ?1"),
                params![name],
                row,
            )
            .optional()
            .map_err(db("read compute target"))?
            .map(decode)
            .transpose()
        })
        .await
    }

    /// Every target, by name.
    pub(super) async fn all_computes(&self) -> Result<Vec<StoredComputeTarget>> {
        self.read(move |conn| {
            let mut statement = conn
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM compute_targets ORDER BY name"
                ))
                .map_err(db("list compute targets"))?;
            let rows = statement
                .query_map([], row)
                .map_err(db("list compute targets"))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db("list compute targets"))?;
            rows.into_iter().map(decode).collect()
        })
        .await
    }

    /// Deletes a target; `false` when there was none.
    pub(super) async fn remove_compute(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.write(move |conn| {
            conn.execute("DELETE FROM compute_targets WHERE name = ?1", params![name])
                .map(|n| n == 1)
                .map_err(db("delete compute target"))
        })
        .await
    }
}
