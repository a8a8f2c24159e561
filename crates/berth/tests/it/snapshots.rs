//! Source snapshots: content-addressed, checked entry by entry, limits enforced.

use reqwest::Method;
use serde_json::json;

use crate::harness::{TestServer, assert_error, json_of, tar_of};

async fn upload(server: &TestServer, tar: Vec<u8>) -> (u16, serde_json::Value) {
    json_of(
        server
            .request(Method::POST, "/v1/snapshots")
            .header("content-type", "application/x-tar")
            .body(tar)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn snapshots_are_stored_by_digest_and_uploaded_once() {
    let server = TestServer::start().await;
    let tar = tar_of(&[
        ("score.py", b"def init(): pass\n"),
        ("helpers/util.py", b"X = 1\n"),
    ]);
    let (status, first) = upload(&server, tar.clone()).await;
    assert_eq!(status, 201, "{first}");
    let id = first["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("sha256:"));
    assert_eq!(first["fileCount"], 2);
    assert_eq!(first["files"][0]["path"], "helpers/util.py");
    let (status, again) = upload(&server, tar).await;
    assert_eq!(status, 200);
    assert_eq!(again["id"], id.as_str());
    let (status, shown) = server.get_json(&format!("/v1/snapshots/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(shown["files"][1]["path"], "score.py");

    // A model sharing a file with the snapshot: deleting the model keeps the blob.
    server
        .register_file("m", "score.py", b"def init(): pass\n".to_vec(), json!({}))
        .await;
    let blobs = server.blob_count();
    let status = server
        .request(Method::DELETE, "/v1/models/m/versions/1")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    assert_eq!(server.blob_count(), blobs, "the snapshot still uses it");
    assert_error(
        &server.get_json("/v1/snapshots/sha256:00").await,
        404,
        "not_found",
        "sha256:00",
    );
}

#[tokio::test]
async fn unsafe_snapshots_and_snapshots_over_the_limits_are_refused() {
    let server =
        TestServer::start_with(&["--max-snapshot-files", "2", "--max-snapshot-bytes", "5000"])
            .await;
    let answer = upload(&server, tar_of(&[("a", b"1"), ("b", b"2"), ("c", b"3")])).await;
    assert_error(&answer, 400, "invalid_argument", "more than 2 files");
    assert!(
        answer.1["message"]
            .as_str()
            .unwrap()
            .contains("--max-snapshot-files")
    );
    let answer = upload(&server, tar_of(&[("big", &[0u8; 6000])])).await;
    assert_error(&answer, 413, "payload_too_large", "5000 bytes");
    assert!(
        answer.1["hint"]
            .as_str()
            .unwrap()
            .contains("--max-snapshot-bytes")
    );

    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    builder.append_link(&mut header, "data", "/etc").unwrap();
    let answer = upload(&server, builder.into_inner().unwrap()).await;
    assert_error(&answer, 400, "invalid_argument", "symbolic links");

    let wrong_type = json_of(
        server
            .request(Method::POST, "/v1/snapshots")
            .header("content-type", "application/zip")
            .body(vec![0u8; 10])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(
        &wrong_type,
        415,
        "unsupported_media_type",
        "application/x-tar",
    );
    assert_eq!(server.blob_count(), 0, "refused uploads leave no blobs");
}
