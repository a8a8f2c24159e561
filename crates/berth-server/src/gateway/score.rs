//! The scoring and swagger handlers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_worker::client::Start;
use berth_worker::{ConnError, ScoreAnswer, ScoreRequest};
use subtle::ConstantTimeEq;

use super::GatewayState;
use super::body::BodyError;
use super::table::{Pool, Route};
use super::window::RevisionWindow;
use crate::observability::{Exchange, RouteObservability};

/// What the gateway learns while answering one request, for the route's
/// metrics, request log and data collection.
#[derive(Default)]
struct Trace {
    /// Where the request is accounted: the chosen pool's revision, else the
    /// stable one's (or the empty route's).
    observability: Option<Arc<RouteObservability>>,
    /// The chosen pool's live figures and gate windows.
    window: Option<Arc<RevisionWindow>>,
    /// The chosen pool's revision (named on every answer, errors included).
    revision: Option<u32>,
    queued: Duration,
    run: Duration,
    replica: Option<u32>,
    request_bytes: usize,
    request_body: Option<Bytes>,
    response_body: Option<Bytes>,
    /// The answer's length when it is streamed (no size hint on the body).
    response_len: Option<usize>,
    capacity_rejected: bool,
    timed_out: bool,
}

/// Counts a request as waiting for admission until dropped (also when the
/// client goes away mid-wait).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(depth: &'a AtomicUsize) -> Self {
        depth.fetch_add(1, Ordering::Relaxed);
        Self(depth)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Answers of `run()` longer than this are passed on in parts as they arrive
/// instead of being held whole.
const STREAM_ABOVE: u64 = 1 << 20;

const SERVER_VERSION: &str = concat!("berth/", env!("CARGO_PKG_VERSION"));
const MAX_REQUEST_ID: usize = 100;

