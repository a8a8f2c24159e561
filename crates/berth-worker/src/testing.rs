//! Test support: the interpreter to run the real shim with, and the fixture scripts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use crate::supervisor::WorkerSpec;

/// `$BERTH_TEST_PYTHON`, else `python3` from PATH.
pub fn python() -> PathBuf {
    std::env::var_os("BERTH_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// `fixtures/scripts/<case>`.
pub fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("scripts")
        .join(case)
}

/// A spec for running `fixtures/scripts/<case>/score.py`, with its runtime and socket
/// directories inside `tmp`.
pub fn spec(case: &str, tmp: &TempDir) -> WorkerSpec {
    let mut spec = WorkerSpec::new(
        python(),
        tmp.path().join("rt"),
        tmp.path().join("s"),
        fixture(case),
    )
    .env("AZUREML_ENTRY_SCRIPT", "score.py");
    spec.connect_timeout = Duration::from_secs(60);
    spec.init_timeout = Duration::from_secs(60);
    spec
}

/// A spec for a script written on the fly into `tmp/app/score.py`.
pub fn spec_for_source(source: &str, tmp: &TempDir) -> WorkerSpec {
    let app = tmp.path().join("app");
    std::fs::create_dir_all(&app).expect("create app dir");
    std::fs::write(app.join("score.py"), source).expect("write score.py");
    let mut spec = spec("echo", tmp);
    spec.cwd = app;
    spec
}
