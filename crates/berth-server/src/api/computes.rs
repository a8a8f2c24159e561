//! `/v1/computes`: compute targets by name, as Azure ML v1 code creates and
//! attaches them (`ComputeTarget.create`, `AksCompute`). The built-in `local`
//! target always exists; a created or attached AKS target is recorded with its
//! settings and, on a server without a Kubernetes cluster, runs its services on
//! the local target (the creation answer says so once). A target attached with
//! `kubernetes` settings runs its services on that cluster; its kubeconfig is
//! stored and never returned (answers say only whether one is set).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use berth_api::compute::{check_compute_name, check_kubernetes_attach};
use berth_api::{
    ComputeTarget, ComputeTargetList, ErrorBody, KUBERNETES_KIND, KubernetesTargetInfo,
    LOCAL_COMPUTE, PutComputeTargetRequest,
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
        kubernetes: None,
    }
}

/// What a created target is told once: it runs on the local target.
pub fn backed_by_local_note(name: &str, compute_type: &str) -> String {
    format!(
        "this Berth server has no Kubernetes cluster: the {compute_type} compute target `{name}` is backed by the built-in `local` target, so services deployed to it run on this server's local replicas"
    )
}

fn to_wire(stored: StoredComputeTarget) -> ComputeTarget {
    let kubernetes = stored.kubernetes.map(|k| KubernetesTargetInfo {
        kubeconfig_set: k.kubeconfig.is_some(),
        namespace: k.namespace,
        image: k.image,
        server_url: k.server_url,
        in_cluster: k.in_cluster,
    });
    ComputeTarget {
        name: stored.name,
        compute_type: stored.compute_type,
        provisioning_state: "Succeeded".into(),
        backed_by: if kubernetes.is_some() {
            KUBERNETES_KIND.into()
        } else {
            LOCAL_COMPUTE.into()
        },
        attached: stored.attached,
        properties: stored.properties,
        created_time: Some(stored.created_time),
        warnings: Vec::new(),
        kubernetes,
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
    if let Some(k) = &request.kubernetes {
        if !request.attach {
            problems.push(
                "`kubernetes` is given with `attach` false: a cluster is attached, not created (`berth compute attach --kind kubernetes`, `ComputeTarget.attach`)".into(),
            );
        }
        problems.extend(check_kubernetes_attach(k));
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let wanted = request.kubernetes.clone();
    let (created, stored) = state
        .store
        .put_compute_target(StoredComputeTarget {
            name: name.clone(),
            compute_type: compute_type.clone(),
            attached: request.attach,
            properties,
            created_time: crate::now_rfc3339(),
            kubernetes: request.kubernetes,
        })
        .await?;
    if !created && stored.kubernetes != wanted {
        return Err(ApiError::Conflict {
            message: format!(
                "compute target `{name}` exists with other settings: its cluster settings are not changed in place"
            ),
            hint: format!(
                "detach it first (`berth compute detach -n {name}`, once no service runs there), or attach under another name"
            ),
        });
    }
    let mut target = to_wire(stored);
    if created && target.kubernetes.is_some() {
        tracing::info!(compute = %name, "attached a Kubernetes cluster (credentials stored, not logged)");
        Ok((StatusCode::CREATED, Json(target)))
    } else if created {
        let note = backed_by_local_note(&name, &compute_type);
        tracing::info!(compute = %name, "{note}");
        target.warnings.push(note);
        Ok((StatusCode::CREATED, Json(target)))
    } else {
        Ok((StatusCode::OK, Json(target)))
    }
}

/// Services whose newest or serving revision is deployed to `target`.
async fn services_on(state: &AppState, target: &str) -> Result<Vec<String>, ApiError> {
    let mut names = Vec::new();
    for service in state.services.list_services().await? {
        let mut revisions = vec![service.latest_revision];
        revisions.extend(service.serving_revision);
        revisions.extend(service.traffic.iter().flatten().map(|t| t.revision));
        revisions.sort_unstable();
        revisions.dedup();
        for number in revisions {
            let spec = state.services.revision(&service.name, number).await?;
            if spec.deployment.compute_target_name.as_deref() == Some(target) {
                names.push(service.name.clone());
                break;
            }
        }
    }
    Ok(names)
}

/// Deletes (or detaches) a compute target. Refused while a Kubernetes-backed
/// target still runs services (they are named); services deployed to a target
/// backed by the local target keep running there.
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
    if let Some(stored) = state.store.compute_target(&name).await?
        && stored.kubernetes.is_some()
    {
        let services = services_on(&state, &name).await?;
        if !services.is_empty() {
            return Err(ApiError::Conflict {
                message: format!(
                    "compute target `{name}` still runs service(s) {}",
                    services
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                hint: "delete those services (`berth service delete -n NAME`) or update them to another `computeTargetName`, then detach".into(),
            });
        }
    }
    if state.store.delete_compute_target(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&name))
    }
}
