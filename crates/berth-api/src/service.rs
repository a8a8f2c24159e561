//! Services, their revisions and the operations that change them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::deployment::DeploymentSettings;

/// Observed state of a service (the reference's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ServiceState {
    /// An operation is changing it.
    Transitioning,
    /// Serving with every desired replica ready.
    Healthy,
    /// Serving, with fewer ready replicas than desired (or none).
    Unhealthy,
    /// The last operation failed.
    Failed,
}

/// The inference part of a revision: what code runs, in which environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InferenceSpec {
    /// Entry script, relative to the source directory.
    pub entry_script: String,
    /// The uploaded source directory (`sha256:<hex>`).
    pub source_snapshot: String,
    /// Basename of the source directory (`AZUREML_SOURCE_DIRECTORY`); `None`
    /// when the files sit at the app root.
    pub source_directory_name: Option<String>,
    /// Environment, `name:version`.
    pub environment: String,
}

/// Everything a revision runs: immutable once written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Models, `name:version`, in the order given.
    pub models: Vec<String>,
    /// The references the models were asked for, one per model (`m@champion`,
    /// `m:7`), present when one of them follows an alias or `@latest`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_references: Vec<String>,
    /// Code and environment.
    pub inference: InferenceSpec,
    /// How it runs.
    pub deployment: DeploymentSettings,
}

/// The inference config of a create request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InferenceConfigRequest {
    /// Entry script, relative to the source directory.
    pub entry_script: String,
    /// An uploaded snapshot (`POST /v1/snapshots`) holding the source directory.
    pub source_snapshot: String,
    /// Basename of the source directory.
    #[serde(default)]
    pub source_directory_name: Option<String>,
    /// `name`, `name:version` or `name:latest`; the workspace default
    /// environment (the server's Python, no packages) when absent.
    #[serde(default)]
    pub environment: Option<String>,
}

/// `POST /v1/services`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateServiceRequest {
    /// Service name: 3–32 characters, `^[a-z]([-a-z0-9]*[a-z0-9])?$`.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Models: `name:version`, `name:latest` or `name`.
    #[serde(default)]
    pub models: Vec<String>,
    /// Entry script, source and environment. Absent: a no-code deployment of
    /// the single model, which must be registered with framework `Onnx`,
    /// `ScikitLearn` or `TensorFlow` (a built-in scorer and environment).
    #[serde(default)]
    pub inference_config: Option<InferenceConfigRequest>,
    /// An Azure ML `deploymentconfig.json` object; defaults when absent.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub deployment_config: Option<serde_json::Value>,
    /// Replace a service of the same name.
    #[serde(default)]
    pub overwrite: bool,
}

/// Kinds of operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum OperationType {
    /// First revision.
    Create,
    /// New revision.
    Update,
    /// Remove the service.
    Delete,
    /// Serve an older revision again.
    Rollback,
    /// Fresh replicas of the serving revision.
    Redeploy,
    /// New scoring key.
    RegenerateKey,
    /// A hand-set traffic split across serving revisions.
    Traffic,
}

/// Operation states (the reference's names; the last four are terminal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum OperationState {
    /// Accepted, not started.
    NotStarted,
    /// Running.
    Running,
    /// Done.
    Succeeded,
    /// Failed; see `error`.
    Failed,
    /// A gate failed during a progressive rollout and traffic went back to the
    /// previous revision; see `error` for the gate, threshold and measured value.
    RolledBack,
    /// Cancelled.
    Cancelled,
    /// Took too long.
    TimedOut,
}

impl OperationState {
    /// Whether the operation has ended.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::NotStarted | Self::Running)
    }
}

