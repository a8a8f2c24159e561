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
    /// The target that actually runs the replicas: `local`, or `kubernetes`
    /// for a target attached with a cluster's settings.
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
    /// The cluster settings of a Kubernetes-backed target (credentials shown
    /// only as set or not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesTargetInfo>,
}

/// Name of the kind of a Kubernetes-backed target (`berth compute attach --kind kubernetes`).
pub const KUBERNETES_KIND: &str = "kubernetes";

/// How a Kubernetes-backed target reaches its cluster and what it runs there,
/// as given to `PUT /v1/computes/{name}` (`kubernetes`).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesAttach {
    /// The kubeconfig file's contents (YAML); a secret, stored and never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    /// Use the service account of the pod the server runs in instead of a kubeconfig.
    #[serde(default)]
    pub in_cluster: bool,
    /// Namespace the revisions' Deployments and Secrets go to.
    pub namespace: String,
    /// Container image of the replicas (it runs `berth replica`).
    pub image: String,
    /// URL the pods use to reach this Berth server (bundle downloads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_url: Option<String>,
}

impl std::fmt::Debug for KubernetesAttach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesAttach")
            .field(
                "kubeconfig",
                &self.kubeconfig.as_ref().map(|_| "<redacted>"),
            )
            .field("in_cluster", &self.in_cluster)
            .field("namespace", &self.namespace)
            .field("image", &self.image)
            .field("server_url", &self.server_url)
            .finish()
    }
}

/// A Kubernetes-backed target's settings as shown: which credentials are set,
/// never their values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesTargetInfo {
    /// Namespace of the revisions' Deployments and Secrets.
    pub namespace: String,
    /// Container image of the replicas.
    pub image: String,
    /// URL the pods reach the server at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_url: Option<String>,
    /// Whether the server uses its pod's service account.
    pub in_cluster: bool,
    /// Whether a kubeconfig is stored (its contents are never returned).
    pub kubeconfig_set: bool,
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
    /// Attach a Kubernetes cluster: services deployed to this target run as
    /// Deployments there (only with `attach`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesAttach>,
}

/// Checks a Kubernetes namespace name (an RFC 1123 label): every problem names
/// the field, the value and the fix.
pub fn check_namespace(namespace: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&namespace.len())
        && namespace.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && namespace.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && namespace
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`kubernetes.namespace` is `{namespace}`: use 1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit (for example `berth`)"
        ))
    }
}

/// Checks every setting of a Kubernetes attach request; returns each problem.
pub fn check_kubernetes_attach(k: &KubernetesAttach) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = check_namespace(&k.namespace) {
        problems.push(e);
    }
    let image = k.image.trim();
    if image.is_empty() || image != k.image || image.chars().any(char::is_whitespace) {
        problems.push(format!(
            "`kubernetes.image` is `{}`: give the container image of the replicas without spaces (for example `ghcr.io/acme/berth:0.1.0`)",
            k.image
        ));
    }
    match (&k.kubeconfig, k.in_cluster) {
        (Some(_), true) => problems.push(
            "`kubernetes.kubeconfig` and `kubernetes.inCluster` are both given: use the kubeconfig (`--kubeconfig FILE`) or the pod's service account (`--in-cluster`), not both".into(),
        ),
        (None, false) => problems.push(
            "`kubernetes.kubeconfig` is missing and `kubernetes.inCluster` is false: give the cluster's kubeconfig (`--kubeconfig FILE`) or `--in-cluster` when the server runs in the cluster".into(),
        ),
        (Some(config), false) if config.trim().is_empty() => problems.push(
            "`kubernetes.kubeconfig` is empty: give the contents of a kubeconfig file (`--kubeconfig ~/.kube/config`)".into(),
        ),
        _ => {}
    }
    if let Some(url) = &k.server_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        problems.push(format!(
            "`kubernetes.serverUrl` is `{url}`: give the http:// or https:// URL at which pods reach this Berth server (for example `http://berth.berth.svc:8080`)"
        ));
    }
    problems
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

    fn attach() -> KubernetesAttach {
        KubernetesAttach {
            kubeconfig: Some("apiVersion: v1".into()),
            in_cluster: false,
            namespace: "berth".into(),
            image: "ghcr.io/acme/berth:1".into(),
            server_url: Some("http://berth.berth.svc:8080".into()),
        }
    }

    #[test]
    fn kubernetes_attach_checks_name_field_value_and_fix() {
        assert!(check_kubernetes_attach(&attach()).is_empty());
        let bad = KubernetesAttach {
            kubeconfig: None,
            in_cluster: false,
            namespace: "Bad_NS".into(),
            image: "has space".into(),
            server_url: Some("berth:8080".into()),
        };
        let problems = check_kubernetes_attach(&bad);
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("`kubernetes.namespace` is `Bad_NS`"));
        assert!(problems[1].contains("`kubernetes.image` is `has space`"));
        assert!(problems[2].contains("--kubeconfig"));
        assert!(problems[3].contains("`kubernetes.serverUrl` is `berth:8080`"));
        let both = KubernetesAttach {
            in_cluster: true,
            ..attach()
        };
        assert!(check_kubernetes_attach(&both)[0].contains("not both"));
    }

    #[test]
    fn kubeconfig_never_in_debug_output() {
        let shown = format!("{:?}", attach());
        assert!(!shown.contains("apiVersion"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

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
