//! The plan step by step against a simulated compute target with named
//! failure points, on a clock that only moves when the simulation moves it.

use berth_api::{GateKind, GateVerdict, ShadowSettings};

use super::*;

/// Where the simulated world goes wrong.
#[derive(Debug, Clone, Copy, PartialEq)]
enum FailPoint {
    None,
    /// The candidate's `init()` raises.
    CandidateInit,
    /// A gate fails once the candidate bakes at this shown step.
    GateAtStep(u32),
    /// The server is killed once the candidate bakes at this shown step.
    RestartAtStep(u32),
    /// Someone runs `berth service abort` at this shown step.
    AbortAtStep(u32),
    /// Someone runs `berth service promote` at this shown step.
    PromoteAtStep(u32),
}

/// How a simulated rollout ended.
#[derive(Debug, Clone, PartialEq)]
enum End {
    Promoted,
    RolledBack(RollbackCause),
    Failed,
    Restarted(AfterRestart),
}

struct Sim {
    plan: Plan,
    progress: Progress,
    now_ms: u64,
    fail: FailPoint,
    /// Candidate weights applied, in order (`0` = mirror only).
    weights: Vec<u32>,
    /// Time each shift happened.
    shifted_at: Vec<u64>,
}

fn gate_failure() -> GateFigure {
    GateFigure {
        gate: GateKind::ErrorRate,
        threshold: 1.0,
        measured: Some(30.0),
        baseline: Some(0.0),
        requests: 40,
        verdict: GateVerdict::Failed,
    }
}

impl Sim {
    fn new(settings: RolloutSettings, fail: FailPoint) -> Self {
        Self {
            plan: Plan::new(&settings),
            progress: Progress::Starting,
            now_ms: 0,
            fail,
            weights: Vec::new(),
            shifted_at: Vec::new(),
        }
    }

    fn observe(&self) -> Observed {
        let step = self.progress.shown_step(&self.plan);
        let exposed = self.progress.is_exposed();
        Observed {
            now_ms: self.now_ms,
            candidate_ready: self.now_ms >= 500,
            start_failed: (self.fail == FailPoint::CandidateInit && self.now_ms >= 500)
                .then(|| "init() raised".to_owned()),
            verdict: if exposed && self.fail == FailPoint::GateAtStep(step) {
                Verdict::Failed(gate_failure())
            } else if exposed {
                Verdict::Passing
            } else {
                Verdict::Pending
            },
            promote: exposed && self.fail == FailPoint::PromoteAtStep(step),
            abort: exposed && self.fail == FailPoint::AbortAtStep(step),
        }
    }

    fn run(&mut self) -> End {
        for _ in 0..1000 {
            if let FailPoint::RestartAtStep(k) = self.fail
                && self.progress.is_exposed()
                && self.progress.shown_step(&self.plan) == k
            {
                return End::Restarted(after_restart(Some(self.progress)));
            }
            let observed = self.observe();
            let (progress, action) = next(&self.plan, self.progress, &observed);
            self.progress = progress;
            match action {
                // The executor evaluates every tick (100 ms here) until then.
                Action::Wait { .. } => self.now_ms += 100,
                Action::Mirror { .. } => {
                    self.weights.push(0);
                    self.shifted_at.push(self.now_ms);
                }
                Action::Shift { weight } => {
                    self.weights.push(weight);
                    self.shifted_at.push(self.now_ms);
                }
                Action::Promote => return End::Promoted,
                Action::RollBack(cause) => return End::RolledBack(cause),
                Action::Fail(_) => return End::Failed,
            }
        }
        panic!("the rollout never ended: {:?}", self.progress);
    }
}

fn settings(strategy: RolloutStrategy) -> RolloutSettings {
    RolloutSettings {
        strategy,
        canary_percent: 10,
        steps: 4,
        bake_seconds: 2,
        ..RolloutSettings::default()
    }
}

#[test]
fn rolling_switches_everything_once_the_candidate_is_ready() {
    let mut sim = Sim::new(settings(RolloutStrategy::Rolling), FailPoint::None);
    assert_eq!(sim.run(), End::Promoted);
    assert!(sim.weights.is_empty(), "no bake: {:?}", sim.weights);
    assert!(sim.now_ms >= 500);
}

#[test]
fn canary_bakes_its_share_for_the_bake_then_promotes() {
    let mut sim = Sim::new(settings(RolloutStrategy::Canary), FailPoint::None);
    assert_eq!(sim.run(), End::Promoted);
    assert_eq!(sim.weights, vec![10]);
    let baked = sim.now_ms - sim.shifted_at[0];
    assert!(baked >= 2000, "baked {baked} ms");
}

#[test]
fn linear_moves_in_equal_baked_steps() {
    let mut sim = Sim::new(settings(RolloutStrategy::Linear), FailPoint::None);
    assert_eq!(sim.run(), End::Promoted);
    assert_eq!(sim.weights, vec![25, 50, 75]);
    for pair in sim.shifted_at.windows(2) {
        assert!(pair[1] - pair[0] >= 2000, "steps at {:?}", sim.shifted_at);
    }
    assert_eq!(sim.plan.step_count(), 3);
}

