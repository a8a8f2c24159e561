//! `berth events [--service S] [--type T] [--follow]`.

use std::io::Write;

use anyhow::Context;

use crate::args::{EventsArgs, GlobalArgs, OutputFormat};
use crate::render;

/// Lists or follows events.
pub async fn run(args: EventsArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let client = super::client(global)?;
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(service) = args.service {
        query.push(("service", service));
    }
    if let Some(kind) = args.event_type {
        query.push(("type", kind));
    }
    if let Some(after) = args.after {
        query.push(("after", after.to_string()));
    }
    if !args.follow {
        query.push(("limit", args.limit.to_string()));
        let list = client
            .events(&query)
            .await
            .context("cannot list the events")?;
        return render::events(&list.events, global.output);
    }
    let format = global.output;
    client
        .follow_events(&query, |event| {
            let mut out = std::io::stdout().lock();
            let text = if format == OutputFormat::Json {
                serde_json::to_string(&event).map_err(std::io::Error::other)?
            } else {
                render::event_line(&event)
            };
            writeln!(out, "{text}")?;
            out.flush()
        })
        .await
        .context("cannot follow the events")
}
