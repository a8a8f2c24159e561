//! Typed client of the management API. Every method is one REST call; errors
//! carry the server's `{code, message, hint}` body.

use std::path::Path;

use berth_api::{
    CreateServiceRequest, CreateWebhookRequest, CreatedWebhook, Environment, EnvironmentList,
    ErrorBody, Event, EventList, MirrorDiffList, MirrorStatus, Model, ModelList, Operation,
    OperationAccepted, RegenerateKeyRequest, RegisterEnvironmentRequest,
    RegisterEnvironmentResponse, RegisterModelMetadata, Revision, RevisionList, RollbackRequest,
    RolloutStatus, Service, ServiceKeys, ServiceList, ServiceLogs, ServiceToken, SetMirrorRequest,
    SetTrafficRequest, Snapshot, StudioCode, Traffic, UpdateModelRequest, WebhookList,
    WorkspaceInfo,
};
use futures_util::StreamExt;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;

use crate::workspace::Workspace;

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{}", body.message)]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// The server's error body.
        body: ErrorBody,
    },
    /// The server could not be reached.
    #[error("cannot reach the Berth server at {endpoint}")]
    Unreachable {
        /// The endpoint tried.
        endpoint: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered something that is not the API's JSON.
    #[error("unexpected answer from {endpoint} (HTTP {status}): {detail}")]
    Unexpected {
        /// The endpoint.
        endpoint: String,
        /// HTTP status.
        status: StatusCode,
        /// What was wrong.
        detail: String,
    },
    /// Reading or writing a local file failed.
    #[error("{step} `{path}` failed")]
    Local {
        /// What was being done.
        step: &'static str,
        /// Which file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl ClientError {
    /// The hint to print under the error, if any.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Api { body, .. } => body.hint.clone(),
            Self::Unreachable { .. } => Some(
                "is `berth server` running? `--endpoint` or config.json say where it listens"
                    .into(),
            ),
            _ => None,
        }
    }

    /// The API error code, when the server answered with one.
    pub fn code(&self) -> Option<berth_api::ErrorCode> {
        match self {
            Self::Api { body, .. } => Some(body.code),
            _ => None,
        }
    }
}

/// Result of client calls.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// The management API client.
pub struct Client {
    http: reqwest::Client,
    workspace: Workspace,
}

