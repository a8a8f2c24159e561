//! Control groups: finding the server's own group (v1 and v2), preparing
//! `<own group>/berth/s<server pid>/`, and one group per replica with its
//! request and limit files; after the process is gone, whether the kernel
//! killed it for memory, and removing the group.

use std::io;
use std::path::{Path, PathBuf};

use super::LimitsError;

/// CFS period used for `cpuLimit` (µs).
pub const CFS_PERIOD_US: u64 = 100_000;

/// The server's own group in each hierarchy that could be used.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupRoots {
    /// The own group on the cgroup2 mount.
    pub v2: Option<PathBuf>,
    /// The own group in the v1 memory hierarchy.
    pub v1_memory: Option<PathBuf>,
    /// The own group in the v1 cpu hierarchy.
    pub v1_cpu: Option<PathBuf>,
    /// The own group in the v1 pids hierarchy.
    pub v1_pids: Option<PathBuf>,
}

/// A cgroup mount from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq)]
struct Mount {
    root: String,
    point: PathBuf,
    v2: bool,
    options: Vec<String>,
}

fn parse_mounts(mountinfo: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let tail: Vec<&str> = right.split(' ').collect();
        if fields.len() < 5 || tail.len() < 3 {
            continue;
        }
        let v2 = match tail[0] {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        out.push(Mount {
            root: fields[3].to_owned(),
            point: PathBuf::from(fields[4].replace("\\040", " ")),
            v2,
            options: tail[2].split(',').map(str::to_owned).collect(),
        });
    }
    out
}

/// `(controllers, path)` per line of `/proc/self/cgroup`.
fn parse_membership(text: &str) -> Vec<(Vec<String>, String)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            let list = if controllers.is_empty() {
                Vec::new()
            } else {
                controllers.split(',').map(str::to_owned).collect()
            };
            Some((list, path.to_owned()))
        })
        .collect()
}

fn join_group(mount: &Mount, path: &str) -> PathBuf {
    let relative = if mount.root != "/" {
        path.strip_prefix(mount.root.as_str()).unwrap_or(path)
    } else {
        path
    };
    mount.point.join(relative.trim_start_matches('/'))
}

/// Finds the server's own groups from the texts of `/proc/self/mountinfo` and
/// `/proc/self/cgroup`.
pub fn roots_from(mountinfo: &str, membership: &str) -> CgroupRoots {
    let mounts = parse_mounts(mountinfo);
    let members = parse_membership(membership);
    let mut roots = CgroupRoots::default();
    for mount in &mounts {
        if mount.v2 {
            if let Some((_, path)) = members.iter().find(|(c, _)| c.is_empty()) {
                roots.v2 = Some(join_group(mount, path));
            }
            continue;
        }
        for (controller, slot) in [
            ("memory", &mut roots.v1_memory),
            ("cpu", &mut roots.v1_cpu),
            ("pids", &mut roots.v1_pids),
        ] {
            if mount.options.iter().any(|o| o == controller)
                && let Some((_, path)) = members
                    .iter()
                    .find(|(c, _)| c.iter().any(|x| x == controller))
            {
                *slot = Some(join_group(mount, path));
            }
        }
    }
    roots
}

/// The server's own groups on this machine.
pub fn discover() -> CgroupRoots {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let membership = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    roots_from(&mountinfo, &membership)
}

/// Where this server's replica groups go.
#[derive(Debug, Clone, PartialEq)]
pub enum Layout {
    /// One directory per replica on the cgroup2 mount.
    V2 {
        /// `<own>/berth/s<pid>`.
        base: PathBuf,
    },
    /// A directory per replica in the memory and in the cpu hierarchy.
    V1 {
        /// `<own memory group>/berth/s<pid>`.
        memory: PathBuf,
        /// `<own cpu group>/berth/s<pid>`.
        cpu: PathBuf,
        /// `<own pids group>/berth/s<pid>`, when the pids hierarchy is usable.
        pids: Option<PathBuf>,
    },
}

fn write(path: &Path, value: &str) -> Result<(), LimitsError> {
    std::fs::write(path, value).map_err(|source| LimitsError::Write {
        path: path.to_path_buf(),
        value: value.to_owned(),
        source,
    })
}