/// The stable codes of [`OperationError::code`]: why an operation failed or
/// was rolled back. On the wire the code is its name (a string), so clients
/// keep working when a code is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationErrorCode {
    /// Something Berth did not expect (a store or lay-out error); see the message.
    InternalError,
    /// The environment could not be built.
    EnvironmentBuildFailed,
    /// The revision's files could not be laid out.
    RevisionLayoutFailed,
    /// The service's own port is taken.
    PortUnavailable,
    /// A model the revision names is gone.
    ModelNotFound,
    /// The revision's source snapshot is gone.
    SnapshotNotFound,
    /// `init()` raised or the entry script failed to load.
    CrashLoopBackOff,
    /// The entry script breaks the contract (no `init`/`run`).
    EntryScriptInvalid,
    /// A replica did not start.
    ReplicaStartFailed,
    /// A replica did not become ready within the readiness limit.
    DeploymentTimedOut,
    /// Not enough GPUs.
    Unschedulable,
    /// The replica's resource group could not be set up.
    ResourceLimitsFailed,
    /// A replica went over its memory limit while starting.
    MemoryLimitExceeded,
    /// `--worker-isolation strict` and the sandbox is incomplete.
    IsolationUnavailable,
    /// A rollout's gate failed: traffic went back to the previous revision.
    GateFailed,
    /// A rollout was aborted: traffic went back to the previous revision.
    RolloutAborted,
    /// The server stopped during a rollout's bake: rolled back.
    RolloutInterrupted,
    /// The server stopped while the operation ran.
    ServerRestarted,
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationError {
    /// Stable code, e.g. `EnvironmentBuildFailed`, `CrashLoopBackOff`.
    pub code: String,
    /// The step that failed.
    pub step: String,
    /// What happened.
    pub message: String,
    /// The worker's or builder's output (traceback, pip error), last lines.
    #[serde(default)]
    pub output: Vec<String>,
}

impl OperationError {
    /// An error with `code` at `step`.
    pub fn new(
        code: OperationErrorCode,
        step: impl Into<String>,
        message: impl Into<String>,
        output: Vec<String>,
    ) -> Self {
        Self {
            code: code.as_str().to_owned(),
            step: step.into(),
            message: message.into(),
            output,
        }
    }

    /// The typed code (`None` for a code this build does not know).
    pub fn typed_code(&self) -> Option<OperationErrorCode> {
        OperationErrorCode::parse(&self.code)
    }
}

/// One line of an operation's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationEvent {
    /// Position, from 0.
    pub seq: u64,
    /// RFC 3339 time.
    pub time: String,
    /// Milliseconds since the operation started.
    pub elapsed_ms: u64,
    /// What happened.
    pub message: String,
}

/// An asynchronous change to a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// Id (uuid).
    pub id: String,
    /// Kind.
    pub operation_type: OperationType,
    /// State.
    pub state: OperationState,
    /// The service.
    pub service: String,
    /// The revision it rolls out, if any.
    pub target_revision: Option<u32>,
    /// RFC 3339.
    pub created_time: String,
    /// RFC 3339, once ended.
    pub end_time: Option<String>,
    /// Why it failed (or, `RolledBack`, which gate failed: its threshold and
    /// the measured value).
    pub error: Option<OperationError>,
    /// A progressive rollout's step, weights and gate figures (the last ones
    /// stored, once it ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::rollout::RolloutStatus>,
    /// Its log, from `?offset=N` on.
    #[serde(default)]
    pub events: Vec<OperationEvent>,
}

/// Replica counts and why they are what they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    /// Replicas wanted (with autoscale: the autoscaler's current choice).
    pub desired_replicas: u32,
    /// Replicas ready to score.
    pub available_replicas: u32,
    /// Replica processes of the serving revision, ready or not.
    #[serde(default)]
    pub current_replicas: u32,
    /// Replica restarts since the serving revision started.
    #[serde(default)]
    pub restarts: u64,
    /// Why fewer replicas than desired are ready (crash loop, probe failures,
    /// memory kills), when they are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Mean utilisation over the last autoscale window, percent of capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization: Option<f64>,
    /// The autoscaler's last change of the replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scaling: Option<ScalingDecision>,
}

/// One change of a service's replica count by the autoscaler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingDecision {
    /// RFC 3339.
    pub time: String,
    /// Replicas before.
    pub from: u32,
    /// Replicas after.
    pub to: u32,
    /// Why, with the measured utilisation and the target.
    pub reason: String,
    /// Whether the new count was reached (`false`: a replica failed to start).
    pub applied: bool,
}

