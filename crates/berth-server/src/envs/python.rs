//! Finding the Python interpreter an environment asks for (`python=3.8` in a
//! conda file, `pythonVersion`, an Azure environment's conda dependencies).
//!
//! Candidates, in order: the default interpreter (`--python`), the
//! `--python-search-path` entries (an interpreter, a folder holding `python3.X`
//! or `bin/python3.X`, or a folder of installs such as `~/.pyenv/versions`),
//! `python3.X` / `python3` on `PATH`, pyenv's versions (`$PYENV_ROOT` or
//! `~/.pyenv`), and what `uv python find` knows. When none has the minor
//! version, `uv python install` is tried (bounded by [`INSTALL_TIMEOUT`]; it
//! fails fast without network), then the search fails naming the version asked
//! for, every version found and the fixes. A patch level that differs from the
//! one asked for is used, with a warning. Answers are cached per version asked.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use super::builder::probe_version;

/// Longest `uv python install` may take.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest one interpreter probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// An interpreter that has the version asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundPython {
    /// The interpreter.
    pub path: PathBuf,
    /// Its full version (`3.8.18`).
    pub version: String,
    /// Set when the patch level differs from the one asked for.
    pub warning: Option<String>,
}

/// No interpreter with the version asked for.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct PythonNotFound {
    /// The full message: version asked, versions found, fixes.
    pub message: String,
}

/// Finds interpreters by version; cheap to share.
pub struct PythonFinder {
    default: PathBuf,
    search_path: Vec<PathBuf>,
    uv: Option<PathBuf>,
    cache: Mutex<HashMap<String, FoundPython>>,
}

/// `3.8` of `3.8.18`.
pub fn minor_of(version: &str) -> String {
    version.split('.').take(2).collect::<Vec<_>>().join(".")
}

impl PythonFinder {
    /// A finder with the server's settings.
    pub fn new(default: PathBuf, search_path: Vec<PathBuf>, uv: Option<PathBuf>) -> Self {
        Self {
            default,
            search_path,
            uv,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// An interpreter for `minor` (`3.8`), preferring `exact` (`3.8.13`) when given.
    pub async fn find(
        &self,
        minor: &str,
        exact: Option<&str>,
    ) -> Result<FoundPython, PythonNotFound> {
        let key = exact.unwrap_or(minor).to_owned();
        let cached = self.cache.lock().ok().and_then(|c| c.get(&key).cloned());
        if let Some(found) = cached.filter(|f| f.path.exists() || f.path.is_relative()) {
            return Ok(found);
        }
        // The likely ones first (named for the version); every other one only
        // when they have none, to name what there is.
        let (likely, others): (Vec<PathBuf>, Vec<PathBuf>) = self
            .candidates(minor)
            .into_iter()
            .partition(|p| p == &self.default || named_for(p, minor));
        let mut probed = self.probe_all(likely).await;
        let mut found = choose(&probed, minor, exact);
        if found.is_none() || exact.is_some_and(|e| found.as_ref().is_some_and(|f| f.version != e))
        {
            probed.extend(self.probe_all(others).await);
            found = choose(&probed, minor, exact);
        }
        if found.is_none()
            && let Some(uv) = &self.uv
        {
            if let Some(path) = uv_find(uv, minor).await {
                probed.extend(self.probe_all(vec![path]).await);
                found = choose(&probed, minor, exact);
            }
            if found.is_none() && uv_install(uv, minor).await {
                if let Some(path) = uv_find(uv, minor).await {
                    probed.extend(self.probe_all(vec![path]).await);
                }
                found = choose(&probed, minor, exact);
            }
        }
        match found {
            Some(found) => {
                if let Ok(mut cache) = self.cache.lock() {
                    cache.insert(key, found.clone());
                }
                Ok(found)
            }
            None => Err(PythonNotFound {
                message: not_found_message(minor, exact, &probed, self.uv.is_some()),
            }),
        }
    }

    /// Paths worth probing for `minor`, de-duplicated, in preference order.
    fn candidates(&self, minor: &str) -> Vec<PathBuf> {
        let exact_name = format!("python{minor}");
        let mut out = vec![self.default.clone()];
        for entry in &self.search_path {
            if entry.is_file() {
                out.push(entry.clone());
                continue;
            }
            for dir in [entry.clone(), entry.join("bin")] {
                out.push(dir.join(&exact_name));
                out.push(dir.join("python3"));
            }
            out.extend(installs_in(entry));
        }
        if let Some(path) = std::env::var_os("PATH") {
            // pyenv's shims only dispatch to the versions listed below.
            for dir in std::env::split_paths(&path).filter(|d| !d.ends_with("shims")) {
                out.extend(pythons_in(&dir));
            }
        }
        let pyenv = std::env::var_os("PYENV_ROOT")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
        if let Some(root) = pyenv {
            out.extend(installs_in(&root.join("versions")));
        }
        let mut seen = std::collections::HashSet::new();
        out.into_iter()
            .filter(|p| p.is_relative() || p.is_file())
            .filter(|p| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())))
            .collect()
    }

