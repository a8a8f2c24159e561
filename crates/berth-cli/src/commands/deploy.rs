//! `berth model deploy`: reads `inferenceconfig.json` / `deploymentconfig.json`
//! like `az ml model deploy`, uploads the source directory as a snapshot,
//! registers an inline environment, and creates the service.

use std::path::{Path, PathBuf};

use anyhow::Context;
use berth_api::{CreateServiceRequest, InferenceConfigRequest, RegisterEnvironmentRequest};
use serde_json::Value;

use crate::args::{DeployArgs, OutputFormat, UsageError};
use crate::client::Client;

/// Keys `inferenceconfig.json` may hold.
const IC_KEYS: &[&str] = &[
    "entryScript",
    "sourceDirectory",
    "environment",
    "description",
    "runtime",
    "condaFile",
    "extraDockerfileSteps",
    "enableGpu",
    "baseImage",
    "baseImageRegistry",
    "cudaVersion",
    "schemaFile",
    "sourceDirectoryName",
];

fn usage(message: impl Into<String>) -> UsageError {
    UsageError {
        message: message.into(),
        hint: None,
    }
}

fn read_json(path: &Path, what: &str) -> Result<Value, UsageError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("{what} `{}` cannot be read: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        usage(format!(
            "{what} `{}` is not valid JSON: {e}",
            path.display()
        ))
    })
}

/// What `inferenceconfig.json` (plus flags) asks for.
#[derive(Debug, Default)]
struct InferenceInput {
    entry_script: Option<String>,
    source_directory: Option<PathBuf>,
    environment_json: Option<Value>,
    conda_file: Option<PathBuf>,
    warnings: Vec<String>,
}

fn read_inference_config(path: &Path) -> Result<InferenceInput, UsageError> {
    let value = read_json(path, "inference config")?;
    let Some(object) = value.as_object() else {
        return Err(usage(format!(
            "inference config `{}` must be a JSON object",
            path.display()
        )));
    };
    let mut problems = Vec::new();
    let mut input = InferenceInput::default();
    for key in object.keys() {
        if !IC_KEYS.contains(&key.as_str()) {
            problems.push(format!(
                "unknown key `{key}`; known keys: `{}`",
                IC_KEYS.join("`, `")
            ));
        }
    }
    let text = |key: &str, problems: &mut Vec<String>| -> Option<String> {
        match object.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                problems.push(format!("`{key}` is {other}: it must be a string"));
                None
            }
        }
    };
    input.entry_script = text("entryScript", &mut problems);
    input.source_directory = text("sourceDirectory", &mut problems).map(PathBuf::from);
    input.conda_file = text("condaFile", &mut problems).map(PathBuf::from);
    if let Some(runtime) = text("runtime", &mut problems)
        && !runtime.eq_ignore_ascii_case("python")
    {
        problems.push(format!(
            "`runtime` is `{runtime}`: only `python` is supported"
        ));
    }
    if object.get("enableGpu") == Some(&Value::Bool(true)) {
        problems.push("`enableGpu` is true, but this server has no GPUs configured".into());
    }
    for key in [
        "extraDockerfileSteps",
        "baseImage",
        "baseImageRegistry",
        "cudaVersion",
    ] {
        if object.get(key).is_some_and(|v| !v.is_null()) {
            input.warnings.push(format!(
                "`{key}` is not used: the local compute target runs workers without containers"
            ));
        }
    }
    match object.get("environment") {
        None | Some(Value::Null) => {}
        Some(env @ Value::Object(_)) => input.environment_json = Some(env.clone()),
        Some(other) => problems.push(format!(
            "`environment` is {other}: it must be an Environment object"
        )),
    }
    if input.environment_json.is_some() && input.conda_file.is_some() {
        problems.push("`environment` and `condaFile` cannot both be given: put the conda spec in the environment".into());
    }
    if problems.is_empty() {
        Ok(input)
    } else {
        Err(UsageError {
            message: format!(
                "inference config `{}` has {} problem(s):\n  - {}",
                path.display(),
                problems.len(),
                problems.join("\n  - ")
            ),
            hint: None,
        })
    }
}

/// Names and patterns left out of source snapshots.
fn excluded(name: &str, patterns: &[String]) -> bool {
    const ALWAYS: &[&str] = &[".git", "__pycache__", ".ipynb_checkpoints", ".amlignore"];
    if ALWAYS.contains(&name) || name.ends_with(".pyc") {
        return true;
    }
    patterns.iter().any(|p| {
        let p = p.trim_end_matches('/');
        match (p.strip_prefix('*'), p.strip_suffix('*')) {
            (Some(suffix), _) => name.ends_with(suffix),
            (_, Some(prefix)) => name.starts_with(prefix),
            _ => name == p,
        }
    })
}

