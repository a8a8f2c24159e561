//! With `maxConcurrentRequestsPerContainer` 1 the gateway queues one request in each worker
//! behind the one it runs. What a caller sees must not change: a request refused at
//! `maxQueueWaitMs` is refused then (not when the worker gets to it) and never runs, and
//! `scoringTimeoutMs` counts from when a request's `run()` starts, not from when it was
//! queued.

use std::time::Instant;

use serde_json::{Value, json};

use crate::harness::TestServer;

/// `run()` sleeps as long as the body says (seconds) and answers how many calls this worker
/// has run so far, itself included.
const COUNTING: &[u8] = b"import time\ncalls = 0\ndef init():\n    pass\ndef run(raw):\n    global calls\n    calls += 1\n    time.sleep(float(raw))\n    return calls\n";

async fn deploy(server: &TestServer, name: &str, queue_wait_ms: u64, timeout_ms: u64) {
    server
        .deploy(
            name,
            &[("score.py", COUNTING)],
            &[],
            json!({"computeType": "aks", "numReplicas": 1, "authEnabled": false,
                   "maxConcurrentRequestsPerContainer": 1, "maxQueueWaitMs": queue_wait_ms,
                   "scoringTimeoutMs": timeout_ms}),
        )
        .await;
}

#[tokio::test]
async fn requests_refused_at_the_queue_wait_are_refused_then_and_never_run() {
    let server = TestServer::start().await;
    deploy(&server, "serial", 200, 60_000).await;
    let started = Instant::now();
    let sends = (0..3).map(|_| async {
        let response = server.score("serial", "1.5").await;
        (response.status().as_u16(), started.elapsed())
    });
    let mut answers = futures_util::future::join_all(sends).await;
    answers.sort();
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(statuses, [200, 503, 503], "one runs, two wait too long");
    // Refused at maxQueueWaitMs, not once the 1.5 s run() ahead of them ended.
    assert!(
        answers[1].1 < answers[0].1 && answers[2].1 < answers[0].1,
        "the 503s came after the 200: {answers:?}"
    );
    // The worker skipped both refused requests: this is its second run() call.
    let next = server.score("serial", "0").await;
    assert_eq!(next.status(), 200);
    assert_eq!(next.json::<Value>().await.unwrap(), json!(2));
}

#[tokio::test]
async fn the_scoring_timeout_of_a_queued_request_runs_from_its_start() {
    let server = TestServer::start().await;
    // Each run() takes 0.5 s; the second request waits 0.5 s behind the first and then runs
    // 0.5 s: 1 s after it was sent, within its 0.9 s timeout counted from its start.
    deploy(&server, "queued", 10_000, 900).await;
    let (first, second) = tokio::join!(server.score("queued", "0.5"), async {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        server.score("queued", "0.5").await
    });
    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200, "{:?}", second.text().await);
    // A run() longer than the timeout is still cut at the timeout, counted from its start.
    let (slow, behind) = tokio::join!(server.score("queued", "5"), async {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        server.score("queued", "0").await
    });
    assert_eq!(slow.status(), 504);
    assert!(
        matches!(behind.status().as_u16(), 503),
        "the request queued behind the recycled replica was not run: {}",
        behind.status()
    );
}
