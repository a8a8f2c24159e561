//! The reconciler: what runs for each service, and the operations that change it.
//!
//! Routes write intent (a revision and an operation) to the store and hand the
//! operation to [`Runtime::run_operation`]; only this module asks the compute
//! target ([`crate::compute`]) for replicas and publishes gateway routes. A
//! rollout is: prepare the environment → lay out the revision → start the
//! candidate's replicas (each passes `init()`) → shift traffic by the
//! revision's `rollout` strategy ([`plan`]: all at once, canary, linear or
//! blue-green), with the gates measured by the gateway during each bake → promote
//! (drain and stop the old replicas) or roll back (traffic back on the previous
//! revision at once, the candidate drained and stopped). Any failure before
//! promotion leaves the serving revision untouched.
//!
//! At start-up [`Runtime::restore`] ends operations a restart cut off (a
//! rollout cut off in its bake ends `RolledBack`: its candidate never became
//! the serving revision) and brings every service back to its stored traffic.
//!
//! While a revision serves: the compute target's probes take hung replicas out
//! of rotation and kill them, `restarts` replaces replicas that exit (with
//! crash-loop backoff), `scale` runs the autoscaler (`autoscale` is its
//! policy). Whatever changes a service's replica set holds that service's
//! replica-set lock.

mod autoscale;
pub mod drain;
mod gauges;
mod kube;
mod operations;
pub mod plan;
mod resources;
mod restarts;
mod rollout;
mod scale;
mod shadow;
mod traffic;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use berth_api::service::ScalingDecision;
use berth_api::{ServiceKeys, ServiceSpec};
use tokio::sync::mpsc;

use crate::compute::ComputeTarget;
use crate::compute::Replica;
use crate::compute::local::{LaunchPlan, LocalTarget, ResourceManager, sandbox};

use crate::blobs::BlobStore;
use crate::config::ServerConfig;
use crate::envs::EnvBuilder;
use crate::gateway::table::{Pool, PoolLimits};
use crate::gateway::table::{admission_for, pipelines};
use crate::gateway::window::RevisionWindow;
use crate::gateway::{Route, RouteSettings, RouteTable};
use crate::store::{ServiceStore, Store};
use restarts::{ReplicaExit, watch_exits};

pub use rollout::RolloutControl;
pub use shadow::MirrorFailure;
pub use traffic::NoRollout;

/// What the runtime keeps per service.
struct ServiceRuntime {
    spec: Arc<ServiceSpec>,
    plan: Arc<LaunchPlan>,
    /// Replicas wanted now: the spec's count, or the autoscaler's choice.
    desired: u32,
    /// Consecutive quick exits, for restart backoff and crash-loop reporting.
    restarts: u32,
    /// Restarts since the serving revision started.
    total_restarts: u64,
    /// Why replicas are missing, while they are.
    health: Option<String>,
    /// The autoscaler's last change.
    last_scaling: Option<ScalingDecision>,
    /// After a scale-up that could not start its replicas, no new decision
    /// before this.
    scale_retry_at: Option<std::time::Instant>,
    /// Mean utilisation of the last autoscale window, percent.
    utilization: Option<f64>,
    /// Berth's own lines about the service's replicas (exits, restarts, kills),
    /// shown with the replicas' output.
    notes: VecDeque<(SystemTime, String)>,
    /// Other revisions taking traffic (a rollout's candidate, a split), so
    /// their replicas are replaced when they exit.
    others: HashMap<u32, (Arc<ServiceSpec>, Arc<LaunchPlan>)>,
}

/// Lines of [`ServiceRuntime::notes`] kept.
const NOTES_KEPT: usize = 200;

/// What `berth service show` reports from the runtime.
#[derive(Debug, Clone, Default)]
pub struct ReplicaStatus {
    /// Ready replicas.
    pub ready: u32,
    /// Replica processes, ready or not.
    pub current: u32,
    /// Wanted replicas (0 when nothing runs).
    pub desired: u32,
    /// Restarts since the serving revision started.
    pub restarts: u64,
    /// Why replicas are missing.
    pub reason: Option<String>,
    /// Autoscale utilisation, percent.
    pub utilization: Option<f64>,
    /// The autoscaler's last change.
    pub last_scaling: Option<ScalingDecision>,
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
    /// The workspace event log.
    pub events: Arc<crate::events::EventBus>,
    /// Resource enforcement and GPUs.
    pub resources: Arc<ResourceManager>,
    /// Worker sandbox.
    pub isolation: Arc<sandbox::Isolation>,
    /// Metrics registry, request-log and data-collection writers.
    pub observability: Arc<crate::observability::Observability>,
    /// Services following model aliases: told when an operation ends.
    pub follow: Arc<crate::follow::Follow>,
    /// Per-service listeners (`port` of local services).
    pub ports: Arc<crate::gateway::PortListeners>,
    /// Whether this server leads (runs operations), and in which mode.
    pub leadership: Arc<crate::cluster::Leadership>,
    /// With `--replica-transport tcp`: how `berth replica` children are started.
    pub child_launch: Option<crate::compute::local::ChildLaunch>,
    /// Bundle tokens and per-revision credentials of remote replicas (pods).
    pub replica_keys: crate::compute::remote::ReplicaKeys,
}

