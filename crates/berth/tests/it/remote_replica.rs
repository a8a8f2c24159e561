//! Remote replicas: the revision bundle and its scoped token, `berth replica`
//! processes reached over TLS on loopback (`--replica-transport tcp`), and the
//! connection's authentication and certificate pinning.

use std::time::Duration;

use berth_server::compute::remote::ReplicaKeys;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{TestServer, json_of};

const SCRIPT: &[u8] = br#"
import os

def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.txt")) as f:
        model = f.read().strip()

def run(raw):
    return {"model": model, "pid": os.getpid()}
"#;

/// The remote-replica keys of a server's workspace (from its signing key).
fn keys_of(server: &TestServer) -> ReplicaKeys {
    let text = std::fs::read_to_string(server.data_dir().join("token-signing-key")).unwrap();
    let text = text.trim();
    let key: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect();
    ReplicaKeys::derive(&key)
}

async fn deploy(server: &TestServer, name: &str, model: &[u8]) {
    server
        .register_file("weights", "model.txt", model.to_vec(), json!({}))
        .await;
    server
        .deploy(name, &[("score.py", SCRIPT)], &["weights:1"], json!({}))
        .await;
}

fn bundle_path(service: &str, revision: u32) -> String {
    format!("/v1/services/{service}/revisions/{revision}/bundle")
}

async fn get_with(server: &TestServer, path: &str, token: &str) -> reqwest::Response {
    server
        .http
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn remote_replica_bundle_lists_the_revision_and_serves_its_blobs_by_digest() {
    let server = TestServer::start().await;
    deploy(&server, "bundled", b"weights-v1").await;
    let token = keys_of(&server).mint_bundle_token("bundled", 1, Duration::from_secs(60));
    let (status, bundle) =
        json_of(get_with(&server, &bundle_path("bundled", 1), &token).await).await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["service"], "bundled");
    assert_eq!(bundle["revision"], 1);
    assert_eq!(bundle["entryScript"], "src/score.py");
    assert!(
        bundle["credentials"]["certificatePem"]
            .as_str()
            .unwrap()
            .contains("CERTIFICATE")
    );
    assert_eq!(bundle["credentials"]["secret"].as_str().unwrap().len(), 64);
    let settings = &bundle["settings"];
    assert!(settings["initTimeoutMs"].as_u64().unwrap() > 0);
    assert!(
        settings["environmentVariables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|kv| kv[0] == "AZUREML_ENTRY_SCRIPT" && kv[1] == "src/score.py"),
        "{settings}"
    );
    let model = &bundle["models"][0];
    assert_eq!(model["name"], "weights");
    let file = &model["files"][0];
    assert_eq!(file["size"], 10);
    let digest = file["digest"].as_str().unwrap();
    let blob = get_with(
        &server,
        &format!("{}/blobs/{digest}", bundle_path("bundled", 1)),
        &token,
    )
    .await;
    assert_eq!(blob.status(), 200);
    assert_eq!(blob.bytes().await.unwrap().as_ref(), b"weights-v1");
    let source = bundle["source"].as_array().unwrap();
    assert!(source.iter().any(|f| f["path"] == "score.py"), "{bundle}");
    // A digest that is not in the bundle is not served, even when stored.
    let other = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let response = get_with(
        &server,
        &format!("{}/blobs/{other}", bundle_path("bundled", 1)),
        &token,
    )
    .await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn remote_replica_bundle_token_opens_its_revision_only_and_the_workspace_token_opens_no_bundle()
 {
    let server = TestServer::start().await;
    deploy(&server, "scoped", b"v1").await;
    server
        .deploy(
            "neighbour",
            &[("score.py", SCRIPT)],
            &["weights:1"],
            json!({}),
        )
        .await;
    let keys = keys_of(&server);
    let token = keys.mint_bundle_token("scoped", 1, Duration::from_secs(60));
    // Another revision, another service: refused.
    for path in [bundle_path("scoped", 2), bundle_path("neighbour", 1)] {
        let (status, body) = json_of(get_with(&server, &path, &token).await).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("scoped` revision 1 only"),
            "{body}"
        );
    }
    // The management API: refused (the bundle token is not the workspace token).
    for path in ["/v1/services", "/v1/services/scoped", "/v1/models"] {
        let response = get_with(&server, path, &token).await;
        assert_eq!(response.status(), 401, "{path}");
    }
    let response = server
        .http
        .request(Method::DELETE, server.url("/v1/services/scoped"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // The workspace token, no token, an expired or forged token: no bundle.
    let expired = keys.mint_bundle_token("scoped", 1, Duration::ZERO);
    let forged = format!("{}00", &token[..token.len() - 2]);
    for credential in [server.token.as_str(), expired.as_str(), forged.as_str()] {
        let response = get_with(&server, &bundle_path("scoped", 1), credential).await;
        assert_eq!(response.status(), 401);
        let text = response.text().await.unwrap();
        assert!(!text.contains(credential), "the credential is not echoed");
    }
    let response = server
        .http
        .get(server.url(&bundle_path("scoped", 1)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // The workspace's own API still works with its token.
    let (status, _): (u16, Value) = server.get_json("/v1/services/scoped").await;
    assert_eq!(status, 200);
    assert!(
        !server.log().contains(&token),
        "bundle tokens are never logged"
    );
}
