//! `berth compute list|show|attach|detach`: the workspace's compute targets.

use anyhow::Context;
use berth_api::{ComputeTarget, KubernetesAttach, PutComputeTargetRequest};
use comfy_table::{Table, presets};

use crate::args::{ComputeCommand, ComputeKind, GlobalArgs, OutputFormat};
use crate::render;

/// Runs a compute command.
pub async fn run(command: ComputeCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    let client = super::client(global)?;
    match command {
        ComputeCommand::List => {
            let list = client
                .list_computes()
                .await
                .context("cannot list compute targets")?;
            if global.output == OutputFormat::Json {
                return render::json(&list.value);
            }
            let mut table = Table::new();
            table.load_preset(presets::NOTHING);
            table.set_header(vec!["NAME", "TYPE", "STATE", "BACKED BY", "CREATED"]);
            for t in &list.value {
                table.add_row(vec![
                    t.name.clone(),
                    t.compute_type.clone(),
                    t.provisioning_state.clone(),
                    t.backed_by.clone(),
                    t.created_time.clone().unwrap_or_else(|| "built in".into()),
                ]);
            }
            render::line(&table.to_string())
        }
        ComputeCommand::Show { name } => {
            let target = client
                .compute(&name)
                .await
                .with_context(|| format!("cannot show compute target `{name}`"))?;
            show(&target, global.output)
        }
        ComputeCommand::Attach {
            name,
            kind: ComputeKind::Kubernetes,
            kubeconfig,
            in_cluster,
            namespace,
            image,
            server_url,
        } => {
            let kubeconfig = match kubeconfig {
                Some(path) => Some(std::fs::read_to_string(&path).with_context(|| {
                    format!(
                        "cannot read the kubeconfig file `{}` given to --kubeconfig",
                        path.display()
                    )
                })?),
                None => None,
            };
            let request = PutComputeTargetRequest {
                compute_type: "AKS".into(),
                attach: true,
                properties: None,
                kubernetes: Some(KubernetesAttach {
                    kubeconfig,
                    in_cluster,
                    namespace,
                    image,
                    server_url,
                }),
            };
            let target = client
                .put_compute(&name, &request)
                .await
                .with_context(|| format!("cannot attach compute target `{name}`"))?;
            for warning in &target.warnings {
                eprintln!("warning: {warning}");
            }
            show(&target, global.output)
        }
        ComputeCommand::Detach { name } => {
            client
                .delete_compute(&name)
                .await
                .with_context(|| format!("cannot detach compute target `{name}`"))?;
            render::line(&format!("detached compute target `{name}`"))
        }
    }
}

fn show(t: &ComputeTarget, format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return render::json(t);
    }
    render::line(&format!("name          {}", t.name))?;
    render::line(&format!("type          {}", t.compute_type))?;
    render::line(&format!("state         {}", t.provisioning_state))?;
    render::line(&format!("backed by     {}", t.backed_by))?;
    render::line(&format!("attached      {}", t.attached))?;
    if let Some(created) = &t.created_time {
        render::line(&format!("created       {created}"))?;
    }
    if let Some(k) = &t.kubernetes {
        render::line(&format!("namespace     {}", k.namespace))?;
        render::line(&format!("image         {}", k.image))?;
        if let Some(url) = &k.server_url {
            render::line(&format!("server url    {url}"))?;
        }
        let credentials = if k.in_cluster {
            "in-cluster service account"
        } else if k.kubeconfig_set {
            "kubeconfig (set)"
        } else {
            "none"
        };
        render::line(&format!("credentials   {credentials}"))?;
    }
    if t.properties.as_object().is_some_and(|p| !p.is_empty()) {
        render::line(&format!("properties    {}", t.properties))?;
    }
    Ok(())
}
