//! A rollout's gates, judged from what the gateway measured over a bake
//! window: a pure function of the settings and the candidate's (and the
//! baseline's) [`WindowStats`].
//!
//! - `errorRate`: the candidate's 5xx rate (percent) against the baseline's rate
//!   plus `maxErrorRate` points. The baseline counts only once it answered
//!   `minRequests` requests in the window; before that (or without a baseline)
//!   its rate is taken as 0 and [`GateFigure::baseline`] stays empty.
//! - `p99Latency`: only when `maxP99Ms` is set; the candidate's p99 against it.
//!
//! Every verdict is `pending` while the candidate answered fewer than
//! `minRequests` requests (or none). A figure equal to its threshold passes; a
//! gate fails when the figure exceeds the threshold by more than a rounding
//! error ([`TOLERANCE`]).

use berth_api::{GateFigure, GateKind, GateVerdict, RolloutSettings};

use super::window::WindowStats;

/// Relative slack for comparing a figure with its threshold, so that
/// `3/100 = 3 %` against `2 % + 1` passes whatever the float rounding.
pub const TOLERANCE: f64 = 1e-9;

/// The figures of every configured gate, in a fixed order (`errorRate`, then
/// `p99Latency` when set).
pub fn evaluate(
    settings: &RolloutSettings,
    candidate: &WindowStats,
    baseline: Option<&WindowStats>,
) -> Vec<GateFigure> {
    let judged = candidate.requests > 0 && candidate.requests >= settings.min_requests;
    // The baseline is compared with only once it has enough requests itself.
    let baseline = baseline.filter(|b| b.requests > 0 && b.requests >= settings.min_requests);
    let verdict = |measured: Option<f64>, threshold: f64| match measured {
        Some(value) if judged => {
            if value > threshold + TOLERANCE * threshold.abs().max(1.0) {
                GateVerdict::Failed
            } else {
                GateVerdict::Passing
            }
        }
        _ => GateVerdict::Pending,
    };
    let mut figures = Vec::with_capacity(2);
    let base_rate = baseline.map(|b| b.error_rate_percent);
    let threshold = base_rate.unwrap_or(0.0) + settings.max_error_rate;
    let measured = (candidate.requests > 0).then_some(candidate.error_rate_percent);
    figures.push(GateFigure {
        gate: GateKind::ErrorRate,
        threshold,
        measured,
        baseline: base_rate,
        requests: candidate.requests,
        verdict: verdict(measured, threshold),
    });
    if let Some(max_p99) = settings.max_p99_ms {
        let threshold = max_p99 as f64;
        figures.push(GateFigure {
            gate: GateKind::P99Latency,
            threshold,
            measured: candidate.p99_ms,
            baseline: baseline.and_then(|b| b.p99_ms),
            requests: candidate.requests,
            verdict: verdict(candidate.p99_ms, threshold),
        });
    }
    figures
}

/// The first failed gate, if any (the reason a rollout rolls back).
pub fn first_failure(figures: &[GateFigure]) -> Option<&GateFigure> {
    figures.iter().find(|f| f.verdict == GateVerdict::Failed)
}

