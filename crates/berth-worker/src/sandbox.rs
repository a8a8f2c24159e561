//! The boundary a worker runs in, applied between `fork` and the interpreter's `exec`.
//!
//! The supervisor does not start the interpreter directly: it starts this binary's hidden
//! `sandbox-exec` command (the [`Launcher`]), which, still single-threaded and with the server's
//! privileges, joins the replica's cgroups, builds a Landlock ruleset from the [`SandboxPolicy`]
//! (read and execute the system, the environment, the source and the models; write only the
//! listed directories; signals and abstract Unix sockets scoped to the worker's own domain), drops
//! to the worker user (supplementary groups, gid, uid), sets `no_new_privs`, restricts itself and
//! `exec`s the interpreter. `exec` keeps the pid, so the supervisor's spawned pid is the worker's.
//!
//! [`probe`] tells the server what this kernel offers, so `best-effort` can name what is missing
//! and `strict` can refuse before a replica starts.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, Scope, path_beneath_rules,
};

/// The hidden command of the `berth` binary that applies a policy and execs the worker.
pub const LAUNCHER_COMMAND: &str = "sandbox-exec";

/// The file-system rights Berth handles (ABI 3: reads, writes, renames across dirs, truncate).
const HANDLED_ABI: ABI = ABI::V3;

/// System locations every worker may read and execute.
pub const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/bin",
    "/sbin",
    "/etc",
    "/opt",
    "/proc",
    "/dev",
    "/sys/devices/system/cpu",
    "/sys/devices/system/node",
    "/run/systemd/resolve",
];

/// Device files and shared-memory directories every worker may write.
pub const SYSTEM_WRITE: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/shm",
];

/// What one worker may do. Paths that do not exist are skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxPolicy {
    /// Read and execute beneath these paths (besides [`SYSTEM_READ`]).
    pub read: Vec<PathBuf>,
    /// Read, write, create and remove beneath these paths (besides [`SYSTEM_WRITE`]).
    pub write: Vec<PathBuf>,
    /// `(uid, gid)` to run as; None keeps the server's.
    pub user: Option<(u32, u32)>,
    /// `cgroup.procs` files the launcher writes its pid into before dropping privileges.
    pub cgroup_procs: Vec<PathBuf>,
    /// Apply Landlock at all.
    pub landlock: bool,
    /// Fail instead of running with less than full Landlock enforcement.
    pub strict: bool,
}

/// The program that applies a [`SandboxPolicy`] and execs the interpreter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launcher {
    /// The `berth` binary.
    pub program: PathBuf,
    /// What to apply.
    pub policy: SandboxPolicy,
}

impl Launcher {
    /// Arguments before the interpreter's command line: `sandbox-exec <policy> --`.
    pub fn args(&self) -> Vec<OsString> {
        let mut out = vec![OsString::from(LAUNCHER_COMMAND)];
        out.extend(self.policy.to_args());
        out.push("--".into());
        out
    }
}

impl SandboxPolicy {
    /// The policy as launcher arguments (without the `--` that ends them).
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = Vec::new();
        let mut path = |flag: &str, p: &Path| {
            out.push(flag.into());
            out.push(p.as_os_str().to_owned());
        };
        for p in &self.read {
            path("--read", p);
        }
        for p in &self.write {
            path("--write", p);
        }
        for p in &self.cgroup_procs {
            path("--cgroup-procs", p);
        }
        if let Some((uid, gid)) = self.user {
            out.push("--user".into());
            out.push(format!("{uid}:{gid}").into());
        }
        if self.landlock {
            out.push("--landlock".into());
        }
        if self.strict {
            out.push("--strict".into());
        }
        out
    }

    /// Parses launcher arguments up to `--`; returns the policy and the command after `--`.
    pub fn parse(args: Vec<OsString>) -> Result<(SandboxPolicy, Vec<OsString>), String> {
        let mut policy = SandboxPolicy::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let flag = arg.to_string_lossy().into_owned();
            let mut value = || it.next().ok_or_else(|| format!("`{flag}` needs a value"));
            match flag.as_str() {
                "--" => {
                    let command: Vec<OsString> = it.collect();
                    if command.is_empty() {
                        return Err("no command after `--`".into());
                    }
                    return Ok((policy, command));
                }
                "--read" => policy.read.push(value()?.into()),
                "--write" => policy.write.push(value()?.into()),
                "--cgroup-procs" => policy.cgroup_procs.push(value()?.into()),
                "--user" => {
                    let text = value()?.to_string_lossy().into_owned();
                    policy.user = Some(parse_user(&text)?);
                }
                "--landlock" => policy.landlock = true,
                "--strict" => policy.strict = true,
                other => return Err(format!("unknown argument `{other}`")),
            }
        }
        Err("missing `--` and the command to run".into())
    }
}

