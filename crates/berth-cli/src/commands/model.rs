//! `berth model register|list|show|download|update|delete`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use berth_api::names::ModelRef;
use berth_api::{ModelKind, RegisterModelMetadata, UpdateModelRequest};

use crate::args::{
    AliasCommand, DownloadArgs, GlobalArgs, IdArg, ListArgs, ModelCommand, ModelSelector,
    OutputFormat, RegisterArgs, UpdateArgs, UsageError,
};
use crate::client::Client;
use crate::render;

/// Runs a model command.
pub async fn run(command: ModelCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    let client = super::client(global)?;
    match command {
        ModelCommand::Register(args) => register(&client, args, global.output).await,
        ModelCommand::List(args) => list(&client, args, global.output).await,
        ModelCommand::Alias(command) => alias(&client, command, global.output).await,
        ModelCommand::Show(selector) => {
            let (name, version) = select(&client, &selector).await?;
            let model = client
                .model(&name, version)
                .await
                .with_context(|| format!("cannot show model `{}`", display(&name, version)))?;
            render::model(&model, global.output)
        }
        ModelCommand::Download(args) => download(&client, args).await,
        ModelCommand::Deploy(args) => super::deploy::deploy(&client, args, global.output).await,
        ModelCommand::Update(args) => update(&client, args, global.output).await,
        ModelCommand::Delete(IdArg { id }) => {
            let (name, version) = exact(&id)?;
            client
                .delete_model(&name, version)
                .await
                .with_context(|| format!("cannot delete model `{name}:{version}`"))?;
            eprintln!("Deleted model {name}:{version}");
            Ok(())
        }
    }
}

fn display(name: &str, version: Option<u32>) -> String {
    match version {
        Some(v) => format!("{name}:{v}"),
        None => name.to_owned(),
    }
}

fn usage(message: String) -> UsageError {
    UsageError {
        message,
        hint: None,
    }
}

async fn select(
    client: &Client,
    selector: &ModelSelector,
) -> anyhow::Result<(String, Option<u32>)> {
    match (&selector.id, &selector.name) {
        (Some(id), _) => {
            let r = ModelRef::parse(id).map_err(usage)?;
            match r.alias.as_deref() {
                None | Some(berth_api::names::LATEST_ALIAS) => Ok((r.name, r.version)),
                Some(alias) => {
                    let list = client.aliases(Some(&r.name)).await?;
                    let found = list
                        .value
                        .iter()
                        .find(|a| a.alias == alias)
                        .ok_or_else(|| UsageError {
                            message: format!("model `{}` has no alias `{alias}`", r.name),
                            hint: Some(format!(
                                "`berth model alias list {}` shows its aliases",
                                r.name
                            )),
                        })?;
                    Ok((r.name, Some(found.version)))
                }
            }
        }
        (None, Some(name)) => Ok((name.clone(), selector.version)),
        (None, None) => {
            Err(usage("name a model with `-i name:version` or `-n name`".into()).into())
        }
    }
}

async fn alias(client: &Client, command: AliasCommand, output: OutputFormat) -> anyhow::Result<()> {
    match command {
        AliasCommand::Set {
            name,
            alias,
            version,
        } => {
            berth_api::names::check_model_name(&name).map_err(usage)?;
            berth_api::names::check_alias_name(&alias).map_err(usage)?;
            let moved = client
                .set_alias(&name, &alias, version)
                .await
                .with_context(|| format!("cannot set alias `{name}@{alias}`"))?;
            if output == OutputFormat::Json {
                return render::json(&moved);
            }
            match moved.previous {
                Some(previous) if previous != version => {
                    eprintln!("Moved {name}@{alias}: {previous} → {version}")
                }
                Some(_) => eprintln!("{name}@{alias} already points at {version}"),
                None => eprintln!("Set {name}@{alias} → {version}"),
            }
            if moved.followers.is_empty() {
                eprintln!("No service follows {name}@{alias}");
            }
            for line in render::follower_plans(&moved.followers) {
                eprintln!("{line}");
            }
            Ok(())
        }
        AliasCommand::Remove { name, alias } => {
            client
                .remove_alias(&name, &alias)
                .await
                .with_context(|| format!("cannot remove alias `{name}@{alias}`"))?;
            eprintln!("Removed alias {name}@{alias}");
            Ok(())
        }
        AliasCommand::List { name } => {
            let list = client
                .aliases(name.as_deref())
                .await
                .context("cannot list aliases")?;
            if output == OutputFormat::Json {
                return render::json(&list);
            }
            let mut t = render::table(&["NAME", "ALIAS", "VERSION", "UPDATED"]);
            for a in &list.value {
                t.add_row(vec![
                    a.name.clone(),
                    a.alias.clone(),
                    a.version.to_string(),
                    a.updated_time.clone(),
                ]);
            }
            render::line(&t.to_string())
        }
    }
}

