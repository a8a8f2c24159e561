//! `/v1/events` (the workspace event log, listed or followed) and
//! `/v1/webhooks` (where events are pushed).
//!
//! Follow mode (`?follow=true`) answers `application/x-ndjson`: one event JSON
//! per line, first every stored event after `after` (matching the filters),
//! then live ones as they happen, until the client hangs up.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_api::{CreateWebhookRequest, CreatedWebhook, ErrorBody, Event, EventList, WebhookList};
use tokio::sync::{broadcast, mpsc};

use super::query::{parse_bool, parse_query};
use super::{ApiJson, AppState};
use crate::error::ApiError;
use crate::events::EventBus;
use crate::store::EventQuery;

/// Events listed when `limit` is not given.
const DEFAULT_LIMIT: usize = 100;
/// Most events one list returns.
const MAX_LIMIT: usize = 1000;
/// Events read per store page while a follower replays.
const REPLAY_PAGE: usize = 500;

/// The workspace's events, oldest first; `follow=true` streams them as NDJSON
/// (as server-sent events with `Accept: text/event-stream`, resuming after
/// `Last-Event-ID`).
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(
        ("service" = Option<String>, Query, description = "Only this service's events"),
        ("type" = Option<String>, Query, description = "Only this type, e.g. `operation.failed`"),
        ("after" = Option<u64>, Query, description = "Only events with a larger id"),
        ("limit" = Option<usize>, Query, description = "At most this many (default 100, at most 1000; ignored when following)"),
        ("follow" = Option<bool>, Query, description = "Stream NDJSON: the stored events after `after`, then live ones")),
    responses(
        (status = 200, body = EventList, description = "Events; with `follow=true` an `application/x-ndjson` stream of `Event`"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_events(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let mut query = EventQuery {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    let mut follow = false;
    for (key, value) in parse_query(
        raw.as_deref(),
        &["service", "type", "after", "limit", "follow"],
    )? {
        match key.as_str() {
            "service" => query.service = Some(value),
            "type" => {
                if !berth_api::is_event_type(&value) {
                    return Err(ApiError::invalid(format!(
                        "`type` is `{value}`: use one of `{}`",
                        berth_api::EVENT_TYPES.join("`, `")
                    )));
                }
                query.event_type = Some(value);
            }
            "after" => {
                query.after = value.parse().map_err(|_| {
                    ApiError::invalid(format!(
                        "`after` is `{value}`: it must be an event id (a whole number)"
                    ))
                })?;
            }
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid(format!(
                            "`limit` is `{value}`: use a whole number from 1 to {MAX_LIMIT}"
                        ))
                    })?;
            }
            _ => follow = parse_bool(&key, &value)?,
        }
    }
    if !follow {
        let events = state.events.store().events(query).await?;
        return Ok(Json(EventList { events }).into_response());
    }
    let sse = super::sse::wanted(&headers);
    if sse && let Some(resume) = super::sse::last_event_id(&headers) {
        query.after = query.after.max(resume);
    }
    let (tx, rx) = mpsc::channel::<Result<String, std::io::Error>>(64);
    tokio::spawn(follow_events(state.events.clone(), query, tx, sse));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let content_type = if sse {
        super::sse::CONTENT_TYPE
    } else {
        "application/x-ndjson"
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

fn matches(query: &EventQuery, event: &Event) -> bool {
    query
        .service
        .as_ref()
        .is_none_or(|s| event.service.as_ref() == Some(s))
        && query
            .event_type
            .as_ref()
            .is_none_or(|t| &event.event_type == t)
}

/// One event as an NDJSON line, or as an SSE message carrying its id.
fn line(event: &Event, sse: bool) -> String {
    let mut text = serde_json::to_string(event).unwrap_or_default();
    if sse {
        return super::sse::message(event.id, &text);
    }
    text.push('\n');
    text
}

/// Replays stored events after `query.after`, then forwards live ones; returns
/// when the client is gone.
async fn follow_events(
    bus: Arc<EventBus>,
    mut query: EventQuery,
    tx: mpsc::Sender<Result<String, std::io::Error>>,
    sse: bool,
) {
    // Subscribe before replaying so nothing falls between the two.
    let mut live = bus.subscribe();
    query.limit = REPLAY_PAGE;
    if !replay(&bus, &mut query, &tx, sse).await {
        return;
    }
    loop {
        let received = tokio::select! {
            received = live.recv() => received,
            // The client hung up (its body stream, holding the receiver, was dropped).
            () = tx.closed() => return,
        };
        match received {
            Ok(event) => {
                if event.id <= query.after {
                    continue;
                }
                query.after = event.id;
                if matches(&query, &event) && tx.send(Ok(line(&event, sse))).await.is_err() {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                if !replay(&bus, &mut query, &tx, sse).await {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Sends stored events after `query.after`, advancing it; `false` when the
/// client is gone or the store failed.
async fn replay(
    bus: &EventBus,
    query: &mut EventQuery,
    tx: &mpsc::Sender<Result<String, std::io::Error>>,
    sse: bool,
) -> bool {
    loop {
        let page = match bus.store().events(query.clone()).await {
            Ok(page) => page,
            Err(e) => {
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                return false;
            }
        };
        for event in &page {
            query.after = event.id;
            if tx.send(Ok(line(event, sse))).await.is_err() {
                return false;
            }
        }
        if page.len() < query.limit {
            return true;
        }
    }
}

/// Registers a webhook; the answer shows its signing secret, once.
#[utoipa::path(post, path = "/v1/webhooks", tag = "events",
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, body = CreatedWebhook, description = "Registered; `secret` is not shown again"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn create_webhook(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreateWebhookRequest>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    let events = crate::events::webhooks::validate(&request, state.config.webhook_allow_private)
        .map_err(ApiError::Invalid)?;
    let created = state
        .events
        .webhooks()
        .add(request.url, events, request.secret)
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// The webhooks with their delivery status (secrets are never listed).
#[utoipa::path(get, path = "/v1/webhooks", tag = "events",
    responses((status = 200, body = WebhookList), (status = 401, body = ErrorBody)))]
pub async fn list_webhooks(State(state): State<AppState>) -> Result<Json<WebhookList>, ApiError> {
    Ok(Json(WebhookList {
        webhooks: state.events.webhooks().list().await?,
    }))
}

/// Removes a webhook; events still queued for it are dropped.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "events",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.events.webhooks().remove(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "webhook `{id}` not found; `berth webhook list` shows the webhooks"
        )))
    }
}
