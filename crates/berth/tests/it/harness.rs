//! `TestServer`: runs `berth server` in a fresh data directory and talks to it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

/// Path of the binary under test.
pub fn berth_bin() -> &'static str {
    env!("CARGO_BIN_EXE_berth")
}

/// A reqwest client over rustls (ring) that trusts `ca_pem` only, resolving
/// each `(name, addr)` in `resolve` to that address (for SNI tests).
pub fn https_client(ca_pem: &[u8], resolve: &[(&str, std::net::SocketAddr)]) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .tls_info(true)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).expect("CA PEM"));
    for (name, addr) in resolve {
        builder = builder.resolve(name, *addr);
    }
    builder.build().expect("https client")
}

/// The uv under test (`$BERTH_TEST_UV`, installed by scripts/test.sh), or `None` after recording
/// that `test` skipped for want of it.
pub fn test_uv(test: &str) -> Option<String> {
    let uv = std::env::var("BERTH_TEST_UV")
        .ok()
        .filter(|v| !v.is_empty());
    if uv.is_none() {
        berth_worker::test_skips::record(
            test,
            "BERTH_TEST_UV is not set: scripts/test.sh installs uv and sets it",
        );
    }
    uv
}

/// Records that `test` cannot check what it promises on this host, saying why.
pub fn skip(test: &str, reason: &str) {
    berth_worker::test_skips::record(test, reason);
}

/// A running server with its own data directory.
pub struct TestServer {
    child: Option<Child>,
    data: tempfile::TempDir,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    pub endpoint: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl TestServer {
    /// Starts a server with default settings.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts a server with extra `berth server` flags.
    pub async fn start_with(args: &[&str]) -> Self {
        Self::start_with_client(args, reqwest::Client::new()).await
    }

    /// Starts a server with extra flags and environment variables.
    pub async fn start_with_env(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut server = Self::unstarted(args, reqwest::Client::new());
        server.envs = envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        server.spawn().await;
        server
    }

    /// Starts a TLS server (`args` carry `--tls-cert`/`--tls-key`); the client
    /// trusts `ca_pem` only.
    pub async fn start_tls(args: &[&str], ca_pem: &[u8]) -> Self {
        Self::start_with_client(args, https_client(ca_pem, &[])).await
    }

    async fn start_with_client(args: &[&str], http: reqwest::Client) -> Self {
        let mut server = Self::unstarted(args, http);
        server.spawn().await;
        server
    }

    fn unstarted(args: &[&str], http: reqwest::Client) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        // Environments build with venv + pip unless a test gives the uv it tests: what the
        // developer has on PATH never decides what a test sees.
        if !args.iter().any(|a| a == "--uv") {
            args.extend(["--uv".to_owned(), "none".to_owned()]);
        }
        Self {
            child: None,
            data,
            args,
            envs: Vec::new(),
            endpoint: String::new(),
            token: String::new(),
            http,
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    async fn spawn(&mut self) {
        let config = self.data.path().join("config.json");
        let _ = std::fs::remove_file(&config);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.path().join("server.log"))
            .expect("log file");
        let child = Command::new(berth_bin())
            .arg("server")
            .arg("--data")
            .arg(self.data.path())
            .args(["--addr", "127.0.0.1:0", "--shutdown-grace-secs", "10"])
            .args(&self.args)
            .env_remove("BERTH_DATA")
            .env("BERTH_LOG", "info,tower_http=debug")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn berth server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(&config) {
                let value: Value = serde_json::from_str(&text).expect("config.json is JSON");
                self.endpoint = value["endpoint"].as_str().expect("endpoint").to_owned();
                self.token = value["token"].as_str().expect("token").to_owned();
                break;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("server exited early with {status}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "server did not start: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ready = self
            .http
            .get(self.url("/readyz"))
            .send()
            .await
            .expect("readyz");
        assert_eq!(ready.status(), 200);
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("server.log")).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        tokio::task::spawn_blocking(move || child.wait().expect("wait"))
            .await
            .expect("join")
    }

    /// Kills the server with SIGKILL (no cleanup) and waits for it.
    pub async fn kill9(&mut self) {
        let mut child = self.child.take().expect("server running");
        let _ = child.kill();
        tokio::task::spawn_blocking(move || child.wait().expect("wait"))
            .await
            .expect("join");
    }

    /// Starts the server again on the same data directory.
    pub async fn start_again(&mut self) {
        self.spawn().await;
    }

    /// Adds `berth server` flags for the next start (`start_again`).
    pub fn push_args(&mut self, args: &[&str]) {
        self.args.extend(args.iter().map(|a| a.to_string()));
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_term(&self) {
        let pid = self.child.as_ref().expect("server running").id();
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
    }

    /// Waits for the server process to exit.
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        tokio::task::spawn_blocking(move || child.wait().expect("wait"))
            .await
            .expect("join")
    }

    /// Stops the server and starts it again on the same data directory.
    pub async fn restart(&mut self) {
        let status = self.stop().await;
        assert!(status.success(), "server exited with {status}");
        self.spawn().await;
    }

    /// Absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint)
    }

    /// An authenticated request.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
    }

