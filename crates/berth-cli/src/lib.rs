//! The `berth` command-line client.
//!
//! `args` holds the clap definitions, `workspace` finds the server to talk to,
//! `client` is the typed REST client (it can do only what the API allows),
//! `commands/` has one file per command group, and `render` prints tables for
//! people and JSON for scripts. Errors print as `error:`, `Caused by:`, `hint:`;
//! exit codes are 0 success, 1 failure, 2 usage.

pub mod args;
pub mod client;
pub mod commands;
pub mod render;
pub mod workspace;

pub use args::{ClientCommand, GlobalArgs};

/// Exit code of a failed command (the API refused, the file is missing, ...).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of a usage error.
pub const EXIT_USAGE: u8 = 2;

/// Runs one client command.
pub async fn run(command: ClientCommand, global: GlobalArgs) -> anyhow::Result<()> {
    match command {
        ClientCommand::Model(cmd) => commands::model::run(*cmd, &global).await,
        ClientCommand::Environment(cmd) => commands::environment::run(cmd, &global).await,
        ClientCommand::Service(cmd) => commands::service::run(cmd, &global).await,
        ClientCommand::Workspace(cmd) => commands::workspace::run(cmd, &global).await,
        ClientCommand::Compute(cmd) => commands::compute::run(cmd, &global).await,
        ClientCommand::Events(args) => commands::events::run(args, &global).await,
        ClientCommand::Webhook(cmd) => commands::webhook::run(cmd, &global).await,
        ClientCommand::Studio(cmd) => commands::studio::run(cmd, &global).await,
    }
}

/// Formats a failure as `error: ...`, `  Caused by: ...`, `hint: ...` and picks the
/// exit code.
pub fn report(err: &anyhow::Error) -> (String, u8) {
    let mut text = format!("error: {err}\n");
    let mut hint = None;
    let mut code = EXIT_FAILURE;
    for cause in err.chain() {
        if let Some(client_err) = cause.downcast_ref::<client::ClientError>() {
            hint = hint.or_else(|| client_err.hint());
        }
        if let Some(usage) = cause.downcast_ref::<args::UsageError>() {
            code = EXIT_USAGE;
            hint = hint.or_else(|| usage.hint.clone());
        }
    }
    for cause in err.chain().skip(1) {
        text.push_str(&format!("  Caused by: {cause}\n"));
    }
    if let Some(hint) = hint {
        text.push_str(&format!("hint: {hint}\n"));
    }
    (text, code)
}