/// `{"message": ...}` with `status`.
fn message(status: StatusCode, text: &str) -> Response {
    let body = serde_json::json!({ "message": text }).to_string();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn unavailable(text: &str) -> Response {
    let mut response = message(StatusCode::SERVICE_UNAVAILABLE, text);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The request id: the client's `x-request-id`, else a new one; `None` when
/// the client's is too long (431).
fn request_id(headers: &HeaderMap) -> Option<String> {
    match headers.get("x-request-id") {
        Some(value) if value.len() > MAX_REQUEST_ID => None,
        Some(value) => Some(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        None => Some(uuid::Uuid::new_v4().to_string()),
    }
}

fn authorized(gw: &GatewayState, route: &Route, headers: &HeaderMap) -> bool {
    if route.settings.keys.is_none() && !route.settings.token_auth {
        return true;
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::tokens::bearer)
        .unwrap_or("");
    if presented.is_empty() {
        return false;
    }
    if route.settings.token_auth {
        return gw.signer.verify(presented, &route.service);
    }
    let Some(keys) = &route.settings.keys else {
        return false;
    };
    let primary: bool = presented
        .as_bytes()
        .ct_eq(keys.primary_key.as_bytes())
        .into();
    let secondary: bool = presented
        .as_bytes()
        .ct_eq(keys.secondary_key.as_bytes())
        .into();
    primary | secondary
}

/// Scores one request.
pub async fn score(
    State(gw): State<GatewayState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(request_id) = request_id(&headers) else {
        return message(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "x-request-id must not exceed 100 characters",
        );
    };
    let started = Instant::now();
    let mut trace = Trace::default();
    let mut response = score_inner(
        &gw,
        &name,
        query,
        &method,
        &headers,
        body,
        &request_id,
        &mut trace,
    )
    .await;
    let out = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        out.insert("x-request-id", value.clone());
        let legacy = headers
            .get("x-ms-request-id")
            .or_else(|| headers.get("x-ms-client-request-id"))
            .cloned()
            .unwrap_or(value);
        out.insert("x-ms-request-id", legacy);
    }
    if let Some(client) = headers.get("x-ms-client-request-id") {
        out.insert("x-ms-client-request-id", client.clone());
    }
    out.insert(
        "x-ms-server-version",
        HeaderValue::from_static(SERVER_VERSION),
    );
    if let Some(revision) = trace.revision
        && !out.contains_key("x-berth-revision")
    {
        out.insert("x-berth-revision", HeaderValue::from(revision));
    }
    if !out.contains_key("x-ms-run-function-failed") {
        out.insert(
            "x-ms-run-function-failed",
            HeaderValue::from_static("False"),
        );
    }
    if let Some(window) = trace.window.take() {
        window.record(response.status().as_u16(), started.elapsed());
    }
    if let Some(observability) = trace.observability.take() {
        let response_bytes = trace
            .response_len
            .map(|n| n as u64)
            .or_else(|| response.body().size_hint().exact())
            .unwrap_or(0);
        observability.finish(Exchange {
            request_id: &request_id,
            method: method.as_str(),
            status: response.status().as_u16(),
            total: started.elapsed(),
            queued: trace.queued,
            run: trace.run,
            request_bytes: trace.request_bytes,
            response_bytes: usize::try_from(response_bytes).unwrap_or(usize::MAX),
            replica: trace.replica,
            request_body: trace.request_body,
            response_body: trace.response_body,
            capacity_rejected: trace.capacity_rejected,
            timed_out: trace.timed_out,
        });
    }
    response
}

#[allow(clippy::too_many_arguments)]
async fn score_inner(
    gw: &GatewayState,
    name: &str,
    query: Option<String>,
    method: &Method,
    headers: &HeaderMap,
    body: Body,
    request_id: &str,
    trace: &mut Trace,
) -> Response {
    let Some(route) = gw.table.get(name) else {
        return message(
            StatusCode::NOT_FOUND,
            &format!("Service `{name}` not found."),
        );
    };
    trace.observability = Some(
        route
            .primary()
            .map_or_else(|| route.observability.clone(), |p| p.observability.clone()),
    );
    if !authorized(gw, &route, headers) {
        let mut response = message(
            StatusCode::UNAUTHORIZED,
            if route.settings.token_auth {
                "This service needs a token: send `Authorization: Bearer <token>` (`berth service token` gets one; tokens expire)."
            } else {
                "This service needs a key: send `Authorization: Bearer <key>` (`berth service keys` shows them)."
            },
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"berth-scoring\""),
        );
        return response;
    }
    if route.ready_count() == 0 {
        return unavailable(&format!(
            "Service `{name}` has no ready replica; `berth service show -n {name}` tells why."
        ));
    }
    // The body is read whole before an admission slot is taken: a slow client
    // holds its own connection only.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    trace.request_bytes = declared.unwrap_or(0);
    let body = match super::body::read(body, declared, gw.body).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let status = match e {
                BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                BodyError::TooSlow { .. } => StatusCode::REQUEST_TIMEOUT,
                BodyError::Broken(_) => StatusCode::BAD_REQUEST,
            };
            if status == StatusCode::REQUEST_TIMEOUT {
                tracing::info!(service = %name, error = %e, "scoring body refused");
            }
            let mut response = message(status, &e.to_string());
            if status != StatusCode::PAYLOAD_TOO_LARGE {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            return response;
        }
    };
    let pin = match pinned_revision(headers) {
        Ok(pin) => pin,
        Err(text) => return message(StatusCode::BAD_REQUEST, &text),
    };
    let pool: Arc<Pool> = match route.choose(pin) {
        Ok(Some(pool)) => pool.clone(),
        Ok(None) => {
            return unavailable(&format!("Service `{name}` has no ready replica."));
        }
        Err(not_serving) => {
            let serving: Vec<String> = not_serving.serving.iter().map(u32::to_string).collect();
            return message(
                StatusCode::NOT_FOUND,
                &format!(
                    "Revision {} of `{name}` is not serving; serving: [{}]. Drop the x-berth-revision header, or pin one of those.",
                    not_serving.asked,
                    serving.join(", ")
                ),
            );
        }
    };
    trace.observability = Some(pool.observability.clone());
    trace.window = Some(pool.window.clone());
    trace.revision = Some(pool.revision);
    let waiting = Waiting::enter(&pool.observability.metrics.queue_depth);
    let wait_started = Instant::now();
    let queue_deadline = wait_started + pool.limits.max_queue_wait;
    let admitted = tokio::time::timeout(
        pool.limits.max_queue_wait,
        pool.admission.clone().acquire_owned(),
    )
    .await;
    drop(waiting);
    trace.queued = wait_started.elapsed();
    let permit = match admitted {
        Ok(Ok(permit)) => permit,
        _ => {
            trace.capacity_rejected = true;
            return unavailable(&format!(
                "Service `{name}` is at capacity: the request waited longer than maxQueueWaitMs ({} ms).",
                pool.limits.max_queue_wait.as_millis()
            ));
        }
    };
    trace.request_bytes = body.len();
    if pool.observability.wants_bodies() {
        trace.request_body = Some(body.clone());
    }
    let Some(mut replica) = pool.pick().cloned() else {
        return unavailable(&format!("Service `{name}` has no ready replica."));
    };
    let query = Bytes::from(query.unwrap_or_default());
    let strip_auth = route.settings.keys.is_some() || route.settings.token_auth;
    let build = || ScoreRequest {
        method: method.as_str().to_owned(),
        request_id: request_id.to_owned(),
        query: query.clone(),
        headers: forward_headers(headers, strip_auth),
        body: body.clone(),
    };
    let request = build();
    // A copy for the shadow, taken before the body moves to the primary.
    let shadow_copy = route
        .mirror
        .as_ref()
        .filter(|m| m.sample())
        .map(|m| (m.clone(), request.clone()));
    let timeout = pool.limits.scoring_timeout;
    let sent = Instant::now();
    let outcome = if pool.pipelined {
        let mut request = Some(request);
        loop {
            let request = request.take().unwrap_or_else(build);
            let outcome = score_queued(&replica, request, queue_deadline, timeout, gw).await;
            // Not run: the replica stopped while the request waited behind another. Another
            // replica may take it within the queue wait.
            if let Outcome::Answered(Err(ConnError::ClosedBeforeStart(_))) = outcome
                && Instant::now() < queue_deadline
                && let Some(next) = pool.pick().filter(|r| !Arc::ptr_eq(r, &replica))
            {
                replica = next.clone();
                continue;
            }
            break outcome;
        }
    } else {
        match tokio::time::timeout(
            timeout,
            replica
                .conn()
                .score_answer(request, gw.max_response, STREAM_ABOVE),
        )
        .await
        {
            Ok(answer) => Outcome::Answered(answer.map(|a| (a, sent))),
            Err(_) => Outcome::TimedOut { started: sent },
        }
    };
    trace.replica = Some(replica.index);
    drop(permit);
    if pool
        .observability
        .metrics
        .queue_depth
        .load(Ordering::Relaxed)
        > 0
    {
        // The slot just freed woke the next waiting request onto this thread; let it send its
        // frame now, so the worker runs it while this answer is written back to its client
        // (otherwise the worker idles through that write).
        tokio::task::yield_now().await;
    }
    let answer = match outcome {
        Outcome::Answered(Ok((answer, started))) => {
            if pool.pipelined {
                trace.queued = started.saturating_duration_since(wait_started);
            }
            answer
        }
        Outcome::Answered(Err(ConnError::ClosedBeforeStart(reason))) => {
            tracing::info!(service = %name, %reason, "replica stopped before a queued request started; not run");
            return unavailable(&format!("Service `{name}` has no ready replica."));
        }
        Outcome::Expired => {
            trace.queued = wait_started.elapsed();
            trace.capacity_rejected = true;
            return unavailable(&format!(
                "Service `{name}` is at capacity: the request waited longer than maxQueueWaitMs ({} ms).",
                pool.limits.max_queue_wait.as_millis()
            ));
        }
        Outcome::Answered(Err(ConnError::ResponseTooLarge { len, max })) => {
            tracing::warn!(service = %name, replica = replica.index, bytes = len, limit = max, "worker answer over --max-response-bytes; refused");
            let mut response = message(
                StatusCode::BAD_GATEWAY,
                &format!(
                    "The answer of run() is {len} bytes, larger than the limit of {max} bytes (the server's --max-response-bytes)."
                ),
            );
            response
                .headers_mut()
                .insert("x-ms-run-function-failed", HeaderValue::from_static("True"));
            return response;
        }
        Outcome::Answered(Err(e)) => return replica_failed(name, e),
        Outcome::TimedOut { started } => {
            trace.timed_out = true;
            if pool.pipelined {
                trace.queued = started.saturating_duration_since(wait_started);
            }
            trace.run = started.elapsed();
            // Python cannot be interrupted safely: recycle the replica.
            replica.kill(format!(
                "recycled after a request passed scoringTimeoutMs ({} ms)",
                timeout.as_millis()
            ));
            tracing::warn!(service = %name, replica = replica.index, timeout_ms = timeout.as_millis() as u64, "scoring timeout; replica recycled");
            let mut response = message(
                StatusCode::GATEWAY_TIMEOUT,
                &format!("Scoring timeout after {} ms.", timeout.as_millis()),
            );
            response
                .headers_mut()
                .insert("x-ms-run-function-failed", HeaderValue::from_static("True"));
            return response;
        }
    };
    let (result, streamed) = match answer {
        ScoreAnswer::Whole(result) => (result, None),
        ScoreAnswer::Streamed(s) => (s.head, Some((s.body_len, s.body))),
    };
    if let (Some((mirror, copy)), None) = (shadow_copy, &streamed) {
        mirror.offer_sampled(copy, result.status, &result.body, sent.elapsed());
    }
    trace.run = result.exec_time().unwrap_or_default();
    let status = StatusCode::from_u16(result.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let run_failed = result.run_failed();
    let exec = result
        .run_returned()
        .then(|| format!("{:.3}", f64::from(result.exec_us) / 1000.0));
    let body = match streamed {
        None => {
            if pool.observability.wants_bodies() {
                trace.response_body = Some(result.body.clone());
            }
            Body::from(result.body)
        }
        Some((len, parts)) => {
            trace.response_len = Some(usize::try_from(len).unwrap_or(usize::MAX));
            Body::from_stream(futures_util::stream::unfold(
                parts,
                |mut parts| async move {
                    let part = parts.recv().await?;
                    Some((
                        part.map_err(|e| std::io::Error::other(e.to_string())),
                        parts,
                    ))
                },
            ))
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Some(len) = trace.response_len {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    let out = response.headers_mut();
    for (key, value) in result.headers {
        if let (Ok(key), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            out.append(key, value);
        }
    }
    out.insert(
        "x-ms-run-function-failed",
        HeaderValue::from_static(if run_failed { "True" } else { "False" }),
    );
    if let Some(exec) = exec.and_then(|e| HeaderValue::from_str(&e).ok()) {
        out.insert("x-ms-run-fn-exec-ms", exec);
    }
    response
}

/// How a request sent to a replica ended.
enum Outcome {
    /// The worker's answer (or why there is none), and when its run started.
    Answered(Result<(ScoreAnswer, Instant), ConnError>),
    /// It started at `started` and passed `scoringTimeoutMs`.
    TimedOut { started: Instant },
    /// It was queued in the worker and not started within `maxQueueWaitMs` (the gateway
    /// gave it up, or the worker skipped it).
    Expired,
}

/// Longest wait before asking again whether a queued request has started, once its
/// deadline has passed and the worker's word on it is on its way.
const RECHECK: Duration = Duration::from_millis(1);

/// Sends a request to a replica of a pipelined pool: it starts at once when the worker is
/// idle, else it waits in the worker behind the request there (the worker goes from one to
/// the next without a round trip through the gateway). `maxQueueWaitMs` runs until it starts
/// (`queue_deadline`, which the worker also checks) and `scoringTimeoutMs` from then, as for a
/// request waiting in the gateway.
async fn score_queued(
    replica: &crate::compute::Replica,
    request: ScoreRequest,
    queue_deadline: Instant,
    timeout: Duration,
    gw: &GatewayState,
) -> Outcome {
    let left = queue_deadline.saturating_duration_since(Instant::now());
    let start_by = berth_worker::protocol::monotonic_ns()
        .saturating_add(u64::try_from(left.as_nanos()).unwrap_or(u64::MAX));
    let mut queued =
        match replica
            .conn()
            .score_queued(request, gw.max_response, STREAM_ABOVE, start_by)
        {
            Ok(queued) => queued,
            Err(e) => return Outcome::Answered(Err(e)),
        };
    let sent = Instant::now();
    // A request that has not started may start at any moment: its scoring deadline is at
    // least `timeout` from now, so waking by then never misses it.
    let mut wake = match queued.start() {
        Start::Started(at) => at + timeout,
        _ => queue_deadline.min(sent + timeout),
    };
    loop {
        tokio::select! {
            biased;
            answer = queued.answer() => {
                return match answer {
                    Ok((answer, started)) => Outcome::Answered(Ok((answer, started.unwrap_or(sent)))),
                    Err(ConnError::Expired) => Outcome::Expired,
                    Err(e) => Outcome::Answered(Err(e)),
                };
            }
            () = tokio::time::sleep_until(wake.into()) => {}
        }
        let now = Instant::now();
        wake = match queued.start() {
            Start::Started(at) if now >= at + timeout => {
                return Outcome::TimedOut { started: at };
            }
            Start::Started(at) => at + timeout,
            Start::Waiting => queue_deadline.min(now + timeout).max(now + RECHECK),
            Start::Expired => return Outcome::Expired,
            Start::Unsure => now + RECHECK,
        };
    }
}

/// The revision a request pins itself to with `x-berth-revision: N`.
fn pinned_revision(headers: &HeaderMap) -> Result<Option<u32>, String> {
    let Some(value) = headers.get("x-berth-revision") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    text.parse::<u32>().map(Some).map_err(|_| {
        format!(
            "x-berth-revision must be a revision number, not `{}`: send e.g. `x-berth-revision: 4`, or leave it out to be routed by weight.",
            String::from_utf8_lossy(value.as_bytes())
        )
    })
}

/// Headers for the worker: lowercase names; the scoring key is not passed to user code.
fn forward_headers(headers: &HeaderMap, strip_auth: bool) -> Vec<(String, Bytes)> {
    headers
        .iter()
        .filter(|(k, _)| !(strip_auth && *k == header::AUTHORIZATION))
        .map(|(k, v)| (k.as_str().to_owned(), Bytes::copy_from_slice(v.as_bytes())))
        .collect()
}

fn replica_failed(name: &str, error: ConnError) -> Response {
    tracing::warn!(service = %name, error = %error, "replica failed while scoring");
    let mut response = message(
        StatusCode::BAD_GATEWAY,
        "The replica serving this request stopped before answering; `berth service logs` shows its output.",
    );
    response
        .headers_mut()
        .insert("x-ms-run-function-failed", HeaderValue::from_static("True"));
    response
}

/// The service's swagger document, from a ready replica.
pub async fn swagger(
    State(gw): State<GatewayState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    // Under the scoring credentials; without them an unknown service and a
    // protected one get the same answer, so names cannot be probed.
    let route = match gw.table.get(&name) {
        Some(route) if authorized(&gw, &route, &headers) => route,
        _ => {
            let mut response = message(
                StatusCode::UNAUTHORIZED,
                &format!(
                    "The swagger document of `{name}` needs the service's key or token as `Authorization: Bearer <key or token>` when the service has auth; the same answer is given for a service that does not exist."
                ),
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"berth-scoring\""),
            );
            return response;
        }
    };
    let Some(replica) = route
        .choose(None)
        .ok()
        .flatten()
        .and_then(|pool| pool.pick().cloned())
    else {
        return unavailable(&format!("Service `{name}` has no ready replica."));
    };
    let version = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "version")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let answer =
        tokio::time::timeout(Duration::from_secs(30), replica.conn().swagger(&version)).await;
    match answer {
        Ok(Ok(result)) => {
            let mut response = Response::new(Body::from(result.body));
            *response.status_mut() =
                StatusCode::from_u16(result.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Ok(Err(e)) => replica_failed(&name, e),
        Err(_) => message(
            StatusCode::GATEWAY_TIMEOUT,
            "The swagger document took too long.",
        ),
    }
}