    /// An authenticated GET returning status and JSON.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        json_of(self.request(Method::GET, path).send().await.expect("send")).await
    }

    /// Registers a file model from bytes; `extra` is merged into the metadata.
    pub async fn register_file(
        &self,
        name: &str,
        asset: &str,
        content: Vec<u8>,
        extra: Value,
    ) -> (u16, Value) {
        let mut metadata = serde_json::json!({"name": name, "kind": "file", "assetName": asset});
        merge(&mut metadata, extra);
        let form = Form::new()
            .part(
                "metadata",
                Part::text(metadata.to_string())
                    .mime_str("application/json")
                    .unwrap(),
            )
            .part("content", Part::bytes(content).file_name(asset.to_owned()));
        json_of(
            self.request(Method::POST, "/v1/models")
                .multipart(form)
                .send()
                .await
                .expect("send"),
        )
        .await
    }

    /// Registers a folder model from a tar archive's bytes.
    pub async fn register_tar(&self, name: &str, asset: &str, tar: Vec<u8>) -> (u16, Value) {
        let metadata = serde_json::json!({"name": name, "kind": "folder", "assetName": asset});
        let form = Form::new()
            .part(
                "metadata",
                Part::text(metadata.to_string())
                    .mime_str("application/json")
                    .unwrap(),
            )
            .part("content", Part::bytes(tar).file_name("upload.tar"));
        json_of(
            self.request(Method::POST, "/v1/models")
                .multipart(form)
                .send()
                .await
                .expect("send"),
        )
        .await
    }

    /// Number of blobs stored.
    pub fn blob_count(&self) -> usize {
        count_files(&self.data.path().join("blobs").join("sha256"))
    }

    /// Number of temporary upload files left.
    pub fn temp_count(&self) -> usize {
        count_files(&self.data.path().join("blobs").join("tmp"))
    }

    /// A `berth` CLI command pointed at this server through its config.json.
    pub fn cli(&self, cwd: &Path) -> Command {
        let mut cmd = Command::new(berth_bin());
        cmd.current_dir(cwd)
            .env("BERTH_CONFIG", self.data.path().join("config.json"))
            .env("HOME", cwd)
            .env_remove("BERTH_ENDPOINT")
            .env_remove("BERTH_TOKEN")
            .env_remove("BERTH_DATA");
        cmd
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Status and JSON body (Null when the body is empty).
pub async fn json_of(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("body");
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "status {status}, body is not JSON: {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    (status, value)
}

fn merge(target: &mut Value, extra: Value) {
    if let (Some(target), Value::Object(extra)) = (target.as_object_mut(), extra) {
        target.extend(extra);
    }
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path: PathBuf = e.path();
            if path.is_dir() { count_files(&path) } else { 1 }
        })
        .sum()
}

/// Asserts an error answer: status, stable code, and that the message mentions `needle`.
pub fn assert_error(actual: &(u16, Value), status: u16, code: &str, needle: &str) {
    let (got_status, body) = actual;
    assert_eq!(*got_status, status, "body: {body}");
    assert_eq!(body["code"], code, "body: {body}");
    let message = body["message"].as_str().expect("message");
    assert!(
        message.contains(needle) || body["details"].to_string().contains(needle),
        "message {message:?} should mention {needle:?}; body: {body}"
    );
}

/// A tar archive of `(path, content)` files.
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, path, *content)
            .expect("append");
    }
    builder.into_inner().expect("tar")
}

impl TestServer {
    /// Uploads `files` as a source snapshot and creates service `name` from it.
    pub async fn create_service(
        &self,
        name: &str,
        files: &[(&str, &[u8])],
        models: &[&str],
        deployment_config: Value,
    ) -> (u16, Value) {
        let response = self
            .request(Method::POST, "/v1/snapshots")
            .header("content-type", "application/x-tar")
            .body(tar_of(files))
            .send()
            .await
            .expect("upload snapshot");
        let (status, snapshot) = json_of(response).await;
        assert!(status == 200 || status == 201, "snapshot: {snapshot}");
        let body = serde_json::json!({
            "name": name,
            "models": models,
            "inferenceConfig": {"entryScript": "score.py", "sourceSnapshot": snapshot["id"], "sourceDirectoryName": "src"},
            "deploymentConfig": deployment_config,
        });
        json_of(
            self.request(Method::POST, "/v1/services")
                .json(&body)
                .send()
                .await
                .expect("create"),
        )
        .await
    }