/// A `name:version` with an explicit version (for changes, which must not guess).
fn exact(id: &str) -> Result<(String, u32), UsageError> {
    let r = ModelRef::parse(id).map_err(usage)?;
    match r.version {
        Some(v) => Ok((r.name, v)),
        None => Err(UsageError {
            message: format!("`{id}` names no version: changes need an exact `name:version`"),
            hint: Some(format!(
                "`berth model list -n {}` shows the versions",
                r.name
            )),
        }),
    }
}

async fn register(client: &Client, args: RegisterArgs, output: OutputFormat) -> anyhow::Result<()> {
    berth_api::names::check_model_name(&args.name).map_err(usage)?;
    let path = &args.asset_path;
    let meta = std::fs::metadata(path).map_err(|e| UsageError {
        message: format!("model path `{}` cannot be read: {e}", path.display()),
        hint: Some("pass an existing file or folder with `--asset-path`".into()),
    })?;
    let asset_name = std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .ok_or_else(|| usage(format!("model path `{}` has no file name", path.display())))?;
    let kind = if meta.is_dir() {
        ModelKind::Folder
    } else {
        ModelKind::File
    };
    let metadata = RegisterModelMetadata {
        name: args.name.clone(),
        kind: Some(kind),
        asset_name,
        description: args.description,
        tags: args.tags.into_iter().collect::<BTreeMap<_, _>>(),
        properties: args.properties.into_iter().collect::<BTreeMap<_, _>>(),
        framework: args.framework,
        framework_version: args.framework_version,
        experiment_name: args.experiment_name,
        run_id: args.run_id,
    };
    let upload_size = if meta.is_dir() {
        folder_size(path)
    } else {
        meta.len()
    };
    let info = client
        .workspace_info()
        .await
        .context("cannot reach the workspace")?;
    if upload_size > info.max_upload_bytes {
        bail!(
            "`{}` holds {} ({upload_size} bytes), more than the server accepts ({} bytes); raise it with `berth server --max-upload-bytes`",
            path.display(),
            render::size(upload_size),
            info.max_upload_bytes
        );
    }
    eprintln!("Registering model {}", args.name);
    let started = std::time::Instant::now();
    let model = match kind {
        ModelKind::File => client.register_model(&metadata, path).await,
        ModelKind::Folder => {
            let archive = pack_folder(path)?;
            client.register_model(&metadata, archive.path()).await
        }
    }
    .with_context(|| format!("cannot register model `{}`", args.name))?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "Registered {} ({}, {} file(s)) in {secs:.1} s",
        model.id,
        render::size(model.size),
        model.file_count
    );
    for line in render::follower_plans(&model.followers) {
        eprintln!("{line}");
    }
    if let Ok(services) = client.list_services().await {
        let prefix = format!("{}:", model.name);
        for service in services
            .value
            .into_iter()
            .filter(|s| !model.followers.iter().any(|f| f.service == s.name))
        {
            let older: Vec<&String> = service
                .models
                .iter()
                .filter(|id| {
                    id.strip_prefix(&prefix)
                        .and_then(|v| v.parse::<u32>().ok())
                        .is_some_and(|v| v < model.version)
                })
                .collect();
            for id in older {
                eprintln!(
                    "Service {} serves {id}; to move it to {}: berth service update -n {} -m {}",
                    service.name, model.id, service.name, model.id
                );
            }
        }
    }
    if let Some(file) = &args.output_metadata_file {
        let workspace_name = info.name.clone();
        let metadata = serde_json::json!({
            "modelId": model.id,
            "modelName": model.name,
            "modelVersion": model.version,
            "workspaceName": workspace_name,
        });
        let mut text = serde_json::to_string_pretty(&metadata)?;
        text.push('\n');
        std::fs::write(file, text)
            .with_context(|| format!("cannot write the metadata file `{}`", file.display()))?;
    }
    render::model(&model, output)
}

