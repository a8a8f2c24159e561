//! The revision bundle for `berth replica`: `GET /v1/services/{name}/revisions/{n}/bundle`
//! (the [`RevisionBundle`] JSON) and `GET .../bundle/blobs/{digest}` (one file's
//! content, streamed and checked against its digest).
//!
//! These routes take a **bundle token** only (`Authorization: Bearer b1....`):
//! read-only, scoped to the one revision in the path, expiring. The workspace
//! token does not open them (a replica never holds it) and a bundle token opens
//! nothing else (the `/v1` routes check the workspace token). Tokens are never
//! logged.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_api::bundle::{BundleFile, BundleModel, RevisionBundle, WorkerSettings};

use super::AppState;
use crate::compute::local::materialise::{entry_script, worker_variables};
use crate::error::ApiError;
use crate::store::StoredFile;

/// The bundle routes, with their own authentication.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/services/{name}/revisions/{n}/bundle", get(bundle))
        .route(
            "/v1/services/{name}/revisions/{n}/bundle/blobs/{digest}",
            get(blob),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_bundle_token,
        ))
        .with_state(state)
}

/// Refuses the request with 401 unless it carries a valid bundle token for the
/// service revision in its path.
async fn require_bundle_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::tokens::bearer);
    let Some(token) = token else {
        return ApiError::Unauthenticated(
            "this call needs a bundle token (`Authorization: Bearer <bundle token>`, the one given to `berth replica` in BERTH_REPLICA_TOKEN)".into(),
        )
        .into_response();
    };
    let Some(grant) = state.signer.replica_keys().verify_bundle_token(token) else {
        return ApiError::Unauthenticated(
            "the bundle token is not valid for this workspace or has expired; the server mints a new one when it starts the replica".into(),
        )
        .into_response();
    };
    // /v1/services/{name}/revisions/{n}/bundle...
    let mut parts = request.uri().path().split('/').skip(3);
    let (service, revision) = (parts.next(), parts.nth(1));
    let matches = service == Some(grant.service.as_str())
        && revision.and_then(|r| r.parse::<u32>().ok()) == Some(grant.revision);
    if !matches {
        return ApiError::Unauthenticated(format!(
            "the bundle token is for service `{}` revision {} only",
            grant.service, grant.revision
        ))
        .into_response();
    }
    next.run(request).await
}

fn revision_param(n: &str) -> Result<u32, ApiError> {
    n.parse().map_err(|_| {
        ApiError::Invalid(vec![format!(
            "revision `{n}` is not a number; use the revision number, e.g. 3"
        )])
    })
}

fn bundle_file(f: &StoredFile) -> BundleFile {
    BundleFile {
        path: f.file.path.clone(),
        digest: f.file.digest.clone(),
        size: f.file.size,
        mode: f.mode,
    }
}

/// Builds the bundle of `service` revision `revision` from the store.
pub async fn build(
    state: &AppState,
    service: &str,
    revision: u32,
) -> Result<RevisionBundle, ApiError> {
    let mut spec = state.services.revision(service, revision).await?;
    // The service's own TLS key is the gateway's business, never a replica's.
    spec.deployment.ssl = None;
    let (env_name, env_version) = split_id(&spec.inference.environment)?;
    let environment = state.store.environment(env_name, Some(env_version)).await?;
    let mut models = Vec::new();
    for id in &spec.models {
        let (name, version) = split_id(id)?;
        let model = state.store.model(name, Some(version)).await?;
        let files = state.store.model_files(name, version).await?;
        models.push(BundleModel {
            name: name.to_owned(),
            version,
            kind: model.kind,
            asset_name: model.asset_name,
            files: files.iter().map(bundle_file).collect(),
        });
    }
    let (_, source) = state
        .store
        .snapshot(&spec.inference.source_snapshot)
        .await?;
    let d = &spec.deployment;
    let settings = WorkerSettings {
        init_timeout_ms: crate::compute::local::probes::readiness_limit(d).as_millis() as u64,
        scoring_timeout_ms: d.scoring_timeout_ms,
        max_concurrent_requests: d.max_concurrent_requests_per_container,
        memory_limit_bytes: d
            .container_resource_requirements
            .memory_in_gb_limit
            .map(crate::compute::local::limits::gb_to_bytes),
        environment_variables: worker_variables(
            service,
            revision,
            &spec,
            &environment.spec.environment_variables,
            &state.config.workspace_name,
        ),
    };
    let credentials = state
        .signer
        .replica_keys()
        .credentials(service, revision)
        .map_err(|e| ApiError::internal(&e))?;
    Ok(RevisionBundle {
        service: service.to_owned(),
        revision,
        entry_script: entry_script(&spec),
        environment: environment.spec,
        source: source.iter().map(bundle_file).collect(),
        models,
        settings,
        workspace_name: state.config.workspace_name.clone(),
        credentials,
        spec,
    })
}

fn split_id(id: &str) -> Result<(&str, u32), ApiError> {
    id.rsplit_once(':')
        .and_then(|(name, version)| Some((name, version.parse().ok()?)))
        .ok_or_else(|| {
            ApiError::Internal(format!("the revision refers to `{id}`, not name:version"))
        })
}

async fn bundle(
    State(state): State<AppState>,
    Path((name, n)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let revision = revision_param(&n)?;
    let bundle = build(&state, &name, revision).await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(bundle)).into_response())
}

async fn blob(
    State(state): State<AppState>,
    Path((name, n, digest)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let revision = revision_param(&n)?;
    let bundle = build(&state, &name, revision).await?;
    let Some(size) = bundle
        .source
        .iter()
        .chain(bundle.models.iter().flat_map(|m| m.files.iter()))
        .find(|f| f.digest == digest)
        .map(|f| f.size)
    else {
        return Err(ApiError::NotFound(format!(
            "blob `{digest}` is not part of {name} revision {revision}; the bundle lists the digests it has"
        )));
    };
    let path = state.blobs.path(&digest);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let content = crate::blobs::verify::stream_checked(file, &digest, &path);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        Body::from_stream(content),
    )
        .into_response())
}