fn mkdir(path: &Path) -> Result<(), LimitsError> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(LimitsError::Create {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn enable_v2_controllers(group: &Path) -> Result<(), LimitsError> {
    let current = std::fs::read_to_string(group.join("cgroup.subtree_control")).unwrap_or_default();
    let on = |c: &str| current.split_whitespace().any(|x| x == c);
    if on("memory") && on("cpu") {
        return Ok(());
    }
    // pids.max per replica where the kernel offers the controller here.
    let offered = std::fs::read_to_string(group.join("cgroup.controllers")).unwrap_or_default();
    let value = if offered.split_whitespace().any(|c| c == "pids") {
        "+memory +cpu +pids"
    } else {
        "+memory +cpu"
    };
    write(&group.join("cgroup.subtree_control"), value)
}

/// Prepares `<own>/berth/<instance>` on cgroup2: the mount must offer memory
/// and cpu, and the server must be able to enable them for its children.
pub fn prepare_v2(own: &Path, instance: &str) -> Result<Layout, LimitsError> {
    let controllers =
        std::fs::read_to_string(own.join("cgroup.controllers")).map_err(|source| {
            LimitsError::Create {
                path: own.join("cgroup.controllers"),
                source,
            }
        })?;
    let offered = |c: &str| controllers.split_whitespace().any(|x| x == c);
    if !(offered("memory") && offered("cpu")) {
        return Err(LimitsError::Unavailable(format!(
            "the cgroup2 group {} offers `{}`, not both memory and cpu",
            own.display(),
            controllers.trim()
        )));
    }
    enable_v2_controllers(own)?;
    let berth = own.join("berth");
    mkdir(&berth)?;
    enable_v2_controllers(&berth)?;
    remove_stale(&berth);
    let base = berth.join(instance);
    mkdir(&base)?;
    enable_v2_controllers(&base)?;
    Ok(Layout::V2 { base })
}

/// Prepares `<own>/berth/<instance>` in the v1 memory and cpu hierarchies.
pub fn prepare_v1(
    memory_own: &Path,
    cpu_own: &Path,
    instance: &str,
) -> Result<Layout, LimitsError> {
    let mut made = Vec::new();
    for own in [memory_own, cpu_own] {
        if !own.join("cgroup.procs").exists() {
            return Err(LimitsError::Unavailable(format!(
                "{} is not a cgroup v1 group",
                own.display()
            )));
        }
        let berth = own.join("berth");
        mkdir(&berth)?;
        remove_stale(&berth);
        let base = berth.join(instance);
        mkdir(&base)?;
        made.push(base);
    }
    let cpu = made.pop().unwrap_or_default();
    let memory = made.pop().unwrap_or_default();
    Ok(Layout::V1 {
        memory,
        cpu,
        pids: None,
    })
}

/// Adds the v1 pids hierarchy to a v1 layout (`pids.max` per replica); left out, with a
/// warning, when it cannot be used.
pub fn with_v1_pids(layout: Layout, pids_own: Option<&Path>, instance: &str) -> Layout {
    let Layout::V1 { memory, cpu, .. } = layout else {
        return layout;
    };
    let pids = pids_own.and_then(|own| {
        let berth = own.join("berth");
        let made = mkdir(&berth).and_then(|()| {
            remove_stale(&berth);
            let base = berth.join(instance);
            mkdir(&base).map(|()| base)
        });
        match made {
            Ok(base) if base.join("pids.max").exists() => Some(base),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "the cgroup v1 pids hierarchy cannot be used: maxProcessesPerContainer is not enforced");
                None
            }
        }
    });
    Layout::V1 { memory, cpu, pids }
}

/// Removes groups left by servers that are gone (`s<pid>` with no such process).
fn remove_stale(berth: &Path) {
    let Ok(entries) = std::fs::read_dir(berth) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix('s').and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            remove_tree(&entry.path());
        }
    }
}

/// rmdir bottom-up; groups that still hold processes stay.
pub fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Requests and limits of one replica, in bytes and cores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupSettings {
    /// `cpu` (cores).
    pub cpu: f64,
    /// `cpuLimit` (cores).
    pub cpu_limit: Option<f64>,
    /// `memoryInGB` in bytes.
    pub memory: u64,
    /// `memoryInGBLimit` in bytes.
    pub memory_limit: Option<u64>,
    /// `maxProcessesPerContainer` (`pids.max`).
    pub pids_max: Option<u64>,
}

