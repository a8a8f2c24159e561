//! Liveness and readiness of running replicas, from `livenessProbeRequirements`.
//!
//! Every `periodSeconds` an idle replica gets a PING. The worker answers PINGs
//! between requests, so an idle worker that does not answer within
//! `timeoutSeconds` is not busy but hung (stopped, deadlocked, spinning outside
//! `run()`). A replica with requests in flight is busy scoring and is not
//! probed: `scoringTimeoutMs` bounds those requests and recycles the replica
//! when one overruns.
//!
//! The first unanswered probe takes the replica out of rotation; it returns
//! after `successThreshold` answered probes in a row. After
//! `failureThreshold` unanswered periods in a row it is killed, and the exit
//! watcher replaces it like any other exit. Probing starts once `init()` has
//! returned: Berth knows when that is, so `initialDelaySeconds` only bounds how
//! long `init()` may take (with `periodSeconds × failureThreshold`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use berth_api::deployment::LivenessProbeRequirements;

use crate::compute::Replica;

/// Probes `replica` until it stops, is retired, or is killed for not answering.
pub async fn liveness(replica: Arc<Replica>, probe: LivenessProbeRequirements) {
    let period = Duration::from_secs(u64::from(probe.period_seconds.max(1)));
    let timeout = Duration::from_secs(u64::from(probe.timeout_seconds.max(1)));
    let mut failures = 0u32;
    let mut successes = 0u32;
    loop {
        tokio::time::sleep(period).await;
        if stopped(&replica) {
            return;
        }
        if replica.in_flight() > 0 {
            continue;
        }
        // One PING outstanding at a time: each period it stays unanswered is
        // one more failure.
        let ping = replica.conn().ping();
        tokio::pin!(ping);
        let mut wait = timeout;
        loop {
            match tokio::time::timeout(wait, &mut ping).await {
                Ok(Ok(_)) => {
                    failures = 0;
                    successes += 1;
                    if successes >= probe.success_threshold.max(1)
                        && !replica.healthy.load(Ordering::Acquire)
                        && !stopped(&replica)
                    {
                        replica.healthy.store(true, Ordering::Release);
                        tracing::info!(
                            revision = replica.revision,
                            replica = replica.index,
                            "replica answers its liveness probe again; back in rotation"
                        );
                    }
                    break;
                }
                // The connection closed: the exit watcher takes over.
                Ok(Err(_)) => return,
                Err(_) => {
                    successes = 0;
                    failures += 1;
                    replica.healthy.store(false, Ordering::Release);
                    if failures >= probe.failure_threshold.max(1) {
                        replica.kill(format!(
                            "liveness probe failed: an idle worker did not answer a ping for {} probe period(s) (timeoutSeconds {}, periodSeconds {}, failureThreshold {})",
                            failures, probe.timeout_seconds, probe.period_seconds, probe.failure_threshold
                        ));
                        return;
                    }
                    tracing::warn!(
                        revision = replica.revision,
                        replica = replica.index,
                        failures,
                        "replica did not answer its liveness probe; out of rotation"
                    );
                    if stopped(&replica) {
                        return;
                    }
                    wait = period;
                }
            }
        }
    }
}

fn stopped(replica: &Replica) -> bool {
    replica.retiring.load(Ordering::Acquire) || replica.conn().is_closed()
}

/// How long a replica may take to pass `init()`: the liveness probe's initial
/// delay plus its whole failure budget.
pub fn readiness_limit(d: &berth_api::DeploymentSettings) -> std::time::Duration {
    let p = &d.liveness_probe_requirements;
    std::time::Duration::from_secs(
        u64::from(p.initial_delay_seconds)
            + u64::from(p.period_seconds) * u64::from(p.failure_threshold),
    )
}
