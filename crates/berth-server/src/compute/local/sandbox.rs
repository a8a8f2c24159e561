//! Worker isolation on the local target: what the kernel offers, which user workers run as, and
//! the [`SandboxPolicy`] of each replica.
//!
//! [`Isolation::start`] marks the server non-dumpable (no worker can read its `/proc/<pid>/environ`
//! or `mem`, or ptrace it), probes Landlock, resolves the worker user when the server runs as
//! root (`--worker-user`, default `berth-worker` if it exists, else `nobody`) and makes the data
//! directory traversable (not listable) for it. `best-effort` warns naming what is missing;
//! `strict` refuses to start replicas without all of it. [`Isolation::launcher`] builds the
//! launcher of one replica: read the system, its environment, the shim and its revision; write
//! only its scratch directory (`TMPDIR`, `HOME`) and its source folders, never the models.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use berth_worker::sandbox::{self, Launcher, SandboxPolicy, Support};

/// `--worker-isolation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IsolationChoice {
    /// Refuse to start replicas without the whole sandbox.
    Strict,
    /// Apply everything this kernel offers; warn naming what is missing.
    BestEffort,
    /// No sandbox (workers run like the server).
    Off,
}

/// Setting up isolation failed at start-up.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// `--worker-user` names no user.
    #[error(
        "`--worker-user {0}`: no such user in /etc/passwd; create it (useradd --system {0}) or name another"
    )]
    NoSuchUser(String),
    /// The launcher binary cannot be found.
    #[error("cannot find the berth binary to launch workers with: {0}")]
    Launcher(std::io::Error),
}

/// A user workers run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerUser {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
}

/// The isolation in effect for every replica this server starts.
#[derive(Debug, Clone)]
pub struct Isolation {
    choice: IsolationChoice,
    support: Support,
    user: Option<WorkerUser>,
    program: PathBuf,
    missing: Vec<String>,
}

/// `(name, uid, gid)` of `name` in the text of `/etc/passwd`.
pub fn find_user(passwd: &str, name: &str) -> Option<WorkerUser> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let user = fields.next()?;
        if user != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(WorkerUser {
            name: user.to_owned(),
            uid,
            gid,
        })
    })
}

/// `python` as an absolute, symlink-free path (looked up on `PATH` when it is a bare name).
fn resolve(python: &Path) -> Option<PathBuf> {
    let found = if python.components().count() == 1 {
        crate::config::find_on_path(&python.to_string_lossy())?
    } else {
        python.to_path_buf()
    };
    std::fs::canonicalize(found).ok()
}

/// The first ancestor of `path` (itself included) others cannot traverse, if any.
fn untraversable(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o001 == 0)
                .unwrap_or(true)
        })
        .map(Path::to_path_buf)
}

impl Isolation {
    /// Sets up isolation for `data_dir`; see the module documentation.
    pub fn start(
        choice: IsolationChoice,
        worker_user: Option<&str>,
        data_dir: &Path,
        python: &Path,
    ) -> Result<Self, IsolationError> {
        let program = std::env::current_exe().map_err(IsolationError::Launcher)?;
        if choice == IsolationChoice::Off {
            return Ok(Self {
                choice,
                support: Support {
                    filesystem: false,
                    scoping: false,
                },
                user: None,
                program,
                missing: Vec::new(),
            });
        }
        let mut missing: Vec<String> = Vec::new();
        if let Err(e) =
            rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        {
            missing.push(format!("a non-dumpable server (prctl failed: {e})"));
        }
        let support = sandbox::probe();
        missing.extend(support.missing().into_iter().map(str::to_owned));
        let root = rustix::process::getuid().is_root();
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let user = match (root, worker_user) {
            (false, _) => None,
            (true, Some(name)) => Some(
                find_user(&passwd, name).ok_or_else(|| IsolationError::NoSuchUser(name.into()))?,
            ),
            (true, None) => {
                find_user(&passwd, "berth-worker").or_else(|| find_user(&passwd, "nobody"))
            }
        };
        let user = match user {
            Some(user) if user.uid == 0 => {
                missing.push(format!(
                    "an unprivileged worker user (`{}` is uid 0)",
                    user.name
                ));
                None
            }
            Some(user) => {
                // The data dir becomes searchable (not listable) for the worker's user, once its
                // parents and the interpreter are reachable for that user.
                let interpreter = resolve(python);
                let parent_blocked = data_dir.parent().and_then(untraversable);
                let blocked = parent_blocked
                    .map(|b| (b, data_dir.to_path_buf()))
                    .or_else(|| {
                        let real = interpreter.clone()?;
                        untraversable(&real).map(|b| (b, real))
                    });
                match blocked {
                    None => {
                        if let Ok(meta) = std::fs::metadata(data_dir) {
                            let mode = meta.permissions().mode() & 0o777;
                            let _ = std::fs::set_permissions(
                                data_dir,
                                std::fs::Permissions::from_mode(mode | 0o111),
                            );
                        }
                        close_data_dir(data_dir);
                        Some(user)
                    }
                    Some((blocked, target)) => {
                        missing.push(format!(
                            "an unprivileged worker user: `{}` cannot reach {} because {} is not searchable by others (chmod o+x it; or pass --data elsewhere, or --python an interpreter outside it, e.g. /usr/bin/python3)",
                            user.name,
                            target.display(),
                            blocked.display()
                        ));
                        None
                    }
                }
            }
            None if root => {
                missing.push(
                    "an unprivileged worker user (neither `berth-worker` nor `nobody` exists; create one and pass --worker-user)"
                        .into(),
                );
                None
            }
            None => None,
        };
        let isolation = Self {
            choice,
            support,
            user,
            program,
            missing,
        };
        if isolation.missing.is_empty() {
            tracing::info!(isolation = %isolation.describe(), "worker isolation");
        } else {
            tracing::warn!(
                isolation = %isolation.describe(),
                missing = %isolation.missing.join("; "),
                mode = ?choice,
                "worker isolation is incomplete on this machine"
            );
        }
        Ok(isolation)
    }

