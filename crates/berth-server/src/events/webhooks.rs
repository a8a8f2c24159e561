//! Webhook delivery: one ordered queue and one sender task per webhook.
//!
//! Each event is POSTed as JSON `{id, type, time, service, operation, data}`
//! with the headers
//!
//! ```text
//! X-Berth-Event:     <type>
//! X-Berth-Delivery:  <event id>
//! X-Berth-Timestamp: <unix seconds of this attempt>
//! X-Berth-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
//! ```
//!
//! A 2xx answer delivers it. Otherwise it is retried after 0.5 s, 1 s, 2 s, …
//! (doubling, capped at 30 s) for [`MAX_ATTEMPTS`] attempts in all, then given
//! up on and recorded (`lastError`, `consecutiveFailures`); the next event
//! follows. Events reach a webhook in order. A slow or dead webhook only fills
//! its own queue: at [`QUEUE_LIMIT`] the oldest waiting event is dropped and
//! the drop recorded; emitters and other webhooks never wait. Each webhook
//! remembers the newest event it was handed (delivered or given up on); after
//! a restart its sender first sends the stored events after that one, so an
//! event is delivered at least once across restarts.
//!
//! `https://` targets are checked against the system CA bundle
//! (`SSL_CERT_FILE`, else the usual distribution paths); with none found only
//! `http://` targets work.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_api::{CreateWebhookRequest, CreatedWebhook, Event, Webhook};
use tokio::sync::Notify;

use crate::store::{DeliveryRecord, EventQuery, EventStore, NewWebhook, StoreError};

/// Attempts per event, the first included.
pub const MAX_ATTEMPTS: u32 = 8;
/// Delay before the second attempt; it doubles per attempt.
pub const FIRST_RETRY: Duration = Duration::from_millis(500);
/// Longest delay between attempts.
pub const MAX_RETRY: Duration = Duration::from_secs(30);
/// Events waiting per webhook before the oldest is dropped.
pub const QUEUE_LIMIT: usize = 1000;
/// Time one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Where distributions keep their CA bundle.
const CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The delay after failed attempt `attempt` (1-based): 0.5 s doubling, capped.
pub fn retry_delay(attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    FIRST_RETRY.saturating_mul(factor).min(MAX_RETRY)
}

/// The `X-Berth-Signature` value: `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn sign(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut message = Vec::with_capacity(body.len() + 21);
    message.extend_from_slice(timestamp.to_string().as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    format!(
        "sha256={}",
        hex::encode(crate::tokens::hmac_sha256(secret.as_bytes(), &message))
    )
}

/// Checks a registration; returns the URL and the normalised event list, or
/// every problem found.
pub fn validate(
    request: &CreateWebhookRequest,
    allow_private: bool,
) -> Result<Vec<String>, Vec<String>> {
    let mut problems = Vec::new();
    match reqwest::Url::parse(&request.url) {
        Ok(url) if !allow_private && super::egress::check_url(&url).is_err() => {
            if let Err(e) = super::egress::check_url(&url) {
                problems.push(format!("`url`: {e}"));
            }
        }
        Ok(url) if !matches!(url.scheme(), "http" | "https") => problems.push(format!(
            "`url` `{}` has scheme `{}`: use an `http://` or `https://` URL",
            request.url,
            url.scheme()
        )),
        Ok(url) if url.host_str().is_none_or(str::is_empty) => problems.push(format!(
            "`url` `{}` has no host: use e.g. `http://127.0.0.1:9000/hook`",
            request.url
        )),
        Ok(_) => {}
        Err(e) => problems.push(format!(
            "`url` `{}` is not a URL ({e}): use e.g. `https://example.com/berth-events`",
            request.url
        )),
    }
    let mut events: Vec<String> = Vec::new();
    for name in &request.events {
        if name != "*" && !berth_api::is_event_type(name) {
            problems.push(format!(
                "`events` has unknown type `{name}`: use `*` or any of `{}`",
                berth_api::EVENT_TYPES.join("`, `")
            ));
        } else if !events.contains(name) {
            events.push(name.clone());
        }
    }
    if events.is_empty() || events.iter().any(|e| e == "*") {
        events = vec!["*".to_owned()];
    }
    if let Some(secret) = &request.secret
        && !(16..=256).contains(&secret.len())
    {
        problems.push(format!(
            "`secret` is {} characters: use 16 to 256 characters, or leave it out to have one generated",
            secret.len()
        ));
    }
    if problems.is_empty() {
        Ok(events)
    } else {
        Err(problems)
    }
}

