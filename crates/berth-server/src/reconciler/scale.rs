//! Changing how many replicas of the serving revision run: the autoscaler
//! loop, and the start/retire mechanics it shares with live updates.
//!
//! Added replicas pass `init()` before the route lists them; retired replicas
//! leave the route first and are drained (every request routed to them is
//! answered) before they stop, so scaling never drops a request. Whatever
//! changes a replica set holds that service's replica-set lock; the autoscaler
//! skips a service whose lock is taken (an operation is running) and looks
//! again at its next refresh.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use berth_api::service::ScalingDecision;

use super::autoscale::{Decision, Policy, SAMPLE_EVERY, Window};
use super::drain;
use super::{DRAIN_LIMIT, Runtime, STOP_GRACE};
use crate::compute::ComputeTarget;
use crate::compute::Replica;
use crate::compute::local::{LaunchPlan, StartFailure};

/// How long the autoscaler waits after replicas it added failed to start.
const RETRY_AFTER_FAILED_SCALE: Duration = Duration::from_secs(30);

/// Samples every autoscaled service and acts on its decisions, for as long
/// as the runtime lives.
pub(super) async fn autoscaler(runtime: Weak<Runtime>) {
    let mut windows: HashMap<String, (Policy, Window)> = HashMap::new();
    let mut ticker = tokio::time::interval(SAMPLE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticker.tick().await;
        let Some(runtime) = runtime.upgrade() else {
            return;
        };
        runtime.autoscale_tick(&mut windows, Instant::now());
    }
}

impl Runtime {
    /// Services with autoscale on: name, policy, slots per replica.
    fn autoscaled(&self) -> Vec<(String, Policy, u32)> {
        let running = match self.running.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        running
            .iter()
            .filter(|(_, s)| s.spec.deployment.auto_scaler.autoscale_enabled)
            .map(|(name, s)| {
                let d = &s.spec.deployment;
                let a = &d.auto_scaler;
                let policy = Policy {
                    min: a.min_replicas,
                    max: a.max_replicas,
                    target: a.target_utilization,
                    refresh: Duration::from_secs(u64::from(a.refresh_period_in_seconds.max(1))),
                    stabilization: self.deps.config.scale_down_stabilization,
                };
                (
                    name.clone(),
                    policy,
                    d.max_concurrent_requests_per_container.max(1),
                )
            })
            .collect()
    }

    fn autoscale_tick(
        self: &Arc<Self>,
        windows: &mut HashMap<String, (Policy, Window)>,
        now: Instant,
    ) {
        let targets = self.autoscaled();
        windows.retain(|name, _| targets.iter().any(|(t, _, _)| t == name));
        for (service, policy, per_replica) in targets {
            let Some(route) = self.deps.table.get(&service) else {
                continue;
            };
            // A rollout or a hand-set split owns the replica counts while it runs.
            let (Some(pool), 1) = (route.primary(), route.pools.len()) else {
                continue;
            };
            let ready = pool.ready_count();
            if ready == 0 {
                continue;
            }
            let current = pool.replicas.len() as u32;
            let load = route.queued() + route.in_flight();
            drop(route);
            let capacity = ready * per_replica as usize;
            let (known, window) = windows
                .entry(service.clone())
                .or_insert_with(|| (policy, Window::default()));
            if *known != policy {
                *known = policy;
                window.reset();
            }
            window.sample(now, load as f64 / capacity as f64);
            let retry_at = self.with_service(&service, |s| s.scale_retry_at).flatten();
            if retry_at.is_some_and(|at| now < at) {
                continue;
            }
            let lock = self.replica_set_lock(&service);
            let Ok(guard) = lock.try_lock_owned() else {
                continue;
            };
            let decision = window.evaluate(&policy, current, now);
            if let Some(pct) = window.last_utilization_pct() {
                self.with_service(&service, |s| s.utilization = Some(pct));
            }
            let Some(decision) = decision else {
                continue;
            };
            window.clear_samples();
            let runtime = self.clone();
            tokio::spawn(async move {
                runtime.autoscale(&service, decision, &policy).await;
                drop(guard);
            });
        }
    }

