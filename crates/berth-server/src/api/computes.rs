//! `/v1/computes`: compute targets by name, as Azure ML v1 code creates and
//! attaches them (`ComputeTarget.create`, `AksCompute`). The built-in `local`
//! target always exists; a created or attached AKS target is recorded with its
//! settings and, on a server without a Kubernetes cluster, runs its services on
//! the local target (the creation answer says so once).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use berth_api::compute::check_compute_name;
use berth_api::{
    ComputeTarget, ComputeTargetList, ErrorBody, LOCAL_COMPUTE, PutComputeTargetRequest,
};

use super::{ApiJson, AppState};
use crate::error::ApiError;
use crate::store::StoredComputeTarget;

/// Compute types that can be created or attached by name.
const CREATABLE: &[&str] = &["AKS"];

fn local_target() -> ComputeTarget {
    ComputeTarget {
        name: LOCAL_COMPUTE.into(),
        compute_type: "Local".into(),
        provisioning_state: "Succeeded".into(),
        backed_by: LOCAL_COMPUTE.into(),
        attached: false,
        properties: serde_json::json!({}),
        created_time: None,
        warnings: Vec::new(),
    }
}

/// What a created target is told once: it runs on the local target.
pub fn backed_by_local_note(name: &str, compute_type: &str) -> String {
    format!(
        "this Berth server has no Kubernetes cluster: the {compute_type} compute target `{name}` is backed by the built-in `local` target, so services deployed to it run on this server's local replicas"
    )
}

fn to_wire(stored: StoredComputeTarget) -> ComputeTarget {
    ComputeTarget {
        name: stored.name,
        compute_type: stored.compute_type,
        provisioning_state: "Succeeded".into(),
        backed_by: LOCAL_COMPUTE.into(),
        attached: stored.attached,
        properties: stored.properties,
        created_time: Some(stored.created_time),
        warnings: Vec::new(),
    }
}

/// The target of that name (`local` included), or `None`.
pub async fn find(state: &AppState, name: &str) -> Result<Option<ComputeTarget>, ApiError> {
    if name == LOCAL_COMPUTE {
        return Ok(Some(local_target()));
    }
    Ok(state.store.compute_target(name).await?.map(to_wire))
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!(
        "compute target `{name}` not found; `berth compute list` shows the targets, and `ComputeTarget.create(ws, \"{name}\", AksCompute.provisioning_configuration())` (or `PUT /v1/computes/{name}`) creates it"
    ))
}

/// Lists the compute targets: `local` first, then the others by name.
#[utoipa::path(get, path = "/v1/computes", tag = "computes",
    responses((status = 200, body = ComputeTargetList), (status = 401, body = ErrorBody)))]
pub async fn list_computes(
    State(state): State<AppState>,
) -> Result<Json<ComputeTargetList>, ApiError> {
    let mut value = vec![local_target()];
    value.extend(
        state
            .store
            .list_compute_targets()
            .await?
            .into_iter()
            .map(to_wire),
    );
    Ok(Json(ComputeTargetList { value }))
}

/// One compute target.
#[utoipa::path(get, path = "/v1/computes/{name}", tag = "computes",
    params(("name" = String, Path, description = "Compute target name")),
    responses((status = 200, body = ComputeTarget), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn show_compute(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ComputeTarget>, ApiError> {
    find(&state, &name)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(&name))
}

/// Creates (or attaches) a compute target. An existing target of that name is
/// returned unchanged with 200; a new one gets 201 and, once, a warning saying
/// which target backs it.
#[utoipa::path(put, path = "/v1/computes/{name}", tag = "computes",
    params(("name" = String, Path, description = "Compute target name")),
    request_body = PutComputeTargetRequest,
    responses(
        (status = 201, body = ComputeTarget, description = "Created"),
        (status = 200, body = ComputeTarget, description = "It exists already"),
        (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn put_compute(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<PutComputeTargetRequest>,
) -> Result<(StatusCode, Json<ComputeTarget>), ApiError> {
    if name == LOCAL_COMPUTE {
        return Err(ApiError::Conflict {
            message: "compute target `local` is built in and cannot be created or attached".into(),
            hint: "pick another name, or deploy to `local` as it is".into(),
        });
    }
    let mut problems = Vec::new();
    if let Err(e) = check_compute_name(&name) {
        problems.push(e);
    }
    let compute_type = request.compute_type.to_ascii_uppercase();
    if !CREATABLE.contains(&compute_type.as_str()) {
        problems.push(format!(
            "`computeType` is `{}`: Berth creates and attaches `AKS` targets only (the built-in `local` target always exists)",
            request.compute_type
        ));
    }
    let properties = request.properties.unwrap_or_else(|| serde_json::json!({}));
    if !properties.is_object() {
        problems.push(format!(
            "`properties` is {properties}: it must be an object of the provisioning or attach settings"
        ));
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let (created, stored) = state
        .store
        .put_compute_target(StoredComputeTarget {
            name: name.clone(),
            compute_type: compute_type.clone(),
            attached: request.attach,
            properties,
            created_time: crate::now_rfc3339(),
        })
        .await?;
    let mut target = to_wire(stored);
    if created {
        let note = backed_by_local_note(&name, &compute_type);
        tracing::info!(compute = %name, "{note}");
        target.warnings.push(note);
        Ok((StatusCode::CREATED, Json(target)))
    } else {
        Ok((StatusCode::OK, Json(target)))
    }
}

/// Deletes (or detaches) a compute target. Services deployed to it keep running
/// on the target that backed it.
#[utoipa::path(delete, path = "/v1/computes/{name}", tag = "computes",
    params(("name" = String, Path, description = "Compute target name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn delete_compute(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if name == LOCAL_COMPUTE {
        return Err(ApiError::Conflict {
            message: "compute target `local` is built in and cannot be deleted".into(),
            hint: "delete the services instead".into(),
        });
    }
    if state.store.delete_compute_target(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&name))
    }
}
