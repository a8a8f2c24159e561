//! Workspace events (operation starts and ends, state changes, registrations,
//! scaling and replica restarts) and the webhooks they are pushed to.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The kinds of event, by their dotted wire names.
pub const EVENT_TYPES: &[&str] = &[
    "operation.started",
    "operation.succeeded",
    "operation.failed",
    "operation.rolled_back",
    "rollout.step",
    "service.state_changed",
    "service.deleted",
    "service.scaled",
    "replica.restarted",
    "replica.killed",
    "model.registered",
    "model.alias_moved",
];

/// Whether `name` is a known event type.
pub fn is_event_type(name: &str) -> bool {
    EVENT_TYPES.contains(&name)
}

/// One event. `id` is the workspace-wide sequence number: later events have
/// larger ids, and `GET /v1/events?after=<id>` resumes after one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Sequence number, from 1.
    pub id: u64,
    /// Dotted type, e.g. `operation.started`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When it happened, RFC 3339 UTC.
    pub time: String,
    /// The service it concerns.
    pub service: Option<String>,
    /// The operation it belongs to.
    pub operation: Option<String>,
    /// Type-specific details (e.g. `from`, `to`, `reason`).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// `GET /v1/events`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventList {
    /// Oldest first.
    pub events: Vec<Event>,
}

/// `POST /v1/webhooks`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// `http://` or `https://` URL events are POSTed to.
    pub url: String,
    /// Event types to send, or `*` for all (the default).
    #[serde(default)]
    pub events: Vec<String>,
    /// Signing secret; generated when absent. Returned once, at creation.
    #[serde(default)]
    pub secret: Option<String>,
}

/// A registered webhook and how its deliveries go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// Id (`wh-...`).
    pub id: String,
    /// Target URL.
    pub url: String,
    /// Event types sent (`*` = all).
    pub events: Vec<String>,
    /// RFC 3339.
    pub created_time: String,
    /// `delivered` or `failed`; absent before the first delivery.
    pub last_delivery_status: Option<String>,
    /// When the last delivery ended.
    pub last_delivery_time: Option<String>,
    /// Why the last delivery (or a queue overflow) failed.
    pub last_error: Option<String>,
    /// Deliveries given up on in a row.
    pub consecutive_failures: u32,
}

/// `GET /v1/webhooks`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    /// By creation time.
    pub webhooks: Vec<Webhook>,
}

/// The answer to `POST /v1/webhooks`: the webhook and its secret, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedWebhook {
    /// The webhook.
    pub webhook: Webhook,
    /// The signing secret; it is never shown again.
    pub secret: String,
}
