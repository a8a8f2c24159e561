//! Hand-set traffic splits (`PUT /v1/services/{name}/traffic`) and what the
//! API reports about a service's traffic: the serving revisions, their
//! weights, replicas and last-minute figures.

use std::sync::Arc;

use berth_api::{Operation, OperationError, RolloutStatus, Traffic, TrafficEntry, TrafficShare};

use super::operations::OpLog;
use super::{DRAIN_LIMIT, Runtime, STOP_GRACE, drain};
use crate::compute::ComputeTarget;
use crate::gateway::table::Pool;

/// Why promote or abort cannot act.
#[derive(Debug, thiserror::Error)]
#[error(
    "service `{0}` has no rollout running: promote and abort act on a canary, linear or blue-green rollout during its bake (`berth service show -n {0}` shows what runs)"
)]
pub struct NoRollout(pub String);

impl Runtime {
    /// Applies the split a `Traffic` operation asks for; returns it as stored.
    pub(super) async fn apply_traffic(
        &self,
        log: &OpLog<'_>,
        op: &Operation,
    ) -> Result<Vec<TrafficShare>, OperationError> {
        let shares = self
            .deps
            .services
            .requested_traffic(&op.id)
            .await
            .map_err(|e| OperationError {
                code: berth_api::OperationErrorCode::InternalError.as_str().into(),
                step: "read the requested split".into(),
                message: e.to_string(),
                output: Vec::new(),
            })?;
        self.apply_split(log, &op.service, &shares).await?;
        Ok(shares)
    }

