//! `/v1/environments`: register (idempotent for an unchanged spec), list, show,
//! and build.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use berth_api::{
    Environment, EnvironmentList, ErrorBody, RegisterEnvironmentRequest,
    RegisterEnvironmentResponse,
};

use super::query::{parse_bool, parse_query, version_param};
use super::{ApiJson, AppState};
use crate::envs::{curated, spec};
use crate::error::ApiError;
use crate::store::{NewEnvironment, StoredEnvironment};

async fn to_wire(state: &AppState, stored: StoredEnvironment) -> Environment {
    let build = state.envs.status(&stored.spec).await;
    Environment {
        id: format!("{}:{}", stored.name, stored.version),
        name: stored.name,
        version: stored.version,
        spec: stored.spec,
        description: stored.description,
        created_time: stored.created_time,
        warnings: stored.warnings,
        build,
    }
}

/// Registers an environment. An unchanged spec (equal to the newest version's)
/// returns that version with 200 and `created: false`; a changed one makes
/// version max+1 (201). Warnings list everything normalisation changed or did
/// not use.
#[utoipa::path(post, path = "/v1/environments", tag = "environments",
    request_body = RegisterEnvironmentRequest,
    responses(
        (status = 201, body = RegisterEnvironmentResponse, description = "A new version"),
        (status = 200, body = RegisterEnvironmentResponse, description = "The spec is unchanged: the newest version"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn register_environment(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<RegisterEnvironmentRequest>,
) -> Result<(StatusCode, Json<RegisterEnvironmentResponse>), ApiError> {
    let normalised = spec::normalise(&request).map_err(ApiError::Invalid)?;
    let new = NewEnvironment {
        name: request.name.clone(),
        spec_digest: spec::spec_digest(&normalised.spec),
        build_hash: spec::build_hash(&normalised.spec),
        spec: normalised.spec,
        warnings: normalised.warnings,
        description: request.description.filter(|d| !d.is_empty()),
        created_time: crate::now_rfc3339(),
    };
    let (created, stored) = state.store.register_environment(new).await?;
    let environment = to_wire(&state, stored).await;
    tracing::info!(environment = %environment.id, created, "registered environment");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(RegisterEnvironmentResponse {
            created,
            environment,
        }),
    ))
}

/// Lists environment versions, newest first; `curated=true` includes every
/// curated environment (as Azure ML v1's `Environment.list` does).
#[utoipa::path(get, path = "/v1/environments", tag = "environments",
    params(
        ("name" = Option<String>, Query, description = "Exact name"),
        ("latest" = Option<bool>, Query, description = "Only the newest version per name"),
        ("curated" = Option<bool>, Query, description = "Include every curated environment (registered on the way)")),
    responses((status = 200, body = EnvironmentList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_environments(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<EnvironmentList>, ApiError> {
    let mut name = None;
    let mut latest = false;
    let mut with_curated = false;
    for (key, value) in parse_query(raw.as_deref(), &["name", "latest", "curated"])? {
        match key.as_str() {
            "name" => name = Some(value),
            "curated" => with_curated = parse_bool(&key, &value)?,
            _ => latest = parse_bool(&key, &value)?,
        }
    }
    if with_curated {
        for c in curated::CURATED {
            curated::ensure_registered(state.store.as_ref(), c).await?;
        }
    }
    let stored = state
        .store
        .list_environments(name.as_deref(), latest)
        .await?;
    let mut value = Vec::with_capacity(stored.len());
    for env in stored {
        value.push(to_wire(&state, env).await);
    }
    Ok(Json(EnvironmentList { value }))
}

/// An environment version; a curated name is registered on first use, an
/// unknown reserved name is `not_found` naming the closest curated names.
async fn stored_or_curated(
    state: &AppState,
    name: &str,
    version: Option<u32>,
) -> Result<StoredEnvironment, ApiError> {
    curated::resolve(state.store.as_ref(), name, version)
        .await
        .map_err(|e| match e {
            curated::Resolve::UnknownCurated(message) => ApiError::NotFound(message),
            curated::Resolve::Store(e) => e.into(),
        })
}

/// The newest version of an environment, with its build state. Curated names
/// (`AzureML-sklearn-1.0`, ...) are registered the first time they are asked for.
#[utoipa::path(get, path = "/v1/environments/{name}", tag = "environments",
    params(("name" = String, Path, description = "Environment name")),
    responses((status = 200, body = Environment), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn show_latest_environment(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Environment>, ApiError> {
    let stored = stored_or_curated(&state, &name, None).await?;
    Ok(Json(to_wire(&state, stored).await))
}

/// One environment version, with its build state.
#[utoipa::path(get, path = "/v1/environments/{name}/versions/{version}", tag = "environments",
    params(("name" = String, Path, description = "Environment name"), ("version" = u32, Path, description = "Version")),
    responses((status = 200, body = Environment), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn show_environment(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Environment>, ApiError> {
    let version = version_param("environment", &version)?;
    let stored = stored_or_curated(&state, &name, Some(version)).await?;
    Ok(Json(to_wire(&state, stored).await))
}

/// Starts building an environment version (a no-op when its spec is built);
/// poll the version to follow the build.
#[utoipa::path(post, path = "/v1/environments/{name}/versions/{version}/build", tag = "environments",
    params(("name" = String, Path, description = "Environment name"), ("version" = u32, Path, description = "Version")),
    responses(
        (status = 202, body = Environment, description = "Building (or built)"),
        (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn build_environment(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Environment>), ApiError> {
    let version = version_param("environment", &version)?;
    let stored = state.store.environment(&name, Some(version)).await?;
    state.envs.start(stored.spec.clone());
    Ok((StatusCode::ACCEPTED, Json(to_wire(&state, stored).await)))
}
