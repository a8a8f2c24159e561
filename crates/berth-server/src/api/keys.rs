//! Scoring credentials: key regeneration (an operation, 409 while another runs)
//! and short-lived tokens for services with token auth.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use berth_api::{ErrorBody, OperationAccepted, OperationType, RegenerateKeyRequest, ServiceToken};

use super::updates::accepted;
use super::{ApiJson, AppState};
use crate::deploy_config::random_key;
use crate::error::ApiError;
use crate::store::ServiceChange;

/// Replaces the primary or secondary key (the other keeps working throughout).
#[utoipa::path(post, path = "/v1/services/{name}/regenerateKeys", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    request_body = RegenerateKeyRequest,
    responses((status = 202, body = OperationAccepted), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn regenerate_key(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<RegenerateKeyRequest>,
) -> Result<Response, ApiError> {
    let which = request.key_type.to_ascii_lowercase();
    if which != "primary" && which != "secondary" {
        return Err(ApiError::invalid(format!(
            "`keyType` is `{}`: it must be `Primary` or `Secondary`",
            request.key_type
        )));
    }
    if let Some(value) = &request.key_value
        && (value.len() < 16 || value.len() > 256 || !value.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(ApiError::invalid(
            "`keyValue` must be 16 to 256 printable ASCII characters without spaces",
        ));
    }
    let stored = state.services.service(&name).await?;
    let mut keys = stored.keys.clone();
    let new = request.key_value.unwrap_or_else(random_key);
    if which == "primary" {
        keys.primary_key = new;
    } else {
        keys.secondary_key = new;
    }
    let change = ServiceChange {
        name,
        kind: OperationType::RegenerateKey,
        operation_id: uuid::Uuid::new_v4().to_string(),
        now: crate::now_rfc3339(),
        based_on: Some(stored.serving_revision.unwrap_or(stored.latest_revision)),
        new_revision: None,
        target: None,
        description: None,
        tags: None,
        properties: None,
        keys: Some(keys),
    };
    let operation = state.services.change_service(change).await?;
    Ok(accepted(&state, operation, Vec::new()))
}

/// A scoring token for a service with token auth.
#[utoipa::path(post, path = "/v1/services/{name}/token", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    responses((status = 200, body = ServiceToken), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn service_token(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ServiceToken>, ApiError> {
    let stored = state.services.service(&name).await?;
    let spec = state
        .services
        .revision(
            &name,
            stored.serving_revision.unwrap_or(stored.latest_revision),
        )
        .await?;
    if !spec.deployment.token_auth_enabled {
        return Err(ApiError::invalid(format!(
            "service `{name}` does not use token auth; turn it on with `tokenAuthEnabled: true` (and `authEnabled: false`), or score with its keys"
        )));
    }
    let token = state.signer.mint(&name);
    Ok(Json(ServiceToken {
        access_token: token.access_token,
        token_type: "Bearer".into(),
        refresh_after: token.refresh_after,
        expiry_on: token.expiry_on,
    }))
}
