//! Replicas that stop while serving: watching each replica (its process and its
//! liveness), and restarting those that exit with exponential backoff over
//! consecutive quick exits, reported as a crash loop from the third.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use berth_api::ServiceState;
use tokio::sync::mpsc;

use super::{Runtime, STOP_GRACE};
use crate::compute::ComputeTarget;
use crate::compute::Replica;
use crate::compute::local::probes;
use crate::gateway::table::Pool;

/// A replica's process ended while it was serving.
#[derive(Debug)]
pub(super) struct ReplicaExit {
    service: String,
    revision: u32,
    index: u32,
    /// How long it had served.
    uptime: Duration,
    /// What ended it, for people.
    reason: String,
    /// Its last lines of output.
    output: String,
}

impl Runtime {
    /// Watches each replica: its process (an exit while serving is reported
    /// for replacement) and its liveness (see [`probes`]).
    pub(super) fn watch(
        &self,
        service: &str,
        replicas: &[Arc<Replica>],
        probe: &berth_api::deployment::LivenessProbeRequirements,
    ) {
        for replica in replicas {
            tokio::spawn(probes::liveness(replica.clone(), probe.clone()));
            let replica = replica.clone();
            let tx = self.exits.clone();
            let service = service.to_owned();
            let compute = self.compute;
            tokio::spawn(async move {
                let status = compute.exited(&replica).await;
                replica.healthy.store(false, Ordering::Release);
                if replica.retiring.load(Ordering::Acquire) {
                    return;
                }
                let limit_kill = match &replica.limits {
                    Some(limits) => limits.exit_reason().await,
                    None => None,
                };
                let reason = match (replica.kill_reason.get().cloned().or(limit_kill), status) {
                    (Some(why), _) => format!("{KILLED}{why}"),
                    (None, Some(status)) => describe_exit(status),
                    (None, None) => "stopped".to_owned(),
                };
                tracing::warn!(%service, revision = replica.revision, replica = replica.index, %reason, "replica exited while serving");
                let _ = tx.send(ReplicaExit {
                    service,
                    revision: replica.revision,
                    index: replica.index,
                    uptime: replica.started.elapsed(),
                    reason,
                    output: replica.logs().tail_text(EXIT_OUTPUT_LINES),
                });
            });
        }
    }

