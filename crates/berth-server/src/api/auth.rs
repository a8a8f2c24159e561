//! Authentication for every `/v1` call: the workspace token, or the web
//! console's session cookie (with its CSRF header on changes, see `studio`).

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::error::ApiError;

/// Refuses the request with 401 unless it carries the workspace token or a live
/// console session (403 for a console change without CSRF proof).
pub async fn require_workspace_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if request.headers().get(header::AUTHORIZATION).is_none()
        && crate::studio::has_session_cookie(request.headers())
    {
        return match state.studio.authorize(
            request.method(),
            request.headers(),
            state.config.tls.is_some(),
        ) {
            Ok(()) => next.run(request).await,
            Err(e) => e.into_response(),
        };
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let outcome = match presented {
        None => Err("this call needs the workspace token and none was sent"),
        Some(value) => match crate::tokens::bearer(value) {
            None => Err("the `Authorization` header must be `Bearer <workspace token>`"),
            Some(token) if bool::from(token.as_bytes().ct_eq(state.token.as_bytes())) => Ok(()),
            Some(_) => Err("the workspace token sent is not this workspace's token"),
        },
    };
    match outcome {
        Ok(()) => next.run(request).await,
        Err(reason) => ApiError::Unauthenticated(reason.into()).into_response(),
    }
}
