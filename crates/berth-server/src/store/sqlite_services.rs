//! SQLite implementation of [`ServiceStore`].

use std::collections::BTreeSet;

use async_trait::async_trait;
use berth_api::{
    Operation, OperationError, OperationEvent, OperationType, ServiceKeys, ServiceSpec,
    ServiceState,
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::domain::state::{self, Event};

use super::services::{
    NewService, OperationOutcome, OperationRow, ServiceChange, ServiceStore, StoredRollout,
    StoredService,
};
use super::sqlite::db;
use super::{Result, SqliteStore, StoreError, corrupt};

const SERVICE_COLUMNS: &str = "name, description, tags, properties, created_time, updated_time, \
     latest_revision, serving_revision, state, error, primary_key, secondary_key, last_operation, traffic";

type RawService = (
    String,
    Option<String>,
    String,
    String,
    String,
    String,
    u32,
    Option<u32>,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
);

fn finish_service(raw: RawService) -> Result<StoredService> {
    let (
        name,
        description,
        tags,
        properties,
        created,
        updated,
        latest,
        serving,
        state,
        error,
        primary,
        secondary,
        last,
        traffic,
    ) = raw;
    Ok(StoredService {
        name,
        description,
        tags: serde_json::from_str(&tags).map_err(corrupt("service tags"))?,
        properties: serde_json::from_str(&properties).map_err(corrupt("service properties"))?,
        created_time: created,
        updated_time: updated,
        latest_revision: latest,
        serving_revision: serving,
        state: ServiceState::parse(&state).ok_or_else(|| StoreError::Corrupt {
            what: "service state",
            detail: state.clone(),
        })?,
        error: error
            .map(|e| serde_json::from_str(&e))
            .transpose()
            .map_err(corrupt("service error"))?,
        keys: ServiceKeys {
            primary_key: primary,
            secondary_key: secondary,
        },
        last_operation: last,
        traffic: traffic
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(corrupt("service traffic"))?,
    })
}

fn find_service(conn: &Connection, name: &str) -> Result<Option<StoredService>> {
    conn.query_row(
        &format!("SELECT {SERVICE_COLUMNS} FROM services WHERE name = ?1"),
        params![name],
        |row| RawService::try_from(row),
    )
    .optional()
    .map_err(db("read service"))?
    .map(finish_service)
    .transpose()
}

/// The operation in flight: its id and its kind, with the rollout it runs
/// when it is in a progressive rollout (`Update: canary rollout of revision 4,
/// step 1 of 1, weights 3=90 4=10`).
fn active_operation(conn: &Connection, service: &str) -> Result<Option<(String, String)>> {
    let found: Option<(String, String, Option<String>)> = conn
        .query_row(
            "SELECT id, kind, rollout FROM operations WHERE service = ?1 AND state IN ('NotStarted', 'Running')",
            params![service],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(db("read active operation"))?;
    Ok(
        found.map(|(id, kind, rollout): (String, String, Option<String>)| {
            let kind = super::services::active_kind(kind, rollout.as_deref());
            (id, kind)
        }),
    )
}

fn refuse_if_busy(conn: &Connection, service: &str) -> Result<()> {
    match active_operation(conn, service)? {
        Some((operation, kind)) => Err(StoreError::OperationInProgress {
            service: service.to_owned(),
            operation,
            kind,
        }),
        None => Ok(()),
    }
}

fn read_revision(conn: &Connection, service: &str, number: u32) -> Result<ServiceSpec> {
    let text: String = conn
        .query_row(
            "SELECT spec FROM revisions WHERE service = ?1 AND number = ?2",
            params![service, number],
            |r| r.get(0),
        )
        .optional()
        .map_err(db("read revision"))?
        .ok_or_else(|| StoreError::RevisionNotFound {
            service: service.to_owned(),
            revision: number,
        })?;
    serde_json::from_str(&text).map_err(corrupt("revision spec"))
}

/// Model references = models of the serving revision and of the revision an
/// active operation rolls out.
fn refresh_model_references(tx: &Transaction<'_>, service: &str) -> Result<()> {
    tx.execute(
        "DELETE FROM model_references WHERE service = ?1",
        params![service],
    )
    .map_err(db("clear model references"))?;
    let mut revisions = BTreeSet::new();
    if let Some(serving) = tx
        .query_row(
            "SELECT serving_revision FROM services WHERE name = ?1",
            params![service],
            |r| r.get::<_, Option<u32>>(0),
        )
        .optional()
        .map_err(db("read serving revision"))?
        .flatten()
    {
        revisions.insert(serving);
    }
    if let Some(target) = tx
        .query_row(
            "SELECT target_revision FROM operations WHERE service = ?1 AND state IN ('NotStarted', 'Running')",
            params![service],
            |r| r.get::<_, Option<u32>>(0),
        )
        .optional()
        .map_err(db("read target revision"))?
        .flatten()
    {
        revisions.insert(target);
    }
    for number in revisions {
        let spec = read_revision(tx, service, number)?;
        for id in &spec.models {
            if let Some((name, version)) = id.rsplit_once(':') {
                tx.execute(
                    "INSERT OR IGNORE INTO model_references (service, model_name, model_version) VALUES (?1, ?2, ?3)",
                    params![service, name, version.parse::<u32>().unwrap_or(0)],
                )
                .map_err(db("write model reference"))?;
            }
        }
    }
    Ok(())
}

fn insert_operation(
    tx: &Transaction<'_>,
    id: &str,
    service: &str,
    kind: OperationType,
    target: Option<u32>,
    now: &str,
) -> Result<()> {
    tx.execute(
        "INSERT INTO operations (id, service, kind, state, target_revision, created_time) VALUES (?1, ?2, ?3, 'Running', ?4, ?5)",
        params![id, service, kind.as_str(), target, now],
    )
    .map_err(|source| match source {
        rusqlite::Error::SqliteFailure(ref e, _)
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::OperationInProgress {
                service: service.to_owned(),
                operation: "(another)".into(),
                kind: "unknown".into(),
            }
        }
        source => StoreError::Database {
            step: "insert operation",
            source: Box::new(source),
        },
    })?;
    tx.execute(
        "UPDATE services SET last_operation = ?1, state = ?4, updated_time = ?2 WHERE name = ?3",
        params![
            id,
            now,
            service,
            state::after(Event::OperationStarted).as_str()
        ],
    )
    .map_err(db("mark service transitioning"))?;
    Ok(())
}

fn find_operation(conn: &Connection, id: &str, offset: u64) -> Result<Operation> {
    let row = conn
        .query_row(
            "SELECT id, service, kind, state, target_revision, created_time, end_time, error, rollout FROM operations WHERE id = ?1",
            params![id],
            |r| {
                Ok(OperationRow {
                    id: r.get(0)?,
                    service: r.get(1)?,
                    kind: r.get(2)?,
                    state: r.get(3)?,
                    target_revision: r.get(4)?,
                    created_time: r.get(5)?,
                    end_time: r.get(6)?,
                    error: r.get(7)?,
                    rollout: r.get(8)?,
                })
            },
        )
        .optional()
        .map_err(db("read operation"))?
        .ok_or_else(|| StoreError::OperationNotFound(id.to_owned()))?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, time, elapsed_ms, message FROM operation_events WHERE operation = ?1 AND seq >= ?2 ORDER BY seq",
        )
        .map_err(db("prepare operation events"))?;
    let events = stmt
        .query_map(params![row.id, offset.min(i64::MAX as u64) as i64], |r| {
            Ok(OperationEvent {
                seq: r.get(0)?,
                time: r.get(1)?,
                elapsed_ms: r.get(2)?,
                message: r.get(3)?,
            })
        })
        .map_err(db("read operation events"))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db("read operation events"))?;
    row.into_operation(events)
}