/// The local compute target.
pub struct Runtime {
    deps: RuntimeDeps,
    /// Where replicas run: this machine...
    compute: LocalTarget,
    /// ... or an attached Kubernetes cluster (per service, by `computeTargetName`).
    #[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
    clusters: kube::Clusters,
    /// Running progressive rollouts.
    rollouts: rollout::Rollouts,
    /// Replicas started for hand-made mirrors.
    shadows: shadow::Shadows,
    running: Mutex<HashMap<String, ServiceRuntime>>,
    exits: mpsc::UnboundedSender<ReplicaExit>,
    /// Per service: held by whatever changes its replica set (an operation, a
    /// scale action, a replacement), so they never interleave.
    replica_sets: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Operations this server started running (while leading), so that one
    /// handed over twice (by a route and by the pick-up) runs once.
    claimed: Mutex<std::collections::HashSet<String>>,
}

/// A pool of a route another server leads: revision, weight, spec and the
/// replicas this server connected to.
pub type FollowedPool = (u32, u32, Arc<ServiceSpec>, Vec<Arc<Replica>>);

/// One pool of a route to publish.
pub(super) struct PoolPlan {
    /// Revision.
    pub revision: u32,
    /// Percent of requests.
    pub weight: u32,
    /// Its replicas.
    pub replicas: Vec<Arc<Replica>>,
    /// The revision's spec.
    pub spec: Arc<ServiceSpec>,
}

