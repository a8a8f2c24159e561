//! `/v1/snapshots`: content-addressed uploads of a source directory (a tar
//! archive), checked entry by entry and stored file by file.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use berth_api::{ErrorBody, Snapshot};

use super::AppState;
use super::upload::{drain, receive_tar, release};
use crate::archive::{ArchiveError, ArchiveLimits, manifest_digest};
use crate::error::ApiError;
use crate::store::{NewModelFile, NewSnapshot};

/// Uploads a source directory as an uncompressed tar archive
/// (`Content-Type: application/x-tar`). Uploading identical content again
/// returns the existing snapshot (200).
#[utoipa::path(post, path = "/v1/snapshots", tag = "snapshots",
    request_body(content_type = "application/x-tar", description = "A tar archive of the source directory, paths relative to it"),
    responses(
        (status = 201, body = Snapshot, description = "Stored"),
        (status = 200, body = Snapshot, description = "Identical content was stored already"),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn upload_snapshot(
    State(state): State<AppState>,
    request: Request,
) -> Result<(StatusCode, Json<Snapshot>), ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if !content_type.starts_with("application/x-tar") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "a snapshot is an uncompressed tar archive sent with `Content-Type: application/x-tar`, not `{content_type}`"
        )));
    }
    let limit = state.config.max_snapshot_bytes;
    let tar_limit = limit.saturating_add(limit / 8).saturating_add(1 << 20);
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = request.into_body();
    if declared.is_some_and(|length| length > tar_limit) {
        drain(body.into_data_stream()).await;
        return Err(ApiError::PayloadTooLarge {
            limit,
            flag: Some("--max-snapshot-bytes"),
        });
    }
    let task_state = state.clone();
    let task = tokio::spawn(async move {
        let mut published = Vec::new();
        let result = store_snapshot(&task_state, body, &mut published).await;
        if let Err(e) = &result {
            tracing::info!(error = %e, "snapshot upload failed; releasing its files");
            release(&task_state, published).await;
        }
        result
    });
    let (created, snapshot) = task.await.map_err(|e| ApiError::internal(&e))??;
    let status = if created {
        tracing::info!(snapshot = %snapshot.id, files = snapshot.file_count, "stored snapshot");
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(snapshot)))
}

/// Stores a snapshot from a tar body: `(created, snapshot)`.
pub(super) async fn store_snapshot(
    state: &AppState,
    body: Body,
    published: &mut Vec<String>,
) -> Result<(bool, Snapshot), ApiError> {
    let limits = ArchiveLimits {
        max_bytes: state.config.max_snapshot_bytes,
        max_files: state.config.max_snapshot_files,
    };
    let flag = Some("--max-snapshot-bytes");
    let stream = body.into_data_stream();
    let files = match receive_tar(state, stream, limits, flag, published).await? {
        Ok(files) => files,
        Err(ArchiveError::TooLarge { limit }) => {
            return Err(ApiError::PayloadTooLarge { limit, flag });
        }
        Err(ArchiveError::TooManyFiles { limit }) => {
            return Err(ApiError::invalid(format!(
                "the source directory has more than {limit} files, the snapshot limit; leave data and build outputs out of it, or raise `berth server --max-snapshot-files`"
            )));
        }
        Err(ArchiveError::Blob(e)) => return Err(ApiError::internal(&e)),
        Err(other) => return Err(ApiError::invalid(other.to_string())),
    };
    let digest = manifest_digest(files.iter().map(|f| (f.path.as_str(), f.blob.digest())));
    let new = NewSnapshot {
        digest,
        created_time: crate::now_rfc3339(),
        files: files
            .iter()
            .map(|f| NewModelFile {
                path: f.path.clone(),
                size: f.blob.size(),
                digest: f.blob.digest().to_owned(),
                mode: f.mode,
            })
            .collect(),
    };
    let stored = state.store.insert_snapshot(new).await?;
    drop(files);
    Ok(stored)
}

/// A snapshot with its files.
#[utoipa::path(get, path = "/v1/snapshots/{id}", tag = "snapshots",
    params(("id" = String, Path, description = "`sha256:<hex>`")),
    responses((status = 200, body = Snapshot), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn show_snapshot(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Snapshot>, ApiError> {
    let (mut snapshot, files) = state.store.snapshot(&id).await?;
    snapshot.files = Some(files.into_iter().map(|f| f.file).collect());
    Ok(Json(snapshot))
}
