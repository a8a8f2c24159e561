//! Streaming model registration: `metadata` part, then `content` part, hashed on
//! the way to disk and never held whole in memory.
//!
//! The work runs in its own task so that a client hanging up cannot cancel it
//! half-way: every exit path either commits the model row or removes what it
//! wrote (temporary files, and blobs no other model references).

use axum::extract::Multipart;
use axum::extract::multipart::Field;
use berth_api::{Model, ModelKind, RegisterModelMetadata};
use tokio::io::AsyncWriteExt;

use super::AppState;
use super::json::parse_json;
use crate::archive::{ArchiveError, ArchiveLimits, ingest_tar};
use crate::blobs::{BlobError, BlobPin};
use crate::error::ApiError;
use crate::store::{NewModel, NewModelFile};

/// Largest `metadata` part.
const MAX_METADATA_BYTES: usize = 1 << 20;

/// Reads the multipart upload and registers the model. Digests of the blobs it
/// publishes are appended to `published` so that a failure can release them.
pub async fn register(
    state: &AppState,
    mut multipart: Multipart,
    published: &mut Vec<String>,
) -> Result<Model, ApiError> {
    let metadata = read_metadata(&mut multipart).await?;
    let kind = metadata.kind.unwrap_or(ModelKind::File);
    let mut content = next_field(&mut multipart)
        .await?
        .ok_or_else(|| ApiError::invalid("the upload has no `content` part: send the model file (or a tar of the folder) after `metadata`"))?;
    if content.name() != Some("content") {
        return Err(ApiError::invalid(format!(
            "unexpected part `{}` after `metadata`: the second part must be `content`",
            content.name().unwrap_or("")
        )));
    }
    let limit = state.config.max_upload_bytes;
    let files: Vec<(String, u32, BlobPin)> = match kind {
        ModelKind::File => {
            let mut writer = state.blobs.writer(limit).await.map_err(blob_error)?;
            while let Some(chunk) = content.chunk().await.map_err(incomplete)? {
                if let Err(e) = writer.write(&chunk).await {
                    drop(writer);
                    drain(&mut content).await;
                    return Err(blob_error(e));
                }
            }
            let pin = writer.finish().await.map_err(blob_error)?;
            published.push(pin.digest().to_owned());
            vec![(metadata.asset_name.clone(), 0o644, pin)]
        }
        ModelKind::Folder => receive_folder(state, &mut content, limit, published).await?,
    };
    drop(content);
    if next_field(&mut multipart).await?.is_some() {
        return Err(ApiError::invalid(
            "the upload has parts after `content`: send exactly `metadata` then `content`",
        ));
    }
    let content_digest = match kind {
        ModelKind::File => files[0].2.digest().to_owned(),
        ModelKind::Folder => manifest_digest(&files),
    };
    let new = NewModel {
        name: metadata.name,
        kind,
        asset_name: metadata.asset_name,
        description: metadata.description.filter(|d| !d.is_empty()),
        tags: metadata.tags,
        properties: metadata.properties,
        framework: metadata.framework,
        framework_version: metadata.framework_version,
        experiment_name: metadata.experiment_name,
        run_id: metadata.run_id,
        content_digest,
        created_time: crate::now_rfc3339(),
        created_by: "workspace-token".into(),
        files: files
            .iter()
            .map(|(path, mode, pin)| NewModelFile {
                path: path.clone(),
                size: pin.size(),
                digest: pin.digest().to_owned(),
                mode: *mode,
            })
            .collect(),
    };
    // Emits `model.registered` and starts the rollouts of `name@latest` followers.
    let model = state.follow.register(new).await?;
    // The row now references the blobs; the pins may go.
    drop(files);
    Ok(model)
}

/// Removes blobs an aborted registration published, unless others use them.
pub async fn release(state: &AppState, digests: Vec<String>) {
    if !digests.is_empty() {
        state.blobs.collect(&digests, state.store.as_ref()).await;
    }
}

async fn next_field<'a>(multipart: &'a mut Multipart) -> Result<Option<Field<'a>>, ApiError> {
    multipart.next_field().await.map_err(incomplete)
}

