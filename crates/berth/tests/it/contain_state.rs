//! State that cannot be trusted is not served: a lost or damaged
//! `berth.db-wal`, or a database older than the data directory proves, stops
//! the server at start-up naming the inconsistency and the recovery commands;
//! `berth admin backup`/`restore` (SQLite online backup) recover it, and
//! `berth admin verify` checks every blob against its digest.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{TestServer, berth_bin};

fn admin(data: &Path, args: &[&str]) -> Output {
    Command::new(berth_bin())
        .arg("admin")
        .args(args)
        .arg("--data")
        .arg(data)
        .env_remove("BERTH_DATA")
        .output()
        .expect("run berth admin")
}

/// Starts `berth server` on `data` expecting it to refuse; returns its stderr.
fn refused_start(data: &Path) -> String {
    let mut child = Command::new(berth_bin())
        .arg("server")
        .arg("--data")
        .arg(data)
        .args(["--addr", "127.0.0.1:0"])
        .env_remove("BERTH_DATA")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn berth server");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            assert!(
                !status.success(),
                "the server should refuse to start: {stderr}"
            );
            return stderr;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "the server started on an untrusted store: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn register_models(server: &TestServer, names: &[&str]) {
    for name in names {
        let (status, body) = server
            .register_file(name, "m.txt", name.as_bytes().to_vec(), json!({}))
            .await;
        assert_eq!(status, 201, "{body}");
    }
}

/// Waits until the watermark has caught up with `events` events.
async fn wait_watermark(data: &Path, events: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mark = std::fs::read_to_string(data.join("store-watermark"))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if mark >= events {
            return;
        }
        assert!(Instant::now() < deadline, "watermark stuck at {mark}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn model_names(server: &TestServer) -> Vec<String> {
    let (status, body) = server.get_json("/v1/models").await;
    assert_eq!(status, 200, "{body}");
    let mut names: Vec<String> = body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_lost_wal_stops_the_server_and_a_backup_restores_the_workspace() {
    let mut server = TestServer::start().await;
    register_models(&server, &["first", "second"]).await;
    let data = server.data_dir().to_owned();
    let backup = tempfile::tempdir().unwrap();
    let file = backup.path().join("berth-backup.db");
    // Online: the server keeps running.
    let out = admin(&data, &["backup", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    register_models(&server, &["third"]).await;
    wait_watermark(&data, 3).await;
    server.kill9().await;

    let wal = data.join("berth.db-wal");
    assert!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > 0,
        "a killed server leaves its WAL"
    );
    std::fs::remove_file(&wal).unwrap();
    let _ = std::fs::remove_file(data.join("berth.db-shm"));

    let stderr = refused_start(&data);
    for needle in [
        "cannot be trusted",
        "older than the data directory",
        "berth admin restore",
        "berth admin accept-store",
    ] {
        assert!(stderr.contains(needle), "{needle:?} in {stderr}");
    }

    let out = admin(&data, &["restore", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    server.start_again().await;
    assert_eq!(model_names(&server).await, ["first", "second"]);
    // The workspace goes on from the backup.
    register_models(&server, &["fourth"]).await;
    assert_eq!(model_names(&server).await, ["first", "fourth", "second"]);
}

#[tokio::test]
async fn a_damaged_wal_stops_the_server_naming_it() {
    let mut server = TestServer::start().await;
    register_models(&server, &["only"]).await;
    let data = server.data_dir().to_owned();
    wait_watermark(&data, 1).await;
    server.kill9().await;
    let wal = data.join("berth.db-wal");
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&wal, bytes).unwrap();

    let stderr = refused_start(&data);
    assert!(stderr.contains("berth.db-wal` is damaged"), "{stderr}");
    assert!(stderr.contains("berth admin restore"), "{stderr}");
}

#[tokio::test]
async fn a_revision_laid_out_beyond_the_database_stops_the_server_until_accepted() {
    let mut server = TestServer::start().await;
    server
        .deploy(
            "laid",
            &[(
                "score.py",
                b"def init():\n    pass\n\ndef run(raw):\n    return 1\n",
            )],
            &[],
            json!({}),
        )
        .await;
    server.stop().await;
    let data = server.data_dir().to_owned();
    let ghost = data.join("services").join("laid").join("r9");
    std::fs::create_dir_all(&ghost).unwrap();
    std::fs::write(ghost.join(".complete"), b"").unwrap();

    let stderr = refused_start(&data);
    assert!(
        stderr.contains("service `laid` has revision 9 laid out"),
        "{stderr}"
    );
    let out = admin(&data, &["accept-store"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!ghost.exists(), "the unknown lay-out is removed");
    server.start_again().await;
    // The service comes back from the accepted store.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = server.score("laid", "{}").await.status();
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the service did not come back: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn verify_checks_every_blob_against_its_digest() {
    let mut server = TestServer::start().await;
    register_models(&server, &["alpha", "beta"]).await;
    server.stop().await;
    let data = server.data_dir().to_owned();
    let out = admin(&data, &["verify"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2 blob(s)"),
        "{out:?}"
    );

    let digest = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(b"alpha"));
    let blob = data.join("blobs/sha256").join(&digest[..2]).join(&digest);
    assert!(blob.exists(), "{}", blob.display());
    std::fs::write(&blob, b"tampered").unwrap();
    let out = admin(&data, &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&digest) && stderr.contains("corrupted"),
        "{stderr}"
    );
    std::fs::remove_file(&blob).unwrap();
    let out = admin(&data, &["verify"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing"),
        "{out:?}"
    );
}