    async fn probe_all(&self, paths: Vec<PathBuf>) -> Vec<(PathBuf, String)> {
        let probes = paths.into_iter().map(|path| async move {
            match tokio::time::timeout(PROBE_TIMEOUT, probe_version(&path)).await {
                Ok(Ok(version)) if version.starts_with(|c: char| c.is_ascii_digit()) => {
                    Some((path, version))
                }
                _ => None,
            }
        });
        futures_util::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

/// Whether `path` is named for `minor`: `python3.8`, or `<root>/3.8.18/bin/python3`.
fn named_for(path: &Path, minor: &str) -> bool {
    let file = path.file_name().map(|n| n.to_string_lossy().into_owned());
    if file.as_deref() == Some(&format!("python{minor}")) {
        return true;
    }
    let install = path
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    install == minor || install.starts_with(&format!("{minor}."))
}

/// `python3`, `python3.X` in a folder (not `-config` scripts).
fn pythons_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name == "python3"
                || name.strip_prefix("python3.").is_some_and(|rest| {
                    !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit())
                })
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// `<dir>/*/bin/python3` (a folder of installs, like pyenv's `versions`).
fn installs_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path().join("bin").join("python3"))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// The best probed interpreter for `minor`: the exact patch when asked and
/// present, else the first with the minor version (with a warning when a patch
/// was asked for).
fn choose(probed: &[(PathBuf, String)], minor: &str, exact: Option<&str>) -> Option<FoundPython> {
    if let Some(exact) = exact
        && let Some((path, version)) = probed.iter().find(|(_, v)| v == exact)
    {
        return Some(FoundPython {
            path: path.clone(),
            version: version.clone(),
            warning: None,
        });
    }
    let (path, version) = probed.iter().find(|(_, v)| minor_of(v) == minor)?;
    let warning = exact.map(|exact| {
        format!(
            "Python {exact} was asked for; {version} (at {}) is used: same minor version, another patch level",
            path.display()
        )
    });
    Some(FoundPython {
        path: path.clone(),
        version: version.clone(),
        warning,
    })
}

fn not_found_message(
    minor: &str,
    exact: Option<&str>,
    probed: &[(PathBuf, String)],
    has_uv: bool,
) -> String {
    let asked = exact.unwrap_or(minor);
    let mut found: Vec<String> = probed
        .iter()
        .map(|(path, version)| format!("{version} ({})", path.display()))
        .collect();
    found.dedup();
    let found = if found.is_empty() {
        "none".to_owned()
    } else {
        found.join(", ")
    };
    let install = if has_uv {
        format!("`uv python install {minor}` could not install it either; ")
    } else {
        String::new()
    };
    format!(
        "the environment asks for Python {asked}, and no Python {minor} was found on this server; found: {found}. {install}Fix: point the server at one with `--python-search-path DIR` (an interpreter, its folder, or a folder of installs such as ~/.pyenv/versions), install Python {minor} (`uv python install {minor}`, `pyenv install {minor}`, or the system's python{minor} package), or drop the `python={asked}` pin from the environment"
    )
}

