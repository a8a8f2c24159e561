//! One module per command group.

pub mod compute;
pub mod dc_file;
pub mod deploy;
pub mod environment;
pub mod events;
pub mod model;
pub mod rollout;
pub mod service;
pub mod studio;
pub mod update;
pub mod webhook;
pub mod workspace;

use crate::args::{GlobalArgs, UsageError};
use crate::client::Client;

/// A client for the workspace the flags and config files name.
pub fn client(global: &GlobalArgs) -> Result<Client, UsageError> {
    let workspace = crate::workspace::resolve(global)?;
    let ca = match &global.ca_cert {
        Some(path) => Some(std::fs::read(path).map_err(|e| UsageError {
            message: format!("CA certificate `{}` cannot be read: {e}", path.display()),
            hint: None,
        })?),
        None => None,
    };
    Client::with_ca(workspace, ca.as_deref())
}
