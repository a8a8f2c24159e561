//! The service state machine: the state a service is in after each thing that
//! happens to it (the reference's names: `Transitioning`, `Healthy`,
//! `Unhealthy`, `Failed`). The store applies it inside the transaction that
//! records the event; the API applies [`observed`] to what the replicas show.

use berth_api::ServiceState;

/// What happened to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// An operation started changing it.
    OperationStarted,
    /// An operation put a revision (or a split) in service.
    Succeeded,
    /// An operation failed; the previous revision (if any) still serves.
    Failed,
    /// A rollout was rolled back (gate, abort, restart mid-bake) to what served.
    RolledBack {
        /// Whether a revision serves.
        serving: bool,
    },
    /// An operation that does not change what serves ended (a key change).
    Completed {
        /// Whether a revision serves.
        serving: bool,
        /// Whether the last operation that changed revisions had failed.
        failed_before: bool,
    },
    /// The server stopped while an operation ran; it was not a rollout in its bake.
    Interrupted,
}

/// The state after `event`.
pub fn after(event: Event) -> ServiceState {
    match event {
        Event::OperationStarted => ServiceState::Transitioning,
        Event::Succeeded => ServiceState::Healthy,
        Event::Failed | Event::Interrupted => ServiceState::Failed,
        Event::RolledBack { serving } => {
            if serving {
                ServiceState::Healthy
            } else {
                ServiceState::Failed
            }
        }
        Event::Completed {
            serving,
            failed_before,
        } => {
            if serving && !failed_before {
                ServiceState::Healthy
            } else {
                ServiceState::Failed
            }
        }
    }
}

/// Whether replica observations may change `state`: only a serving service
/// between operations moves between `Healthy` and `Unhealthy`.
pub fn follows_replicas(state: ServiceState) -> bool {
    matches!(state, ServiceState::Healthy | ServiceState::Unhealthy)
}

/// The state shown for a stored `state` when `ready` of `desired` replicas are ready.
pub fn observed(state: ServiceState, ready: u32, desired: u32) -> ServiceState {
    match state {
        s if follows_replicas(s) && ready >= desired => ServiceState::Healthy,
        s if follows_replicas(s) => ServiceState::Unhealthy,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_leads_to_the_reference_state() {
        use ServiceState::*;
        let table = [
            (Event::OperationStarted, Transitioning),
            (Event::Succeeded, Healthy),
            (Event::Failed, Failed),
            (Event::Interrupted, Failed),
            (Event::RolledBack { serving: true }, Healthy),
            (Event::RolledBack { serving: false }, Failed),
            (
                Event::Completed {
                    serving: true,
                    failed_before: false,
                },
                Healthy,
            ),
            (
                Event::Completed {
                    serving: true,
                    failed_before: true,
                },
                Failed,
            ),
            (
                Event::Completed {
                    serving: false,
                    failed_before: false,
                },
                Failed,
            ),
        ];
        for (event, state) in table {
            assert_eq!(after(event), state, "{event:?}");
        }
    }

    #[test]
    fn replicas_move_only_a_serving_service_between_healthy_and_unhealthy() {
        use ServiceState::*;
        assert_eq!(observed(Healthy, 1, 2), Unhealthy);
        assert_eq!(observed(Unhealthy, 2, 2), Healthy);
        assert_eq!(observed(Transitioning, 0, 2), Transitioning);
        assert_eq!(observed(Failed, 2, 2), Failed);
    }
}
