//! PostgreSQL implementation of [`ServiceStore`]. Every change of a service
//! first locks its row (`FOR UPDATE`), so concurrent changes of one service run
//! one after the other and the loser sees the winner's operation (409); the
//! unique partial index `one_active_operation_per_service` backs the rule.

use std::collections::BTreeSet;

use async_trait::async_trait;
use berth_api::{
    Operation, OperationError, OperationEvent, OperationType, ServiceKeys, ServiceSpec,
    ServiceState,
};
use tokio_postgres::{GenericClient, Transaction};

use super::{PgStore, col, corrupt, db, i64_of, u32_of, u64_of, unique_violation};
use crate::domain::state::{self, Event};
use crate::store::services::OperationRow;
use crate::store::{
    NewService, OperationOutcome, Result, ServiceChange, ServiceStore, StoreError, StoredRollout,
    StoredService,
};

const SERVICE_COLUMNS: &str = "name, description, tags, properties, created_time, updated_time, \
     latest_revision, serving_revision, state, error, primary_key, secondary_key, last_operation, traffic";

fn opt_u32(value: Option<i64>, what: &'static str) -> Result<Option<u32>> {
    value.map(|v| u32_of(v, what)).transpose()
}

fn service_of(row: &tokio_postgres::Row) -> Result<StoredService> {
    let tags: String = col(row, 2)?;
    let properties: String = col(row, 3)?;
    let state: String = col(row, 8)?;
    let error: Option<String> = col(row, 9)?;
    let traffic: Option<String> = col(row, 13)?;
    Ok(StoredService {
        name: col(row, 0)?,
        description: col(row, 1)?,
        tags: serde_json::from_str(&tags).map_err(corrupt("service tags"))?,
        properties: serde_json::from_str(&properties).map_err(corrupt("service properties"))?,
        created_time: col(row, 4)?,
        updated_time: col(row, 5)?,
        latest_revision: u32_of(col(row, 6)?, "latest revision")?,
        serving_revision: opt_u32(col(row, 7)?, "serving revision")?,
        state: ServiceState::parse(&state).ok_or_else(|| StoreError::Corrupt {
            what: "service state",
            detail: state.clone(),
        })?,
        error: error
            .map(|e| serde_json::from_str(&e))
            .transpose()
            .map_err(corrupt("service error"))?,
        keys: ServiceKeys {
            primary_key: col(row, 10)?,
            secondary_key: col(row, 11)?,
        },
        last_operation: col(row, 12)?,
        traffic: traffic
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(corrupt("service traffic"))?,
    })
}

async fn find_service(client: &impl GenericClient, name: &str) -> Result<Option<StoredService>> {
    client
        .query_opt(
            &format!("SELECT {SERVICE_COLUMNS} FROM services WHERE name = $1"),
            &[&name],
        )
        .await
        .map_err(db("read service"))?
        .as_ref()
        .map(service_of)
        .transpose()
}

/// Reads a service and locks its row until the transaction ends.
async fn lock_service(tx: &Transaction<'_>, name: &str) -> Result<Option<StoredService>> {
    tx.query_opt(
        &format!("SELECT {SERVICE_COLUMNS} FROM services WHERE name = $1 FOR UPDATE"),
        &[&name],
    )
    .await
    .map_err(db("lock service"))?
    .as_ref()
    .map(service_of)
    .transpose()
}

/// The operation in flight: its id and its kind, with the rollout it runs.
async fn active_operation(
    client: &impl GenericClient,
    service: &str,
) -> Result<Option<(String, String)>> {
    let Some(row) = client
        .query_opt(
            "SELECT id, kind, rollout FROM operations WHERE service = $1 AND state IN ('NotStarted', 'Running')",
            &[&service],
        )
        .await
        .map_err(db("read active operation"))?
    else {
        return Ok(None);
    };
    let (id, kind, rollout): (String, String, Option<String>) =
        (col(&row, 0)?, col(&row, 1)?, col(&row, 2)?);
    Ok(Some((
        id,
        crate::store::services::active_kind(kind, rollout.as_deref()),
    )))
}

