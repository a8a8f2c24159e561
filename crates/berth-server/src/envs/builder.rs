//! Building environments with `uv` (when found) or `python -m venv` + pip.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use berth_api::{BuildState, EnvironmentBuild, EnvironmentSpec};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::python::{FoundPython, PythonFinder, minor_of};
use super::spec::build_hash;

/// Lines of the build log carried in errors and status.
const LOG_TAIL_LINES: usize = 40;
/// Marker written into a finished build's folder.
const MARKER: &str = "berth-build.json";
/// Probe printing the interpreter's full version.
const VERSION_PROBE: &str = "import sys; print('%d.%d.%d' % sys.version_info[:3])";

/// How the builder is set up.
#[derive(Debug, Clone)]
pub struct EnvBuilderConfig {
    /// `<data>/envs`.
    pub root: PathBuf,
    /// The default interpreter (`--python`).
    pub default_python: PathBuf,
    /// `uv`, when found.
    pub uv: Option<PathBuf>,
    /// Where else to look for interpreters a spec's Python version asks for
    /// (`--python-search-path`).
    pub python_search_path: Vec<PathBuf>,
    /// Longest a build may take.
    pub timeout: Duration,
    /// Where build durations are counted.
    pub metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
}

/// A usable environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuiltEnv {
    /// The interpreter workers run.
    pub python: PathBuf,
    /// Its full version.
    pub full_version: String,
    /// `uv`, `pip`, `venv` (no packages) or `user-managed`.
    pub installer: String,
    /// Build time.
    pub duration_ms: u64,
    /// The interpreter the environment was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_python: Option<PathBuf>,
    /// Why the Python used differs from the one asked for (another patch level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_warning: Option<String>,
}

/// A failed build.
#[derive(Debug, Clone, thiserror::Error)]
#[error("environment build failed while trying to {step}: {message}")]
pub struct BuildError {
    /// The step that failed.
    pub step: &'static str,
    /// What went wrong.
    pub message: String,
    /// The last lines of the build log (pip's output).
    pub log_tail: Vec<String>,
    /// The full log.
    pub log_path: Option<PathBuf>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FailureRecord {
    step: String,
    message: String,
}

/// Builds environments, one build per hash at a time.
pub struct EnvBuilder {
    config: EnvBuilderConfig,
    /// Process groups of installers running now.
    groups: Arc<std::sync::Mutex<HashSet<i32>>>,
    /// Finds the Python versions specs ask for.
    finder: PythonFinder,
    locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    running: std::sync::Mutex<HashSet<String>>,
    builds: AtomicU64,
}

impl EnvBuilder {
    /// A builder with `config`.
    pub fn new(config: EnvBuilderConfig) -> Self {
        Self {
            finder: PythonFinder::new(
                config.default_python.clone(),
                config.python_search_path.clone(),
                config.uv.clone(),
            ),
            config,
            groups: Default::default(),
            locks: Default::default(),
            running: Default::default(),
            builds: AtomicU64::new(0),
        }
    }

    /// Kills every installer still running, with its process group (the
    /// server is stopping).
    pub fn stop_builds(&self) {
        let groups: Vec<i32> = self
            .groups
            .lock()
            .map(|g| g.iter().copied().collect())
            .unwrap_or_default();
        for pgid in groups {
            tracing::info!(pgid, "stopping an environment build's installer");
            kill_group(pgid);
        }
    }