    /// The mode asked for.
    pub fn choice(&self) -> IsolationChoice {
        self.choice
    }

    /// Whether workers can never write a model file, even one that is a hard link into the blob
    /// store: Landlock keeps them from opening it for writing, or they run as another user who
    /// cannot `chmod` it.
    pub fn protects_models(&self) -> bool {
        self.choice != IsolationChoice::Off && (self.support.filesystem || self.user.is_some())
    }

    /// The user workers run as, when it is not the server's.
    pub fn user(&self) -> Option<&WorkerUser> {
        self.user.as_ref()
    }

    /// Why a replica may not start (strict mode with something missing).
    pub fn refusal(&self) -> Option<String> {
        (self.choice == IsolationChoice::Strict && !self.missing.is_empty()).then(|| {
            format!(
                "--worker-isolation strict: this machine lacks {}; fix that or run with --worker-isolation best-effort",
                self.missing.join("; ")
            )
        })
    }

    /// One line saying what a replica's sandbox is, for `berth service show`.
    pub fn describe(&self) -> String {
        if self.choice == IsolationChoice::Off {
            return "off".into();
        }
        let mut parts = Vec::new();
        if self.support.filesystem {
            parts.push("landlock filesystem".to_owned());
        }
        if self.support.scoping {
            parts.push("landlock signal+abstract-socket scoping".to_owned());
        }
        parts.push("no_new_privs".to_owned());
        parts.push("server non-dumpable".to_owned());
        if let Some(u) = &self.user {
            parts.push(format!("user {} (uid {})", u.name, u.uid));
        }
        let mode = match self.choice {
            IsolationChoice::Strict => "strict",
            _ => "best-effort",
        };
        format!("{mode}: {}", parts.join(", "))
    }

    /// Gives `path` and everything beneath it to the worker user (no-op without one).
    pub fn give(&self, path: &Path) -> std::io::Result<()> {
        let Some(user) = &self.user else {
            return Ok(());
        };
        chown_tree(path, user.uid, user.gid)
    }