async fn refuse_if_busy(client: &impl GenericClient, service: &str) -> Result<()> {
    match active_operation(client, service).await? {
        Some((operation, kind)) => Err(StoreError::OperationInProgress {
            service: service.to_owned(),
            operation,
            kind,
        }),
        None => Ok(()),
    }
}

async fn read_revision(
    client: &impl GenericClient,
    service: &str,
    number: u32,
) -> Result<ServiceSpec> {
    let row = client
        .query_opt(
            "SELECT spec FROM revisions WHERE service = $1 AND number = $2",
            &[&service, &i64::from(number)],
        )
        .await
        .map_err(db("read revision"))?
        .ok_or_else(|| StoreError::RevisionNotFound {
            service: service.to_owned(),
            revision: number,
        })?;
    let text: String = col(&row, 0)?;
    serde_json::from_str(&text).map_err(corrupt("revision spec"))
}

/// Model references = models of the serving revision and of the revision an
/// active operation rolls out. Each referenced name's counter row is share-locked
/// so a concurrent delete of the version waits for this transaction.
async fn refresh_model_references(tx: &Transaction<'_>, service: &str) -> Result<()> {
    tx.execute(
        "DELETE FROM model_references WHERE service = $1",
        &[&service],
    )
    .await
    .map_err(db("clear model references"))?;
    let mut revisions = BTreeSet::new();
    if let Some(row) = tx
        .query_opt(
            "SELECT serving_revision FROM services WHERE name = $1",
            &[&service],
        )
        .await
        .map_err(db("read serving revision"))?
        && let Some(serving) = col::<Option<i64>>(&row, 0)?
    {
        revisions.insert(u32_of(serving, "serving revision")?);
    }
    if let Some(row) = tx
        .query_opt(
            "SELECT target_revision FROM operations WHERE service = $1 AND state IN ('NotStarted', 'Running')",
            &[&service],
        )
        .await
        .map_err(db("read target revision"))?
        && let Some(target) = col::<Option<i64>>(&row, 0)?
    {
        revisions.insert(u32_of(target, "target revision")?);
    }
    for number in revisions {
        let spec = read_revision(tx, service, number).await?;
        for id in &spec.models {
            if let Some((name, version)) = id.rsplit_once(':') {
                tx.execute(
                    "SELECT 1 FROM model_names WHERE name = $1 FOR SHARE",
                    &[&name],
                )
                .await
                .map_err(db("lock model name"))?;
                tx.execute(
                    "INSERT INTO model_references (service, model_name, model_version) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                    &[&service, &name, &i64::from(version.parse::<u32>().unwrap_or(0))],
                )
                .await
                .map_err(db("write model reference"))?;
            }
        }
    }
    Ok(())
}

async fn insert_operation(
    tx: &Transaction<'_>,
    id: &str,
    service: &str,
    kind: OperationType,
    target: Option<u32>,
    now: &str,
) -> Result<()> {
    tx.execute(
        "INSERT INTO operations (id, service, kind, state, target_revision, created_time) VALUES ($1, $2, $3, 'Running', $4, $5)",
        &[&id, &service, &kind.as_str(), &target.map(i64::from), &now],
    )
    .await
    .map_err(|source| {
        if unique_violation(&source) == Some("one_active_operation_per_service") {
            StoreError::OperationInProgress {
                service: service.to_owned(),
                operation: "(another)".into(),
                kind: "unknown".into(),
            }
        } else {
            StoreError::Database {
                step: "insert operation",
                source: Box::new(source),
            }
        }
    })?;
    tx.execute(
        "UPDATE services SET last_operation = $1, state = $4, updated_time = $2 WHERE name = $3",
        &[
            &id,
            &now,
            &service,
            &state::after(Event::OperationStarted).as_str(),
        ],
    )
    .await
    .map_err(db("mark service transitioning"))?;
    Ok(())
}

