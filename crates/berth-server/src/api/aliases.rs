//! `/v1/models/{name}/aliases`: set, move, remove and list model aliases. A
//! move answers with the services following the alias and what happens to each.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use berth_api::names::{check_alias_name, check_model_name};
use berth_api::{AliasMoved, ErrorBody, ModelAliasList, SetAliasRequest};

use super::{ApiJson, AppState};
use crate::error::ApiError;

fn check_names(name: &str, alias: &str) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    if let Err(e) = check_model_name(name) {
        problems.push(e);
    }
    if let Err(e) = check_alias_name(alias) {
        problems.push(e);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(problems))
    }
}

/// Points an alias at a version (creating or moving it). Services following
/// `name@alias` are updated (`followPolicy: auto`), queued when busy, or shown
/// the update (`manual`); the answer lists them.
#[utoipa::path(put, path = "/v1/models/{name}/aliases/{alias}", tag = "models",
    params(("name" = String, Path, description = "Model name"), ("alias" = String, Path, description = "Alias name (not `latest`)")),
    request_body = SetAliasRequest,
    responses((status = 200, body = AliasMoved), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn set_alias(
    State(state): State<AppState>,
    Path((name, alias)): Path<(String, String)>,
    ApiJson(request): ApiJson<SetAliasRequest>,
) -> Result<Json<AliasMoved>, ApiError> {
    check_names(&name, &alias)?;
    if request.version == 0 {
        return Err(ApiError::invalid(
            "`version` is 0: a version is a whole number from 1; `berth model list --name NAME` shows the versions",
        ));
    }
    Ok(Json(
        state
            .follow
            .move_alias(&name, &alias, request.version)
            .await?,
    ))
}

/// Removes an alias. Its followers keep serving the version they serve.
#[utoipa::path(delete, path = "/v1/models/{name}/aliases/{alias}", tag = "models",
    params(("name" = String, Path, description = "Model name"), ("alias" = String, Path, description = "Alias name")),
    responses((status = 204, description = "Removed"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn remove_alias(
    State(state): State<AppState>,
    Path((name, alias)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    check_names(&name, &alias)?;
    let version = state.follow.remove_alias(&name, &alias).await?;
    tracing::info!(alias = %format!("{name}@{alias}"), version, "alias removed");
    Ok(StatusCode::NO_CONTENT)
}

/// The aliases of a model.
#[utoipa::path(get, path = "/v1/models/{name}/aliases", tag = "models",
    params(("name" = String, Path, description = "Model name")),
    responses((status = 200, body = ModelAliasList), (status = 401, body = ErrorBody)))]
pub async fn list_aliases(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ModelAliasList>, ApiError> {
    check_model_name(&name).map_err(ApiError::invalid)?;
    Ok(Json(ModelAliasList {
        value: state.store.aliases(Some(&name)).await?,
    }))
}

/// The aliases of every model.
#[utoipa::path(get, path = "/v1/aliases", tag = "models",
    responses((status = 200, body = ModelAliasList), (status = 401, body = ErrorBody)))]
pub async fn list_all_aliases(
    State(state): State<AppState>,
) -> Result<Json<ModelAliasList>, ApiError> {
    Ok(Json(ModelAliasList {
        value: state.store.aliases(None).await?,
    }))
}
