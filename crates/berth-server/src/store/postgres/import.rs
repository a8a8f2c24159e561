//! Copying every metadata row of a SQLite store into an empty PostgreSQL store
//! (`berth admin migrate`), in one transaction on the target. Table by table,
//! parents first, ids kept; identity sequences continue after the copied ids.

use tokio_postgres::types::ToSql;

use super::{MIGRATION_LOCK, PgStore, col, db};
use crate::store::{Result, SqliteStore, StoreError};

#[derive(Clone, Copy)]
enum Kind {
    Int,
    Text,
    Bool,
}

use Kind::{Bool, Int, Text};

/// Every table with its columns, parents before children.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    ("settings", &[("key", Text), ("value", Text)]),
    ("model_names", &[("name", Text), ("last_version", Int)]),
    (
        "models",
        &[
            ("id", Int),
            ("name", Text),
            ("version", Int),
            ("kind", Text),
            ("asset_name", Text),
            ("description", Text),
            ("tags", Text),
            ("properties", Text),
            ("framework", Text),
            ("framework_version", Text),
            ("experiment_name", Text),
            ("run_id", Text),
            ("size", Int),
            ("file_count", Int),
            ("content_digest", Text),
            ("created_time", Text),
            ("created_by", Text),
        ],
    ),
    (
        "model_files",
        &[
            ("model_id", Int),
            ("path", Text),
            ("size", Int),
            ("digest", Text),
            ("mode", Int),
        ],
    ),
    (
        "model_references",
        &[
            ("service", Text),
            ("model_name", Text),
            ("model_version", Int),
        ],
    ),
    (
        "environment_names",
        &[("name", Text), ("last_version", Int)],
    ),
    (
        "environments",
        &[
            ("id", Int),
            ("name", Text),
            ("version", Int),
            ("spec", Text),
            ("spec_digest", Text),
            ("build_hash", Text),
            ("warnings", Text),
            ("description", Text),
            ("created_time", Text),
        ],
    ),
    (
        "snapshots",
        &[
            ("digest", Text),
            ("size", Int),
            ("file_count", Int),
            ("created_time", Text),
        ],
    ),
    (
        "snapshot_files",
        &[
            ("snapshot", Text),
            ("path", Text),
            ("size", Int),
            ("digest", Text),
            ("mode", Int),
        ],
    ),
    (
        "services",
        &[
            ("name", Text),
            ("description", Text),
            ("tags", Text),
            ("properties", Text),
            ("created_time", Text),
            ("updated_time", Text),
            ("latest_revision", Int),
            ("serving_revision", Int),
            ("state", Text),
            ("error", Text),
            ("primary_key", Text),
            ("secondary_key", Text),
            ("last_operation", Text),
            ("traffic", Text),
        ],
    ),
    (
        "revisions",
        &[
            ("service", Text),
            ("number", Int),
            ("spec", Text),
            ("created_time", Text),
        ],
    ),
    (
        "operations",
        &[
            ("id", Text),
            ("service", Text),
            ("kind", Text),
            ("state", Text),
            ("target_revision", Int),
            ("created_time", Text),
            ("end_time", Text),
            ("error", Text),
            ("rollout", Text),
            ("traffic", Text),
        ],
    ),
    (
        "operation_events",
        &[
            ("operation", Text),
            ("seq", Int),
            ("time", Text),
            ("elapsed_ms", Int),
            ("message", Text),
        ],
    ),
    (
        "events",
        &[
            ("id", Int),
            ("time", Text),
            ("type", Text),
            ("service", Text),
            ("operation", Text),
            ("data", Text),
        ],
    ),
    (
        "webhooks",
        &[
            ("id", Text),
            ("url", Text),
            ("events", Text),
            ("secret", Text),
            ("created_time", Text),
            ("last_status", Text),
            ("last_time", Text),
            ("last_error", Text),
            ("consecutive_failures", Int),
            ("delivered_through", Int),
        ],
    ),
    (
        "compute_targets",
        &[
            ("name", Text),
            ("compute_type", Text),
            ("attached", Bool),
            ("properties", Text),
            ("created_time", Text),
            ("kubernetes", Text),
        ],
    ),
    (
        "model_aliases",
        &[
            ("model_name", Text),
            ("alias", Text),
            ("version", Int),
            ("updated_time", Text),
        ],
    ),
    (
        "follow_state",
        &[
            ("service", Text),
            ("reference", Text),
            ("pending", Int),
            ("pending_cause", Text),
            ("in_flight", Int),
            ("in_flight_operation", Text),
            ("rejected", Int),
        ],
    ),
];

