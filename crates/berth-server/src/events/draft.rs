//! `EventDraft`: an event before the writer gives it its sequence number, with
//! one constructor per event type.

use berth_api::{Operation, OperationError, ServiceState};
use serde_json::{Value, json};

use crate::store::NewEvent;

/// An event to emit. Build it with a constructor, e.g.
/// `EventDraft::scaled("svc", 1, 3, "queue wait above target")`.
#[derive(Debug, Clone)]
pub struct EventDraft {
    /// Dotted type, one of [`berth_api::EVENT_TYPES`].
    pub event_type: &'static str,
    /// Service.
    pub service: Option<String>,
    /// Operation.
    pub operation: Option<String>,
    /// Details.
    pub data: Value,
}

fn state_name(state: ServiceState) -> Value {
    serde_json::to_value(state).unwrap_or(Value::Null)
}

impl EventDraft {
    fn new(event_type: &'static str, service: Option<&str>, data: Value) -> Self {
        Self {
            event_type,
            service: service.map(str::to_owned),
            operation: None,
            data,
        }
    }

    /// Attaches the operation the event belongs to.
    pub fn with_operation(mut self, id: &str) -> Self {
        self.operation = Some(id.to_owned());
        self
    }

    /// `operation.started`: `{operationType, targetRevision}`.
    pub fn operation_started(op: &Operation) -> Self {
        Self::new(
            "operation.started",
            Some(&op.service),
            json!({"operationType": op.operation_type, "targetRevision": op.target_revision}),
        )
        .with_operation(&op.id)
    }

    /// `operation.succeeded`: `{operationType, servingRevision}`.
    pub fn operation_succeeded(op: &Operation, serving_revision: Option<u32>) -> Self {
        Self::new(
            "operation.succeeded",
            Some(&op.service),
            json!({"operationType": op.operation_type, "servingRevision": serving_revision}),
        )
        .with_operation(&op.id)
    }

    /// `operation.failed`: `{operationType, code, step, message}`.
    pub fn operation_failed(op: &Operation, error: &OperationError) -> Self {
        Self::new(
            "operation.failed",
            Some(&op.service),
            json!({"operationType": op.operation_type, "code": error.code, "step": error.step, "message": error.message}),
        )
        .with_operation(&op.id)
    }

    /// `operation.rolled_back`: `{operationType, code, step, message}` (the
    /// gate, its threshold and the measured value are in `message`).
    pub fn operation_rolled_back(op: &Operation, error: &OperationError) -> Self {
        Self::new(
            "operation.rolled_back",
            Some(&op.service),
            json!({"operationType": op.operation_type, "code": error.code, "step": error.step, "message": error.message}),
        )
        .with_operation(&op.id)
    }

    /// `rollout.step`: `{strategy, candidate, step, steps, weights}`.
    pub fn rollout_step(op: &Operation, status: &berth_api::RolloutStatus) -> Self {
        Self::new(
            "rollout.step",
            Some(&op.service),
            json!({"strategy": status.strategy, "candidate": status.candidate, "step": status.step, "steps": status.steps, "weights": status.weights}),
        )
        .with_operation(&op.id)
    }

    /// `service.state_changed`: `{from, to, reason}` (`from` null for a new service).
    pub fn state_changed(
        service: &str,
        from: Option<ServiceState>,
        to: ServiceState,
        reason: &str,
    ) -> Self {
        Self::new(
            "service.state_changed",
            Some(service),
            json!({"from": from.map(state_name), "to": state_name(to), "reason": reason}),
        )
    }

    /// `service.deleted`.
    pub fn service_deleted(service: &str) -> Self {
        Self::new("service.deleted", Some(service), json!({}))
    }

    /// `service.scaled`: `{from, to, reason}` replica counts.
    pub fn scaled(service: &str, from: u32, to: u32, reason: &str) -> Self {
        Self::new(
            "service.scaled",
            Some(service),
            json!({"from": from, "to": to, "reason": reason}),
        )
    }

    /// `replica.restarted`: `{replica, reason, backoffMs}`.
    pub fn replica_restarted(service: &str, replica: u32, reason: &str, backoff_ms: u64) -> Self {
        Self::new(
            "replica.restarted",
            Some(service),
            json!({"replica": replica, "reason": reason, "backoffMs": backoff_ms}),
        )
    }

    /// `replica.killed`: `{replica, reason}` (e.g. memory limit, liveness probe).
    pub fn replica_killed(service: &str, replica: u32, reason: &str) -> Self {
        Self::new(
            "replica.killed",
            Some(service),
            json!({"replica": replica, "reason": reason}),
        )
    }

    /// `model.alias_moved`: `{name, alias, from, to}` (`from` null for a new
    /// alias, `to` null for a removed one).
    pub fn alias_moved(name: &str, alias: &str, from: Option<u32>, to: Option<u32>) -> Self {
        Self::new(
            "model.alias_moved",
            None,
            json!({"name": name, "alias": alias, "from": from, "to": to}),
        )
    }

    /// `model.registered`: `{name, version}`.
    pub fn model_registered(name: &str, version: u32) -> Self {
        Self::new(
            "model.registered",
            None,
            json!({"name": name, "version": version}),
        )
    }

    /// The row to store, stamped with the writer's clock, so that times
    /// follow sequence numbers.
    pub(super) fn into_new(self) -> NewEvent {
        NewEvent {
            time: crate::now_rfc3339(),
            event_type: self.event_type.to_owned(),
            service: self.service,
            operation: self.operation,
            data: self.data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_constructor_uses_a_known_type() {
        let drafts = [
            EventDraft::state_changed("s", None, ServiceState::Transitioning, "r"),
            EventDraft::service_deleted("s"),
            EventDraft::scaled("s", 1, 2, "load"),
            EventDraft::replica_restarted("s", 0, "exited", 500),
            EventDraft::replica_killed("s", 0, "memory limit"),
            EventDraft::model_registered("m", 1),
            EventDraft::alias_moved("m", "champion", Some(1), Some(2)),
        ];
        for draft in drafts {
            assert!(berth_api::is_event_type(draft.event_type), "{draft:?}");
        }
        let changed =
            EventDraft::state_changed("s", Some(ServiceState::Healthy), ServiceState::Failed, "x");
        assert_eq!(changed.data["from"], "Healthy");
        assert_eq!(changed.data["to"], "Failed");
    }
}