fn parse_user(text: &str) -> Result<(u32, u32), String> {
    let (uid, gid) = text
        .split_once(':')
        .ok_or_else(|| format!("`--user {text}`: expected UID:GID"))?;
    let num = |s: &str| {
        s.parse::<u32>()
            .map_err(|_| format!("`--user {text}`: `{s}` is not a number"))
    };
    Ok((num(uid)?, num(gid)?))
}

/// What this kernel offers a worker sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Support {
    /// File-system rules (Landlock ABI ≥ 3 for everything Berth handles).
    pub filesystem: bool,
    /// Signal and abstract Unix socket scoping (Landlock ABI ≥ 6).
    pub scoping: bool,
}

impl Support {
    /// Names of what is missing (empty when everything is there).
    pub fn missing(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.filesystem {
            out.push("Landlock file-system rules (kernel ≥ 6.2 with Landlock enabled)");
        }
        if !self.scoping {
            out.push("Landlock signal and abstract-socket scoping (kernel ≥ 6.12)");
        }
        out
    }
}

/// Asks the kernel what it supports, by creating (and dropping) rulesets that require it.
pub fn probe() -> Support {
    let filesystem = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(HANDLED_ABI))
        .and_then(|r| r.create())
        .is_ok();
    let scoping = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .scope(Scope::from_all(ABI::V6))
        .and_then(|r| r.create())
        .is_ok();
    Support {
        filesystem,
        scoping,
    }
}

/// Runs the launcher: applies the policy and execs the command. Returns only on failure, with
/// the message to print (the caller exits non-zero; the supervisor shows the output).
pub fn launch(args: Vec<OsString>) -> String {
    let (policy, command) = match SandboxPolicy::parse(args) {
        Ok(parsed) => parsed,
        Err(e) => return format!("berth sandbox-exec: {e}"),
    };
    match apply(&policy) {
        Ok(()) => {}
        Err(e) => return format!("berth sandbox-exec: {e}"),
    }
    let mut cmd = std::process::Command::new(&command[0]);
    cmd.args(&command[1..]);
    let err = cmd.exec();
    format!(
        "berth sandbox-exec: cannot run {}: {err}",
        Path::new(&command[0]).display()
    )
}

/// Joins the cgroups, restricts the file system and scopes, drops privileges.
fn apply(policy: &SandboxPolicy) -> Result<(), String> {
    let pid = std::process::id().to_string();
    for procs in &policy.cgroup_procs {
        std::fs::write(procs, &pid).map_err(|e| {
            format!(
                "cannot join the replica's cgroup ({}): {e}",
                procs.display()
            )
        })?;
    }
    let ruleset = if policy.landlock {
        Some(build_ruleset(policy).map_err(|e| format!("building the Landlock ruleset: {e}"))?)
    } else {
        None
    };
    if let Some((uid, gid)) = policy.user {
        use rustix::process::{Gid, Uid};
        let gid = Gid::from_raw(gid);
        let uid = Uid::from_raw(uid);
        rustix::thread::set_thread_groups(&[gid])
            .map_err(|e| format!("dropping supplementary groups: {e}"))?;
        rustix::thread::set_thread_res_gid(gid, gid, gid)
            .map_err(|e| format!("switching to gid {}: {e}", gid.as_raw()))?;
        rustix::thread::set_thread_res_uid(uid, uid, uid)
            .map_err(|e| format!("switching to uid {}: {e}", uid.as_raw()))?;
    }
    if policy.user.is_none() && rustix::process::geteuid().is_root() {
        drop_all_capabilities()?;
    }
    rustix::thread::set_no_new_privs(true).map_err(|e| format!("setting no_new_privs: {e}"))?;
    if let Some(ruleset) = ruleset {
        let status = ruleset
            .restrict_self()
            .map_err(|e| format!("applying the Landlock ruleset: {e}"))?;
        if policy.strict && status.ruleset != RulesetStatus::FullyEnforced {
            return Err(format!(
                "Landlock is {:?} on this kernel and --worker-isolation is strict",
                status.ruleset
            ));
        }
    }
    Ok(())
}

