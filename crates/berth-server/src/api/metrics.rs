//! `GET /metrics`: the Prometheus text exposition, behind the workspace token.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;

/// Every series, rendered at the time of the scrape.
pub async fn scrape(State(state): State<AppState>) -> impl IntoResponse {
    let gauges = state.runtime.route_gauges();
    let text = state.runtime.observability().metrics().render(&gauges);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}
