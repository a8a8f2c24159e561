//! Which compute target runs a revision's replicas: a service whose
//! `computeTargetName` names a target attached with Kubernetes settings runs
//! on that cluster (its plan registered here per revision); every other one
//! runs on the local target, unchanged.

use std::sync::Arc;

use berth_api::{OperationError, OperationErrorCode, ServiceSpec};

use super::Runtime;
use crate::compute::ComputeTarget;
use crate::compute::Replica;
use crate::compute::local::{LaunchPlan, StartFailure};

#[cfg(feature = "kubernetes")]
use crate::compute::kubernetes::target::{KubePlan, KubernetesTarget};

/// The cluster plans of the revisions that run on a cluster (none without the
/// `kubernetes` feature).
#[derive(Default)]
pub(super) struct Clusters {
    #[cfg(feature = "kubernetes")]
    target: KubernetesTarget,
    #[cfg(feature = "kubernetes")]
    plans: std::sync::Mutex<std::collections::HashMap<(String, u32), Arc<KubePlan>>>,
}

fn failed(code: OperationErrorCode, step: &str, message: String) -> OperationError {
    OperationError::new(code, step, message, Vec::new())
}

impl Runtime {
    /// When `spec` is deployed to a Kubernetes-backed target: registers the
    /// revision's cluster plan and returns the target's name.
    pub(super) async fn use_cluster(
        &self,
        service: &str,
        revision: u32,
        spec: &ServiceSpec,
    ) -> Result<Option<String>, OperationError> {
        let Some(name) = spec.deployment.compute_target_name.as_deref() else {
            return Ok(None);
        };
        let stored = self.deps.store.compute_target(name).await.map_err(|e| {
            failed(
                OperationErrorCode::InternalError,
                "read the compute target",
                e.to_string(),
            )
        })?;
        let Some(settings) = stored.and_then(|t| t.kubernetes) else {
            return Ok(None);
        };
        self.cluster_plan(service, revision, spec, name, &settings)
            .await
            .map(|()| Some(name.to_owned()))
    }

    #[cfg(not(feature = "kubernetes"))]
    async fn cluster_plan(
        &self,
        _service: &str,
        _revision: u32,
        _spec: &ServiceSpec,
        name: &str,
        _settings: &berth_api::KubernetesAttach,
    ) -> Result<(), OperationError> {
        Err(failed(
            OperationErrorCode::ReplicaStartFailed,
            "choose the compute target",
            format!(
                "compute target `{name}` is a Kubernetes cluster, and this server was built without the `kubernetes` feature: build it with `--features kubernetes` (the default)"
            ),
        ))
    }

    #[cfg(feature = "kubernetes")]
    async fn cluster_plan(
        &self,
        service: &str,
        revision: u32,
        spec: &ServiceSpec,
        name: &str,
        settings: &berth_api::KubernetesAttach,
    ) -> Result<(), OperationError> {
        use crate::compute::remote::{BUNDLE_TOKEN_LIFETIME, RevisionCredentials};
        let step = "connect to the Kubernetes cluster";
        let Some(server_url) = settings.server_url.clone() else {
            return Err(failed(
                OperationErrorCode::ReplicaStartFailed,
                step,
                format!(
                    "compute target `{name}` has no server URL, so its pods cannot fetch the revision: attach it again with `--server-url URL` (the address pods reach this server at)"
                ),
            ));
        };
        let cluster = self
            .clusters
            .target
            .cluster(name, settings)
            .await
            .map_err(|e| failed(e.code(), step, e.to_string()))?;
        let keys = &self.deps.replica_keys;
        let credentials = RevisionCredentials::derive(keys, service, revision).map_err(|e| {
            failed(
                OperationErrorCode::InternalError,
                "mint the revision's credentials",
                e.to_string(),
            )
        })?;
        let plan = KubePlan {
            cluster,
            service: service.to_owned(),
            revision,
            settings: spec.deployment.clone(),
            credentials,
            keys: keys.clone(),
            token_refresh: BUNDLE_TOKEN_LIFETIME / 3,
            server_url,
            ready_limit: crate::compute::local::probes::readiness_limit(&spec.deployment),
        };
        self.clusters
            .plans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((service.to_owned(), revision), Arc::new(plan));
        Ok(())
    }

    /// Starts replica `index` of `plan` where its revision runs.
    pub(super) async fn start_replica(
        &self,
        plan: &LaunchPlan,
        index: u32,
    ) -> Result<Arc<Replica>, StartFailure> {
        #[cfg(feature = "kubernetes")]
        {
            let cluster_plan = self
                .clusters
                .plans
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&(plan.service.clone(), plan.revision))
                .cloned();
            if let Some(kube) = cluster_plan {
                return self.clusters.target.start(&kube, index).await.map_err(|e| {
                    let output = match &e {
                        crate::compute::kubernetes::cluster::ClusterError::Pod { logs, .. } => {
                            logs.join("\n")
                        }
                        _ => String::new(),
                    };
                    StartFailure {
                        index,
                        error: crate::compute::local::StartError::Elsewhere {
                            code: e.code(),
                            message: e.to_string(),
                            output,
                        },
                    }
                });
            }
        }
        self.compute.start(plan, index).await
    }
}
