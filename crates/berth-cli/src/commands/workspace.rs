//! `berth workspace show`.

use anyhow::Context;

use crate::args::{GlobalArgs, OutputFormat, WorkspaceCommand};
use crate::render;

/// Runs a workspace command.
pub async fn run(command: WorkspaceCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    match command {
        WorkspaceCommand::Show => {
            let client = super::client(global)?;
            let info = client
                .workspace_info()
                .await
                .context("cannot read the workspace")?;
            if global.output == OutputFormat::Json {
                return render::json(&serde_json::json!({
                    "endpoint": client.workspace().endpoint,
                    "name": info.name,
                    "serverVersion": info.server_version,
                    "maxUploadBytes": info.max_upload_bytes,
                    "resourceGroup": info.resource_group,
                    "location": info.location,
                    "subscriptionId": info.subscription_id,
                    "config": client.workspace().source,
                }));
            }
            render::line(&format!("endpoint        {}", client.workspace().endpoint))?;
            render::line(&format!("workspace       {}", info.name))?;
            render::line(&format!("server version  {}", info.server_version))?;
            render::line(&format!("resource group  {}", info.resource_group))?;
            render::line(&format!("location        {}", info.location))?;
            render::line(&format!("subscription    {}", info.subscription_id))?;
            render::line(&format!(
                "upload limit    {}",
                render::size(info.max_upload_bytes)
            ))?;
            if let Some(source) = &client.workspace().source {
                render::line(&format!("config          {}", source.display()))?;
            }
            Ok(())
        }
    }
}
