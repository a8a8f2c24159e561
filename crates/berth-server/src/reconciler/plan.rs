//! The rollout plan: a pure function from where a rollout stands and what is
//! observed (candidate readiness, gate verdict, the user's promote or abort,
//! the clock) to the next step. The executor ([`super::rollout`]) applies each
//! step to the gateway and the compute target and asks again; nothing here
//! touches a process, a route or the clock.

use berth_api::{GateFigure, RolloutSettings, RolloutStrategy};
use serde::{Deserialize, Serialize};

/// The steps of one rollout, fixed when it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Strategy.
    pub strategy: RolloutStrategy,
    /// The candidate's weight at each step; the last is 100.
    pub weights: Vec<u32>,
    /// Bake of each step below 100 (and of blue-green's warm time), ms.
    pub bake_ms: u64,
    /// A shadow phase first, mirroring this share to the candidate.
    pub shadow_percent: Option<u32>,
    /// Roll back by itself when a gate fails.
    pub auto_rollback: bool,
    /// Blue-green: the old revision stays up (weight 0) through the bake.
    pub keep_old_warm: bool,
}

impl Plan {
    /// The plan `settings` describe.
    pub fn new(settings: &RolloutSettings) -> Self {
        let weights = match settings.strategy {
            RolloutStrategy::Rolling | RolloutStrategy::BlueGreen => vec![100],
            RolloutStrategy::Canary => vec![settings.canary_percent.clamp(1, 99), 100],
            RolloutStrategy::Linear => {
                let steps = settings.steps.max(2);
                (1..=steps).map(|k| k * 100 / steps).collect()
            }
        };
        Self {
            strategy: settings.strategy,
            weights,
            bake_ms: settings.bake_seconds.saturating_mul(1000),
            shadow_percent: settings.shadow.as_ref().map(|s| s.percent.clamp(1, 100)),
            auto_rollback: settings.auto_rollback,
            keep_old_warm: settings.strategy == RolloutStrategy::BlueGreen,
        }
    }

    /// Steps shown to users: shadow (if any) plus each weight below 100, plus
    /// blue-green's warm bake.
    pub fn step_count(&self) -> u32 {
        let shifts = self.weights.iter().filter(|&&w| w < 100).count() as u32;
        let warm = u32::from(self.keep_old_warm);
        u32::from(self.shadow_percent.is_some()) + shifts + warm
    }
}

/// Where a rollout stands; stored with its operation at every step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "phase")]
pub enum Progress {
    /// The candidate's replicas are starting; it has no traffic.
    Starting,
    /// Requests are mirrored to the candidate since `since_ms`.
    Shadow {
        /// When the bake started, ms on the operation's clock.
        since_ms: u64,
    },
    /// The candidate has `weights[step]` % since `since_ms`.
    Baking {
        /// Index into [`Plan::weights`].
        step: usize,
        /// When the bake started, ms on the operation's clock.
        since_ms: u64,
    },
}

impl Progress {
    /// Whether the candidate has (or had) traffic or mirrored requests.
    pub fn is_exposed(self) -> bool {
        !matches!(self, Self::Starting)
    }

    /// The step shown to users, from 1 (0 while starting).
    pub fn shown_step(self, plan: &Plan) -> u32 {
        let shadow = u32::from(plan.shadow_percent.is_some());
        match self {
            Self::Starting => 0,
            Self::Shadow { .. } => 1,
            Self::Baking { step, .. } => shadow + step as u32 + 1,
        }
    }

    /// The candidate's weight now.
    pub fn candidate_weight(self, plan: &Plan) -> u32 {
        match self {
            Self::Starting | Self::Shadow { .. } => 0,
            Self::Baking { step, .. } => plan.weights.get(step).copied().unwrap_or(100),
        }
    }

    /// When the current bake ends, ms on the operation's clock.
    pub fn bake_ends_ms(self, plan: &Plan) -> Option<u64> {
        match self {
            Self::Starting => None,
            Self::Shadow { since_ms } | Self::Baking { since_ms, .. } => {
                Some(since_ms.saturating_add(plan.bake_ms))
            }
        }
    }
}

/// The gates' overall verdict in the current bake.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Not judged yet (fewer than `minRequests`).
    Pending,
    /// Every gate within its threshold.
    Passing,
    /// This gate over its threshold.
    Failed(GateFigure),
}

/// What the executor observed since the last step.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// Now, ms on the operation's clock.
    pub now_ms: u64,
    /// Every candidate replica passed `init()`.
    pub candidate_ready: bool,
    /// The candidate could not start (why).
    pub start_failed: Option<String>,
    /// The gates.
    pub verdict: Verdict,
    /// `berth service promote` was asked.
    pub promote: bool,
    /// `berth service abort` was asked.
    pub abort: bool,
}

