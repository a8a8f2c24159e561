//! One attached cluster, through kube-rs: the revision's Secret and Deployment
//! created (or adopted when they exist), scaled through the `scale`
//! subresource, retired (scaled to zero, then deleted with their Secret), the
//! ready pods' worker addresses found by watching the revision's pods (the
//! kube-runtime watcher: resumes on its resourceVersion, re-lists on 410), a
//! pod that cannot serve classified with its last log lines, and every
//! Deployment of the target found by its labels for adoption after a restart.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use berth_api::{KubernetesAttach, OperationErrorCode};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;

use super::classify::{PodProblem, classify, is_ready};
use super::manifests::{
    REVISION_LABEL, RevisionManifest, SERVICE_LABEL, WORKER_PORT, target_selector,
};

/// Lines of a failing pod's log kept with its problem.
pub const LOG_LINES: i64 = 20;

/// Why a cluster call failed, naming the step.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The stored settings do not give a usable client.
    #[error("compute target `{target}`: {detail}")]
    Config {
        /// The target.
        target: String,
        /// What is wrong and how to fix it.
        detail: String,
    },
    /// The API server refused or could not be reached.
    #[error("{step}: {source}")]
    Api {
        /// What Berth was doing.
        step: String,
        /// kube-rs's error.
        #[source]
        source: kube::Error,
    },
    /// A pod of the revision cannot serve.
    #[error("{}", .problem.message)]
    Pod {
        /// What Kubernetes reports.
        problem: PodProblem,
        /// The pod's last log lines.
        logs: Vec<String>,
    },
    /// A ready pod could not be dialled.
    #[error("connecting to pod {pod}: {detail}")]
    Connect {
        /// The pod.
        pod: String,
        /// Why.
        detail: String,
    },
    /// Not enough pods were ready in time.
    #[error("{ready} of {wanted} pod(s) of {deployment} ready after {waited:?}")]
    Timeout {
        /// The Deployment.
        deployment: String,
        /// Ready pods.
        ready: usize,
        /// Pods asked for.
        wanted: usize,
        /// How long Berth waited.
        waited: Duration,
    },
}

impl ClusterError {
    /// The operation error code this failure shows as.
    pub fn code(&self) -> OperationErrorCode {
        match self {
            Self::Pod { problem, .. } => problem.code,
            Self::Timeout { .. } => OperationErrorCode::DeploymentTimedOut,
            Self::Config { .. } | Self::Api { .. } | Self::Connect { .. } => {
                OperationErrorCode::ReplicaStartFailed
            }
        }
    }
}

fn api(step: impl Into<String>) -> impl FnOnce(kube::Error) -> ClusterError {
    let step = step.into();
    move |source| ClusterError::Api { step, source }
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// A Deployment Berth found in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Service label.
    pub service: String,
    /// Revision label.
    pub revision: u32,
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// `spec.replicas`.
    pub replicas: u32,
}

/// An attached cluster.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    /// The compute target's name.
    pub target: String,
    /// The target's settings (namespace, image, server URL).
    pub settings: KubernetesAttach,
}