fn add_dir(
    builder: &mut tar::Builder<std::io::BufWriter<std::fs::File>>,
    root: &Path,
    dir: &Path,
    patterns: &[String],
) -> anyhow::Result<usize> {
    let mut count = 0;
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read `{}`", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if excluded(&name, patterns) {
            continue;
        }
        let path = entry.path();
        let relative = path.strip_prefix(root).unwrap_or(&path);
        let meta = std::fs::metadata(&path)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        if meta.is_dir() {
            count += add_dir(builder, root, &path, patterns)?;
        } else if meta.is_file() {
            builder
                .append_path_with_name(&path, relative)
                .with_context(|| format!("cannot pack `{}`", path.display()))?;
            count += 1;
        }
    }
    Ok(count)
}

/// Packs the source directory (or a single entry script) into a temporary tar.
fn pack_source(
    dir: Option<&Path>,
    single: Option<&Path>,
) -> anyhow::Result<(tempfile::NamedTempFile, usize)> {
    let archive = tempfile::NamedTempFile::new().context("cannot create a temporary archive")?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(archive.reopen()?));
    let count = match (dir, single) {
        (Some(dir), _) => {
            let patterns: Vec<String> = std::fs::read_to_string(dir.join(".amlignore"))
                .unwrap_or_default()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect();
            add_dir(&mut builder, dir, dir, &patterns)?
        }
        (None, Some(file)) => {
            let name = file
                .file_name()
                .context("the entry script has no file name")?;
            builder.append_path_with_name(file, name)?;
            1
        }
        (None, None) => 0,
    };
    builder
        .into_inner()?
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    Ok((archive, count))
}

/// Where the inference part of a deploy or update comes from.
pub(super) struct InferenceSources<'a> {
    pub service: &'a str,
    pub inference_config: Option<&'a Path>,
    pub entry_script: Option<&'a str>,
    pub source_directory: Option<&'a Path>,
    pub environment_name: Option<&'a str>,
    pub environment_version: Option<u32>,
}

/// The `inferenceConfig` fields the sources name: uploads the source as a
/// snapshot and registers an inline environment. Empty when nothing is named.
pub(super) async fn inference_fields(
    client: &Client,
    sources: InferenceSources<'_>,
) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut input = match sources.inference_config {
        Some(path) => read_inference_config(path)?,
        None => InferenceInput::default(),
    };
    if let Some(es) = sources.entry_script {
        input.entry_script = Some(es.to_owned());
    }
    if let Some(sd) = sources.source_directory {
        input.source_directory = Some(sd.to_owned());
    }
    for warning in &input.warnings {
        eprintln!("warning: {warning}");
    }
    let mut fields = serde_json::Map::new();
    let packed = match (&input.source_directory, &input.entry_script) {
        (Some(dir), entry) => {
            if !dir.is_dir() {
                return Err(usage(format!(
                    "source directory `{}` is not a folder",
                    dir.display()
                ))
                .into());
            }
            if let Some(entry) = entry
                && !dir.join(entry).is_file()
            {
                return Err(usage(format!(
                    "entry script `{entry}` does not exist in source directory `{}`",
                    dir.display()
                ))
                .into());
            }
            let name = std::fs::canonicalize(dir)?
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            fields.insert("sourceDirectoryName".into(), serde_json::json!(name));
            if let Some(entry) = entry {
                fields.insert("entryScript".into(), Value::String(entry.clone()));
            }
            Some(pack_source(Some(dir), None)?)
        }
        (None, Some(entry)) => {
            let path = PathBuf::from(entry);
            if !path.is_file() {
                return Err(usage(format!(
                    "entry script `{entry}` does not exist; paths are relative to the current directory"
                ))
                .into());
            }
            let base = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| entry.clone());
            fields.insert("entryScript".into(), Value::String(base));
            fields.insert("sourceDirectoryName".into(), Value::Null);
            Some(pack_source(None, Some(&path))?)
        }
        (None, None) => None,
    };
    if let Some((archive, files)) = packed {
        let snapshot = client
            .upload_snapshot(archive.path())
            .await
            .context("cannot upload the source directory")?;
        eprintln!(
            "Uploaded source ({files} file(s)) as snapshot {}",
            snapshot.id
        );
        fields.insert("sourceSnapshot".into(), Value::String(snapshot.id));
    }
    let environment = if let Some(name) = sources.environment_name {
        Some(match sources.environment_version {
            Some(v) => format!("{name}:{v}"),
            None => name.to_owned(),
        })
    } else if let Some(json) = input.environment_json.take() {
        let only_reference = json
            .as_object()
            .is_some_and(|o| o.keys().all(|k| k == "name" || k == "version"));
        let json_name = json.get("name").and_then(Value::as_str).map(str::to_owned);
        if only_reference {
            let name = json_name
                .ok_or_else(|| usage("the inference config's `environment` has no `name`"))?;
            let version = json.get("version").and_then(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .or_else(|| v.as_u64().map(|n| n.to_string()))
            });
            Some(match version {
                Some(v) => format!("{name}:{v}"),
                None => name,
            })
        } else {
            let name = json_name
                .filter(|n| {
                    berth_api::names::check_model_name(n).is_ok() && !n.starts_with("AzureML")
                })
                .unwrap_or_else(|| format!("{}-env", sources.service));
            let request = RegisterEnvironmentRequest {
                name,
                azure_environment: Some(json),
                ..Default::default()
            };
            Some(register_environment(client, request).await?)
        }
    } else if let Some(conda) = &input.conda_file {
        let text = std::fs::read_to_string(conda).map_err(|e| {
            usage(format!(
                "conda file `{}` cannot be read: {e}",
                conda.display()
            ))
        })?;
        let request = RegisterEnvironmentRequest {
            name: format!("{}-env", sources.service),
            conda_file: Some(text),
            ..Default::default()
        };
        Some(register_environment(client, request).await?)
    } else {
        None
    };
    if let Some(env) = environment {
        fields.insert("environment".into(), Value::String(env));
    }
    Ok(fields)
}

