//! Containment of user code (issue 14), each attack performed by a real worker: the sandbox
//! (the workspace's secrets, the server's `/proc`, signals, other services' folders, the
//! models, the cgroup files), corrupt blobs refused, every process of a replica ended by
//! `service delete`, and the worker channel refusing any process but the one spawned.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{TestServer, json_of};

fn local() -> Value {
    json!({"computeType": "local"})
}

/// Whether the tests run as root (CI does): then workers must run as another user.
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next().map(|u| u == "0"))
        .unwrap_or(false)
}

/// An interpreter the unprivileged worker user can run (a pyenv under `/root` is out of its
/// reach, so a root server would run workers as root with it).
fn worker_python() -> String {
    ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("python3")
        .to_owned()
}

/// Tries every step of the attack; each entry is "ok" or the errno name it got.
const ATTACKER: &[u8] = br#"
import errno, json, os, signal

def init():
    pass

def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))

def read(path):
    with open(path, "rb") as f:
        f.read(1)

def write(path):
    with open(path, "wb") as f:
        f.write(b"owned")

def ptrace_attach(pid):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.ptrace(16, pid, None, None) != 0:  # PTRACE_ATTACH
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))

def run(raw):
    req = json.loads(raw)
    if req.get("hello"):
        return {"pid": os.getpid(), "uid": os.getuid(), "ppid": os.getppid()}
    data, server = req["data"], os.getppid()
    model = os.environ["AZUREML_MODEL_DIR"]
    model_file = os.path.join(model, "model.bin")
    cgroups = [l.split(":", 2)[2].strip() for l in open("/proc/self/cgroup") if ":memory:" in l]
    results = {
        "read workspace-token": attempt(lambda: read(os.path.join(data, "workspace-token"))),
        "read token-signing-key": attempt(lambda: read(os.path.join(data, "token-signing-key"))),
        "read berth.db": attempt(lambda: read(os.path.join(data, "berth.db"))),
        "list data dir": attempt(lambda: os.listdir(data)),
        "list blobs": attempt(lambda: os.listdir(os.path.join(data, "blobs"))),
        "read server environ": attempt(lambda: read(f"/proc/{server}/environ")),
        "read server mem": attempt(lambda: read(f"/proc/{server}/mem")),
        "signal server": attempt(lambda: os.kill(server, signal.SIGKILL)),
        "signal victim": attempt(lambda: os.kill(req["victim"], signal.SIGKILL)),
        "ptrace server": attempt(lambda: ptrace_attach(server)),
        "ptrace victim": attempt(lambda: ptrace_attach(req["victim"])),
        "read victim environ": attempt(lambda: read(f"/proc/{req['victim']}/environ")),
        "write victim folder": attempt(lambda: write(os.path.join(req["victim_src"], "score.py"))),
        "create in victim folder": attempt(lambda: write(os.path.join(req["victim_src"], "x.py"))),
        "write own model": attempt(lambda: write(model_file)),
        "chmod own model": attempt(lambda: os.chmod(model_file, 0o666)),
        "remove own model": attempt(lambda: os.unlink(model_file)),
        "write cgroup": attempt(lambda: write("/sys/fs/cgroup/memory/cgroup.procs")),
    }
    for group in cgroups:
        results["leave own cgroup"] = attempt(
            lambda: write(os.path.join("/sys/fs/cgroup/memory", group.lstrip("/"), "..", "cgroup.procs")))
    # What the worker may do still works.
    scratch = os.path.join(os.environ["TMPDIR"], "scratch.txt")
    write(scratch)
    with open(model_file, "rb") as f:
        model_bytes = f.read()
    return {"results": results, "model": model_bytes.decode(), "uid": os.getuid()}
"#;

const ECHO: &[u8] = br#"
import os
def init():
    pass
def run(raw):
    return {"pid": os.getpid(), "uid": os.getuid()}
"#;

