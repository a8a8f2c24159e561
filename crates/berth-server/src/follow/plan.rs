//! The follower's decisions as pure functions: what a reference move does to
//! one follower, and what the end of an automatic rollout records.

use berth_api::{FollowPolicy, FollowerAction, OperationState};

use crate::store::FollowState;

/// What a reference moving to `target` does to a follower serving `current`
/// with `policy`; returns the action shown and the follow state to store.
pub fn on_move(
    mut state: FollowState,
    current: u32,
    target: u32,
    policy: FollowPolicy,
    cause: &str,
) -> (FollowerAction, FollowState) {
    if state.rejected.is_some_and(|r| r != target) {
        // The reference moved on: the rejected version is history.
        state.rejected = None;
    }
    if current == target && state.in_flight.is_none() {
        state.pending = None;
        state.pending_cause = None;
        return (FollowerAction::UpToDate, state);
    }
    if state.rejected == Some(target) {
        state.pending = None;
        state.pending_cause = None;
        return (FollowerAction::Rejected, state);
    }
    match policy {
        FollowPolicy::Manual => {
            state.pending = None;
            state.pending_cause = None;
            (FollowerAction::UpdateAvailable, state)
        }
        FollowPolicy::Auto => {
            state.pending = Some(target);
            state.pending_cause = Some(cause.to_owned());
            (FollowerAction::AutoRollout, state)
        }
    }
}

/// Records the end of the automatic rollout in flight: success clears it; any
/// other end (failed, rolled back, cancelled, timed out) rejects its version
/// for this service. An operation cut off by a restart is queued again instead.
pub fn on_end(mut state: FollowState, ended: OperationState, interrupted: bool) -> FollowState {
    let Some(version) = state.in_flight.take() else {
        return state;
    };
    state.in_flight_operation = None;
    match ended {
        OperationState::Succeeded => {}
        OperationState::NotStarted | OperationState::Running => {
            state.in_flight = Some(version);
        }
        _ if interrupted => {
            if state.pending.is_none() {
                state.pending = Some(version);
                state.pending_cause = Some(format!(
                    "rollout of {} → {version} cut off by a restart",
                    state.reference
                ));
            }
        }
        _ => {
            state.rejected = Some(version);
            if state.pending == Some(version) {
                state.pending = None;
                state.pending_cause = None;
            }
        }
    }
    state
}

/// The cause line of a move: `alias moved m@champion 7 → 8`, or for
/// `@latest`, `new version registered m@latest 7 → 8`.
pub fn cause(reference: &str, from: Option<u32>, to: u32) -> String {
    let from = from.map_or_else(|| "none".to_owned(), |v| v.to_string());
    if reference.ends_with("@latest") {
        format!("new version registered {reference} {from} → {to}")
    } else {
        format!("alias moved {reference} {from} → {to}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> FollowState {
        FollowState::new("svc", "m@champion")
    }

    #[test]
    fn an_auto_follower_gets_a_pending_target_and_a_manual_one_an_available_update() {
        let (action, s) = on_move(
            state(),
            7,
            8,
            FollowPolicy::Auto,
            "alias moved m@champion 7 → 8",
        );
        assert_eq!(action, FollowerAction::AutoRollout);
        assert_eq!(s.pending, Some(8));
        assert_eq!(
            s.pending_cause.as_deref(),
            Some("alias moved m@champion 7 → 8")
        );
        let (action, s) = on_move(state(), 7, 8, FollowPolicy::Manual, "c");
        assert_eq!((action, s.pending), (FollowerAction::UpdateAvailable, None));
        let (action, s) = on_move(state(), 8, 8, FollowPolicy::Auto, "c");
        assert_eq!((action, s.pending), (FollowerAction::UpToDate, None));
    }

    #[test]
    fn only_the_newest_target_is_kept_when_the_reference_moves_again() {
        let (_, s) = on_move(state(), 7, 8, FollowPolicy::Auto, "to 8");
        let (_, s) = on_move(s, 7, 9, FollowPolicy::Auto, "to 9");
        assert_eq!(
            (s.pending, s.pending_cause.as_deref()),
            (Some(9), Some("to 9"))
        );
        // Moving back to what it serves drops the pending target.
        let (action, s) = on_move(s, 7, 7, FollowPolicy::Auto, "back");
        assert_eq!((action, s.pending), (FollowerAction::UpToDate, None));
    }

    #[test]
    fn a_rolled_back_or_failed_rollout_rejects_its_version_and_moving_again_retries() {
        for ended in [
            OperationState::RolledBack,
            OperationState::Failed,
            OperationState::TimedOut,
        ] {
            let mut s = state();
            s.in_flight = Some(8);
            s.in_flight_operation = Some("op".into());
            let s = on_end(s, ended, false);
            assert_eq!(
                (s.rejected, s.in_flight, s.in_flight_operation.as_deref()),
                (Some(8), None, None),
                "{ended:?}"
            );
            // The same version again is not retried.
            let (action, same) = on_move(s.clone(), 7, 8, FollowPolicy::Auto, "c");
            assert_eq!(
                (action, same.pending, same.rejected),
                (FollowerAction::Rejected, None, Some(8))
            );
            // Another version is.
            let (action, other) = on_move(s, 7, 9, FollowPolicy::Auto, "c");
            assert_eq!(
                (action, other.pending, other.rejected),
                (FollowerAction::AutoRollout, Some(9), None)
            );
        }
    }

    #[test]
    fn success_clears_the_rollout_and_a_restart_queues_it_again() {
        let mut s = state();
        s.in_flight = Some(8);
        s.in_flight_operation = Some("op".into());
        let done = on_end(s.clone(), OperationState::Succeeded, false);
        assert!(done.is_empty(), "{done:?}");
        let cut = on_end(s.clone(), OperationState::Failed, true);
        assert_eq!(
            (cut.pending, cut.rejected, cut.in_flight),
            (Some(8), None, None)
        );
        // A newer pending target wins over the interrupted one.
        s.pending = Some(9);
        let cut = on_end(s, OperationState::Failed, true);
        assert_eq!(cut.pending, Some(9));
        // Nothing in flight: nothing changes.
        assert_eq!(on_end(state(), OperationState::Failed, false), state());
    }

    #[test]
    fn causes_name_the_reference_and_both_versions() {
        assert_eq!(
            cause("m@champion", Some(7), 8),
            "alias moved m@champion 7 → 8"
        );
        assert_eq!(
            cause("m@latest", Some(1), 2),
            "new version registered m@latest 1 → 2"
        );
    }
}