    /// Removes what builds interrupted by a killed server left: their
    /// installers (found by the process group recorded beside the build and
    /// checked to still be that build's) and their folders and logs.
    pub fn clean_leftovers(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.config.root) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(hash) = name.split_once(".building").map(|(h, _)| h.to_owned()) else {
                continue;
            };
            let path = entry.path();
            if name.ends_with(".building.pgid")
                && let Some(pgid) = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| t.trim().parse::<i32>().ok())
                && group_belongs_to(pgid, &hash)
            {
                tracing::info!(pgid, build_hash = %hash, "killing the installer of an interrupted environment build");
                kill_group(pgid);
            }
            let result = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match result {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove an interrupted build's leftovers")
                }
            }
        }
        removed
    }

    /// Number of builds started since the server started (cache hits excluded).
    pub fn builds_started(&self) -> u64 {
        self.builds.load(Ordering::Relaxed)
    }

    fn dir(&self, hash: &str) -> PathBuf {
        self.config.root.join(hash)
    }

    fn failed_log(&self, hash: &str) -> PathBuf {
        self.config.root.join("failed").join(format!("{hash}.log"))
    }

    fn failed_record(&self, hash: &str) -> PathBuf {
        self.config.root.join("failed").join(format!("{hash}.json"))
    }

    /// What is known about the build of `spec`.
    pub async fn status(&self, spec: &EnvironmentSpec) -> EnvironmentBuild {
        let hash = build_hash(spec);
        let mut status = EnvironmentBuild {
            state: BuildState::NotStarted,
            build_hash: hash.clone(),
            python_path: None,
            python_full_version: None,
            base_python: None,
            python_warning: None,
            installer: None,
            duration_ms: None,
            error: None,
            log_tail: Vec::new(),
            log_path: None,
        };
        let running = self
            .running
            .lock()
            .map(|r| r.contains(&hash))
            .unwrap_or(false);
        if running {
            status.state = BuildState::Running;
            return status;
        }
        if let Some(built) = self.read_marker(&hash).await {
            status.state = BuildState::Succeeded;
            status.python_path = Some(built.python.display().to_string());
            status.python_full_version = Some(built.full_version);
            status.base_python = built.base_python.map(|p| p.display().to_string());
            status.python_warning = built.python_warning;
            status.installer = Some(built.installer);
            status.duration_ms = Some(built.duration_ms);
            status.log_path = Some(self.dir(&hash).join("build.log").display().to_string());
            return status;
        }
        if let Ok(text) = tokio::fs::read_to_string(self.failed_record(&hash)).await
            && let Ok(record) = serde_json::from_str::<FailureRecord>(&text)
        {
            let log = self.failed_log(&hash);
            status.state = BuildState::Failed;
            status.error = Some(format!("{}: {}", record.step, record.message));
            status.log_tail = tail(&log).await;
            status.log_path = Some(log.display().to_string());
        }
        status
    }

    async fn read_marker(&self, hash: &str) -> Option<BuiltEnv> {
        let text = tokio::fs::read_to_string(self.dir(hash).join(MARKER))
            .await
            .ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Starts building `spec` in the background (a no-op when it is built); its
    /// status reads `Running` from now until the build ends.
    pub fn start(self: &Arc<Self>, spec: EnvironmentSpec) {
        let hash = build_hash(&spec);
        if self.dir(&hash).join(MARKER).exists() {
            return;
        }
        if let Ok(mut running) = self.running.lock() {
            running.insert(hash);
        }
        let builder = self.clone();
        tokio::spawn(async move {
            // The outcome is recorded on disk and shown by `status`.
            let _ = builder.ensure(&spec).await;
        });
    }

    /// Returns the built environment, building it first when needed. Concurrent
    /// calls for one spec build it once.
    pub async fn ensure(&self, spec: &EnvironmentSpec) -> Result<BuiltEnv, BuildError> {
        let hash = build_hash(spec);
        let _running = RunningGuard {
            builder: self,
            hash: hash.clone(),
        };
        if let Some(built) = self.read_marker(&hash).await {
            return Ok(built);
        }
        let lock = {
            let mut locks = self.locks.lock().map_err(|_| BuildError {
                step: "schedule the build",
                message: "a builder lock was poisoned by an earlier panic".into(),
                log_tail: Vec::new(),
                log_path: None,
            })?;
            locks.entry(hash.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        if let Some(built) = self.read_marker(&hash).await {
            return Ok(built);
        }
        if let Ok(mut running) = self.running.lock() {
            running.insert(hash.clone());
        }
        self.builds.fetch_add(1, Ordering::Relaxed);
        tracing::info!(build_hash = %hash, python = ?spec.python_version, packages = spec.requirements.len(), "building environment");
        let started = Instant::now();
        let result = self.build(&hash, spec).await;
        if let Some(metrics) = &self.config.metrics {
            metrics.environment_built(
                started.elapsed().as_secs_f64(),
                if result.is_ok() {
                    "succeeded"
                } else {
                    "failed"
                },
            );
        }
        match &result {
            Ok(built) => {
                tracing::info!(build_hash = %hash, installer = %built.installer, duration_ms = built.duration_ms, "environment built")
            }
            Err(e) => tracing::warn!(build_hash = %hash, error = %e, "environment build failed"),
        }
        result
    }

    async fn build(&self, hash: &str, spec: &EnvironmentSpec) -> Result<BuiltEnv, BuildError> {
        let started = Instant::now();
        let final_dir = self.dir(hash);
        let work = self.config.root.join(format!("{hash}.building"));
        let _ = tokio::fs::remove_dir_all(&work).await;
        let _ = tokio::fs::remove_dir_all(&final_dir).await;
        tokio::fs::create_dir_all(&self.config.root)
            .await
            .map_err(|e| plain_error("create the environments folder", e.to_string()))?;
        // The log sits beside the folder being built: the venv tools want to create it themselves.
        let log_path = self.config.root.join(format!("{hash}.building.log"));
        let _ = tokio::fs::remove_file(&log_path).await;
        let mut run = BuildRun {
            log_path: log_path.clone(),
            pgid_path: self.config.root.join(format!("{hash}.building.pgid")),
            timeout: self.config.timeout,
            groups: self.groups.clone(),
        };
        let outcome = self.build_steps(&mut run, &work, spec).await;
        match outcome {
            Ok((installer, full_version, base)) => {
                tokio::fs::create_dir_all(&work)
                    .await
                    .map_err(|e| plain_error("create the build folder", e.to_string()))?;
                tokio::fs::rename(&log_path, work.join("build.log"))
                    .await
                    .map_err(|e| plain_error("keep the build log", e.to_string()))?;
                tokio::fs::rename(&work, &final_dir)
                    .await
                    .map_err(|e| plain_error("publish the build", e.to_string()))?;
                let python = match &spec.interpreter_path {
                    Some(_) => run_python_path(spec, &self.config.default_python).await?,
                    None => final_dir.join("bin").join("python"),
                };
                let built = BuiltEnv {
                    python,
                    full_version,
                    installer: installer.into(),
                    duration_ms: started.elapsed().as_millis() as u64,
                    base_python: base.as_ref().map(|b| b.path.clone()),
                    python_warning: base.and_then(|b| b.warning),
                };
                let marker = serde_json::to_vec_pretty(&built).unwrap_or_default();
                tokio::fs::write(final_dir.join(MARKER), marker)
                    .await
                    .map_err(|e| plain_error("record the build", e.to_string()))?;
                let _ = tokio::fs::remove_file(self.failed_record(hash)).await;
                Ok(built)
            }
            Err(mut error) => {
                let failed_dir = self.config.root.join("failed");
                let _ = tokio::fs::create_dir_all(&failed_dir).await;
                let kept = self.failed_log(hash);
                let _ = tokio::fs::rename(&log_path, &kept).await;
                let record = FailureRecord {
                    step: error.step.into(),
                    message: error.message.clone(),
                };
                let _ = tokio::fs::write(
                    self.failed_record(hash),
                    serde_json::to_vec(&record).unwrap_or_default(),
                )
                .await;
                let _ = tokio::fs::remove_dir_all(&work).await;
                error.log_tail = tail(&kept).await;
                error.log_path = Some(kept);
                Err(error)
            }
        }
    }

    /// Runs the steps in `work`; returns the installer used, the Python version
    /// and the interpreter the venv was made from.
    async fn build_steps(
        &self,
        run: &mut BuildRun,
        work: &Path,
        spec: &EnvironmentSpec,
    ) -> Result<(&'static str, String, Option<FoundPython>), BuildError> {
        if spec.interpreter_path.is_some() {
            let python = run_python_path(spec, &self.config.default_python).await?;
            let version = run.probe(&python).await?;
            return Ok(("user-managed", version, None));
        }
        let venv = work.to_path_buf();
        let venv_python = venv.join("bin").join("python");
        let has_packages = !spec.requirements.is_empty();
        let found = self.base_python(spec).await?;
        if let Some(warning) = &found.warning {
            run.log_line(&format!("warning: {warning}")).await;
            tracing::warn!("{warning}");
        }
        run.log_line(&format!(
            "base Python {} at {}",
            found.version,
            found.path.display()
        ))
        .await;
        let base = found.path.clone();
        let installer;
        match &self.config.uv {
            Some(uv) => {
                let mut create = tokio::process::Command::new(uv);
                create
                    .arg("venv")
                    .arg("--python")
                    .arg(&base)
                    .arg(&venv)
                    .env("UV_PYTHON_DOWNLOADS", "never");
                run.step("create the virtual environment", create).await?;
                installer = "uv";
            }
            None => {
                let mut create = tokio::process::Command::new(&base);
                create.arg("-m").arg("venv");
                if !has_packages {
                    create.arg("--without-pip");
                }
                create.arg(&venv);
                run.step("create the virtual environment", create).await?;
                installer = if has_packages { "pip" } else { "venv" };
            }
        }
        if has_packages {
            let requirements = venv.join("requirements.txt");
            let mut text = spec.requirements.join("\n");
            text.push('\n');
            tokio::fs::write(&requirements, text)
                .await
                .map_err(|e| plain_error("write requirements.txt", e.to_string()))?;
            let mut install = match &self.config.uv {
                Some(uv) => {
                    let mut c = tokio::process::Command::new(uv);
                    c.arg("pip")
                        .arg("install")
                        .arg("--python")
                        .arg(&venv_python)
                        .arg("-r")
                        .arg(&requirements)
                        .env("UV_PYTHON_DOWNLOADS", "never");
                    c
                }
                None => {
                    let mut c = tokio::process::Command::new(&venv_python);
                    c.args(["-m", "pip", "install", "--no-input", "-r"])
                        .arg(&requirements)
                        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
                    c
                }
            };
            install.current_dir(&venv);
            run.step("install the requirements", install).await?;
        }
        let version = run.probe(&venv_python).await?;
        Ok((installer, version, Some(found)))
    }

    /// The interpreter a venv is created from: the default, or the one the
    /// spec's Python version asks for (failing at once when there is none).
    async fn base_python(&self, spec: &EnvironmentSpec) -> Result<FoundPython, BuildError> {
        let default = &self.config.default_python;
        let Some(wanted) = &spec.python_version else {
            let version = probe_version(default)
                .await
                .map_err(|e| plain_error("run the default Python", e))?;
            return Ok(FoundPython {
                path: default.clone(),
                version,
                warning: None,
            });
        };
        self.finder
            .find(&minor_of(wanted), spec.requested_python_version.as_deref())
            .await
            .map_err(|e| plain_error("find the requested Python", e.message))
    }
}

/// Clears a hash from the running set however `ensure` ends.
struct RunningGuard<'a> {
    builder: &'a EnvBuilder,
    hash: String,
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut running) = self.builder.running.lock() {
            running.remove(&self.hash);
        }
    }
}

