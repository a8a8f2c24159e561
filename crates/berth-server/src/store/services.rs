//! Persistence of services, revisions and operations: the `ServiceStore` trait.

use std::collections::BTreeMap;

use async_trait::async_trait;
use berth_api::{
    Operation, OperationError, OperationEvent, OperationState, OperationType, ServiceKeys,
    ServiceSpec, ServiceState,
};

use super::{Result, StoreError, corrupt};

/// A service row.
#[derive(Debug, Clone)]
pub struct StoredService {
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Properties.
    pub properties: BTreeMap<String, String>,
    /// RFC 3339.
    pub created_time: String,
    /// RFC 3339.
    pub updated_time: String,
    /// Newest revision.
    pub latest_revision: u32,
    /// Revision answering requests.
    pub serving_revision: Option<u32>,
    /// State.
    pub state: ServiceState,
    /// Last failure.
    pub error: Option<OperationError>,
    /// Scoring keys.
    pub keys: ServiceKeys,
    /// Running or last operation.
    pub last_operation: Option<String>,
    /// A hand-set traffic split across serving revisions (`None`: the serving
    /// revision takes all traffic).
    pub traffic: Option<Vec<berth_api::TrafficShare>>,
}

/// A rollout's state as stored with its operation at every step.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredRollout {
    /// What users see.
    pub status: berth_api::RolloutStatus,
    /// The reconciler's own progress record (opaque to the store).
    pub progress: serde_json::Value,
}

/// A create (or overwrite) request, validated.
#[derive(Debug, Clone)]
pub struct NewService {
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Properties.
    pub properties: BTreeMap<String, String>,
    /// The revision's spec.
    pub spec: ServiceSpec,
    /// Keys given in the deployment config (the rest are generated).
    pub keys: ServiceKeys,
    /// Whether the config named keys explicitly (an overwrite then replaces them).
    pub keys_given: bool,
    /// Replace an existing service of this name.
    pub overwrite: bool,
    /// New operation id.
    pub operation_id: String,
    /// RFC 3339.
    pub now: String,
}

/// A change to an existing service: an update (new revision), a rollback or a
/// redeploy (an existing revision). Written with its operation in one transaction.
#[derive(Debug, Clone)]
pub struct ServiceChange {
    /// Service.
    pub name: String,
    /// Kind of operation.
    pub kind: OperationType,
    /// New operation id.
    pub operation_id: String,
    /// RFC 3339.
    pub now: String,
    /// The revision the change was computed from; the change is refused (409)
    /// when the service moved on meanwhile.
    pub based_on: Option<u32>,
    /// A new revision to write and roll out.
    pub new_revision: Option<ServiceSpec>,
    /// Otherwise: the existing revision to roll out.
    pub target: Option<u32>,
    /// New description.
    pub description: Option<String>,
    /// New tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// New properties (already checked add-only).
    pub properties: Option<BTreeMap<String, String>>,
    /// New keys.
    pub keys: Option<ServiceKeys>,
}

/// How an operation ended.
#[derive(Debug, Clone)]
pub enum OperationOutcome {
    /// The service now serves this revision.
    Succeeded {
        /// Serving revision.
        serving_revision: u32,
    },
    /// Failed; the serving revision is unchanged.
    Failed(OperationError),
    /// A progressive rollout was rolled back (a gate, an abort); the serving
    /// revision is unchanged and the service is healthy on it.
    RolledBack(OperationError),
    /// A hand-set split now serves; `serving_revision` is its stable revision.
    Split {
        /// The stable revision.
        serving_revision: u32,
        /// Every revision with its weight.
        traffic: Vec<berth_api::TrafficShare>,
    },
    /// The service was deleted.
    Deleted,
    /// Done without changing the serving revision (a key change).
    Completed,
}

