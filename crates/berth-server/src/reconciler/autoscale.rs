//! The autoscaling policy: pure functions from measured utilisation to a
//! replica count, and the per-service window that feeds them.
//!
//! Utilisation is what the gateway has in hand for a service (requests in
//! flight on its replicas plus requests waiting for admission) divided by its
//! capacity (ready replicas × `maxConcurrentRequestsPerContainer`), sampled
//! every [`SAMPLE_EVERY`] and averaged over `refreshPeriodInSeconds`. The
//! recommendation follows the Kubernetes HPA rule — `ceil(current ×
//! utilisation / target)`, left alone within a 10 % tolerance — clamped to
//! `[minReplicas, maxReplicas]`. Scaling up acts on the newest recommendation;
//! scaling down acts on the highest recommendation of the stabilisation window,
//! so a service only shrinks once the load has stayed low that long.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How often utilisation is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Ratios of utilisation to target this close to 1 change nothing.
const TOLERANCE: f64 = 0.1;

/// The bounds and target of one service.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// `minReplicas`.
    pub min: u32,
    /// `maxReplicas`.
    pub max: u32,
    /// `targetUtilization`, percent.
    pub target: u32,
    /// `refreshPeriodInSeconds`.
    pub refresh: Duration,
    /// How long a lower recommendation must hold before scaling down.
    pub stabilization: Duration,
}

impl Policy {
    /// Clamps `count` into `[min, max]`.
    pub fn clamp(&self, count: u32) -> u32 {
        count.clamp(self.min.max(1), self.max.max(self.min.max(1)))
    }
}

/// The replica count one utilisation reading asks for.
pub fn recommend(policy: &Policy, current: u32, utilization_pct: f64) -> u32 {
    if current == 0 {
        return policy.clamp(policy.min);
    }
    let ratio = utilization_pct / f64::from(policy.target.max(1));
    if (ratio - 1.0).abs() <= TOLERANCE {
        return policy.clamp(current);
    }
    let wanted = (f64::from(current) * ratio).ceil();
    // `as` saturates; the clamp bounds it anyway.
    policy.clamp(wanted.max(0.0) as u32)
}

/// A decision to change the replica count.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Replicas before.
    pub from: u32,
    /// Replicas after.
    pub to: u32,
    /// Mean utilisation over the refresh window, percent.
    pub utilization_pct: f64,
}

/// Samples and recommendations of one service.
#[derive(Debug, Default)]
pub struct Window {
    samples: VecDeque<(Instant, f64)>,
    recommendations: VecDeque<(Instant, u32)>,
    last_evaluation: Option<Instant>,
    last_utilization_pct: Option<f64>,
}

impl Window {
    /// Records one utilisation sample (a fraction of capacity, may exceed 1).
    pub fn sample(&mut self, at: Instant, utilization: f64) {
        self.samples.push_back((at, utilization));
    }

    /// Forgets everything (after the bounds changed).
    pub fn reset(&mut self) {
        *self = Window::default();
    }

    /// Forgets the samples (after a scale action changed the capacity).
    pub fn clear_samples(&mut self) {
        self.samples.clear();
    }

    /// Mean utilisation of the last evaluated window, percent.
    pub fn last_utilization_pct(&self) -> Option<f64> {
        self.last_utilization_pct
    }

