//! Laying out a revision on disk, the way Azure ML lays out a container:
//!
//! ```text
//! <data>/services/<service>/r<N>/app/              AML_APP_ROOT, the worker's cwd
//!     <source dir name>/...                        the snapshot (copied: user code may write)
//!     azureml-models/<model>/<version>/<asset>     models (read-only; see below)
//! ```
//!
//! Every blob is checked against its digest as it is laid out (a mismatch fails the lay-out and
//! is logged as corruption). Models are hard links into the blob store only when the sandbox
//! keeps workers from writing them (`link_models`); otherwise they are copies, so a worker that
//! can `chmod` its files can never reach the blob store.
//!
//! A revision is built in `r<N>.partial` and renamed when complete, so a
//! directory named `r<N>` is always whole and can be reused after a restart.

use std::path::{Path, PathBuf};

use berth_api::{ModelKind, ServiceSpec};

use crate::archive::safe_relative_path;
use crate::blobs::BlobStore;
use crate::store::{StoreError, StoredFile};

/// A revision's folders.
#[derive(Debug, Clone)]
pub struct RevisionDir {
    /// `AML_APP_ROOT`.
    pub app: PathBuf,
    /// `AZUREML_MODEL_DIR`.
    pub model_dir: PathBuf,
}

/// Why a revision could not be laid out.
#[derive(Debug, thiserror::Error)]
pub enum MaterialiseError {
    /// Reading metadata failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file could not be written.
    #[error("{step} `{}` failed: {source}", path.display())]
    Io {
        /// What was being done.
        step: &'static str,
        /// Where.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A stored path is unsafe (never expected: paths are checked on upload).
    #[error("stored path `{0}` is not a safe relative path")]
    UnsafePath(String),
}

fn io(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> MaterialiseError {
    let path = path.to_owned();
    move |source| MaterialiseError::Io { step, path, source }
}

/// Content to lay out, gathered from the store before touching the disk.
pub struct RevisionContent {
    /// `(name, version, kind, asset name, files)` per model.
    pub models: Vec<(String, u32, ModelKind, String, Vec<StoredFile>)>,
    /// Snapshot files.
    pub source: Vec<StoredFile>,
}

/// The entry script's path relative to the app root.
pub fn entry_script(spec: &ServiceSpec) -> String {
    match &spec.inference.source_directory_name {
        Some(source) => format!("{source}/{}", spec.inference.entry_script),
        None => spec.inference.entry_script.clone(),
    }
}

/// The variables a revision's worker sees that do not depend on where it is
/// laid out: the environment's, then the service's (`AZUREML_ENTRY_SCRIPT`,
/// `SERVICE_NAME`, ...).
pub fn worker_variables(
    service: &str,
    revision: u32,
    spec: &ServiceSpec,
    variables: &std::collections::BTreeMap<String, String>,
    workspace_name: &str,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = variables
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.extend([
        ("AZUREML_ENTRY_SCRIPT".to_owned(), entry_script(spec)),
        ("SERVICE_NAME".to_owned(), service.to_owned()),
        ("SERVICE_VERSION".to_owned(), revision.to_string()),
        (
            "SERVICE_PATH_PREFIX".to_owned(),
            format!("api/v1/service/{service}"),
        ),
        ("WORKSPACE_NAME".to_owned(), workspace_name.to_owned()),
        // The gateway enforces scoringTimeoutMs and recycles the replica.
        ("SCORING_TIMEOUT_MS".to_owned(), "0".to_owned()),
    ]);
    if let Some(source) = &spec.inference.source_directory_name {
        env.push(("AZUREML_SOURCE_DIRECTORY".to_owned(), source.clone()));
    }
    env
}

/// The variables naming a revision's folders (`AML_APP_ROOT`, `AZUREML_MODEL_DIR`).
pub fn layout_variables(dir: &RevisionDir) -> [(String, String); 2] {
    [
        ("AML_APP_ROOT".to_owned(), dir.app.display().to_string()),
        (
            "AZUREML_MODEL_DIR".to_owned(),
            dir.model_dir.display().to_string(),
        ),
    ]
}

/// Where revision `number` of `service` lives.
pub fn revision_root(data: &Path, service: &str, number: u32) -> PathBuf {
    data.join("services")
        .join(service)
        .join(format!("r{number}"))
}

/// The revision's folders, creating them unless they exist whole already.
pub fn materialise(
    root: &Path,
    spec: &ServiceSpec,
    content: &RevisionContent,
    blobs: &BlobStore,
    link_models: bool,
) -> Result<RevisionDir, MaterialiseError> {
    let app = root.join("app");
    let models_root = app.join("azureml-models");
    let model_dir = match spec.models.as_slice() {
        [only] => match only.rsplit_once(':') {
            Some((name, version)) => models_root.join(name).join(version),
            None => models_root.clone(),
        },
        _ => models_root.clone(),
    };
    let dir = RevisionDir { app, model_dir };
    if root.join(".complete").exists() {
        return Ok(dir);
    }
    let partial = root.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io("remove", &partial))?;
    }
    let staged_app = partial.join("app");
    let source_root = match &spec.inference.source_directory_name {
        // Checked when the revision was written; checked again so that a row
        // written by an older version cannot lay out outside the revision.
        Some(name) if berth_api::names::check_source_directory_name(name).is_err() => {
            return Err(MaterialiseError::UnsafePath(name.clone()));
        }
        Some(name) => staged_app.join(name),
        None => staged_app.clone(),
    };
    std::fs::create_dir_all(&source_root).map_err(io("create", &source_root))?;
    for file in &content.source {
        let target = place(&source_root, &file.file.path)?;
        crate::blobs::verify::copy_checked(
            &blobs.path(&file.file.digest),
            &file.file.digest,
            &target,
        )
        .map_err(io("copy", &target))?;
        set_mode(&target, file.mode | 0o200)?;
    }
    let staged_models = staged_app.join("azureml-models");
    std::fs::create_dir_all(&staged_models).map_err(io("create", &staged_models))?;
    for (name, version, kind, asset, files) in &content.models {
        let version_dir = staged_models.join(name).join(version.to_string());
        std::fs::create_dir_all(&version_dir).map_err(io("create", &version_dir))?;
        for file in files {
            let target = match kind {
                ModelKind::File => version_dir.join(asset),
                ModelKind::Folder => place(&version_dir.join(asset), &file.file.path)?,
            };
            link_or_copy(
                &blobs.path(&file.file.digest),
                &file.file.digest,
                &target,
                link_models,
            )?;
        }
    }
    std::fs::write(partial.join(".complete"), b"").map_err(io("mark", &partial))?;
    if root.exists() {
        std::fs::remove_dir_all(root).map_err(io("remove stale", root))?;
    }
    std::fs::rename(&partial, root).map_err(io("publish", root))?;
    Ok(dir)
}

/// The target path of a stored relative path under `base`, creating parents.
fn place(base: &Path, relative: &str) -> Result<PathBuf, MaterialiseError> {
    let clean = safe_relative_path(Path::new(relative))
        .ok()
        .flatten()
        .ok_or_else(|| MaterialiseError::UnsafePath(relative.to_owned()))?;
    let target = base.join(clean);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(io("create", parent))?;
    }
    Ok(target)
}

/// Checks a blob, then hard-links it (read-only, shared) when `link` and on the same file
/// system, else copies it (read-only).
fn link_or_copy(
    blob: &Path,
    digest: &str,
    target: &Path,
    link: bool,
) -> Result<(), MaterialiseError> {
    if link {
        crate::blobs::verify::check_file(blob, digest).map_err(io("verify", blob))?;
        if std::fs::hard_link(blob, target).is_ok() {
            return Ok(());
        }
    }
    crate::blobs::verify::copy_checked(blob, digest, target).map_err(io("copy", target))?;
    set_mode(target, 0o444)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), MaterialiseError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o777))
        .map_err(io("set mode of", path))
}