fn local(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ClientError {
    let path = path.display().to_string();
    move |source| ClientError::Local { step, path, source }
}

/// Percent-encodes one path segment.
fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Client {
    /// A client for `workspace`.
    pub fn new(workspace: Workspace) -> Self {
        Self {
            http: reqwest::Client::new(),
            workspace,
        }
    }

    /// A client for `workspace` trusting the CA certificate(s) in `ca_pem`
    /// (needed for `https://` endpoints: no system roots are trusted).
    pub fn with_ca(
        workspace: Workspace,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, crate::args::UsageError> {
        let Some(pem) = ca_pem else {
            return Ok(Self::new(workspace));
        };
        let bad = |e: reqwest::Error| crate::args::UsageError {
            message: format!("the CA certificate is not usable PEM: {e}"),
            hint: Some("pass the PEM file of the CA that signed the server's certificate".into()),
        };
        let mut builder = reqwest::Client::builder();
        for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(bad)? {
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(bad)?;
        Ok(Self { http, workspace })
    }

    /// The workspace this client talks to.
    pub fn workspace(&self) -> &Workspace {
        &self.workspace
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.workspace.endpoint))
            .bearer_auth(&self.workspace.token)
    }

    async fn send(&self, request: RequestBuilder) -> Result<Response> {
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                endpoint: self.workspace.endpoint.clone(),
                source,
            })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let bytes = response.bytes().await.unwrap_or_default();
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(ClientError::Api { status, body }),
            Err(_) => Err(ClientError::Unexpected {
                endpoint: self.workspace.endpoint.clone(),
                status,
                detail: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
            }),
        }
    }

    async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T> {
        let response = self.send(request).await?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|source| ClientError::Unreachable {
                endpoint: self.workspace.endpoint.clone(),
                source,
            })?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Unexpected {
            endpoint: self.workspace.endpoint.clone(),
            status,
            detail: e.to_string(),
        })
    }

    /// `POST /v1/environments`.
    pub async fn register_environment(
        &self,
        request: &RegisterEnvironmentRequest,
    ) -> Result<RegisterEnvironmentResponse> {
        self.json(self.request(Method::POST, "/v1/environments").json(request))
            .await
    }

    /// `GET /v1/environments`.
    pub async fn list_environments(&self, query: &[(&str, String)]) -> Result<EnvironmentList> {
        self.json(self.request(Method::GET, "/v1/environments").query(query))
            .await
    }

    /// `GET /v1/computes`.
    pub async fn list_computes(&self) -> Result<berth_api::ComputeTargetList> {
        self.json(self.request(Method::GET, "/v1/computes")).await
    }

    /// `GET /v1/computes/{name}`.
    pub async fn compute(&self, name: &str) -> Result<berth_api::ComputeTarget> {
        let path = format!("/v1/computes/{}", segment(name));
        self.json(self.request(Method::GET, &path)).await
    }

    /// `PUT /v1/computes/{name}`: creates or attaches a target.
    pub async fn put_compute(
        &self,
        name: &str,
        request: &berth_api::PutComputeTargetRequest,
    ) -> Result<berth_api::ComputeTarget> {
        let path = format!("/v1/computes/{}", segment(name));
        self.json(self.request(Method::PUT, &path).json(request))
            .await
    }

    /// `DELETE /v1/computes/{name}`: deletes or detaches a target.
    pub async fn delete_compute(&self, name: &str) -> Result<()> {
        let path = format!("/v1/computes/{}", segment(name));
        self.send(self.request(Method::DELETE, &path)).await?;
        Ok(())
    }

    /// One environment version, or the newest.
    pub async fn environment(&self, name: &str, version: Option<u32>) -> Result<Environment> {
        let path = match version {
            Some(v) => format!("/v1/environments/{}/versions/{v}", segment(name)),
            None => format!("/v1/environments/{}", segment(name)),
        };
        self.json(self.request(Method::GET, &path)).await
    }

    /// Starts a build.
    pub async fn build_environment(&self, name: &str, version: u32) -> Result<Environment> {
        let path = format!(
            "/v1/environments/{}/versions/{version}/build",
            segment(name)
        );
        self.json(self.request(Method::POST, &path)).await
    }

    /// `POST /v1/snapshots`, streaming a tar archive from disk.
    pub async fn upload_snapshot(&self, archive: &Path) -> Result<Snapshot> {
        let file = tokio::fs::File::open(archive)
            .await
            .map_err(local("open", archive))?;
        let length = file
            .metadata()
            .await
            .map_err(local("read size of", archive))?
            .len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
            file,
            256 * 1024,
        ));
        self.json(
            self.request(Method::POST, "/v1/snapshots")
                .header(reqwest::header::CONTENT_TYPE, "application/x-tar")
                .header(reqwest::header::CONTENT_LENGTH, length)
                .body(body),
        )
        .await
    }

    /// `POST /v1/services`.
    pub async fn create_service(
        &self,
        request: &CreateServiceRequest,
    ) -> Result<OperationAccepted> {
        self.json(self.request(Method::POST, "/v1/services").json(request))
            .await
    }

    /// `GET /v1/services/{name}`.
    pub async fn service(&self, name: &str) -> Result<Service> {
        self.json(self.request(Method::GET, &format!("/v1/services/{}", segment(name))))
            .await
    }

    /// `GET /v1/services`.
    pub async fn list_services(&self) -> Result<ServiceList> {
        self.json(self.request(Method::GET, "/v1/services")).await
    }

    /// `DELETE /v1/services/{name}`.
    pub async fn delete_service(&self, name: &str) -> Result<OperationAccepted> {
        self.json(self.request(Method::DELETE, &format!("/v1/services/{}", segment(name))))
            .await
    }

    /// `GET /v1/services/{name}/keys`.
    pub async fn service_keys(&self, name: &str) -> Result<ServiceKeys> {
        self.json(self.request(Method::GET, &format!("/v1/services/{}/keys", segment(name))))
            .await
    }

    /// `GET /v1/services/{name}/logs`.
    pub async fn service_logs(
        &self,
        name: &str,
        tail: usize,
        init: bool,
        requests: bool,
    ) -> Result<ServiceLogs> {
        let path = format!("/v1/services/{}/logs", segment(name));
        let mut query = vec![("tail", tail.to_string()), ("init", init.to_string())];
        if requests {
            query.push(("requests", "true".to_owned()));
        }
        self.json(self.request(Method::GET, &path).query(&query))
            .await
    }

    /// Streams `GET /v1/services/{name}/logs?follow=true` to stdout until it ends.
    pub async fn follow_service_logs(&self, name: &str, tail: usize) -> Result<()> {
        use std::io::Write;
        let path = format!("/v1/services/{}/logs", segment(name));
        let response = self
            .send(
                self.request(Method::GET, &path)
                    .query(&[("tail", tail.to_string()), ("follow", "true".into())]),
            )
            .await?;
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| ClientError::Unreachable {
                endpoint: self.workspace.endpoint.clone(),
                source,
            })?;
            let mut out = std::io::stdout().lock();
            out.write_all(&chunk)
                .and_then(|()| out.flush())
                .map_err(local("write", Path::new("stdout")))?;
        }
        Ok(())
    }

    /// `GET /v1/events` with `query` pairs (`service`, `type`, `after`, `limit`).
    pub async fn events(&self, query: &[(&str, String)]) -> Result<EventList> {
        self.json(self.request(Method::GET, "/v1/events").query(query))
            .await
    }

    /// Streams `GET /v1/events?follow=true`, calling `on_event` per event until
    /// the server ends the stream or `on_event` fails.
    pub async fn follow_events(
        &self,
        query: &[(&str, String)],
        mut on_event: impl FnMut(Event) -> std::io::Result<()>,
    ) -> Result<()> {
        let response = self
            .send(
                self.request(Method::GET, "/v1/events")
                    .query(query)
                    .query(&[("follow", "true")]),
            )
            .await?;
        let status = response.status();
        let mut stream = response.bytes_stream();
        let mut pending: Vec<u8> = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| ClientError::Unreachable {
                endpoint: self.workspace.endpoint.clone(),
                source,
            })?;
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let event: Event =
                    serde_json::from_slice(&line).map_err(|e| ClientError::Unexpected {
                        endpoint: self.workspace.endpoint.clone(),
                        status,
                        detail: format!("an event line is not JSON: {e}"),
                    })?;
                on_event(event).map_err(local("write", Path::new("stdout")))?;
            }
        }
        Ok(())
    }

    /// `POST /v1/webhooks`.
    pub async fn create_webhook(&self, request: &CreateWebhookRequest) -> Result<CreatedWebhook> {
        self.json(self.request(Method::POST, "/v1/webhooks").json(request))
            .await
    }

    /// `GET /v1/webhooks`.
    pub async fn list_webhooks(&self) -> Result<WebhookList> {
        self.json(self.request(Method::GET, "/v1/webhooks")).await
    }

    /// `DELETE /v1/webhooks/{id}`.
    pub async fn delete_webhook(&self, id: &str) -> Result<()> {
        self.send(self.request(Method::DELETE, &format!("/v1/webhooks/{}", segment(id))))
            .await
            .map(|_| ())
    }

    /// `GET /v1/operations/{id}?offset=N`.
    pub async fn operation(&self, id: &str, offset: u64) -> Result<Operation> {
        self.json(
            self.request(Method::GET, &format!("/v1/operations/{}", segment(id)))
                .query(&[("offset", offset.to_string())]),
        )
        .await
    }

    /// Sends a scoring request; returns status, headers and body.
    pub async fn score(
        &self,
        uri: &str,
        key: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, bytes::Bytes)> {
        let mut request = self
            .http
            .post(uri)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                endpoint: uri.to_owned(),
                source,
            })?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|source| ClientError::Unreachable {
                endpoint: uri.to_owned(),
                source,
            })?;
        Ok((status, headers, bytes))
    }

    /// `PATCH /v1/services/{name}` with the changed fields.
    pub async fn update_service(
        &self,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<OperationAccepted> {
        self.json(
            self.request(Method::PATCH, &format!("/v1/services/{}", segment(name)))
                .json(patch),
        )
        .await
    }

    /// `POST /v1/services/{name}/regenerateKeys`.
    pub async fn regenerate_key(
        &self,
        name: &str,
        key_type: &str,
        key_value: Option<String>,
    ) -> Result<OperationAccepted> {
        self.json(
            self.request(
                Method::POST,
                &format!("/v1/services/{}/regenerateKeys", segment(name)),
            )
            .json(&RegenerateKeyRequest {
                key_type: key_type.to_owned(),
                key_value,
            }),
        )
        .await
    }

    /// `POST /v1/services/{name}/token`.
    pub async fn service_token(&self, name: &str) -> Result<ServiceToken> {
        self.json(self.request(
            Method::POST,
            &format!("/v1/services/{}/token", segment(name)),
        ))
        .await
    }

    /// `POST /v1/services/{name}/rollback`.
    pub async fn rollback_service(&self, name: &str, revision: u32) -> Result<OperationAccepted> {
        self.json(
            self.request(
                Method::POST,
                &format!("/v1/services/{}/rollback", segment(name)),
            )
            .json(&RollbackRequest { revision }),
        )
        .await
    }

    /// `POST /v1/services/{name}/redeploy`.
    pub async fn redeploy_service(&self, name: &str) -> Result<OperationAccepted> {
        self.json(self.request(
            Method::POST,
            &format!("/v1/services/{}/redeploy", segment(name)),
        ))
        .await
    }

    /// `GET /v1/services/{name}/revisions`.
    pub async fn revisions(&self, name: &str) -> Result<RevisionList> {
        self.json(self.request(
            Method::GET,
            &format!("/v1/services/{}/revisions", segment(name)),
        ))
        .await
    }

    /// `GET /v1/services/{name}/traffic`.
    pub async fn traffic(&self, name: &str) -> Result<Traffic> {
        self.json(self.request(
            Method::GET,
            &format!("/v1/services/{}/traffic", segment(name)),
        ))
        .await
    }

    /// `PUT /v1/services/{name}/traffic`: a hand-set split (an operation).
    pub async fn set_traffic(
        &self,
        name: &str,
        request: &SetTrafficRequest,
    ) -> Result<OperationAccepted> {
        self.json(
            self.request(
                Method::PUT,
                &format!("/v1/services/{}/traffic", segment(name)),
            )
            .json(request),
        )
        .await
    }

    /// `POST /v1/services/{name}/rollout/{action}` (`promote` or `abort`).
    pub async fn rollout_action(&self, name: &str, action: &str) -> Result<RolloutStatus> {
        self.json(self.request(
            Method::POST,
            &format!("/v1/services/{}/rollout/{action}", segment(name)),
        ))
        .await
    }

    /// `PUT /v1/services/{name}/mirror`.
    pub async fn set_mirror(&self, name: &str, request: &SetMirrorRequest) -> Result<MirrorStatus> {
        self.json(
            self.request(
                Method::PUT,
                &format!("/v1/services/{}/mirror", segment(name)),
            )
            .json(request),
        )
        .await
    }

    /// `DELETE /v1/services/{name}/mirror`.
    pub async fn delete_mirror(&self, name: &str) -> Result<()> {
        self.send(self.request(
            Method::DELETE,
            &format!("/v1/services/{}/mirror", segment(name)),
        ))
        .await
        .map(|_| ())
    }

    /// `GET /v1/services/{name}/mirror/diffs`.
    pub async fn mirror_diffs(&self, name: &str) -> Result<MirrorDiffList> {
        self.json(self.request(
            Method::GET,
            &format!("/v1/services/{}/mirror/diffs", segment(name)),
        ))
        .await
    }

    /// `POST /v1/services/{name}/revisions`: writes a revision (the PATCH body's
    /// fields) without serving it.
    pub async fn stage_revision(&self, name: &str, patch: &serde_json::Value) -> Result<Revision> {
        self.json(
            self.request(
                Method::POST,
                &format!("/v1/services/{}/revisions", segment(name)),
            )
            .json(patch),
        )
        .await
    }

    /// `POST /v1/studio/codes`: a one-time console sign-in link.
    pub async fn studio_code(&self) -> Result<StudioCode> {
        self.json(self.request(Method::POST, "/v1/studio/codes"))
            .await
    }

    /// `GET /v1/workspace`.
    pub async fn workspace_info(&self) -> Result<WorkspaceInfo> {
        self.json(self.request(Method::GET, "/v1/workspace")).await
    }

    /// `POST /v1/models`, streaming `content` (a file, or a tar of a folder) from disk.
    pub async fn register_model(
        &self,
        metadata: &RegisterModelMetadata,
        content: &Path,
    ) -> Result<Model> {
        let file = tokio::fs::File::open(content)
            .await
            .map_err(local("open", content))?;
        let length = file
            .metadata()
            .await
            .map_err(local("read size of", content))?
            .len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
            file,
            256 * 1024,
        ));
        let metadata_json = serde_json::to_string(metadata).unwrap_or_default();
        let metadata_part = reqwest::multipart::Part::text(metadata_json)
            .mime_str("application/json")
            .map_err(|source| ClientError::Unreachable {
                endpoint: self.workspace.endpoint.clone(),
                source,
            })?;
        let content_part = reqwest::multipart::Part::stream_with_length(body, length)
            .file_name(metadata.asset_name.clone());
        let form = reqwest::multipart::Form::new()
            .part("metadata", metadata_part)
            .part("content", content_part);
        self.json(self.request(Method::POST, "/v1/models").multipart(form))
            .await
    }

    /// `GET /v1/models` with query pairs.
    pub async fn list_models(&self, query: &[(&str, String)]) -> Result<ModelList> {
        self.json(self.request(Method::GET, "/v1/models").query(query))
            .await
    }

    /// One version, or the newest.
    pub async fn model(&self, name: &str, version: Option<u32>) -> Result<Model> {
        let path = match version {
            Some(v) => format!("/v1/models/{}/versions/{v}", segment(name)),
            None => format!("/v1/models/{}", segment(name)),
        };
        self.json(self.request(Method::GET, &path)).await
    }

    /// `PATCH` a version's metadata.
    pub async fn update_model(
        &self,
        name: &str,
        version: u32,
        update: &UpdateModelRequest,
    ) -> Result<Model> {
        let path = format!("/v1/models/{}/versions/{version}", segment(name));
        self.json(self.request(Method::PATCH, &path).json(update))
            .await
    }

    /// `PUT /v1/models/{name}/aliases/{alias}`.
    pub async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: u32,
    ) -> Result<berth_api::AliasMoved> {
        let path = format!("/v1/models/{}/aliases/{}", segment(name), segment(alias));
        self.json(
            self.request(Method::PUT, &path)
                .json(&berth_api::SetAliasRequest { version }),
        )
        .await
    }

    /// `DELETE /v1/models/{name}/aliases/{alias}`.
    pub async fn remove_alias(&self, name: &str, alias: &str) -> Result<()> {
        let path = format!("/v1/models/{}/aliases/{}", segment(name), segment(alias));
        self.send(self.request(Method::DELETE, &path)).await?;
        Ok(())
    }

    /// The aliases of one model, or of all.
    pub async fn aliases(&self, name: Option<&str>) -> Result<berth_api::ModelAliasList> {
        let path = match name {
            Some(name) => format!("/v1/models/{}/aliases", segment(name)),
            None => "/v1/aliases".to_owned(),
        };
        self.json(self.request(Method::GET, &path)).await
    }

    /// `DELETE` a version.
    pub async fn delete_model(&self, name: &str, version: u32) -> Result<()> {
        let path = format!("/v1/models/{}/versions/{version}", segment(name));
        self.send(self.request(Method::DELETE, &path)).await?;
        Ok(())
    }

    /// Streams a version's content (file, or tar of the folder) into `target`.
    pub async fn download_model(&self, name: &str, version: u32, target: &Path) -> Result<u64> {
        let path = format!("/v1/models/{}/versions/{version}/content", segment(name));
        let response = self.send(self.request(Method::GET, &path)).await?;
        let file = tokio::fs::File::create(target)
            .await
            .map_err(local("create", target))?;
        let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let mut stream = response.bytes_stream();
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| ClientError::Unreachable {
                endpoint: self.workspace.endpoint.clone(),
                source,
            })?;
            written += chunk.len() as u64;
            file.write_all(&chunk)
                .await
                .map_err(local("write", target))?;
        }
        file.flush().await.map_err(local("write", target))?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::segment;

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(segment("a.b-c_d"), "a.b-c_d");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
