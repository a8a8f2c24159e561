//! The progressive rollout executor: applies the steps of [`super::plan`] to
//! the gateway (weighted pools, a mirror) and measures the gates from the
//! pools' windows, until the candidate is promoted or rolled back.
//!
//! It re-evaluates every [`TICK`] (and at once on promote or abort), so traffic
//! is back on the stable revision within one tick of a gate's breach being
//! measurable. Each step is stored with the operation, so a restart knows the
//! candidate was exposed and ends the operation `RolledBack`
//! ([`super::plan::after_restart`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::{
    GateFigure, GateKind, OperationError, RolloutSettings, RolloutStatus, RolloutStrategy,
};
use tokio::sync::Notify;

use super::drain;
use super::operations::{Candidate, OpLog};
use super::plan::{self, Action, Observed, Plan, Progress, RollbackCause, Verdict};
use super::{DRAIN_LIMIT, Runtime, STOP_GRACE};
use crate::gateway::Route;
use crate::gateway::table::Pool;
use crate::gateway::window::{WindowMark, WindowStats};
use crate::store::StoredRollout;

/// How often a bake is looked at.
pub const TICK: Duration = Duration::from_millis(100);

/// How often a bake writes its gate figures to the operation log.
const REPORT_EVERY_MS: u64 = 5_000;

/// How a rollout ended.
#[derive(Debug)]
pub enum Ended {
    /// The candidate serves all traffic.
    Promoted,
    /// Traffic went back to the stable revision; why.
    RolledBack(OperationError),
}

/// The handle of a running rollout: its status for readers, and the user's
/// promote and abort.
pub struct RolloutControl {
    /// The operation that owns it.
    pub operation_id: String,
    promote: AtomicBool,
    abort: AtomicBool,
    wake: Notify,
    status: Mutex<RolloutStatus>,
}

impl RolloutControl {
    fn new(status: RolloutStatus) -> Self {
        Self {
            operation_id: status.operation_id.clone(),
            promote: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            wake: Notify::new(),
            status: Mutex::new(status),
        }
    }

    /// What users see now.
    pub fn status(&self) -> RolloutStatus {
        match self.status.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut RolloutStatus)) {
        let mut guard = match self.status.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard);
    }

    /// Asks the rollout to skip the rest of its bake.
    pub fn promote(&self) {
        self.promote.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Asks the rollout to roll back at once.
    pub fn abort(&self) {
        self.abort.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

/// Running rollouts by service.
#[derive(Default)]
pub struct Rollouts(Mutex<HashMap<String, Arc<RolloutControl>>>);

impl Rollouts {
    /// The running rollout of `service`.
    pub fn get(&self, service: &str) -> Option<Arc<RolloutControl>> {
        match self.0.lock() {
            Ok(map) => map.get(service).cloned(),
            Err(poisoned) => poisoned.into_inner().get(service).cloned(),
        }
    }

    fn set(&self, service: &str, control: Option<Arc<RolloutControl>>) {
        let mut map = match self.0.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        match control {
            Some(control) => map.insert(service.to_owned(), control),
            None => map.remove(service),
        };
    }
}

/// Removes the rollout's handle however the executor ends.
struct Registered<'a> {
    rollouts: &'a Rollouts,
    service: &'a str,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.rollouts.set(self.service, None);
    }
}

/// Percent with one decimal, for messages.
fn shown(value: f64) -> String {
    format!("{value:.1}")
}

/// The gate failure as an operation error: the gate, its threshold and the
/// measured value.
fn gate_error(gate: &GateFigure, step: &str) -> OperationError {
    let measured = gate.measured.map_or_else(|| "nothing".to_owned(), shown);
    let message = match gate.gate {
        GateKind::ErrorRate => format!(
            "gate errorRate failed: the candidate's 5xx rate was {measured} % over {} request(s), above the threshold of {} % (the baseline's {} % + maxErrorRate); traffic is back on the previous revision",
            gate.requests,
            shown(gate.threshold),
            gate.baseline.map_or_else(|| "0.0".to_owned(), shown),
        ),
        GateKind::P99Latency => format!(
            "gate p99Latency failed: the candidate's p99 latency was {measured} ms over {} request(s), above maxP99Ms {} ms; traffic is back on the previous revision",
            gate.requests,
            shown(gate.threshold),
        ),
    };
    OperationError {
        code: berth_api::OperationErrorCode::GateFailed.as_str().into(),
        step: step.to_owned(),
        message,
        output: Vec::new(),
    }
}