fn plain_error(step: &'static str, message: String) -> BuildError {
    BuildError {
        step,
        message,
        log_tail: Vec::new(),
        log_path: None,
    }
}

async fn run_python_path(spec: &EnvironmentSpec, default: &Path) -> Result<PathBuf, BuildError> {
    let raw = spec.interpreter_path.as_deref().unwrap_or("python");
    let path = if raw == "python" {
        default.to_path_buf()
    } else {
        PathBuf::from(raw)
    };
    if path.is_absolute() && !path.exists() {
        return Err(plain_error(
            "find the user-managed interpreter",
            format!("`{}` does not exist on this server", path.display()),
        ));
    }
    Ok(path)
}

/// Runs `python -c <probe>` and returns the version printed.
pub async fn probe_version(python: &Path) -> Result<String, String> {
    let output = tokio::process::Command::new(python)
        .args(["-c", VERSION_PROBE])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run `{}`: {e}", python.display()))?;
    if !output.status.success() {
        return Err(format!(
            "`{}` failed: {}",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

struct BuildRun {
    log_path: PathBuf,
    /// Where the running installer's process group is recorded (for a restart
    /// after a kill -9 to find it).
    pgid_path: PathBuf,
    timeout: Duration,
    groups: Arc<std::sync::Mutex<HashSet<i32>>>,
}

/// Kills a process group with SIGKILL (nothing when it is gone).
fn kill_group(pgid: i32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Whether a process of group `pgid` is still running a build of `hash`
/// (its command line or working directory names the build).
fn group_belongs_to(pgid: i32, hash: &str) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        let dir = p.path();
        let in_group = std::fs::read_to_string(dir.join("stat"))
            .ok()
            .and_then(|stat| {
                // `pid (comm) state ppid pgrp ...`; comm may hold spaces.
                let after = stat.rsplit_once(')')?.1;
                after.split_whitespace().nth(2)?.parse::<i32>().ok()
            })
            == Some(pgid);
        in_group
            && (std::fs::read(dir.join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(hash))
                || std::fs::read_link(dir.join("cwd"))
                    .is_ok_and(|c| c.to_string_lossy().contains(hash)))
    })
}

/// Kills an installer's whole process group however its step ends.
struct GroupGuard {
    pgid: i32,
    groups: Arc<std::sync::Mutex<HashSet<i32>>>,
    pgid_path: PathBuf,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        kill_group(self.pgid);
        if let Ok(mut groups) = self.groups.lock() {
            groups.remove(&self.pgid);
        }
        let _ = std::fs::remove_file(&self.pgid_path);
    }
}

impl BuildRun {
    async fn log_line(&self, line: &str) {
        if let Ok(mut file) = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .await
        {
            let _ = file.write_all(line.as_bytes()).await;
            let _ = file.write_all(b"\n").await;
        }
    }

    async fn step(
        &mut self,
        step: &'static str,
        mut command: tokio::process::Command,
    ) -> Result<(), BuildError> {
        let shown = format!("{:?}", command.as_std()).replace('"', "");
        self.log_line(&format!("$ {shown}")).await;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| plain_error("open the build log", e.to_string()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| plain_error("open the build log", e.to_string()))?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            // Its own process group: stopping it stops what it started too.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| plain_error(step, format!("cannot start `{shown}`: {e}")))?;
        let _group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(|pgid| {
                if let Ok(mut groups) = self.groups.lock() {
                    groups.insert(pgid);
                }
                let _ = std::fs::write(&self.pgid_path, pgid.to_string());
                GroupGuard {
                    pgid,
                    groups: self.groups.clone(),
                    pgid_path: self.pgid_path.clone(),
                }
            });
        match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(plain_error(
                step,
                format!("`{shown}` exited with {status}; its output is below"),
            )),
            Ok(Err(e)) => Err(plain_error(
                step,
                format!("waiting for `{shown}` failed: {e}"),
            )),
            Err(_) => {
                let _ = child.kill().await;
                Err(plain_error(
                    step,
                    format!(
                        "`{shown}` took longer than {} s and was stopped",
                        self.timeout.as_secs()
                    ),
                ))
            }
        }
    }

    async fn probe(&mut self, python: &Path) -> Result<String, BuildError> {
        let version = probe_version(python)
            .await
            .map_err(|e| plain_error("run the environment's Python", e))?;
        self.log_line(&format!(
            "environment Python {version} at {}",
            python.display()
        ))
        .await;
        Ok(version)
    }
}

