//! `/v1/models`: register, list, show, update, download and delete model versions.

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_api::names::{check_model_name, parse_key_value};
use berth_api::{ErrorBody, Model, ModelKind, ModelList, UpdateModelRequest};
use tokio_util::io::{ReaderStream, SyncIoBridge};

use super::query::{parse_bool, parse_query, version_param};
use super::{ApiJson, AppState, upload};
use crate::error::ApiError;
use crate::store::{ModelChanges, ModelFilter, StoredFile};

/// Registers a model version from a streamed multipart upload: a `metadata` part
/// (JSON, `RegisterModelMetadata`) followed by a `content` part (the file, or a
/// tar archive of the folder).
#[utoipa::path(post, path = "/v1/models", tag = "models",
    request_body(content_type = "multipart/form-data", description = "`metadata` (JSON `RegisterModelMetadata`), then `content` (the file, or a tar of the folder)"),
    responses(
        (status = 201, body = Model, description = "Registered; the version is assigned by the registry"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn register_model(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<(StatusCode, [(header::HeaderName, String); 1], Json<Model>), ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Multipart framing and metadata come on top of the content itself.
    let framing_allowance = 2 << 20;
    if let Some(length) = declared
        && length
            > state
                .config
                .max_upload_bytes
                .saturating_add(framing_allowance)
    {
        upload::drain(request.into_body().into_data_stream()).await;
        return Err(ApiError::PayloadTooLarge {
            limit: state.config.max_upload_bytes,
            flag: Some("--max-upload-bytes"),
        });
    }
    let multipart = Multipart::from_request(request, &state).await.map_err(|e| {
        ApiError::UnsupportedMediaType(format!(
            "a registration is a `multipart/form-data` upload with `metadata` and `content` parts ({})",
            e.body_text()
        ))
    })?;
    let task_state = state.clone();
    let task = tokio::spawn(async move {
        let mut published = Vec::new();
        let result = upload::register(&task_state, multipart, &mut published).await;
        if let Err(e) = &result {
            tracing::info!(error = %e, blobs = published.len(), "model registration failed; releasing its uploads");
            upload::release(&task_state, published).await;
        }
        result
    });
    let model = task.await.map_err(|e| ApiError::internal(&e))??;
    tracing::info!(model = %model.id, size = model.size, files = model.file_count, "registered model");
    let location = format!("/v1/models/{}/versions/{}", model.name, model.version);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(model),
    ))
}

const LIST_PARAMS: &[&str] = &[
    "name",
    "tag",
    "tags",
    "property",
    "properties",
    "framework",
    "latest",
];