    /// Once per refresh period: the decision, if the count should change.
    pub fn evaluate(&mut self, policy: &Policy, current: u32, now: Instant) -> Option<Decision> {
        let since = now.checked_sub(policy.refresh).unwrap_or(now);
        while self.samples.front().is_some_and(|(at, _)| *at < since) {
            self.samples.pop_front();
        }
        match self.last_evaluation {
            Some(last) if now.duration_since(last) < policy.refresh => return None,
            None if self.samples.is_empty() => return None,
            _ => {}
        }
        self.last_evaluation = Some(now);
        if self.samples.is_empty() {
            return None;
        }
        let mean = self.samples.iter().map(|(_, u)| u).sum::<f64>() / self.samples.len() as f64;
        let utilization_pct = mean * 100.0;
        self.last_utilization_pct = Some(utilization_pct);
        let recommendation = recommend(policy, current, utilization_pct);
        self.recommendations.push_back((now, recommendation));
        let keep_from = now.checked_sub(policy.stabilization).unwrap_or(now);
        while self
            .recommendations
            .front()
            .is_some_and(|(at, _)| *at < keep_from)
        {
            self.recommendations.pop_front();
        }
        let to = if recommendation > current {
            recommendation
        } else {
            // Down only as far as the highest recommendation of the window, and
            // only once the window is full.
            let oldest = self.recommendations.front().map(|(at, _)| *at);
            let full = oldest
                .is_some_and(|at| now.duration_since(at) + policy.refresh >= policy.stabilization);
            let highest = self
                .recommendations
                .iter()
                .map(|(_, r)| *r)
                .max()
                .unwrap_or(current);
            if full { highest.min(current) } else { current }
        };
        let to = policy.clamp(to);
        (to != current).then_some(Decision {
            from: current,
            to,
            utilization_pct,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            min: 1,
            max: 5,
            target: 70,
            refresh: Duration::from_secs(1),
            stabilization: Duration::from_secs(5),
        }
    }

    #[test]
    fn recommendation_follows_the_hpa_rule_within_bounds() {
        let p = policy();
        assert_eq!(recommend(&p, 1, 140.0), 2);
        assert_eq!(recommend(&p, 2, 200.0), 5, "6 wanted, 5 allowed");
        assert_eq!(recommend(&p, 3, 72.0), 3, "within tolerance");
        assert_eq!(recommend(&p, 4, 10.0), 1);
        assert_eq!(recommend(&p, 4, 0.0), 1, "never below min");
        assert_eq!(recommend(&p, 0, 0.0), 1);
    }

    fn feed(w: &mut Window, start: Instant, from_s: f64, to_s: f64, utilization: f64) {
        let mut t = from_s;
        while t < to_s {
            w.sample(start + Duration::from_secs_f64(t), utilization);
            t += 0.1;
        }
    }

    #[test]
    fn scales_up_at_the_first_evaluation_over_target() {
        let p = policy();
        let mut w = Window::default();
        let t0 = Instant::now();
        feed(&mut w, t0, 0.0, 1.0, 1.0);
        let decision = w.evaluate(&p, 1, t0 + Duration::from_secs(1));
        assert_eq!(
            decision.map(|d| (d.from, d.to)),
            Some((1, 2)),
            "100% of one replica against 70% asks for 2"
        );
    }

    #[test]
    fn scales_down_only_after_the_stabilisation_window() {
        let p = policy();
        let mut w = Window::default();
        let t0 = Instant::now();
        let mut decisions = Vec::new();
        for second in 1..=8u64 {
            feed(&mut w, t0, (second - 1) as f64, second as f64, 0.0);
            if let Some(d) = w.evaluate(&p, 3, t0 + Duration::from_secs(second)) {
                decisions.push((second, d.to));
            }
        }
        assert!(
            decisions.iter().all(|(s, _)| *s >= 5),
            "no scale-down inside the window: {decisions:?}"
        );
        assert_eq!(decisions.first().map(|(_, to)| *to), Some(1));
    }

    #[test]
    fn a_burst_inside_the_window_holds_the_count() {
        let p = policy();
        let mut w = Window::default();
        let t0 = Instant::now();
        // Busy for 2 s (recommendation 3 at 3 replicas), then idle.
        feed(&mut w, t0, 0.0, 2.0, 0.7);
        assert_eq!(w.evaluate(&p, 3, t0 + Duration::from_secs(1)), None);
        assert_eq!(w.evaluate(&p, 3, t0 + Duration::from_secs(2)), None);
        feed(&mut w, t0, 2.0, 6.0, 0.0);
        feed(&mut w, t0, 6.0, 8.0, 0.0);
        for s in 3..=7 {
            assert_eq!(
                w.evaluate(&p, 3, t0 + Duration::from_secs(s)),
                None,
                "the busy seconds are still inside the window at {s}s"
            );
        }
        assert_eq!(
            w.evaluate(&p, 3, t0 + Duration::from_secs(8)).map(|d| d.to),
            Some(1)
        );
    }

    #[test]
    fn evaluates_once_per_refresh_period() {
        let p = policy();
        let mut w = Window::default();
        let t0 = Instant::now();
        feed(&mut w, t0, 0.0, 1.0, 2.0);
        assert!(w.evaluate(&p, 1, t0 + Duration::from_secs(1)).is_some());
        assert_eq!(w.evaluate(&p, 1, t0 + Duration::from_millis(1500)), None);
    }
}
