//! `/v1/operations/{id}`: the state and log of an asynchronous change.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use berth_api::{ErrorBody, Operation};

use super::AppState;
use super::query::parse_query;
use crate::error::ApiError;

/// An operation; `offset=N` returns its log lines from position N on.
#[utoipa::path(get, path = "/v1/operations/{id}", tag = "services",
    params(("id" = String, Path, description = "Operation id"),
        ("offset" = Option<u64>, Query, description = "First log line to return")),
    responses((status = 200, body = Operation), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn show_operation(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Operation>, ApiError> {
    let mut offset = 0;
    for (_, value) in parse_query(raw.as_deref(), &["offset"])? {
        offset = value.parse().map_err(|_| {
            ApiError::invalid(format!("`offset` is `{value}`: it must be a whole number"))
        })?;
    }
    let mut operation = state.services.operation(&id, offset).await?;
    // A rollout in its bake: the gate figures as measured now, not as stored
    // at the start of the step.
    if !operation.state.is_terminal()
        && let Some(control) = state.runtime.rollout_control(&operation.service)
        && control.operation_id == operation.id
    {
        operation.rollout = Some(control.status());
    }
    Ok(Json(operation))
}