/// `cpu.shares` for a request of `cores` (Kubernetes: 1024 per core, at least 2).
pub fn cpu_shares(cores: f64) -> u64 {
    ((cores * 1024.0).round() as u64).max(2)
}

/// `cpu.weight` for a request of `cores` (the Kubernetes shares → weight map).
pub fn cpu_weight(cores: f64) -> u64 {
    let shares = cpu_shares(cores).min(262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// CFS quota (µs per [`CFS_PERIOD_US`]) for a limit of `cores` (at least 1 ms).
pub fn cfs_quota(cores: f64) -> u64 {
    ((cores * CFS_PERIOD_US as f64).round() as u64).max(1000)
}

/// The v2 files to write, in order.
pub fn v2_writes(s: &GroupSettings) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("cpu.weight", cpu_weight(s.cpu).to_string()),
        ("memory.low", s.memory.to_string()),
    ];
    if let Some(limit) = s.cpu_limit {
        out.push(("cpu.max", format!("{} {CFS_PERIOD_US}", cfs_quota(limit))));
    }
    if let Some(limit) = s.memory_limit {
        out.push(("memory.max", limit.to_string()));
        out.push(("memory.swap.max", "0".into()));
    }
    out
}

/// Which v1 hierarchy a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V1 {
    /// The memory hierarchy.
    Memory,
    /// The cpu hierarchy.
    Cpu,
}

/// The v1 files to write, in order (the swap limit after the memory limit).
pub fn v1_writes(s: &GroupSettings) -> Vec<(V1, &'static str, String)> {
    let mut out = vec![
        (V1::Cpu, "cpu.shares", cpu_shares(s.cpu).to_string()),
        (
            V1::Memory,
            "memory.soft_limit_in_bytes",
            s.memory.to_string(),
        ),
    ];
    if let Some(limit) = s.cpu_limit {
        out.push((V1::Cpu, "cpu.cfs_period_us", CFS_PERIOD_US.to_string()));
        out.push((V1::Cpu, "cpu.cfs_quota_us", cfs_quota(limit).to_string()));
    }
    if let Some(limit) = s.memory_limit {
        out.push((V1::Memory, "memory.limit_in_bytes", limit.to_string()));
        out.push((V1::Memory, "memory.memsw.limit_in_bytes", limit.to_string()));
    }
    out
}

/// One replica's group (one directory on v2, two on v1).
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// v2: `[dir]`; v1: `[memory dir, cpu dir]`.
    pub dirs: Vec<PathBuf>,
    /// Whether this is a v2 group.
    pub v2: bool,
}

/// A name safe as one path segment: `[a-z0-9-]`, other bytes become `_`.
pub fn sanitise(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn fresh_dir(parent: &Path, leaf: &str) -> Result<PathBuf, LimitsError> {
    mkdir(parent)?;
    let mut candidate = parent.join(leaf);
    let mut n = 1;
    loop {
        match std::fs::create_dir(&candidate) {
            Ok(()) => return Ok(candidate),
            // A group of an earlier process with the same index not yet removed.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 100 => {
                if std::fs::remove_dir(&candidate).is_ok() {
                    continue;
                }
                candidate = parent.join(format!("{leaf}-{n}"));
                n += 1;
            }
            Err(source) => {
                return Err(LimitsError::Create {
                    path: candidate,
                    source,
                });
            }
        }
    }
}

