//! Compute targets: where a service's replicas run, by the names Azure ML v1
//! code uses (`ComputeTarget`, `AksCompute`).
//!
//! Every server has the built-in `local` target. A target created or attached
//! under another name (an AKS cluster in v1 code) is recorded with its settings;
//! on a server without a cluster it is backed by the local target.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Name of the built-in target.
pub const LOCAL_COMPUTE: &str = "local";

/// `GET /v1/computes/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComputeTarget {
    /// Name.
    pub name: String,
    /// `Local` or `AKS`.
    pub compute_type: String,
    /// Always `Succeeded`: targets are usable as soon as they exist.
    pub provisioning_state: String,
    /// The target that actually runs the replicas (`local`).
    pub backed_by: String,
    /// Whether the target was attached (`ComputeTarget.attach`) rather than created.
    pub attached: bool,
    /// The provisioning or attach settings given, kept as given.
    #[schema(value_type = Object)]
    pub properties: serde_json::Value,
    /// RFC 3339; absent for the built-in target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time: Option<String>,
    /// What the client should tell the user (for example that the target is
    /// backed by the local target); given once, when the target is created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// `GET /v1/computes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ComputeTargetList {
    /// Every target, `local` first, then by name.
    pub value: Vec<ComputeTarget>,
}

/// `PUT /v1/computes/{name}`: create (or attach) a target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutComputeTargetRequest {
    /// `AKS` (the only type that can be created).
    pub compute_type: String,
    /// `true` for `ComputeTarget.attach`, `false` for `ComputeTarget.create`.
    #[serde(default)]
    pub attach: bool,
    /// The provisioning or attach configuration (`agentCount`, `vmSize`,
    /// `clusterPurpose`, `resourceId`, ...), recorded as given.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub properties: Option<serde_json::Value>,
}

/// Checks a compute target name: 2 to 32 letters, digits or `-`, starting with a
/// letter and not ending with `-`.
pub fn check_compute_name(name: &str) -> Result<(), String> {
    let ok = (2..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "compute target name `{name}` is invalid: use 2 to 32 letters, digits or '-', starting with a letter and not ending with '-' (for example `aks-prod`)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_names() {
        for good in ["myaks", "aks-prod-1", "Ab"] {
            assert!(check_compute_name(good).is_ok(), "{good}");
        }
        for bad in ["a", "1aks", "aks-", "aks_cluster", "", &"a".repeat(33)] {
            let e = check_compute_name(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
