//! Berth Studio, the web console served by `berth server` at `/`.
//!
//! The console is one HTML shell with a hand-written script and stylesheet
//! embedded in the binary (`assets/`, no build step, no network). Signed out,
//! `/` shows nothing but the sign-in form; signed in, the shell carries the
//! session's CSRF token and the script drives the ordinary `/v1` API with the
//! session cookie, so the console can do exactly what the REST API allows and
//! nothing else (`api/auth.rs` accepts the cookie, and for changes the CSRF
//! header and a same-origin `Origin`, through [`Studio::authorize`]).
//!
//! Routes here (outside `/v1`, no workspace token):
//! `GET /` (sign-in form or console), `GET /studio/assets/{file}`,
//! `POST /studio/signin` (form with the workspace token),
//! `GET /studio/signin?code=` (a one-time link from `berth studio login`, which
//! redirects to `/` so that no secret stays in the address bar),
//! `POST /studio/signout`.

mod pages;
pub mod session;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::metrics::series::SeriesStore;
pub use session::{Session, Sessions};

/// Largest sign-in form accepted, bytes.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The console's server-side state.
#[derive(Debug, Default)]
pub struct Studio {
    /// Signed-in sessions and pending sign-in codes.
    pub sessions: Sessions,
    /// Recent traffic samples per service.
    pub series: SeriesStore,
}

/// What the console routes need.
#[derive(Clone)]
pub struct StudioState {
    /// Sessions and series.
    pub studio: Arc<Studio>,
    /// The workspace token the sign-in form checks.
    pub token: Arc<str>,
    /// Whether the server speaks TLS (the cookie is then `Secure`).
    pub tls: bool,
    /// The workspace's name, shown in the header.
    pub workspace_name: Arc<str>,
}

/// Epoch seconds now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| session::cookie(v, session::SESSION_COOKIE))
        .filter(|id| !id.is_empty())
}

/// Whether a request carries a console session cookie (the auth middleware asks
/// before falling back to the workspace token).
pub fn has_session_cookie(headers: &HeaderMap) -> bool {
    session_id(headers).is_some()
}

fn expected_origins(headers: &HeaderMap, tls: bool) -> Vec<String> {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|host| session::origins_for_host(host, tls))
        .unwrap_or_default()
}

impl Studio {
    /// Authorises a `/v1` call made with the console's session cookie: the
    /// session must be live, and a call that changes anything must carry the
    /// CSRF header and, if the browser sent one, a same-origin `Origin`.
    pub fn authorize(
        &self,
        method: &Method,
        headers: &HeaderMap,
        tls: bool,
    ) -> Result<(), ApiError> {
        let id = session_id(headers).ok_or_else(|| {
            ApiError::Unauthenticated(
                "this call needs the workspace token and none was sent".into(),
            )
        })?;
        let session = self.sessions.get(id, now_secs()).ok_or_else(|| {
            ApiError::Unauthenticated(
                "the console session has expired or was signed out; sign in again at `/`".into(),
            )
        })?;
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return Ok(());
        }
        let csrf = headers
            .get(session::CSRF_HEADER)
            .and_then(|v| v.to_str().ok());
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        session::check_csrf(&session, csrf, origin, &expected_origins(headers, tls))
            .map_err(|e| ApiError::Forbidden(e.to_string()))
    }
}

/// The console routes.
pub fn router(state: StudioState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/studio/assets/{file}", get(asset))
        .route("/studio/signin", post(sign_in).get(sign_in_with_code))
        .route("/studio/signout", post(sign_out))
        .with_state(state)
}

/// Headers every console page carries: no caching, no framing, a strict CSP.
fn page(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn redirect_home(set_cookie: String) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let h = response.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static("/"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&set_cookie) {
        h.insert(header::SET_COOKIE, v);
    }
    response
}

async fn index(State(state): State<StudioState>, headers: HeaderMap) -> Response {
    let live = session_id(&headers).and_then(|id| state.studio.sessions.get(id, now_secs()));
    match live {
        Some(session) => page(
            StatusCode::OK,
            pages::console(&session.csrf, &state.workspace_name),
        ),
        None => page(StatusCode::OK, pages::sign_in(None)),
    }
}

async fn asset(Path(file): Path<String>) -> Response {
    match pages::asset(&file) {
        Some((content_type, body)) => {
            let mut response = body.into_response();
            let h = response.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            response
        }
        None => (StatusCode::NOT_FOUND, "no such console asset\n").into_response(),
    }
}

fn start_session(
    state: &StudioState,
    new: Result<session::NewSession, getrandom::Error>,
) -> Response {
    match new {
        Ok(new) => redirect_home(session::set_cookie(&new.id, state.tls)),
        Err(e) => {
            tracing::error!(error = %e, "no randomness for a console session");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::sign_in(Some(
                    "The server could not start a session; its log has the details.",
                )),
            )
        }
    }
}

async fn sign_in(State(state): State<StudioState>, request: Request) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(origin) = origin
        && !expected_origins(request.headers(), state.tls)
            .iter()
            .any(|o| o.eq_ignore_ascii_case(&origin))
    {
        return page(
            StatusCode::FORBIDDEN,
            pages::sign_in(Some(&format!(
                "The sign-in came from `{origin}`, not from this server's own page. Open this server's address and sign in there."
            ))),
        );
    }
    let body = match axum::body::to_bytes(request.into_body(), MAX_FORM_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return page(
                StatusCode::PAYLOAD_TOO_LARGE,
                pages::sign_in(Some("The sign-in form was too large.")),
            );
        }
    };
    let token = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    if token.is_empty() {
        return page(
            StatusCode::UNAUTHORIZED,
            pages::sign_in(Some(
                "Enter the workspace token. `berth server` writes it to `workspace-token` in its data directory; `berth studio login` prints a sign-in link instead.",
            )),
        );
    }
    if !bool::from(token.as_bytes().ct_eq(state.token.as_bytes())) {
        return page(
            StatusCode::UNAUTHORIZED,
            pages::sign_in(Some(
                "That is not this workspace's token. It is in `workspace-token` in the server's data directory (or `config.json`).",
            )),
        );
    }
    start_session(&state, state.studio.sessions.create(now_secs()))
}

async fn sign_in_with_code(State(state): State<StudioState>, RawQuery(raw): RawQuery) -> Response {
    let code = raw
        .as_deref()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "code")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    match state.studio.sessions.redeem_code(&code, now_secs()) {
        Ok(Some(new)) => start_session(&state, Ok(new)),
        Ok(None) => page(
            StatusCode::UNAUTHORIZED,
            pages::sign_in(Some(
                "This sign-in link was already used or has expired (links work once, for 5 minutes). Run `berth studio login` for a new one, or sign in with the workspace token.",
            )),
        ),
        Err(e) => start_session(&state, Err(e)),
    }
}

async fn sign_out(State(state): State<StudioState>, headers: HeaderMap) -> Response {
    if let Err(e) = state.studio.authorize(&Method::POST, &headers, state.tls) {
        return e.into_response();
    }
    if let Some(id) = session_id(&headers) {
        state.studio.sessions.remove(id);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie(state.tls)) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// Samples every route's gauges into `studio.series` every
/// [`INTERVAL_SECS`](crate::metrics::series::INTERVAL_SECS), for as long as the process runs.
pub fn start_sampler(studio: Arc<Studio>, runtime: Arc<crate::reconciler::Runtime>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(
            crate::metrics::series::INTERVAL_SECS,
        ));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            studio.series.sample(now_ms, &runtime.route_gauges());
        }
    });
}
