//! Deployment settings: how a service runs (replicas, resources, auth, timeouts,
//! probes). Parsed from Azure ML `deploymentconfig.json` files and kept, fully
//! resolved with defaults, in every revision.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where the reference would have run the service; all run on the local target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ComputeType {
    /// `local`.
    Local,
    /// `aci`.
    Aci,
    /// `aks`.
    Aks,
}

/// Autoscaling bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoScaler {
    /// Whether replicas follow load.
    pub autoscale_enabled: bool,
    /// Fewest replicas.
    pub min_replicas: u32,
    /// Most replicas.
    pub max_replicas: u32,
    /// Seconds between scaling decisions.
    pub refresh_period_in_seconds: u32,
    /// Target utilisation in percent.
    pub target_utilization: u32,
}

/// CPU, memory and GPU per replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerResourceRequirements {
    /// CPU cores requested.
    pub cpu: f64,
    /// CPU cores limit.
    pub cpu_limit: Option<f64>,
    /// Memory requested, GB.
    #[serde(rename = "memoryInGB")]
    pub memory_in_gb: f64,
    /// Memory limit, GB.
    #[serde(rename = "memoryInGBLimit")]
    pub memory_in_gb_limit: Option<f64>,
    /// GPUs.
    pub gpu: u32,
}

/// Liveness probe settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LivenessProbeRequirements {
    /// Seconds between probes.
    pub period_seconds: u32,
    /// Seconds before the first probe.
    pub initial_delay_seconds: u32,
    /// Seconds a probe may take.
    pub timeout_seconds: u32,
    /// Successes to count as alive.
    pub success_threshold: u32,
    /// Failures to count as dead.
    pub failure_threshold: u32,
}

/// Model data collection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataCollection {
    /// Store inputs and outputs.
    pub storage_enabled: bool,
    /// Send to an event hub.
    pub event_hub_enabled: bool,
}

/// Every setting of a deployment, defaults resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSettings {
    /// The reference compute type the config was written for.
    pub compute_type: ComputeType,
    /// Replicas when autoscaling is off.
    pub num_replicas: u32,
    /// Autoscaling.
    pub auto_scaler: AutoScaler,
    /// Resources per replica.
    pub container_resource_requirements: ContainerResourceRequirements,
    /// Key auth on the scoring endpoint.
    pub auth_enabled: bool,
    /// Token auth on the scoring endpoint.
    pub token_auth_enabled: bool,
    /// Longest a `run()` may take before 504, ms.
    pub scoring_timeout_ms: u64,
    /// Requests one replica works on at once (queue depth per replica).
    pub max_concurrent_requests_per_container: u32,
    /// Longest a request may wait for a replica before 503, ms.
    pub max_queue_wait_ms: u64,
    /// Berth extension: processes (and threads) one replica may have at once (`pids.max`).
    #[serde(default = "default_max_processes")]
    pub max_processes_per_container: u32,
    /// Liveness probes.
    pub liveness_probe_requirements: LivenessProbeRequirements,
    /// Data collection.
    pub data_collection: DataCollection,
    /// Request logging (the reference's Application Insights): one JSON line
    /// per scoring request in the service's request log.
    pub app_insights_enabled: bool,
    /// Berth extension: request and response bodies in request-log lines too.
    #[serde(default)]
    pub request_log_bodies: bool,
    /// Kubernetes namespace (kept for reference; not used locally).
    pub namespace: Option<String>,
    /// The compute target the service was deployed to (`computeTargetName`,
    /// `Model.deploy(..., deployment_target=...)`); `None` is the local target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_target_name: Option<String>,
    /// A local service's own listener port: it is also served on
    /// `127.0.0.1:<port>` at `/score` (v1's `LocalWebservice` port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The service's own TLS certificate (`sslEnabled`), served for `cname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl: Option<SslSettings>,
    /// Berth extension: how traffic moves to this revision when it replaces
    /// another (strategy, bake, gates, shadow). Changing it alone is a live change.
    #[serde(default)]
    pub rollout: crate::rollout::RolloutSettings,
    /// Berth extension: what a service following `m@alias` or `m@latest` does
    /// when the reference moves (`auto`: roll out; `manual`: show the update).
    #[serde(default)]
    pub follow_policy: FollowPolicy,
}

/// `followPolicy` of a service that follows a model alias or `@latest`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum FollowPolicy {
    /// The service is updated when the reference moves.
    #[default]
    Auto,
    /// The service shows `update available`; `--follow` applies it.
    Manual,
}

impl FollowPolicy {
    /// The name as written in configs and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Manual => "manual",
        }
    }
}

/// A service's TLS certificate. The private key is not part of the spec: the
/// server keeps it in its data directory (0600) under `keySha256`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SslSettings {
    /// The host name clients connect with (SNI).
    pub cname: String,
    /// The certificate chain, PEM.
    pub certificate: String,
    /// SHA-256 (hex) of the private key's PEM text.
    pub key_sha256: String,
}

/// Default `maxProcessesPerContainer`.
pub const DEFAULT_MAX_PROCESSES: u32 = 512;

fn default_max_processes() -> u32 {
    DEFAULT_MAX_PROCESSES
}

impl DeploymentSettings {
    /// The reference's defaults for `compute_type`.
    pub fn defaults(compute_type: ComputeType) -> Self {
        let aks = compute_type == ComputeType::Aks;
        Self {
            compute_type,
            num_replicas: 1,
            auto_scaler: AutoScaler {
                autoscale_enabled: false,
                min_replicas: 1,
                max_replicas: 10,
                refresh_period_in_seconds: 1,
                target_utilization: 70,
            },
            container_resource_requirements: ContainerResourceRequirements {
                cpu: 0.1,
                cpu_limit: None,
                memory_in_gb: 0.5,
                memory_in_gb_limit: None,
                gpu: 0,
            },
            auth_enabled: aks,
            token_auth_enabled: false,
            scoring_timeout_ms: 60_000,
            max_concurrent_requests_per_container: 1,
            max_queue_wait_ms: 500,
            max_processes_per_container: DEFAULT_MAX_PROCESSES,
            liveness_probe_requirements: LivenessProbeRequirements {
                period_seconds: 10,
                initial_delay_seconds: 310,
                timeout_seconds: 2,
                success_threshold: 1,
                failure_threshold: 3,
            },
            data_collection: DataCollection::default(),
            app_insights_enabled: false,
            request_log_bodies: false,
            namespace: None,
            compute_target_name: None,
            port: None,
            ssl: None,
            rollout: crate::rollout::RolloutSettings::default(),
            follow_policy: FollowPolicy::Auto,
        }
    }

    /// Replicas to run now.
    pub fn desired_replicas(&self) -> u32 {
        if self.auto_scaler.autoscale_enabled {
            self.auto_scaler.min_replicas
        } else {
            self.num_replicas
        }
    }
}
