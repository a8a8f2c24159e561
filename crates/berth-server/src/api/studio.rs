//! What the web console reads beyond the other resources: the recent traffic
//! series per service (`GET /v1/timeseries`, `GET /v1/services/{name}/timeseries`)
//! and one-time sign-in links (`POST /v1/studio/codes`, used by `berth studio login`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use berth_api::{ErrorBody, SeriesList, ServiceSeries, StudioCode};

use super::AppState;
use crate::error::ApiError;
use crate::studio::{now_secs, session};

/// Every service's samples of the last 15 minutes (requests/s by class, 5xx
/// share, latency quantiles, queue depth, replicas), one every 5 s.
#[utoipa::path(get, path = "/v1/timeseries", tag = "services",
    responses((status = 200, body = SeriesList), (status = 401, body = ErrorBody)))]
pub async fn list_series(State(state): State<AppState>) -> Json<SeriesList> {
    Json(SeriesList {
        value: state.studio.series.all(),
    })
}

/// One service's samples of the last 15 minutes.
#[utoipa::path(get, path = "/v1/services/{name}/timeseries", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    responses((status = 200, body = ServiceSeries), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn service_series(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ServiceSeries>, ApiError> {
    state.services.service(&name).await?;
    Ok(Json(state.studio.series.service(&name)))
}

/// A one-time link that signs a browser in to the console: it works once,
/// within 5 minutes, and starts a session of 12 hours.
#[utoipa::path(post, path = "/v1/studio/codes", tag = "workspace",
    responses((status = 201, body = StudioCode), (status = 401, body = ErrorBody)))]
pub async fn mint_code(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<StudioCode>), ApiError> {
    let (code, expires_on) = state
        .studio
        .sessions
        .mint_code(now_secs())
        .map_err(|e| ApiError::Internal(format!("no randomness for a sign-in code: {e}")))?;
    // The link names the address the caller reached us at, so it opens from there.
    let base = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|host| {
            let scheme = if state.config.tls.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{host}")
        })
        .unwrap_or_else(|| state.endpoint.to_string());
    Ok((
        StatusCode::CREATED,
        Json(StudioCode {
            url: format!("{base}/studio/signin?code={code}"),
            expires_on,
            session_seconds: session::SESSION_LIFETIME_SECS,
        }),
    ))
}
