//! A JSON body extractor whose rejections use the API's error format.

use axum::extract::{FromRequest, Request};
use axum::http::header;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest JSON body a management call accepts.
const MAX_JSON_BYTES: usize = 4 << 20;

/// Like `axum::Json`, but a bad body answers with our `{code, message}` body that
/// names the field and the problem.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let is_json = content_type
            .split(';')
            .next()
            .map(|mime| {
                let mime = mime.trim();
                mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body must be JSON with `Content-Type: application/json`, not `{content_type}`"
            )));
        }
        let too_large = || ApiError::PayloadTooLarge {
            limit: MAX_JSON_BYTES as u64,
            flag: None,
        };
        // Refused before a byte of the body is read when the length says so,
        // and cut off at the limit when it does not (chunked bodies).
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_JSON_BYTES as u64) {
            return Err(too_large());
        }
        let mut stream = req.into_body().into_data_stream();
        let mut bytes = Vec::with_capacity(declared.unwrap_or(0) as usize);
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::invalid(format!("the body could not be read: {e}")))?;
            if bytes.len() + chunk.len() > MAX_JSON_BYTES {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses JSON, naming the field and position of the first problem.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::invalid(format!(
            "the JSON body is invalid at line {} column {}: {}",
            e.line(),
            e.column(),
            e
        ))
    })
}