/// One webhook's queue and settings.
struct Hook {
    id: String,
    url: String,
    filter: Vec<String>,
    secret: String,
    queue: Mutex<VecDeque<Arc<Event>>>,
    wake: Notify,
    closed: AtomicBool,
    dropped: AtomicU64,
}

impl Hook {
    fn wants(&self, event: &Event) -> bool {
        self.filter
            .iter()
            .any(|f| f == "*" || *f == event.event_type)
    }

    /// Queues `event`, dropping the oldest waiting one when full.
    fn push(&self, event: Arc<Event>) {
        if let Ok(mut queue) = self.queue.lock() {
            if queue.len() >= QUEUE_LIMIT {
                queue.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            queue.push_back(event);
        }
        self.wake.notify_one();
    }
}

/// The stored events after `through`, oldest first.
async fn owed_events(store: &dyn EventStore, through: u64) -> Vec<Arc<Event>> {
    let mut owed = Vec::new();
    let mut after = through;
    loop {
        let page = match store
            .events(EventQuery {
                after,
                limit: QUEUE_LIMIT,
                ..EventQuery::default()
            })
            .await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the events owed to a webhook");
                break;
            }
        };
        let Some(last) = page.last().map(|e| e.id) else {
            break;
        };
        after = last;
        owed.extend(page.into_iter().map(Arc::new));
    }
    owed
}

/// The registered webhooks and their sender tasks.
pub struct Deliveries {
    http: reqwest::Client,
    allow_private: bool,
    store: Arc<dyn EventStore>,
    hooks: Mutex<Vec<Arc<Hook>>>,
}

fn http_client(allow_private: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("berth-webhooks/", env!("CARGO_PKG_VERSION")));
    if !allow_private {
        // Every connection goes to an address the resolver checked; a proxy
        // would connect elsewhere on our behalf.
        builder = builder
            .no_proxy()
            .dns_resolver(Arc::new(super::egress::PublicOnly));
    }
    let bundle = std::env::var_os("SSL_CERT_FILE")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(CA_BUNDLES.iter().map(std::path::PathBuf::from))
        .find_map(|path| std::fs::read(path).ok());
    if let Some(pem) = bundle {
        match reqwest::Certificate::from_pem_bundle(&pem) {
            Ok(certs) => {
                for cert in certs {
                    builder = builder.add_root_certificate(cert);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the system CA bundle is unreadable; https webhooks will fail")
            }
        }
    }
    builder.build().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "webhook HTTP client fell back to defaults");
        reqwest::Client::new()
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn new_secret() -> Result<String, StoreError> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Task(format!("no randomness: {e}")))?;
    Ok(format!("whsec_{}", hex::encode(bytes)))
}

impl Deliveries {
    /// Loads the stored webhooks and starts their senders.
    pub(super) async fn start(store: Arc<dyn EventStore>, allow_private: bool) -> Arc<Self> {
        let deliveries = Arc::new(Self {
            http: http_client(allow_private),
            allow_private,
            store: store.clone(),
            hooks: Mutex::new(Vec::new()),
        });
        match store.webhooks().await {
            Ok(stored) => {
                for hook in stored {
                    let owed = owed_events(store.as_ref(), hook.delivered_through).await;
                    deliveries.spawn(hook.webhook, hook.secret, owed);
                }
            }
            Err(e) => tracing::error!(error = %e, "could not load webhooks; none will be called"),
        }
        deliveries
    }