/// A service as `GET /v1/services/{name}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Properties.
    pub properties: BTreeMap<String, String>,
    /// State.
    pub state: ServiceState,
    /// RFC 3339.
    pub created_time: String,
    /// RFC 3339.
    pub updated_time: String,
    /// Workspace name.
    pub workspace_name: String,
    /// `POST` here to score.
    pub scoring_uri: Option<String>,
    /// The generated (or shipped) swagger document.
    pub swagger_uri: Option<String>,
    /// The revision answering requests (during a rollout: the stable one, until
    /// the candidate is promoted).
    pub serving_revision: Option<u32>,
    /// Every revision that takes requests, with its weight (one entry at 100
    /// outside rollouts and splits).
    #[serde(default)]
    pub traffic: Vec<crate::rollout::TrafficShare>,
    /// The running rollout: step, weights and gate figures so far. On the wire
    /// `rolloutStatus`: the flattened settings hold the revision's `rollout` block.
    #[serde(
        default,
        rename = "rolloutStatus",
        skip_serializing_if = "Option::is_none"
    )]
    pub rollout: Option<crate::rollout::RolloutStatus>,
    /// Shadow traffic figures, while requests are mirrored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<crate::rollout::MirrorStatus>,
    /// The newest revision.
    pub latest_revision: u32,
    /// Models of the serving (else newest) revision.
    pub models: Vec<String>,
    /// The model references the service follows (`m@champion`, `m@latest`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub follows: Vec<Follow>,
    /// Environment of the serving (else newest) revision.
    pub environment: String,
    /// Entry script of the serving (else newest) revision.
    pub entry_script: String,
    /// Replica counts.
    pub deployment_status: DeploymentStatus,
    /// The last failure, when `state` is `Failed`.
    pub error: Option<OperationError>,
    /// The running or last operation.
    pub operation_id: Option<String>,
    /// Settings of the serving (else newest) revision.
    #[serde(flatten)]
    pub settings: DeploymentSettings,
    /// How this server enforces the resource settings, the GPUs assigned, and
    /// the last replica killed for going over its limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceStatus>,
}

/// A model reference a service follows, and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Follow {
    /// `m@champion` or `m@latest`.
    pub reference: String,
    /// The version the service serves.
    pub version: u32,
    /// `auto` or `manual` (the service's `followPolicy`).
    pub policy: crate::deployment::FollowPolicy,
    /// The version the reference points at now, when it differs and is not
    /// rejected (`manual`: `berth service update -n S --follow` applies it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<u32>,
    /// A version waiting for the running operation to end (`auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<u32>,
    /// A version whose automatic rollout failed or was rolled back on this
    /// service; it is not retried until the reference moves to another version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<u32>,
}

/// How the local target enforces resources (`--resource-enforcement`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceEnforcement {
    /// cgroup v2 groups: `cpu.weight`, `cpu.max`, `memory.low`, `memory.max`.
    CgroupV2,
    /// cgroup v1 groups: `cpu.shares`, CFS quota, memory soft and hard limits.
    CgroupV1,
    /// Best effort: CPU affinity and a memory watchdog in the server.
    Rlimit,
    /// Nothing is enforced.
    Off,
}

impl ResourceEnforcement {
    /// The name as shown and accepted by `--resource-enforcement`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CgroupV2 => "cgroup-v2",
            Self::CgroupV1 => "cgroup-v1",
            Self::Rlimit => "rlimit",
            Self::Off => "off",
        }
    }
}

/// What each resource setting of a service is mapped to on this server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// The enforcement mode of the server.
    pub enforcement: ResourceEnforcement,
    /// What `cpu` (the request) becomes.
    pub cpu: String,
    /// What `cpuLimit` becomes (no limit means no cap).
    pub cpu_limit: String,
    /// What `memoryInGB` (the request) becomes.
    pub memory: String,
    /// What `memoryInGBLimit` becomes (no limit means no cap).
    pub memory_limit: String,
    /// What `gpu` becomes.
    pub gpu: String,
    /// GPU ids assigned to the running replicas, as `r<revision>/<replica>=<ids>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu_ids: Vec<String>,
    /// The last replica killed for going over its memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_limit_kill: Option<LimitKill>,
    /// The sandbox the replicas run in (`off`, or the mode and what is applied).
    #[serde(default)]
    pub isolation: String,
    /// What `maxProcessesPerContainer` becomes.
    #[serde(default)]
    pub processes: String,
}