/// Lists model versions, newest first. `tag` and `property` take `key` or
/// `key=value`, repeated or comma-separated (`tags=a,b=1` as Azure sends them);
/// all filters must hold. `latest=true` keeps the newest matching version per name.
#[utoipa::path(get, path = "/v1/models", tag = "models",
    params(
        ("name" = Option<String>, Query, description = "Exact model name"),
        ("tag" = Option<Vec<String>>, Query, description = "`key` or `key=value`"),
        ("property" = Option<Vec<String>>, Query, description = "`key` or `key=value`"),
        ("framework" = Option<String>, Query, description = "Exact framework"),
        ("latest" = Option<bool>, Query, description = "Only the newest matching version per name")),
    responses((status = 200, body = ModelList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_models(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ModelList>, ApiError> {
    let mut filter = ModelFilter::default();
    let mut problems = Vec::new();
    for (key, value) in parse_query(raw.as_deref(), LIST_PARAMS)? {
        match key.as_str() {
            "name" => filter.name = Some(value),
            "framework" => filter.framework = Some(value),
            "latest" => filter.latest = parse_bool(&key, &value)?,
            "tag" | "tags" | "property" | "properties" => {
                for item in value.split(',').filter(|s| !s.is_empty()) {
                    match parse_key_value(item, true) {
                        Ok((k, v)) => {
                            let pair = (k, item.contains('=').then_some(v));
                            if key.starts_with("tag") {
                                filter.tags.push(pair);
                            } else {
                                filter.properties.push(pair);
                            }
                        }
                        Err(e) => problems.push(format!("query parameter `{key}`: {e}")),
                    }
                }
            }
            _ => {}
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let value = state.store.list_models(&filter).await?;
    Ok(Json(ModelList { value }))
}

fn name_param(name: &str) -> Result<(), ApiError> {
    check_model_name(name).map_err(|e| ApiError::NotFound(format!("{e}; no such model exists")))
}

/// The newest version of a model.
#[utoipa::path(get, path = "/v1/models/{name}", tag = "models",
    params(("name" = String, Path, description = "Model name")),
    responses((status = 200, body = Model), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn show_latest_model(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Model>, ApiError> {
    name_param(&name)?;
    Ok(Json(state.store.model(&name, None).await?))
}

/// One model version, with its files.
#[utoipa::path(get, path = "/v1/models/{name}/versions/{version}", tag = "models",
    params(("name" = String, Path, description = "Model name"), ("version" = u32, Path, description = "Version")),
    responses((status = 200, body = Model), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn show_model(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Model>, ApiError> {
    name_param(&name)?;
    let version = version_param("model", &version)?;
    Ok(Json(state.store.model(&name, Some(version)).await?))
}

/// Changes a version's description and tags, and adds properties (add-only).
#[utoipa::path(patch, path = "/v1/models/{name}/versions/{version}", tag = "models",
    params(("name" = String, Path, description = "Model name"), ("version" = u32, Path, description = "Version")),
    request_body = UpdateModelRequest,
    responses((status = 200, body = Model), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn update_model(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    ApiJson(request): ApiJson<UpdateModelRequest>,
) -> Result<Json<Model>, ApiError> {
    name_param(&name)?;
    let version = version_param("model", &version)?;
    let mut problems = Vec::new();
    let all_keys = request
        .tags
        .iter()
        .flat_map(|t| t.keys())
        .chain(request.add_tags.keys())
        .chain(request.remove_tags.iter())
        .chain(request.add_properties.keys());
    if all_keys.into_iter().any(|k| k.is_empty()) {
        problems.push(
            "a tag or property has an empty key: every key needs at least one character".to_owned(),
        );
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let changes = ModelChanges {
        description: request.description,
        tags: request.tags,
        add_tags: request.add_tags,
        remove_tags: request.remove_tags,
        add_properties: request.add_properties,
    };
    Ok(Json(
        state.store.update_model(&name, version, changes).await?,
    ))
}

/// Deletes a version unless a service uses it (412). Its content is removed
/// when no other version shares it.
#[utoipa::path(delete, path = "/v1/models/{name}/versions/{version}", tag = "models",
    params(("name" = String, Path, description = "Model name"), ("version" = u32, Path, description = "Version")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn delete_model(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    name_param(&name)?;
    let version = version_param("model", &version)?;
    let digests = state.store.delete_model(&name, version).await?;
    let removed = state.blobs.collect(&digests, state.store.as_ref()).await;
    tracing::info!(model = %format!("{name}:{version}"), blobs_removed = removed, "deleted model");
    Ok(StatusCode::NO_CONTENT)
}

/// Downloads a version: the file itself, or the folder as a tar archive whose
/// entries start with the folder's name.
#[utoipa::path(get, path = "/v1/models/{name}/versions/{version}/content", tag = "models",
    params(("name" = String, Path, description = "Model name"), ("version" = u32, Path, description = "Version")),
    responses(
        (status = 200, description = "The file (`application/octet-stream`) or a tar of the folder (`application/x-tar`)"),
        (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn download_model(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    name_param(&name)?;
    let version = version_param("model", &version)?;
    let model = state.store.model(&name, Some(version)).await?;
    let files = state.store.model_files(&name, version).await?;
    let disposition = |file_name: &str| {
        let safe: String = file_name
            .chars()
            .map(|c| if c == '"' || c.is_control() { '_' } else { c })
            .collect();
        format!("attachment; filename=\"{safe}\"")
    };
    match model.kind {
        ModelKind::File => {
            let stored = files.first().ok_or_else(|| {
                ApiError::Internal(format!("model {} has no file rows", model.id))
            })?;
            let content = state
                .blobs
                .stream(&stored.file.digest)
                .await
                .map_err(|e| ApiError::internal(&e))?;
            Ok((
                [
                    (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                    (header::CONTENT_LENGTH, stored.file.size.to_string()),
                    (header::CONTENT_DISPOSITION, disposition(&model.asset_name)),
                    (header::ETAG, format!("\"{}\"", model.content_digest)),
                ],
                Body::from_stream(content),
            )
                .into_response())
        }
        ModelKind::Folder => {
            let body = stream_tar(&state, &model, files);
            Ok((
                [
                    (header::CONTENT_TYPE, "application/x-tar".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        disposition(&format!("{}.tar", model.asset_name)),
                    ),
                    (header::ETAG, format!("\"{}\"", model.content_digest)),
                ],
                body,
            )
                .into_response())
        }
    }
}

/// Builds the folder's tar on a blocking thread, streaming it through a pipe.
fn stream_tar(state: &AppState, model: &Model, files: Vec<StoredFile>) -> Body {
    let (reader, writer) = tokio::io::duplex(256 * 1024);
    let blobs = state.blobs.clone();
    let root = model.asset_name.clone();
    let mtime = humantime::parse_rfc3339(&model.created_time)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let id = model.id.clone();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut builder = tar::Builder::new(SyncIoBridge::new(writer));
        let result = (|| -> std::io::Result<()> {
            for stored in &files {
                let mut header = tar::Header::new_gnu();
                header.set_size(stored.file.size);
                header.set_mode(stored.mode);
                header.set_mtime(mtime);
                header.set_entry_type(tar::EntryType::Regular);
                // Streamed from the blob store (a file, or the object store) and checked.
                let (reader, location) = handle
                    .block_on(blobs.reader(&stored.file.digest))
                    .map_err(std::io::Error::other)?;
                let content = crate::blobs::verify::VerifyingRead::new(
                    SyncIoBridge::new_with_handle(reader, handle.clone()),
                    &stored.file.digest,
                    &location,
                );
                builder.append_data(
                    &mut header,
                    format!("{root}/{}", stored.file.path),
                    content,
                )?;
            }
            let mut bridge = builder.into_inner()?;
            bridge.shutdown()
        })();
        if let Err(e) = result {
            // The client sees a truncated archive; the log says why.
            tracing::warn!(model = %id, error = %e, "folder download stopped");
        }
    });
    Body::from_stream(ReaderStream::with_capacity(reader, 256 * 1024))
}
