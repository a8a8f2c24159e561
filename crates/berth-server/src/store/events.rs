//! Persistence of workspace events and webhooks: the `EventStore` trait.

use async_trait::async_trait;
use berth_api::{Event, Webhook};

use super::Result;

/// An event to append; the store assigns its id.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// RFC 3339.
    pub time: String,
    /// Dotted type.
    pub event_type: String,
    /// Service.
    pub service: Option<String>,
    /// Operation.
    pub operation: Option<String>,
    /// Details.
    pub data: serde_json::Value,
}

/// Which events to list; all given filters must hold.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Exact service.
    pub service: Option<String>,
    /// Exact type.
    pub event_type: Option<String>,
    /// Only ids greater than this.
    pub after: u64,
    /// At most this many, oldest first.
    pub limit: usize,
}

/// A webhook to register.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    /// Id.
    pub id: String,
    /// URL.
    pub url: String,
    /// Event types (`*` = all).
    pub events: Vec<String>,
    /// Signing secret.
    pub secret: String,
    /// RFC 3339.
    pub created_time: String,
}

/// A webhook with its secret (for the delivery tasks only).
#[derive(Clone)]
pub struct StoredWebhook {
    /// The public view.
    pub webhook: Webhook,
    /// Signing secret.
    pub secret: String,
    /// The newest event id handed over; later ones are still owed.
    pub delivered_through: u64,
}

impl std::fmt::Debug for StoredWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredWebhook")
            .field("webhook", &self.webhook)
            .field("secret", &"<hidden>")
            .field("delivered_through", &self.delivered_through)
            .finish()
    }
}

/// How a delivery (or a queue overflow) ended.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    /// The event it was about.
    pub event_id: u64,
    /// `delivered` or `failed`.
    pub status: &'static str,
    /// RFC 3339.
    pub time: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Deliveries given up on in a row.
    pub consecutive_failures: u32,
}

/// Event and webhook persistence.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends events in order, then keeps only the newest `keep`; returns them with ids.
    async fn insert_events(&self, events: Vec<NewEvent>, keep: u64) -> Result<Vec<Event>>;
    /// Matching events, oldest first.
    async fn events(&self, query: EventQuery) -> Result<Vec<Event>>;
    /// Registers a webhook; it is owed only events newer than the newest stored.
    async fn insert_webhook(&self, new: NewWebhook) -> Result<Webhook>;
    /// Every webhook with its secret, by creation.
    async fn webhooks(&self) -> Result<Vec<StoredWebhook>>;
    /// Removes a webhook; `false` when there was none.
    async fn delete_webhook(&self, id: &str) -> Result<bool>;
    /// Records how a delivery ended.
    async fn record_delivery(&self, id: &str, record: DeliveryRecord) -> Result<()>;
}
