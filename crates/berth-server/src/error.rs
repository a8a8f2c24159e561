//! The one table from errors to HTTP answers of the management API.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_api::{ErrorBody, ErrorCode};

use crate::store::StoreError;

/// Every way a management call can fail, as the client sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing or wrong workspace token.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated, but the request is refused (a console change without CSRF proof).
    #[error("{0}")]
    Forbidden(String),
    /// One or more rules broken; each entry is a full sentence.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The route exists, the method does not.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A precondition does not hold.
    #[error("{message}")]
    PreconditionFailed {
        /// What is wrong.
        message: String,
        /// What to do.
        hint: String,
    },
    /// The change conflicts with the current state.
    #[error("{message}")]
    Conflict {
        /// What conflicts.
        message: String,
        /// What to do.
        hint: String,
    },
    /// The resources asked for are not free (GPUs).
    #[error("{0}")]
    Unschedulable(String),
    /// Upload over the limit.
    #[error("the upload is larger than this server's limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit.
        limit: u64,
        /// The server flag that raises it, if any.
        flag: Option<&'static str>,
    },
    /// Wrong content type.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body ended early.
    #[error("{0}")]
    UploadIncomplete(String),
    /// The disk is full.
    #[error("the server's disk is full: writing `{}` failed with {} bytes free", path.display(), free.map_or_else(|| "unknown".to_owned(), |f| f.to_string()))]
    InsufficientStorage {
        /// Where the write failed.
        path: std::path::PathBuf,
        /// Bytes free there, when known.
        free: Option<u64>,
    },
    /// Anything unexpected; the detail is logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// Resources that cannot be given (the message names request, free, configured, fix).
    pub fn unschedulable(err: crate::compute::local::limits::LimitsError) -> Self {
        Self::Unschedulable(err.to_string())
    }

    /// One invalid-argument problem.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(vec![message.into()])
    }

    /// An unexpected failure: logs `err` with its causes, answers a generic 500.
    pub fn internal(err: &(dyn std::error::Error + 'static)) -> Self {
        if let Some(path) = crate::disk::full_at(err) {
            let free = crate::disk::free_bytes(&path);
            crate::disk::warn_full(&path, free);
            return Self::InsufficientStorage { path, free };
        }
        let mut chain = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        tracing::error!(error = %chain, "request failed");
        Self::Internal(chain)
    }

    fn parts(&self) -> (StatusCode, ErrorCode, Option<String>) {
        match self {
            Self::Unauthenticated(_) => (
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthenticated,
                Some("send the workspace token as `Authorization: Bearer <token>`; `berth server` writes it to `config.json` in its data directory".into()),
            ),
            Self::Forbidden(_) => (
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                Some("changes from the web console must come from the console page itself; reload it (or sign in again) and retry".into()),
            ),
            Self::Invalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument, None),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound, None),
            Self::MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::InvalidArgument,
                None,
            ),
            Self::PreconditionFailed { hint, .. } => (
                StatusCode::PRECONDITION_FAILED,
                ErrorCode::PreconditionFailed,
                Some(hint.clone()),
            ),
            Self::Conflict { hint, .. } => (
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
                Some(hint.clone()),
            ),
            Self::Unschedulable(_) => (
                StatusCode::CONFLICT,
                ErrorCode::Unschedulable,
                Some("`berth service show` lists the GPUs each service holds; the server's `--gpus` sets the pool".into()),
            ),
            Self::PayloadTooLarge { flag, .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                flag.map(|flag| format!("the server's operator can raise the limit with `berth server {flag}`")),
            ),
            Self::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                None,
            ),
            Self::UploadIncomplete(_) => (
                StatusCode::BAD_REQUEST,
                ErrorCode::UploadIncomplete,
                Some("nothing was registered; send the upload again".into()),
            ),
            Self::InsufficientStorage { .. } => (
                StatusCode::INSUFFICIENT_STORAGE,
                ErrorCode::InsufficientStorage,
                Some("free space on the server's data disk, then send the request again".into()),
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                Some("the server log has the details".into()),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, hint) = self.parts();
        let (message, details) = match self {
            Self::Invalid(problems) if problems.len() > 1 => (
                format!(
                    "The request has {} problems: {}.",
                    problems.len(),
                    problems.join("; ")
                ),
                problems,
            ),
            Self::Invalid(mut problems) => {
                (sentence(&problems.pop().unwrap_or_default()), Vec::new())
            }
            Self::Internal(_) => ("Something went wrong inside the server.".into(), Vec::new()),
            other => (sentence(&other.to_string()), Vec::new()),
        };
        let body = ErrorBody {
            code,
            message,
            details,
            hint,
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"berth\""),
            );
        }
        response
    }
}