/// A worker left as root (no worker user could be used) keeps uid 0 but no capability: every
/// capability leaves the bounding set, so the `exec` grants none, and the current sets are
/// emptied.
fn drop_all_capabilities() -> Result<(), String> {
    use rustix::thread::{CapabilitySet, CapabilitySets};
    for capability in CapabilitySet::all().iter() {
        match rustix::thread::remove_capability_from_bounding_set(capability) {
            // A capability this kernel does not know is not in its bounding set.
            Ok(()) | Err(rustix::io::Errno::INVAL) => {}
            Err(e) => {
                return Err(format!(
                    "dropping {capability:?} from the bounding set: {e}"
                ));
            }
        }
    }
    rustix::thread::clear_ambient_capability_set()
        .map_err(|e| format!("clearing the ambient capabilities: {e}"))?;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(|e| format!("dropping the capabilities: {e}"))
}

fn build_ruleset(
    policy: &SandboxPolicy,
) -> Result<landlock::RulesetCreated, landlock::RulesetError> {
    let level = if policy.strict {
        CompatLevel::HardRequirement
    } else {
        CompatLevel::BestEffort
    };
    let read = AccessFs::from_read(HANDLED_ABI);
    let all = AccessFs::from_all(HANDLED_ABI);
    let system_read = SYSTEM_READ.iter().map(Path::new);
    let system_write = SYSTEM_WRITE.iter().map(Path::new);
    Ruleset::default()
        .set_compatibility(level)
        .handle_access(all)?
        .scope(Scope::from_all(ABI::V6))?
        .create()?
        .add_rules(path_beneath_rules(system_read, read))?
        .add_rules(path_beneath_rules(&policy.read, read))?
        .add_rules(path_beneath_rules(system_write, all))?
        .add_rules(path_beneath_rules(&policy.write, all))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_round_trips_through_arguments() {
        let policy = SandboxPolicy {
            read: vec!["/env".into(), "/app".into()],
            write: vec!["/scratch".into()],
            user: Some((65534, 65533)),
            cgroup_procs: vec!["/sys/fs/cgroup/memory/x/cgroup.procs".into()],
            landlock: true,
            strict: true,
        };
        let launcher = Launcher {
            program: "/bin/berth".into(),
            policy: policy.clone(),
        };
        let mut args = launcher.args();
        assert_eq!(args.remove(0), LAUNCHER_COMMAND);
        args.push("python3".into());
        args.push("-u".into());
        let (parsed, command) = SandboxPolicy::parse(args).expect("parses");
        assert_eq!(parsed, policy);
        assert_eq!(command, vec![OsString::from("python3"), "-u".into()]);
    }

    #[test]
    fn bad_arguments_are_named() {
        let err = SandboxPolicy::parse(vec!["--user".into(), "x".into()]).unwrap_err();
        assert!(err.contains("UID:GID"), "{err}");
        let err = SandboxPolicy::parse(vec!["--bogus".into()]).unwrap_err();
        assert!(err.contains("--bogus"), "{err}");
        let err = SandboxPolicy::parse(vec!["--landlock".into()]).unwrap_err();
        assert!(err.contains("--"), "{err}");
        let err = SandboxPolicy::parse(vec!["--".into()]).unwrap_err();
        assert!(err.contains("no command"), "{err}");
    }

    #[test]
    fn missing_support_is_named() {
        let none = Support {
            filesystem: false,
            scoping: false,
        };
        assert_eq!(none.missing().len(), 2);
        let all = Support {
            filesystem: true,
            scoping: true,
        };
        assert!(all.missing().is_empty());
    }
}