    /// Polls an operation until it ends; returns it.
    pub async fn wait_operation(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, op) = self.get_json(&format!("/v1/operations/{id}")).await;
            assert_eq!(status, 200, "{op}");
            let state = op["state"].as_str().unwrap_or_default().to_owned();
            if !matches!(state.as_str(), "NotStarted" | "Running") {
                return op;
            }
            assert!(Instant::now() < deadline, "operation did not end: {op}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates a service and waits for the operation; panics unless it succeeded.
    pub async fn deploy(
        &self,
        name: &str,
        files: &[(&str, &[u8])],
        models: &[&str],
        dc: Value,
    ) -> Value {
        let (status, accepted) = self.create_service(name, files, models, dc).await;
        assert_eq!(status, 202, "{accepted}");
        let op = self
            .wait_operation(accepted["operation"]["id"].as_str().unwrap_or_default())
            .await;
        assert_eq!(op["state"], "Succeeded", "{op}\n{}", self.log());
        op
    }

    /// POSTs `body` to a service's scoring route.
    pub async fn score(&self, service: &str, body: &str) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/api/v1/service/{service}/score")))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("score")
    }
}

/// PATCHes a service; returns the status and body.
pub async fn patch(server: &TestServer, service: &str, body: Value) -> (u16, Value) {
    json_of(
        server
            .request(Method::PATCH, &format!("/v1/services/{service}"))
            .json(&body)
            .send()
            .await
            .expect("patch"),
    )
    .await
}

/// PATCHes a service and waits for the operation; returns it.
pub async fn update(server: &TestServer, service: &str, body: Value) -> Value {
    let (status, accepted) = patch(server, service, body).await;
    assert_eq!(status, 202, "{accepted}");
    server
        .wait_operation(accepted["operation"]["id"].as_str().unwrap_or_default())
        .await
}

/// A bounded load of scoring requests running in the background.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<LoadReport>>,
}

/// What a load saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Requests answered 200.
    pub ok: u64,
    /// Requests that failed (any other status, or no answer), with what happened.
    pub failures: Vec<String>,
    /// Bodies seen, by count.
    pub bodies: std::collections::BTreeMap<String, u64>,
}

impl Load {
    /// Starts `clients` loops POSTing `body` to `service` until stopped (at most 60 s).
    pub fn start(server: &TestServer, service: &str, body: &str, clients: usize) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let url = server.url(&format!("/api/v1/service/{service}/score"));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, url, body) = (stop.clone(), url.clone(), body.to_owned());
                let http = reqwest::Client::new();
                tokio::spawn(async move {
                    let mut report = LoadReport::default();
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while !stop.load(std::sync::atomic::Ordering::Acquire)
                        && Instant::now() < deadline
                    {
                        match http.post(&url).body(body.clone()).send().await {
                            Ok(r) if r.status() == 200 => {
                                report.ok += 1;
                                let text = r.text().await.unwrap_or_default();
                                *report.bodies.entry(text).or_default() += 1;
                            }
                            Ok(r) => {
                                let status = r.status();
                                let text = r.text().await.unwrap_or_default();
                                report.failures.push(format!("{status}: {text}"));
                            }
                            Err(e) => report.failures.push(format!("no answer: {e}")),
                        }
                    }
                    report
                })
            })
            .collect();
        Load { stop, tasks }
    }

    /// Stops the loops and merges their reports.
    pub async fn finish(self) -> LoadReport {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        let mut total = LoadReport::default();
        for task in self.tasks {
            let report = task.await.expect("load task");
            total.ok += report.ok;
            total.failures.extend(report.failures);
            for (body, n) in report.bodies {
                *total.bodies.entry(body).or_default() += n;
            }
        }
        total
    }
}

/// Appends `name` and `elapsed` (ms) to the file `BERTH_BENCH_FIGURES` names, when set: the
/// benchmarks in `bench/` drive integration tests as fixtures and read the figures from it.
/// Tests assert behaviour only; this records, it never checks.
pub fn record_figure(name: &str, elapsed: std::time::Duration) {
    let Some(path) = std::env::var_os("BERTH_BENCH_FIGURES") else {
        return;
    };
    use std::io::Write;
    let line = format!("{name} {:.1}\n", elapsed.as_secs_f64() * 1000.0);
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        panic!("BERTH_BENCH_FIGURES={}: {e}", path.to_string_lossy());
    }
}