fn append_event(
    conn: &Connection,
    id: &str,
    now: &str,
    elapsed_ms: u64,
    message: &str,
) -> Result<()> {
    conn.execute(
        "INSERT INTO operation_events (operation, seq, time, elapsed_ms, message) \
         VALUES (?1, (SELECT COALESCE(MAX(seq) + 1, 0) FROM operation_events WHERE operation = ?1), ?2, ?3, ?4)",
        params![id, now, elapsed_ms, message],
    )
    .map_err(db("append operation event"))?;
    Ok(())
}

#[async_trait]
impl ServiceStore for SqliteStore {
    async fn create_service(&self, new: NewService) -> Result<Operation> {
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db("begin service create"))?;
            let spec = serde_json::to_string(&new.spec).map_err(corrupt("revision spec"))?;
            let tags = serde_json::to_string(&new.tags).map_err(corrupt("tags"))?;
            let properties = serde_json::to_string(&new.properties).map_err(corrupt("properties"))?;
            let (kind, revision) = match find_service(&tx, &new.name)? {
                Some(_) if !new.overwrite => return Err(StoreError::ServiceExists(new.name)),
                Some(existing) => {
                    refuse_if_busy(&tx, &new.name)?;
                    let revision = existing.latest_revision + 1;
                    let keys = if new.keys_given { new.keys.clone() } else { existing.keys };
                    tx.execute(
                        "UPDATE services SET description = ?1, tags = ?2, properties = ?3, latest_revision = ?4, \
                         primary_key = ?5, secondary_key = ?6, error = NULL WHERE name = ?7",
                        params![new.description, tags, properties, revision, keys.primary_key, keys.secondary_key, new.name],
                    )
                    .map_err(db("update service for overwrite"))?;
                    (OperationType::Update, revision)
                }
                None => {
                    tx.execute(
                        "INSERT INTO services (name, description, tags, properties, created_time, updated_time, \
                         latest_revision, serving_revision, state, primary_key, secondary_key) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?5, 1, NULL, ?8, ?6, ?7)",
                        params![new.name, new.description, tags, properties, new.now, new.keys.primary_key, new.keys.secondary_key, state::after(Event::OperationStarted).as_str()],
                    )
                    .map_err(db("insert service"))?;
                    (OperationType::Create, 1)
                }
            };
            tx.execute(
                "INSERT INTO revisions (service, number, spec, created_time) VALUES (?1, ?2, ?3, ?4)",
                params![new.name, revision, spec, new.now],
            )
            .map_err(db("insert revision"))?;
            insert_operation(&tx, &new.operation_id, &new.name, kind, Some(revision), &new.now)?;
            append_event(&tx, &new.operation_id, &new.now, 0, &format!("{} accepted: revision {revision}", kind.as_str()))?;
            refresh_model_references(&tx, &new.name)?;
            let operation = find_operation(&tx, &new.operation_id, 0)?;
            tx.commit().map_err(db("commit service create"))?;
            Ok(operation)
        })
        .await
    }

    async fn change_service(&self, change: ServiceChange) -> Result<Operation> {
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db("begin service change"))?;
            let Some(current) = find_service(&tx, &change.name)? else {
                return Err(StoreError::ServiceNotFound(change.name));
            };
            refuse_if_busy(&tx, &change.name)?;
            if change.based_on != current.serving_revision.or(Some(current.latest_revision)) {
                return Err(StoreError::Moved {
                    service: change.name,
                    now: current.serving_revision,
                });
            }
            let target = match (&change.new_revision, change.target) {
                (Some(spec), _) => {
                    let number = current.latest_revision + 1;
                    let text = serde_json::to_string(spec).map_err(corrupt("revision spec"))?;
                    tx.execute(
                        "INSERT INTO revisions (service, number, spec, created_time) VALUES (?1, ?2, ?3, ?4)",
                        params![change.name, number, text, change.now],
                    )
                    .map_err(db("insert revision"))?;
                    tx.execute(
                        "UPDATE services SET latest_revision = ?1 WHERE name = ?2",
                        params![number, change.name],
                    )
                    .map_err(db("record latest revision"))?;
                    Some(number)
                }
                (None, Some(number)) => {
                    read_revision(&tx, &change.name, number)?;
                    Some(number)
                }
                (None, None) => None,
            };
            if let Some(description) = &change.description {
                tx.execute(
                    "UPDATE services SET description = ?1 WHERE name = ?2",
                    params![description, change.name],
                )
                .map_err(db("update description"))?;
            }
            if let Some(tags) = &change.tags {
                let text = serde_json::to_string(tags).map_err(corrupt("tags"))?;
                tx.execute("UPDATE services SET tags = ?1 WHERE name = ?2", params![text, change.name])
                    .map_err(db("update tags"))?;
            }
            if let Some(properties) = &change.properties {
                let text = serde_json::to_string(properties).map_err(corrupt("properties"))?;
                tx.execute(
                    "UPDATE services SET properties = ?1 WHERE name = ?2",
                    params![text, change.name],
                )
                .map_err(db("update properties"))?;
            }
            if let Some(keys) = &change.keys {
                tx.execute(
                    "UPDATE services SET primary_key = ?1, secondary_key = ?2 WHERE name = ?3",
                    params![keys.primary_key, keys.secondary_key, change.name],
                )
                .map_err(db("update keys"))?;
            }
            insert_operation(&tx, &change.operation_id, &change.name, change.kind, target, &change.now)?;
            let accepted = match target {
                Some(n) => format!("{} accepted: revision {n}", change.kind.as_str()),
                None => format!("{} accepted", change.kind.as_str()),
            };
            append_event(&tx, &change.operation_id, &change.now, 0, &accepted)?;
            refresh_model_references(&tx, &change.name)?;
            let operation = find_operation(&tx, &change.operation_id, 0)?;
            tx.commit().map_err(db("commit service change"))?;
            Ok(operation)
        })
        .await
    }

    async fn revisions(&self, name: &str) -> Result<Vec<(u32, String, ServiceSpec)>> {
        let name = name.to_owned();
        self.read(move |conn| {
            if find_service(conn, &name)?.is_none() {
                return Err(StoreError::ServiceNotFound(name));
            }
            let mut stmt = conn
                .prepare("SELECT number, created_time, spec FROM revisions WHERE service = ?1 ORDER BY number")
                .map_err(db("prepare revision list"))?;
            let rows = stmt
                .query_map(params![name], |r| {
                    Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
                })
                .map_err(db("list revisions"))?;
            let mut out = Vec::new();
            for row in rows {
                let (number, created, spec) = row.map_err(db("list revisions"))?;
                out.push((number, created, serde_json::from_str(&spec).map_err(corrupt("revision spec"))?));
            }
            Ok(out)
        })
        .await
    }

    async fn start_delete(&self, name: &str, operation_id: &str, now: &str) -> Result<Operation> {
        let (name, id, now) = (name.to_owned(), operation_id.to_owned(), now.to_owned());
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db("begin service delete"))?;
            if find_service(&tx, &name)?.is_none() {
                return Err(StoreError::ServiceNotFound(name));
            }
            refuse_if_busy(&tx, &name)?;
            insert_operation(&tx, &id, &name, OperationType::Delete, None, &now)?;
            append_event(&tx, &id, &now, 0, "Delete accepted")?;
            let operation = find_operation(&tx, &id, 0)?;
            tx.commit().map_err(db("commit service delete"))?;
            Ok(operation)
        })
        .await
    }

    async fn start_traffic_change(
        &self,
        name: &str,
        operation_id: &str,
        traffic: &[berth_api::TrafficShare],
        now: &str,
    ) -> Result<Operation> {
        let (name, id, now) = (name.to_owned(), operation_id.to_owned(), now.to_owned());
        let text = serde_json::to_string(traffic).map_err(corrupt("traffic split"))?;
        let stable = traffic.first().map(|t| t.revision);
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db("begin traffic change"))?;
            if find_service(&tx, &name)?.is_none() {
                return Err(StoreError::ServiceNotFound(name));
            }
            refuse_if_busy(&tx, &name)?;
            insert_operation(&tx, &id, &name, OperationType::Traffic, stable, &now)?;
            tx.execute(
                "UPDATE operations SET traffic = ?1 WHERE id = ?2",
                params![text, id],
            )
            .map_err(db("record traffic split"))?;
            append_event(&tx, &id, &now, 0, "Traffic change accepted")?;
            let operation = find_operation(&tx, &id, 0)?;
            tx.commit().map_err(db("commit traffic change"))?;
            Ok(operation)
        })
        .await
    }

    async fn requested_traffic(&self, operation_id: &str) -> Result<Vec<berth_api::TrafficShare>> {
        let id = operation_id.to_owned();
        self.read(move |conn| {
            let text: Option<String> = conn
                .query_row(
                    "SELECT traffic FROM operations WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db("read traffic split"))?
                .ok_or_else(|| StoreError::OperationNotFound(id.clone()))?;
            text.map(|t| serde_json::from_str(&t))
                .transpose()
                .map_err(corrupt("traffic split"))
                .map(Option::unwrap_or_default)
        })
        .await
    }

    async fn service(&self, name: &str) -> Result<StoredService> {
        let name = name.to_owned();
        self.read(move |conn| find_service(conn, &name)?.ok_or(StoreError::ServiceNotFound(name)))
            .await
    }

    async fn list_services(&self) -> Result<Vec<StoredService>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {SERVICE_COLUMNS} FROM services ORDER BY name"
                ))
                .map_err(db("prepare service list"))?;
            let rows = stmt
                .query_map([], |row| RawService::try_from(row))
                .map_err(db("list services"))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(finish_service(row.map_err(db("list services"))?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn revision(&self, name: &str, number: u32) -> Result<ServiceSpec> {
        let name = name.to_owned();
        self.read(move |conn| read_revision(conn, &name, number))
            .await
    }

    async fn operation(&self, id: &str, offset: u64) -> Result<Operation> {
        let id = id.to_owned();
        self.read(move |conn| find_operation(conn, &id, offset))
            .await
    }

    async fn add_event(&self, id: &str, elapsed_ms: u64, message: &str) -> Result<()> {
        let (id, message) = (id.to_owned(), message.to_owned());
        let fence = self.fence.clone();
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db("begin operation event"))?;
            super::sqlite_cluster::check_fence(&tx, fence.as_deref())?;
            append_event(&tx, &id, &crate::now_rfc3339(), elapsed_ms, &message)?;
            tx.commit().map_err(db("commit operation event"))
        })
        .await
    }

    async fn finish_operation(&self, id: &str, outcome: OperationOutcome, now: &str) -> Result<()> {
        let (id, now) = (id.to_owned(), now.to_owned());
        let fence = self.fence.clone();
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db("begin operation finish"))?;
            super::sqlite_cluster::check_fence(&tx, fence.as_deref())?;
            let op = find_operation(&tx, &id, u64::MAX)?;
            let service = op.service.clone();
            match &outcome {
                OperationOutcome::Succeeded { serving_revision } => {
                    tx.execute(
                        "UPDATE operations SET state = 'Succeeded', end_time = ?1 WHERE id = ?2",
                        params![now, id],
                    )
                    .map_err(db("finish operation"))?;
                    tx.execute(
                        "UPDATE services SET serving_revision = ?1, state = ?4, error = NULL, traffic = NULL, updated_time = ?2 WHERE name = ?3",
                        params![serving_revision, now, service, state::after(Event::Succeeded).as_str()],
                    )
                    .map_err(db("record serving revision"))?;
                    refresh_model_references(&tx, &service)?;
                }
                OperationOutcome::Split {
                    serving_revision,
                    traffic,
                } => {
                    tx.execute(
                        "UPDATE operations SET state = 'Succeeded', end_time = ?1 WHERE id = ?2",
                        params![now, id],
                    )
                    .map_err(db("finish operation"))?;
                    let traffic = serde_json::to_string(traffic).map_err(corrupt("service traffic"))?;
                    tx.execute(
                        "UPDATE services SET serving_revision = ?1, state = ?5, error = NULL, traffic = ?2, updated_time = ?3 WHERE name = ?4",
                        params![serving_revision, traffic, now, service, state::after(Event::Succeeded).as_str()],
                    )
                    .map_err(db("record traffic split"))?;
                    refresh_model_references(&tx, &service)?;
                }
                OperationOutcome::RolledBack(error) => {
                    let error = serde_json::to_string(error).map_err(corrupt("operation error"))?;
                    tx.execute(
                        "UPDATE operations SET state = 'RolledBack', end_time = ?1, error = ?2 WHERE id = ?3",
                        params![now, error, id],
                    )
                    .map_err(db("roll back operation"))?;
                    let serving = find_service(&tx, &service)?.and_then(|s| s.serving_revision).is_some();
                    tx.execute(
                        "UPDATE services SET state = ?3, updated_time = ?1 WHERE name = ?2",
                        params![now, service, state::after(Event::RolledBack { serving }).as_str()],
                    )
                    .map_err(db("record rolled-back service"))?;
                    refresh_model_references(&tx, &service)?;
                }
                OperationOutcome::Failed(error) => {
                    let error = serde_json::to_string(error).map_err(corrupt("operation error"))?;
                    tx.execute(
                        "UPDATE operations SET state = 'Failed', end_time = ?1, error = ?2 WHERE id = ?3",
                        params![now, error, id],
                    )
                    .map_err(db("fail operation"))?;
                    tx.execute(
                        "UPDATE services SET state = ?4, error = ?1, updated_time = ?2 WHERE name = ?3",
                        params![error, now, service, state::after(Event::Failed).as_str()],
                    )
                    .map_err(db("record service failure"))?;
                    refresh_model_references(&tx, &service)?;
                }
                OperationOutcome::Completed => {
                    tx.execute(
                        "UPDATE operations SET state = 'Succeeded', end_time = ?1 WHERE id = ?2",
                        params![now, id],
                    )
                    .map_err(db("finish operation"))?;
                    let current = find_service(&tx, &service)?;
                    let event = Event::Completed {
                        serving: current.as_ref().and_then(|s| s.serving_revision).is_some(),
                        failed_before: current.as_ref().is_some_and(|s| s.error.is_some()),
                    };
                    tx.execute(
                        "UPDATE services SET state = ?3, updated_time = ?1 WHERE name = ?2",
                        params![now, service, state::after(event).as_str()],
                    )
                    .map_err(db("restore service state"))?;
                }
                OperationOutcome::Deleted => {
                    tx.execute(
                        "UPDATE operations SET state = 'Succeeded', end_time = ?1 WHERE id = ?2",
                        params![now, id],
                    )
                    .map_err(db("finish delete"))?;
                    for sql in [
                        "DELETE FROM services WHERE name = ?1",
                        "DELETE FROM revisions WHERE service = ?1",
                        "DELETE FROM model_references WHERE service = ?1",
                    ] {
                        tx.execute(sql, params![service]).map_err(db("delete service rows"))?;
                    }
                }
            }
            tx.commit().map_err(db("commit operation finish"))?;
            Ok(())
        })
        .await
    }

    async fn fail_interrupted_operations(
        &self,
        now: &str,
        exposed: for<'r> fn(&'r StoredRollout) -> bool,
    ) -> Result<Vec<Operation>> {
        let now = now.to_owned();
        let fence = self.fence.clone();
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db("begin interrupted scan"))?;
            super::sqlite_cluster::check_fence(&tx, fence.as_deref())?;
            let ids: Vec<String> = {
                let mut stmt = tx
                    .prepare("SELECT id FROM operations WHERE state IN ('NotStarted', 'Running')")
                    .map_err(db("scan interrupted operations"))?;
                let rows = stmt
                    .query_map([], |r| r.get(0))
                    .map_err(db("scan interrupted operations"))?;
                rows.collect::<rusqlite::Result<Vec<String>>>()
                    .map_err(db("scan interrupted operations"))?
            };
            let mut out = Vec::new();
            for id in ids {
                let op = find_operation(&tx, &id, u64::MAX)?;
                let stored: Option<StoredRollout> = tx
                    .query_row("SELECT rollout FROM operations WHERE id = ?1", params![id], |r| {
                        r.get::<_, Option<String>>(0)
                    })
                    .map_err(db("read operation rollout"))?
                    .map(|text| serde_json::from_str(&text))
                    .transpose()
                    .map_err(corrupt("operation rollout"))?;
                if let Some(rollout) = stored.filter(exposed) {
                    let baseline = rollout
                        .status
                        .baseline
                        .map_or_else(|| "the previous revision".to_owned(), |b| format!("revision {b}"));
                    let error = OperationError {
                        code: berth_api::OperationErrorCode::RolloutInterrupted.as_str().into(),
                        step: format!("step {} of {}", rollout.status.step, rollout.status.steps),
                        message: format!(
                            "the server stopped during the {} rollout of revision {}; it was rolled back and {baseline} serves all traffic. Send the change again.",
                            rollout.status.strategy.as_str(),
                            rollout.status.candidate
                        ),
                        output: Vec::new(),
                    };
                    let text = serde_json::to_string(&error).map_err(corrupt("operation error"))?;
                    tx.execute(
                        "UPDATE operations SET state = 'RolledBack', end_time = ?1, error = ?2 WHERE id = ?3",
                        params![now, text, id],
                    )
                    .map_err(db("roll back interrupted operation"))?;
                    tx.execute(
                        "UPDATE services SET state = ?3, traffic = NULL, updated_time = ?1 WHERE name = ?2 AND serving_revision IS NOT NULL",
                        params![now, op.service, state::after(Event::RolledBack { serving: true }).as_str()],
                    )
                    .map_err(db("record interrupted rollout"))?;
                    append_event(&tx, &id, &now, 0, "RolledBack: the server stopped during the rollout's bake")?;
                    out.push(find_operation(&tx, &id, u64::MAX)?);
                    continue;
                }
                let error = OperationError {
                    code: berth_api::OperationErrorCode::ServerRestarted.as_str().into(),
                    step: "run the operation".into(),
                    message: "the server stopped while this operation ran; the service keeps serving its previous revision. Send the change again.".into(),
                    output: Vec::new(),
                };
                let text = serde_json::to_string(&error).map_err(corrupt("operation error"))?;
                tx.execute(
                    "UPDATE operations SET state = 'Failed', end_time = ?1, error = ?2 WHERE id = ?3",
                    params![now, text, id],
                )
                .map_err(db("fail interrupted operation"))?;
                tx.execute(
                    "UPDATE services SET state = ?4, error = ?1, updated_time = ?2 WHERE name = ?3",
                    params![text, now, op.service, state::after(Event::Interrupted).as_str()],
                )
                .map_err(db("record interrupted operation"))?;
                append_event(&tx, &id, &now, 0, "Failed: the server stopped while this operation ran")?;
                refresh_model_references(&tx, &op.service)?;
                out.push(find_operation(&tx, &id, u64::MAX)?);
            }
            tx.commit().map_err(db("commit interrupted scan"))?;
            Ok(out)
        })
        .await
    }

    async fn set_rollout(&self, id: &str, rollout: &StoredRollout) -> Result<()> {
        let id = id.to_owned();
        let text = serde_json::to_string(rollout).map_err(corrupt("operation rollout"))?;
        let fence = self.fence.clone();
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db("begin rollout record"))?;
            super::sqlite_cluster::check_fence(&tx, fence.as_deref())?;
            tx.execute(
                "UPDATE operations SET rollout = ?1 WHERE id = ?2",
                params![text, id],
            )
            .map_err(db("record rollout"))?;
            tx.commit().map_err(db("commit rollout record"))
        })
        .await
    }

    async fn stage_revision(
        &self,
        name: &str,
        spec: &ServiceSpec,
        based_on: u32,
        now: &str,
    ) -> Result<u32> {
        let (name, now) = (name.to_owned(), now.to_owned());
        let text = serde_json::to_string(spec).map_err(corrupt("revision spec"))?;
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db("begin stage revision"))?;
            let service = find_service(&tx, &name)?
                .ok_or_else(|| StoreError::ServiceNotFound(name.clone()))?;
            refuse_if_busy(&tx, &name)?;
            if service.latest_revision != based_on {
                return Err(StoreError::Moved {
                    service: name.clone(),
                    now: service.serving_revision,
                });
            }
            let number = service.latest_revision + 1;
            tx.execute(
                "INSERT INTO revisions (service, number, spec, created_time) VALUES (?1, ?2, ?3, ?4)",
                params![name, number, text, now],
            )
            .map_err(db("write revision"))?;
            tx.execute(
                "UPDATE services SET latest_revision = ?1, updated_time = ?2 WHERE name = ?3",
                params![number, now, name],
            )
            .map_err(db("record latest revision"))?;
            tx.commit().map_err(db("commit stage revision"))?;
            Ok(number)
        })
        .await
    }

    async fn set_service_state(&self, name: &str, observed: ServiceState) -> Result<()> {
        let name = name.to_owned();
        let fence = self.fence.clone();
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db("begin service state"))?;
            super::sqlite_cluster::check_fence(&tx, fence.as_deref())?;
            let follows =
                find_service(&tx, &name)?.is_some_and(|s| state::follows_replicas(s.state));
            if follows {
                tx.execute(
                    "UPDATE services SET state = ?1 WHERE name = ?2",
                    params![observed.as_str(), name],
                )
                .map_err(db("record service state"))?;
            }
            tx.commit().map_err(db("commit service state"))?;
            Ok(())
        })
        .await
    }
}
