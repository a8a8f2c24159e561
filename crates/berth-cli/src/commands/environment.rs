//! `berth environment register|list|show|build`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_api::{BuildState, Environment, RegisterEnvironmentRequest};

use crate::args::{
    EnvironmentCommand, EnvironmentRef, GlobalArgs, ListEnvironmentsArgs, OutputFormat,
    RegisterEnvironmentArgs, UsageError,
};
use crate::client::Client;
use crate::render;

/// Runs an environment command.
pub async fn run(command: EnvironmentCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    let client = super::client(global)?;
    match command {
        EnvironmentCommand::Register(args) => register(&client, args, global.output).await,
        EnvironmentCommand::List(args) => list(&client, args, global.output).await,
        EnvironmentCommand::Show(r) => {
            let (name, version) = parse_ref(&r.reference)?;
            let env = client
                .environment(&name, version)
                .await
                .with_context(|| format!("cannot show environment `{}`", r.reference))?;
            render::environment(&env, global.output)
        }
        EnvironmentCommand::Build(r) => build(&client, r, global.output).await,
    }
}

fn parse_ref(text: &str) -> Result<(String, Option<u32>), UsageError> {
    let r = berth_api::names::ModelRef::parse(text).map_err(|e| UsageError {
        message: e.replace("model", "environment"),
        hint: None,
    })?;
    if r.alias
        .as_deref()
        .is_some_and(|a| a != berth_api::names::LATEST_ALIAS)
    {
        return Err(UsageError {
            message: format!(
                "environment reference `{text}` names an alias: environments have none"
            ),
            hint: Some("write `name`, `name:version` or `name@latest`".into()),
        });
    }
    Ok((r.name, r.version))
}

fn read(path: &Path, what: &str) -> Result<String, UsageError> {
    std::fs::read_to_string(path).map_err(|e| UsageError {
        message: format!("{what} `{}` cannot be read: {e}", path.display()),
        hint: None,
    })
}

async fn register(
    client: &Client,
    args: RegisterEnvironmentArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let mut request = RegisterEnvironmentRequest {
        name: args.name.clone(),
        python_version: args.python,
        environment_variables: args.env.into_iter().collect(),
        description: args.description,
        ..Default::default()
    };
    if let Some(path) = &args.pip_requirements {
        request.pip_requirements = Some(read(path, "requirements file")?);
    }
    if let Some(path) = &args.conda_file {
        request.conda_file = Some(read(path, "conda file")?);
    }
    if let Some(path) = &args.file {
        let text = read(path, "environment file")?;
        let mut value: serde_json::Value = serde_json::from_str(&text).map_err(|e| UsageError {
            message: format!(
                "environment file `{}` is not valid JSON: {e}",
                path.display()
            ),
            hint: None,
        })?;
        // A conda file named by the JSON is read here, next to the JSON, as Azure's SDK does.
        let conda_file = value
            .pointer("/python/condaDependenciesFile")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let has_conda = value
            .pointer("/python/condaDependencies")
            .is_some_and(|v| !v.is_null());
        if let (Some(file), false) = (conda_file, has_conda) {
            let base = path.parent().unwrap_or(Path::new("."));
            request.conda_file = Some(read(&base.join(&file), "conda file")?);
            if let Some(python) = value.get_mut("python").and_then(|p| p.as_object_mut()) {
                python.insert("condaDependenciesFile".into(), serde_json::Value::Null);
            }
        }
        request.azure_environment = Some(value);
    }
    let answer = client
        .register_environment(&request)
        .await
        .with_context(|| format!("cannot register environment `{}`", args.name))?;
    let env = &answer.environment;
    for warning in &env.warnings {
        eprintln!("warning: {warning}");
    }
    if answer.created {
        eprintln!("Registered environment {}", env.id);
    } else {
        eprintln!(
            "Environment {} is unchanged: its spec equals the newest version, which is kept",
            env.id
        );
    }
    render::environment(env, output)
}

async fn list(
    client: &Client,
    args: ListEnvironmentsArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let mut query = Vec::new();
    if let Some(name) = args.name {
        query.push(("name", name));
    }
    if args.latest {
        query.push(("latest", "true".to_owned()));
    }
    if args.curated {
        query.push(("curated", "true".to_owned()));
    }
    let list = client
        .list_environments(&query)
        .await
        .context("cannot list environments")?;
    render::environments(&list.value, output)
}

async fn build(client: &Client, r: EnvironmentRef, output: OutputFormat) -> anyhow::Result<()> {
    let (name, version) = parse_ref(&r.reference)?;
    let env = client
        .environment(&name, version)
        .await
        .with_context(|| format!("cannot build environment `{}`", r.reference))?;
    let started = Instant::now();
    let mut env = client
        .build_environment(&env.name, env.version)
        .await
        .with_context(|| format!("cannot build environment `{}`", env.id))?;
    if env.build.state != BuildState::Succeeded {
        eprintln!(
            "Building environment {} ({} package line(s), build {})",
            env.id,
            env.spec.requirements.len(),
            env.build.build_hash
        );
    }
    while matches!(
        env.build.state,
        BuildState::Running | BuildState::NotStarted
    ) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        env = client
            .environment(&env.name, Some(env.version))
            .await
            .with_context(|| format!("cannot follow the build of `{}`", env.id))?;
    }
    if env.build.state == BuildState::Failed {
        let mut message = format!(
            "building environment `{}` failed: {}",
            env.id,
            env.build.error.clone().unwrap_or_default()
        );
        if !env.build.log_tail.is_empty() {
            message.push_str("\n--- build log (last lines) ---\n");
            message.push_str(&env.build.log_tail.join("\n"));
        }
        if let Some(path) = &env.build.log_path {
            message.push_str(&format!("\n--- full log on the server: {path}"));
        }
        bail!(message);
    }
    eprintln!(
        "Environment {} is built ({:.1} s): {}",
        env.id,
        started.elapsed().as_secs_f64(),
        env.build.python_path.clone().unwrap_or_default()
    );
    render::environment(&env, output)
}

/// Used by the environment renderer.
pub fn state_name(env: &Environment) -> &'static str {
    match env.build.state {
        BuildState::NotStarted => "not built",
        BuildState::Running => "building",
        BuildState::Succeeded => "built",
        BuildState::Failed => "failed",
    }
}