/// A replica killed for going over a resource limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitKill {
    /// Revision of the replica.
    pub revision: u32,
    /// Replica index.
    pub replica: u32,
    /// RFC 3339 time of the kill.
    pub time: String,
    /// What happened, e.g. `killed: memory 268 MB over the memoryInGBLimit ...`.
    pub reason: String,
}

/// `GET /v1/services` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceList {
    /// Services by name.
    pub value: Vec<Service>,
}

/// `GET /v1/services/{name}/logs` answer (the reference's shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceLogs {
    /// The log text, oldest line first.
    pub content: String,
}

/// Scoring keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceKeys {
    /// Primary key.
    pub primary_key: String,
    /// Secondary key.
    pub secondary_key: String,
}

/// Answer of create/update/delete: the operation started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationAccepted {
    /// The operation.
    pub operation: Operation,
    /// Settings accepted but not used, and other notes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// `POST /v1/services/{name}/regenerateKeys` body (the reference's shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegenerateKeyRequest {
    /// `Primary` or `Secondary` (any case).
    pub key_type: String,
    /// The new key; a random one when absent.
    #[serde(default)]
    pub key_value: Option<String>,
}

/// `POST /v1/services/{name}/token` answer (the reference's shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceToken {
    /// Send as `Authorization: Bearer <accessToken>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Epoch seconds after which to fetch a new token.
    pub refresh_after: u64,
    /// Epoch seconds after which it is refused.
    pub expiry_on: u64,
}

/// `POST /v1/services/{name}/rollback` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollbackRequest {
    /// The revision to serve again.
    pub revision: u32,
}

/// One revision of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    /// Number, from 1.
    pub revision: u32,
    /// RFC 3339.
    pub created_time: String,
    /// Whether it answers requests now.
    pub serving: bool,
    /// Its spec.
    pub spec: ServiceSpec,
}

/// `GET /v1/services/{name}/revisions` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RevisionList {
    /// Oldest first.
    pub value: Vec<Revision>,
}

macro_rules! wire_names {
    ($ty:ty { $($variant:ident),* $(,)? }) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &[$ty] = &[$(Self::$variant),*];

            /// The name as stored and sent.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => stringify!($variant)),* }
            }

            /// Parses a stored name.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $(stringify!($variant) => Some(Self::$variant),)* _ => None }
            }
        }
    };
}

wire_names!(OperationErrorCode {
    InternalError,
    EnvironmentBuildFailed,
    RevisionLayoutFailed,
    PortUnavailable,
    ModelNotFound,
    SnapshotNotFound,
    CrashLoopBackOff,
    EntryScriptInvalid,
    ReplicaStartFailed,
    DeploymentTimedOut,
    Unschedulable,
    ResourceLimitsFailed,
    MemoryLimitExceeded,
    IsolationUnavailable,
    GateFailed,
    RolloutAborted,
    RolloutInterrupted,
    ServerRestarted
});
wire_names!(ServiceState {
    Transitioning,
    Healthy,
    Unhealthy,
    Failed
});
wire_names!(OperationType {
    Create,
    Update,
    Delete,
    Rollback,
    Redeploy,
    RegenerateKey,
    Traffic
});
wire_names!(OperationState {
    NotStarted,
    Running,
    Succeeded,
    Failed,
    RolledBack,
    Cancelled,
    TimedOut
});

#[cfg(test)]
mod error_code_tests {
    use super::OperationErrorCode;

    #[test]
    fn every_code_round_trips_through_its_name() {
        for code in OperationErrorCode::ALL {
            assert_eq!(OperationErrorCode::parse(code.as_str()), Some(*code));
        }
        assert_eq!(OperationErrorCode::parse("NoSuchCode"), None);
    }
}