impl Runtime {
    /// The running rollout of `service`.
    pub fn rollout_control(&self, service: &str) -> Option<Arc<RolloutControl>> {
        self.rollouts.get(service)
    }

    /// Rolls `candidate` out progressively over the pools of `current`, by the
    /// candidate's `rollout` settings.
    pub(super) async fn progressive(
        &self,
        log: &OpLog<'_>,
        service: &str,
        candidate: Candidate,
        current: Arc<Route>,
    ) -> Result<Ended, OperationError> {
        let settings = candidate.spec.deployment.rollout.clone();
        let plan = Plan::new(&settings);
        let old_pools: Vec<Arc<Pool>> = current.pools.clone();
        let route_settings = current.settings.clone();
        let route_observability = current.observability.clone();
        drop(current);
        let Some(stable) = old_pools.first().cloned() else {
            return Err(OperationError {
                code: berth_api::OperationErrorCode::InternalError.as_str().into(),
                step: "read the serving revision".into(),
                message: "no revision serves".into(),
                output: Vec::new(),
            });
        };
        let spec = Arc::new(candidate.spec.clone());
        let candidate_pool = Arc::new(self.make_pool(
            service,
            super::PoolPlan {
                revision: candidate.revision,
                weight: 0,
                replicas: candidate.replicas.clone(),
                spec: spec.clone(),
            },
            Arc::default(),
        ));
        self.watch(
            service,
            &candidate.replicas,
            &spec.deployment.liveness_probe_requirements,
        );
        self.set_others(service, vec![(spec.clone(), candidate.plan.clone())]);
        let operation_id = log.id.clone().unwrap_or_default();
        let control = Arc::new(RolloutControl::new(RolloutStatus {
            operation_id: operation_id.clone(),
            strategy: settings.strategy,
            candidate: candidate.revision,
            baseline: Some(stable.revision),
            step: 0,
            steps: plan.step_count(),
            phase: "starting".into(),
            weights: weights_of(&old_pools),
            bake_ends: None,
            gates: Vec::new(),
        }));
        self.rollouts.set(service, Some(control.clone()));
        let _registered = Registered {
            rollouts: &self.rollouts,
            service,
        };
        // Pools are taken fresh from the published route, so replicas replaced
        // meanwhile (an exit, a restart) are the ones routed to.
        let install = |pools: Vec<Arc<Pool>>, mirror: Option<u32>| -> Option<Arc<Route>> {
            let current = self.deps.table.get(service);
            let pools = pools
                .into_iter()
                .map(|p| {
                    current
                        .as_ref()
                        .and_then(|r| r.pool(p.revision))
                        .filter(|c| Arc::ptr_eq(&c.window, &p.window))
                        .map_or(p.clone(), |c| Arc::new(c.with_weight(p.weight)))
                })
                .collect();
            drop(current);
            let route = Route::new(
                service.to_owned(),
                route_settings.clone(),
                pools,
                route_observability.clone(),
            );
            let route = match mirror {
                Some(percent) => self.with_shadow(route, &candidate_pool, percent),
                None => route,
            };
            self.install(service, Arc::new(route))
        };

        let clock = tokio::time::Instant::now();
        let mut progress = Progress::Starting;
        let mut marks: Option<(WindowMark, WindowMark)> = None;
        let mut evaluated_at_bake_end = false;
        let mut next_report_ms = REPORT_EVERY_MS;
        loop {
            let now_ms = clock.elapsed().as_millis() as u64;
            let (figures, verdict) = match &marks {
                Some((candidate_mark, stable_mark)) => {
                    let measured = candidate_pool.window.since(candidate_mark);
                    let baseline = stable.window.since(stable_mark);
                    let figures =
                        crate::gateway::gates::evaluate(&settings, &measured, Some(&baseline));
                    let verdict = match crate::gateway::gates::first_failure(&figures) {
                        Some(failed) => Verdict::Failed(failed.clone()),
                        None => match crate::gateway::gates::overall(&figures) {
                            berth_api::GateVerdict::Passing => Verdict::Passing,
                            _ => Verdict::Pending,
                        },
                    };
                    (figures, verdict)
                }
                None => (Vec::new(), Verdict::Pending),
            };
            control.update(|s| s.gates = figures.clone());
            let observed = Observed {
                now_ms,
                candidate_ready: true,
                start_failed: None,
                verdict,
                promote: control.promote.load(Ordering::Acquire),
                abort: control.abort.load(Ordering::Acquire),
            };
            let (next, action) = plan::next(&plan, progress, &observed);
            let step_text = format!(
                "step {} of {}",
                progress.shown_step(&plan).max(1),
                plan.step_count().max(1)
            );
            progress = next;
            match action {
                Action::Wait { until_ms } => {
                    if now_ms >= next_report_ms && progress.is_exposed() {
                        next_report_ms = now_ms + REPORT_EVERY_MS;
                        log.event(&bake_report(&plan, progress, now_ms, &figures))
                            .await;
                    }
                    if !evaluated_at_bake_end
                        && progress
                            .bake_ends_ms(&plan)
                            .is_some_and(|end| now_ms >= end)
                        && matches!(observed.verdict, Verdict::Failed(_))
                    {
                        evaluated_at_bake_end = true;
                        log.event(&format!(
                            "Bake of {step_text} over with a failing gate and autoRollback off: holding; `berth service promote` or `berth service abort` decides"
                        ))
                        .await;
                    }
                    let wait = Duration::from_millis(until_ms.saturating_sub(now_ms)).min(TICK);
                    let wait = wait.max(Duration::from_millis(10));
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = control.wake.notified() => {}
                    }
                }
                Action::Mirror { percent } => {
                    let old = install(old_pools.clone(), Some(percent));
                    drop(old);
                    marks = Some((candidate_pool.window.mark(), stable.window.mark()));
                    self.record_step(log, &control, &plan, &settings, progress, &old_pools)
                        .await;
                    log.event(&format!(
                        "Step {} of {}: mirroring {percent} % of requests to revision {} for {} s; clients get revision {}'s answers",
                        progress.shown_step(&plan),
                        plan.step_count(),
                        candidate.revision,
                        plan.bake_ms / 1000,
                        stable.revision
                    ))
                    .await;
                }
                Action::Shift { weight } => {
                    for figure in &figures {
                        self.gate_metric(service, figure);
                    }
                    let pools = shifted(&old_pools, &candidate_pool, weight);
                    let old = install(pools.clone(), None);
                    drop(old);
                    marks = Some((candidate_pool.window.mark(), stable.window.mark()));
                    evaluated_at_bake_end = false;
                    self.record_step(log, &control, &plan, &settings, progress, &pools)
                        .await;
                    let warm = if plan.keep_old_warm {
                        format!(", revision {} kept warm", stable.revision)
                    } else {
                        format!(", revision {} at {} %", stable.revision, 100 - weight)
                    };
                    log.event(&format!(
                        "Step {} of {}: revision {} at {weight} %{warm}; baking {} s (gates: 5xx rate ≤ baseline + {} points{}, after {} request(s))",
                        progress.shown_step(&plan),
                        plan.step_count(),
                        candidate.revision,
                        plan.bake_ms / 1000,
                        settings.max_error_rate,
                        settings
                            .max_p99_ms
                            .map(|ms| format!(", p99 ≤ {ms} ms"))
                            .unwrap_or_default(),
                        settings.min_requests
                    ))
                    .await;
                }
                Action::Promote => {
                    for figure in &figures {
                        self.gate_metric(service, figure);
                    }
                    if observed.promote {
                        log.event("Promoted by `berth service promote`").await;
                    }
                    let pool = Arc::new(candidate_pool.with_weight(100));
                    let old = install(vec![pool], None);
                    self.publish_cert(service, &spec);
                    self.set_serving(
                        service,
                        candidate.spec.clone(),
                        candidate.plan.clone(),
                        candidate.count,
                    );
                    self.set_others(service, Vec::new());
                    control.update(|s| {
                        s.phase = "done".into();
                        s.weights = BTreeMap::from([(candidate.revision.to_string(), 100)]);
                    });
                    self.store_rollout(log, &control, progress).await;
                    log.event(&format!(
                        "Switched all traffic to revision {}",
                        candidate.revision
                    ))
                    .await;
                    if let Some(old) = old {
                        let retired: Vec<_> = old
                            .pools
                            .iter()
                            .filter(|p| p.revision != candidate.revision)
                            .flat_map(|p| p.replicas.iter().cloned())
                            .collect();
                        log.event(&format!("Draining revision {}", stable.revision))
                            .await;
                        drain::drain_subset(old, retired, DRAIN_LIMIT, STOP_GRACE).await;
                        log.event(&format!("Revision {} stopped", stable.revision))
                            .await;
                    }
                    self.metrics_rollout(settings.strategy, "promoted");
                    return Ok(Ended::Promoted);
                }
                Action::RollBack(cause) => {
                    let old = install(old_pools.clone(), None);
                    self.set_others(service, Vec::new());
                    for figure in &figures {
                        self.gate_metric(service, figure);
                    }
                    let error = match &cause {
                        RollbackCause::Gate(gate) => gate_error(gate, &step_text),
                        RollbackCause::Aborted => OperationError {
                            code: berth_api::OperationErrorCode::RolloutAborted
                                .as_str()
                                .into(),
                            step: step_text.clone(),
                            message: format!(
                                "aborted by `berth service abort`; traffic is back on revision {}",
                                stable.revision
                            ),
                            output: Vec::new(),
                        },
                    };
                    control.update(|s| {
                        s.phase = "rolledBack".into();
                        s.weights = weights_of(&old_pools);
                    });
                    self.store_rollout(log, &control, progress).await;
                    log.event(&format!(
                        "Rolled back at {step_text}: {}; traffic is back on revision {}",
                        error.message, stable.revision
                    ))
                    .await;
                    if let Some(old) = old {
                        let mut retired: Vec<_> = old
                            .pool(candidate.revision)
                            .map(|p| p.replicas.clone())
                            .unwrap_or_default();
                        for replica in &candidate.replicas {
                            if !retired.iter().any(|r| Arc::ptr_eq(r, replica)) {
                                retired.push(replica.clone());
                            }
                        }
                        drain::drain_subset(old, retired, DRAIN_LIMIT, STOP_GRACE).await;
                        log.event(&format!(
                            "Revision {} drained and stopped",
                            candidate.revision
                        ))
                        .await;
                    }
                    self.metrics_rollout(settings.strategy, "rolledBack");
                    return Ok(Ended::RolledBack(error));
                }
                Action::Fail(why) => {
                    // The candidate was ready before the loop began; a plan
                    // that still reports a start failure is treated as one.
                    return Err(OperationError {
                        code: berth_api::OperationErrorCode::ReplicaStartFailed
                            .as_str()
                            .into(),
                        step: "start the candidate".into(),
                        message: why,
                        output: Vec::new(),
                    });
                }
            }
        }
    }

    /// Records a new step: status, stored state, event.
    async fn record_step(
        &self,
        log: &OpLog<'_>,
        control: &RolloutControl,
        plan: &Plan,
        settings: &RolloutSettings,
        progress: Progress,
        pools: &[Arc<Pool>],
    ) {
        let bake_ends = std::time::SystemTime::now() + Duration::from_millis(plan.bake_ms);
        control.update(|s| {
            s.step = progress.shown_step(plan);
            s.phase = match progress {
                Progress::Shadow { .. } => "shadow".into(),
                _ => "baking".into(),
            };
            s.weights = weights_of(pools);
            // A new step starts with every gate pending, shown at once.
            let fresh = WindowStats::default();
            s.gates = crate::gateway::gates::evaluate(settings, &fresh, Some(&fresh));
            s.bake_ends = Some(humantime::format_rfc3339_seconds(bake_ends).to_string());
        });
        self.store_rollout(log, control, progress).await;
        if let Some(op) = log.operation {
            self.deps
                .events
                .emit(crate::events::EventDraft::rollout_step(
                    op,
                    &control.status(),
                ));
        }
    }

    /// Stores the rollout's state with its operation.
    async fn store_rollout(&self, log: &OpLog<'_>, control: &RolloutControl, progress: Progress) {
        let Some(id) = &log.id else {
            return;
        };
        let stored = StoredRollout {
            status: control.status(),
            progress: serde_json::to_value(progress).unwrap_or_default(),
        };
        if let Err(e) = self.deps.services.set_rollout(id, &stored).await {
            tracing::warn!(operation = %id, error = %e, "could not store the rollout's state");
        }
    }

    fn gate_metric(&self, service: &str, figure: &GateFigure) {
        let gate = match figure.gate {
            GateKind::ErrorRate => "errorRate",
            GateKind::P99Latency => "p99Latency",
        };
        let verdict = match figure.verdict {
            berth_api::GateVerdict::Pending => "pending",
            berth_api::GateVerdict::Passing => "passing",
            berth_api::GateVerdict::Failed => "failed",
        };
        self.deps
            .observability
            .metrics()
            .gate_evaluated(service, gate, verdict);
    }

    fn metrics_rollout(&self, strategy: RolloutStrategy, outcome: &str) {
        self.deps
            .observability
            .metrics()
            .rollout_finished(strategy.as_str(), outcome);
    }
}

