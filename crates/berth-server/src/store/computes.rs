//! Stored compute targets (the built-in `local` target is not stored).

/// A compute target as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredComputeTarget {
    /// Name (validated).
    pub name: String,
    /// `AKS`.
    pub compute_type: String,
    /// Attached rather than created.
    pub attached: bool,
    /// The configuration given, as JSON.
    pub properties: serde_json::Value,
    /// RFC 3339.
    pub created_time: String,
    /// The cluster of a Kubernetes-backed target, with its credentials (its
    /// `Debug` redacts the kubeconfig).
    pub kubernetes: Option<berth_api::KubernetesAttach>,
}
