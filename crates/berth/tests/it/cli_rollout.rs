//! Progressive delivery from the CLI: rollout flags on `service update` become the
//! revision's `rollout` settings (a live change), bad flags and bad settings are
//! refused naming the fix, and the traffic verbs talk to their routes.

use std::path::Path;
use std::process::Output;

use serde_json::{Value, json};

use crate::harness::TestServer;

const SCORE: &[u8] = b"def init():\n    pass\n\n\ndef run(raw):\n    return raw\n";

fn run(server: &TestServer, cwd: &Path, args: &[&str]) -> Output {
    server.cli(cwd).args(args).output().expect("run berth")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn deploy(server: &TestServer, name: &str) {
    server
        .deploy(
            name,
            &[("score.py", SCORE)],
            &[],
            json!({"computeType": "aks", "numReplicas": 1, "authEnabled": false}),
        )
        .await;
}

#[tokio::test]
async fn rollout_flags_update_the_settings_live_and_bad_ones_name_the_fix() {
    let server = TestServer::start().await;
    deploy(&server, "ro-cli").await;
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &server,
        dir.path(),
        &[
            "service",
            "update",
            "-n",
            "ro-cli",
            "--strategy",
            "canary",
            "--canary-percent",
            "20",
            "--bake",
            "2m",
            "--max-p99-ms",
            "300",
            "--auto-rollback",
            "false",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = run(
        &server,
        dir.path(),
        &["service", "show", "-n", "ro-cli", "-o", "json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["servingRevision"], 2, "{shown}");
    let rollout = &shown["rollout"];
    assert_eq!(
        (
            &rollout["strategy"],
            &rollout["canaryPercent"],
            &rollout["bakeSeconds"],
            &rollout["maxP99Ms"],
            &rollout["autoRollback"]
        ),
        (
            &json!("canary"),
            &json!(20),
            &json!(120),
            &json!(300),
            &json!(false)
        ),
        "{shown}"
    );
    // The table renders too (the service's JSON parses with its rollout block).
    let out = run(&server, dir.path(), &["service", "show", "-n", "ro-cli"]);
    assert!(out.status.success(), "{}", text(&out));

    // A usage mistake never reaches the server: exit 2, the flag and its range named.
    let out = run(
        &server,
        dir.path(),
        &["service", "update", "-n", "ro-cli", "--canary-percent", "0"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--canary-percent"), "{}", text(&out));
    let out = run(
        &server,
        dir.path(),
        &["service", "traffic", "-n", "ro-cli", "--set", "1=90,2=20"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("sum to 110"), "{}", text(&out));

    // The server judges the merged settings: linear without a bake is refused.
    let out = run(
        &server,
        dir.path(),
        &[
            "service",
            "update",
            "-n",
            "ro-cli",
            "--strategy",
            "linear",
            "--bake",
            "0s",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("`rollout.bakeSeconds` is 0 for the linear strategy"),
        "{}",
        text(&out)
    );
    let (_, after) = server.get_json("/v1/services/ro-cli").await;
    assert_eq!(after["servingRevision"], 2, "nothing changed: {after}");
}

/// Needs the server's traffic and rollout routes.
#[tokio::test]
async fn traffic_shows_the_split_and_promote_without_a_rollout_fails() {
    let server = TestServer::start().await;
    deploy(&server, "ro-traffic").await;
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &server,
        dir.path(),
        &["service", "traffic", "-n", "ro-traffic", "-o", "json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let traffic: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(traffic["revisions"][0]["revision"], 1, "{traffic}");
    assert_eq!(traffic["revisions"][0]["weight"], 100, "{traffic}");
    let out = run(
        &server,
        dir.path(),
        &["service", "traffic", "-n", "ro-traffic"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("100%"),
        "{}",
        text(&out)
    );
    let out = run(
        &server,
        dir.path(),
        &["service", "promote", "-n", "ro-traffic"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("cannot promote the rollout of `ro-traffic`"),
        "{}",
        text(&out)
    );
}