/// All gates together: `failed` if one failed, else `pending` if one is not
/// judged yet, else `passing` (also with no gates at all).
pub fn overall(figures: &[GateFigure]) -> GateVerdict {
    if first_failure(figures).is_some() {
        GateVerdict::Failed
    } else if figures.iter().any(|f| f.verdict == GateVerdict::Pending) {
        GateVerdict::Pending
    } else {
        GateVerdict::Passing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(requests: u64, errors: u64, p99_ms: Option<f64>) -> WindowStats {
        WindowStats {
            requests,
            errors,
            error_rate_percent: if requests == 0 {
                0.0
            } else {
                errors as f64 * 100.0 / requests as f64
            },
            p99_ms,
            p50_ms: p99_ms.map(|p| p / 2.0),
        }
    }

    fn settings(
        max_error_rate: f64,
        max_p99_ms: Option<u64>,
        min_requests: u64,
    ) -> RolloutSettings {
        RolloutSettings {
            max_error_rate,
            max_p99_ms,
            min_requests,
            ..RolloutSettings::default()
        }
    }

    use GateVerdict::{Failed, Passing, Pending};

    /// (gate, threshold, measured, baseline, verdict) of one figure.
    type Want = (GateKind, f64, Option<f64>, Option<f64>, GateVerdict);

    struct Case {
        name: &'static str,
        settings: RolloutSettings,
        candidate: WindowStats,
        baseline: Option<WindowStats>,
        want: Vec<Want>,
    }

    #[test]
    fn gate_table() {
        use GateKind::{ErrorRate, P99Latency};
        let cases = [
            Case {
                name: "no requests: pending, nothing measured",
                settings: settings(1.0, Some(200), 20),
                candidate: stats(0, 0, None),
                baseline: None,
                want: vec![
                    (ErrorRate, 1.0, None, None, Pending),
                    (P99Latency, 200.0, None, None, Pending),
                ],
            },
            Case {
                name: "under minRequests: pending even when failing",
                settings: settings(1.0, Some(200), 20),
                candidate: stats(19, 19, Some(5_000.0)),
                baseline: None,
                want: vec![
                    (ErrorRate, 1.0, Some(100.0), None, Pending),
                    (P99Latency, 200.0, Some(5_000.0), None, Pending),
                ],
            },
            Case {
                name: "minRequests 0 still needs one request",
                settings: settings(1.0, None, 0),
                candidate: stats(0, 0, None),
                baseline: None,
                want: vec![(ErrorRate, 1.0, None, None, Pending)],
            },
            Case {
                name: "at minRequests and clean: passing; no p99 gate unless set",
                settings: settings(1.0, None, 20),
                candidate: stats(20, 0, Some(10.0)),
                baseline: None,
                want: vec![(ErrorRate, 1.0, Some(0.0), None, Passing)],
            },
            Case {
                name: "error rate over the threshold fails",
                settings: settings(1.0, Some(200), 20),
                candidate: stats(100, 2, Some(50.0)),
                baseline: None,
                want: vec![
                    (ErrorRate, 1.0, Some(2.0), None, Failed),
                    (P99Latency, 200.0, Some(50.0), None, Passing),
                ],
            },
            Case {
                name: "error rate equal to the threshold passes",
                settings: settings(1.0, None, 20),
                candidate: stats(100, 1, Some(50.0)),
                baseline: None,
                want: vec![(ErrorRate, 1.0, Some(1.0), None, Passing)],
            },
            Case {
                name: "p99 over maxP99Ms fails",
                settings: settings(1.0, Some(200), 20),
                candidate: stats(100, 0, Some(250.0)),
                baseline: None,
                want: vec![
                    (ErrorRate, 1.0, Some(0.0), None, Passing),
                    (P99Latency, 200.0, Some(250.0), None, Failed),
                ],
            },
            Case {
                name: "p99 equal to maxP99Ms passes",
                settings: settings(1.0, Some(200), 20),
                candidate: stats(100, 0, Some(200.0)),
                baseline: None,
                want: vec![
                    (ErrorRate, 1.0, Some(0.0), None, Passing),
                    (P99Latency, 200.0, Some(200.0), None, Passing),
                ],
            },
            Case {
                name: "a failing baseline raises the error threshold",
                settings: settings(1.0, Some(200), 20),
                candidate: stats(100, 5, Some(20.0)),
                baseline: Some(stats(1_000, 45, Some(30.0))),
                want: vec![
                    (ErrorRate, 5.5, Some(5.0), Some(4.5), Passing),
                    (P99Latency, 200.0, Some(20.0), Some(30.0), Passing),
                ],
            },
            Case {
                name: "worse than the baseline by more than maxErrorRate fails",
                settings: settings(1.0, None, 20),
                candidate: stats(100, 6, Some(20.0)),
                baseline: Some(stats(1_000, 45, Some(30.0))),
                want: vec![(ErrorRate, 5.5, Some(6.0), Some(4.5), Failed)],
            },
            Case {
                name: "baseline plus maxErrorRate is the boundary and passes",
                settings: settings(1.0, None, 20),
                candidate: stats(100, 3, None),
                baseline: Some(stats(300, 6, None)),
                want: vec![(ErrorRate, 3.0, Some(3.0), Some(2.0), Passing)],
            },
            Case {
                name: "boundary with rates that do not round exactly",
                settings: settings(1.0, None, 20),
                candidate: stats(300, 13, None),
                baseline: Some(stats(30, 1, None)),
                want: vec![(
                    ErrorRate,
                    100.0 / 30.0 + 1.0,
                    Some(1300.0 / 300.0),
                    Some(100.0 / 30.0),
                    Passing,
                )],
            },
            Case {
                name: "a baseline under minRequests counts as 0",
                settings: settings(1.0, None, 20),
                candidate: stats(100, 2, None),
                baseline: Some(stats(10, 5, Some(30.0))),
                want: vec![(ErrorRate, 1.0, Some(2.0), None, Failed)],
            },
            Case {
                name: "maxErrorRate 0 tolerates nothing above the baseline",
                settings: settings(0.0, None, 20),
                candidate: stats(1_000, 1, None),
                baseline: Some(stats(1_000, 0, None)),
                want: vec![(ErrorRate, 0.0, Some(0.1), Some(0.0), Failed)],
            },
        ];
        for case in cases {
            let got = evaluate(&case.settings, &case.candidate, case.baseline.as_ref());
            let got: Vec<_> = got
                .into_iter()
                .map(|f| {
                    assert_eq!(f.requests, case.candidate.requests, "{}", case.name);
                    (f.gate, f.threshold, f.measured, f.baseline, f.verdict)
                })
                .collect();
            assert_eq!(got, case.want, "{}", case.name);
        }
    }

    #[test]
    fn first_failure_and_overall() {
        let s = settings(1.0, Some(200), 20);
        let pending = evaluate(&s, &stats(5, 5, Some(900.0)), None);
        assert_eq!(first_failure(&pending), None);
        assert_eq!(overall(&pending), Pending);
        let passing = evaluate(&s, &stats(50, 0, Some(100.0)), None);
        assert_eq!(first_failure(&passing), None);
        assert_eq!(overall(&passing), Passing);
        let slow = evaluate(&s, &stats(50, 0, Some(900.0)), None);
        let failed = first_failure(&slow).expect("the p99 gate fails");
        assert_eq!(failed.gate, GateKind::P99Latency);
        assert_eq!(failed.measured, Some(900.0));
        assert_eq!(failed.threshold, 200.0);
        assert_eq!(overall(&slow), Failed);
        // Both failing: the error rate is reported first.
        let both = evaluate(&s, &stats(50, 50, Some(900.0)), None);
        assert_eq!(
            first_failure(&both).map(|f| f.gate),
            Some(GateKind::ErrorRate)
        );
        assert_eq!(overall(&[]), Passing);
    }

    #[test]
    fn judged_from_window_stats() {
        let w = super::super::window::RevisionWindow::new();
        let mark = w.mark();
        for i in 0..40 {
            w.record(
                if i < 4 { 500 } else { 200 },
                std::time::Duration::from_millis(5),
            );
        }
        let figures = evaluate(&settings(5.0, Some(100), 20), &w.since(&mark), None);
        assert_eq!(figures[0].measured, Some(10.0));
        assert_eq!(figures[0].verdict, Failed);
        assert_eq!(figures[1].verdict, Passing);
    }
}
