//! A worker's processes where there is no cgroup (`rlimit` and `off` modes): its descendants
//! (from `/proc/<pid>/task/*/children`, for the memory watchdog) and ending its process group
//! once it is gone.

use std::time::Duration;

/// The children of every thread of `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    out
}

/// `pid`'s descendants, children first (not `pid` itself).
pub fn descendants_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut queue = vec![pid];
    while let Some(next) = queue.pop() {
        for child in children_of(next) {
            if !out.contains(&child) && out.len() < 100_000 {
                out.push(child);
                queue.push(child);
            }
        }
    }
    out
}

/// The process group of a `/proc/<pid>/stat` text (field 5).
pub fn parse_pgrp(stat: &str) -> Option<u32> {
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Processes whose group is `pgid`.
fn members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| parse_pgrp(&s))
                == Some(pgid)
        })
        .collect()
}

/// Ends every process left in the worker's process group (the worker leads it), until none is.
pub async fn kill_group(pgid: u32) {
    let Some(group) = rustix::process::Pid::from_raw(pgid as i32) else {
        return;
    };
    for _ in 0..100 {
        if members(pgid).is_empty() {
            return;
        }
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::warn!(
        pgid,
        "processes of a stopped replica's group are still running"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_process_group() {
        assert_eq!(parse_pgrp("12 (py thon) S 1 34 34 0 -1"), Some(34));
        assert_eq!(parse_pgrp("garbage"), None);
        let own = std::fs::read_to_string("/proc/self/stat").expect("stat");
        assert!(parse_pgrp(&own).is_some());
    }

    #[test]
    fn finds_grandchildren() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .spawn()
            .expect("sh");
        let pid = child.id();
        let mut found = Vec::new();
        for _ in 0..100 {
            found = descendants_of(std::process::id());
            if found.len() >= 2 && found.contains(&pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::process::Command::new("pkill")
            .args(["-P", &pid.to_string()])
            .status();
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&pid), "{found:?}");
        assert!(found.len() >= 2, "the sleep under sh: {found:?}");
    }
}
