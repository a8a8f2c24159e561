//! Resource limits and GPUs on the local target: a memory hog killed and
//! reported (cgroup mode and the rlimit watchdog), the CPU limit reaching the
//! worker, GPUs given as CUDA_VISIBLE_DEVICES and refused when not free, and a
//! memory limit changed by update. The cgroup tests need a hierarchy in which
//! the test can make groups; where there is none they record a skip saying so.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{self, TestServer, assert_error, patch, update};

/// `run()` allocates 50 MB chunks until something stops it.
const HOG: &[u8] = br#"
import os, time

def init():
    pass

def run(raw):
    if raw == '"hog"':
        chunks = []
        while True:
            chunks.append(bytearray(50 * 1024 * 1024))
            time.sleep(0.05)
    with open("/proc/self/status") as f:
        cpus = [l.split(":", 1)[1].strip() for l in f if l.startswith("Cpus_allowed_list")][0]
    with open("/proc/self/cgroup") as f:
        groups = f.read()
    return {"pid": os.getpid(), "cpus": cpus, "cgroup": groups,
            "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}
"#;

async fn show(server: &TestServer, name: &str) -> Value {
    let (status, body) = server.get_json(&format!("/v1/services/{name}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn info(server: &TestServer, name: &str) -> Value {
    let response = server.score(name, "{}").await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Sends the hog request, expects the 502 of a killed worker, then waits
/// until `show` reports the kill and a replacement serves.
async fn hog_is_killed_and_replaced(server: &TestServer, name: &str, mode: &str) {
    let before = info(server, name).await["pid"].clone();
    let response = server.score(name, "\"hog\"").await;
    assert_eq!(response.status(), 502, "{}", response.text().await.unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let shown = show(server, name).await;
        let kill = &shown["resources"]["lastLimitKill"];
        if kill.is_object() && shown["deploymentStatus"]["availableReplicas"] == 1 {
            let reason = kill["reason"].as_str().unwrap();
            assert!(reason.contains("memory limit"), "{reason}");
            assert!(reason.contains(mode), "{reason}");
            assert_eq!(shown["resources"]["enforcement"], mode);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no kill reported: {shown}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = info(server, name).await["pid"].clone();
    assert_ne!(before, after, "a replacement replica serves");
    assert!(
        server
            .log()
            .contains("replica killed for its resource limit"),
        "{}",
        server.log()
    );
}

/// The cgroup mode `auto` takes on this host: the first hierarchy with a memory controller in
/// which this process can make a child group (cgroup v2 with `memory` offered, or the v1 `memory`
/// hierarchy), or `None` where there is none (then `auto` takes rlimit).
fn writable_cgroup_mode() -> Option<&'static str> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let candidates = membership.lines().filter_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            Some(("cgroup-v1", Path::new("/sys/fs/cgroup/memory").join(path)))
        } else if controllers.is_empty() {
            let root = Path::new("/sys/fs/cgroup");
            let offered =
                std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
            offered
                .split_whitespace()
                .any(|c| c == "memory")
                .then(|| ("cgroup-v2", root.join(path)))
        } else {
            None
        }
    });
    candidates.into_iter().find_map(|(mode, dir)| {
        let probe = dir.join(format!("berth-test-probe-{}", std::process::id()));
        let made = std::fs::create_dir(&probe).is_ok();
        if made {
            let _ = std::fs::remove_dir(&probe);
        }
        made.then_some(mode)
    })
}

/// The cgroup mode to test, or `None` after recording why `test` cannot check cgroups here.
fn cgroup_mode_or_skip(test: &str) -> Option<&'static str> {
    let mode = writable_cgroup_mode();
    if mode.is_none() {
        harness::skip(
            test,
            "this host has no cgroup hierarchy with a memory controller in which the test can make \
             groups (writable cgroup v1 `memory`, or cgroup v2 with `memory` delegated); the rlimit \
             tests cover resource limits here",
        );
    }
    mode
}

const LIMITED: &str = r#"{"computeType": "local", "containerResourceRequirements": {"cpu": 0.5, "memoryInGB": 0.1, "memoryInGBLimit": 0.25, "cpuLimit": 1}}"#;

#[tokio::test]
async fn auto_enforcement_takes_cgroups_where_groups_can_be_made_else_rlimit_and_kills_a_hog() {
    let server = TestServer::start().await;
    let dc: Value = serde_json::from_str(LIMITED).unwrap();
    server.deploy("hog", &[("score.py", HOG)], &[], dc).await;
    let shown = show(&server, "hog").await;
    let mode = shown["resources"]["enforcement"]
        .as_str()
        .unwrap()
        .to_owned();
    let expected = writable_cgroup_mode().unwrap_or("rlimit");
    assert_eq!(mode, expected, "{shown}");
    assert!(
        shown["resources"]["memoryLimit"]
            .as_str()
            .unwrap()
            .contains("268435456"),
        "{shown}"
    );
    // In a cgroup mode the worker sits in its own group.
    let seen = info(&server, "hog").await;
    assert_eq!(
        seen["cgroup"].as_str().unwrap().contains("/berth/s"),
        expected != "rlimit",
        "{seen}"
    );
    hog_is_killed_and_replaced(&server, "hog", &mode).await;
}

#[tokio::test]
async fn a_memory_hog_is_killed_by_its_cgroup_and_reported() {
    let Some(mode) =
        cgroup_mode_or_skip("resources::a_memory_hog_is_killed_by_its_cgroup_and_reported")
    else {
        return;
    };
    let server = TestServer::start_with(&["--resource-enforcement", mode]).await;
    let dc: Value = serde_json::from_str(LIMITED).unwrap();
    server.deploy("hogc", &[("score.py", HOG)], &[], dc).await;
    let shown = show(&server, "hogc").await;
    assert_eq!(shown["resources"]["enforcement"], mode, "{shown}");
    let seen = info(&server, "hogc").await;
    assert!(
        seen["cgroup"].as_str().unwrap().contains("/berth/s"),
        "{seen}"
    );
    hog_is_killed_and_replaced(&server, "hogc", mode).await;
}

#[tokio::test]
async fn the_rlimit_watchdog_kills_a_memory_hog_and_pins_cpus() {
    let server = TestServer::start_with(&["--resource-enforcement", "rlimit"]).await;
    let dc = json!({"computeType": "local", "containerResourceRequirements": {"cpu": 0.5, "memoryInGB": 0.1, "memoryInGBLimit": 0.25, "cpuLimit": 1}});
    server.deploy("hogr", &[("score.py", HOG)], &[], dc).await;
    let shown = show(&server, "hogr").await;
    assert_eq!(shown["resources"]["enforcement"], "rlimit");
    assert!(
        shown["resources"]["cpu"]
            .as_str()
            .unwrap()
            .contains("not enforced"),
        "{shown}"
    );
    let seen = info(&server, "hogr").await;
    let cpus = seen["cpus"].as_str().unwrap();
    assert!(
        !cpus.contains(',') && !cpus.contains('-'),
        "cpuLimit 1 pins one core: {seen}"
    );
    hog_is_killed_and_replaced(&server, "hogr", "rlimit").await;
}

#[tokio::test]
async fn cpu_limit_sets_the_cgroup_cpu_cap() {
    let Some(mode) = cgroup_mode_or_skip("resources::cpu_limit_sets_the_cgroup_cpu_cap") else {
        return;
    };
    let server = TestServer::start_with(&["--resource-enforcement", mode]).await;
    let dc = json!({"computeType": "local", "containerResourceRequirements": {"cpu": 0.5, "memoryInGB": 0.1, "cpuLimit": 0.5, "memoryInGBLimit": 0.5}});
    server.deploy("quota", &[("score.py", HOG)], &[], dc).await;
    let shown = show(&server, "quota").await;
    let seen = info(&server, "quota").await;
    let groups = seen["cgroup"].as_str().unwrap();
    let (described, file, expected) = if mode == "cgroup-v1" {
        let cpu_path = groups
            .lines()
            .find_map(|l| l.split_once(":cpu:").map(|(_, p)| p.to_owned()))
            .expect("a cpu group");
        (
            "cpu.cfs_quota_us 50000",
            format!("/sys/fs/cgroup/cpu{cpu_path}/cpu.cfs_quota_us"),
            "50000",
        )
    } else {
        let path = groups
            .lines()
            .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
            .expect("a cgroup v2 group");
        (
            "cpu.max 50000 100000",
            format!("/sys/fs/cgroup{path}/cpu.max"),
            "50000 100000",
        )
    };
    assert!(
        shown["resources"]["cpuLimit"]
            .as_str()
            .unwrap()
            .contains(described),
        "{shown}"
    );
    let cap = std::fs::read_to_string(&file).unwrap();
    assert_eq!(cap.trim(), expected, "{file}");
}

#[tokio::test]
async fn a_memory_limit_changes_by_update() {
    let server = TestServer::start().await;
    let dc = json!({"computeType": "local", "containerResourceRequirements": {"cpu": 0.5, "memoryInGB": 0.1, "cpuLimit": 0.5, "memoryInGBLimit": 0.5}});
    server.deploy("memup", &[("score.py", HOG)], &[], dc).await;
    let op = update(
        &server,
        "memup",
        json!({"computeType": "local", "containerResourceRequirements": {"memoryInGBLimit": 1}}),
    )
    .await;
    assert_eq!(op["state"], "Succeeded", "{op}");
    let shown = show(&server, "memup").await;
    assert!(
        shown["resources"]["memoryLimit"]
            .as_str()
            .unwrap()
            .contains("1073741824"),
        "{shown}"
    );
    assert_eq!(shown["servingRevision"], 2);
}

#[tokio::test]
async fn gpus_are_assigned_and_refused_when_not_free() {
    let server = TestServer::start_with(&["--gpus", "0,1"]).await;
    server
        .deploy(
            "gpu",
            &[("score.py", HOG)],
            &[],
            json!({"computeType": "local", "gpuCores": 1}),
        )
        .await;
    assert_eq!(info(&server, "gpu").await["cuda"], "0");
    let shown = show(&server, "gpu").await;
    assert_eq!(shown["resources"]["gpuIds"], json!(["r1/0=0"]), "{shown}");

    server
        .deploy(
            "cpu",
            &[("score.py", HOG)],
            &[],
            json!({"computeType": "local"}),
        )
        .await;
    assert_eq!(
        info(&server, "cpu").await["cuda"],
        "",
        "CPU services see no GPU"
    );

    let refused = server
        .create_service(
            "big",
            &[("score.py", HOG)],
            &[],
            json!({"computeType": "local", "gpuCores": 3}),
        )
        .await;
    assert_error(&refused, 409, "unschedulable", "3 GPU(s) per replica");
    assert!(
        refused.1["message"]
            .as_str()
            .unwrap()
            .contains("1 free (1)"),
        "{}",
        refused.1
    );

    // A rolling update to 2 GPUs starts the new replica while the old one holds GPU 0: only one is free.
    let refused = patch(&server, "gpu", json!({"gpuCores": 2})).await;
    assert_error(&refused, 409, "unschedulable", "rolling update");
}

#[tokio::test]
async fn the_rlimit_watchdog_watches_init_too() {
    let server = TestServer::start_with(&["--resource-enforcement", "rlimit"]).await;
    let greedy_init: &[u8] = b"import time\ndef init():\n    global weights\n    weights = []\n    while True:\n        weights.append(bytearray(50 * 1024 * 1024))\n        time.sleep(0.05)\ndef run(raw):\n    return len(weights)\n";
    let dc = json!({"computeType": "local", "containerResourceRequirements": {"cpu": 0.5, "memoryInGB": 0.1, "memoryInGBLimit": 0.25}});
    let (status, accepted) = server
        .create_service("fat-init", &[("score.py", greedy_init)], &[], dc)
        .await;
    assert_eq!(status, 202, "{accepted}");
    let op = server
        .wait_operation(accepted["operation"]["id"].as_str().unwrap())
        .await;
    assert_eq!(op["state"], "Failed", "{op}");
    assert_eq!(op["error"]["code"], "MemoryLimitExceeded", "{op}");
    let message = op["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("memory limit"), "{op}");
    assert!(message.contains("watchdog"), "{op}");
    let shown = show(&server, "fat-init").await;
    assert_eq!(shown["state"], "Failed", "{shown}");
}