/// Total size of the regular files under `dir` (links followed, as packing does).
fn folder_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match std::fs::metadata(entry.path()) {
            Ok(meta) if meta.is_dir() => folder_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Tars a folder (files relative to it) into a temporary file.
fn pack_folder(dir: &Path) -> anyhow::Result<tempfile::NamedTempFile> {
    let archive = tempfile::NamedTempFile::new().context("cannot create a temporary archive")?;
    let file = std::io::BufWriter::with_capacity(1 << 20, archive.reopen()?);
    let mut builder = tar::Builder::new(file);
    builder.follow_symlinks(true);
    builder
        .append_dir_all(".", dir)
        .with_context(|| format!("cannot pack folder `{}`", dir.display()))?;
    builder
        .into_inner()?
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    Ok(archive)
}

async fn list(client: &Client, args: ListArgs, output: OutputFormat) -> anyhow::Result<()> {
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(name) = args.name {
        query.push(("name", name));
    }
    for tag in args.tags {
        query.push(("tag", tag));
    }
    for property in args.properties {
        query.push(("property", property));
    }
    if let Some(framework) = args.framework {
        query.push(("framework", framework));
    }
    if args.latest {
        query.push(("latest", "true".into()));
    }
    let list = client
        .list_models(&query)
        .await
        .context("cannot list models")?;
    render::models(&list.value, output)
}

async fn update(client: &Client, args: UpdateArgs, output: OutputFormat) -> anyhow::Result<()> {
    let (name, version) = exact(&args.id)?;
    let request = UpdateModelRequest {
        description: args.description,
        tags: None,
        add_tags: args.add_tags.into_iter().collect(),
        remove_tags: args.remove_tags,
        add_properties: args.add_properties.into_iter().collect(),
    };
    let model = client
        .update_model(&name, version, &request)
        .await
        .with_context(|| format!("cannot update model `{name}:{version}`"))?;
    render::model(&model, output)
}

async fn download(client: &Client, args: DownloadArgs) -> anyhow::Result<()> {
    let r = ModelRef::parse(&args.id).map_err(usage)?;
    let model = client
        .model(&r.name, r.version)
        .await
        .with_context(|| format!("cannot download model `{}`", args.id))?;
    std::fs::create_dir_all(&args.target_dir).with_context(|| {
        format!(
            "cannot create the target folder `{}`",
            args.target_dir.display()
        )
    })?;
    let target = args.target_dir.join(&model.asset_name);
    if target.exists() && !args.overwrite {
        return Err(UsageError {
            message: format!("`{}` already exists", target.display()),
            hint: Some("pass `--overwrite` to replace it, or choose another `--target-dir`".into()),
        }
        .into());
    }
    match model.kind {
        ModelKind::File => {
            let partial = args
                .target_dir
                .join(format!(".{}.partial", model.asset_name));
            let result = client
                .download_model(&model.name, model.version, &partial)
                .await;
            if let Err(e) = result {
                let _ = std::fs::remove_file(&partial);
                return Err(e).context(format!("cannot download model `{}`", model.id));
            }
            std::fs::rename(&partial, &target)
                .with_context(|| format!("cannot write `{}`", target.display()))?;
        }
        ModelKind::Folder => {
            let archive = tempfile::NamedTempFile::new_in(&args.target_dir)
                .context("cannot create a temporary file in the target folder")?;
            client
                .download_model(&model.name, model.version, archive.path())
                .await
                .with_context(|| format!("cannot download model `{}`", model.id))?;
            unpack(archive.path(), &args.target_dir, args.overwrite)?;
        }
    }
    eprintln!("Downloaded {} to {}", model.id, target.display());
    render::line(&target.display().to_string())
}

/// Unpacks a downloaded folder archive, refusing entries that leave `dir`.
fn unpack(archive: &Path, dir: &Path, overwrite: bool) -> anyhow::Result<()> {
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut reader = tar::Archive::new(std::fs::File::open(archive)?);
    for entry in reader.entries()? {
        let entry = entry?;
        let path = entry.path()?.into_owned();
        if path.is_absolute()
            || path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            bail!(
                "the downloaded archive has an unsafe path `{}`",
                path.display()
            );
        }
        if !overwrite && dir.join(&path).is_file() {
            return Err(UsageError {
                message: format!("`{}` already exists", dir.join(&path).display()),
                hint: Some("pass `--overwrite` to replace it".into()),
            }
            .into());
        }
        paths.push(path);
    }
    let mut reader = tar::Archive::new(std::fs::File::open(archive)?);
    reader.set_overwrite(true);
    for entry in reader.entries()? {
        let mut entry = entry?;
        if !entry.unpack_in(dir)? {
            bail!("the downloaded archive has an entry outside the target folder");
        }
    }
    Ok(())
}