#[test]
fn blue_green_switches_at_once_and_keeps_the_old_revision_warm_for_the_bake() {
    let mut sim = Sim::new(settings(RolloutStrategy::BlueGreen), FailPoint::None);
    assert!(sim.plan.keep_old_warm);
    assert_eq!(sim.run(), End::Promoted);
    assert_eq!(sim.weights, vec![100]);
    assert!(sim.now_ms - sim.shifted_at[0] >= 2000);
}

#[test]
fn a_candidate_that_fails_init_fails_without_taking_traffic() {
    for strategy in [
        RolloutStrategy::Rolling,
        RolloutStrategy::Canary,
        RolloutStrategy::Linear,
        RolloutStrategy::BlueGreen,
    ] {
        let mut sim = Sim::new(settings(strategy), FailPoint::CandidateInit);
        assert_eq!(sim.run(), End::Failed, "{strategy:?}");
        assert!(sim.weights.is_empty(), "{strategy:?}: {:?}", sim.weights);
    }
}

#[test]
fn a_gate_failing_at_step_k_rolls_back_at_once() {
    for k in 1..=3 {
        let mut sim = Sim::new(settings(RolloutStrategy::Linear), FailPoint::GateAtStep(k));
        match sim.run() {
            End::RolledBack(RollbackCause::Gate(gate)) => {
                assert_eq!(gate.gate, GateKind::ErrorRate)
            }
            other => panic!("step {k}: {other:?}"),
        }
        assert_eq!(sim.weights.len(), k as usize, "shifts before the failure");
        // Judged on the first evaluation of that step, not at the end of its bake.
        assert_eq!(sim.now_ms, *sim.shifted_at.last().unwrap_or(&0));
    }
}

#[test]
fn a_failing_gate_without_auto_rollback_holds_until_someone_decides() {
    let mut held = settings(RolloutStrategy::Canary);
    held.auto_rollback = false;
    let plan = Plan::new(&held);
    let progress = Progress::Baking {
        step: 0,
        since_ms: 0,
    };
    let mut observed = Observed {
        now_ms: 10_000,
        candidate_ready: true,
        start_failed: None,
        verdict: Verdict::Failed(gate_failure()),
        promote: false,
        abort: false,
    };
    assert_eq!(
        next(&plan, progress, &observed),
        (progress, Action::Wait { until_ms: 10_000 })
    );
    observed.abort = true;
    assert_eq!(
        next(&plan, progress, &observed).1,
        Action::RollBack(RollbackCause::Aborted)
    );
    observed.abort = false;
    observed.promote = true;
    assert_eq!(next(&plan, progress, &observed).1, Action::Promote);
}

#[test]
fn abort_rolls_back_and_promote_skips_the_rest_of_the_bake() {
    let mut sim = Sim::new(settings(RolloutStrategy::Linear), FailPoint::AbortAtStep(2));
    assert_eq!(sim.run(), End::RolledBack(RollbackCause::Aborted));
    let mut sim = Sim::new(
        settings(RolloutStrategy::Linear),
        FailPoint::PromoteAtStep(1),
    );
    assert_eq!(sim.run(), End::Promoted);
    assert_eq!(sim.weights, vec![25], "promoted from the first step");
    assert!(sim.now_ms - sim.shifted_at[0] < 2000);
}

#[test]
fn a_restart_mid_bake_rolls_back_and_before_any_traffic_fails() {
    for k in 1..=3 {
        let mut sim = Sim::new(
            settings(RolloutStrategy::Linear),
            FailPoint::RestartAtStep(k),
        );
        assert_eq!(
            sim.run(),
            End::Restarted(AfterRestart::RolledBack),
            "step {k}"
        );
    }
    assert_eq!(
        after_restart(Some(Progress::Starting)),
        AfterRestart::Failed
    );
    assert_eq!(after_restart(None), AfterRestart::Failed);
}

#[test]
fn a_shadow_phase_comes_first_and_is_judged_like_a_bake() {
    let mut with_shadow = settings(RolloutStrategy::Canary);
    with_shadow.shadow = Some(ShadowSettings {
        revision: None,
        percent: 20,
    });
    let mut sim = Sim::new(with_shadow.clone(), FailPoint::None);
    assert_eq!(sim.run(), End::Promoted);
    assert_eq!(sim.weights, vec![0, 10], "mirror, then the canary share");
    let mut sim = Sim::new(with_shadow, FailPoint::GateAtStep(1));
    assert!(matches!(sim.run(), End::RolledBack(RollbackCause::Gate(_))));
    assert_eq!(sim.weights, vec![0], "rolled back before any traffic");
}

#[test]
fn linear_weights_end_at_100_for_any_step_count() {
    for steps in 2..=20 {
        let plan = Plan::new(&RolloutSettings {
            strategy: RolloutStrategy::Linear,
            steps,
            ..RolloutSettings::default()
        });
        assert_eq!(plan.weights.len(), steps as usize);
        assert_eq!(plan.weights.last(), Some(&100));
        assert!(
            plan.weights.windows(2).all(|w| w[0] < w[1]),
            "{:?}",
            plan.weights
        );
    }
}