#[tokio::test]
async fn a_scoring_script_cannot_reach_the_workspace_the_server_or_other_services() {
    let server = TestServer::start_with(&["--python", &worker_python()]).await;
    let (status, model) = server
        .register_file("weights", "model.bin", b"the weights".to_vec(), json!({}))
        .await;
    assert_eq!(status, 201, "{model}");
    server
        .deploy("victim", &[("score.py", ECHO)], &[], local())
        .await;
    server
        .deploy(
            "attacker",
            &[("score.py", ATTACKER)],
            &["weights:1"],
            local(),
        )
        .await;
    let victim: Value = server.score("victim", "{}").await.json().await.unwrap();
    let hello: Value = server
        .score("attacker", r#"{"hello": true}"#)
        .await
        .json()
        .await
        .unwrap();
    if running_as_root() {
        assert_ne!(hello["uid"], 0, "workers of a root server run unprivileged");
        assert_ne!(victim["uid"], 0);
    }
    let data = server.data_dir().display().to_string();
    let victim_src = server
        .data_dir()
        .join("services/victim/r1/app/src")
        .display()
        .to_string();
    let token_before = std::fs::read(server.data_dir().join("workspace-token")).unwrap();
    let victim_score = std::fs::read(
        server
            .data_dir()
            .join("services/victim/r1/app/src/score.py"),
    )
    .unwrap();
    let body = json!({"data": data, "victim": victim["pid"], "victim_src": victim_src});
    let response = server.score("attacker", &body.to_string()).await;
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    let results = report["results"].as_object().unwrap();
    assert!(results.len() >= 18, "{report}");
    for (step, outcome) in results {
        let outcome = outcome.as_str().unwrap();
        assert!(
            outcome == "EACCES" || outcome == "EPERM",
            "`{step}` was not refused ({outcome}): {report}\n{}",
            server.log()
        );
    }
    assert_eq!(report["model"], "the weights", "the model stays readable");

    // The server, the other service and their files are untouched; both still serve.
    let again: Value = server.score("victim", "{}").await.json().await.unwrap();
    assert_eq!(
        again["pid"], victim["pid"],
        "the victim's worker was not killed"
    );
    assert_eq!(
        std::fs::read(server.data_dir().join("workspace-token")).unwrap(),
        token_before
    );
    assert_eq!(
        std::fs::read(
            server
                .data_dir()
                .join("services/victim/r1/app/src/score.py")
        )
        .unwrap(),
        victim_score
    );
    let (status, shown) = server.get_json("/v1/services/attacker").await;
    assert_eq!(status, 200);
    let isolation = shown["resources"]["isolation"].as_str().unwrap();
    assert!(
        isolation.contains("landlock filesystem") && isolation.contains("no_new_privs"),
        "{shown}"
    );
    if running_as_root() {
        assert!(isolation.contains("user "), "{isolation}");
    }
    let downloaded = server
        .request(Method::GET, "/v1/models/weights/versions/1/content")
        .send()
        .await
        .unwrap();
    assert_eq!(downloaded.status(), 200);
    assert_eq!(
        downloaded.bytes().await.unwrap().as_ref(),
        b"the weights",
        "the model is intact in the registry"
    );
}

#[tokio::test]
async fn a_corrupt_blob_fails_the_lay_out_and_the_download() {
    let server = TestServer::start().await;
    let (status, model) = server
        .register_file(
            "fragile",
            "model.bin",
            b"pristine weights".to_vec(),
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{model}");
    // Damage the stored blob behind the registry's back.
    let blobs = server.data_dir().join("blobs/sha256");
    let mut damaged = 0;
    for shard in std::fs::read_dir(&blobs).unwrap().flatten() {
        for blob in std::fs::read_dir(shard.path()).unwrap().flatten() {
            if std::fs::read(blob.path()).unwrap() == b"pristine weights" {
                let path = blob.path();
                let mut perms = std::fs::metadata(&path).unwrap().permissions();
                std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
                std::fs::set_permissions(&path, perms).unwrap();
                std::fs::write(&path, b"poisoned weights").unwrap();
                damaged += 1;
            }
        }
    }
    assert_eq!(damaged, 1);

    // The transfer breaks off (before or after the headers) instead of serving the damage.
    let download = match server
        .request(Method::GET, "/v1/models/fragile/versions/1/content")
        .send()
        .await
    {
        Ok(response) => response.bytes().await.map(|b| b.to_vec()),
        Err(e) => Err(e),
    };
    assert!(
        download.is_err(),
        "a corrupt blob is not served whole: {download:?}"
    );

    let (status, accepted) = server
        .create_service(
            "fragile-svc",
            &[("score.py", ECHO)],
            &["fragile:1"],
            local(),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let op = server
        .wait_operation(accepted["operation"]["id"].as_str().unwrap())
        .await;
    assert_eq!(op["state"], "Failed", "{op}");
    let message = op["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("corrupt"), "{op}");
    assert!(server.log().contains("blob corruption"), "{}", server.log());
}

/// `run()` forks 40 sleeping children (a third after `setsid`, a third orphaned).
const FORKER: &[u8] = br#"
import os, time

def init():
    pass

def spawn(kind):
    pid = os.fork()
    if pid == 0:
        if kind == 1:
            os.setsid()
        if kind == 2:
            if os.fork() != 0:
                os._exit(0)
            os.setsid()
        time.sleep(600)
        os._exit(0)
    return pid

def run(raw):
    for i in range(40):
        spawn(i % 3)
    time.sleep(0.5)
    groups = [l.strip() for l in open("/proc/self/cgroup")]
    return {"pid": os.getpid(), "pgid": os.getpgid(0), "cgroups": groups}
"#;

/// Pids whose process is alive (not a zombie) in `session` or `pgid` of the worker, or
/// whose group is one of the worker's cgroups.
fn alive(pids: &[u32]) -> Vec<u32> {
    pids.iter()
        .copied()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim().to_owned()))
                .is_some_and(|r| !r.starts_with('Z'))
        })
        .collect()
}