/// Service persistence.
#[async_trait]
pub trait ServiceStore: Send + Sync + 'static {
    /// Creates a service (revision 1), or with `overwrite` adds a revision to an
    /// existing one; either way starts one operation. Refused while another
    /// operation of the service runs.
    async fn create_service(&self, new: NewService) -> Result<Operation>;
    /// Records a change and starts its operation; refused while another runs.
    async fn change_service(&self, change: ServiceChange) -> Result<Operation>;
    /// Every revision of a service, oldest first.
    async fn revisions(&self, name: &str) -> Result<Vec<(u32, String, ServiceSpec)>>;
    /// Starts deleting a service.
    async fn start_delete(&self, name: &str, operation_id: &str, now: &str) -> Result<Operation>;
    /// A service.
    async fn service(&self, name: &str) -> Result<StoredService>;
    /// All services, by name.
    async fn list_services(&self) -> Result<Vec<StoredService>>;
    /// A revision's spec.
    async fn revision(&self, name: &str, number: u32) -> Result<ServiceSpec>;
    /// An operation with its events from `offset` on.
    async fn operation(&self, id: &str, offset: u64) -> Result<Operation>;
    /// Appends a line to an operation's log.
    async fn add_event(&self, id: &str, elapsed_ms: u64, message: &str) -> Result<()>;
    /// Ends an operation and applies its outcome to the service.
    async fn finish_operation(&self, id: &str, outcome: OperationOutcome, now: &str) -> Result<()>;
    /// Ends operations cut off by a restart, returning them: `RolledBack` when
    /// `exposed` says its stored rollout had given the candidate traffic (the
    /// service stays healthy on its serving revision), else `Failed`.
    async fn fail_interrupted_operations(
        &self,
        now: &str,
        exposed: for<'r> fn(&'r StoredRollout) -> bool,
    ) -> Result<Vec<Operation>>;
    /// Starts a `Traffic` operation applying `traffic` (the first entry is the
    /// stable revision); refused while another operation runs.
    async fn start_traffic_change(
        &self,
        name: &str,
        operation_id: &str,
        traffic: &[berth_api::TrafficShare],
        now: &str,
    ) -> Result<Operation>;
    /// The split a `Traffic` operation applies.
    async fn requested_traffic(&self, operation_id: &str) -> Result<Vec<berth_api::TrafficShare>>;
    /// Stores the state of an operation's rollout.
    async fn set_rollout(&self, id: &str, rollout: &StoredRollout) -> Result<()>;
    /// Writes a new revision without serving it (refused while an operation
    /// runs, or when the service's newest revision is no longer `based_on`).
    async fn stage_revision(
        &self,
        name: &str,
        spec: &ServiceSpec,
        based_on: u32,
        now: &str,
    ) -> Result<u32>;
    /// Records the observed state of a serving service (Healthy/Unhealthy).
    async fn set_service_state(&self, name: &str, state: ServiceState) -> Result<()>;
}

/// How a running operation is named in a 409: its kind, and the rollout it runs
/// (strategy, candidate, step, weights and how to end it early) when it has one
/// (`rollout`: the stored JSON; unreadable JSON names the kind alone).
pub(crate) fn active_kind(kind: String, rollout: Option<&str>) -> String {
    let Some(r) = rollout.and_then(|text| serde_json::from_str::<StoredRollout>(text).ok()) else {
        return kind;
    };
    let weights: Vec<String> = r
        .status
        .weights
        .iter()
        .map(|(rev, w)| format!("{rev}={w}"))
        .collect();
    format!(
        "{kind}: {} rollout of revision {}, step {} of {}, weights {}; `berth service promote` or `berth service abort` ends it early",
        r.status.strategy.as_str(),
        r.status.candidate,
        r.status.step,
        r.status.steps,
        weights.join(" ")
    )
}

/// An `operations` row as either backend reads it, before its coded columns are decoded.
pub(crate) struct OperationRow {
    pub id: String,
    pub service: String,
    pub kind: String,
    pub state: String,
    pub target_revision: Option<u32>,
    pub created_time: String,
    pub end_time: Option<String>,
    /// JSON [`OperationError`].
    pub error: Option<String>,
    /// JSON [`StoredRollout`].
    pub rollout: Option<String>,
}

impl OperationRow {
    /// The operation, with its log from `events`.
    pub(crate) fn into_operation(self, events: Vec<OperationEvent>) -> Result<Operation> {
        Ok(Operation {
            operation_type: OperationType::parse(&self.kind).ok_or(StoreError::Corrupt {
                what: "operation type",
                detail: self.kind,
            })?,
            state: OperationState::parse(&self.state).ok_or(StoreError::Corrupt {
                what: "operation state",
                detail: self.state,
            })?,
            id: self.id,
            service: self.service,
            target_revision: self.target_revision,
            created_time: self.created_time,
            end_time: self.end_time,
            error: self
                .error
                .map(|e| serde_json::from_str::<OperationError>(&e))
                .transpose()
                .map_err(corrupt("operation error"))?,
            rollout: self
                .rollout
                .map(|r| serde_json::from_str::<StoredRollout>(&r))
                .transpose()
                .map_err(corrupt("operation rollout"))?
                .map(|r| r.status),
            events,
        })
    }
}
