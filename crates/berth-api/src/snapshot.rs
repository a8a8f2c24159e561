//! Source snapshots: content-addressed uploads of a source directory.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ModelFile;

/// An uploaded source directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// `sha256:<hex>` of the manifest: one `<hex>  <path>` line per file, sorted.
    pub id: String,
    /// Total bytes.
    pub size: u64,
    /// Number of files.
    pub file_count: u64,
    /// RFC 3339 time of the first upload.
    pub created_time: String,
    /// The files (on `GET`, and on upload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<ModelFile>>,
}