impl Group {
    /// Creates `<base>/<service>/<leaf>` and writes the settings.
    pub fn create(
        layout: &Layout,
        service: &str,
        leaf: &str,
        settings: &GroupSettings,
    ) -> Result<Group, LimitsError> {
        let service = sanitise(service);
        let leaf = sanitise(leaf);
        let group = match layout {
            Layout::V2 { base } => {
                let parent = base.join(&service);
                mkdir(&parent)?;
                enable_v2_controllers(&parent)?;
                let dir = fresh_dir(&parent, &leaf)?;
                Group {
                    dirs: vec![dir],
                    v2: true,
                }
            }
            Layout::V1 { memory, cpu, pids } => {
                let m = fresh_dir(&memory.join(&service), &leaf)?;
                let c = match fresh_dir(&cpu.join(&service), &leaf) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = std::fs::remove_dir(&m);
                        return Err(e);
                    }
                };
                let mut dirs = vec![m, c];
                if let Some(pids) = pids {
                    match fresh_dir(&pids.join(&service), &leaf) {
                        Ok(p) => dirs.push(p),
                        Err(e) => {
                            for dir in &dirs {
                                let _ = std::fs::remove_dir(dir);
                            }
                            return Err(e);
                        }
                    }
                }
                Group { dirs, v2: false }
            }
        };
        if let Err(e) = group.write_settings(settings) {
            group.remove_now();
            return Err(e);
        }
        Ok(group)
    }

    fn write_settings(&self, settings: &GroupSettings) -> Result<(), LimitsError> {
        if self.v2 {
            for (file, value) in v2_writes(settings) {
                let path = self.dirs[0].join(file);
                // No swap accounting on this kernel: nothing to cap.
                if file == "memory.swap.max" && !path.exists() {
                    continue;
                }
                write(&path, &value)?;
            }
        } else {
            for (which, file, value) in v1_writes(settings) {
                let dir = match which {
                    V1::Memory => &self.dirs[0],
                    V1::Cpu => &self.dirs[1],
                };
                let path = dir.join(file);
                if file == "memory.memsw.limit_in_bytes" && !path.exists() {
                    continue;
                }
                write(&path, &value)?;
            }
        }
        if let Some(max) = settings.pids_max {
            let dir = if self.v2 {
                self.dirs.first()
            } else {
                self.dirs.get(2)
            };
            if let Some(path) = dir.map(|d| d.join("pids.max"))
                && path.exists()
            {
                write(&path, &max.to_string())?;
            }
        }
        Ok(())
    }

    /// Whether the group limits its processes (`pids.max`).
    pub fn limits_pids(&self) -> bool {
        let dir = if self.v2 {
            self.dirs.first()
        } else {
            self.dirs.get(2)
        };
        dir.is_some_and(|d| d.join("pids.max").exists())
    }

    /// The pids in the group now.
    pub fn pids(&self) -> Vec<i32> {
        let text = self
            .dirs
            .first()
            .and_then(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .unwrap_or_default();
        parse_pids(&text)
    }

    /// Ends every process of the group: `cgroup.kill` on v2 where the kernel has it, else
    /// SIGKILL to each member until the group is empty (a fork racing the walk is caught by the
    /// next round). Returns how many were still running.
    pub async fn kill_all(&self) -> usize {
        let mut killed = std::collections::HashSet::new();
        if self.v2
            && let Some(dir) = self.dirs.first()
            && dir.join("cgroup.kill").exists()
        {
            let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        }
        for _ in 0..500 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    killed.insert(pid);
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        killed.len()
    }

    /// The `cgroup.procs` files the worker writes its pid into.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Whether the kernel's OOM killer killed a process of this group.
    pub fn oom_killed(&self) -> bool {
        let file = if self.v2 {
            self.dirs[0].join("memory.events")
        } else {
            self.dirs[0].join("memory.oom_control")
        };
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if oom_kill_count(&text) > 0 {
            return true;
        }
        // Older v1 kernels have no `oom_kill` line: a hit limit is the sign.
        !self.v2
            && !text.contains("oom_kill ")
            && std::fs::read_to_string(self.dirs[0].join("memory.failcnt"))
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .is_some_and(|n| n > 0)
    }

    fn remove_now(&self) -> bool {
        let mut all = true;
        for dir in &self.dirs {
            match std::fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => all = false,
            }
        }
        all
    }

    /// Removes the group (retrying while the kernel finishes with the exited
    /// process) and the service's directory when it is empty.
    pub async fn remove(&self) {
        for _ in 0..50 {
            if self.remove_now() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        if !self.remove_now() {
            tracing::warn!(group = ?self.dirs, "could not remove a replica's cgroup");
        }
        for dir in &self.dirs {
            if let Some(parent) = dir.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

/// The pids listed in a `cgroup.procs` text.
pub fn parse_pids(text: &str) -> Vec<i32> {
    text.split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The `oom_kill N` counter of `memory.events` (v2) or `memory.oom_control` (v1).
pub fn oom_kill_count(text: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
