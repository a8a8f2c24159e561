//! Registered models: what a registration sends, what the registry answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Whether a model was registered from one file or from a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ModelKind {
    /// One file, uploaded as is.
    File,
    /// A folder, uploaded as a tar archive and stored file by file.
    Folder,
}

impl ModelKind {
    /// The kind as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Folder => "folder",
        }
    }
}

/// The `metadata` part of a `POST /v1/models` multipart upload. It must come
/// before the `content` part.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterModelMetadata {
    /// Model name; the registry assigns the version.
    pub name: String,
    /// `file` when `content` is the file itself, `folder` when it is a tar archive
    /// of the folder.
    pub kind: Option<ModelKind>,
    /// The basename of the registered path (`model.pkl`, `my_model`): scoring code
    /// finds the model under this name in `AZUREML_MODEL_DIR`.
    pub asset_name: String,
    /// Free-form description.
    #[serde(default)]
    pub description: Option<String>,
    /// Mutable labels.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Add-only labels.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Framework, for example `ScikitLearn`, `PyTorch`, `Onnx`, `Custom`.
    #[serde(default)]
    pub framework: Option<String>,
    /// Framework version; needs `framework`.
    #[serde(default)]
    pub framework_version: Option<String>,
    /// Experiment the model came from.
    #[serde(default)]
    pub experiment_name: Option<String>,
    /// Run the model came from.
    #[serde(default)]
    pub run_id: Option<String>,
}

/// One file of a registered model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelFile {
    /// Path relative to the model's asset (for a file model: the asset name).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// `sha256:<hex>` digest of the content.
    pub digest: String,
}

/// A registered model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Model {
    /// `name:version`.
    pub id: String,
    /// Model name.
    pub name: String,
    /// Version, from 1, assigned by the registry.
    pub version: u32,
    /// File or folder.
    pub kind: ModelKind,
    /// Basename of the registered path.
    pub asset_name: String,
    /// Description, if any.
    pub description: Option<String>,
    /// Mutable labels.
    pub tags: BTreeMap<String, String>,
    /// Add-only labels.
    pub properties: BTreeMap<String, String>,
    /// Framework, if given.
    pub framework: Option<String>,
    /// Framework version, if given.
    pub framework_version: Option<String>,
    /// Experiment, if given.
    pub experiment_name: Option<String>,
    /// Run, if given.
    pub run_id: Option<String>,
    /// Total size of all files in bytes.
    pub size: u64,
    /// Number of files.
    pub file_count: u64,
    /// `sha256:<hex>`: of the file, or of the folder's manifest.
    pub content_digest: String,
    /// RFC 3339 UTC time of registration.
    pub created_time: String,
    /// Who registered it (the workspace token's principal).
    pub created_by: String,
    /// Services whose revisions use this version.
    #[serde(default)]
    pub used_by: Vec<String>,
    /// The files, present on `show`, absent in lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<ModelFile>>,
    /// The aliases of this model name: alias → version.
    #[serde(default)]
    pub aliases: BTreeMap<String, u32>,
    /// On the answer to a registration: the services following `name@latest`
    /// and what happens to each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub followers: Vec<FollowerPlan>,
}

/// `PUT /v1/models/{name}/aliases/{alias}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetAliasRequest {
    /// The version the alias points at.
    pub version: u32,
}

/// An alias: a movable name for one version of a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelAlias {
    /// Model name.
    pub name: String,
    /// Alias name.
    pub alias: String,
    /// The version it points at.
    pub version: u32,
    /// RFC 3339 time of the last move.
    pub updated_time: String,
}

/// `GET /v1/models/{name}/aliases` (and `GET /v1/aliases`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelAliasList {
    /// By model name, then alias.
    pub value: Vec<ModelAlias>,
}

/// What a registration or an alias move does to one following service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum FollowerAction {
    /// An update operation to the new version was started.
    AutoRollout,
    /// The service is busy: the update starts when its operation ends.
    Queued,
    /// `followPolicy: manual`: `berth service update -n S --follow` applies it.
    UpdateAvailable,
    /// The new version was rolled back on this service before; it is not retried.
    Rejected,
    /// The service already serves the version.
    UpToDate,
    /// The update could not be started (see `message`).
    Failed,
}

/// One follower of a model reference and what happens to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FollowerPlan {
    /// Service.
    pub service: String,
    /// The reference it follows, e.g. `m@champion`.
    pub reference: String,
    /// The version it serves now.
    pub from: Option<u32>,
    /// The version the reference points at now.
    pub to: u32,
    /// What happens.
    pub action: FollowerAction,
    /// The update operation, when one was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Why the update could not be started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The answer to `PUT /v1/models/{name}/aliases/{alias}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AliasMoved {
    /// The alias as it is now.
    pub alias: ModelAlias,
    /// The version it pointed at before, if it existed.
    pub previous: Option<u32>,
    /// The services following it and what happens to each.
    pub followers: Vec<FollowerPlan>,
}

/// `GET /v1/models` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelList {
    /// Matching model versions, newest registration first.
    pub value: Vec<Model>,
}

/// `PATCH /v1/models/{name}/versions/{version}`: all fields optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateModelRequest {
    /// New description (an empty string clears it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Replaces all tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// Tags to add or change.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add_tags: BTreeMap<String, String>,
    /// Tag keys to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_tags: Vec<String>,
    /// Properties to add; existing keys are refused (properties are add-only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add_properties: BTreeMap<String, String>,
}
