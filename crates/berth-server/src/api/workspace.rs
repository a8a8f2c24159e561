//! `GET /v1/workspace`: who this server is.

use axum::Json;
use axum::extract::State;
use berth_api::WorkspaceInfo;

use super::AppState;

/// Describes this workspace.
#[utoipa::path(get, path = "/v1/workspace", tag = "workspace",
    responses((status = 200, body = WorkspaceInfo), (status = 401, body = berth_api::ErrorBody)))]
pub async fn workspace_info(State(state): State<AppState>) -> Json<WorkspaceInfo> {
    Json(WorkspaceInfo {
        name: state.config.workspace_name.clone(),
        server_version: env!("CARGO_PKG_VERSION").to_owned(),
        max_upload_bytes: state.config.max_upload_bytes,
        resource_group: state.config.workspace_identity.resource_group.clone(),
        location: state.config.workspace_identity.location.clone(),
        subscription_id: state.config.workspace_identity.subscription_id.clone(),
    })
}
