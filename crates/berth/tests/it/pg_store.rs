//! `berth server --store postgres://...`: the real binary on a real PostgreSQL
//! (the cluster `scripts/test.sh` started, `BERTH_TEST_POSTGRES_URL`, or one
//! this test process starts with `scripts/test-postgres.sh`), and
//! `berth admin migrate` from a server's SQLite store into PostgreSQL.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{TestServer, berth_bin};

const ECHO_MODEL: &[u8] = br#"
import json, os

def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.txt")) as f:
        model = f.read().strip()

def run(raw_data):
    return {"model": model, "input": json.loads(raw_data)}
"#;

static ADMIN_URL: OnceLock<String> = OnceLock::new();

/// The admin URL of the test cluster, started once per process when the test
/// script did not export one; a cluster that cannot start fails the test.
fn admin_url() -> String {
    ADMIN_URL
        .get_or_init(|| {
            if let Ok(url) = std::env::var("BERTH_TEST_POSTGRES_URL")
                && !url.trim().is_empty()
            {
                return url.trim().to_owned();
            }
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test-postgres.sh");
            let out = Command::new("bash")
                .arg(&script)
                .arg(std::process::id().to_string())
                .output()
                .expect("run scripts/test-postgres.sh");
            let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            assert!(
                out.status.success() && !url.is_empty(),
                "PostgreSQL tests need a cluster: set BERTH_TEST_POSTGRES_URL or let {} start one: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            url
        })
        .clone()
}

/// A new, empty database on the test cluster; returns its URL.
pub(crate) async fn fresh_database(tag: &str) -> String {
    let admin = admin_url();
    let name = format!(
        "berth_it_{tag}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test cluster at {admin}: {e}"));
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

async fn wait_scoring(server: &TestServer, service: &str, expect: Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let response = server.score(service, "2").await;
        if response.status() == 200 {
            let body: Value = response.json().await.unwrap();
            assert_eq!(body, expect);
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{service} does not serve: {}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_postgres_store_keeps_models_and_services_across_restarts_and_no_sqlite_file_is_made() {
    let url = fresh_database("server").await;
    let mut server = TestServer::start_with(&["--store", &url]).await;
    let (status, model) = server
        .register_file(
            "m",
            "model.txt",
            b"v1".to_vec(),
            json!({"tags": {"k": "v"}}),
        )
        .await;
    assert_eq!(status, 201, "{model}");
    assert_eq!(model["version"], 1);
    server
        .deploy(
            "pg-svc",
            &[("score.py", ECHO_MODEL)],
            &["m:1"],
            json!({"computeType": "local"}),
        )
        .await;
    wait_scoring(&server, "pg-svc", json!({"model": "v1", "input": 2})).await;
    let (_, models_before) = server.get_json("/v1/models").await;

    server.restart().await;
    let (status, models_after) = server.get_json("/v1/models").await;
    assert_eq!(status, 200);
    assert_eq!(models_before, models_after);
    let (status, service) = server.get_json("/v1/services/pg-svc").await;
    assert_eq!(status, 200, "{service}");
    assert_eq!(service["servingRevision"], 1);
    wait_scoring(&server, "pg-svc", json!({"model": "v1", "input": 2})).await;
    let (_, model) = server
        .register_file("m", "model.txt", b"v2".to_vec(), json!({}))
        .await;
    assert_eq!(model["version"], 2, "versioning continues after a restart");
    assert!(
        server.log().contains("metadata store open"),
        "{}",
        server.log()
    );
    assert!(
        !server.data_dir().join("berth.db").exists(),
        "--store postgres:// must not create a SQLite file"
    );
}

#[tokio::test]
async fn a_bad_store_url_is_refused_naming_the_flag_the_value_and_the_forms() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(berth_bin())
        .arg("server")
        .arg("--data")
        .arg(data.path())
        .args(["--addr", "127.0.0.1:0", "--store", "mysql://u:hunter2@h/db"])
        .env_remove("BERTH_DATA")
        .env_remove("BERTH_STORE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`--store` is `mysql://u:***@h/db`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("sqlite://PATH") && stderr.contains("postgres://"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(!data.path().join("berth.db").exists());
}

#[tokio::test]
async fn admin_migrate_moves_a_sqlite_workspace_to_postgres() {
    let mut server = TestServer::start().await;
    server
        .register_file("m", "model.txt", b"moved".to_vec(), json!({}))
        .await;
    server
        .register_file("m", "model.txt", b"second".to_vec(), json!({}))
        .await;
    let (_, before) = server.get_json("/v1/models").await;
    let url = fresh_database("migrate").await;
    let db = server.data_dir().join("berth.db");
    let migrate = |to: &str| {
        Command::new(berth_bin())
            .args(["admin", "migrate", "--from"])
            .arg(format!("sqlite://{}", db.display()))
            .args(["--to", to])
            .output()
            .unwrap()
    };
    let running = migrate(&url);
    assert!(
        !running.status.success(),
        "a running source server is refused"
    );
    assert!(
        String::from_utf8_lossy(&running.stderr).contains("stop it first"),
        "{}",
        String::from_utf8_lossy(&running.stderr)
    );
    assert!(server.stop().await.success());

    let out = migrate(&url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let models_line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("models "))
        .unwrap_or_else(|| panic!("no models count: {stdout}"));
    assert_eq!(
        models_line.split_whitespace().collect::<Vec<_>>(),
        ["models", "2"]
    );
    assert!(stdout.contains("blobs: not copied"), "{stdout}");

    let again = migrate(&url);
    assert!(!again.status.success(), "a non-empty target is refused");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // The same data directory (its blobs stay there), now on PostgreSQL.
    std::fs::remove_file(&db).unwrap();
    server.push_args(&["--store", &url]);
    server.start_again().await;
    let (_, after) = server.get_json("/v1/models").await;
    assert_eq!(before, after);
    let bytes = server
        .request(Method::GET, "/v1/models/m/versions/1/content")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"moved");
    assert!(!server.data_dir().join("berth.db").exists());
}

#[tokio::test]
async fn admin_migrate_with_blobs_to_moves_metadata_to_postgres_and_blobs_to_s3() {
    use berth_server::blobs::test_s3;
    let mut server = TestServer::start().await;
    server
        .register_file("m", "model.txt", b"to the bucket".to_vec(), json!({}))
        .await;
    let (_, before) = server.get_json("/v1/models").await;
    assert!(server.stop().await.success());
    let db = server.data_dir().join("berth.db");
    let url = fresh_database("migrate_blobs").await;
    let bucket = test_s3::bucket("it-migrate-blobs").await;
    let blobs_url = format!("s3://{bucket}/berth?path_style=true");
    let endpoint = test_s3::endpoint();
    let s3_env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_REGION", test_s3::REGION),
        ("AWS_ACCESS_KEY_ID", test_s3::ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", test_s3::SECRET_ACCESS_KEY),
    ];
    let migrate = |blobs_to: &str| {
        Command::new(berth_bin())
            .args(["admin", "migrate", "--from"])
            .arg(format!("sqlite://{}", db.display()))
            .args(["--to", &url, "--blobs-to", blobs_to])
            .envs(s3_env)
            .output()
            .unwrap()
    };

    let bad = migrate("ftp://nowhere");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        stderr.contains("`--blobs-to` is `ftp://nowhere`") && stderr.contains("s3://"),
        "{stderr}"
    );

    let out = migrate(&blobs_url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("blobs: 1 copied") && stdout.contains("verified by digest"),
        "{stdout}"
    );
    let keys: Vec<String> = test_s3::list_keys(&bucket)
        .await
        .into_iter()
        .filter(|k| k.starts_with("berth/sha256/"))
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");

    // A new server with a new data directory: metadata from PostgreSQL, content from the bucket.
    let moved =
        TestServer::start_with_env(&["--store", &url, "--blobs", &blobs_url], &s3_env).await;
    let (_, after) = moved.get_json("/v1/models").await;
    assert_eq!(before, after);
    let bytes = moved
        .request(Method::GET, "/v1/models/m/versions/1/content")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"to the bucket");
}
