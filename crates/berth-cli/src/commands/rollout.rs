//! Progressive delivery from the command line: the `--strategy`/`--bake`/gate
//! flags → the deployment config's `rollout` block, and `berth service
//! traffic|promote|abort|mirror|stage`.

use anyhow::Context;
use berth_api::{SetMirrorRequest, SetTrafficRequest};
use serde_json::{Map, Value, json};

use crate::args::{
    MirrorArgs, OutputFormat, RolloutFlags, TrafficArgs, UpdateServiceArgs, UsageError,
};
use crate::client::Client;
use crate::render;

/// The `rollout` keys the flags set (empty when none is given).
pub fn rollout_block(f: &RolloutFlags) -> Map<String, Value> {
    let mut block = Map::new();
    let fields = [
        ("strategy", f.strategy.map(|s| json!(s.as_str()))),
        ("canaryPercent", f.canary_percent.map(|v| json!(v))),
        ("steps", f.steps.map(|v| json!(v))),
        ("bakeSeconds", f.bake.map(|v| json!(v))),
        ("maxErrorRate", f.max_error_rate.map(|v| json!(v))),
        ("maxP99Ms", f.max_p99_ms.map(|v| json!(v))),
        ("minRequests", f.min_requests.map(|v| json!(v))),
        ("autoRollback", f.auto_rollback.map(Value::Bool)),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            block.insert(key.into(), value);
        }
    }
    block
}

/// Merges the flags into `config["rollout"]` (a deployment config or a PATCH
/// body); flags win over the file's keys. Returns whether a flag was given.
pub fn merge_rollout(config: &mut Map<String, Value>, flags: &RolloutFlags) -> bool {
    let block = rollout_block(flags);
    if block.is_empty() {
        return false;
    }
    let entry = config
        .entry("rollout")
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    if let Some(existing) = entry.as_object_mut() {
        // `--bake` replaces the file's `bake` as well as its `bakeSeconds`.
        if block.contains_key("bakeSeconds") {
            existing.remove("bake");
        }
        existing.extend(block);
    }
    true
}

/// `berth service traffic`: shows the split, or sets it with `--set`.
pub async fn traffic(
    client: &Client,
    args: TrafficArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let Some(weights) = args.set else {
        let traffic = client
            .traffic(&args.name)
            .await
            .with_context(|| format!("cannot read the traffic of `{}`", args.name))?;
        return render::rollout::traffic(&traffic, output);
    };
    let request = SetTrafficRequest {
        weights,
        names: args.names.unwrap_or_default(),
    };
    let split = request
        .weights
        .iter()
        .map(|(rev, w)| format!("{rev}={w}"))
        .collect::<Vec<_>>()
        .join(",");
    let accepted = client
        .set_traffic(&args.name, &request)
        .await
        .with_context(|| format!("cannot set the traffic of `{}` to {split}", args.name))?;
    for warning in &accepted.warnings {
        eprintln!("warning: {warning}");
    }
    eprintln!(
        "Splitting traffic of {} as {split} (operation {})",
        args.name, accepted.operation.id
    );
    if args.no_wait {
        return render::line(&accepted.operation.id);
    }
    super::service::wait_for_operation(client, &accepted.operation.id, output).await?;
    if output == OutputFormat::Table
        && let Ok(traffic) = client.traffic(&args.name).await
    {
        render::rollout::traffic(&traffic, output)?;
    }
    Ok(())
}

/// `berth service promote` / `abort`.
pub async fn rollout_action(
    client: &Client,
    name: &str,
    action: &str,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let status = client
        .rollout_action(name, action)
        .await
        .with_context(|| format!("cannot {action} the rollout of `{name}`"))?;
    render::rollout::rollout(&status, output)
}

