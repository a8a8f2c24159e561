//! The local compute target and the operations that change services.
//!
//! Routes write intent (a revision and an operation) to the store and hand the
//! operation to [`Runtime::run_operation`]; only this module starts and stops
//! replicas and publishes routes. The rollout is: prepare the environment →
//! lay out the revision → start the new replicas (each passes `init()`) →
//! switch the route atomically → drain the old replicas → stop them. Any
//! failure before the switch stops the new replicas and leaves the serving
//! revision untouched.
//!
//! At start-up [`Runtime::restore`] fails operations a restart cut off and
//! brings every service back to its serving revision.

mod gauges;
mod materialise;
mod operations;
mod replicas;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::{ServiceKeys, ServiceSpec, ServiceState};
use tokio::sync::{Semaphore, mpsc};

pub use materialise::revision_root;
pub use replicas::LaunchPlan;

use crate::blobs::BlobStore;
use crate::config::ServerConfig;
use crate::envs::EnvBuilder;
use crate::gateway::{Replica, Route, RouteSettings, RouteTable};
use crate::store::{ServiceStore, Store};

/// A replica's process ended while it was serving.
#[derive(Debug)]
struct ReplicaExit {
    service: String,
    revision: u32,
    index: u32,
}

/// What the runtime keeps per service.
struct ServiceRuntime {
    spec: Arc<ServiceSpec>,
    plan: Arc<LaunchPlan>,
    /// Consecutive unexpected exits, for restart backoff.
    restarts: u32,
}

/// Shared handles the runtime works with.
pub struct RuntimeDeps {
    /// Registry store.
    pub store: Arc<dyn Store>,
    /// Service store.
    pub services: Arc<dyn ServiceStore>,
    /// Blobs.
    pub blobs: BlobStore,
    /// Environment builds.
    pub envs: Arc<EnvBuilder>,
    /// Gateway routes.
    pub table: Arc<RouteTable>,
    /// Settings.
    pub config: Arc<ServerConfig>,
    /// Per-service certificates by SNI, when the server serves TLS.
    pub certs: Option<Arc<crate::tls::SniResolver>>,
    /// Metrics registry, request-log and data-collection writers.
    pub observability: Arc<crate::observability::Observability>,
}

/// The local compute target.
pub struct Runtime {
    deps: RuntimeDeps,
    running: Mutex<HashMap<String, ServiceRuntime>>,
    exits: mpsc::UnboundedSender<ReplicaExit>,
}

/// Whether moving from `old` to `new` needs new replicas: code, models,
/// environment, resources and probes do; everything else is applied live.
pub fn needs_new_replicas(old: &ServiceSpec, new: &ServiceSpec) -> bool {
    old.models != new.models
        || old.inference != new.inference
        || old.deployment.container_resource_requirements
            != new.deployment.container_resource_requirements
        || old.deployment.liveness_probe_requirements != new.deployment.liveness_probe_requirements
}

/// Drain limit for old replicas after a switch.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);
/// Time a replica gets to finish after SHUTDOWN before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

