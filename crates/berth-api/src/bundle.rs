//! The revision bundle: everything a `berth replica` needs to run one service
//! revision away from the server (`GET /v1/services/{name}/revisions/{n}/bundle`,
//! authorised by a bundle token, never the workspace token).
//!
//! File content is fetched separately, one blob at a time
//! (`GET .../bundle/blobs/{digest}`), and checked against the digests listed here.

use serde::{Deserialize, Serialize};

use crate::environment::EnvironmentSpec;
use crate::model::ModelKind;
use crate::service::ServiceSpec;

/// One file to lay out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleFile {
    /// Path relative to its root (the source directory, or the model's asset).
    pub path: String,
    /// `sha256:<hex>` digest of the content.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Unix permission bits.
    pub mode: u32,
}

/// One model version of the revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleModel {
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: u32,
    /// File or folder.
    pub kind: ModelKind,
    /// The asset's name (the file name, or the folder name).
    pub asset_name: String,
    /// Its files.
    pub files: Vec<BundleFile>,
}

/// How the worker runs, worked out by the server from the revision's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerSettings {
    /// Longest import + `init()` may take.
    pub init_timeout_ms: u64,
    /// `scoringTimeoutMs` (enforced by the gateway).
    pub scoring_timeout_ms: u64,
    /// `maxConcurrentRequestsPerContainer`.
    pub max_concurrent_requests: u32,
    /// `memoryInGBLimit` in bytes, when set.
    pub memory_limit_bytes: Option<u64>,
    /// The variables the entry script sees, besides the lay-out ones
    /// (`AZUREML_MODEL_DIR`, `AML_APP_ROOT`), which the replica sets.
    pub environment_variables: Vec<(String, String)>,
}

/// The replica's credentials for this revision: the TLS identity it serves
/// (the gateway pins exactly this certificate) and the secret every gateway
/// connection must present first.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaCredentials {
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// Its private key, PKCS#8 PEM.
    pub private_key_pem: String,
    /// The per-revision connection secret (hex).
    pub secret: String,
}

impl std::fmt::Debug for ReplicaCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaCredentials").finish_non_exhaustive()
    }
}

/// Everything a replica needs to run one revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionBundle {
    /// Service name.
    pub service: String,
    /// Revision number.
    pub revision: u32,
    /// The revision's spec (without the service's own TLS settings).
    pub spec: ServiceSpec,
    /// The environment to build.
    pub environment: EnvironmentSpec,
    /// The entry script, relative to the app root (`<source dir>/<script>`).
    pub entry_script: String,
    /// The source snapshot's files.
    pub source: Vec<BundleFile>,
    /// The models.
    pub models: Vec<BundleModel>,
    /// Worker settings.
    pub settings: WorkerSettings,
    /// The workspace's name (`WORKSPACE_NAME`).
    pub workspace_name: String,
    /// TLS identity and connection secret.
    pub credentials: ReplicaCredentials,
}

impl RevisionBundle {
    /// Every blob digest the bundle lists (source and models), once each.
    pub fn digests(&self) -> std::collections::BTreeSet<&str> {
        self.source
            .iter()
            .chain(self.models.iter().flat_map(|m| m.files.iter()))
            .map(|f| f.digest.as_str())
            .collect()
    }
}