async fn find_operation(client: &impl GenericClient, id: &str, offset: u64) -> Result<Operation> {
    let row = client
        .query_opt(
            "SELECT id, service, kind, state, target_revision, created_time, end_time, error, rollout FROM operations WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(db("read operation"))?
        .ok_or_else(|| StoreError::OperationNotFound(id.to_owned()))?;
    let row = OperationRow {
        id: col(&row, 0)?,
        service: col(&row, 1)?,
        kind: col(&row, 2)?,
        state: col(&row, 3)?,
        target_revision: opt_u32(col(&row, 4)?, "target revision")?,
        created_time: col(&row, 5)?,
        end_time: col(&row, 6)?,
        error: col(&row, 7)?,
        rollout: col(&row, 8)?,
    };
    let events = client
        .query(
            "SELECT seq, time, elapsed_ms, message FROM operation_events WHERE operation = $1 AND seq >= $2 ORDER BY seq",
            &[&id, &i64_of(offset)],
        )
        .await
        .map_err(db("read operation events"))?
        .iter()
        .map(|r| {
            Ok(OperationEvent {
                seq: u64_of(col(r, 0)?, "event seq")?,
                time: col(r, 1)?,
                elapsed_ms: u64_of(col(r, 2)?, "elapsed ms")?,
                message: col(r, 3)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    row.into_operation(events)
}

/// Appends to an operation's log; the caller holds the operation's row lock
/// (or the service's), so sequence numbers are not raced.
async fn append_event(
    client: &impl GenericClient,
    id: &str,
    now: &str,
    elapsed_ms: u64,
    message: &str,
) -> Result<()> {
    client
        .execute(
            "INSERT INTO operation_events (operation, seq, time, elapsed_ms, message) \
             VALUES ($1, (SELECT COALESCE(MAX(seq) + 1, 0) FROM operation_events WHERE operation = $1), $2, $3, $4)",
            &[&id, &now, &i64_of(elapsed_ms), &message],
        )
        .await
        .map_err(db("append operation event"))?;
    Ok(())
}

async fn insert_revision(
    tx: &Transaction<'_>,
    service: &str,
    number: u32,
    spec: &str,
    now: &str,
) -> Result<()> {
    tx.execute(
        "INSERT INTO revisions (service, number, spec, created_time) VALUES ($1, $2, $3, $4)",
        &[&service, &i64::from(number), &spec, &now],
    )
    .await
    .map_err(db("insert revision"))?;
    Ok(())
}

async fn set_operation_end(
    tx: &Transaction<'_>,
    id: &str,
    state: &str,
    now: &str,
    error: Option<&str>,
) -> Result<()> {
    tx.execute(
        "UPDATE operations SET state = $1, end_time = $2, error = COALESCE($3, error) WHERE id = $4",
        &[&state, &now, &error, &id],
    )
    .await
    .map_err(db("finish operation"))?;
    Ok(())
}

#[async_trait]
impl ServiceStore for PgStore {
    async fn create_service(&self, new: NewService) -> Result<Operation> {
        let mut conn = self.conn().await?;
        let tx = super::client_mut(&mut conn)
            .transaction()
            .await
            .map_err(db("begin service create"))?;
        let spec = serde_json::to_string(&new.spec).map_err(corrupt("revision spec"))?;
        let tags = serde_json::to_string(&new.tags).map_err(corrupt("tags"))?;
        let properties = serde_json::to_string(&new.properties).map_err(corrupt("properties"))?;
        let (kind, revision) = match lock_service(&tx, &new.name).await? {
            Some(_) if !new.overwrite => return Err(StoreError::ServiceExists(new.name)),
            Some(existing) => {
                refuse_if_busy(&tx, &new.name).await?;
                let revision = existing.latest_revision + 1;
                let keys = if new.keys_given {
                    new.keys.clone()
                } else {
                    existing.keys
                };
                tx.execute(
                    "UPDATE services SET description = $1, tags = $2, properties = $3, latest_revision = $4, \
                     primary_key = $5, secondary_key = $6, error = NULL WHERE name = $7",
                    &[
                        &new.description,
                        &tags,
                        &properties,
                        &i64::from(revision),
                        &keys.primary_key,
                        &keys.secondary_key,
                        &new.name,
                    ],
                )
                .await
                .map_err(db("update service for overwrite"))?;
                (OperationType::Update, revision)
            }
            None => {
                tx.execute(
                    "INSERT INTO services (name, description, tags, properties, created_time, updated_time, \
                     latest_revision, serving_revision, state, primary_key, secondary_key) \
                     VALUES ($1, $2, $3, $4, $5, $5, 1, NULL, $8, $6, $7)",
                    &[
                        &new.name,
                        &new.description,
                        &tags,
                        &properties,
                        &new.now,
                        &new.keys.primary_key,
                        &new.keys.secondary_key,
                        &state::after(Event::OperationStarted).as_str(),
                    ],
                )
                .await
                .map_err(|source| {
                    if unique_violation(&source) == Some("services_pkey") {
                        StoreError::ServiceExists(new.name.clone())
                    } else {
                        StoreError::Database {
                            step: "insert service",
                            source: Box::new(source),
                        }
                    }
                })?;
                (OperationType::Create, 1)
            }
        };
        insert_revision(&tx, &new.name, revision, &spec, &new.now).await?;
        insert_operation(
            &tx,
            &new.operation_id,
            &new.name,
            kind,
            Some(revision),
            &new.now,
        )
        .await?;
        append_event(
            &tx,
            &new.operation_id,
            &new.now,
            0,
            &format!("{} accepted: revision {revision}", kind.as_str()),
        )
        .await?;
        refresh_model_references(&tx, &new.name).await?;
        let operation = find_operation(&tx, &new.operation_id, 0).await?;
        tx.commit().await.map_err(db("commit service create"))?;
        Ok(operation)
    }

    async fn change_service(&self, change: ServiceChange) -> Result<Operation> {
        let mut conn = self.conn().await?;
        let tx = super::client_mut(&mut conn)
            .transaction()
            .await
            .map_err(db("begin service change"))?;
        let Some(current) = lock_service(&tx, &change.name).await? else {
            return Err(StoreError::ServiceNotFound(change.name));
        };
        refuse_if_busy(&tx, &change.name).await?;
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
                insert_revision(&tx, &change.name, number, &text, &change.now).await?;
                tx.execute(
                    "UPDATE services SET latest_revision = $1 WHERE name = $2",
                    &[&i64::from(number), &change.name],
                )
                .await
                .map_err(db("record latest revision"))?;
                Some(number)
            }
            (None, Some(number)) => {
                read_revision(&tx, &change.name, number).await?;
                Some(number)
            }
            (None, None) => None,
        };
        if let Some(description) = &change.description {
            tx.execute(
                "UPDATE services SET description = $1 WHERE name = $2",
                &[description, &change.name],
            )
            .await
            .map_err(db("update description"))?;
        }
        if let Some(tags) = &change.tags {
            let text = serde_json::to_string(tags).map_err(corrupt("tags"))?;
            tx.execute(
                "UPDATE services SET tags = $1 WHERE name = $2",
                &[&text, &change.name],
            )
            .await
            .map_err(db("update tags"))?;
        }
        if let Some(properties) = &change.properties {
            let text = serde_json::to_string(properties).map_err(corrupt("properties"))?;
            tx.execute(
                "UPDATE services SET properties = $1 WHERE name = $2",
                &[&text, &change.name],
            )
            .await
            .map_err(db("update properties"))?;
        }
        if let Some(keys) = &change.keys {
            tx.execute(
                "UPDATE services SET primary_key = $1, secondary_key = $2 WHERE name = $3",
                &[&keys.primary_key, &keys.secondary_key, &change.name],
            )
            .await
            .map_err(db("update keys"))?;
        }
        insert_operation(
            &tx,
            &change.operation_id,
            &change.name,
            change.kind,
            target,
            &change.now,
        )
        .await?;
        let accepted = match target {
            Some(n) => format!("{} accepted: revision {n}", change.kind.as_str()),
            None => format!("{} accepted", change.kind.as_str()),
        };
        append_event(&tx, &change.operation_id, &change.now, 0, &accepted).await?;
        refresh_model_references(&tx, &change.name).await?;
        let operation = find_operation(&tx, &change.operation_id, 0).await?;
        tx.commit().await.map_err(db("commit service change"))?;
        Ok(operation)
    }

    async fn revisions(&self, name: &str) -> Result<Vec<(u32, String, ServiceSpec)>> {
        let conn = self.conn().await?;
        if find_service(&**conn, name).await?.is_none() {
            return Err(StoreError::ServiceNotFound(name.to_owned()));
        }
        conn.query(
            "SELECT number, created_time, spec FROM revisions WHERE service = $1 ORDER BY number",
            &[&name],
        )
        .await
        .map_err(db("list revisions"))?
        .iter()
        .map(|r| {
            let spec: String = col(r, 2)?;
            Ok((
                u32_of(col(r, 0)?, "revision")?,
                col(r, 1)?,
                serde_json::from_str(&spec).map_err(corrupt("revision spec"))?,
            ))
        })
        .collect()
    }

    async fn start_delete(&self, name: &str, operation_id: &str, now: &str) -> Result<Operation> {
        let mut conn = self.conn().await?;
        let tx = super::client_mut(&mut conn)
            .transaction()
            .await
            .map_err(db("begin service delete"))?;
        if lock_service(&tx, name).await?.is_none() {
            return Err(StoreError::ServiceNotFound(name.to_owned()));
        }
        refuse_if_busy(&tx, name).await?;
        insert_operation(&tx, operation_id, name, OperationType::Delete, None, now).await?;
        append_event(&tx, operation_id, now, 0, "Delete accepted").await?;
        let operation = find_operation(&tx, operation_id, 0).await?;
        tx.commit().await.map_err(db("commit service delete"))?;
        Ok(operation)
    }

    async fn service(&self, name: &str) -> Result<StoredService> {
        let conn = self.conn().await?;
        find_service(&**conn, name)
            .await?
            .ok_or_else(|| StoreError::ServiceNotFound(name.to_owned()))
    }

    async fn list_services(&self) -> Result<Vec<StoredService>> {
        let conn = self.conn().await?;
        conn.query(
            &format!("SELECT {SERVICE_COLUMNS} FROM services ORDER BY name"),
            &[],
        )
        .await
        .map_err(db("list services"))?
        .iter()
        .map(service_of)
        .collect()
    }

    async fn revision(&self, name: &str, number: u32) -> Result<ServiceSpec> {
        let conn = self.conn().await?;
        read_revision(&**conn, name, number).await
    }

    async fn operation(&self, id: &str, offset: u64) -> Result<Operation> {
        let conn = self.conn().await?;
        find_operation(&**conn, id, offset).await
    }

    async fn add_event(&self, id: &str, elapsed_ms: u64, message: &str) -> Result<()> {
        let mut conn = self.conn().await?;
        let tx = super::client_mut(&mut conn)
            .transaction()
            .await
            .map_err(db("begin operation event"))?;
        self.check_fence(&tx).await?;
        tx.execute("SELECT 1 FROM operations WHERE id = $1 FOR UPDATE", &[&id])
            .await
            .map_err(db("lock operation"))?;
        append_event(&tx, id, &crate::now_rfc3339(), elapsed_ms, message).await?;
        tx.commit().await.map_err(db("commit operation event"))
    }

    async fn finish_operation(&self, id: &str, outcome: OperationOutcome, now: &str) -> Result<()> {
        let mut conn = self.conn().await?;
        let tx = super::client_mut(&mut conn)
            .transaction()
            .await
            .map_err(db("begin operation finish"))?;
        self.check_fence(&tx).await?;
        let op = find_operation(&tx, id, u64::MAX).await?;
        let service = op.service.clone();
        let current = lock_service(&tx, &service).await?;
        match &outcome {
            OperationOutcome::Succeeded { serving_revision } => {
                set_operation_end(&tx, id, "Succeeded", now, None).await?;
                tx.execute(
                    "UPDATE services SET serving_revision = $1, state = $4, error = NULL, traffic = NULL, updated_time = $2 WHERE name = $3",
                    &[
                        &i64::from(*serving_revision),
                        &now,
                        &service,
                        &state::after(Event::Succeeded).as_str(),
                    ],
                )
                .await
                .map_err(db("record serving revision"))?;
                refresh_model_references(&tx, &service).await?;
            }
            OperationOutcome::Split {
                serving_revision,
                traffic,
            } => {
                set_operation_end(&tx, id, "Succeeded", now, None).await?;
                let traffic = serde_json::to_string(traffic).map_err(corrupt("service traffic"))?;
                tx.execute(
                    "UPDATE services SET serving_revision = $1, state = $5, error = NULL, traffic = $2, updated_time = $3 WHERE name = $4",
                    &[
                        &i64::from(*serving_revision),
                        &traffic,
                        &now,
                        &service,
                        &state::after(Event::Succeeded).as_str(),
                    ],
                )
                .await
                .map_err(db("record traffic split"))?;
                refresh_model_references(&tx, &service).await?;
            }
            OperationOutcome::RolledBack(error) => {
                let error = serde_json::to_string(error).map_err(corrupt("operation error"))?;
                set_operation_end(&tx, id, "RolledBack", now, Some(&error)).await?;
                let serving = current.and_then(|s| s.serving_revision).is_some();
                tx.execute(
                    "UPDATE services SET state = $3, updated_time = $1 WHERE name = $2",
                    &[
                        &now,
                        &service,
                        &state::after(Event::RolledBack { serving }).as_str(),
                    ],
                )
                .await
                .map_err(db("record rolled-back service"))?;
                refresh_model_references(&tx, &service).await?;
            }
            OperationOutcome::Failed(error) => {
                let error = serde_json::to_string(error).map_err(corrupt("operation error"))?;
                set_operation_end(&tx, id, "Failed", now, Some(&error)).await?;
                tx.execute(
                    "UPDATE services SET state = $4, error = $1, updated_time = $2 WHERE name = $3",
                    &[
                        &error,
                        &now,
                        &service,
                        &state::after(Event::Failed).as_str(),
                    ],
                )
                .await
                .map_err(db("record service failure"))?;
                refresh_model_references(&tx, &service).await?;
            }
            OperationOutcome::Completed => {
                set_operation_end(&tx, id, "Succeeded", now, None).await?;
                let event = Event::Completed {
                    serving: current.as_ref().and_then(|s| s.serving_revision).is_some(),
                    failed_before: current.as_ref().is_some_and(|s| s.error.is_some()),
                };
                tx.execute(
                    "UPDATE services SET state = $3, updated_time = $1 WHERE name = $2",
                    &[&now, &service, &state::after(event).as_str()],
                )
                .await
                .map_err(db("restore service state"))?;
            }
            OperationOutcome::Deleted => {
                set_operation_end(&tx, id, "Succeeded", now, None).await?;
                for sql in [
                    "DELETE FROM services WHERE name = $1",
                    "DELETE FROM revisions WHERE service = $1",
                    "DELETE FROM model_references WHERE service = $1",
                ] {
                    tx.execute(sql, &[&service])
                        .await
                        .map_err(db("delete service rows"))?;
                }
            }
        }
        tx.commit().await.map_err(db("commit operation finish"))
    }

    async fn fail_interrupted_operations(
        &self,
        now: &str,
        exposed: for<'r> fn(&'r StoredRollout) -> bool,
    ) -> Result<Vec<Operation>> {
        let mut conn = self.conn().await?;
        let tx = super::client_mut(&mut conn)
            .transaction()
            .await
            .map_err(db("begin interrupted scan"))?;
        self.check_fence(&tx).await?;
        let rows = tx
            .query(
                "SELECT id, rollout FROM operations WHERE state IN ('NotStarted', 'Running') ORDER BY created_time, id FOR UPDATE",
                &[],
            )
            .await
            .map_err(db("scan interrupted operations"))?;
        let mut out = Vec::new();
        for row in rows {
            let id: String = col(&row, 0)?;
            let rollout: Option<String> = col(&row, 1)?;
            let op = find_operation(&tx, &id, u64::MAX).await?;
            let stored: Option<StoredRollout> = rollout
                .map(|text| serde_json::from_str(&text))
                .transpose()
                .map_err(corrupt("operation rollout"))?;
            if let Some(rollout) = stored.filter(exposed) {
                let baseline = rollout.status.baseline.map_or_else(
                    || "the previous revision".to_owned(),
                    |b| format!("revision {b}"),
                );
                let error = OperationError {
                    code: berth_api::OperationErrorCode::RolloutInterrupted
                        .as_str()
                        .into(),
                    step: format!("step {} of {}", rollout.status.step, rollout.status.steps),
                    message: format!(
                        "the server stopped during the {} rollout of revision {}; it was rolled back and {baseline} serves all traffic. Send the change again.",
                        rollout.status.strategy.as_str(),
                        rollout.status.candidate
                    ),
                    output: Vec::new(),
                };
                let text = serde_json::to_string(&error).map_err(corrupt("operation error"))?;
                set_operation_end(&tx, &id, "RolledBack", now, Some(&text)).await?;
                tx.execute(
                    "UPDATE services SET state = $3, traffic = NULL, updated_time = $1 WHERE name = $2 AND serving_revision IS NOT NULL",
                    &[
                        &now,
                        &op.service,
                        &state::after(Event::RolledBack { serving: true }).as_str(),
                    ],
                )
                .await
                .map_err(db("record interrupted rollout"))?;
                append_event(
                    &tx,
                    &id,
                    now,
                    0,
                    "RolledBack: the server stopped during the rollout's bake",
                )
                .await?;
                out.push(find_operation(&tx, &id, u64::MAX).await?);
                continue;
            }
            let error = OperationError {
                code: berth_api::OperationErrorCode::ServerRestarted.as_str().into(),
                step: "run the operation".into(),
                message: "the server stopped while this operation ran; the service keeps serving its previous revision. Send the change again.".into(),
                output: Vec::new(),
            };
            let text = serde_json::to_string(&error).map_err(corrupt("operation error"))?;
            set_operation_end(&tx, &id, "Failed", now, Some(&text)).await?;
            tx.execute(
                "UPDATE services SET state = $4, error = $1, updated_time = $2 WHERE name = $3",
                &[
                    &text,
                    &now,
                    &op.service,
                    &state::after(Event::Interrupted).as_str(),
                ],
            )
            .await
            .map_err(db("record interrupted operation"))?;
            append_event(
                &tx,
                &id,
                now,
                0,
                "Failed: the server stopped while this operation ran",
            )
            .await?;
            refresh_model_references(&tx, &op.service).await?;
            out.push(find_operation(&tx, &id, u64::MAX).await?);
        }
        tx.commit().await.map_err(db("commit interrupted scan"))?;
        Ok(out)
    }

    async fn start_traffic_change(
        &self,
        name: &str,
        operation_id: &str,
        traffic: &[berth_api::TrafficShare],
        now: &str,
    ) -> Result<Operation> {
        let text = serde_json::to_string(traffic).map_err(corrupt("traffic split"))?;
        let stable = traffic.first().map(|t| t.revision);
        let mut conn = self.conn().await?;
        let tx = super::client_mut(&mut conn)
            .transaction()
            .await
            .map_err(db("begin traffic change"))?;
        if lock_service(&tx, name).await?.is_none() {
            return Err(StoreError::ServiceNotFound(name.to_owned()));
        }
        refuse_if_busy(&tx, name).await?;
        insert_operation(&tx, operation_id, name, OperationType::Traffic, stable, now).await?;
        tx.execute(
            "UPDATE operations SET traffic = $1 WHERE id = $2",
            &[&text, &operation_id],
        )
        .await
        .map_err(db("record traffic split"))?;
        append_event(&tx, operation_id, now, 0, "Traffic change accepted").await?;
        let operation = find_operation(&tx, operation_id, 0).await?;
        tx.commit().await.map_err(db("commit traffic change"))?;
        Ok(operation)
    }

    async fn requested_traffic(&self, operation_id: &str) -> Result<Vec<berth_api::TrafficShare>> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                "SELECT traffic FROM operations WHERE id = $1",
                &[&operation_id],
            )
            .await
            .map_err(db("read traffic split"))?
            .ok_or_else(|| StoreError::OperationNotFound(operation_id.to_owned()))?;
        let text: Option<String> = col(&row, 0)?;
        text.map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(corrupt("traffic split"))
            .map(Option::unwrap_or_default)
    }

    async fn set_rollout(&self, id: &str, rollout: &StoredRollout) -> Result<()> {
        let text = serde_json::to_string(rollout).map_err(corrupt("operation rollout"))?;
        let mut conn = self.conn().await?;
        let tx = super::client_mut(&mut conn)
            .transaction()
            .await
            .map_err(db("begin rollout record"))?;
        self.check_fence(&tx).await?;
        tx.execute(
            "UPDATE operations SET rollout = $1 WHERE id = $2",
            &[&text, &id],
        )
        .await
        .map_err(db("record rollout"))?;
        tx.commit().await.map_err(db("commit rollout record"))
    }

    async fn stage_revision(
        &self,
        name: &str,
        spec: &ServiceSpec,
        based_on: u32,
        now: &str,
    ) -> Result<u32> {
        let text = serde_json::to_string(spec).map_err(corrupt("revision spec"))?;
        let mut conn = self.conn().await?;
        let tx = super::client_mut(&mut conn)
            .transaction()
            .await
            .map_err(db("begin stage revision"))?;
        let service = lock_service(&tx, name)
            .await?
            .ok_or_else(|| StoreError::ServiceNotFound(name.to_owned()))?;
        refuse_if_busy(&tx, name).await?;
        if service.latest_revision != based_on {
            return Err(StoreError::Moved {
                service: name.to_owned(),
                now: service.serving_revision,
            });
        }
        let number = service.latest_revision + 1;
        insert_revision(&tx, name, number, &text, now).await?;
        tx.execute(
            "UPDATE services SET latest_revision = $1, updated_time = $2 WHERE name = $3",
            &[&i64::from(number), &now, &name],
        )
        .await
        .map_err(db("record latest revision"))?;
        tx.commit().await.map_err(db("commit stage revision"))?;
        Ok(number)
    }

    async fn set_service_state(&self, name: &str, observed: ServiceState) -> Result<()> {
        let mut conn = self.conn().await?;
        let tx = super::client_mut(&mut conn)
            .transaction()
            .await
            .map_err(db("begin service state"))?;
        self.check_fence(&tx).await?;
        let follows = lock_service(&tx, name)
            .await?
            .is_some_and(|s| state::follows_replicas(s.state));
        if follows {
            tx.execute(
                "UPDATE services SET state = $1 WHERE name = $2",
                &[&observed.as_str(), &name],
            )
            .await
            .map_err(db("record service state"))?;
        }
        tx.commit().await.map_err(db("commit service state"))
    }
}
