//! `berth webhook add|list|remove`.

use anyhow::Context;

use crate::args::{GlobalArgs, OutputFormat, WebhookCommand};
use crate::render;

/// Runs a webhook command.
pub async fn run(command: WebhookCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    let client = super::client(global)?;
    match command {
        WebhookCommand::Add(args) => {
            let request = berth_api::CreateWebhookRequest {
                url: args.url.clone(),
                events: args.events,
                secret: args.secret,
            };
            let created = client
                .create_webhook(&request)
                .await
                .with_context(|| format!("cannot add a webhook for `{}`", args.url))?;
            if global.output == OutputFormat::Json {
                return render::json(&created);
            }
            let w = &created.webhook;
            render::line(&format!("id       {}", w.id))?;
            render::line(&format!("url      {}", w.url))?;
            render::line(&format!("events   {}", w.events.join(", ")))?;
            render::line(&format!("secret   {}", created.secret))?;
            eprintln!(
                "The secret is shown only now. Verify each delivery: X-Berth-Signature = \
                 sha256=<hex HMAC-SHA256(secret, \"<X-Berth-Timestamp>.<body>\")>."
            );
            Ok(())
        }
        WebhookCommand::List => {
            let list = client
                .list_webhooks()
                .await
                .context("cannot list the webhooks")?;
            render::webhooks(&list.webhooks, global.output)
        }
        WebhookCommand::Remove(id) => {
            client
                .delete_webhook(&id.id)
                .await
                .with_context(|| format!("cannot remove webhook `{}`", id.id))?;
            eprintln!("Webhook {} removed", id.id);
            Ok(())
        }
    }
}
