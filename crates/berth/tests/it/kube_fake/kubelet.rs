//! The fake kubelet: turns each Deployment's replicas into Pods and runs each
//! pod as a local process on its own loopback IP (127.B.x.y; Linux routes all
//! of 127/8 to lo), with the pod's container args, its Secret-sourced env and
//! the same ports. Readiness comes from polling the process's `/readyz`; an
//! exit restarts it (CrashLoopBackOff). Failures can be injected per
//! Deployment: crash, OOMKilled, ImagePullBackOff, Unschedulable.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::Shared;
use super::store::Kind;

/// What a pod runs: `program` with the container's args (listen addresses
/// rewritten to the pod's IP).
#[derive(Debug, Clone)]
pub struct PodCommand {
    pub program: PathBuf,
    /// Replaces the container's args when set (a stand-in process for tests of the fake).
    pub args: Option<Vec<String>>,
    /// Added to every pod's environment.
    pub env: Vec<(String, String)>,
}

/// Pods run `berth replica` (the binary under test) with the container's
/// args; environments build with venv + pip.
pub fn berth_replica() -> PodCommand {
    PodCommand {
        program: crate::harness::berth_bin().into(),
        args: None,
        env: vec![("BERTH_UV".into(), "none".into())],
    }
}

/// A stand-in pod process for tests of the fake and of the cluster client:
/// prints a line, then serves `/readyz` on the pod's IP, port 9001.
pub fn ready_server() -> PodCommand {
    PodCommand {
        program: "python3".into(),
        args: Some(vec![
            "-c".into(),
            "import http.server as h\nclass H(h.BaseHTTPRequestHandler):\n    def do_GET(self):\n        self.send_response(200); self.end_headers(); self.wfile.write(b'ok')\n    def log_message(self, *a):\n        print('probe', flush=True)\nprint('replica started', flush=True)\nh.HTTPServer(('{ip}', 9001), H).serve_forever()\n".into(),
        ]),
        env: Vec::new(),
    }
}

/// A failure injected into every pod of a Deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodFailure {
    /// The process exits at once, again and again.
    Crash,
    /// Killed for its memory limit.
    OomKilled,
    /// The image cannot be pulled: nothing runs.
    ImagePullBackOff,
    /// No node has the GPUs: the pod stays Pending.
    Unschedulable,
}

struct RunningPod {
    child: Option<tokio::process::Child>,
}

/// The kubelet's own state.
pub struct Kubelet {
    command: PodCommand,
    logs: PathBuf,
    next_ip: AtomicU32,
    base: std::sync::OnceLock<u32>,
    next_pod: AtomicU32,
    failures: Mutex<HashMap<String, PodFailure>>,
    pods: Mutex<HashMap<String, RunningPod>>,
}

impl Kubelet {
    pub fn new(command: PodCommand, logs: PathBuf) -> Self {
        std::fs::create_dir_all(&logs).expect("log dir");
        Self {
            command,
            logs,
            next_ip: AtomicU32::new(0),
            base: std::sync::OnceLock::new(),
            next_pod: AtomicU32::new(1),
            failures: Mutex::new(HashMap::new()),
            pods: Mutex::new(HashMap::new()),
        }
    }

    /// Makes every pod of `deployment` (new ones and running ones) fail so.
    pub fn fail(&self, deployment: &str, failure: Option<PodFailure>) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match failure {
            Some(failure) => f.insert(deployment.to_owned(), failure),
            None => f.remove(deployment),
        };
    }

    fn failure(&self, deployment: &str) -> Option<PodFailure> {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(deployment)
            .copied()
    }

    /// Kills a pod's process (the pod object is the caller's).
    pub fn stop_pod(&self, name: &str) {
        if let Some(mut pod) = self
            .pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            && let Some(child) = pod.child.as_mut()
        {
            let _ = child.start_kill();
        }
    }

    pub fn stop_all(&self) {
        let names: Vec<String> = self
            .pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        for name in names {
            self.stop_pod(&name);
        }
    }

    /// The pod's output, or its last `tail` lines.
    pub fn logs(&self, pod: &str, tail: Option<usize>) -> Option<String> {
        let text = std::fs::read_to_string(self.logs.join(pod)).ok()?;
        Some(match tail {
            Some(n) => {
                let lines: Vec<&str> = text.lines().collect();
                let mut out = lines[lines.len().saturating_sub(n)..].join("\n");
                out.push('\n');
                out
            }
            None => text,
        })
    }

    /// A pod IP of its own: 127.<from the process id>.<n>; test processes
    /// running at once get different ranges.
    fn ip(&self) -> String {
        static FAKES: AtomicU32 = AtomicU32::new(0);
        let n = self.next_ip.fetch_add(1, Ordering::Relaxed);
        let base = *self.base.get_or_init(|| {
            16 + (std::process::id() * 7 + FAKES.fetch_add(1, Ordering::Relaxed)) % 230
        });
        format!("127.{base}.{}.{}", 1 + n / 250, 2 + n % 250)
    }
}