/// Why traffic went back to the previous revision.
#[derive(Debug, Clone, PartialEq)]
pub enum RollbackCause {
    /// A gate failed.
    Gate(GateFigure),
    /// `berth service abort`.
    Aborted,
}

/// The next step.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Nothing to change; look again at `until_ms` at the latest.
    Wait {
        /// ms on the operation's clock.
        until_ms: u64,
    },
    /// Mirror `percent` of requests to the candidate (no weight yet).
    Mirror {
        /// Share copied.
        percent: u32,
    },
    /// Give the candidate `weight` % (the old revision the rest; with blue-green
    /// the old one stays up at 0 %).
    Shift {
        /// Candidate weight.
        weight: u32,
    },
    /// The candidate takes all traffic; the old revision drains and stops.
    Promote,
    /// Traffic back on the old revision at once; the candidate drains and stops.
    RollBack(RollbackCause),
    /// The candidate did not start; nothing was exposed.
    Fail(String),
}

/// The next step of `plan` from `progress` given `observed`, and where the
/// rollout stands after it.
pub fn next(plan: &Plan, progress: Progress, observed: &Observed) -> (Progress, Action) {
    let now = observed.now_ms;
    match progress {
        Progress::Starting => {
            if let Some(why) = &observed.start_failed {
                return (progress, Action::Fail(why.clone()));
            }
            if !observed.candidate_ready {
                return (progress, Action::Wait { until_ms: now });
            }
            if let Some(percent) = plan.shadow_percent {
                return (
                    Progress::Shadow { since_ms: now },
                    Action::Mirror { percent },
                );
            }
            first_shift(plan, now)
        }
        Progress::Shadow { .. } | Progress::Baking { .. } => {
            if observed.abort {
                return (progress, Action::RollBack(RollbackCause::Aborted));
            }
            if let (Verdict::Failed(gate), true) = (&observed.verdict, plan.auto_rollback) {
                return (
                    progress,
                    Action::RollBack(RollbackCause::Gate(gate.clone())),
                );
            }
            if observed.promote {
                return (progress, Action::Promote);
            }
            let ends = progress.bake_ends_ms(plan).unwrap_or(now);
            if now < ends {
                return (progress, Action::Wait { until_ms: ends });
            }
            if matches!(observed.verdict, Verdict::Failed(_)) {
                // Without autoRollback a failing gate holds the rollout where it
                // is until someone promotes or aborts it.
                return (progress, Action::Wait { until_ms: now });
            }
            match progress {
                Progress::Shadow { .. } => first_shift(plan, now),
                Progress::Baking { step, .. } => match plan.weights.get(step + 1) {
                    Some(&weight) if weight < 100 => (
                        Progress::Baking {
                            step: step + 1,
                            since_ms: now,
                        },
                        Action::Shift { weight },
                    ),
                    _ => (progress, Action::Promote),
                },
                Progress::Starting => (progress, Action::Wait { until_ms: now }),
            }
        }
    }
}

/// The first traffic step: a bake at the first weight, or (rolling) straight
/// to promotion; blue-green switches everything and bakes with the old warm.
fn first_shift(plan: &Plan, now: u64) -> (Progress, Action) {
    let weight = plan.weights.first().copied().unwrap_or(100);
    if weight < 100 || plan.keep_old_warm {
        (
            Progress::Baking {
                step: 0,
                since_ms: now,
            },
            Action::Shift { weight },
        )
    } else {
        (
            Progress::Baking {
                step: 0,
                since_ms: now,
            },
            Action::Promote,
        )
    }
}

/// How an operation cut off by a server restart ends, from its stored progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterRestart {
    /// The candidate never had traffic: the operation failed (as any cut-off
    /// operation does) and the service serves what it served.
    Failed,
    /// The candidate had a share (or mirrored requests): the rollout is rolled
    /// back, the service serves its stable revision alone, and the operation
    /// ends `RolledBack`.
    RolledBack,
}

/// See [`AfterRestart`]. Berth rolls back rather than resumes: the gate
/// windows of the bake lived in the old process, and judging a candidate on
/// figures it no longer has would be guessing.
pub fn after_restart(progress: Option<Progress>) -> AfterRestart {
    match progress {
        Some(p) if p.is_exposed() => AfterRestart::RolledBack,
        _ => AfterRestart::Failed,
    }
}

#[cfg(test)]
mod tests;