/// Capitalises the first letter and ends with a full stop.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::ModelNotFound(id) => Self::NotFound(format!(
                "model `{id}` not found; `berth model list` shows the registered models"
            )),
            StoreError::ModelInUse { id, services } => Self::PreconditionFailed {
                message: format!(
                    "model `{id}` cannot be deleted: it is used by service(s) `{}`",
                    services.join("`, `")
                ),
                hint: "update or delete those services first, then delete the model".into(),
            },
            StoreError::ModelAliased { id, aliases } => Self::PreconditionFailed {
                message: format!(
                    "model `{id}` cannot be deleted: alias(es) `{}` point at it",
                    aliases.join("`, `")
                ),
                hint: format!(
                    "move the alias to another version (`berth model alias set NAME ALIAS VERSION`) or remove it (`berth model alias remove NAME ALIAS`): {}",
                    aliases.join(", ")
                ),
            },
            StoreError::AliasNotFound { name, alias } => Self::NotFound(format!(
                "alias `{name}@{alias}` not found; `berth model alias list {name}` shows the aliases of `{name}`"
            )),
            StoreError::EnvironmentNotFound(id) => Self::NotFound(format!(
                "environment `{id}` not found; `berth environment list` shows the registered environments"
            )),
            StoreError::SnapshotNotFound(id) => {
                Self::NotFound(format!("snapshot `{id}` not found"))
            }
            StoreError::ServiceNotFound(name) => Self::NotFound(format!(
                "service `{name}` not found; `berth service list` shows the services"
            )),
            StoreError::OperationNotFound(id) => Self::NotFound(format!("operation `{id}` not found")),
            StoreError::RevisionNotFound { service, revision } => Self::NotFound(format!(
                "revision {revision} of service `{service}` not found"
            )),
            StoreError::ServiceExists(name) => Self::Conflict {
                message: format!("service `{name}` exists already"),
                hint: "pick another name, or pass `overwrite` (`--overwrite`) to roll it to a new revision".into(),
            },
            StoreError::OperationInProgress { service, operation, kind } => Self::Conflict {
                message: format!(
                    "service `{service}` has operation `{operation}` ({kind}) in progress; one change at a time"
                ),
                hint: format!("wait for it (`berth service wait -n {service}`), then send the change again"),
            },
            StoreError::Moved { service, now } => Self::Conflict {
                message: format!(
                    "service `{service}` changed while this change was prepared (it now serves revision {})",
                    now.map(|n| n.to_string()).unwrap_or_else(|| "none".into())
                ),
                hint: "send the change again; it applies to the serving revision".into(),
            },
            StoreError::Invalid(problems) => Self::Invalid(problems),
            other => Self::internal(&other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_start_upper_and_end_with_a_stop() {
        assert_eq!(sentence("model `a` not found"), "Model `a` not found.");
        assert_eq!(sentence("Done."), "Done.");
    }

    #[test]
    fn every_kind_maps_to_its_status() {
        let cases = [
            (ApiError::Unauthenticated("x".into()), 401),
            (ApiError::Forbidden("x".into()), 403),
            (ApiError::invalid("x"), 400),
            (ApiError::NotFound("x".into()), 404),
            (
                ApiError::Conflict {
                    message: "x".into(),
                    hint: "y".into(),
                },
                409,
            ),
            (
                ApiError::PreconditionFailed {
                    message: "x".into(),
                    hint: "y".into(),
                },
                412,
            ),
            (
                ApiError::PayloadTooLarge {
                    limit: 1,
                    flag: None,
                },
                413,
            ),
            (ApiError::UnsupportedMediaType("x".into()), 415),
            (ApiError::UploadIncomplete("x".into()), 400),
            (ApiError::Internal("secret detail".into()), 500),
            (
                ApiError::internal(&crate::blobs::BlobError::Io {
                    step: "write",
                    path: "/data/blobs/tmp/upload".into(),
                    source: std::io::Error::from_raw_os_error(28),
                }),
                507,
            ),
        ];
        for (err, status) in cases {
            assert_eq!(err.into_response().status().as_u16(), status);
        }
    }
}
