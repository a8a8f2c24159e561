//! `berth studio login`: a one-time link that signs a browser in to the console.

use anyhow::Context;

use crate::args::{GlobalArgs, OutputFormat, StudioCommand};
use crate::render;

/// Runs a studio command.
pub async fn run(command: StudioCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    match command {
        StudioCommand::Login => {
            let client = super::client(global)?;
            let code = client
                .studio_code()
                .await
                .context("cannot mint a console sign-in link")?;
            if global.output == OutputFormat::Json {
                return render::json(&code);
            }
            render::line(&code.url)?;
            eprintln!(
                "Open the link within 5 minutes; it works once and starts a {}-hour console session.",
                code.session_seconds / 3600
            );
            Ok(())
        }
    }
}