/// One line for the operation log: the step, the time left and each gate.
fn bake_report(plan: &Plan, progress: Progress, now_ms: u64, figures: &[GateFigure]) -> String {
    let left = progress
        .bake_ends_ms(plan)
        .map_or(0, |end| end.saturating_sub(now_ms) / 1000);
    let gates: Vec<String> = figures
        .iter()
        .map(|g| {
            let (name, unit) = match g.gate {
                GateKind::ErrorRate => ("5xx rate", "%"),
                GateKind::P99Latency => ("p99", "ms"),
            };
            let verdict = match g.verdict {
                berth_api::GateVerdict::Pending => "pending",
                berth_api::GateVerdict::Passing => "passing",
                berth_api::GateVerdict::Failed => "failed",
            };
            format!(
                "{name} {} {unit} (threshold {} {unit}) over {} request(s): {verdict}",
                g.measured.map_or_else(|| "-".to_owned(), shown),
                shown(g.threshold),
                g.requests
            )
        })
        .collect();
    format!(
        "Baking step {} of {} ({left} s left): {}",
        progress.shown_step(plan),
        plan.step_count(),
        if gates.is_empty() {
            "no gate figures yet".to_owned()
        } else {
            gates.join("; ")
        }
    )
}

/// The old pools with `weight` moved to the candidate: the stable pool gets
/// the rest, other old pools 0 (kept up until the end); the candidate last.
fn shifted(old: &[Arc<Pool>], candidate: &Arc<Pool>, weight: u32) -> Vec<Arc<Pool>> {
    let mut pools: Vec<Arc<Pool>> = old
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let w = if i == 0 { 100 - weight.min(100) } else { 0 };
            Arc::new(p.with_weight(w))
        })
        .collect();
    pools.push(Arc::new(candidate.with_weight(weight)));
    pools
}

/// Revision → weight of `pools`.
fn weights_of(pools: &[Arc<Pool>]) -> BTreeMap<String, u32> {
    pools
        .iter()
        .map(|p| (p.revision.to_string(), p.weight))
        .collect()
}