async fn tail(path: &Path) -> Vec<String> {
    let text = tokio::fs::read_to_string(path).await.unwrap_or_default();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let start = lines.len().saturating_sub(LOG_TAIL_LINES);
    lines[start..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `pid` is gone (or a zombie waiting to be reaped).
    fn dead(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                stat.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
            })
            .unwrap_or(true)
    }

    async fn wait_dead(pid: i32) -> bool {
        for _ in 0..100 {
            if dead(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_stopped_installer_takes_what_it_started_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child.pid");
        let groups: Arc<std::sync::Mutex<HashSet<i32>>> = Default::default();
        let mut run = BuildRun {
            log_path: dir.path().join("h.building.log"),
            pgid_path: dir.path().join("h.building.pgid"),
            timeout: Duration::from_millis(500),
            groups: groups.clone(),
        };
        let mut command = tokio::process::Command::new("sh");
        command.arg("-c").arg(format!(
            "sleep 30 & echo $! > {}; sleep 30",
            marker.display()
        ));
        let err = run
            .step("install the requirements", command)
            .await
            .unwrap_err();
        assert!(err.message.contains("took longer"), "{err}");
        let child: i32 = std::fs::read_to_string(&marker)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            wait_dead(child).await,
            "the installer's child {child} survived"
        );
        assert!(groups.lock().unwrap().is_empty());
        assert!(!run.pgid_path.exists());
    }

    #[tokio::test]
    async fn leftovers_of_a_killed_server_are_removed_and_only_their_installers_killed() {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        let b = builder(dir.path());
        std::fs::create_dir_all(dir.path().join("envs")).unwrap();
        let root = dir.path().join("envs");
        let hash = "0123abcd";
        std::fs::create_dir_all(root.join(format!("{hash}.building/bin"))).unwrap();
        std::fs::write(root.join(format!("{hash}.building.log")), "pip output").unwrap();
        let mut orphan = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("sleep 30; echo {hash}"))
            .process_group(0)
            .spawn()
            .unwrap();
        let orphan_pid = orphan.id() as i32;
        std::fs::write(
            root.join(format!("{hash}.building.pgid")),
            orphan_pid.to_string(),
        )
        .unwrap();
        // A recorded group that is not that build's (a reused id) is left alone.
        let mut stranger = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let stranger_pid = stranger.id() as i32;
        std::fs::write(
            root.join("ffff0000.building.pgid"),
            stranger_pid.to_string(),
        )
        .unwrap();

        assert_eq!(b.clean_leftovers(), 4);
        let _ = orphan.wait();
        assert!(wait_dead(orphan_pid).await);
        assert!(!dead(stranger_pid), "an unrelated process group was killed");
        let _ = stranger.kill();
        let _ = stranger.wait();
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    }

    fn builder(dir: &Path) -> EnvBuilder {
        EnvBuilder::new(EnvBuilderConfig {
            root: dir.join("envs"),
            default_python: PathBuf::from("python3"),
            uv: None,
            python_search_path: Vec::new(),
            timeout: Duration::from_secs(300),
            metrics: None,
        })
    }

    fn spec(requirements: &[&str]) -> EnvironmentSpec {
        EnvironmentSpec {
            python_version: None,
            requested_python_version: None,
            requirements: requirements.iter().map(|s| s.to_string()).collect(),
            environment_variables: Default::default(),
            interpreter_path: None,
        }
    }

    #[tokio::test]
    async fn an_empty_spec_builds_a_venv_once_and_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let builder = Arc::new(builder(dir.path()));
        let s = spec(&[]);
        let (a, b) = tokio::join!(builder.ensure(&s), builder.ensure(&s));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a, b);
        assert_eq!(builder.builds_started(), 1, "concurrent asks build once");
        assert_eq!(a.installer, "venv");
        assert!(a.python.ends_with("bin/python"));
        assert!(a.full_version.starts_with("3."));
        builder.ensure(&s).await.unwrap();
        assert_eq!(builder.builds_started(), 1, "later asks hit the cache");
        let status = builder.status(&s).await;
        assert_eq!(status.state, BuildState::Succeeded);
    }

    #[tokio::test]
    async fn a_failed_install_is_reported_with_pip_output_and_never_used() {
        let dir = tempfile::tempdir().unwrap();
        let builder = builder(dir.path());
        let s = spec(&["--no-index", "berth-no-such-package==9.9"]);
        let err = builder.ensure(&s).await.unwrap_err();
        assert_eq!(err.step, "install the requirements");
        let tail = err.log_tail.join("\n");
        assert!(tail.contains("berth-no-such-package"), "{tail}");
        let status = builder.status(&s).await;
        assert_eq!(status.state, BuildState::Failed);
        assert!(status.error.unwrap().contains("install the requirements"));
        assert!(!dir.path().join("envs").join(build_hash(&s)).exists());
    }

    /// The uv under test: `$BERTH_TEST_UV` (scripts/test.sh installs one), never `PATH`'s.
    fn test_uv(test: &str) -> Option<PathBuf> {
        let uv = std::env::var_os("BERTH_TEST_UV").map(PathBuf::from);
        if uv.is_none() {
            berth_worker::test_skips::record(
                test,
                "BERTH_TEST_UV is not set: scripts/test.sh installs uv and sets it",
            );
        }
        uv
    }

    #[tokio::test]
    async fn uv_builds_environments_and_installs_a_local_wheel_without_network() {
        let Some(uv) = test_uv(
            "envs::builder::uv_builds_environments_and_installs_a_local_wheel_without_network",
        ) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let wheels = dir.path().join("wheels");
        std::fs::create_dir(&wheels).unwrap();
        let script = r#"
import base64, hashlib, sys, zipfile
files = {"uvpkg/__init__.py": "VALUE = 7\n",
         "uvpkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: uvpkg\nVersion: 1.0\n",
         "uvpkg-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
record = []
with zipfile.ZipFile(sys.argv[1] + "/uvpkg-1.0-py3-none-any.whl", "w") as z:
    for name, text in files.items():
        data = text.encode()
        z.writestr(name, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("uvpkg-1.0.dist-info/RECORD,,")
    z.writestr("uvpkg-1.0.dist-info/RECORD", "\n".join(record) + "\n")
"#;
        let made = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&wheels)
            .status()
            .unwrap();
        assert!(made.success());
        let builder = EnvBuilder::new(EnvBuilderConfig {
            root: dir.path().join("envs"),
            default_python: PathBuf::from("python3"),
            uv: Some(uv),
            python_search_path: Vec::new(),
            timeout: Duration::from_secs(300),
            metrics: None,
        });
        let find_links = format!("--find-links {}", wheels.display());
        let s = spec(&["--no-index", &find_links, "uvpkg==1.0"]);
        let built = builder.ensure(&s).await.unwrap();
        assert_eq!(built.installer, "uv");
        let out = std::process::Command::new(&built.python)
            .args(["-c", "import uvpkg; print(uvpkg.VALUE)"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7");
        let log = std::fs::read_to_string(
            dir.path()
                .join("envs")
                .join(build_hash(&s))
                .join("build.log"),
        )
        .unwrap();
        assert!(log.contains("uv pip install"), "{log}");
        let empty = builder.ensure(&spec(&[])).await.unwrap();
        assert_eq!(empty.installer, "uv");
    }

    #[tokio::test]
    async fn a_missing_python_version_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let builder = builder(dir.path());
        let mut s = spec(&[]);
        s.python_version = Some("3.2".into());
        let err = builder.ensure(&s).await.unwrap_err();
        assert_eq!(err.step, "find the requested Python");
        assert!(
            err.message.contains("asks for Python 3.2,"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("--python-search-path"),
            "{}",
            err.message
        );
    }
}
