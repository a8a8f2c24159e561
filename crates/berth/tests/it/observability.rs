//! Metrics, request logs and data collection against the real server and real
//! Python workers: `/metrics` needs the workspace token and moves by exactly
//! the requests sent; collected data holds exactly the requests sent; request
//! logs follow `appInsightsEnabled`, with bodies only on opt-in, applied live.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::TestServer;

const ECHO: &[u8] = br#"
import json, os

def init():
    pass

def run(raw):
    if raw == '{"fail": true}':
        raise ValueError("asked to fail")
    return {"echo": raw, "pid": os.getpid()}
"#;

async fn deploy(server: &TestServer, name: &str, dc: Value) {
    server
        .register_file("weights", "model.txt", b"w".to_vec(), json!({}))
        .await;
    server
        .deploy(name, &[("score.py", ECHO)], &["weights:1"], dc)
        .await;
}

pub async fn scrape(server: &TestServer) -> String {
    let response = server
        .request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        response.headers()
    );
    response.text().await.unwrap()
}

/// The value of the series `name{labels}`, or `None` if it is not exposed.
fn series(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name_and_labels} ")))
        .map(|v| v.parse().unwrap())
}

pub fn value(text: &str, name_and_labels: &str) -> f64 {
    series(text, name_and_labels)
        .unwrap_or_else(|| panic!("no series `{name_and_labels}` in:\n{text}"))
}

async fn score_with(
    server: &TestServer,
    service: &str,
    id: &str,
    body: &str,
    key: Option<&str>,
) -> (u16, Value) {
    let mut request = server
        .http
        .post(server.url(&format!("/api/v1/service/{service}/score")))
        .header("content-type", "application/json")
        .header("x-request-id", id)
        .body(body.to_owned());
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Waits until `read` gives at least `n` lines; returns them.
async fn wait_lines<F: Fn() -> Vec<String>>(n: usize, read: F) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines = read();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn jsonl_under(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return lines;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            lines.extend(jsonl_under(&path));
        } else if let Ok(text) = std::fs::read_to_string(&path) {
            lines.extend(text.lines().map(str::to_owned));
        }
    }
    lines
}