impl Cluster {
    /// A client for `target` from its stored settings (kubeconfig or in-cluster).
    pub async fn connect(target: &str, settings: &KubernetesAttach) -> Result<Self, ClusterError> {
        let config_error = |detail: String| ClusterError::Config {
            target: target.to_owned(),
            detail,
        };
        let config = match (&settings.kubeconfig, settings.in_cluster) {
            (Some(text), _) => {
                let kubeconfig = Kubeconfig::from_yaml(text).map_err(|e| {
                    config_error(format!(
                        "its kubeconfig does not parse ({e}); attach it again with a valid `--kubeconfig FILE`"
                    ))
                })?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| {
                        config_error(format!(
                            "its kubeconfig gives no usable cluster ({e}); check its current-context, cluster and user"
                        ))
                    })?
            }
            (None, true) => kube::Config::incluster().map_err(|e| {
                config_error(format!(
                    "it uses the in-cluster service account, which is not available here ({e}); attach it with `--kubeconfig FILE` instead"
                ))
            })?,
            (None, false) => {
                return Err(config_error(
                    "it has neither a kubeconfig nor in-cluster credentials; attach it again".into(),
                ));
            }
        };
        let client = kube::Client::try_from(config)
            .map_err(|e| config_error(format!("no client could be built ({e})")))?;
        Ok(Self {
            client,
            target: target.to_owned(),
            settings: settings.clone(),
        })
    }

    /// A manifest of `service` revision `revision` on this target.
    pub fn manifest<'a>(
        &'a self,
        service: &'a str,
        revision: u32,
        server_url: &'a str,
        settings: &'a berth_api::DeploymentSettings,
    ) -> RevisionManifest<'a> {
        RevisionManifest {
            service,
            revision,
            target: &self.target,
            namespace: &self.settings.namespace,
            image: &self.settings.image,
            server_url: self.settings.server_url.as_deref().unwrap_or(server_url),
            settings,
        }
    }

    fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Creates the revision's bundle-token Secret, or replaces the token of the
    /// one that exists (pods started from then on read the new token).
    pub async fn put_secret(
        &self,
        m: &RevisionManifest<'_>,
        bundle_token: &str,
    ) -> Result<(), ClusterError> {
        let ns = m.namespace();
        let secrets: Api<Secret> = self.api(ns);
        let secret = m.secret(bundle_token);
        match secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => Ok(()),
            Err(e) if status_code(&e) == Some(409) => secrets
                .patch(
                    &m.secret_name(),
                    &PatchParams::default(),
                    &Patch::Merge(&secret),
                )
                .await
                .map(|_| ())
                .map_err(api(format!("update Secret {ns}/{}", m.secret_name()))),
            Err(e) => Err(api(format!("create Secret {ns}/{}", m.secret_name()))(e)),
        }
    }

    /// Creates the revision's Secret (its token refreshed when it exists) and
    /// Deployment with `replicas` pods; an existing Deployment is adopted as it
    /// is (never duplicated). Returns its replicas now.
    pub async fn apply(
        &self,
        m: &RevisionManifest<'_>,
        bundle_token: &str,
        replicas: u32,
    ) -> Result<u32, ClusterError> {
        let ns = m.namespace();
        self.put_secret(m, bundle_token).await?;
        let deployments: Api<Deployment> = self.api(ns);
        match deployments
            .create(&PostParams::default(), &m.deployment(replicas))
            .await
        {
            Ok(_) => Ok(replicas),
            Err(e) if status_code(&e) == Some(409) => {
                let existing = deployments
                    .get(&m.deployment_name())
                    .await
                    .map_err(api(format!("read Deployment {ns}/{}", m.deployment_name())))?;
                let labels = existing.metadata.labels.unwrap_or_default();
                if labels.get(SERVICE_LABEL).map(String::as_str) != Some(m.service) {
                    return Err(ClusterError::Config {
                        target: self.target.clone(),
                        detail: format!(
                            "Deployment {ns}/{} exists and is not Berth's (no `{SERVICE_LABEL}: {}` label); delete or rename it",
                            m.deployment_name(),
                            m.service
                        ),
                    });
                }
                Ok(existing
                    .spec
                    .and_then(|s| s.replicas)
                    .and_then(|r| u32::try_from(r).ok())
                    .unwrap_or(0))
            }
            Err(e) => Err(api(format!(
                "create Deployment {ns}/{}",
                m.deployment_name()
            ))(e)),
        }
    }

    /// Sets the revision's replicas through the `scale` subresource.
    pub async fn scale(&self, m: &RevisionManifest<'_>, replicas: u32) -> Result<(), ClusterError> {
        let deployments: Api<Deployment> = self.api(m.namespace());
        deployments
            .patch_scale(
                &m.deployment_name(),
                &PatchParams::default(),
                &Patch::Merge(&m.scale(replicas)),
            )
            .await
            .map_err(api(format!(
                "scale Deployment {}/{} to {replicas}",
                m.namespace(),
                m.deployment_name()
            )))?;
        Ok(())
    }

    /// Scales the revision to zero and deletes its Deployment and Secret
    /// (gone already is fine).
    pub async fn retire(&self, m: &RevisionManifest<'_>) -> Result<(), ClusterError> {
        let ns = m.namespace();
        match self.scale(m, 0).await {
            Err(ClusterError::Api { source, .. }) if status_code(&source) == Some(404) => {}
            other => other?,
        }
        let deployments: Api<Deployment> = self.api(ns);
        let secrets: Api<Secret> = self.api(ns);
        for result in [
            deployments
                .delete(&m.deployment_name(), &DeleteParams::foreground())
                .await
                .map(|_| ())
                .map_err(|e| (e, format!("delete Deployment {ns}/{}", m.deployment_name()))),
            secrets
                .delete(&m.secret_name(), &DeleteParams::default())
                .await
                .map(|_| ())
                .map_err(|e| (e, format!("delete Secret {ns}/{}", m.secret_name()))),
        ] {
            match result {
                Ok(()) => {}
                Err((e, _)) if status_code(&e) == Some(404) => {}
                Err((e, step)) => return Err(api(step)(e)),
            }
        }
        Ok(())
    }

    /// Every Deployment of this target in `namespace`, by its labels.
    pub async fn adopt(&self, namespace: &str) -> Result<Vec<Found>, ClusterError> {
        let deployments: Api<Deployment> = self.api(namespace);
        let list = deployments
            .list(&ListParams::default().labels(&target_selector(&self.target)))
            .await
            .map_err(api(format!("list Berth's Deployments in {namespace}")))?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|d| {
                let labels = d.metadata.labels.clone().unwrap_or_default();
                Some(Found {
                    service: labels.get(SERVICE_LABEL)?.clone(),
                    revision: labels.get(REVISION_LABEL)?.parse().ok()?,
                    name: d.metadata.name.clone()?,
                    namespace: namespace.to_owned(),
                    replicas: d
                        .spec
                        .and_then(|s| s.replicas)
                        .and_then(|r| u32::try_from(r).ok())
                        .unwrap_or(0),
                })
            })
            .collect())
    }

    /// The last `lines` lines of a pod's log ("" when it has none yet).
    pub async fn logs(&self, namespace: &str, pod: &str, lines: i64) -> Vec<String> {
        let pods: Api<Pod> = self.api(namespace);
        let params = LogParams {
            tail_lines: Some(lines),
            ..LogParams::default()
        };
        pods.logs(pod, &params)
            .await
            .map(|text| text.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Feeds `pod`'s log into `logs` (its last 200 lines, then every new line)
    /// until the pod's log ends or `gone` turns true.
    pub async fn follow_logs(
        &self,
        namespace: &str,
        pod: &str,
        logs: berth_worker::LogTail,
        mut gone: tokio::sync::watch::Receiver<bool>,
    ) {
        use futures_util::{AsyncBufReadExt, StreamExt};
        let pods: Api<Pod> = self.api(namespace);
        let params = LogParams {
            follow: true,
            tail_lines: Some(200),
            ..LogParams::default()
        };
        let stream = match pods.log_stream(pod, &params).await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(pod, "following the pod's log: {e}");
                return;
            }
        };
        let mut lines = std::pin::pin!(stream.lines());
        loop {
            tokio::select! {
                _ = gone.wait_for(|g| *g) => return,
                line = lines.next() => match line {
                    Some(Ok(text)) => logs.push(berth_worker::logs::Stream::Stdout, text),
                    Some(Err(e)) => {
                        tracing::debug!(pod, "the pod's log stream ended: {e}");
                        return;
                    }
                    None => return,
                },
            }
        }
    }

    /// Marks `pod` to be the first removed when its Deployment scales down
    /// (`controller.kubernetes.io/pod-deletion-cost`); a failure only loses
    /// the preference.
    pub async fn remove_first(&self, namespace: &str, pod: &str) {
        let pods: Api<Pod> = self.api(namespace);
        let patch = serde_json::json!({"metadata": {"annotations": {
            "controller.kubernetes.io/pod-deletion-cost": "-1000"}}});
        if let Err(e) = pods
            .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::debug!(pod, "marking the pod to go first: {e}");
        }
    }

    /// Watches the revision's pods until `wanted` are ready; returns their
    /// worker addresses, or the first pod problem (with its last log lines),
    /// or a timeout after `limit`.
    pub async fn ready_addresses(
        &self,
        m: &RevisionManifest<'_>,
        wanted: usize,
        limit: Duration,
    ) -> Result<Vec<SocketAddr>, ClusterError> {
        Ok(self
            .ready_pods(m, wanted, limit)
            .await?
            .into_iter()
            .map(|(_, addr)| addr)
            .collect())
    }

    /// Like [`Self::ready_addresses`], with each address's pod name.
    pub async fn ready_pods(
        &self,
        m: &RevisionManifest<'_>,
        wanted: usize,
        limit: Duration,
    ) -> Result<Vec<(String, SocketAddr)>, ClusterError> {
        let ns = m.namespace().to_owned();
        let pods: Api<Pod> = self.api(&ns);
        let selector = m
            .selector()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut stream = watcher(pods, watcher::Config::default().labels(&selector)).boxed();
        let mut seen: BTreeMap<String, Pod> = BTreeMap::new();
        let mut init: BTreeMap<String, Pod> = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let event = match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(Ok(event))) => event,
                // The watcher retries by itself (resume, re-list on 410): go on.
                Ok(Some(Err(e))) => {
                    tracing::debug!(deployment = %m.deployment_name(), "pod watch: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Ok(None) | Err(_) => {
                    let ready = seen.values().filter(|p| is_ready(p)).count();
                    return Err(ClusterError::Timeout {
                        deployment: m.deployment_name(),
                        ready,
                        wanted,
                        waited: limit,
                    });
                }
            };
            match event {
                watcher::Event::Init => init.clear(),
                watcher::Event::InitApply(p) => {
                    init.insert(p.metadata.name.clone().unwrap_or_default(), p);
                }
                watcher::Event::InitDone => seen = std::mem::take(&mut init),
                watcher::Event::Apply(p) => {
                    seen.insert(p.metadata.name.clone().unwrap_or_default(), p);
                }
                watcher::Event::Delete(p) => {
                    seen.remove(p.metadata.name.as_deref().unwrap_or_default());
                }
            }
            if let Some((name, problem)) = seen
                .iter()
                .find_map(|(name, p)| classify(p).map(|problem| (name.clone(), problem)))
            {
                let logs = self.logs(&ns, &name, LOG_LINES).await;
                return Err(ClusterError::Pod { problem, logs });
            }
            let addresses: Vec<(String, SocketAddr)> = seen
                .iter()
                .filter(|(_, p)| is_ready(p))
                .filter_map(|(name, p)| {
                    let ip = p
                        .status
                        .as_ref()?
                        .pod_ip
                        .as_deref()?
                        .parse::<IpAddr>()
                        .ok()?;
                    Some((name.clone(), SocketAddr::new(ip, WORKER_PORT)))
                })
                .collect();
            if addresses.len() >= wanted {
                return Ok(addresses);
            }
        }
    }
}