    /// Serves `shares` (the first is the stable revision): revisions that do not
    /// run get replicas first; revisions left out are drained and stopped.
    pub(super) async fn apply_split(
        &self,
        log: &OpLog<'_>,
        service: &str,
        shares: &[TrafficShare],
    ) -> Result<(), OperationError> {
        let described: Vec<String> = shares
            .iter()
            .map(|s| format!("revision {} at {} %", s.revision, s.weight))
            .collect();
        log.event(&format!("Setting traffic: {}", described.join(", ")))
            .await;
        let keys = self.service_keys(service).await?;
        let current = self.deps.table.get(service);
        let mut pools: Vec<Arc<Pool>> = Vec::with_capacity(shares.len());
        let mut started = Vec::new();
        let mut stable_spec = None;
        for share in shares {
            let running = current
                .as_ref()
                .and_then(|r| r.pool(share.revision))
                .filter(|p| !p.replicas.is_empty())
                .cloned();
            match running {
                Some(pool) => {
                    if stable_spec.is_none() {
                        stable_spec = self
                            .deps
                            .services
                            .revision(service, share.revision)
                            .await
                            .ok();
                    }
                    pools.push(Arc::new(pool.with_weight(share.weight)));
                }
                None => {
                    log.event(&format!(
                        "Revision {} does not run: starting its replicas",
                        share.revision
                    ))
                    .await;
                    let candidate = match self.start_candidate(log, service, share.revision).await {
                        Ok(candidate) => candidate,
                        Err(error) => {
                            let replicas: Vec<_> = started
                                .iter()
                                .flat_map(|c: &super::operations::Candidate| c.replicas.clone())
                                .collect();
                            self.compute.stop(replicas, STOP_GRACE).await;
                            return Err(error);
                        }
                    };
                    let spec = Arc::new(candidate.spec.clone());
                    if stable_spec.is_none() {
                        stable_spec = Some(candidate.spec.clone());
                    }
                    self.watch(
                        service,
                        &candidate.replicas,
                        &spec.deployment.liveness_probe_requirements,
                    );
                    pools.push(Arc::new(self.make_pool(
                        service,
                        super::PoolPlan {
                            revision: share.revision,
                            weight: share.weight,
                            replicas: candidate.replicas.clone(),
                            spec,
                        },
                        Arc::default(),
                    )));
                    started.push(candidate);
                }
            }
        }
        let Some(stable_spec) = stable_spec else {
            return Err(OperationError {
                code: berth_api::OperationErrorCode::InternalError.as_str().into(),
                step: "read the stable revision".into(),
                message: "the split names no revision that could be read".into(),
                output: Vec::new(),
            });
        };
        // The stable revision's replicas are restarted and scaled by its plan.
        if let Some(first) = started
            .iter()
            .find(|c| Some(c.revision) == shares.first().map(|s| s.revision))
        {
            self.set_serving(service, first.spec.clone(), first.plan.clone(), first.count);
        }
        let retired: Vec<_> = current
            .as_ref()
            .map(|r| {
                r.pools
                    .iter()
                    .filter(|p| !shares.iter().any(|s| s.revision == p.revision))
                    .flat_map(|p| p.replicas.iter().cloned())
                    .collect()
            })
            .unwrap_or_default();
        drop(current);
        let old = self.publish_route(service, pools, &stable_spec, &keys);
        // Replicas of the other revisions in the split are replaced when they exit.
        let stable = shares.first().map(|s| s.revision);
        let mut others: Vec<_> = self
            .with_service(service, |s| {
                s.others
                    .values()
                    .filter(|(_, plan)| shares.iter().any(|t| t.revision == plan.revision))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        others.extend(
            started
                .iter()
                .filter(|c| Some(c.revision) != stable)
                .map(|c| (Arc::new(c.spec.clone()), c.plan.clone())),
        );
        self.set_others(service, others);
        log.event(&format!("Traffic set: {}", described.join(", ")))
            .await;
        if let (Some(old), false) = (old, retired.is_empty()) {
            let revisions: Vec<String> = {
                let mut r: Vec<u32> = retired.iter().map(|r| r.revision).collect();
                r.sort_unstable();
                r.dedup();
                r.iter().map(u32::to_string).collect()
            };
            log.event(&format!("Draining revision(s) {}", revisions.join(", ")))
                .await;
            drain::drain_subset(old, retired, DRAIN_LIMIT, STOP_GRACE).await;
        }
        Ok(())
    }

    /// The serving revisions of a service with their weights and roles;
    /// `stored` names them (a hand-set split).
    pub fn traffic_shares(
        &self,
        service: &str,
        stored: Option<&[TrafficShare]>,
    ) -> Vec<TrafficShare> {
        let Some(route) = self.deps.table.get(service) else {
            return Vec::new();
        };
        let candidate = self.rollouts.get(service).map(|c| c.status().candidate);
        route
            .pools
            .iter()
            .enumerate()
            .map(|(i, pool)| TrafficShare {
                revision: pool.revision,
                weight: pool.weight,
                role: if Some(pool.revision) == candidate {
                    "candidate"
                } else if i == 0 {
                    "stable"
                } else {
                    "split"
                }
                .to_owned(),
                name: stored.and_then(|s| {
                    s.iter()
                        .find(|t| t.revision == pool.revision)
                        .and_then(|t| t.name.clone())
                }),
            })
            .collect()
    }

    /// `GET /v1/services/{name}/traffic`.
    pub fn traffic(&self, service: &str, stored: Option<&[TrafficShare]>) -> Traffic {
        let shares = self.traffic_shares(service, stored);
        let route = self.deps.table.get(service);
        let desired = self.replica_status(service).desired;
        let revisions = shares
            .into_iter()
            .map(|share| {
                let pool = route.as_ref().and_then(|r| r.pool(share.revision));
                TrafficEntry {
                    revision: share.revision,
                    name: share.name,
                    weight: share.weight,
                    ready_replicas: pool.map_or(0, |p| p.ready_count() as u32),
                    desired_replicas: pool.map_or(desired, |p| p.replicas.len() as u32),
                    figures: pool
                        .map(|p| p.window.figures_last_minute())
                        .unwrap_or_default(),
                }
            })
            .collect();
        Traffic {
            service: service.to_owned(),
            revisions,
            rollout: self.rollout_status(service),
            mirror: self.mirror_status(service),
        }
    }

    /// The running rollout of a service.
    pub fn rollout_status(&self, service: &str) -> Option<RolloutStatus> {
        self.rollouts.get(service).map(|c| c.status())
    }

    /// Skips the rest of the running rollout's bake.
    pub fn promote(&self, service: &str) -> Result<RolloutStatus, NoRollout> {
        let control = self
            .rollouts
            .get(service)
            .ok_or_else(|| NoRollout(service.to_owned()))?;
        control.promote();
        Ok(control.status())
    }

    /// Rolls the running rollout back at once.
    pub fn abort(&self, service: &str) -> Result<RolloutStatus, NoRollout> {
        let control = self
            .rollouts
            .get(service)
            .ok_or_else(|| NoRollout(service.to_owned()))?;
        control.abort();
        Ok(control.status())
    }
}
