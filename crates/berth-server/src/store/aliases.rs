//! Stored types of model aliases and of the follow state of services that
//! follow `name@alias` or `name@latest`.

/// Per follower and reference: what waits, what runs, what was rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowState {
    /// Service.
    pub service: String,
    /// `m@champion` or `m@latest`.
    pub reference: String,
    /// The version to roll out when the service is free (durable intent).
    pub pending: Option<u32>,
    /// Why (`alias moved m@champion 7 → 8`).
    pub pending_cause: Option<String>,
    /// The version an automatic rollout in flight moves to.
    pub in_flight: Option<u32>,
    /// That rollout's operation.
    pub in_flight_operation: Option<String>,
    /// A version whose automatic rollout failed or was rolled back.
    pub rejected: Option<u32>,
}

impl FollowState {
    /// A state with nothing recorded.
    pub fn new(service: &str, reference: &str) -> Self {
        Self {
            service: service.to_owned(),
            reference: reference.to_owned(),
            ..Self::default()
        }
    }

    /// Whether the row holds nothing worth keeping.
    pub fn is_empty(&self) -> bool {
        self.pending.is_none() && self.in_flight.is_none() && self.rejected.is_none()
    }
}
