//! Finding the workspace: `--endpoint`/`--token`, else a `config.json` like
//! `Workspace.from_config()` finds it.
//!
//! Search order: `--config FILE`; `./config.json`; `./.berth/config.json`;
//! `$BERTH_CONFIG`; `$BERTH_DATA/config.json`; `~/.berth/config.json`. A
//! `config.json` without an `endpoint` (an Azure ML one, say) is skipped.

use std::path::{Path, PathBuf};

use berth_api::ClientConfig;

use crate::args::{GlobalArgs, UsageError};

/// Where and how to reach the management API.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// Base URL without trailing slash.
    pub endpoint: String,
    /// Workspace token.
    pub token: String,
    /// Workspace name, when the config names it.
    pub name: Option<String>,
    /// The config file used, if any.
    pub source: Option<PathBuf>,
}

fn candidates(global: &GlobalArgs) -> Vec<PathBuf> {
    let mut list = vec![
        PathBuf::from("config.json"),
        PathBuf::from(".berth").join("config.json"),
    ];
    if let Some(path) = std::env::var_os("BERTH_CONFIG").filter(|v| !v.is_empty()) {
        list.push(PathBuf::from(path));
    }
    if let Some(data) = std::env::var_os("BERTH_DATA").filter(|v| !v.is_empty()) {
        list.push(PathBuf::from(data).join("config.json"));
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        list.push(PathBuf::from(home).join(".berth").join("config.json"));
    }
    if let Some(explicit) = &global.config {
        list.insert(0, explicit.clone());
    }
    list
}

fn read_config(path: &Path) -> Result<Option<ClientConfig>, UsageError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(UsageError {
                message: format!("cannot read `{}`: {e}", path.display()),
                hint: None,
            });
        }
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| UsageError {
        message: format!("`{}` is not valid JSON: {e}", path.display()),
        hint: None,
    })?;
    if value.get("endpoint").is_none() {
        return Ok(None);
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| UsageError {
            message: format!("`{}` is not a Berth config.json: {e}", path.display()),
            hint: Some("it needs `endpoint` and `token`, as `berth server` writes it".into()),
        })
}

/// Resolves the workspace from flags, environment and config files.
pub fn resolve(global: &GlobalArgs) -> Result<Workspace, UsageError> {
    let explicit_missing = global
        .config
        .as_ref()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string());
    if let Some(path) = explicit_missing {
        return Err(UsageError {
            message: format!("config file `{path}` does not exist"),
            hint: None,
        });
    }
    let mut found: Option<(PathBuf, ClientConfig)> = None;
    let searched = candidates(global);
    let need_file = global.endpoint.is_none() || global.token.is_none();
    if need_file {
        for path in &searched {
            if let Some(config) = read_config(path)? {
                found = Some((path.clone(), config));
                break;
            }
        }
    }
    let endpoint = global
        .endpoint
        .clone()
        .or_else(|| found.as_ref().map(|(_, c)| c.endpoint.clone()));
    let token = global
        .token
        .clone()
        .or_else(|| found.as_ref().map(|(_, c)| c.token.clone()));
    match (endpoint, token) {
        (Some(endpoint), Some(token)) => Ok(Workspace {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token,
            name: found.as_ref().and_then(|(_, c)| c.workspace_name.clone()),
            source: found.map(|(p, _)| p),
        }),
        _ => Err(UsageError {
            message: format!(
                "no workspace found: no config.json with an endpoint in {}",
                searched
                    .iter()
                    .map(|p| format!("`{}`", p.display()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            hint: Some(
                "start `berth server` (it writes ~/.berth/config.json), or pass `--endpoint URL --token TOKEN`".into(),
            ),
        }),
    }
}
