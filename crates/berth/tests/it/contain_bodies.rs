//! Bounded bodies on both planes: a scoring body is read whole (size, total
//! deadline, minimum rate) before an admission slot is taken, so a trickling
//! client holds only its own connection; management bodies over the limit are
//! refused before they are read; worker answers over `--max-response-bytes`
//! get 502 and the replica keeps serving.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::TestServer;

const SCRIPT: &[u8] = br#"
def init():
    pass

def run(raw):
    if raw.startswith("big:"):
        return "x" * int(raw[4:])
    return {"ok": True, "bytes": len(raw)}
"#;

fn host_port(server: &TestServer) -> String {
    server.endpoint.trim_start_matches("http://").to_owned()
}

/// Reads an HTTP/1.1 answer's status line and headers (and what followed).
async fn read_head(stream: &mut TcpStream, within: Duration) -> String {
    let mut buffer = Vec::new();
    let deadline = Instant::now() + within;
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&buffer).contains("\r\n\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => buffer.extend_from_slice(&chunk[..n]),
            Ok(Err(_)) => break,
        }
    }
    // Whatever body bytes came with it.
    if let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(200), stream.read(&mut chunk)).await
    {
        buffer.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buffer).into_owned()
}

#[tokio::test]
async fn a_client_trickling_its_body_does_not_take_the_services_capacity() {
    let server = TestServer::start().await;
    // The reference's defaults: one request at a time per replica, 500 ms queue wait.
    server
        .deploy("steady", &[("score.py", SCRIPT)], &[], json!({}))
        .await;

    let mut slow = TcpStream::connect(host_port(&server)).await.unwrap();
    slow.write_all(
        b"POST /api/v1/service/steady/score HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let trickle = tokio::spawn(async move {
        // One byte every 2 s, until the server gives up on it.
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if slow.write_all(b" ").await.is_err() {
                break;
            }
            let mut probe = [0u8; 1];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(1), slow.peek(&mut probe)).await
                && n > 0
            {
                break;
            }
        }
        read_head(&mut slow, Duration::from_secs(5)).await
    });

    // Meanwhile the service answers everyone else, for longer than a queue wait many times over.
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_secs(5) {
        let response = server.score("steady", r#"{"a": 1}"#).await;
        assert_eq!(
            response.status(),
            200,
            "a normal request failed while a slow client trickled: {}",
            response.text().await.unwrap_or_default()
        );
        answered += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered >= 10, "{answered}");

    // The trickler is cut off by the minimum rate (after the 10 s grace), with the reason.
    let answer = tokio::time::timeout(Duration::from_secs(40), trickle)
        .await
        .expect("the slow client was cut off")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("--request-body-min-rate"), "{answer}");
}

#[tokio::test]
async fn management_bodies_over_the_limit_are_refused_before_they_are_read() {
    let server = TestServer::start().await;
    // A declared 1.5 GiB PATCH is answered at once, without the body being sent.
    let mut stream = TcpStream::connect(host_port(&server)).await.unwrap();
    let head = format!(
        "PATCH /v1/services/anything HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        server.token,
        3u64 << 29
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(b"{\"description\": \"").await.unwrap();
    let answer = read_head(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");

    // Without a length (chunked), reading stops at the limit: 64 MiB offered,
    // the answer comes while the client is still sending.
    let stream = TcpStream::connect(host_port(&server)).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "PATCH /v1/services/anything HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
        server.token
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    let sender = tokio::spawn(async move {
        let mut chunk = format!("{:x}\r\n", 1 << 20).into_bytes();
        chunk.extend(std::iter::repeat_n(b' ', 1 << 20));
        chunk.extend_from_slice(b"\r\n");
        let mut sent = 0usize;
        for _ in 0..64 {
            if writer.write_all(&chunk).await.is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&answer).contains("\r\n\r\n") && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buffer[..n]),
            _ => break,
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    drop(reader);
    let sent = sender.await.unwrap();
    assert!(
        sent < 64,
        "the server read the whole 64 MiB ({sent} chunks)"
    );
}

#[tokio::test]
async fn long_answers_are_streamed_and_answers_over_the_limit_get_502_with_the_replica_kept() {
    let server = TestServer::start_with(&["--max-response-bytes", "4000000"]).await;
    server
        .deploy("talker", &[("score.py", SCRIPT)], &[], json!({}))
        .await;
    let response = server.score("talker", "big:50000").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap().len(), 50_002);

    // Over 1 MiB: passed on in parts, with its length.
    let response = server.score("talker", "big:3000000").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-length"].to_str().unwrap(),
        "3000002"
    );
    let text = response.text().await.unwrap();
    assert_eq!(text.len(), 3_000_002);
    assert!(text.starts_with("\"xxx") && text.ends_with("xxx\""));

    let response = server.score("talker", "big:5000000").await;
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = response.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("--max-response-bytes") && message.contains("4000000"),
        "{message}"
    );

    // Same replica, still in step with the gateway.
    let response = server.score("talker", r#"{"a": 1}"#).await;
    assert_eq!(response.status(), 200);
    let (_, shown) = server.get_json("/v1/services/talker").await;
    assert_eq!(shown["deploymentStatus"]["restarts"], 0, "{shown}");
}
