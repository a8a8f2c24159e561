//! The memory watchdog of `rlimit` mode: samples a worker's resident memory
//! (and all its descendants') every [`SAMPLE_EVERY`] and kills it with SIGKILL
//! once it is over its `memoryInGBLimit`, recording why first. In cgroup modes
//! the kernel enforces the limit and this does not run.

use std::sync::Arc;
use std::time::Duration;

use super::ReplicaLimits;

/// How often resident memory is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// `VmRSS` of a `/proc/<pid>/status` text, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn rss_of(pid: u32) -> Option<u64> {
    parse_vm_rss(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// Resident bytes of `pid` plus all its descendants (None once it is gone).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let own = rss_of(pid)?;
    let theirs: u64 = super::descendants::descendants_of(pid)
        .into_iter()
        .filter_map(rss_of)
        .sum();
    Some(own + theirs)
}

/// The watchdog's decision: kill once resident memory is above the limit.
pub fn over_limit(rss: u64, limit: u64) -> bool {
    rss > limit
}

/// The reason recorded for a watchdog kill.
pub fn kill_reason(rss: u64, limit: u64) -> String {
    format!(
        "killed for exceeding its memory limit: resident memory {} MiB is over memoryInGBLimit {} MiB (rlimit mode: the server's memory watchdog sent SIGKILL)",
        rss >> 20,
        limit >> 20
    )
}

/// The start time of `pid` (field 22 of `/proc/<pid>/stat`, clock ticks
/// since boot): tells the process apart from a later one with the same id.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Watches process `pid` from its start (so `init()` too) until it exits;
/// kills it with SIGKILL when it goes over `limit` bytes, recording why first.
pub async fn run(pid: u32, limits: Arc<ReplicaLimits>, limit: u64) {
    let Some(started) = start_time(pid) else {
        return;
    };
    let Some(target) = rustix::process::Pid::from_raw(pid as i32) else {
        return;
    };
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if start_time(pid) != Some(started) {
            return;
        }
        let Some(rss) = rss_bytes(pid) else {
            return;
        };
        if over_limit(rss, limit) {
            limits.set_kill_reason(kill_reason(rss, limit));
            if let Err(e) = rustix::process::kill_process(target, rustix::process::Signal::KILL) {
                tracing::warn!(pid, error = %e, "could not kill a worker over its memory limit");
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_decides() {
        let status = "Name:\tpython3\nVmPeak:\t  99999 kB\nVmRSS:\t   2048 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status), Some(2048 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        assert!(!over_limit(256 << 20, 256 << 20));
        assert!(over_limit((256 << 20) + 1, 256 << 20));
        assert!(rss_bytes(std::process::id()).is_some_and(|b| b > 0));
        assert!(start_time(std::process::id()).is_some());
        assert_eq!(start_time(u32::MAX), None);
        let reason = kill_reason(300 << 20, 256 << 20);
        assert!(
            reason.contains("300 MiB") && reason.contains("256 MiB"),
            "{reason}"
        );
    }
}
