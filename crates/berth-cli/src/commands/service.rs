//! `berth service list|show|logs|wait|run|keys|delete`, and following operations
//! (a rolled-back one fails with its gate); the rollout verbs live in `rollout`.

use std::time::Duration;

use anyhow::{Context, bail};
use berth_api::{OperationState, ServiceState};

use crate::args::{GlobalArgs, OutputFormat, ServiceCommand, UsageError};
use crate::client::Client;
use crate::render;

/// Runs a service command.
pub async fn run(command: ServiceCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    let client = super::client(global)?;
    match command {
        ServiceCommand::List => {
            let list = client
                .list_services()
                .await
                .context("cannot list services")?;
            render::services(&list.value, global.output)
        }
        ServiceCommand::Show(s) => {
            if let Some(number) = s.revision {
                let list = client
                    .revisions(&s.name)
                    .await
                    .with_context(|| format!("cannot show service `{}`", s.name))?;
                let revision = list
                    .value
                    .into_iter()
                    .find(|r| r.revision == number)
                    .ok_or_else(|| {
                        anyhow::anyhow!("service `{}` has no revision {number}", s.name)
                    })?;
                return render::json(&revision);
            }
            let service = client
                .service(&s.name)
                .await
                .with_context(|| format!("cannot show service `{}`", s.name))?;
            render::service(&service, global.output)
        }
        ServiceCommand::Update(args) => super::update::update(&client, *args, global.output).await,
        ServiceCommand::Stage(args) => super::rollout::stage(&client, *args, global.output).await,
        ServiceCommand::Traffic(args) => {
            super::rollout::traffic(&client, args, global.output).await
        }
        ServiceCommand::Promote(s) => {
            super::rollout::rollout_action(&client, &s.name, "promote", global.output).await
        }
        ServiceCommand::Abort(s) => {
            super::rollout::rollout_action(&client, &s.name, "abort", global.output).await
        }
        ServiceCommand::Mirror(args) => super::rollout::mirror(&client, args, global.output).await,
        ServiceCommand::Revisions(s) => {
            let list = client
                .revisions(&s.name)
                .await
                .with_context(|| format!("cannot list the revisions of `{}`", s.name))?;
            render::revisions(&list.value, global.output)
        }
        ServiceCommand::Diff(args) => {
            let list = client
                .revisions(&args.name)
                .await
                .with_context(|| format!("cannot read the revisions of `{}`", args.name))?;
            let find = |n: u32| {
                list.value
                    .iter()
                    .find(|r| r.revision == n)
                    .map(|r| serde_json::to_value(&r.spec).unwrap_or_default())
                    .ok_or_else(|| anyhow::anyhow!("service `{}` has no revision {n}", args.name))
            };
            let (from, to) = (find(args.from)?, find(args.to)?);
            let mut lines = Vec::new();
            render::diff_values("", &from, &to, &mut lines);
            if lines.is_empty() {
                render::line(&format!(
                    "revisions {} and {} are identical",
                    args.from, args.to
                ))
            } else {
                render::line(&lines.join("\n"))
            }
        }
        ServiceCommand::Rollback(args) => {
            let accepted = client
                .rollback_service(&args.name, args.to)
                .await
                .with_context(|| format!("cannot roll back service `{}`", args.name))?;
            eprintln!(
                "Rolling service {} back to revision {} (operation {})",
                args.name, args.to, accepted.operation.id
            );
            if args.no_wait {
                return render::line(&accepted.operation.id);
            }
            wait_for_operation(&client, &accepted.operation.id, global.output).await
        }
        ServiceCommand::Redeploy(args) => {
            let accepted = client
                .redeploy_service(&args.name)
                .await
                .with_context(|| format!("cannot redeploy service `{}`", args.name))?;
            eprintln!(
                "Redeploying service {} (operation {})",
                args.name, accepted.operation.id
            );
            if args.no_wait {
                return render::line(&accepted.operation.id);
            }
            wait_for_operation(&client, &accepted.operation.id, global.output).await
        }
        ServiceCommand::Logs(args) => {
            if args.follow {
                return client
                    .follow_service_logs(&args.name, args.tail)
                    .await
                    .with_context(|| format!("cannot follow the logs of `{}`", args.name));
            }
            let logs = client
                .service_logs(&args.name, args.tail, args.init, args.requests)
                .await
                .with_context(|| format!("cannot read the logs of `{}`", args.name))?;
            if global.output == OutputFormat::Json {
                return render::json(&logs);
            }
            print!("{}", logs.content);
            Ok(())
        }
        ServiceCommand::Wait(s) => {
            let service = client
                .service(&s.name)
                .await
                .with_context(|| format!("cannot wait for service `{}`", s.name))?;
            let Some(operation) = service.operation_id else {
                bail!(
                    "service `{}` has no operation to wait for; it is {:?}",
                    s.name,
                    service.state
                );
            };
            wait_for_operation(&client, &operation, global.output).await
        }
        ServiceCommand::Run(args) => score(&client, &args.name, &args.data).await,
        ServiceCommand::Keys(s) => {
            let keys = client
                .service_keys(&s.name)
                .await
                .with_context(|| format!("cannot read the keys of `{}`", s.name))?;
            if global.output == OutputFormat::Json {
                return render::json(&keys);
            }
            render::line(&format!("primaryKey    {}", keys.primary_key))?;
            render::line(&format!("secondaryKey  {}", keys.secondary_key))
        }
        ServiceCommand::RegenKey(args) => {
            let accepted = client
                .regenerate_key(&args.name, &args.key, args.value.clone())
                .await
                .with_context(|| {
                    format!("cannot regenerate the {} key of `{}`", args.key, args.name)
                })?;
            if args.no_wait {
                return render::line(&accepted.operation.id);
            }
            wait_for_operation(&client, &accepted.operation.id, OutputFormat::Table).await?;
            eprintln!("The {} key of {} is replaced", args.key, args.name);
            Ok(())
        }
        ServiceCommand::Token(s) => {
            let token = client
                .service_token(&s.name)
                .await
                .with_context(|| format!("cannot get a token for `{}`", s.name))?;
            if global.output == OutputFormat::Json {
                return render::json(&token);
            }
            render::line(&format!("accessToken   {}", token.access_token))?;
            render::line(&format!("tokenType     {}", token.token_type))?;
            render::line(&format!("refreshAfter  {}", token.refresh_after))?;
            render::line(&format!("expiryOn      {}", token.expiry_on))
        }
        ServiceCommand::Delete(args) => {
            let accepted = client
                .delete_service(&args.name)
                .await
                .with_context(|| format!("cannot delete service `{}`", args.name))?;
            if args.no_wait {
                eprintln!(
                    "Deleting service {} (operation {})",
                    args.name, accepted.operation.id
                );
                return Ok(());
            }
            wait_for_operation(&client, &accepted.operation.id, OutputFormat::Table).await?;
            eprintln!("Deleted service {}", args.name);
            Ok(())
        }
    }
}

