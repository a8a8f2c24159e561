//! One validation path: `PATCH /v1/services/{name}` checks the inference config
//! (and everything else) exactly as create does, so an update cannot lay a
//! revision out outside the data directory.

use serde_json::json;

use crate::harness::{TestServer, assert_error, patch};

const SCRIPT: &[u8] = b"def init():\n    pass\n\ndef run(raw):\n    return {'ok': True}\n";

#[tokio::test]
async fn patch_refuses_a_source_directory_that_escapes_like_create_does() {
    let server = TestServer::start().await;
    let outside = tempfile::tempdir().unwrap();
    let absolute = outside.path().join("planted");
    let absolute = absolute.to_str().unwrap();

    // Create refuses both.
    for bad in ["../../escaped", absolute] {
        let (status, snapshot) = {
            let response = server
                .request(reqwest::Method::POST, "/v1/snapshots")
                .header("content-type", "application/x-tar")
                .body(crate::harness::tar_of(&[("score.py", SCRIPT)]))
                .send()
                .await
                .unwrap();
            crate::harness::json_of(response).await
        };
        assert!(status == 200 || status == 201, "{snapshot}");
        let body = json!({
            "name": "other",
            "inferenceConfig": {"entryScript": "score.py", "sourceSnapshot": snapshot["id"], "sourceDirectoryName": bad},
        });
        let answer = crate::harness::json_of(
            server
                .request(reqwest::Method::POST, "/v1/services")
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_error(&answer, 400, "invalid_argument", "sourceDirectoryName");
    }

    server
        .deploy("valid", &[("score.py", SCRIPT)], &[], json!({}))
        .await;
    let (_, before) = server.get_json("/v1/services/valid").await;

    // The same values through PATCH, as a merge object and as JSON-Patch.
    for body in [
        json!({"inferenceConfig": {"sourceDirectoryName": "../../escaped"}}),
        json!({"inferenceConfig": {"sourceDirectoryName": absolute}}),
        json!([{"op": "replace", "path": "/inferenceConfig/sourceDirectoryName", "value": ".."}]),
        json!({"inferenceConfig": {"sourceDirectoryName": 7}}),
    ] {
        let answer = patch(&server, "valid", body.clone()).await;
        assert_error(&answer, 400, "invalid_argument", "sourceDirectoryName");
    }
    // A PATCH that changes only the entry script is checked against the snapshot as on create.
    let answer = patch(
        &server,
        "valid",
        json!({"inferenceConfig": {"entryScript": "../score.py"}}),
    )
    .await;
    assert_error(&answer, 400, "invalid_argument", "entryScript");

    let (_, after) = server.get_json("/v1/services/valid").await;
    assert_eq!(after["latestRevision"], before["latestRevision"], "{after}");
    assert!(!outside.path().join("planted").exists());
    let data = server.data_dir();
    assert!(!data.join("escaped").exists());
    assert!(!data.join("services").join("escaped").exists());
    assert!(!data.parent().unwrap().join("escaped").exists());
    // The service still serves.
    let response = server.score("valid", "{}").await;
    assert_eq!(response.status(), 200);
}