/// Tables whose ids come from an identity sequence.
const IDENTITIES: &[&str] = &["models", "environments", "events"];

type Value = Box<dyn ToSql + Sync + Send>;

fn convert(table: &'static str, kind: Kind, value: rusqlite::types::Value) -> Result<Value> {
    use rusqlite::types::Value as V;
    Ok(match (kind, value) {
        (Int, V::Integer(i)) => Box::new(Some(i)),
        (Int, V::Null) => Box::new(None::<i64>),
        (Bool, V::Integer(i)) => Box::new(Some(i != 0)),
        (Bool, V::Null) => Box::new(None::<bool>),
        (Text, V::Text(s)) => Box::new(Some(s)),
        (Text, V::Null) => Box::new(None::<String>),
        (_, other) => {
            return Err(StoreError::Corrupt {
                what: "SQLite row",
                detail: format!(
                    "table `{table}` holds an unexpected {:?}",
                    other.data_type()
                ),
            });
        }
    })
}

/// What one table's copy moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Table.
    pub table: &'static str,
    /// Rows.
    pub rows: u64,
}

/// Copies every row of `from` into `to`, which must hold no rows; one
/// transaction on the target (all or nothing).
pub async fn copy_from_sqlite(from: &SqliteStore, to: &PgStore) -> Result<Vec<Copied>> {
    let rows = from
        .read(|conn| {
            let mut all = Vec::new();
            for (table, columns) in TABLES {
                let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
                let mut stmt = conn
                    .prepare(&format!("SELECT {} FROM {table}", names.join(", ")))
                    .map_err(crate::store::sqlite::db("read source table"))?;
                let table_rows = stmt
                    .query_map([], |row| {
                        (0..columns.len())
                            .map(|i| row.get::<_, rusqlite::types::Value>(i))
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(crate::store::sqlite::db("read source table"))?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(crate::store::sqlite::db("read source table"))?;
                all.push(table_rows);
            }
            let events_seq: i64 = conn
                .query_row(
                    "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
                    [],
                    |r| r.get(0),
                )
                .map_err(crate::store::sqlite::db("read event sequence"))?;
            Ok((all, events_seq))
        })
        .await?;
    let (tables, events_seq) = rows;
    let mut conn = to.conn().await?;
    let tx = super::client_mut(&mut conn)
        .transaction()
        .await
        .map_err(db("begin copy"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db("take the migration lock"))?;
    let mut occupied = Vec::new();
    for (table, _) in TABLES {
        let row = tx
            .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
            .await
            .map_err(db("count target rows"))?;
        let n: i64 = col(&row, 0)?;
        if n > 0 {
            occupied.push(format!("{table} ({n})"));
        }
    }
    if !occupied.is_empty() {
        return Err(StoreError::Invalid(vec![format!(
            "the target store is not empty: {}; migrate into a new, empty database",
            occupied.join(", ")
        )]));
    }
    let mut report = Vec::new();
    for ((table, columns), rows) in TABLES.iter().zip(tables) {
        let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
        let insert = tx
            .prepare(&format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                names.join(", "),
                placeholders.join(", ")
            ))
            .await
            .map_err(db("prepare copy"))?;
        let count = rows.len() as u64;
        for row in rows {
            let values = row
                .into_iter()
                .zip(columns.iter())
                .map(|(value, (_, kind))| convert(table, *kind, value))
                .collect::<Result<Vec<Value>>>()?;
            let params: Vec<&(dyn ToSql + Sync)> = values
                .iter()
                .map(|v| v.as_ref() as &(dyn ToSql + Sync))
                .collect();
            tx.execute(&insert, &params).await.map_err(db("copy row"))?;
        }
        report.push(Copied { table, rows: count });
    }
    for table in IDENTITIES {
        let floor: i64 = if *table == "events" { events_seq } else { 0 };
        tx.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                 GREATEST(COALESCE(MAX(id), 0), $1, 1), GREATEST(COALESCE(MAX(id), 0), $1) > 0) FROM {table}"
            ),
            &[&floor],
        )
        .await
        .map_err(db("continue the id sequence"))?;
    }
    tx.commit().await.map_err(db("commit copy"))?;
    Ok(report)
}
