//! Workspace events: what happened to operations, services, replicas and
//! models, in one ordered log that is kept in the store, streamed to followers
//! and pushed to webhooks.
//!
//! [`EventBus::emit`] never waits: drafts go through an unbounded channel to a
//! single writer task, which assigns the order (the store's sequence), writes
//! batches to the store, broadcasts them to followers (`GET /v1/events?follow`)
//! and queues them for each matching webhook ([`webhooks`]).

mod draft;
pub mod egress;
pub mod webhooks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_api::{Event, ServiceState};
use tokio::sync::{broadcast, mpsc};

pub use draft::EventDraft;

use crate::store::{EventStore, NewEvent};

/// Events kept in the store; older ones are pruned as new ones arrive.
pub const EVENTS_KEPT: u64 = 100_000;
/// Most drafts written in one transaction.
const BATCH: usize = 256;
/// Live events a slow follower may fall behind by before it re-reads the store.
const FOLLOW_BUFFER: usize = 1024;

/// The event log's front door; cheap to share as `Arc<EventBus>`.
pub struct EventBus {
    drafts: mpsc::UnboundedSender<EventDraft>,
    live: broadcast::Sender<Arc<Event>>,
    /// Last state seen per service, to emit `service.state_changed` only on change.
    states: Mutex<HashMap<String, ServiceState>>,
    /// Why Berth started an operation (automatic rollouts), added as `cause`
    /// to every event of that operation.
    causes: Mutex<HashMap<String, String>>,
    store: Arc<dyn EventStore>,
    webhooks: Arc<webhooks::Deliveries>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventBus(..)")
    }
}

impl EventBus {
    /// Starts the writer task and a delivery task per stored webhook.
    pub async fn start(
        store: Arc<dyn EventStore>,
        webhook_allow_private: bool,
        watermark: Option<Arc<crate::store::trust::Watermark>>,
    ) -> Arc<Self> {
        let webhooks = webhooks::Deliveries::start(store.clone(), webhook_allow_private).await;
        let (drafts, rx) = mpsc::unbounded_channel();
        let (live, _) = broadcast::channel(FOLLOW_BUFFER);
        let bus = Arc::new(Self {
            drafts,
            live: live.clone(),
            states: Mutex::new(HashMap::new()),
            causes: Mutex::new(HashMap::new()),
            store: store.clone(),
            webhooks: webhooks.clone(),
        });
        tokio::spawn(write_events(rx, store, live, webhooks, watermark));
        bus
    }

    /// Records an event; returns at once (from sync or async code).
    pub fn emit(&self, mut draft: EventDraft) {
        if let Some(operation) = &draft.operation
            && let Ok(mut causes) = self.causes.lock()
            && let Some(cause) = causes.get(operation)
            && let Some(data) = draft.data.as_object_mut()
        {
            data.insert("cause".into(), cause.clone().into());
            if matches!(
                draft.event_type,
                "operation.succeeded" | "operation.failed" | "operation.rolled_back"
            ) {
                causes.remove(operation);
            }
        }
        if self.drafts.send(draft).is_err() {
            tracing::warn!("the event writer has stopped; an event was lost");
        }
    }

    /// Names why Berth started `operation`: its events carry `cause` until it ends.
    pub fn note_cause(&self, operation: &str, cause: &str) {
        if let Ok(mut causes) = self.causes.lock() {
            causes.insert(operation.to_owned(), cause.to_owned());
        }
    }

    /// Notes a service's current state; emits `service.state_changed` when it
    /// differs from the last one noted (the first note of a service that
    /// existed before this process started is taken as-is, see [`Self::seed_state`]).
    pub fn observe_state(
        &self,
        service: &str,
        state: ServiceState,
        reason: &str,
        operation: Option<&str>,
    ) {
        let previous = {
            let Ok(mut states) = self.states.lock() else {
                return;
            };
            states.insert(service.to_owned(), state)
        };
        if previous != Some(state) {
            let mut draft = EventDraft::state_changed(service, previous, state, reason);
            if let Some(id) = operation {
                draft = draft.with_operation(id);
            }
            self.emit(draft);
        }
    }

    /// Remembers a service's state without emitting (at start-up).
    pub fn seed_state(&self, service: &str, state: ServiceState) {
        if let Ok(mut states) = self.states.lock() {
            states.insert(service.to_owned(), state);
        }
    }

    /// Forgets a deleted service's state.
    pub fn forget_service(&self, service: &str) {
        if let Ok(mut states) = self.states.lock() {
            states.remove(service);
        }
    }

    /// Live events from now on (followers replay the store first).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.live.subscribe()
    }

    /// The store the log lives in.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// The webhook registry and delivery.
    pub fn webhooks(&self) -> &Arc<webhooks::Deliveries> {
        &self.webhooks
    }
}

async fn write_events(
    mut rx: mpsc::UnboundedReceiver<EventDraft>,
    store: Arc<dyn EventStore>,
    live: broadcast::Sender<Arc<Event>>,
    webhooks: Arc<webhooks::Deliveries>,
    watermark: Option<Arc<crate::store::trust::Watermark>>,
) {
    let mut drafts = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut drafts, BATCH).await > 0 {
        let batch: Vec<NewEvent> = drafts.drain(..).map(EventDraft::into_new).collect();
        let count = batch.len();
        match store.insert_events(batch, EVENTS_KEPT).await {
            Ok(events) => {
                if let (Some(mark), Some(last)) = (&watermark, events.last()) {
                    mark.record(last.id);
                }
                for event in events {
                    let event = Arc::new(event);
                    webhooks.dispatch(&event);
                    let _ = live.send(event);
                }
            }
            Err(e) => tracing::error!(error = %e, events = count, "could not record events"),
        }
    }
}
