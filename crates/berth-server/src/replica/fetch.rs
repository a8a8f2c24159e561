//! Fetching a revision bundle and its blobs from the server, each blob checked
//! against the digest the bundle lists before anything is laid out.

use std::path::PathBuf;

use berth_api::bundle::{BundleFile, RevisionBundle};
use futures_util::StreamExt;

use crate::blobs::{BlobPin, BlobStore};
use crate::compute::local::materialise::RevisionContent;
use crate::store::StoredFile;

/// Why the bundle could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The server could not be reached or answered with an error.
    #[error("fetching {what} from {url}: {reason}")]
    Http {
        /// What was fetched.
        what: String,
        /// From where.
        url: String,
        /// Why it failed (the server's message when it gave one).
        reason: String,
    },
    /// A blob's content is not what the bundle says.
    #[error(
        "file `{path}` of the bundle does not match its digest: expected {expected}, got {actual}; the server's copy or the transfer is corrupt"
    )]
    DigestMismatch {
        /// The file (the first one with that digest).
        path: String,
        /// The digest the bundle lists.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// The bundle is for another revision than asked.
    #[error("the server sent the bundle of {got}, not of {asked}")]
    WrongRevision {
        /// What was asked.
        asked: String,
        /// What came.
        got: String,
    },
    /// The cache could not be written.
    #[error("writing the blob cache {}: {reason}", path.display())]
    Cache {
        /// Where.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The bundle client: server URL, revision and token.
pub struct BundleClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl BundleClient {
    /// A client for `service` revision `revision` at `server`.
    pub fn new(
        http: reqwest::Client,
        server: &str,
        service: &str,
        revision: u32,
        token: String,
    ) -> Self {
        BundleClient {
            http,
            base: format!(
                "{}/v1/services/{service}/revisions/{revision}/bundle",
                server.trim_end_matches('/')
            ),
            token,
        }
    }

    async fn get(&self, what: &str, url: &str) -> Result<reqwest::Response, FetchError> {
        let fail = |reason: String| FetchError::Http {
            what: what.to_owned(),
            url: url.to_owned(),
            reason,
        };
        let response = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or(body);
            return Err(fail(format!("{status}: {message}")));
        }
        Ok(response)
    }

    /// The bundle.
    pub async fn bundle(&self, service: &str, revision: u32) -> Result<RevisionBundle, FetchError> {
        let response = self.get("the revision bundle", &self.base).await?;
        let bundle: RevisionBundle = response.json().await.map_err(|e| FetchError::Http {
            what: "the revision bundle".into(),
            url: self.base.clone(),
            reason: format!("the body is not a bundle: {e}"),
        })?;
        if bundle.service != service || bundle.revision != revision {
            return Err(FetchError::WrongRevision {
                asked: format!("{service} revision {revision}"),
                got: format!("{} revision {}", bundle.service, bundle.revision),
            });
        }
        Ok(bundle)
    }

    /// Every blob of `bundle` in `blobs` (those already there and intact are
    /// kept), each checked against its digest; the pins keep them until dropped.
    pub async fn blobs(
        &self,
        bundle: &RevisionBundle,
        blobs: &BlobStore,
    ) -> Result<Vec<BlobPin>, FetchError> {
        let files: Vec<&BundleFile> = bundle
            .source
            .iter()
            .chain(bundle.models.iter().flat_map(|m| m.files.iter()))
            .collect();
        self.files(&files, blobs).await
    }

    /// [`BundleClient::blobs`] for a list of files.
    async fn files(
        &self,
        files: &[&BundleFile],
        blobs: &BlobStore,
    ) -> Result<Vec<BlobPin>, FetchError> {
        let mut pins = Vec::new();
        let digests: std::collections::BTreeSet<&str> =
            files.iter().map(|f| f.digest.as_str()).collect();
        for digest in digests {
            let path = files
                .iter()
                .find(|f| f.digest == digest)
                .map(|f| f.path.clone())
                .unwrap_or_default();
            let cached = blobs.path(digest);
            let intact = {
                let (cached, digest) = (cached.clone(), digest.to_owned());
                tokio::task::spawn_blocking(move || {
                    crate::blobs::verify::check_file(&cached, &digest).is_ok()
                })
                .await
                .unwrap_or(false)
            };
            if intact {
                continue;
            }
            let url = format!("{}/blobs/{digest}", self.base);
            let response = self.get(&format!("file `{path}`"), &url).await?;
            let cache_err = |reason: String| FetchError::Cache {
                path: cached.clone(),
                reason,
            };
            let mut writer = blobs
                .writer(u64::MAX)
                .await
                .map_err(|e| cache_err(e.to_string()))?;
            let mut body = response.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| FetchError::Http {
                    what: format!("file `{path}`"),
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
                writer
                    .write(&chunk)
                    .await
                    .map_err(|e| cache_err(e.to_string()))?;
            }
            let pin = writer
                .finish()
                .await
                .map_err(|e| cache_err(e.to_string()))?;
            if pin.digest() != digest {
                return Err(FetchError::DigestMismatch {
                    path,
                    expected: digest.to_owned(),
                    actual: pin.digest().to_owned(),
                });
            }
            pins.push(pin);
        }
        Ok(pins)
    }
}

fn stored(file: &BundleFile) -> StoredFile {
    StoredFile {
        file: berth_api::ModelFile {
            path: file.path.clone(),
            size: file.size,
            digest: file.digest.clone(),
        },
        mode: file.mode,
    }
}

/// What [`crate::compute::local::materialise::materialise`] lays out for `bundle`.
pub fn content(bundle: &RevisionBundle) -> RevisionContent {
    RevisionContent {
        models: bundle
            .models
            .iter()
            .map(|m| {
                (
                    m.name.clone(),
                    m.version,
                    m.kind,
                    m.asset_name.clone(),
                    m.files.iter().map(stored).collect(),
                )
            })
            .collect(),
        source: bundle.source.iter().map(stored).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server whose blob route answers `content` for any digest.
    async fn serving(content: &'static [u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/v1/services/s/revisions/1/bundle/blobs/{digest}",
            axum::routing::get(move || async move { content }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn file(path: &str, content: &[u8]) -> BundleFile {
        use sha2::Digest;
        BundleFile {
            path: path.to_owned(),
            digest: crate::blobs::format_digest(&sha2::Sha256::digest(content)),
            size: content.len() as u64,
            mode: 0o644,
        }
    }

    #[tokio::test]
    async fn a_blob_that_does_not_match_its_digest_names_the_file_and_both_digests() {
        let server = serving(b"tampered").await;
        let cache = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(cache.path()).await.unwrap();
        let client = BundleClient::new(reqwest::Client::new(), &server, "s", 1, "t".into());
        let expected = file("models/weights.bin", b"the real weights");
        let err = client.files(&[&expected], &blobs).await.unwrap_err();
        match &err {
            FetchError::DigestMismatch {
                path,
                expected: want,
                actual,
            } => {
                assert_eq!(path, "models/weights.bin");
                assert_eq!(want, &expected.digest);
                assert_eq!(actual, &file("x", b"tampered").digest);
            }
            other => panic!("expected a digest mismatch, got {other}"),
        }
        let text = err.to_string();
        assert!(
            text.contains("models/weights.bin") && text.contains(&expected.digest),
            "{text}"
        );
        // Content that matches is kept (and found in the cache next time).
        let server = serving(b"the real weights").await;
        let client = BundleClient::new(reqwest::Client::new(), &server, "s", 1, "t".into());
        assert_eq!(client.files(&[&expected], &blobs).await.unwrap().len(), 1);
        assert!(client.files(&[&expected], &blobs).await.unwrap().is_empty());
    }
}