async fn read_metadata(multipart: &mut Multipart) -> Result<RegisterModelMetadata, ApiError> {
    let mut field = next_field(multipart).await?.ok_or_else(|| {
        ApiError::invalid("the upload is empty: send a `metadata` part, then a `content` part")
    })?;
    if field.name() != Some("metadata") {
        return Err(ApiError::invalid(format!(
            "the first part is `{}`: it must be `metadata` (JSON), followed by `content`",
            field.name().unwrap_or("")
        )));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(incomplete)? {
        if bytes.len() + chunk.len() > MAX_METADATA_BYTES {
            return Err(ApiError::invalid(format!(
                "the `metadata` part is larger than {MAX_METADATA_BYTES} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    let metadata: RegisterModelMetadata = parse_json(&bytes)?;
    let problems = check_metadata(&metadata);
    if problems.is_empty() {
        Ok(metadata)
    } else {
        Err(ApiError::Invalid(problems))
    }
}

/// Every rule the metadata breaks.
pub fn check_metadata(metadata: &RegisterModelMetadata) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = berth_api::names::check_model_name(&metadata.name) {
        problems.push(e);
    }
    let asset = metadata.asset_name.as_str();
    if asset.is_empty() || asset == "." || asset == ".." || asset.contains(['/', '\\', '\0']) {
        problems.push(format!(
            "`assetName` `{asset}` is invalid: it is the basename of the registered file or folder, without `/`"
        ));
    }
    if asset.len() > berth_api::names::MAX_ASSET_NAME_BYTES {
        problems.push(format!(
            "`assetName` is {} bytes: at most {} are allowed",
            asset.len(),
            berth_api::names::MAX_ASSET_NAME_BYTES
        ));
    }
    problems.extend(berth_api::names::check_key_values("tags", &metadata.tags));
    problems.extend(berth_api::names::check_key_values(
        "properties",
        &metadata.properties,
    ));
    if metadata.framework_version.is_some() && metadata.framework.is_none() {
        problems.push(
            "`frameworkVersion` needs `framework`: name the framework (for example `ScikitLearn`) too".into(),
        );
    }
    for (what, map) in [("tag", &metadata.tags), ("property", &metadata.properties)] {
        if map.keys().any(|k| k.is_empty()) {
            problems.push(format!(
                "a {what} has an empty key: every {what} needs a key"
            ));
        }
    }
    problems
}

async fn receive_folder(
    state: &AppState,
    content: &mut Field<'_>,
    limit: u64,
    published: &mut Vec<String>,
) -> Result<Vec<(String, u32, BlobPin)>, ApiError> {
    let limits = ArchiveLimits {
        max_bytes: limit,
        max_files: state.config.max_upload_files,
    };
    let flag = Some("--max-upload-bytes");
    match receive_tar(state, content, limits, flag, published).await? {
        Ok(files) => Ok(files
            .into_iter()
            .map(|f| (f.path, f.mode, f.blob))
            .collect()),
        Err(ArchiveError::TooLarge { limit }) => Err(ApiError::PayloadTooLarge { limit, flag }),
        Err(ArchiveError::Blob(e)) => Err(blob_error(e)),
        Err(other) => Err(ApiError::invalid(other.to_string())),
    }
}

/// Spools a tar stream to a temporary file (refusing it with 413 once it passes
/// `limits.max_bytes` plus tar framing), then stores its files as blobs. The
/// outer error is the transfer's; the inner result is the archive's, for the
/// caller to word. Digests of published blobs go to `published`.
pub(super) async fn receive_tar<S, E>(
    state: &AppState,
    mut stream: S,
    limits: ArchiveLimits,
    flag: Option<&'static str>,
    published: &mut Vec<String>,
) -> Result<Result<Vec<crate::archive::ArchiveFile>, ArchiveError>, ApiError>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    use futures_util::StreamExt;
    let tar_path = state.blobs.temp_path();
    let _guard = RemoveOnDrop(tar_path.clone());
    let file = tokio::fs::File::create(&tar_path)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
    // Tar framing adds headers and padding on top of the files themselves.
    let tar_limit = limits
        .max_bytes
        .saturating_add(limits.max_bytes / 8)
        .saturating_add(1 << 20);
    let mut received: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::UploadIncomplete(format!("the upload ended before it was complete ({e})"))
        })?;
        received += chunk.len() as u64;
        if received > tar_limit {
            drain(stream).await;
            return Err(ApiError::PayloadTooLarge {
                limit: limits.max_bytes,
                flag,
            });
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::internal(&e))?;
    }
    file.flush().await.map_err(|e| ApiError::internal(&e))?;
    drop(file);
    let blobs = state.blobs.clone();
    let (ingested, digests) = tokio::task::spawn_blocking(move || {
        let mut digests = Vec::new();
        let ingested = ingest_tar(&tar_path, &blobs, limits, &mut digests);
        (ingested, digests)
    })
    .await
    .map_err(|e| ApiError::internal(&e))?;
    published.extend(digests);
    Ok(ingested)
}

fn manifest_digest(files: &[(String, u32, BlobPin)]) -> String {
    crate::archive::manifest_digest(
        files
            .iter()
            .map(|(path, _, pin)| (path.as_str(), pin.digest())),
    )
}

/// How much of a refused upload is read and discarded so that the client, still
/// sending, receives the answer instead of a reset connection.
const DRAIN_BYTES: u64 = 16 << 20;
/// How long a refused upload is drained at most.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads and discards the rest of a refused request body, within bounds.
pub async fn drain<S, E>(body: S)
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
{
    use futures_util::StreamExt;
    let mut body = body;
    let mut read = 0u64;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = body.next().await {
            read += chunk.len() as u64;
            if read > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn blob_error(err: BlobError) -> ApiError {
    match err {
        BlobError::TooLarge { limit } => ApiError::PayloadTooLarge {
            limit,
            flag: Some("--max-upload-bytes"),
        },
        other => ApiError::internal(&other),
    }
}

fn incomplete(err: axum::extract::multipart::MultipartError) -> ApiError {
    let text = err.body_text();
    if text.contains("length limit") {
        return ApiError::invalid(text);
    }
    ApiError::UploadIncomplete(format!("the upload ended before it was complete ({text})"))
}