async fn request_log(server: &TestServer, service: &str) -> Vec<Value> {
    let (status, body) = server
        .get_json(&format!(
            "/v1/services/{service}/logs?requests=true&tail=100"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    body["content"]
        .as_str()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn patch(server: &TestServer, service: &str, body: Value) {
    let op = crate::harness::update(server, service, body).await;
    assert_eq!(op["state"], "Succeeded", "{op}");
}

#[tokio::test]
async fn metrics_need_the_token_and_move_by_exactly_the_requests_sent() {
    let server = TestServer::start().await;
    let anonymous = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = server
        .http
        .get(server.url("/metrics"))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    deploy(
        &server,
        "metered",
        json!({"computeType": "local", "authEnabled": true}),
    )
    .await;
    let (_, keys) = server.get_json("/v1/services/metered/keys").await;
    let key = keys["primaryKey"].as_str().unwrap().to_owned();
    let labels = "service=\"metered\",revision=\"1\"";
    let before = scrape(&server).await;
    assert_eq!(
        value(
            &before,
            &format!("berth_requests_total{{{labels},code=\"2xx\"}}")
        ),
        0.0
    );
    assert_eq!(
        value(&before, &format!("berth_replicas_ready{{{labels}}}")),
        1.0
    );
    assert_eq!(
        value(&before, &format!("berth_replicas_desired{{{labels}}}")),
        1.0
    );
    assert_eq!(
        value(&before, &format!("berth_queue_depth{{{labels}}}")),
        0.0
    );
    assert_eq!(
        value(&before, &format!("berth_requests_in_flight{{{labels}}}")),
        0.0
    );
    assert_eq!(
        value(
            &before,
            "berth_operations_total{type=\"Create\",outcome=\"Succeeded\"}"
        ),
        1.0
    );
    // The first deploy built the default environment.
    assert_eq!(
        value(
            &before,
            "berth_environment_build_duration_seconds_count{outcome=\"succeeded\"}"
        ),
        1.0
    );
    assert!(before.contains("# TYPE berth_request_overhead_seconds histogram\n"));

    for i in 0..5 {
        let (status, _) =
            score_with(&server, "metered", &format!("ok-{i}"), "[1]", Some(&key)).await;
        assert_eq!(status, 200);
    }
    for i in 0..3 {
        let (status, _) = score_with(&server, "metered", &format!("anon-{i}"), "[1]", None).await;
        assert_eq!(status, 401);
    }
    for i in 0..2 {
        let (status, _) = score_with(
            &server,
            "metered",
            &format!("fail-{i}"),
            r#"{"fail": true}"#,
            Some(&key),
        )
        .await;
        assert_eq!(status, 500);
    }

    let after = scrape(&server).await;
    assert_eq!(
        value(
            &after,
            &format!("berth_requests_total{{{labels},code=\"2xx\"}}")
        ),
        5.0
    );
    assert_eq!(
        value(
            &after,
            &format!("berth_requests_total{{{labels},code=\"4xx\"}}")
        ),
        3.0
    );
    assert_eq!(
        value(
            &after,
            &format!("berth_requests_total{{{labels},code=\"5xx\"}}")
        ),
        2.0
    );
    for histogram in [
        "berth_request_duration_seconds",
        "berth_request_queued_seconds",
        "berth_request_run_seconds",
        "berth_request_overhead_seconds",
    ] {
        assert_eq!(
            value(&after, &format!("{histogram}_count{{{labels}}}")),
            10.0,
            "{histogram}"
        );
        assert_eq!(
            value(
                &after,
                &format!("{histogram}_bucket{{{labels},le=\"+Inf\"}}")
            ),
            10.0,
            "{histogram}"
        );
    }
    assert_eq!(
        value(
            &after,
            &format!("berth_capacity_rejections_total{{{labels}}}")
        ),
        0.0
    );
    assert_eq!(
        value(&after, &format!("berth_scoring_timeouts_total{{{labels}}}")),
        0.0
    );
    assert!(
        value(
            &after,
            &format!("berth_request_duration_seconds_sum{{{labels}}}")
        ) > 0.0
    );
    assert_eq!(
        value(&after, "berth_replica_restarts_total{service=\"metered\"}"),
        0.0
    );

    // A live update switches the series to the new revision; the old one is dropped.
    patch(&server, "metered", json!({"scoringTimeoutMs": 30000})).await;
    let (status, _) = score_with(&server, "metered", "after-update", "[1]", Some(&key)).await;
    assert_eq!(status, 200);
    let updated = scrape(&server).await;
    assert_eq!(
        value(
            &updated,
            "berth_requests_total{service=\"metered\",revision=\"2\",code=\"2xx\"}"
        ),
        1.0
    );
    assert_eq!(
        series(
            &updated,
            &format!("berth_requests_total{{{labels},code=\"2xx\"}}")
        ),
        None,
        "{updated}"
    );
    assert_eq!(
        value(
            &updated,
            "berth_operations_total{type=\"Update\",outcome=\"Succeeded\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn data_collection_files_hold_exactly_the_requests_sent_and_nothing_when_off() {
    let server = TestServer::start().await;
    deploy(
        &server,
        "collected",
        json!({"computeType": "local", "dataCollection": {"storageEnabled": true}}),
    )
    .await;
    deploy(&server, "uncollected", json!({"computeType": "local"})).await;

    let inputs = [r#"{"x": 1}"#, r#"[1, 2, 3]"#, "plain text", r#"{"x": 4}"#];
    for (i, input) in inputs.iter().enumerate() {
        let (status, _) = score_with(&server, "collected", &format!("dc-{i}"), input, None).await;
        assert_eq!(status, 200);
        let (status, _) = score_with(&server, "uncollected", &format!("no-{i}"), input, None).await;
        assert_eq!(status, 200);
    }
    let root = server.data_dir().join("datacollection");
    let lines = wait_lines(inputs.len(), || jsonl_under(&root.join("collected"))).await;
    assert_eq!(lines.len(), inputs.len(), "{lines:?}");
    let mut samples: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    samples.sort_by_key(|s| s["requestId"].as_str().unwrap().to_owned());
    for (i, (sample, input)) in samples.iter().zip(inputs).enumerate() {
        assert_eq!(sample["requestId"], format!("dc-{i}"));
        assert_eq!(sample["revision"], 1);
        assert_eq!(sample["models"], json!(["weights:1"]));
        assert_eq!(sample["status"], 200);
        let expected_input: Value =
            serde_json::from_str(input).unwrap_or_else(|_| Value::String(input.to_owned()));
        assert_eq!(sample["input"], expected_input, "{sample}");
        assert_eq!(sample["output"]["echo"], *input, "{sample}");
        assert!(sample["time"].as_str().unwrap().ends_with('Z'));
    }
    // One file, under the UTC date of the requests.
    let time = samples[0]["time"].as_str().unwrap();
    let file = root
        .join("collected")
        .join(&time[0..4])
        .join(&time[5..7])
        .join(&time[8..10])
        .join("data.jsonl");
    assert!(file.exists(), "{}", file.display());
    assert!(!root.join("uncollected").exists());
    let text = scrape(&server).await;
    assert_eq!(
        value(
            &text,
            "berth_datacollection_dropped_total{service=\"collected\"}"
        ),
        0.0
    );
}

#[tokio::test]
async fn request_logs_follow_app_insights_with_bodies_only_on_opt_in_applied_live() {
    let server = TestServer::start().await;
    deploy(&server, "logged", json!({"computeType": "local"})).await;
    let (_, first) = score_with(&server, "logged", "quiet-0", "[0]", None).await;
    let pid = first["pid"].clone();
    assert!(request_log(&server, "logged").await.is_empty());

    patch(&server, "logged", json!({"appInsightsEnabled": true})).await;
    for i in 0..3 {
        let (status, body) = score_with(&server, "logged", &format!("log-{i}"), "[1]", None).await;
        assert_eq!(status, 200);
        assert_eq!(
            body["pid"], pid,
            "the change must apply to the running worker"
        );
    }
    let read = || {
        let path = server.data_dir().join("logs/logged/requests.log");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(wait_lines(3, read).await.len(), 3);
    let lines = request_log(&server, "logged").await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["requestId"], format!("log-{i}"));
        assert_eq!(line["service"], "logged");
        assert_eq!(line["revision"], 2);
        assert_eq!(line["method"], "POST");
        assert_eq!(line["status"], 200);
        assert_eq!(line["requestBytes"], 3);
        assert_eq!(line["replica"], 0);
        assert!(line["responseBytes"].as_u64().unwrap() > 0);
        let total = line["totalMs"].as_f64().unwrap();
        let parts = line["queuedMs"].as_f64().unwrap()
            + line["runMs"].as_f64().unwrap()
            + line["overheadMs"].as_f64().unwrap();
        assert!((total - parts).abs() < 0.01, "{line}");
        assert!(line.get("requestBody").is_none(), "{line}");
        assert!(line.get("responseBody").is_none(), "{line}");
    }

    patch(&server, "logged", json!({"requestLogBodies": true})).await;
    let (_, body) = score_with(&server, "logged", "bodies", r#"{"a": 1}"#, None).await;
    assert_eq!(body["pid"], pid);
    assert_eq!(wait_lines(4, read).await.len(), 4);
    let lines = request_log(&server, "logged").await;
    let last = &lines[3];
    assert_eq!(last["requestId"], "bodies");
    assert_eq!(last["revision"], 3);
    assert_eq!(last["requestBody"], json!({"a": 1}));
    assert_eq!(last["responseBody"]["echo"], r#"{"a": 1}"#);

    let dir = tempfile::tempdir().unwrap();
    let out = server
        .cli(dir.path())
        .args([
            "service",
            "logs",
            "-n",
            "logged",
            "--requests",
            "--tail",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(printed.len(), 2);
    assert_eq!(printed[0]["requestId"], "log-2");
    assert_eq!(printed[1]["requestId"], "bodies");

    let (status, body) = server
        .get_json("/v1/services/logged/logs?requests=true&follow=true")
        .await;
    assert_eq!(status, 400, "{body}");
}
