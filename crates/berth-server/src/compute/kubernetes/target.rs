//! The Kubernetes compute target's replica starts and stops: replica `i` of a
//! revision is one ready pod of its Deployment, claimed by this server and
//! dialled with [`crate::compute::remote::connect`]. Starting a replica
//! applies (or adopts) the revision's objects and scales the Deployment to the
//! replicas claimed or being started; stopping one marks its pod to go first
//! (`controller.kubernetes.io/pod-deletion-cost`), scales down by one, and
//! retires the revision (Deployment and Secret deleted) with its last replica.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use berth_api::{DeploymentSettings, KubernetesAttach};
use tokio::sync::watch;

use super::cluster::{Cluster, ClusterError};
use crate::compute::RemoteRunner;
use crate::compute::remote::{
    BUNDLE_TOKEN_LIFETIME, ReplicaKeys, RevisionCredentials, connect_with,
};
use crate::compute::{RemoteOwner, Replica};

/// What one revision's replicas on a cluster are started from.
#[derive(Clone)]
pub struct KubePlan {
    /// The cluster.
    pub cluster: Cluster,
    /// Service.
    pub service: String,
    /// Revision.
    pub revision: u32,
    /// The revision's deployment settings.
    pub settings: DeploymentSettings,
    /// The certificate pinned and the secret presented to its replicas.
    pub credentials: RevisionCredentials,
    /// Mints the bundle tokens its pods read the revision with.
    pub keys: ReplicaKeys,
    /// How often the token in the revision's Secret is replaced by a fresh one
    /// (a third of its lifetime), so a pod started at any time can read its bundle.
    pub token_refresh: Duration,
    /// URL pods reach the server at when the target names none.
    pub server_url: String,
    /// Longest a pod may take to become ready.
    pub ready_limit: Duration,
}

impl KubePlan {
    /// A fresh bundle token for the revision.
    pub fn bundle_token(&self) -> String {
        self.keys
            .mint_bundle_token(&self.service, self.revision, BUNDLE_TOKEN_LIFETIME)
    }
}

/// Replaces the token in the revision's Secret every `token_refresh` (every
/// minute after a failed attempt) until aborted when the revision is retired.
fn refresh_bundle_token(plan: KubePlan) -> tokio::task::AbortHandle {
    tokio::spawn(async move {
        let mut wait = plan.token_refresh;
        loop {
            tokio::time::sleep(wait).await;
            let m = plan.cluster.manifest(
                &plan.service,
                plan.revision,
                &plan.server_url,
                &plan.settings,
            );
            wait = match plan.cluster.put_secret(&m, &plan.bundle_token()).await {
                Ok(()) => plan.token_refresh,
                Err(e) => {
                    tracing::warn!(service = %plan.service, revision = plan.revision, "refreshing the bundle token: {e}");
                    Duration::from_secs(60)
                }
            };
        }
    })
    .abort_handle()
}

#[derive(Default)]
struct PodsState {
    /// Keeps the revision's bundle token fresh while its objects are applied.
    refresher: Option<tokio::task::AbortHandle>,
    /// Whether this server applied (or adopted) the revision's objects.
    applied: bool,
    /// Replicas the Deployment was last scaled to.
    wanted: u32,
    /// Pods serving a replica of this server: name → worker address.
    claimed: HashMap<String, SocketAddr>,
}

struct RevisionPods {
    state: tokio::sync::Mutex<PodsState>,
    /// Starts waiting for the state lock.
    pending: AtomicU32,
}

/// Clusters by target name and the pods of each revision this server runs.
#[derive(Default)]
pub struct KubernetesTarget {
    clusters: tokio::sync::Mutex<HashMap<String, (KubernetesAttach, Cluster)>>,
    revisions: Mutex<HashMap<(String, u32), Arc<RevisionPods>>>,
}

impl KubernetesTarget {
    /// The client of `target` (made once per settings).
    pub async fn cluster(
        &self,
        target: &str,
        settings: &KubernetesAttach,
    ) -> Result<Cluster, ClusterError> {
        let mut clusters = self.clusters.lock().await;
        if let Some((known, cluster)) = clusters.get(target)
            && known == settings
        {
            return Ok(cluster.clone());
        }
        let cluster = Cluster::connect(target, settings).await?;
        clusters.insert(target.to_owned(), (settings.clone(), cluster.clone()));
        Ok(cluster)
    }

    fn pods_of(&self, plan: &KubePlan) -> Arc<RevisionPods> {
        let mut revisions = self.revisions.lock().unwrap_or_else(|p| p.into_inner());
        revisions
            .entry((plan.service.clone(), plan.revision))
            .or_insert_with(|| {
                Arc::new(RevisionPods {
                    state: tokio::sync::Mutex::new(PodsState::default()),
                    pending: AtomicU32::new(0),
                })
            })
            .clone()
    }