    /// The folders of a laid-out revision a worker may write: the top-level entries of the app
    /// root except the models (given to the worker user once per lay-out).
    pub fn writable_source(&self, app: &Path) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(app) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.file_name() != "azureml-models")
            .map(|e| e.path())
            .collect()
    }

    /// The launcher of one replica (None with isolation off). An environment whose interpreter
    /// the worker user cannot reach runs as the server's user (a warning), or is refused in
    /// `strict` mode.
    pub fn launcher(
        &self,
        python: &Path,
        runtime_dir: &Path,
        app: &Path,
        scratch: &Path,
        cgroup_procs: Vec<PathBuf>,
    ) -> Result<Option<Launcher>, String> {
        if self.choice == IsolationChoice::Off {
            return Ok(None);
        }
        let mut user = self.user.as_ref().map(|u| (u.uid, u.gid));
        if let (Some(u), Some(real)) = (&self.user, std::fs::canonicalize(python).ok())
            && let Some(blocked) = untraversable(&real)
        {
            let problem = format!(
                "the worker user `{}` cannot run {} because {} is not searchable by others (chmod o+x it, or build the environment with an interpreter outside it)",
                u.name,
                real.display(),
                blocked.display()
            );
            if self.choice == IsolationChoice::Strict {
                return Err(format!("--worker-isolation strict: {problem}"));
            }
            tracing::warn!("{problem}; this replica runs as the server's user");
            user = None;
        }
        // Only the shim of the runtime dir and its bytecode: the sockets beside them are not
        // listable.
        let mut read = vec![
            runtime_dir.join(berth_worker::SHIM_FILE_NAME),
            runtime_dir.join(berth_worker::SHIM_CACHE_DIR),
            app.to_path_buf(),
        ];
        // The environment (a venv: <env>/bin/python) and the interpreter it links to.
        if let Some(env) = python.parent().and_then(Path::parent) {
            read.push(env.to_path_buf());
        }
        if let Ok(real) = std::fs::canonicalize(python)
            && let Some(prefix) = real.parent().and_then(Path::parent)
        {
            read.push(prefix.to_path_buf());
        }
        let mut write = vec![scratch.to_path_buf()];
        write.extend(self.writable_source(app));
        Ok(Some(Launcher {
            program: self.program.clone(),
            policy: SandboxPolicy {
                read,
                write,
                user,
                cgroup_procs,
                landlock: self.support.filesystem || self.support.scoping,
                strict: self.choice == IsolationChoice::Strict,
            },
        }))
    }
}

/// Folders of the data dir workers reach (each its own subpath, by name).
const WORKER_REACHABLE: &[&str] = &["envs", "services", "run"];

/// With the data dir searchable by others, everything in it workers have no business with is
/// made private to the server (the database, the token, the signing key, blobs, logs).
fn close_data_dir(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if WORKER_REACHABLE.iter().any(|r| name == *r) {
            continue;
        }
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        let private = if meta.is_dir() {
            mode & 0o700
        } else {
            mode & 0o600
        };
        if private != mode {
            let _ =
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(private));
        }
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nberth-worker:x:998:997::/home/bw:/bin/false\n";

    #[test]
    fn users_are_found_by_name() {
        assert_eq!(
            find_user(PASSWD, "nobody"),
            Some(WorkerUser {
                name: "nobody".into(),
                uid: 65534,
                gid: 65534
            })
        );
        assert_eq!(find_user(PASSWD, "berth-worker").map(|u| u.uid), Some(998));
        assert_eq!(find_user(PASSWD, "nob"), None);
        assert_eq!(find_user("broken:x:zz:1::", "broken"), None);
    }

    #[test]
    fn strict_refuses_when_something_is_missing() {
        let mut isolation = Isolation {
            choice: IsolationChoice::Strict,
            support: Support {
                filesystem: true,
                scoping: false,
            },
            user: None,
            program: "/bin/berth".into(),
            missing: vec!["Landlock scoping".into()],
        };
        let refusal = isolation.refusal().expect("refused");
        assert!(refusal.contains("Landlock scoping") && refusal.contains("best-effort"));
        isolation.choice = IsolationChoice::BestEffort;
        assert_eq!(isolation.refusal(), None);
        assert!(
            isolation
                .describe()
                .starts_with("best-effort: landlock filesystem")
        );
    }

    #[test]
    fn the_models_are_never_writable() {
        let dir = tempfile::tempdir().expect("dir");
        let app = dir.path().join("app");
        std::fs::create_dir_all(app.join("azureml-models/m/1")).expect("models");
        std::fs::create_dir_all(app.join("src")).expect("src");
        std::fs::write(app.join("score.py"), "").expect("score");
        let isolation = Isolation {
            choice: IsolationChoice::BestEffort,
            support: Support {
                filesystem: true,
                scoping: true,
            },
            user: None,
            program: "/bin/berth".into(),
            missing: Vec::new(),
        };
        let launcher = isolation
            .launcher(
                Path::new("/envs/e/bin/python"),
                Path::new("/run"),
                &app,
                Path::new("/scratch"),
                Vec::new(),
            )
            .expect("allowed")
            .expect("launcher");
        let write = &launcher.policy.write;
        assert!(write.contains(&PathBuf::from("/scratch")));
        assert!(write.contains(&app.join("src")) && write.contains(&app.join("score.py")));
        assert!(
            write
                .iter()
                .all(|p| !p.starts_with(app.join("azureml-models")))
        );
        assert!(launcher.policy.read.contains(&PathBuf::from("/envs/e")));
    }
}
