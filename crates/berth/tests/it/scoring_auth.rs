//! Scoring credentials: key regeneration under load, keys that survive updates
//! and restarts, and workspace-signed tokens scoped to one service.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{TestServer, assert_error, json_of};

const ECHO: &[u8] = b"def init():\n    pass\ndef run(raw):\n    return raw\n";

async fn score_with(server: &TestServer, service: &str, credential: &str) -> u16 {
    server
        .http
        .post(server.url(&format!("/api/v1/service/{service}/score")))
        .bearer_auth(credential)
        .body("x")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn regenerating_the_primary_key_under_load_never_fails_the_secondary() {
    let mut server = TestServer::start().await;
    server
        .deploy(
            "keyed",
            &[("score.py", ECHO)],
            &[],
            json!({"computeType": "aks", "numReplicas": 1, "authEnabled": true}),
        )
        .await;
    let (_, keys) = server.get_json("/v1/services/keyed/keys").await;
    let old_primary = keys["primaryKey"].as_str().unwrap().to_owned();
    let secondary = keys["secondaryKey"].as_str().unwrap().to_owned();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = server.url("/api/v1/service/keyed/score");
    let load = {
        let (stop, url, secondary) = (stop.clone(), url.clone(), secondary.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Acquire) && statuses.len() < 20_000 {
                let r = http
                    .post(&url)
                    .bearer_auth(&secondary)
                    .body("x")
                    .send()
                    .await
                    .unwrap();
                statuses.push(r.status().as_u16());
            }
            statuses
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, accepted) = json_of(
        server
            .request(Method::POST, "/v1/services/keyed/regenerateKeys")
            .json(&json!({"keyType": "primary"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let op = server
        .wait_operation(accepted["operation"]["id"].as_str().unwrap())
        .await;
    assert_eq!(op["state"], "Succeeded", "{op}");
    assert_eq!(op["operationType"], "RegenerateKey");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    let statuses = load.await.unwrap();
    assert!(statuses.len() > 5);
    assert!(
        statuses.iter().all(|s| *s == 200),
        "requests with the secondary failed: {statuses:?}"
    );

    let (_, keys) = server.get_json("/v1/services/keyed/keys").await;
    let new_primary = keys["primaryKey"].as_str().unwrap().to_owned();
    assert_ne!(new_primary, old_primary);
    assert_eq!(keys["secondaryKey"], secondary.as_str());
    assert_eq!(score_with(&server, "keyed", &old_primary).await, 401);
    assert_eq!(score_with(&server, "keyed", &new_primary).await, 200);
    let (_, service) = server.get_json("/v1/services/keyed").await;
    assert_eq!(service["state"], "Healthy");

    let chosen = "chosen-secondary-key-0123456789";
    let out = server
        .cli(server.data_dir())
        .args([
            "service",
            "regen-key",
            "-n",
            "keyed",
            "-k",
            "Secondary",
            "--value",
            chosen,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = json_of(
        server
            .request(Method::POST, "/v1/services/keyed/regenerateKeys")
            .json(&json!({"keyType": "Tertiary"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&bad, 400, "invalid_argument", "`Primary` or `Secondary`");

    // Keys survive an update and a restart.
    let op = {
        let (status, accepted) = json_of(
            server
                .request(Method::PATCH, "/v1/services/keyed")
                .json(&json!({"scoringTimeoutMs": 9000}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 202);
        server
            .wait_operation(accepted["operation"]["id"].as_str().unwrap())
            .await
    };
    assert_eq!(op["state"], "Succeeded");
    server.restart().await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while score_with(&server, "keyed", chosen).await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "keys lost: {}",
            server.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(score_with(&server, "keyed", &new_primary).await, 200);
    assert!(
        !server.log().contains(&new_primary),
        "keys never reach the log"
    );
}

#[tokio::test]
async fn tokens_are_scoped_to_one_service_and_auth_modes_switch_in_one_change() {
    let server = TestServer::start().await;
    let token_auth = json!({"computeType": "aks", "numReplicas": 1, "authEnabled": false, "tokenAuthEnabled": true});
    server
        .deploy("tok-a", &[("score.py", ECHO)], &[], token_auth.clone())
        .await;
    server
        .deploy("tok-b", &[("score.py", ECHO)], &[], token_auth)
        .await;
    let (status, token) = json_of(
        server
            .request(Method::POST, "/v1/services/tok-a/token")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["tokenType"], "Bearer");
    assert!(token["refreshAfter"].as_u64().unwrap() < token["expiryOn"].as_u64().unwrap());
    let access = token["accessToken"].as_str().unwrap();
    assert_eq!(score_with(&server, "tok-a", access).await, 200);
    assert_eq!(
        score_with(&server, "tok-b", access).await,
        401,
        "scoped to tok-a"
    );
    let anonymous = server.score("tok-a", "x").await;
    assert_eq!(anonymous.status(), 401);
    let body: Value = anonymous.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("berth service token")
    );

    // Switching to key auth must turn token auth off in the same change.
    let (status, refused) = json_of(
        server
            .request(Method::PATCH, "/v1/services/tok-a")
            .json(&json!({"authEnabled": true}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(
        &(status, refused),
        400,
        "invalid_argument",
        "`tokenAuthEnabled: false` in the same change",
    );
    let (status, accepted) = json_of(
        server
            .request(Method::PATCH, "/v1/services/tok-a")
            .json(&json!({"authEnabled": true, "tokenAuthEnabled": false}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202);
    let op = server
        .wait_operation(accepted["operation"]["id"].as_str().unwrap())
        .await;
    assert_eq!(op["state"], "Succeeded");
    assert_eq!(
        score_with(&server, "tok-a", access).await,
        401,
        "tokens no longer count"
    );
    let (_, keys) = server.get_json("/v1/services/tok-a/keys").await;
    assert_eq!(
        score_with(&server, "tok-a", keys["primaryKey"].as_str().unwrap()).await,
        200
    );
    let no_tokens = json_of(
        server
            .request(Method::POST, "/v1/services/tok-a/token")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(
        &no_tokens,
        400,
        "invalid_argument",
        "does not use token auth",
    );
}

#[tokio::test]
async fn admission_queues_then_503s_and_oversized_bodies_get_413() {
    let server = TestServer::start_with(&["--max-request-bytes", "1000"]).await;
    let slow: &[u8] =
        b"import time\ndef init():\n    pass\ndef run(raw):\n    time.sleep(0.5)\n    return raw\n";
    server
        .deploy(
            "narrow",
            &[("score.py", slow)],
            &[],
            json!({"computeType": "aks", "numReplicas": 1, "authEnabled": false,
                   "maxConcurrentRequestsPerContainer": 1, "maxQueueWaitMs": 100}),
        )
        .await;
    let sends = (0..3).map(|_| server.score("narrow", "\"x\""));
    let responses = futures_util::future::join_all(sends).await;
    let mut statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort();
    assert_eq!(statuses[0], 200, "one request is admitted: {statuses:?}");
    assert_eq!(statuses[2], 503, "the queue wait is bounded: {statuses:?}");
    let refused = responses.iter().find(|r| r.status() == 503).unwrap();
    assert_eq!(refused.headers()["retry-after"], "1");

    let big = server.score("narrow", &"x".repeat(2000)).await;
    assert_eq!(big.status(), 413);
    let body: Value = big.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("1000 bytes"));
}