    /// Starts replica `index` of `plan`: one more ready pod, dialled.
    pub async fn start(&self, plan: &KubePlan, index: u32) -> Result<Arc<Replica>, ClusterError> {
        let pods = self.pods_of(plan);
        pods.pending.fetch_add(1, Ordering::AcqRel);
        let result = self.claim(plan, &pods).await;
        pods.pending.fetch_sub(1, Ordering::AcqRel);
        let (pod, addr) = match result {
            Ok(claimed) => claimed,
            Err(e) => {
                // A revision none of whose replicas started leaves nothing behind.
                let mut state = pods.state.lock().await;
                if state.claimed.is_empty() && pods.pending.load(Ordering::Acquire) == 0 {
                    let m = plan.cluster.manifest(
                        &plan.service,
                        plan.revision,
                        &plan.server_url,
                        &plan.settings,
                    );
                    if let Err(retire) = plan.cluster.retire(&m).await {
                        tracing::warn!(service = %plan.service, revision = plan.revision, "{retire}");
                    }
                    state.applied = false;
                    if let Some(refresher) = state.refresher.take() {
                        refresher.abort();
                    }
                    state.wanted = 0;
                }
                return Err(e);
            }
        };
        let m = plan.cluster.manifest(
            &plan.service,
            plan.revision,
            &plan.server_url,
            &plan.settings,
        );
        let (gone, _) = watch::channel(false);
        let owner = Arc::new(PodOwner(Arc::new(PodInner {
            cluster: plan.cluster.clone(),
            pods: pods.clone(),
            namespace: m.namespace().to_owned(),
            service: plan.service.clone(),
            revision: plan.revision,
            server_url: plan.server_url.clone(),
            settings: plan.settings.clone(),
            pod: pod.clone(),
            gone,
        })));
        // The pod's output is the replica's log (`get_logs()`), for as long as it runs.
        let runner = RemoteRunner::new(addr, Some(owner.clone()));
        {
            let (cluster, namespace, pod) =
                (plan.cluster.clone(), m.namespace().to_owned(), pod.clone());
            let (logs, gone) = (runner.logs.clone(), owner.0.gone.subscribe());
            tokio::spawn(async move { cluster.follow_logs(&namespace, &pod, logs, gone).await });
        }
        match connect_with(runner, &plan.credentials, index).await {
            Ok(replica) => Ok(replica),
            Err(e) => {
                owner.0.release().await;
                Err(ClusterError::Connect {
                    pod,
                    detail: e.to_string(),
                })
            }
        }
    }

    async fn claim(
        &self,
        plan: &KubePlan,
        pods: &RevisionPods,
    ) -> Result<(String, SocketAddr), ClusterError> {
        let mut state = pods.state.lock().await;
        let m = plan.cluster.manifest(
            &plan.service,
            plan.revision,
            &plan.server_url,
            &plan.settings,
        );
        let wanted = u32::try_from(state.claimed.len()).unwrap_or(u32::MAX)
            + pods.pending.load(Ordering::Acquire).max(1);
        if !state.applied {
            state.wanted = plan.cluster.apply(&m, &plan.bundle_token(), wanted).await?;
            state.applied = true;
            if let Some(old) = state.refresher.replace(refresh_bundle_token(plan.clone())) {
                old.abort();
            }
        }
        if wanted > state.wanted {
            plan.cluster.scale(&m, wanted).await?;
            state.wanted = wanted;
        }
        let ready = plan
            .cluster
            .ready_pods(&m, state.claimed.len() + 1, plan.ready_limit)
            .await?;
        let (pod, addr) = ready
            .into_iter()
            .find(|(name, _)| !state.claimed.contains_key(name))
            .ok_or_else(|| ClusterError::Timeout {
                deployment: m.deployment_name(),
                ready: state.claimed.len(),
                wanted: state.claimed.len() + 1,
                waited: plan.ready_limit,
            })?;
        state.claimed.insert(pod.clone(), addr);
        Ok((pod, addr))
    }
}

/// The pod behind one replica: ending the replica gives the pod back.
struct PodOwner(Arc<PodInner>);

struct PodInner {
    cluster: Cluster,
    pods: Arc<RevisionPods>,
    namespace: String,
    service: String,
    revision: u32,
    server_url: String,
    settings: DeploymentSettings,
    pod: String,
    gone: watch::Sender<bool>,
}

impl PodInner {
    /// Unclaims the pod, marks it to go first, scales down by one; retires the
    /// revision with its last replica.
    async fn release(&self) {
        let mut state = self.pods.state.lock().await;
        if state.claimed.remove(&self.pod).is_some() {
            let m = self.cluster.manifest(
                &self.service,
                self.revision,
                &self.server_url,
                &self.settings,
            );
            state.wanted = state.wanted.saturating_sub(1);
            let result =
                if state.claimed.is_empty() && self.pods.pending.load(Ordering::Acquire) == 0 {
                    state.applied = false;
                    if let Some(refresher) = state.refresher.take() {
                        refresher.abort();
                    }
                    state.wanted = 0;
                    self.cluster.retire(&m).await
                } else {
                    self.cluster.remove_first(&self.namespace, &self.pod).await;
                    self.cluster.scale(&m, state.wanted).await
                };
            if let Err(e) = result {
                tracing::warn!(service = %self.service, revision = self.revision, "{e}");
            }
        }
        self.gone.send_replace(true);
    }
}

#[async_trait]
impl RemoteOwner for PodOwner {
    fn kill(&self) {
        let inner = self.0.clone();
        tokio::spawn(async move { inner.release().await });
    }

    async fn exited(&self) -> Option<ExitStatus> {
        let mut gone = self.0.gone.subscribe();
        let _ = gone.wait_for(|g| *g).await;
        None
    }

    async fn stop(&self, grace: Duration) -> Option<ExitStatus> {
        let _ = grace;
        self.0.release().await;
        None
    }
}
