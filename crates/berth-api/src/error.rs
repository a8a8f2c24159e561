//! The error body every failed `/v1` call returns, and its stable codes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Stable, snake_case error codes. Clients branch on these, never on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No or a wrong workspace token.
    Unauthenticated,
    /// Authenticated, but refused: a web-console change without its CSRF token or from another origin.
    Forbidden,
    /// The request is malformed or a field breaks a rule.
    InvalidArgument,
    /// The named resource does not exist.
    NotFound,
    /// The resource exists already, or another operation holds it.
    Conflict,
    /// A precondition does not hold (for example a model a service uses).
    PreconditionFailed,
    /// The request body is larger than the server accepts.
    PayloadTooLarge,
    /// The content type of the request is not one the route accepts.
    UnsupportedMediaType,
    /// The upload ended before it was complete.
    UploadIncomplete,
    /// The server is shutting down or not ready.
    Unavailable,
    /// The resources asked for (GPUs) are not free on this server.
    Unschedulable,
    /// The server's disk is full.
    InsufficientStorage,
    /// Anything else; the server log has the details.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::InvalidArgument => "invalid_argument",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::PreconditionFailed => "precondition_failed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::UploadIncomplete => "upload_incomplete",
            Self::Unavailable => "unavailable",
            Self::Unschedulable => "unschedulable",
            Self::InsufficientStorage => "insufficient_storage",
            Self::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Body of every error answer of the management API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// One or more full sentences saying what is wrong.
    pub message: String,
    /// Every individual problem, when validation found several.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    /// What to do about it, when there is something to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}