/// Prints an operation's log lines until it ends; fails with its error.
pub async fn wait_for_operation(
    client: &Client,
    id: &str,
    output: OutputFormat,
) -> anyhow::Result<()> {
    use std::io::{IsTerminal, Write};
    // On a terminal a status line under the log shows the operation is alive.
    let tty = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let spinner = ['|', '/', '-', '\\'];
    let mut offset = 0u64;
    let mut tick = 0usize;
    let operation = loop {
        let operation = client
            .operation(id, offset)
            .await
            .with_context(|| format!("cannot follow operation `{id}`"))?;
        let mut err = std::io::stderr().lock();
        if tty {
            let _ = write!(err, "\r\x1b[2K");
        }
        for event in &operation.events {
            let _ = writeln!(
                err,
                "{:>7.1}s  {}",
                event.elapsed_ms as f64 / 1000.0,
                event.message
            );
            offset = event.seq + 1;
        }
        if operation.state.is_terminal() {
            break operation;
        }
        if tty {
            tick += 1;
            let _ = write!(
                err,
                "{} {} {:?} {:.1}s",
                spinner[tick % spinner.len()],
                operation.operation_type.as_str(),
                operation.state,
                started.elapsed().as_secs_f64()
            );
            let _ = err.flush();
        }
        drop(err);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if operation.state == OperationState::Succeeded {
        if operation.operation_type == berth_api::OperationType::Delete {
            return Ok(());
        }
        let service = client.service(&operation.service).await?;
        if output == OutputFormat::Json {
            return render::json(&service);
        }
        eprintln!(
            "{} operation {} succeeded: service {} is {:?}, serving revision {}",
            operation.operation_type.as_str(),
            operation.id,
            service.name,
            service.state,
            service
                .serving_revision
                .map(|r| r.to_string())
                .unwrap_or_else(|| "none".into())
        );
        if let Some(uri) = &service.scoring_uri {
            render::line(&format!("Scoring URI: {uri}"))?;
        }
        return Ok(());
    }
    if operation.state == OperationState::RolledBack {
        // A gate failed: the previous revision serves; name the gate, its
        // threshold and what was measured.
        let service = client.service(&operation.service).await.ok();
        bail!(render::rollout::rolled_back_text(
            &operation,
            service.as_ref()
        ))
    }
    let mut text = format!(
        "{} operation {} ended {:?}",
        operation.operation_type.as_str(),
        operation.id,
        operation.state
    );
    if let Some(error) = &operation.error {
        text.push_str(&format!(
            " at step `{}` ({}): {}",
            error.step, error.code, error.message
        ));
        if !error.output.is_empty() {
            let start = error.output.len().saturating_sub(25);
            text.push_str("\n--- output (last lines) ---\n");
            text.push_str(&error.output[start..].join("\n"));
        }
    }
    if let Ok(service) = client.service(&operation.service).await {
        text.push_str(&format!(
            "\nservice {} is {:?}; serving revision: {}",
            service.name,
            service.state,
            service
                .serving_revision
                .map(|r| r.to_string())
                .unwrap_or_else(|| "none".into())
        ));
        if service.state == ServiceState::Failed {
            text.push_str(&format!(
                "\nhint: `berth service logs -n {} --init` prints the start-up output",
                service.name
            ));
        }
    }
    bail!(text)
}

async fn score(client: &Client, name: &str, data: &str) -> anyhow::Result<()> {
    let body = match data.strip_prefix('@') {
        Some(path) => std::fs::read(path).map_err(|e| UsageError {
            message: format!("input file `{path}` cannot be read: {e}"),
            hint: None,
        })?,
        None => data.as_bytes().to_vec(),
    };
    let service = client
        .service(name)
        .await
        .with_context(|| format!("cannot score service `{name}`"))?;
    let Some(uri) = service.scoring_uri.clone() else {
        bail!(
            "service `{name}` has no scoring URI yet; it is {:?}",
            service.state
        );
    };
    let key = if service.settings.auth_enabled {
        Some(client.service_keys(name).await?.primary_key)
    } else if service.settings.token_auth_enabled {
        Some(client.service_token(name).await?.access_token)
    } else {
        None
    };
    let (status, headers, bytes) = client.score(&uri, key.as_deref(), body).await?;
    let text = String::from_utf8_lossy(&bytes);
    if status.is_success() {
        render::line(text.trim_end())
    } else {
        let revision = headers
            .get("x-berth-revision")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        bail!(
            "scoring `{name}` answered HTTP {status} (revision {revision}): {}",
            text.trim_end()
        )
    }
}
