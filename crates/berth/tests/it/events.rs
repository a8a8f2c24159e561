//! Events and webhooks: a receiver started by the test gets a deploy's and an
//! update's events in order with valid signatures; listing with filters;
//! following; retries; refused registrations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{TestServer, assert_error, json_of};

const SCRIPT: &[u8] = b"def init():\n    pass\ndef run(raw):\n    return raw\n";
const SECRET: &str = "test-secret-0123456789";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Delivery {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Delivery {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A minimal HTTP/1.1 receiver answering each POST with the next scripted
/// status (200 once the script is used up).
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    async fn start(script: Vec<u16>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let store = got.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let store = store.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let Some(delivery) = read_request(&mut socket).await else {
                        return;
                    };
                    let status = script.lock().unwrap().next().unwrap_or(200);
                    store.lock().unwrap().push(delivery);
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self { url, got }
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the deliveries so far; returns them.
    async fn wait_for(&self, done: impl Fn(&[Delivery]) -> bool) -> Vec<Delivery> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.deliveries();
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver did not get the expected events: {:?}",
                got.iter().map(Delivery::json).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Delivery> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers.get("content-length")?.parse().ok()?;
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(Delivery {
        headers,
        body: buf[head_end..head_end + length].to_vec(),
    })
}

/// Checks the headers and the signature of a delivery.
fn assert_signed(delivery: &Delivery, secret: &str) {
    let event = delivery.json();
    let h = &delivery.headers;
    assert_eq!(h["x-berth-event"], event["type"].as_str().unwrap());
    assert_eq!(h["x-berth-delivery"], event["id"].to_string());
    let timestamp = &h["x-berth-timestamp"];
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(&delivery.body);
    let expected = format!(
        "sha256={}",
        hex_of(&berth_server::tokens::hmac_sha256(
            secret.as_bytes(),
            &message
        ))
    );
    assert_eq!(h["x-berth-signature"], expected, "signature of {event}");
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn add_webhook(server: &TestServer, body: Value) -> (u16, Value) {
    json_of(
        server
            .request(Method::POST, "/v1/webhooks")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// `(type, data.from, data.to)` of each event, for order checks.
fn summary(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e["type"].as_str().unwrap() {
            "service.state_changed" => format!(
                "state {}->{}",
                e["data"]["from"].as_str().unwrap_or("none"),
                e["data"]["to"].as_str().unwrap()
            ),
            "operation.started" | "operation.succeeded" | "operation.failed" => format!(
                "{} {}",
                e["type"].as_str().unwrap(),
                e["data"]["operationType"].as_str().unwrap()
            ),
            other => other.to_owned(),
        })
        .collect()
}

#[tokio::test]
async fn a_webhook_gets_a_deploy_and_an_update_in_order_with_valid_signatures() {
    let server = TestServer::start_with(&["--webhook-allow-private"]).await;
    let receiver = Receiver::start(Vec::new()).await;
    let (status, created) =
        add_webhook(&server, json!({"url": receiver.url, "secret": SECRET})).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["secret"], SECRET);
    assert_eq!(created["webhook"]["events"], json!(["*"]));

    let (status, model) = server
        .register_file("weights", "model.txt", b"v1".to_vec(), json!({}))
        .await;
    assert_eq!(status, 201, "{model}");
    server
        .deploy(
            "hooked",
            &[("score.py", SCRIPT)],
            &["weights:1"],
            json!({"computeType": "local"}),
        )
        .await;
    let (status, accepted) = json_of(
        server
            .request(Method::PATCH, "/v1/services/hooked")
            .json(&json!({"numReplicas": 2}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let update_id = accepted["operation"]["id"].as_str().unwrap().to_owned();
    let op = server.wait_operation(&update_id).await;
    assert_eq!(op["state"], "Succeeded", "{op}");

    let got = receiver
        .wait_for(|d| {
            d.iter().any(|d| {
                let e = d.json();
                e["type"] == "operation.succeeded" && e["operation"] == update_id.as_str()
            })
        })
        .await;
    let events: Vec<Value> = got.iter().map(Delivery::json).collect();
    assert_eq!(
        summary(&events),
        vec![
            "model.registered",
            "operation.started Create",
            "state none->Transitioning",
            "state Transitioning->Healthy",
            "operation.succeeded Create",
            "operation.started Update",
            "state Healthy->Transitioning",
            "state Transitioning->Healthy",
            "operation.succeeded Update",
        ],
        "{events:#?}"
    );
    let ids: Vec<u64> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids ascend: {ids:?}");
    for delivery in &got {
        assert_signed(delivery, SECRET);
    }
    assert_eq!(events[0]["data"], json!({"name": "weights", "version": 1}));
    assert_eq!(events[8]["service"], "hooked");
    assert_eq!(events[8]["data"]["servingRevision"], 2);

    // The same events are listed, oldest first, with filters.
    let (status, all) = server.get_json("/v1/events").await;
    assert_eq!(status, 200, "{all}");
    let listed: Vec<Value> = all["events"].as_array().unwrap().clone();
    assert_eq!(listed, events, "the log and the webhook agree");
    let (_, only_service) = server.get_json("/v1/events?service=hooked").await;
    assert_eq!(only_service["events"].as_array().unwrap().len(), 8);
    let (_, starts) = server
        .get_json("/v1/events?type=operation.started&limit=1")
        .await;
    assert_eq!(
        summary(starts["events"].as_array().unwrap()),
        vec!["operation.started Create"]
    );
    let after = ids[4];
    let (_, later) = server
        .get_json(&format!(
            "/v1/events?after={after}&type=service.state_changed"
        ))
        .await;
    assert_eq!(
        summary(later["events"].as_array().unwrap()),
        vec![
            "state Healthy->Transitioning",
            "state Transitioning->Healthy"
        ]
    );

    let (_, hooks) = server.get_json("/v1/webhooks").await;
    let hook = &hooks["webhooks"][0];
    assert_eq!(hook["lastDeliveryStatus"], "delivered", "{hooks}");
    assert_eq!(hook["consecutiveFailures"], 0);
    assert!(
        !hooks.to_string().contains(SECRET),
        "the secret is never listed: {hooks}"
    );
    assert!(
        !server.log().contains(SECRET),
        "the secret never reaches the log"
    );
}

#[tokio::test]
async fn following_replays_then_streams_new_events() {
    let server = TestServer::start_with(&["--webhook-allow-private"]).await;
    server
        .register_file("first", "a.txt", b"a".to_vec(), json!({}))
        .await;
    let response = server
        .request(Method::GET, "/v1/events?follow=true&type=model.registered")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    let mut next_line = async || -> Value {
        loop {
            if let Some(end) = text.find('\n') {
                let line: String = text.drain(..=end).collect();
                return serde_json::from_str(&line).unwrap();
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), stream.next())
                .await
                .expect("an event within 30 s")
                .expect("stream open")
                .unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    };
    let replayed = next_line().await;
    assert_eq!(replayed["data"]["name"], "first");
    server
        .register_file("second", "b.txt", b"b".to_vec(), json!({}))
        .await;
    let live = next_line().await;
    assert_eq!(live["data"], json!({"name": "second", "version": 1}));
    assert!(live["id"].as_u64() > replayed["id"].as_u64());
}

#[tokio::test]
async fn a_webhook_answering_500_twice_gets_the_event_on_the_third_try() {
    let server = TestServer::start_with(&["--webhook-allow-private"]).await;
    let receiver = Receiver::start(vec![500, 500]).await;
    let (status, created) = add_webhook(
        &server,
        json!({"url": receiver.url, "events": ["model.registered"]}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 32, "a generated secret: {secret}");
    server
        .register_file("retried", "m.txt", b"m".to_vec(), json!({}))
        .await;
    let got = receiver.wait_for(|d| d.len() >= 3).await;
    assert_eq!(got.len(), 3);
    for delivery in &got {
        assert_signed(delivery, &secret);
        assert_eq!(delivery.body, got[0].body, "the same event each time");
    }
    assert_eq!(got[0].json()["data"]["name"], "retried");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, hooks) = server.get_json("/v1/webhooks").await;
        if hooks["webhooks"][0]["lastDeliveryStatus"] == "delivered" {
            assert_eq!(hooks["webhooks"][0]["consecutiveFailures"], 0);
            break;
        }
        assert!(Instant::now() < deadline, "delivery not recorded: {hooks}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn invalid_webhooks_and_event_queries_are_refused_naming_the_field() {
    let server = TestServer::start_with(&["--webhook-allow-private"]).await;
    let bad_scheme = add_webhook(&server, json!({"url": "ftp://example.com/x"})).await;
    assert_error(&bad_scheme, 400, "invalid_argument", "`url`");
    let not_url = add_webhook(&server, json!({"url": "not a url"})).await;
    assert_error(&not_url, 400, "invalid_argument", "`url`");
    let bad_event = add_webhook(
        &server,
        json!({"url": "http://127.0.0.1:9/h", "events": ["operation.exploded"]}),
    )
    .await;
    assert_error(&bad_event, 400, "invalid_argument", "operation.exploded");
    let short = add_webhook(
        &server,
        json!({"url": "http://127.0.0.1:9/h", "secret": "short"}),
    )
    .await;
    assert_error(&short, 400, "invalid_argument", "`secret`");
    let missing = json_of(
        server
            .request(Method::DELETE, "/v1/webhooks/wh-nope")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&missing, 404, "not_found", "wh-nope");
    let bad_type = server.get_json("/v1/events?type=nope").await;
    assert_error(&bad_type, 400, "invalid_argument", "`type`");
    let bad_after = server.get_json("/v1/events?after=-1").await;
    assert_error(&bad_after, 400, "invalid_argument", "`after`");
    let (_, hooks) = server.get_json("/v1/webhooks").await;
    assert_eq!(hooks["webhooks"], json!([]), "nothing was registered");
}

#[tokio::test]
async fn the_cli_adds_lists_and_removes_webhooks_and_lists_events() {
    let server = TestServer::start_with(&["--webhook-allow-private"]).await;
    let cwd = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| server.cli(cwd.path()).args(args).output().unwrap();
    let added = run(&[
        "webhook",
        "add",
        "http://127.0.0.1:9/hook",
        "--event",
        "model.registered",
        "--event",
        "operation.failed",
        "-o",
        "json",
    ]);
    assert!(added.status.success(), "{added:?}");
    let created: Value = serde_json::from_slice(&added.stdout).unwrap();
    let id = created["webhook"]["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        created["webhook"]["events"],
        json!(["model.registered", "operation.failed"])
    );
    let listed = run(&["webhook", "list"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains(&id) && !text.contains(&secret), "{text}");
    let bad = run(&["webhook", "add", "ftp://x/y"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`url`"));
    assert!(run(&["webhook", "remove", &id]).status.success());
    let gone = run(&["webhook", "list", "-o", "json"]);
    let gone: Value = serde_json::from_slice(&gone.stdout).unwrap();
    assert_eq!(gone["webhooks"], json!([]));

    server
        .register_file("clied", "c.txt", b"c".to_vec(), json!({}))
        .await;
    // Events are written by the bus's writer after the registration answered: poll for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let events = loop {
        let events = run(&["events", "--type", "model.registered", "-o", "json"]);
        assert!(events.status.success(), "{events:?}");
        let events: Value = serde_json::from_slice(&events.stdout).unwrap();
        if events["events"][0]["data"]["name"] == "clied" || std::time::Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(events["events"][0]["data"]["name"], "clied", "{events}");
    let table = run(&["events"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("model.registered"));
}

#[tokio::test]
async fn events_owed_to_a_webhook_are_sent_after_a_restart_and_only_once() {
    // The first three attempts fail: the first before the restart, the
    // other two after it.
    let receiver = Receiver::start(vec![503, 503, 503]).await;
    let mut server = TestServer::start_with(&["--webhook-allow-private"]).await;
    let (status, created) = json_of(
        server
            .request(Method::POST, "/v1/webhooks")
            .json(&json!({"url": receiver.url, "events": ["model.registered"], "secret": SECRET}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    server
        .register_file("owed", "m.txt", b"1".to_vec(), json!({}))
        .await;
    let first = receiver.wait_for(|got| !got.is_empty()).await;
    let owed_id = first[0].headers["x-berth-delivery"].clone();

    // Killed while retrying: the event is still owed after the restart.
    server.kill9().await;
    server.start_again().await;
    let got = receiver.wait_for(|got| got.len() >= 4).await;
    assert!(
        got.iter().all(|d| d.headers["x-berth-delivery"] == owed_id),
        "{:?}",
        got.iter().map(Delivery::json).collect::<Vec<_>>()
    );
    assert_eq!(got[3].json()["data"]["name"], "owed");

    // Delivered: a second restart does not send it again; the next event is
    // the first thing the receiver gets.
    server.restart().await;
    server
        .register_file("next", "m.txt", b"2".to_vec(), json!({}))
        .await;
    let after = receiver.wait_for(|got| got.len() >= 5).await;
    assert_eq!(
        after.len(),
        5,
        "{:?}",
        after.iter().map(Delivery::json).collect::<Vec<_>>()
    );
    assert_eq!(after[4].json()["data"]["name"], "next");
    assert_ne!(after[4].headers["x-berth-delivery"], owed_id);
}

/// Reads SSE messages from `stream` until `count` arrived; returns their
/// (id, data) pairs.
async fn sse_messages<B: AsRef<[u8]>>(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<B>> + Unpin),
    count: usize,
) -> Vec<(Option<String>, String)> {
    let mut text = String::new();
    let mut out = Vec::new();
    while out.len() < count {
        if let Some(end) = text.find("\n\n") {
            let message: String = text.drain(..end + 2).collect();
            let mut id = None;
            let mut data = Vec::new();
            for line in message.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push(v.to_owned());
                }
            }
            out.push((id, data.join("\n")));
            continue;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("a message within 30 s")
            .expect("stream open")
            .unwrap();
        text.push_str(std::str::from_utf8(chunk.as_ref()).unwrap());
    }
    out
}

#[tokio::test]
async fn follow_routes_speak_server_sent_events_and_resume_after_the_last_event_id() {
    let server = TestServer::start().await;
    for name in ["first", "second", "third"] {
        server
            .register_file(name, "a.txt", b"a".to_vec(), json!({}))
            .await;
    }
    let response = server
        .request(Method::GET, "/v1/events?follow=true&type=model.registered")
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response.bytes_stream();
    let messages = sse_messages(&mut stream, 3).await;
    let names: Vec<String> = messages
        .iter()
        .map(|(_, data)| {
            serde_json::from_str::<Value>(data).unwrap()["data"]["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(names, ["first", "second", "third"]);
    let second_id = messages[1].0.clone().expect("each event carries its id");
    // A reconnecting EventSource sends Last-Event-ID: only what came after it.
    let response = server
        .request(Method::GET, "/v1/events?follow=true&type=model.registered")
        .header("accept", "text/event-stream")
        .header("last-event-id", second_id)
        .send()
        .await
        .unwrap();
    let mut stream = response.bytes_stream();
    let resumed = sse_messages(&mut stream, 1).await;
    let event: Value = serde_json::from_str(&resumed[0].1).unwrap();
    assert_eq!(event["data"]["name"], "third");

    // Logs: each line one message.
    server
        .deploy(
            "ssetail",
            &[("score.py", b"def init():\n    print('ready to score', flush=True)\n\ndef run(raw):\n    print('scored', flush=True)\n    return raw\n".as_slice())],
            &[],
            json!({"computeType": "local"}),
        )
        .await;
    let response = server
        .request(
            Method::GET,
            "/v1/services/ssetail/logs?follow=true&tail=100",
        )
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response.bytes_stream();
    assert_eq!(server.score("ssetail", "{}").await.status(), 200);
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|(_, d): &(Option<String>, String)| d.ends_with("stdout: scored"))
    {
        seen.extend(sse_messages(&mut stream, 1).await);
        assert!(seen.len() < 500, "{seen:?}");
    }
    assert!(
        seen.iter().all(|(_, data)| !data.contains('\n')),
        "one line per message: {seen:?}"
    );
}