/// `berth service mirror`.
pub async fn mirror(client: &Client, args: MirrorArgs, output: OutputFormat) -> anyhow::Result<()> {
    let name = &args.name;
    if args.off {
        client
            .delete_mirror(name)
            .await
            .with_context(|| format!("cannot stop mirroring `{name}`"))?;
        eprintln!("Mirroring of {name} stopped");
        return Ok(());
    }
    if args.diffs {
        let diffs = client
            .mirror_diffs(name)
            .await
            .with_context(|| format!("cannot read the mirror diffs of `{name}`"))?;
        return render::rollout::mirror_diffs(&diffs, output);
    }
    if let (Some(revision), Some(percent)) = (args.revision, args.percent) {
        let status = client
            .set_mirror(name, &SetMirrorRequest { revision, percent })
            .await
            .with_context(|| format!("cannot mirror `{name}` to revision {revision}"))?;
        return render::rollout::mirror(&status, output);
    }
    let traffic = client
        .traffic(name)
        .await
        .with_context(|| format!("cannot read the mirror of `{name}`"))?;
    match traffic.mirror {
        Some(m) => render::rollout::mirror(&m, output),
        None if output == OutputFormat::Json => render::json(&Value::Null),
        None => render::line(&format!(
            "service {name} mirrors no requests; start with `berth service mirror -n {name} --revision N --percent 20`"
        )),
    }
}

/// `berth service stage`: the update's body written as a revision that does not serve.
pub async fn stage(
    client: &Client,
    args: UpdateServiceArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    if args.no_wait {
        return Err(UsageError {
            message:
                "`--no-wait` does not apply to `service stage`: staging writes the revision at once"
                    .into(),
            hint: None,
        }
        .into());
    }
    let patch = super::update::build_patch(client, &args).await?;
    if patch.is_empty() {
        return Err(UsageError {
            message:
                "nothing to stage: name at least one change (see `berth service stage --help`)"
                    .into(),
            hint: None,
        }
        .into());
    }
    let revision = client
        .stage_revision(&args.name, &Value::Object(patch))
        .await
        .with_context(|| format!("cannot stage a revision of `{}`", args.name))?;
    if output == OutputFormat::Json {
        return render::json(&revision);
    }
    render::line(&format!(
        "Staged revision {} of {} (not serving); give it traffic with `berth service traffic -n {} --set ...`",
        revision.revision, args.name, args.name
    ))
}

#[cfg(test)]
mod tests {
    use clap::{Parser, Subcommand};