async fn uv_find(uv: &Path, minor: &str) -> Option<PathBuf> {
    let output = tokio::time::timeout(
        PROBE_TIMEOUT,
        tokio::process::Command::new(uv)
            .args(["python", "find", minor])
            .env("UV_PYTHON_DOWNLOADS", "never")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .ok()?
    .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (output.status.success() && !text.is_empty()).then(|| PathBuf::from(text))
}

/// Tries `uv python install`; false when it fails or takes too long.
async fn uv_install(uv: &Path, minor: &str) -> bool {
    tracing::info!(python = minor, "trying `uv python install`");
    let run = tokio::process::Command::new(uv)
        .args(["python", "install", minor])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(INSTALL_TIMEOUT, run).await {
        Ok(Ok(output)) if output.status.success() => true,
        Ok(Ok(output)) => {
            let reason = String::from_utf8_lossy(&output.stderr);
            tracing::warn!(python = minor, reason = %reason.trim(), "`uv python install` failed");
            false
        }
        Ok(Err(e)) => {
            tracing::warn!(python = minor, error = %e, "`uv python install` did not run");
            false
        }
        Err(_) => {
            tracing::warn!(
                python = minor,
                timeout_secs = INSTALL_TIMEOUT.as_secs(),
                "`uv python install` took too long"
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probed(items: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
        items
            .iter()
            .map(|(p, v)| (PathBuf::from(p), v.to_string()))
            .collect()
    }

    #[test]
    fn the_exact_patch_wins_and_another_patch_warns() {
        let p = probed(&[
            ("/a/python3", "3.11.7"),
            ("/b/python3", "3.8.18"),
            ("/c/python3", "3.8.13"),
        ]);
        let exact = choose(&p, "3.8", Some("3.8.13")).unwrap();
        assert_eq!(exact.path, PathBuf::from("/c/python3"));
        assert!(exact.warning.is_none());
        let other = choose(&p, "3.8", Some("3.8.2")).unwrap();
        assert_eq!(other.version, "3.8.18");
        let warning = other.warning.unwrap();
        assert!(
            warning.contains("3.8.2") && warning.contains("3.8.18"),
            "{warning}"
        );
        assert!(choose(&p, "3.8", None).unwrap().warning.is_none());
        assert!(choose(&p, "3.9", None).is_none());
    }

    #[test]
    fn not_found_names_the_version_what_was_found_and_the_fixes() {
        let p = probed(&[("/usr/bin/python3", "3.11.7")]);
        let message = not_found_message("3.2", Some("3.2.1"), &p, false);
        for needle in [
            "Python 3.2.1",
            "3.11.7 (/usr/bin/python3)",
            "--python-search-path",
            "uv python install 3.2",
            "drop the `python=3.2.1` pin",
        ] {
            assert!(message.contains(needle), "{needle} missing: {message}");
        }
        assert!(not_found_message("3.2", None, &[], true).contains("found: none"));
    }

    #[test]
    fn folders_of_installs_and_path_folders_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        for v in ["3.8.1", "3.9.2"] {
            let bin = dir.path().join(v).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join("python3"), "").unwrap();
        }
        assert_eq!(installs_in(dir.path()).len(), 2);
        let bin = dir.path().join("plain");
        std::fs::create_dir(&bin).unwrap();
        for name in ["python3", "python3.8", "python3.8-config", "python2"] {
            std::fs::write(bin.join(name), "").unwrap();
        }
        let names: Vec<String> = pythons_in(&bin)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["python3", "python3.8"]);
        assert!(named_for(&bin.join("python3.8"), "3.8"));
        assert!(!named_for(&bin.join("python3.8"), "3.9"));
        assert!(named_for(&dir.path().join("3.8.1/bin/python3"), "3.8"));
        assert!(!named_for(&dir.path().join("3.9.2/bin/python3"), "3.8"));
    }

    #[tokio::test]
    async fn a_missing_version_fails_at_once_and_the_default_is_found() {
        let finder = PythonFinder::new(PathBuf::from("python3"), Vec::new(), None);
        let default = probe_version(Path::new("python3")).await.unwrap();
        let found = finder.find(&minor_of(&default), None).await.unwrap();
        assert_eq!(minor_of(&found.version), minor_of(&default));
        let err = finder.find("3.2", None).await.unwrap_err();
        assert!(err.message.contains("Python 3.2"), "{}", err.message);
        assert!(err.message.contains(&default), "{}", err.message);
    }
}