/// Runs the kubelet loop until the fake is dropped (it holds a weak reference).
pub fn spawn(shared: Arc<Shared>) {
    let weak = Arc::downgrade(&shared);
    let mut changed = shared.subscribe();
    drop(shared);
    tokio::spawn(async move {
        loop {
            let Some(shared) = weak.upgrade() else { return };
            reconcile(&shared);
            drop(shared);
            let _ = tokio::time::timeout(Duration::from_millis(200), changed.changed()).await;
        }
    });
}

fn reconcile(shared: &Arc<Shared>) {
    let (deployments, pods) = {
        let store = shared.store();
        (
            store.list(Kind::Deployment, None, None),
            store.list(Kind::Pod, None, None),
        )
    };
    for d in &deployments {
        let name = d["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let ns = d["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let want = d["spec"]["replicas"].as_u64().unwrap_or(1) as usize;
        let mut mine: Vec<&Value> = pods
            .iter()
            .filter(|p| p["metadata"]["labels"]["berth-fake/deployment"].as_str() == Some(&name))
            .collect();
        // Scale-down removes the pods with the highest deletion cost last.
        let cost = |p: &Value| -> i64 {
            p["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"]
                .as_str()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0)
        };
        mine.sort_by_key(|p| std::cmp::Reverse(cost(p)));
        for extra in mine.iter().skip(want) {
            let pod = extra["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            shared.kubelet.stop_pod(&pod);
            let _ = shared.write(|s| s.delete(Kind::Pod, &ns, &pod));
        }
        for _ in mine.len()..want {
            start_pod(shared, d, &name, &ns);
        }
        let ready = mine
            .iter()
            .take(want)
            .filter(|p| p["status"]["conditions"][0]["status"] == "True")
            .count();
        let status = json!({"replicas": mine.len().min(want), "readyReplicas": ready,
            "updatedReplicas": mine.len().min(want), "availableReplicas": ready,
            "observedGeneration": d["metadata"]["generation"]});
        if d["status"] != status {
            let _ =
                shared.write(|s| s.patch(Kind::Deployment, &ns, &name, &json!({"status": status})));
        }
    }
    // Pods of deleted Deployments go too.
    for p in &pods {
        let owner = p["metadata"]["labels"]["berth-fake/deployment"]
            .as_str()
            .unwrap_or_default();
        if !deployments.iter().any(|d| d["metadata"]["name"] == owner) {
            let name = p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let ns = p["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            shared.kubelet.stop_pod(&name);
            let _ = shared.write(|s| s.delete(Kind::Pod, &ns, &name));
        }
    }
}

fn container_status(
    waiting: Option<(&str, &str)>,
    restarts: u64,
    last: Option<(&str, i64)>,
    ready: bool,
) -> Value {
    let mut status = json!({"name": "replica", "ready": ready, "restartCount": restarts, "image": "berth", "imageID": ""});
    status["state"] = match waiting {
        Some((reason, message)) => json!({"waiting": {"reason": reason, "message": message}}),
        None => json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}),
    };
    if let Some((reason, code)) = last {
        status["lastState"] = json!({"terminated": {"reason": reason, "exitCode": code}});
    }
    status
}

fn set_status(shared: &Arc<Shared>, ns: &str, pod: &str, status: Value) {
    let _ = shared.write(|s| s.patch(Kind::Pod, ns, pod, &json!({"status": status})));
}

fn start_pod(shared: &Arc<Shared>, deployment: &Value, name: &str, ns: &str) {
    let n = shared.kubelet.next_pod.fetch_add(1, Ordering::Relaxed);
    let pod_name = format!("{name}-{n:05x}");
    let template = &deployment["spec"]["template"];
    let mut labels = template["metadata"]["labels"].clone();
    labels["berth-fake/deployment"] = json!(name);
    let ip = shared.kubelet.ip();
    let pod = json!({"metadata": {"name": pod_name, "labels": labels},
        "spec": template["spec"],
        "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]}});
    if shared.write(|s| s.create(Kind::Pod, ns, pod)).is_err() {
        return;
    }
    let failure = shared.kubelet.failure(name);
    let pending = |reason: &str, message: &str| {
        json!({"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"},
            {"type": "PodScheduled", "status": if reason == "Unschedulable" { "False" } else { "True" },
             "reason": reason, "message": message}]})
    };
    match failure {
        Some(PodFailure::Unschedulable) => {
            set_status(
                shared,
                ns,
                &pod_name,
                pending(
                    "Unschedulable",
                    "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
                ),
            );
            return;
        }
        Some(PodFailure::ImagePullBackOff) => {
            let mut status = pending("Scheduled", "");
            status["containerStatuses"] = json!([container_status(
                Some((
                    "ImagePullBackOff",
                    "Back-off pulling image \"berth\": ErrImagePull: not found"
                )),
                0,
                None,
                false
            )]);
            set_status(shared, ns, &pod_name, status);
            return;
        }
        _ => {}
    }
    tokio::spawn(run_pod(
        shared.clone(),
        ns.to_owned(),
        pod_name,
        name.to_owned(),
        ip,
        template["spec"].clone(),
    ));
}

