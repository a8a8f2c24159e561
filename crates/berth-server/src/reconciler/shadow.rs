//! Shadow traffic: a [`Mirror`] on a service's route copying a share of its
//! requests to another revision's replicas after the primary answered.
//!
//! Two uses: a rollout's `shadow` phase (the candidate's pool is the shadow,
//! and what it answers feeds the candidate's gate window), and `berth service
//! mirror` (any revision; one that does not serve gets replicas of its own,
//! stopped when the mirror stops). Any change to the service (update,
//! rollback, split, delete) ends a mirror started by hand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_api::{MirrorDiff, MirrorStatus, OperationError};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::operations::OpLog;
use super::{Runtime, STOP_GRACE};
use crate::compute::ComputeTarget;
use crate::compute::Replica;
use crate::gateway::Route;
use crate::gateway::mirror::{Mirror, MirrorSettings, ShadowSender, score_via};
use crate::gateway::table::Pool;

/// Replicas started for a hand-made mirror, stopped with it.
#[derive(Default)]
pub struct Shadows(Mutex<HashMap<String, Vec<Arc<Replica>>>>);

impl Shadows {
    fn take(&self, service: &str) -> Vec<Arc<Replica>> {
        let mut map = match self.0.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.remove(service).unwrap_or_default()
    }

    fn put(&self, service: &str, replicas: Vec<Arc<Replica>>) {
        let mut map = match self.0.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.insert(service.to_owned(), replicas);
    }
}

/// Why a mirror cannot start.
#[derive(Debug, thiserror::Error)]
pub enum MirrorFailure {
    /// The service has no serving revision to copy from.
    #[error("service `{0}` serves no revision: deploy it before mirroring its requests")]
    NotServing(String),
    /// The revision does not exist.
    #[error("{0}")]
    Revision(String),
    /// Its replicas did not start.
    #[error("revision {revision}'s replicas did not start at step `{}`: {}", .error.step, .error.message)]
    Start {
        /// The revision.
        revision: u32,
        /// What failed.
        error: OperationError,
    },
    /// The mirror could not start.
    #[error(transparent)]
    Mirror(#[from] crate::gateway::mirror::MirrorError),
}

/// Sends copies to the least busy ready replica of a pool, within the pool's
/// admission slots, recording the answers in the pool's window (a candidate's
/// gates see them).
struct PoolSender {
    pool: Arc<Pool>,
    max_response: u64,
}

impl ShadowSender for PoolSender {
    fn send(
        &self,
        request: berth_worker::ScoreRequest,
    ) -> BoxFuture<'static, Result<(u16, bytes::Bytes), String>> {
        let pool = self.pool.clone();
        let max_response = self.max_response;
        async move {
            // Copies take admission slots like requests do, so a shadow that
            // also serves traffic never runs more than its replicas allow.
            let Ok(_permit) = pool.admission.clone().acquire_owned().await else {
                return Err(format!("revision {} stopped", pool.revision));
            };
            let Some(replica) = pool.pick().cloned() else {
                pool.window.record(503, std::time::Duration::ZERO);
                return Err(format!("revision {} has no ready replica", pool.revision));
            };
            let started = std::time::Instant::now();
            let answer = score_via(replica.conn(), request, max_response).await;
            let status = answer.as_ref().map_or(502, |(status, _)| *status);
            pool.window.record(status, started.elapsed());
            answer
        }
        .boxed()
    }
}

impl Runtime {
    /// A mirror of `route`'s requests to `target` at `percent`.
    fn mirror_to(
        &self,
        route: &Route,
        target: &Arc<Pool>,
        percent: u32,
    ) -> Result<Arc<Mirror>, crate::gateway::mirror::MirrorError> {
        let primary = route.primary();
        let mut settings = MirrorSettings::new(
            &route.service,
            primary.map_or(0, |p| p.revision),
            target.revision,
            percent,
            primary.map_or(target.limits.scoring_timeout, |p| p.limits.scoring_timeout),
            self.deps
                .observability
                .metrics()
                .service_counters(&route.service),
        );
        // As many copies in flight as the shadow's replicas take at once (its
        // admission slots), so a shadow that keeps up drops nothing.
        settings.concurrency = target
            .admission
            .available_permits()
            .clamp(crate::gateway::mirror::DEFAULT_CONCURRENCY, 64);
        let sender = Arc::new(PoolSender {
            pool: target.clone(),
            max_response: self.deps.config.max_response_bytes,
        });
        Mirror::start(settings, sender).map(Arc::new)
    }