impl Runtime {
    /// A runtime; spawns its replica watcher.
    pub fn new(deps: RuntimeDeps) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let runtime = Arc::new(Self {
            deps,
            running: Mutex::new(HashMap::new()),
            exits: tx,
        });
        tokio::spawn(watch_exits(Arc::downgrade(&runtime), rx));
        runtime
    }

    /// Paths for the shim and sockets.
    fn run_dirs(&self) -> (PathBuf, PathBuf) {
        let run = self.deps.config.data_dir.join("run");
        (run.clone(), run.join("s"))
    }

    /// Publishes a route for `service` serving `replicas` of `spec`.
    fn publish(
        &self,
        service: &str,
        revision: Option<u32>,
        replicas: Vec<Arc<Replica>>,
        spec: &ServiceSpec,
        keys: &ServiceKeys,
    ) -> Option<Arc<Route>> {
        let d = &spec.deployment;
        let slots = (replicas.len().max(1))
            .saturating_mul(d.max_concurrent_requests_per_container.max(1) as usize);
        let route = Arc::new(Route {
            service: service.to_owned(),
            revision,
            replicas,
            settings: RouteSettings {
                scoring_timeout: Duration::from_millis(d.scoring_timeout_ms),
                max_queue_wait: Duration::from_millis(d.max_queue_wait_ms),
                keys: d.auth_enabled.then(|| keys.clone()),
                token_auth: d.token_auth_enabled,
            },
            admission: Arc::new(Semaphore::new(slots.min(Semaphore::MAX_PERMITS))),
            observability: self.deps.observability.route(service, revision, spec),
        });
        self.publish_cert(service, spec);
        let old = self.deps.table.get(service);
        self.deps.table.publish(service, Some(route));
        old
    }

    /// Serves the certificate of the revision that starts serving for its
    /// `cname` (or none, when it has no `sslEnabled`).
    fn publish_cert(&self, service: &str, spec: &ServiceSpec) {
        let Some(certs) = &self.deps.certs else {
            return;
        };
        match &spec.deployment.ssl {
            None => certs.set_service(service, None),
            Some(ssl) => match crate::tls::load_service_cert(&self.deps.config.data_dir, ssl) {
                Ok(cert) => {
                    certs.set_service(service, Some((&ssl.cname, cert)));
                    tracing::info!(service, cname = %ssl.cname, "serving the service certificate");
                }
                Err(e) => {
                    certs.set_service(service, None);
                    tracing::warn!(service, cname = %ssl.cname, error = %e, "cannot serve the service certificate; the server certificate is used");
                }
            },
        }
    }

    /// Republishes a service's route with its current keys (after a key change).
    pub async fn refresh_keys(&self, service: &str) -> Result<(), String> {
        let keys = self
            .deps
            .services
            .service(service)
            .await
            .map_err(|e| e.to_string())?
            .keys;
        let spec = self
            .running
            .lock()
            .ok()
            .and_then(|m| m.get(service).map(|s| s.spec.clone()));
        let (Some(route), Some(spec)) = (self.deps.table.get(service), spec) else {
            return Ok(());
        };
        let next = Arc::new(Route {
            service: route.service.clone(),
            revision: route.revision,
            replicas: route.replicas.clone(),
            settings: RouteSettings {
                keys: spec.deployment.auth_enabled.then_some(keys),
                ..route.settings.clone()
            },
            admission: route.admission.clone(),
            observability: route.observability.clone(),
        });
        self.deps.table.publish(service, Some(next));
        Ok(())
    }

    /// Watches each replica's process; an exit while serving is reported.
    fn watch(&self, service: &str, replicas: &[Arc<Replica>]) {
        for replica in replicas {
            let replica = replica.clone();
            let tx = self.exits.clone();
            let service = service.to_owned();
            tokio::spawn(async move {
                let status = replica.worker.exited().await;
                replica
                    .healthy
                    .store(false, std::sync::atomic::Ordering::Release);
                if !replica.retiring.load(std::sync::atomic::Ordering::Acquire) {
                    tracing::warn!(%service, revision = replica.revision, replica = replica.index, ?status, "replica exited while serving");
                    let _ = tx.send(ReplicaExit {
                        service,
                        revision: replica.revision,
                        index: replica.index,
                    });
                }
            });
        }
    }

    /// Ready and desired replicas of a service.
    pub fn replica_counts(&self, service: &str) -> (u32, u32) {
        let ready = self
            .deps
            .table
            .get(service)
            .map(|r| r.ready_count() as u32)
            .unwrap_or(0);
        let desired = self
            .running
            .lock()
            .ok()
            .and_then(|m| m.get(service).map(|s| s.spec.deployment.desired_replicas()))
            .unwrap_or(0);
        (ready, desired)
    }

    /// The log lines of the serving replicas, oldest first, at most `tail`.
    pub fn logs(&self, service: &str, tail: usize) -> Option<Vec<String>> {
        let route = self.deps.table.get(service)?;
        let mut lines: Vec<(std::time::SystemTime, String)> = Vec::new();
        for replica in &route.replicas {
            for line in replica.worker.logs().snapshot() {
                lines.push((
                    line.at,
                    format!(
                        "{} r{}/{} {}: {}",
                        humantime::format_rfc3339_millis(line.at),
                        replica.revision,
                        replica.index,
                        line.stream.as_str(),
                        line.text
                    ),
                ));
            }
        }
        lines.sort_by_key(|(at, _)| *at);
        let start = lines.len().saturating_sub(tail);
        Some(lines.into_iter().skip(start).map(|(_, l)| l).collect())
    }

    /// Subscribes to the serving replicas' output.
    pub fn follow(
        &self,
        service: &str,
    ) -> Vec<(
        u32,
        u32,
        tokio::sync::broadcast::Receiver<berth_worker::LogLine>,
    )> {
        self.deps
            .table
            .get(service)
            .map(|route| {
                route
                    .replicas
                    .iter()
                    .map(|r| (r.revision, r.index, r.worker.logs().subscribe()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stops every replica (server shutdown).
    pub async fn stop(&self) {
        let routes = self.deps.table.all();
        for route in &routes {
            self.deps.table.publish(&route.service, None);
        }
        let stops = routes
            .into_iter()
            .map(|route| replicas::stop_all(route.replicas.clone(), STOP_GRACE));
        futures_util::future::join_all(stops).await;
    }

    async fn replace_replica(self: &Arc<Self>, exit: ReplicaExit) {
        let (plan, backoff) = {
            let Ok(mut running) = self.running.lock() else {
                return;
            };
            let Some(state) = running.get_mut(&exit.service) else {
                return;
            };
            if state.plan.revision != exit.revision {
                return;
            }
            state.restarts += 1;
            let backoff = Duration::from_millis(500u64 << state.restarts.min(7));
            (state.plan.clone(), backoff)
        };
        let _ = self
            .deps
            .services
            .set_service_state(&exit.service, ServiceState::Unhealthy)
            .await;
        tracing::info!(service = %exit.service, replica = exit.index, backoff_ms = backoff.as_millis() as u64, "restarting replica");
        tokio::time::sleep(backoff).await;
        let replica = match replicas::start_replica(&plan, exit.index).await {
            Ok(replica) => replica,
            Err(failure) => {
                tracing::warn!(service = %exit.service, replica = exit.index, error = %failure.error, "replica restart failed; retrying");
                let _ = self.exits.send(exit);
                return;
            }
        };
        let Some(route) = self.deps.table.get(&exit.service) else {
            replicas::stop_all(vec![replica], STOP_GRACE).await;
            return;
        };
        let still_listed = route
            .replicas
            .iter()
            .any(|r| r.index == exit.index && r.revision == exit.revision);
        if !still_listed {
            replicas::stop_all(vec![replica], STOP_GRACE).await;
            return;
        }
        let mut replicas_now: Vec<Arc<Replica>> = route
            .replicas
            .iter()
            .filter(|r| r.index != exit.index)
            .cloned()
            .collect();
        replicas_now.push(replica.clone());
        replicas_now.sort_by_key(|r| r.index);
        let next = Arc::new(Route {
            service: route.service.clone(),
            revision: route.revision,
            replicas: replicas_now,
            settings: route.settings.clone(),
            admission: route.admission.clone(),
            observability: route.observability.clone(),
        });
        self.deps.table.publish(&exit.service, Some(next));
        self.watch(&exit.service, &[replica]);
        if let Ok(mut running) = self.running.lock()
            && let Some(state) = running.get_mut(&exit.service)
        {
            state.restarts = 0;
        }
        let (ready, desired) = self.replica_counts(&exit.service);
        let state = if ready >= desired {
            ServiceState::Healthy
        } else {
            ServiceState::Unhealthy
        };
        let _ = self
            .deps
            .services
            .set_service_state(&exit.service, state)
            .await;
    }
}

async fn watch_exits(
    runtime: std::sync::Weak<Runtime>,
    mut rx: mpsc::UnboundedReceiver<ReplicaExit>,
) {
    while let Some(exit) = rx.recv().await {
        let Some(runtime) = runtime.upgrade() else {
            return;
        };
        tokio::spawn(async move { runtime.replace_replica(exit).await });
    }
}