    use super::*;
    use crate::args::ServiceCommand;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Top,
    }

    #[derive(Subcommand)]
    enum Top {
        #[command(subcommand)]
        Service(ServiceCommand),
    }

    fn service(args: &[&str]) -> Result<ServiceCommand, String> {
        let mut argv = vec!["berth", "service"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .map(|cli| match cli.command {
                Top::Service(c) => c,
            })
            .map_err(|e| e.to_string())
    }

    fn update_flags(args: &[&str]) -> Result<RolloutFlags, String> {
        let mut argv = vec!["update", "-n", "svc"];
        argv.extend_from_slice(args);
        match service(&argv)? {
            ServiceCommand::Update(u) => Ok(u.rollout),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_become_the_rollout_block() {
        let flags = update_flags(&[
            "--strategy",
            "canary",
            "--canary-percent",
            "20",
            "--bake",
            "2m",
            "--max-error-rate",
            "0.5",
            "--max-p99-ms",
            "300",
            "--min-requests",
            "40",
            "--auto-rollback",
            "false",
        ])
        .unwrap();
        assert_eq!(
            Value::Object(rollout_block(&flags)),
            json!({"strategy": "canary", "canaryPercent": 20, "bakeSeconds": 120,
                "maxErrorRate": 0.5, "maxP99Ms": 300, "minRequests": 40, "autoRollback": false})
        );
        let linear = update_flags(&["--strategy", "blue-green", "--steps", "4"]).unwrap();
        assert_eq!(
            Value::Object(rollout_block(&linear)),
            json!({"strategy": "blueGreen", "steps": 4})
        );
        assert!(rollout_block(&update_flags(&[]).unwrap()).is_empty());
    }

    #[test]
    fn flags_merge_over_the_deployment_config_file() {
        let flags = update_flags(&["--bake", "30s", "--steps", "3"]).unwrap();
        let mut config = json!({"computeType": "aks", "rollout": {"strategy": "linear", "bake": "5m", "steps": 10}})
            .as_object()
            .cloned()
            .unwrap();
        assert!(merge_rollout(&mut config, &flags));
        assert_eq!(
            config["rollout"],
            json!({"strategy": "linear", "bakeSeconds": 30, "steps": 3})
        );
        let mut untouched = Map::new();
        assert!(!merge_rollout(&mut untouched, &update_flags(&[]).unwrap()));
        assert!(untouched.is_empty());
    }

    #[test]
    fn bad_rollout_flags_are_usage_errors_naming_the_fix() {
        for (args, needle) in [
            (
                vec!["--strategy", "fast"],
                "use rolling, canary, linear or blueGreen",
            ),
            (vec!["--canary-percent", "0"], "1..=99"),
            (vec!["--canary-percent", "100"], "1..=99"),
            (vec!["--steps", "1"], "2..=20"),
            (vec!["--bake", "soon"], "`soon` is not a duration"),
            (vec!["--bake", "25h"], "a bake lasts at most 24h"),
            (
                vec!["--max-error-rate", "101"],
                "percent points from 0 to 100",
            ),
            (vec!["--max-p99-ms", "0"], "1.."),
            (vec!["--min-requests", "0"], "1.."),
            (vec!["--auto-rollback", "maybe"], "is not `true` or `false`"),
        ] {
            let err = update_flags(&args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn deploy_takes_the_rollout_flags_too() {
        let cli = Cli::try_parse_from([
            "berth",
            "service",
            "stage",
            "-n",
            "svc",
            "--strategy",
            "canary",
        ]);
        assert!(cli.is_ok());
        #[derive(Parser)]
        struct Model {
            #[command(subcommand)]
            command: crate::args::ModelCommand,
        }
        let parsed = Model::try_parse_from([
            "berth",
            "deploy",
            "-n",
            "svc",
            "--strategy",
            "linear",
            "--bake",
            "90",
        ])
        .unwrap();
        match parsed.command {
            crate::args::ModelCommand::Deploy(d) => {
                assert_eq!(
                    Value::Object(rollout_block(&d.rollout)),
                    json!({"strategy": "linear", "bakeSeconds": 90})
                );
            }
            _ => panic!("not a deploy"),
        }
    }

    #[test]
    fn traffic_set_is_checked_before_it_is_sent() {
        match service(&[
            "traffic",
            "-n",
            "svc",
            "--set",
            "3=90,4=10",
            "--names",
            "3=blue",
        ])
        .unwrap()
        {
            ServiceCommand::Traffic(t) => {
                let set = t.set.unwrap();
                assert_eq!(set.get("3"), Some(&90));
                assert_eq!(set.get("4"), Some(&10));
                assert_eq!(t.names.unwrap().get("3").map(String::as_str), Some("blue"));
            }
            other => panic!("{other:?}"),
        }
        for (set, needle) in [
            ("3=90,4=20", "sum to 110: they must sum to 100"),
            ("3=150", "a weight is a percent from 0 to 100"),
            ("x=100", "keys are revision numbers"),
            ("3=50,3=50", "listed twice"),
        ] {
            let err = service(&["traffic", "-n", "svc", "--set", set]).unwrap_err();
            assert!(err.contains(needle), "{set}: {err}");
        }
        let err = service(&["traffic", "-n", "svc", "--names", "3=blue"]).unwrap_err();
        assert!(err.contains("--set"), "{err}");
    }

    #[test]
    fn mirror_flags_fit_together() {
        assert!(service(&["mirror", "-n", "svc", "--revision", "4", "--percent", "20"]).is_ok());
        assert!(service(&["mirror", "-n", "svc", "--off"]).is_ok());
        assert!(service(&["mirror", "-n", "svc", "--diffs"]).is_ok());
        assert!(service(&["mirror", "-n", "svc"]).is_ok());
        assert!(service(&["mirror", "-n", "svc", "--revision", "4"]).is_err());
        assert!(service(&["mirror", "-n", "svc", "--revision", "4", "--percent", "0"]).is_err());
        assert!(
            service(&[
                "mirror",
                "-n",
                "svc",
                "--off",
                "--revision",
                "4",
                "--percent",
                "5"
            ])
            .is_err()
        );
    }
}