/// The gateway settings of `spec` with `keys`.
fn route_settings(spec: &ServiceSpec, keys: &ServiceKeys) -> RouteSettings {
    let d = &spec.deployment;
    RouteSettings {
        scoring_timeout: Duration::from_millis(d.scoring_timeout_ms),
        max_queue_wait: Duration::from_millis(d.max_queue_wait_ms),
        keys: d.auth_enabled.then(|| keys.clone()),
        token_auth: d.token_auth_enabled,
    }
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
            compute: LocalTarget,
            clusters: kube::Clusters::default(),
            rollouts: rollout::Rollouts::default(),
            shadows: shadow::Shadows::default(),
            running: Mutex::new(HashMap::new()),
            exits: tx,
            replica_sets: Mutex::new(HashMap::new()),
            claimed: Mutex::new(std::collections::HashSet::new()),
        });
        tokio::spawn(watch_exits(Arc::downgrade(&runtime), rx));
        tokio::spawn(scale::autoscaler(Arc::downgrade(&runtime)));
        runtime
    }

    /// The lock over `service`'s replica set.
    fn replica_set_lock(&self, service: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = match self.replica_sets.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        locks.entry(service.to_owned()).or_default().clone()
    }

    /// Runs `f` on the runtime state of `service`, if it runs.
    fn with_service<T>(
        &self,
        service: &str,
        f: impl FnOnce(&mut ServiceRuntime) -> T,
    ) -> Option<T> {
        let mut running = match self.running.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        running.get_mut(service).map(f)
    }

    /// Records that `revision` of `service` now serves with `spec`, keeping
    /// the history (notes, last scaling) of the service.
    fn set_serving(&self, service: &str, spec: ServiceSpec, plan: Arc<LaunchPlan>, desired: u32) {
        let mut running = match self.running.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let same_revision = running
            .get(service)
            .is_some_and(|s| s.plan.revision == plan.revision);
        let entry = running
            .entry(service.to_owned())
            .or_insert_with(|| ServiceRuntime {
                spec: Arc::new(spec.clone()),
                plan: plan.clone(),
                desired,
                restarts: 0,
                total_restarts: 0,
                health: None,
                last_scaling: None,
                scale_retry_at: None,
                utilization: None,
                notes: VecDeque::new(),
                others: HashMap::new(),
            });
        if !same_revision {
            entry.restarts = 0;
            entry.total_restarts = 0;
            entry.health = None;
        }
        entry.others.remove(&plan.revision);
        entry.spec = Arc::new(spec);
        entry.plan = plan;
        entry.desired = desired;
    }

    /// Records the revisions besides the stable one that take traffic now
    /// (`others` replaces what was recorded).
    fn set_others(&self, service: &str, others: Vec<(Arc<ServiceSpec>, Arc<LaunchPlan>)>) {
        self.with_service(service, |s| {
            s.others = others
                .into_iter()
                .map(|(spec, plan)| (plan.revision, (spec, plan)))
                .collect();
        });
    }

    /// Adds one of Berth's own lines to the service's log.
    fn note(&self, service: &str, line: String) {
        tracing::info!(service, "{line}");
        self.with_service(service, |s| {
            if s.notes.len() == NOTES_KEPT {
                s.notes.pop_front();
            }
            s.notes.push_back((SystemTime::now(), line));
        });
    }

    /// How many replicas `spec` should run when `current` run now: the fixed
    /// count, or with autoscale the current count within the new bounds.
    fn target_replicas(spec: &ServiceSpec, current: usize) -> u32 {
        let d = &spec.deployment;
        if d.auto_scaler.autoscale_enabled {
            let current = u32::try_from(current).unwrap_or(u32::MAX);
            current.clamp(
                d.auto_scaler.min_replicas.max(1),
                d.auto_scaler
                    .max_replicas
                    .max(d.auto_scaler.min_replicas.max(1)),
            )
        } else {
            d.desired_replicas()
        }
    }

    /// Paths for the shim and sockets.
    fn run_dirs(&self) -> (PathBuf, PathBuf) {
        let run = self.deps.config.data_dir.join("run");
        (run.clone(), run.join("s"))
    }

    /// Publishes a route for `service` serving `replicas` of `spec` alone
    /// (or nothing, with `revision` `None`); returns the route it replaced.
    /// A pool of a revision the current route already has keeps its live
    /// figures and gate windows.
    fn publish(
        &self,
        service: &str,
        revision: Option<u32>,
        replicas: Vec<Arc<Replica>>,
        spec: &ServiceSpec,
        keys: &ServiceKeys,
    ) -> Option<Arc<Route>> {
        let pools = revision
            .map(|revision| {
                let window = self
                    .deps
                    .table
                    .get(service)
                    .and_then(|r| r.pool(revision).map(|p| p.window.clone()))
                    .unwrap_or_default();
                let plan = PoolPlan {
                    revision,
                    weight: 100,
                    replicas,
                    spec: Arc::new(spec.clone()),
                };
                Arc::new(self.make_pool(service, plan, window))
            })
            .into_iter()
            .collect();
        self.publish_route(service, pools, spec, keys)
    }

    /// Publishes a route for `service` over `pools` (the first is the stable
    /// revision; auth and the certificate come from `stable`); returns the
    /// route it replaced.
    fn publish_route(
        &self,
        service: &str,
        pools: Vec<Arc<Pool>>,
        stable: &ServiceSpec,
        keys: &ServiceKeys,
    ) -> Option<Arc<Route>> {
        let route = Arc::new(Route::new(
            service.to_owned(),
            route_settings(stable, keys),
            pools,
            self.deps.observability.route(service, None, stable),
        ));
        self.publish_cert(service, stable);
        self.install(service, route)
    }

    /// Publishes `route` for `service`, recording its weights; returns the
    /// route it replaced.
    fn install(&self, service: &str, route: Arc<Route>) -> Option<Arc<Route>> {
        let old = self.deps.table.get(service);
        let metrics = self.deps.observability.metrics();
        for pool in &route.pools {
            metrics.set_traffic_weight(service, pool.revision, pool.weight);
        }
        if let Some(old) = &old {
            for pool in old
                .pools
                .iter()
                .filter(|p| route.pool(p.revision).is_none())
            {
                metrics.forget_revision(service, pool.revision);
            }
        }
        self.deps.table.publish(service, Some(route));
        old
    }

    /// A gateway pool for `plan`.
    fn make_pool(&self, service: &str, plan: PoolPlan, window: Arc<RevisionWindow>) -> Pool {
        let d = &plan.spec.deployment;
        let per_replica = d.max_concurrent_requests_per_container;
        let pipelined = pipelines(&plan.replicas, per_replica);
        Pool {
            revision: plan.revision,
            weight: plan.weight,
            admission: Arc::new(admission_for(plan.replicas.len(), per_replica, pipelined)),
            pipelined,
            replicas: plan.replicas,
            limits: PoolLimits {
                scoring_timeout: Duration::from_millis(d.scoring_timeout_ms),
                max_queue_wait: Duration::from_millis(d.max_queue_wait_ms),
            },
            observability: self
                .deps
                .observability
                .route(service, Some(plan.revision), &plan.spec),
            window,
        }
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

    /// Installs the route another server leads for `service` (a follower's
    /// gateway): `pools` are revision, weight, spec and connected replicas,
    /// the first the stable revision. Pools of revisions the current route has
    /// keep their live figures and gate windows.
    pub fn install_followed(&self, service: &str, keys: &ServiceKeys, pools: Vec<FollowedPool>) {
        let Some(stable) = pools.first().map(|p| p.2.clone()) else {
            self.install_empty_followed(service);
            return;
        };
        let current = self.deps.table.get(service);
        let pools = pools
            .into_iter()
            .map(|(revision, weight, spec, replicas)| {
                let window = current
                    .as_ref()
                    .and_then(|r| r.pool(revision).map(|p| p.window.clone()))
                    .unwrap_or_default();
                let plan = PoolPlan {
                    revision,
                    weight,
                    replicas,
                    spec,
                };
                Arc::new(self.make_pool(service, plan, window))
            })
            .collect();
        let route = Arc::new(Route::new(
            service.to_owned(),
            route_settings(&stable, keys),
            pools,
            self.deps.observability.route(service, None, &stable),
        ));
        self.install(service, route);
    }

    /// The route `service` has on this server's gateway.
    pub fn route(&self, service: &str) -> Option<Arc<Route>> {
        self.deps.table.get(service)
    }

    /// Removes the route of `service` another server leads.
    pub fn install_empty_followed(&self, service: &str) {
        self.deps.table.publish(service, None);
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
        let next = Arc::new(route.with_settings(RouteSettings {
            keys: spec.deployment.auth_enabled.then_some(keys.clone()),
            ..route.settings.clone()
        }));
        self.deps.table.publish(service, Some(next));
        Ok(())
    }

    /// Ready and desired replicas of a service.
    pub fn replica_counts(&self, service: &str) -> (u32, u32) {
        let status = self.replica_status(service);
        (status.ready, status.desired)
    }

    /// The replicas of a service as the runtime sees them.
    pub fn replica_status(&self, service: &str) -> ReplicaStatus {
        let (ready, current) = self
            .deps
            .table
            .get(service)
            .and_then(|r| {
                r.primary()
                    .map(|p| (p.ready_count() as u32, p.replicas.len() as u32))
            })
            .unwrap_or((0, 0));
        let mut status = self
            .with_service(service, |s| ReplicaStatus {
                ready,
                current,
                desired: s.desired,
                restarts: s.total_restarts,
                reason: s.health.clone(),
                utilization: s
                    .spec
                    .deployment
                    .auto_scaler
                    .autoscale_enabled
                    .then_some(s.utilization)
                    .flatten(),
                last_scaling: s.last_scaling.clone(),
            })
            .unwrap_or_default();
        status.ready = ready;
        status.current = current;
        if ready >= status.desired {
            status.reason = None;
        }
        status
    }

    /// The log lines of the serving replicas, oldest first, at most `tail`.
    pub fn logs(&self, service: &str, tail: usize) -> Option<Vec<String>> {
        let route = self.deps.table.get(service)?;
        let mut lines: Vec<(std::time::SystemTime, String)> = Vec::new();
        for replica in route.replicas() {
            for line in replica.logs().snapshot() {
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
        self.with_service(service, |s| {
            for (at, note) in &s.notes {
                lines.push((
                    *at,
                    format!("{} berth: {note}", humantime::format_rfc3339_millis(*at)),
                ));
            }
        });
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
                    .replicas()
                    .map(|r| (r.revision, r.index, r.logs().subscribe()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The per-service listeners.
    pub fn ports(&self) -> &Arc<crate::gateway::PortListeners> {
        &self.deps.ports
    }

    /// Serves `service` on the `port` of `spec` (or stops serving it on one),
    /// as the revision that starts serving asks.
    async fn apply_port(&self, service: &str, spec: &ServiceSpec) -> Result<(), String> {
        match spec.deployment.port {
            Some(port) => self
                .deps
                .ports
                .bind(service, port)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            None => {
                self.deps.ports.release(service);
                Ok(())
            }
        }
    }

    /// Stops every replica (server shutdown).
    pub async fn stop(&self) {
        let routes = self.deps.table.all();
        for route in &routes {
            self.deps.table.publish(&route.service, None);
        }
        let stops = routes.into_iter().map(|route| {
            self.compute
                .stop(route.replicas().cloned().collect(), STOP_GRACE)
        });
        futures_util::future::join_all(stops).await;
    }
}