fn env_of(shared: &Arc<Shared>, ns: &str, spec: &Value) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for var in spec["containers"][0]["env"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = var["name"].as_str().unwrap_or_default().to_owned();
        if let Some(v) = var["value"].as_str() {
            env.push((name, v.to_owned()));
        } else if let Some(r) = var["valueFrom"]["secretKeyRef"].as_object() {
            let secret =
                shared
                    .store()
                    .get(Kind::Secret, ns, r["name"].as_str().unwrap_or_default());
            let key = r["key"].as_str().unwrap_or_default();
            if let Some(b64) = secret.as_ref().and_then(|s| s["data"][key].as_str()) {
                env.push((
                    name,
                    String::from_utf8_lossy(&base64_decode(b64)).into_owned(),
                ));
            } else if let Some(plain) = secret.as_ref().and_then(|s| s["stringData"][key].as_str())
            {
                env.push((name, plain.to_owned()));
            }
        }
    }
    env
}

fn base64_decode(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=') {
        let Some(v) = A.iter().position(|a| *a == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

async fn run_pod(
    shared: Arc<Shared>,
    ns: String,
    pod: String,
    deployment: String,
    ip: String,
    spec: Value,
) {
    let mut restarts = 0u64;
    let mut last: Option<(&'static str, i64)> = None;
    loop {
        if shared.store().get(Kind::Pod, &ns, &pod).is_none() {
            return;
        }
        let failure = shared.kubelet.failure(&deployment);
        let args: Vec<String> = match &shared.kubelet.command.args {
            Some(args) => args.iter().map(|a| a.replace("{ip}", &ip)).collect(),
            None => {
                // Each pod's emptyDir cache is a directory of its own here.
                let cache = shared.kubelet.logs.join(format!("{pod}.cache"));
                let mut args: Vec<String> = spec["containers"][0]["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| a.as_str().unwrap_or_default().replace("0.0.0.0", &ip))
                    .collect();
                if let Some(i) = args.iter().position(|a| a == "--cache")
                    && let Some(value) = args.get_mut(i + 1)
                {
                    *value = cache.display().to_string();
                }
                args
            }
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(shared.kubelet.logs.join(&pod))
            .expect("pod log");
        let mut command = tokio::process::Command::new(&shared.kubelet.command.program);
        command
            .args(&args)
            .envs(env_of(&shared, &ns, &spec))
            .envs(shared.kubelet.command.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true);
        if matches!(failure, Some(PodFailure::Crash | PodFailure::OomKilled)) {
            command = tokio::process::Command::new("sh");
            command.args(["-c", "echo 'Traceback (most recent call last):' >&2; echo 'RuntimeError: init failed on purpose' >&2; exit 1"])
                .stdout(Stdio::null())
                .stderr(std::fs::OpenOptions::new().create(true).append(true).open(shared.kubelet.logs.join(&pod)).expect("pod log"));
        }
        let Ok(child) = command.spawn() else { return };
        shared
            .kubelet
            .pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pod.clone(), RunningPod { child: Some(child) });
        set_status(
            &shared,
            &ns,
            &pod,
            json!({"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [container_status(None, restarts, last, false)]}),
        );
        // Poll readiness until the process exits.
        let http = reqwest::Client::new();
        let mut ready = false;
        let exit = loop {
            let exited = {
                let mut pods = shared
                    .kubelet
                    .pods
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                match pods.get_mut(&pod).and_then(|p| p.child.as_mut()) {
                    Some(child) => child
                        .try_wait()
                        .ok()
                        .flatten()
                        .map(|s| s.code().unwrap_or(137)),
                    None => return, // stopped
                }
            };
            if let Some(code) = exited {
                break code;
            }
            let ok = http
                .get(format!("http://{ip}:9001/readyz"))
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok != ready {
                ready = ok;
                set_status(
                    &shared,
                    &ns,
                    &pod,
                    json!({"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                    "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                    "containerStatuses": [container_status(None, restarts, last, ready)]}),
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        restarts += 1;
        last = Some(match failure {
            Some(PodFailure::OomKilled) => ("OOMKilled", 137),
            _ => ("Error", i64::from(exit)),
        });
        set_status(
            &shared,
            &ns,
            &pod,
            json!({"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [container_status(Some(("CrashLoopBackOff",
                "back-off restarting failed container replica")), restarts, last, false)]}),
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