    /// Restarts a replica that exited while serving, with exponential backoff
    /// over consecutive quick exits (a crash loop is reported as one).
    async fn replace_replica(self: &Arc<Self>, exit: ReplicaExit) {
        let Some((plan, probe, backoff, restarts, health)) = self.with_service(&exit.service, |state| {
            // The stable revision's plan, or that of another revision taking
            // traffic (a rollout's candidate, a split).
            let (plan, probe) = if state.plan.revision == exit.revision {
                (
                    state.plan.clone(),
                    state.spec.deployment.liveness_probe_requirements.clone(),
                )
            } else {
                let (spec, plan) = state.others.get(&exit.revision)?;
                (plan.clone(), spec.deployment.liveness_probe_requirements.clone())
            };
            if exit.uptime >= STABLE_AFTER {
                state.restarts = 0;
            }
            state.restarts += 1;
            state.total_restarts += 1;
            let backoff = restart_backoff(state.restarts);
            let waiting = humantime::format_duration(backoff);
            state.health = Some(if state.restarts >= CRASH_LOOP_AFTER {
                format!(
                    "CrashLoopBackOff: replica {} {} ({} exits in a row); next start in {waiting}",
                    exit.index, exit.reason, state.restarts
                )
            } else {
                format!(
                    "replica {} {}; restarting in {waiting}",
                    exit.index, exit.reason
                )
            });
            Some((
                plan,
                probe,
                backoff,
                state.restarts,
                state.health.clone().unwrap_or_default(),
            ))
        })
        .flatten() else {
            return;
        };
        for line in exit.output.lines() {
            self.note(
                &exit.service,
                format!("r{}/{} last output: {line}", exit.revision, exit.index),
            );
        }
        self.note(
            &exit.service,
            format!("r{}/{}: {health}", exit.revision, exit.index),
        );
        if let Some(why) = exit.reason.strip_prefix(KILLED) {
            self.deps
                .events
                .emit(crate::events::EventDraft::replica_killed(
                    &exit.service,
                    exit.index,
                    why,
                ));
        }
        self.set_state(&exit.service, ServiceState::Unhealthy, &health)
            .await;
        tokio::time::sleep(backoff).await;
        let replica = match self.start_replica(&plan, exit.index).await {
            Ok(replica) => replica,
            Err(failure) => {
                let output = failure.error.output();
                let start = output.lines().count().saturating_sub(EXIT_OUTPUT_LINES);
                let _ = self.exits.send(ReplicaExit {
                    uptime: Duration::ZERO,
                    reason: format!("did not start again: {}", failure.error),
                    output: output.lines().skip(start).collect::<Vec<_>>().join("\n"),
                    ..exit
                });
                return;
            }
        };
        let lock = self.replica_set_lock(&exit.service);
        let _held = lock.lock().await;
        let Some(route) = self.deps.table.get(&exit.service) else {
            self.compute.stop(vec![replica], STOP_GRACE).await;
            return;
        };
        let Some(pool) = route
            .pool(exit.revision)
            .filter(|p| p.replicas.iter().any(|r| r.index == exit.index))
            .cloned()
        else {
            drop(route);
            self.compute.stop(vec![replica], STOP_GRACE).await;
            return;
        };
        let mut replicas_now: Vec<Arc<Replica>> = pool
            .replicas
            .iter()
            .filter(|r| r.index != exit.index)
            .cloned()
            .collect();
        replicas_now.push(replica.clone());
        replicas_now.sort_by_key(|r| r.index);
        let next = Arc::new(route.with_pool(Pool {
            admission: pool.admission.clone(),
            pipelined: pool.pipelined,
            ..pool.with_replicas(replicas_now, 1)
        }));
        drop(route);
        self.deps.table.publish(&exit.service, Some(next));
        self.watch(&exit.service, std::slice::from_ref(&replica), &probe);
        self.note(
            &exit.service,
            format!(
                "r{}/{}: started again ({}, restart {restarts})",
                exit.revision,
                exit.index,
                replica.location()
            ),
        );
        self.deps
            .observability
            .metrics()
            .replica_restarted(&exit.service);
        self.deps
            .events
            .emit(crate::events::EventDraft::replica_restarted(
                &exit.service,
                exit.index,
                &exit.reason,
                backoff.as_millis() as u64,
            ));
        let status = self.replica_status(&exit.service);
        if status.ready >= status.desired {
            self.with_service(&exit.service, |s| s.health = None);
            self.set_state(
                &exit.service,
                ServiceState::Healthy,
                "every desired replica is ready again",
            )
            .await;
        }
    }
}

/// How an exit reason starts when Berth killed the replica on purpose.
const KILLED: &str = "was killed: ";

/// Lines of a dead replica's output kept in the service's log.
const EXIT_OUTPUT_LINES: usize = 20;

/// A replica that served this long before exiting starts a fresh backoff.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Consecutive quick exits reported as a crash loop.
const CRASH_LOOP_AFTER: u32 = 3;

/// Wait before restart number `n` (from 1) of a row of quick exits: 250 ms,
/// then 1 s doubling up to a minute.
fn restart_backoff(n: u32) -> Duration {
    if n <= 1 {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(1u64 << (n - 2).min(6)).min(Duration::from_secs(60))
    }
}

/// "exited with code 1", "was killed by signal 9".
fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "exited".to_owned(),
    }
}

pub(super) async fn watch_exits(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_backoff_doubles_to_a_minute() {
        let waits: Vec<u64> = (1..=10)
            .map(|n| restart_backoff(n).as_millis() as u64)
            .collect();
        assert_eq!(
            waits,
            [
                250, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000
            ]
        );
    }
}