    /// `route` copying `percent` of its requests to `target` (a rollout's
    /// shadow phase); unchanged, with a warning, when the mirror cannot start.
    pub(super) fn with_shadow(&self, route: Route, target: &Arc<Pool>, percent: u32) -> Route {
        match self.mirror_to(&route, target, percent) {
            Ok(mirror) => route.with_mirror(Some(mirror)),
            Err(e) => {
                tracing::warn!(service = %route.service, error = %e, "could not start the shadow");
                route
            }
        }
    }

    /// What mirroring measured, while a service's requests are mirrored.
    pub fn mirror_status(&self, service: &str) -> Option<MirrorStatus> {
        self.deps
            .table
            .get(service)
            .and_then(|r| r.mirror.as_ref().map(|m| m.status()))
    }

    /// The first differing answer pairs of the service's mirror.
    pub fn mirror_diffs(&self, service: &str) -> Option<Vec<MirrorDiff>> {
        self.deps
            .table
            .get(service)
            .and_then(|r| r.mirror.as_ref().map(|m| m.diffs()))
    }

    /// Starts copying `percent` of `service`'s requests to `revision`, starting
    /// replicas for it when it does not serve. Replaces a running mirror.
    pub async fn start_mirror(
        self: &Arc<Self>,
        service: &str,
        revision: u32,
        percent: u32,
    ) -> Result<MirrorStatus, MirrorFailure> {
        let lock = self.replica_set_lock(service);
        let _held = lock.lock().await;
        let route = self
            .deps
            .table
            .get(service)
            .filter(|r| r.primary().is_some())
            .ok_or_else(|| MirrorFailure::NotServing(service.to_owned()))?;
        let previous = self.shadows.take(service);
        let target = match route.pool(revision) {
            Some(pool) => pool.clone(),
            None => {
                drop(route);
                let log = OpLog::server_only(self);
                let candidate = self
                    .start_candidate(&log, service, revision)
                    .await
                    .map_err(|error| match error.code.as_str() {
                        "InternalError" if error.step == "read the revision" => {
                            MirrorFailure::Revision(format!(
                                "service `{service}` has no revision {revision}: `berth service revisions -n {service}` lists them"
                            ))
                        }
                        _ => MirrorFailure::Start { revision, error },
                    })?;
                self.shadows.put(service, candidate.replicas.clone());
                Arc::new(self.make_pool(
                    service,
                    super::PoolPlan {
                        revision,
                        weight: 0,
                        replicas: candidate.replicas.clone(),
                        spec: Arc::new(candidate.spec.clone()),
                    },
                    Arc::default(),
                ))
            }
        };
        let Some(route) = self.deps.table.get(service) else {
            return Err(MirrorFailure::NotServing(service.to_owned()));
        };
        let mirror = self.mirror_to(&route, &target, percent)?;
        let status = mirror.status();
        let next = route
            .with_pools(route.pools.clone())
            .with_mirror(Some(mirror));
        drop(route);
        self.deps.table.publish(service, Some(Arc::new(next)));
        self.compute.stop(previous, STOP_GRACE).await;
        self.note(
            service,
            format!("mirroring {percent} % of requests to revision {revision}"),
        );
        Ok(status)
    }

    /// Stops `service`'s mirror (and the replicas started for it); whether one ran.
    pub async fn stop_mirror(&self, service: &str) -> bool {
        let lock = self.replica_set_lock(service);
        let _held = lock.lock().await;
        self.end_mirror(service).await
    }

    /// Ends the mirror of `service` under a held replica-set lock.
    pub(super) async fn end_mirror(&self, service: &str) -> bool {
        let mut had = false;
        if let Some(route) = self.deps.table.get(service)
            && let Some(mirror) = &route.mirror
        {
            mirror.stop();
            had = true;
            let next = route.with_pools(route.pools.clone()).with_mirror(None);
            drop(route);
            self.deps.table.publish(service, Some(Arc::new(next)));
        }
        let replicas = self.shadows.take(service);
        had |= !replicas.is_empty();
        self.compute.stop(replicas, STOP_GRACE).await;
        if had {
            self.note(service, "mirroring stopped".to_owned());
        }
        had
    }
}
