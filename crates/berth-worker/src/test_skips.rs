//! Loud, counted test skips, shared by every crate's tests.
//!
//! A test that cannot check what its name promises on this host calls [`record`] and returns. The
//! reason goes to stderr past the harness's capture, and, when `$BERTH_TEST_SKIP_LOG` names a file
//! (`scripts/test.sh` sets it), one line `test: reason` is appended there so that the suite's
//! closing summary counts the skip and prints why.

use std::io::Write;

/// Variable naming the file skips are appended to.
pub const SKIP_LOG_VAR: &str = "BERTH_TEST_SKIP_LOG";

/// Records that `test` skipped its checks because of `reason`.
pub fn record(test: &str, reason: &str) {
    let log = std::env::var_os(SKIP_LOG_VAR).map(std::path::PathBuf::from);
    record_to(log.as_deref(), test, reason);
}

/// [`record`] with the log file given.
fn record_to(log: Option<&std::path::Path>, test: &str, reason: &str) {
    let line = format!("{test}: {}", reason.replace('\n', " "));
    let _ = writeln!(std::io::stderr(), "SKIPPED {line}");
    let Some(path) = log else { return };
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| writeln!(file, "{line}"));
    if let Err(err) = appended {
        let _ = writeln!(
            std::io::stderr(),
            "could not append to {}: {err}",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_skip_is_one_line_appended_to_the_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("skips.txt");
        super::record_to(Some(&log), "a::test", "no\nwidget");
        super::record_to(Some(&log), "b::test", "no gadget");
        super::record_to(None, "c::test", "only on stderr");
        let text = std::fs::read_to_string(&log).expect("skip log written");
        assert_eq!(text, "a::test: no widget\nb::test: no gadget\n");
    }
}