    /// Carries out one autoscale decision (the caller holds the replica-set lock).
    async fn autoscale(&self, service: &str, decision: Decision, policy: &Policy) {
        let Some((plan, probe, per_replica)) = self.with_service(service, |s| {
            (
                s.plan.clone(),
                s.spec.deployment.liveness_probe_requirements.clone(),
                s.spec.deployment.max_concurrent_requests_per_container,
            )
        }) else {
            return;
        };
        let Some(route) = self
            .deps
            .table
            .get(service)
            .filter(|r| r.revision() == Some(plan.revision) && r.pools.len() == 1)
        else {
            return;
        };
        let Some(pool) = route.primary().cloned() else {
            return;
        };
        let direction = if decision.to > decision.from {
            "above"
        } else {
            "below"
        };
        let reason = format!(
            "utilisation {:.0}% over {} s is {direction} the target {}%",
            decision.utilization_pct,
            policy.refresh.as_secs(),
            policy.target
        );
        let mut current = pool.replicas.clone();
        current.sort_by_key(|r| r.index);
        if decision.to < decision.from {
            let retired = current.split_off(decision.to as usize);
            let next = Arc::new(route.with_pool(pool.with_replicas(current, per_replica)));
            self.deps.table.publish(service, Some(next));
            self.record_scaling(service, &decision, reason, Ok(()));
            drain::drain_subset(route, retired, DRAIN_LIMIT, STOP_GRACE).await;
            return;
        }
        let outcome = {
            let wanted = decision.to.saturating_sub(current.len() as u32);
            drop(route);
            match self.start_more(&plan, &current, wanted).await {
                Ok(added) => {
                    let Some(route) = self.deps.table.get(service) else {
                        self.compute.stop(added, STOP_GRACE).await;
                        return;
                    };
                    let Some(pool) = route.pool(plan.revision).cloned() else {
                        drop(route);
                        self.compute.stop(added, STOP_GRACE).await;
                        return;
                    };
                    let mut next = pool.replicas.clone();
                    next.extend(added.iter().cloned());
                    let next = Arc::new(route.with_pool(pool.with_replicas(next, per_replica)));
                    drop(route);
                    self.deps.table.publish(service, Some(next));
                    self.watch(service, &added, &probe);
                    Ok(())
                }
                Err(failure) => Err(format!(
                    "replica {} did not start: {}",
                    failure.index, failure.error
                )),
            }
        };
        self.record_scaling(service, &decision, reason, outcome);
    }

    /// Keeps an autoscale decision for `show` and the service's log.
    fn record_scaling(
        &self,
        service: &str,
        decision: &Decision,
        reason: String,
        outcome: Result<(), String>,
    ) {
        let applied = outcome.is_ok();
        if applied {
            self.deps.observability.metrics().scaled(
                service,
                if decision.to > decision.from {
                    "up"
                } else {
                    "down"
                },
            );
            self.deps.events.emit(crate::events::EventDraft::scaled(
                service,
                decision.from,
                decision.to,
                &reason,
            ));
        }
        let reason = match outcome {
            Ok(()) => reason,
            Err(e) => format!("{reason}; not applied: {e}"),
        };
        self.note(
            service,
            format!(
                "autoscale {} → {} replica(s): {reason}",
                decision.from, decision.to
            ),
        );
        self.with_service(service, |s| {
            if applied {
                s.desired = decision.to;
                s.scale_retry_at = None;
            } else {
                s.scale_retry_at = Some(Instant::now() + RETRY_AFTER_FAILED_SCALE);
            }
            s.last_scaling = Some(ScalingDecision {
                time: crate::now_rfc3339(),
                from: decision.from,
                to: decision.to,
                reason,
                applied,
            });
        });
    }

    /// Starts `count` more replicas of `plan`, numbered after `current`; on a
    /// failure stops the ones that did start.
    pub(super) async fn start_more(
        &self,
        plan: &LaunchPlan,
        current: &[Arc<Replica>],
        count: u32,
    ) -> Result<Vec<Arc<Replica>>, StartFailure> {
        let first = current.iter().map(|r| r.index + 1).max().unwrap_or(0);
        let starts = (first..first + count).map(|index| self.start_replica(plan, index));
        let mut added = Vec::new();
        let mut failure = None;
        for result in futures_util::future::join_all(starts).await {
            match result {
                Ok(replica) => added.push(replica),
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        match failure {
            None => Ok(added),
            Some(failure) => {
                self.compute.stop(added, STOP_GRACE).await;
                Err(failure)
            }
        }
    }
}
