//! One module per command group.

pub mod deploy;
pub mod environment;
pub mod model;
pub mod service;
pub mod update;
pub mod workspace;

use crate::args::{GlobalArgs, UsageError};
use crate::client::Client;

/// A client for the workspace the flags and config files name.
pub fn client(global: &GlobalArgs) -> Result<Client, UsageError> {
    crate::workspace::resolve(global).map(Client::new)
}