/// The pids of the processes whose `/proc/<pid>/cgroup` has `group`.
fn members_of(group: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .is_ok_and(|c| c.lines().any(|l| l.ends_with(group)))
        })
        .collect()
}

#[tokio::test]
async fn deleting_a_service_ends_every_process_its_replica_started() {
    let server = TestServer::start_with(&["--python", &worker_python()]).await;
    server
        .deploy("forker", &[("score.py", FORKER)], &[], local())
        .await;
    let response = server.score("forker", "{}").await;
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    let memory_group = report["cgroups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|l| l.contains(":memory:") && l.contains("/berth/"))
        .map(|l| l.rsplit(':').next().unwrap().to_owned());
    let (status, shown) = server.get_json("/v1/services/forker").await;
    assert_eq!(status, 200);
    let mode = shown["resources"]["enforcement"]
        .as_str()
        .unwrap()
        .to_owned();
    let started: Vec<u32> = match &memory_group {
        Some(group) => members_of(group),
        None => Vec::new(),
    };
    if mode.starts_with("cgroup") {
        let group = memory_group
            .clone()
            .expect("the worker is in a replica group");
        assert!(
            started.len() > 40,
            "the worker and its 40 children are in {group}: {started:?}"
        );
        assert!(
            shown["resources"]["processes"]
                .as_str()
                .unwrap()
                .contains("pids.max"),
            "{shown}"
        );
    } else {
        eprintln!("containment: no cgroups here ({mode}); checking the process group only");
    }

    let accepted = json_of(
        server
            .request(Method::DELETE, "/v1/services/forker")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(accepted.0, 202, "{}", accepted.1);
    let op = server
        .wait_operation(accepted.1["operation"]["id"].as_str().unwrap())
        .await;
    assert_eq!(op["state"], "Succeeded", "{op}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = alive(&started);
        let group_left = memory_group
            .as_ref()
            .map(|g| {
                std::path::Path::new("/sys/fs/cgroup/memory")
                    .join(g.trim_start_matches('/'))
                    .exists()
            })
            .unwrap_or(false);
        if left.is_empty() && !group_left {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "processes still running after delete: {left:?}, group left: {group_left}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `run()` starts a thread that keeps connecting to the sockets the server makes for new
/// workers (their names are predictable) and records any byte it receives.
const RACER: &[u8] = br#"
import os, socket, threading, time

state = {"connected": 0, "received": 0, "running": False}

def race(run_dir, server_pid, until):
    while time.time() < until:
        for n in range(0, 64):
            path = os.path.join(run_dir, f"w{server_pid}-{n}", "s")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(0.05)
                s.connect(path)
                state["connected"] += 1
                try:
                    data = s.recv(64)
                    state["received"] += len(data)
                except OSError:
                    pass
            except OSError:
                pass
            finally:
                s.close()
        time.sleep(0.001)

def init():
    pass

def run(raw):
    import json
    req = json.loads(raw)
    if req.get("start"):
        t = threading.Thread(target=race, args=(req["run_dir"], os.getppid(), time.time() + 60), daemon=True)
        t.start()
        return {"started": True}
    return state
"#;

#[tokio::test]
async fn the_worker_channel_accepts_only_the_spawned_worker() {
    let server = TestServer::start_with(&["--python", &worker_python()]).await;
    server
        .deploy("racer", &[("score.py", RACER)], &[], local())
        .await;
    let run_dir = server.data_dir().join("run/s").display().to_string();
    let start = json!({"start": true, "run_dir": run_dir}).to_string();
    assert_eq!(server.score("racer", &start).await.status(), 200);
    // Services started while the racer races still get their own worker.
    for name in ["first", "second"] {
        server
            .deploy(name, &[("score.py", ECHO)], &[], local())
            .await;
        assert_eq!(server.score(name, "{}").await.status(), 200);
    }
    let state: Value = server.score("racer", "{}").await.json().await.unwrap();
    assert_eq!(
        state["received"], 0,
        "the racer never receives a frame: {state}"
    );
    if state["connected"].as_u64().unwrap_or(0) > 0 {
        assert!(
            server
                .log()
                .contains("a process other than the worker connected to its socket"),
            "{}",
            server.log()
        );
    } else {
        eprintln!(
            "containment: the racer never reached a socket (private directories); nothing to refuse"
        );
    }
    // Each worker's socket directory is private to it.
    let mode = std::fs::metadata(server.data_dir().join("run/s"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap();
    assert_eq!(
        mode & 0o066,
        0,
        "run/s is not readable or writable by others: {mode:o}"
    );
}

const CAPABILITIES: &[u8] = br#"
import os
def init():
    pass
def run(raw):
    status = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    return {"uid": os.getuid(), "CapEff": status["CapEff"], "CapPrm": status["CapPrm"],
            "CapBnd": status["CapBnd"], "CapAmb": status["CapAmb"]}
"#;

#[tokio::test]
async fn a_worker_holds_no_capability_whichever_user_it_runs_as() {
    // The default interpreter: where the worker user cannot reach it (pyenv under a private
    // /root), the worker keeps uid 0; either way it must hold no capability.
    let server = TestServer::start().await;
    server
        .deploy("caps", &[("score.py", CAPABILITIES)], &[], local())
        .await;
    let seen: Value = server.score("caps", "{}").await.json().await.unwrap();
    for set in ["CapEff", "CapPrm", "CapAmb"] {
        assert_eq!(seen[set], "0000000000000000", "{set}: {seen}");
    }
    if seen["uid"] == 0 {
        assert_eq!(
            seen["CapBnd"], "0000000000000000",
            "a root worker's bounding set: {seen}"
        );
    }
}
