//! Files in the data directory that identify the workspace to its clients: the
//! workspace token and `config.json`. Both are private to the user (mode 0600).

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_api::ClientConfig;

/// File holding the workspace token.
pub const TOKEN_FILE: &str = "workspace-token";
/// File the CLI and SDK read.
pub const CLIENT_CONFIG_FILE: &str = "config.json";

/// A failure with one of these files.
#[derive(Debug, thiserror::Error)]
#[error("{step} `{}` failed", path.display())]
pub struct FileError {
    step: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

fn err(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FileError {
    let path = path.to_owned();
    move |source| FileError { step, path, source }
}

/// Creates the data directory (mode 0700) if needed.
pub fn prepare_data_dir(dir: &Path) -> Result<(), FileError> {
    std::fs::create_dir_all(dir).map_err(err("create data directory", dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(err("restrict data directory", dir))
}

/// The canonical absolute form of an existing directory.
pub fn absolute(dir: &Path) -> Result<PathBuf, FileError> {
    std::fs::canonicalize(dir).map_err(err("resolve data directory", dir))
}

/// Reads the workspace token, generating one at first start.
pub fn load_or_create_token(dir: &Path) -> Result<String, FileError> {
    let path = dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err("read workspace token", &path)(e)),
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| FileError {
        step: "generate workspace token for",
        path: path.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let token = format!("berth_{}", hex::encode(bytes));
    write_private(&path, token.as_bytes())?;
    tracing::info!(path = %path.display(), "generated the workspace token");
    Ok(token)
}

/// The endpoint clients should use for a listener bound to `addr`.
pub fn endpoint_for(addr: SocketAddr, tls: bool) -> String {
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        ip if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{host}:{}", addr.port())
}

/// Writes `config.json` atomically, mode 0600.
pub fn write_client_config(dir: &Path, config: &ClientConfig) -> Result<PathBuf, FileError> {
    let path = dir.join(CLIENT_CONFIG_FILE);
    let mut text = serde_json::to_vec_pretty(config).map_err(|e| FileError {
        step: "encode",
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    text.push(b'\n');
    write_private(&path, &text)?;
    Ok(path)
}

/// Writes through a temporary file and a rename, so readers never see half a file.
fn write_private(path: &Path, content: &[u8]) -> Result<(), FileError> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err("create", &tmp))?;
    file.write_all(content).map_err(err("write", &tmp))?;
    file.sync_all().map_err(err("sync", &tmp))?;
    std::fs::rename(&tmp, path).map_err(err("rename into", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_created_once_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_token(dir.path()).unwrap();
        assert!(first.starts_with("berth_") && first.len() == 70);
        assert_eq!(load_or_create_token(dir.path()).unwrap(), first);
        let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn endpoints_name_a_reachable_host() {
        assert_eq!(
            endpoint_for("0.0.0.0:80".parse().unwrap(), false),
            "http://127.0.0.1:80"
        );
        assert_eq!(
            endpoint_for("[::]:1".parse().unwrap(), false),
            "http://[::1]:1"
        );
        assert_eq!(
            endpoint_for("10.1.2.3:9".parse().unwrap(), true),
            "https://10.1.2.3:9"
        );
    }
}
