//! Test support: a real S3-compatible server (moto) for the blob tests.
//!
//! `scripts/test.sh` starts one (`scripts/test-s3.sh`) and exports its endpoint as
//! `BERTH_TEST_S3_ENDPOINT`; without it, the first test of a process starts its own moto through
//! `scripts/moto_server.py` (it ends with the process) and panics with the fix when it cannot.
//! Tests never skip for want of it. Each test uses a fresh bucket.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The variable carrying the shared server's endpoint.
pub const ENDPOINT_VAR: &str = "BERTH_TEST_S3_ENDPOINT";
/// Credentials the tests hand to the S3 client (moto accepts any).
pub const ACCESS_KEY_ID: &str = "berth-test";
/// See [`ACCESS_KEY_ID`].
pub const SECRET_ACCESS_KEY: &str = "berth-test-secret";
/// Region the tests use.
pub const REGION: &str = "us-east-1";

/// The moto this process started, kept alive (its stdin open) until the process ends.
static OWN: OnceLock<Mutex<(Child, ChildStdin)>> = OnceLock::new();
static ENDPOINT: OnceLock<String> = OnceLock::new();

fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The endpoint of the S3 server the tests use, starting one when the test script did not.
pub fn endpoint() -> String {
    ENDPOINT
        .get_or_init(|| match std::env::var(ENDPOINT_VAR) {
            Ok(url) if !url.is_empty() => url,
            _ => start_own(),
        })
        .clone()
}

fn start_own() -> String {
    let root = repo_root();
    let venv_python = root.join("target/moto-venv/bin/python");
    let python = if venv_python.exists() {
        venv_python
    } else {
        "python3".into()
    };
    let script = root.join("scripts/moto_server.py");
    let fix = "install moto with `bash scripts/test-s3.sh` (it creates target/moto-venv), or export \
               BERTH_TEST_S3_ENDPOINT with the URL of a running S3-compatible server";
    let log_path = std::env::temp_dir().join(format!("berth-moto-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path)
        .unwrap_or_else(|e| panic!("create {}: {e}", log_path.display()));
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} {}: {e}; {fix}",
                python.display(),
                script.display()
            )
        });
    let mut line = String::new();
    let read = child
        .stdout
        .take()
        .map(|out| BufReader::new(out).read_line(&mut line));
    let url = line.trim().to_owned();
    if !matches!(read, Some(Ok(n)) if n > 0) || !url.starts_with("http://") {
        let status = child.wait().ok();
        let output = std::fs::read_to_string(&log_path).unwrap_or_default();
        panic!("the S3 test server (moto) did not start (exit {status:?}): {output}\n{fix}");
    }
    let _ = std::fs::remove_file(&log_path);
    let stdin = child
        .stdin
        .take()
        .unwrap_or_else(|| panic!("moto's stdin is piped"));
    let _ = OWN.set(Mutex::new((child, stdin)));
    url
}

/// A fresh bucket on the test server, named after `test` plus a random suffix.
pub async fn bucket(test: &str) -> String {
    let clean: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(30)
        .collect();
    let name = format!(
        "{clean}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let response = reqwest::Client::new()
        .put(format!("{}/{name}", endpoint()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket {name}: {e}"));
    assert!(
        response.status().is_success(),
        "create bucket {name}: {}",
        response.status()
    );
    name
}

/// Query options that point the S3 client at the test server.
pub fn url_options() -> String {
    format!(
        "endpoint={}&allow_http=true&region={REGION}&access_key_id={ACCESS_KEY_ID}&secret_access_key={SECRET_ACCESS_KEY}",
        endpoint()
    )
}

/// Every key in `bucket` (raw S3 listing, not through the blob store).
pub async fn list_keys(bucket: &str) -> Vec<String> {
    let text = get_text(&format!("{}/{bucket}?list-type=2", endpoint())).await;
    tag_values(&text, "Key")
}

/// The keys of the multipart uploads in progress in `bucket`.
pub async fn list_multipart_uploads(bucket: &str) -> Vec<String> {
    let text = get_text(&format!("{}/{bucket}?uploads", endpoint())).await;
    tag_values(&text, "Key")
}

async fn get_text(url: &str) -> String {
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    response
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

fn tag_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(value, _)| value.to_owned()))
        .collect()
}
