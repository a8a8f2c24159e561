//! Workspace identity and the client configuration file.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /v1/workspace`: who this server is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceInfo {
    /// Workspace name, written into model metadata files.
    pub name: String,
    /// Version of the Berth server.
    pub server_version: String,
    /// Largest upload the server accepts, in bytes.
    pub max_upload_bytes: u64,
    /// Resource group reported to Azure ML v1 code (`--workspace-resource-group`).
    #[serde(default)]
    pub resource_group: String,
    /// Location reported to Azure ML v1 code (`--workspace-location`).
    #[serde(default)]
    pub location: String,
    /// Subscription id reported to Azure ML v1 code (`--workspace-subscription-id`).
    #[serde(default)]
    pub subscription_id: String,
}

/// `config.json` as the server writes it for the CLI and SDK (mode 0600).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientConfig {
    /// Base URL of the management API, for example `http://127.0.0.1:8080`.
    pub endpoint: String,
    /// Workspace token sent as `Authorization: Bearer`.
    pub token: String,
    /// Workspace name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_name: Option<String>,
}