/// Model ids from `-m` and `-f` flags.
pub(super) fn model_list(models: &[String], files: &[PathBuf]) -> Result<Vec<String>, UsageError> {
    let mut ids = models.to_vec();
    for file in files {
        let value = read_json(file, "model metadata file")?;
        let id = value.get("modelId").and_then(Value::as_str).ok_or_else(|| {
            usage(format!(
                "model metadata file `{}` has no `modelId`; write it with `berth model register ... -t FILE`",
                file.display()
            ))
        })?;
        ids.push(id.to_owned());
    }
    Ok(ids)
}

/// Reads a JSON file (CLI usage error when unreadable).
pub(super) fn json_file(path: &Path, what: &str) -> Result<Value, UsageError> {
    read_json(path, what)
}

/// Runs `berth model deploy`.
pub async fn deploy(client: &Client, args: DeployArgs, output: OutputFormat) -> anyhow::Result<()> {
    berth_api::names::check_service_name(&args.name).map_err(usage)?;
    let fields = inference_fields(
        client,
        InferenceSources {
            service: &args.name,
            inference_config: args.source.inference_config.as_deref(),
            entry_script: args.source.entry_script.as_deref(),
            source_directory: args.source.source_directory.as_deref(),
            environment_name: args.source.environment_name.as_deref(),
            environment_version: args.source.environment_version,
        },
    )
    .await?;
    let text = |key: &str| fields.get(key).and_then(Value::as_str).map(str::to_owned);
    let inference_config = match (text("entryScript"), text("sourceSnapshot")) {
        (Some(entry_script), Some(source_snapshot)) => Some(InferenceConfigRequest {
            entry_script,
            source_snapshot,
            source_directory_name: text("sourceDirectoryName"),
            environment: text("environment"),
        }),
        // No-code: the server runs its built-in scorer for the model's framework.
        (None, None) if text("environment").is_none() => None,
        _ => {
            return Err(UsageError {
                message: "no entry script: give `--ic inferenceconfig.json` with `entryScript`, or `--es score.py`".into(),
                hint: Some("without `--ic`/`--es`/`-e`, one model registered with `--model-framework Onnx|ScikitLearn|TensorFlow` is deployed with a built-in scorer (no-code)".into()),
            }
            .into());
        }
    };
    let mut deployment_config = match &args.source.deploy_config {
        Some(path) => Some(super::dc_file::read(path)?),
        None => None,
    };
    match &mut deployment_config {
        Some(Value::Object(config)) => {
            super::rollout::merge_rollout(config, &args.rollout);
        }
        // A config file that is not an object is refused by the server as it is.
        Some(_) => {}
        None => {
            // Without `--dc` the service is local; the rollout flags need a config to live in.
            let mut config = serde_json::Map::new();
            if super::rollout::merge_rollout(&mut config, &args.rollout) {
                config.insert("computeType".into(), Value::String("local".into()));
                deployment_config = Some(Value::Object(config));
            }
        }
    }
    let request = CreateServiceRequest {
        name: args.name.clone(),
        description: args.description.clone(),
        tags: args.tags.iter().cloned().collect(),
        properties: args.properties.iter().cloned().collect(),
        models: model_list(&args.source.models, &args.source.model_metadata_files)?,
        inference_config,
        deployment_config,
        overwrite: args.overwrite,
    };
    let accepted = client
        .create_service(&request)
        .await
        .with_context(|| format!("cannot deploy service `{}`", args.name))?;
    for warning in &accepted.warnings {
        eprintln!("warning: {warning}");
    }
    eprintln!(
        "Deploying service {} (operation {}, revision {})",
        args.name,
        accepted.operation.id,
        accepted.operation.target_revision.unwrap_or(1)
    );
    if args.no_wait {
        return crate::render::line(&accepted.operation.id);
    }
    super::service::wait_for_operation(client, &accepted.operation.id, output).await
}

async fn register_environment(
    client: &Client,
    request: RegisterEnvironmentRequest,
) -> anyhow::Result<String> {
    let answer = client
        .register_environment(&request)
        .await
        .with_context(|| format!("cannot register environment `{}`", request.name))?;
    for warning in &answer.environment.warnings {
        eprintln!("warning: {warning}");
    }
    eprintln!(
        "Environment {} {}",
        answer.environment.id,
        if answer.created {
            "registered"
        } else {
            "unchanged"
        }
    );
    Ok(answer.environment.id)
}