    /// Starts the sender of `webhook`, first owing it `owed` (stored events
    /// it had not been handed when the server last stopped).
    fn spawn(&self, webhook: Webhook, secret: String, owed: Vec<Arc<Event>>) {
        let hook = Arc::new(Hook {
            id: webhook.id,
            url: webhook.url,
            filter: webhook.events,
            secret,
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        });
        for event in owed.iter().filter(|e| hook.wants(e)) {
            hook.push(event.clone());
        }
        if let Ok(mut hooks) = self.hooks.lock() {
            hooks.push(hook.clone());
        }
        tokio::spawn(send_loop(
            hook,
            self.http.clone(),
            self.allow_private,
            self.store.clone(),
            webhook.consecutive_failures,
        ));
    }

    /// Queues `event` for every webhook that wants it.
    pub fn dispatch(&self, event: &Arc<Event>) {
        let Ok(hooks) = self.hooks.lock() else {
            return;
        };
        for hook in hooks.iter().filter(|h| h.wants(event)) {
            hook.push(event.clone());
        }
    }

    /// Registers a webhook (already validated) and starts its sender; the
    /// answer carries the secret, the only time it is shown.
    pub async fn add(
        &self,
        url: String,
        events: Vec<String>,
        secret: Option<String>,
    ) -> Result<CreatedWebhook, StoreError> {
        let secret = match secret {
            Some(secret) => secret,
            None => new_secret()?,
        };
        let id = format!("wh-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let webhook = self
            .store
            .insert_webhook(NewWebhook {
                id,
                url,
                events,
                secret: secret.clone(),
                created_time: crate::now_rfc3339(),
            })
            .await?;
        self.spawn(webhook.clone(), secret.clone(), Vec::new());
        tracing::info!(webhook = %webhook.id, events = ?webhook.events, "webhook registered");
        Ok(CreatedWebhook { webhook, secret })
    }

    /// The webhooks with their delivery status (no secrets; credentials in
    /// the URL redacted).
    pub async fn list(&self) -> Result<Vec<Webhook>, StoreError> {
        Ok(self
            .store
            .webhooks()
            .await?
            .into_iter()
            .map(|h| Webhook {
                url: super::egress::redact(&h.webhook.url),
                ..h.webhook
            })
            .collect())
    }

    /// Removes a webhook and stops its sender; `false` when there was none.
    pub async fn remove(&self, id: &str) -> Result<bool, StoreError> {
        let removed = self.store.delete_webhook(id).await?;
        if let Ok(mut hooks) = self.hooks.lock() {
            hooks.retain(|hook| {
                if hook.id == id {
                    hook.closed.store(true, Ordering::Release);
                    hook.wake.notify_one();
                    false
                } else {
                    true
                }
            });
        }
        Ok(removed)
    }
}

async fn send_loop(
    hook: Arc<Hook>,
    http: reqwest::Client,
    allow_private: bool,
    store: Arc<dyn EventStore>,
    mut failures: u32,
) {
    loop {
        if hook.closed.load(Ordering::Acquire) {
            return;
        }
        let next = hook.queue.lock().ok().and_then(|mut q| q.pop_front());
        let Some(event) = next else {
            hook.wake.notified().await;
            continue;
        };
        let outcome = deliver(&hook, &http, allow_private, &event).await;
        if hook.closed.load(Ordering::Acquire) {
            return;
        }
        let dropped = hook.dropped.swap(0, Ordering::Relaxed);
        let overflow = (dropped > 0)
            .then(|| format!("{dropped} event(s) dropped: more than {QUEUE_LIMIT} were waiting"));
        let record = match outcome {
            Ok(()) => {
                failures = 0;
                DeliveryRecord {
                    event_id: event.id,
                    status: "delivered",
                    time: crate::now_rfc3339(),
                    error: overflow,
                    consecutive_failures: 0,
                }
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                tracing::warn!(webhook = %hook.id, event = event.id, %error, "webhook delivery given up");
                DeliveryRecord {
                    event_id: event.id,
                    status: "failed",
                    time: crate::now_rfc3339(),
                    error: Some(match overflow {
                        Some(overflow) => format!("{error}; {overflow}"),
                        None => error,
                    }),
                    consecutive_failures: failures,
                }
            }
        };
        if let Err(e) = store.record_delivery(&hook.id, record).await {
            tracing::warn!(webhook = %hook.id, error = %e, "could not record a webhook delivery");
        }
    }
}

/// Delivers one event, retrying with backoff; the error says why it gave up.
async fn deliver(
    hook: &Hook,
    http: &reqwest::Client,
    allow_private: bool,
    event: &Event,
) -> Result<(), String> {
    let body = serde_json::to_vec(event).map_err(|e| format!("cannot encode the event: {e}"))?;
    let mut last_error = String::new();
    // IP literals skip the resolver: checked here (registered before the flag was dropped).
    if !allow_private && let Ok(url) = reqwest::Url::parse(&hook.url) {
        super::egress::check_url(&url).map_err(|e| {
            tracing::warn!(webhook = %hook.id, event = event.id, error = %e, "webhook target refused");
            format!("gave up on event {}: {e}", event.id)
        })?;
    }
    for attempt in 1..=MAX_ATTEMPTS {
        let timestamp = unix_now();
        let result = http
            .post(&hook.url)
            .timeout(ATTEMPT_TIMEOUT)
            .header("content-type", "application/json")
            .header("x-berth-event", &event.event_type)
            .header("x-berth-delivery", event.id.to_string())
            .header("x-berth-timestamp", timestamp.to_string())
            .header("x-berth-signature", sign(&hook.secret, timestamp, &body))
            .body(body.clone())
            .send()
            .await;
        match result {
            Ok(response) if response.status().is_success() => return Ok(()),
            // The URL may carry credentials: errors never include it.
            Ok(response) => last_error = format!("HTTP {}", response.status()),
            Err(e) => {
                let permanent = super::egress::is_not_public(&e);
                last_error = describe(e.without_url());
                if permanent {
                    tracing::warn!(webhook = %hook.id, event = event.id, error = %last_error, "webhook target refused");
                    break;
                }
            }
        }
        if attempt == MAX_ATTEMPTS {
            break;
        }
        tracing::debug!(webhook = %hook.id, event = event.id, attempt, error = %last_error, "webhook attempt failed; retrying");
        tokio::time::sleep(retry_delay(attempt)).await;
        if hook.closed.load(Ordering::Acquire) {
            return Err("webhook removed".into());
        }
    }
    Err(format!("gave up on event {}: {last_error}", event.id))
}

/// A request error with its causes (a refused address says why), never the URL.
fn describe(error: reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_and_is_capped() {
        let delays: Vec<u64> = (1..MAX_ATTEMPTS)
            .map(|a| retry_delay(a).as_millis() as u64)
            .collect();
        assert_eq!(delays, vec![500, 1000, 2000, 4000, 8000, 16000, 30000]);
        assert_eq!(retry_delay(40), MAX_RETRY);
    }

    #[test]
    fn signature_is_hmac_of_timestamp_dot_body() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"whsec_0123456789abcdef",
        //   b"1700000000.{\"id\":1}", hashlib.sha256).hexdigest())'
        let signature = sign("whsec_0123456789abcdef", 1_700_000_000, br#"{"id":1}"#);
        assert_eq!(
            signature,
            "sha256=22f267bc13c9c3f35f76035954c196f8ad4cf971af76120dcbcbbb84458514d0"
        );
    }

    #[test]
    fn registrations_are_checked_field_by_field() {
        let bad = CreateWebhookRequest {
            url: "ftp://x/y".into(),
            events: vec!["operation.started".into(), "nope".into()],
            secret: Some("short".into()),
        };
        let problems = validate(&bad, false).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("`url`") && problems[0].contains("ftp"));
        assert!(problems[1].contains("`nope`"));
        assert!(problems[2].contains("`secret`"));
        let good = CreateWebhookRequest {
            url: "http://127.0.0.1:9/h".into(),
            events: vec![],
            secret: None,
        };
        assert_eq!(validate(&good, true).unwrap(), vec!["*".to_owned()]);
        let private = validate(&good, false).unwrap_err();
        assert!(
            private[0].contains("--webhook-allow-private"),
            "{private:?}"
        );
    }
}
