//! Start, restart and shutdown of the server process.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::json;

use crate::harness::{TestServer, json_of, tar_of};

#[tokio::test]
async fn a_restart_keeps_models_blobs_and_the_token() {
    let mut server = TestServer::start().await;
    server
        .register_file(
            "keep",
            "m.bin",
            b"kept content".to_vec(),
            json!({"tags": {"k": "v"}}),
        )
        .await;
    server
        .register_tar("keep", "dir", tar_of(&[("a.txt", b"a"), ("b/c.txt", b"c")]))
        .await;
    let token = server.token.clone();
    let (_, before) = server.get_json("/v1/models").await;
    server.restart().await;
    assert_eq!(server.token, token, "the workspace token survives restarts");
    let (status, after) = server.get_json("/v1/models").await;
    assert_eq!(status, 200);
    assert_eq!(before, after);
    let bytes = server
        .request(Method::GET, "/v1/models/keep/versions/1/content")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"kept content");
    let (_, model) = server
        .register_file("keep", "m.bin", b"third".to_vec(), json!({}))
        .await;
    assert_eq!(model["version"], 3, "versioning continues after a restart");
}

#[tokio::test]
async fn client_files_are_private_and_name_the_bound_port() {
    let server = TestServer::start().await;
    let data = server.data_dir();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data.join("config.json")), 0o600);
    assert_eq!(mode(&data.join("workspace-token")), 0o600);
    // 0700, or 0711 when workers run as another user (searchable, never listable).
    assert_eq!(mode(data) & 0o766, 0o700, "{:o}", mode(data));
    assert!(server.endpoint.starts_with("http://127.0.0.1:"));
    assert!(!server.endpoint.ends_with(":0"));
    assert!(server.token.starts_with("berth_"));
    let db = data.join("berth.db");
    assert!(db.exists(), "SQLite database at <data>/berth.db");
    let wal = std::fs::read(&db).unwrap();
    // SQLite file-format bytes 18 and 19 are 2 in WAL mode.
    assert_eq!((wal[18], wal[19]), (2, 2), "the database is in WAL mode");
    assert!(
        !server.log().contains(&server.token),
        "the token must never be logged"
    );
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_upload_finish_then_exits_cleanly() {
    let mut server = TestServer::start().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream(rx));
    let form = Form::new()
        .part(
            "metadata",
            Part::text(json!({"name": "slow", "kind": "file", "assetName": "s.bin"}).to_string())
                .mime_str("application/json")
                .unwrap(),
        )
        .part("content", Part::stream(body));
    let request = server.request(Method::POST, "/v1/models").multipart(form);
    let upload = tokio::spawn(async move { json_of(request.send().await.unwrap()).await });
    tx.send(Ok(vec![1u8; 1000])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.signal_term();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The listener is closed to new work while the old request goes on.
    let ready = server
        .http
        .get(server.url("/readyz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(
        ready.map(|r| r.status() != 200).unwrap_or(true),
        "not ready while shutting down"
    );
    tx.send(Ok(vec![2u8; 1000])).await.unwrap();
    drop(tx);
    let (status, model) = upload.await.unwrap();
    assert_eq!(status, 201, "{model}");
    assert_eq!(model["size"], 2000);
    let exit = server.wait_exit().await;
    assert!(exit.success(), "exit status {exit}");
    assert!(server.log().contains("SIGTERM received"));
}

fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
