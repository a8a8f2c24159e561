//! Upload limits and failures: nothing half-registered, nothing left on disk.

use std::time::Duration;

use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::harness::{TestServer, assert_error, json_of, tar_of};

async fn assert_nothing_left(server: &TestServer) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list) = server.get_json("/v1/models").await;
        let clean =
            list["value"] == json!([]) && server.blob_count() == 0 && server.temp_count() == 0;
        if clean {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "left behind: models {list}, {} blobs, {} temp files",
            server.blob_count(),
            server.temp_count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn chunked(chunks: usize, size: usize) -> reqwest::Body {
    let items: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..chunks).map(|_| Ok(vec![7u8; size])).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(items))
}

fn metadata_part(kind: &str) -> Part {
    Part::text(json!({"name": "m", "kind": kind, "assetName": "m.bin"}).to_string())
        .mime_str("application/json")
        .unwrap()
}

#[tokio::test]
async fn uploads_over_the_limit_get_413_before_and_while_streaming() {
    let server = TestServer::start_with(&["--max-upload-bytes", "10000"]).await;
    // Declared length over the limit: refused before the body is read.
    let answer = server
        .register_file("m", "m.bin", vec![1u8; 5 << 20], json!({}))
        .await;
    assert_error(&answer, 413, "payload_too_large", "10000 bytes");
    assert!(
        answer.1["hint"]
            .as_str()
            .unwrap()
            .contains("--max-upload-bytes")
    );

    // No declared length (chunked): refused once the content passes the limit.
    let form = Form::new()
        .part("metadata", metadata_part("file"))
        .part("content", Part::stream(chunked(8, 4096)));
    let request = server.request(Method::POST, "/v1/models").multipart(form);
    let answer = json_of(request.send().await.unwrap()).await;
    assert_error(&answer, 413, "payload_too_large", "10000 bytes");

    // A folder whose files add up to more than the limit.
    let big = vec![0u8; 6000];
    let answer = server
        .register_tar("m", "dir", tar_of(&[("a", &big), ("b", &big)]))
        .await;
    assert_error(&answer, 413, "payload_too_large", "10000 bytes");
    assert_nothing_left(&server).await;

    // Exactly the limit is fine.
    let (status, _) = server
        .register_file("m", "m.bin", vec![1u8; 10000], json!({}))
        .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn an_interrupted_upload_leaves_no_model_and_no_blob() {
    let server = TestServer::start().await;
    let addr = server.endpoint.trim_start_matches("http://").to_owned();
    let boundary = "XBOUNDARYX";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\nContent-Type: application/json\r\n\r\n{}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; filename=\"m.bin\"\r\n\r\n",
        json!({"name": "m", "kind": "file", "assetName": "m.bin"})
    );
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "POST /v1/models HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 10000000\r\n\r\n{head}",
        server.token
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(&vec![9u8; 300_000]).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stream);
    assert_nothing_left(&server).await;
    assert!(
        server.log().contains("model registration failed"),
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn unsafe_or_malformed_folder_archives_are_refused_and_leave_nothing() {
    let server = TestServer::start().await;
    let mut escape = tar_of(&[("ok.txt", b"fine")]);
    // Append an entry whose name climbs out of the root, written byte by byte.
    escape.truncate(escape.len() - 1024);
    let mut header = tar::Header::new_gnu();
    header.set_size(4);
    header.set_mode(0o644);
    header.as_old_mut().name[..9].copy_from_slice(b"../escape");
    header.set_cksum();
    let mut builder = tar::Builder::new(escape);
    builder.append(&header, &b"evil"[..]).unwrap();
    let escape = builder.into_inner().unwrap();
    let answer = server.register_tar("m", "dir", escape).await;
    assert_error(&answer, 400, "invalid_argument", "`..`");

    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    builder
        .append_link(&mut header, "passwd", "/etc/passwd")
        .unwrap();
    let answer = server
        .register_tar("m", "dir", builder.into_inner().unwrap())
        .await;
    assert_error(&answer, 400, "invalid_argument", "symbolic links");

    let answer = server
        .register_tar("m", "dir", b"this is not a tar archive at all".repeat(40))
        .await;
    assert_eq!(answer.0, 400, "{}", answer.1);
    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn malformed_registrations_say_what_the_upload_must_look_like() {
    let server = TestServer::start().await;
    let not_multipart = json_of(
        server
            .request(Method::POST, "/v1/models")
            .json(&json!({"name": "m"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(
        &not_multipart,
        415,
        "unsupported_media_type",
        "multipart/form-data",
    );

    let content_first = Form::new()
        .part("content", Part::bytes(b"x".to_vec()))
        .part("metadata", metadata_part("file"));
    let answer = json_of(
        server
            .request(Method::POST, "/v1/models")
            .multipart(content_first)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&answer, 400, "invalid_argument", "must be `metadata`");

    let no_content = Form::new().part("metadata", metadata_part("file"));
    let answer = json_of(
        server
            .request(Method::POST, "/v1/models")
            .multipart(no_content)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&answer, 400, "invalid_argument", "no `content` part");

    let bad_json = Form::new()
        .part("metadata", Part::text("{not json"))
        .part("content", Part::bytes(b"x".to_vec()));
    let answer = json_of(
        server
            .request(Method::POST, "/v1/models")
            .multipart(bad_json)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&answer, 400, "invalid_argument", "line 1 column");
    assert_nothing_left(&server).await;
}
