//! Printing results: tables for people, JSON for scripts. Progressive delivery
//! (traffic, rollouts, mirror) is printed by [`rollout`].

use std::io::Write;

use berth_api::{Environment, Event, Model, Revision, Service, Webhook};
use comfy_table::{Table, presets};
use serde::Serialize;

use crate::args::OutputFormat;

pub mod rollout;

/// Prints `value` as pretty JSON.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Prints a line (results only; progress goes to stderr).
pub fn line(text: &str) -> anyhow::Result<()> {
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(header.iter().map(|h| h.to_string()));
    table
}

fn key_values(map: &std::collections::BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Human size: `12.3 MiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Prints models as a table or JSON.
pub fn models(models: &[Model], format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return json(&models);
    }
    let mut t = table(&[
        "NAME",
        "VERSION",
        "KIND",
        "SIZE",
        "FRAMEWORK",
        "TAGS",
        "ALIASES",
        "CREATED",
    ]);
    for m in models {
        let own: std::collections::BTreeMap<String, u32> = m
            .aliases
            .iter()
            .filter(|(_, v)| **v == m.version)
            .map(|(a, v)| (a.clone(), *v))
            .collect();
        t.add_row(vec![
            m.name.clone(),
            m.version.to_string(),
            m.kind.as_str().to_owned(),
            size(m.size),
            m.framework.clone().unwrap_or_default(),
            key_values(&m.tags),
            own.keys().cloned().collect::<Vec<_>>().join(", "),
            m.created_time.clone(),
        ]);
    }
    line(&t.to_string())
}

/// `champion → 7, canary → 8`.
pub fn aliases_line(aliases: &std::collections::BTreeMap<String, u32>) -> String {
    aliases
        .iter()
        .map(|(a, v)| format!("{a} → {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `m@champion → 7 (auto), update available: m@champion → 8`.
pub fn follows_line(follows: &[berth_api::Follow]) -> String {
    follows
        .iter()
        .map(|f| {
            let mut text = format!("{} → {} ({})", f.reference, f.version, f.policy.as_str());
            if let Some(v) = f.pending {
                text.push_str(&format!(", rolling out: {} → {v}", f.reference));
            }
            if let Some(v) = f.rejected {
                text.push_str(&format!(
                    ", rejected: {}:{v} failed or was rolled back here; not retried until the alias moves",
                    f.reference.split('@').next().unwrap_or_default()
                ));
            }
            if let Some(v) = f.available {
                text.push_str(&format!(", update available: {} → {v}", f.reference));
            }
            text
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One line per follower of a registration or alias move: what happens to it.
pub fn follower_plans(plans: &[berth_api::FollowerPlan]) -> Vec<String> {
    use berth_api::FollowerAction as A;
    plans
        .iter()
        .map(|p| {
            let from = p.from.map_or_else(|| "none".to_owned(), |v| v.to_string());
            let head = format!("{} follows {} ({from} → {})", p.service, p.reference, p.to);
            let what = match p.action {
                A::AutoRollout => format!(
                    "automatic rollout started (operation {})",
                    p.operation.as_deref().unwrap_or("?")
                ),
                A::Queued => "busy: the rollout is queued and starts when its operation ends".into(),
                A::UpdateAvailable => format!(
                    "update available (followPolicy manual): berth service update -n {} --follow",
                    p.service
                ),
                A::Rejected => format!(
                    "rejected: version {} failed or was rolled back on this service; move the alias to another version to retry",
                    p.to
                ),
                A::UpToDate => "up to date".into(),
                A::Failed => format!(
                    "the rollout could not start: {}",
                    p.message.as_deref().unwrap_or("unknown reason")
                ),
            };
            format!("{head}: {what}")
        })
        .collect()
}

/// Prints one model with its files.
pub fn model(m: &Model, format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return json(m);
    }
    let mut t = table(&["FIELD", "VALUE"]);
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let rows = [
        ("id", m.id.clone()),
        ("kind", m.kind.as_str().to_owned()),
        ("asset", m.asset_name.clone()),
        (
            "size",
            format!(
                "{} ({} bytes, {} files)",
                size(m.size),
                m.size,
                m.file_count
            ),
        ),
        ("digest", m.content_digest.clone()),
        ("description", opt(&m.description)),
        ("framework", opt(&m.framework)),
        ("framework version", opt(&m.framework_version)),
        ("experiment", opt(&m.experiment_name)),
        ("run", opt(&m.run_id)),
        ("tags", key_values(&m.tags)),
        ("properties", key_values(&m.properties)),
        ("created", m.created_time.clone()),
        ("used by", m.used_by.join(", ")),
        ("aliases", aliases_line(&m.aliases)),
    ];
    for (k, v) in rows {
        t.add_row(vec![k.to_owned(), v]);
    }
    line(&t.to_string())?;
    if let Some(files) = &m.files
        && m.kind == berth_api::ModelKind::Folder
    {
        let mut ft = table(&["FILE", "SIZE", "DIGEST"]);
        for f in files {
            ft.add_row(vec![f.path.clone(), size(f.size), f.digest.clone()]);
        }
        line("")?;
        line(&ft.to_string())?;
    }
    Ok(())
}

/// Prints environments as a table or JSON.
pub fn environments(list: &[Environment], format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return json(&list);
    }
    let mut t = table(&["NAME", "VERSION", "PYTHON", "PACKAGES", "BUILD", "CREATED"]);
    for e in list {
        t.add_row(vec![
            e.name.clone(),
            e.version.to_string(),
            e.spec
                .python_version
                .clone()
                .unwrap_or_else(|| "default".into()),
            e.spec.requirements.len().to_string(),
            crate::commands::environment::state_name(e).to_owned(),
            e.created_time.clone(),
        ]);
    }
    line(&t.to_string())
}

/// Prints one environment.
pub fn environment(e: &Environment, format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return json(e);
    }
    let mut t = table(&["FIELD", "VALUE"]);
    let rows = [
        ("id", e.id.clone()),
        (
            "python",
            e.spec
                .requested_python_version
                .clone()
                .or_else(|| e.spec.python_version.clone())
                .unwrap_or_else(|| "server default".into()),
        ),
        ("requirements", e.spec.requirements.join("\n")),
        ("variables", key_values(&e.spec.environment_variables)),
        (
            "interpreter",
            e.spec.interpreter_path.clone().unwrap_or_default(),
        ),
        ("description", e.description.clone().unwrap_or_default()),
        ("created", e.created_time.clone()),
        (
            "build",
            crate::commands::environment::state_name(e).to_owned(),
        ),
        ("build hash", e.build.build_hash.clone()),
        (
            "python path",
            e.build.python_path.clone().unwrap_or_default(),
        ),
        (
            "python version",
            e.build.python_full_version.clone().unwrap_or_default(),
        ),
        (
            "python resolved to",
            e.build.base_python.clone().unwrap_or_default(),
        ),
        (
            "python warning",
            e.build.python_warning.clone().unwrap_or_default(),
        ),
        ("installer", e.build.installer.clone().unwrap_or_default()),
        ("build error", e.build.error.clone().unwrap_or_default()),
        ("warnings", e.warnings.join("\n")),
    ];
    for (k, v) in rows {
        if !v.is_empty() || matches!(k, "id" | "build") {
            t.add_row(vec![k.to_owned(), v]);
        }
    }
    line(&t.to_string())
}

/// Prints services as a table or JSON.
pub fn services(list: &[Service], format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return json(&list);
    }
    let mut t = table(&[
        "NAME",
        "STATE",
        "REVISION",
        "REPLICAS",
        "MODELS",
        "SCORING URI",
    ]);
    for s in list {
        t.add_row(vec![
            s.name.clone(),
            format!("{:?}", s.state),
            s.serving_revision
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into()),
            format!(
                "{}/{}",
                s.deployment_status.available_replicas, s.deployment_status.desired_replicas
            ),
            s.models.join(", "),
            s.scoring_uri.clone().unwrap_or_default(),
        ]);
    }
    line(&t.to_string())
}

/// "2 ready of 3 (3 running, 1 restart)".
fn replicas_line(s: &Service) -> String {
    let st = &s.deployment_status;
    let mut out = format!("{} ready of {}", st.available_replicas, st.desired_replicas);
    if st.current_replicas != st.available_replicas || st.restarts > 0 {
        out.push_str(&format!(
            " ({} running, {} restart{})",
            st.current_replicas,
            st.restarts,
            if st.restarts == 1 { "" } else { "s" }
        ));
    }
    out
}

/// "1–5 replicas, target 70%, now 42%", or empty without autoscale.
fn autoscale_line(s: &Service) -> String {
    let a = &s.settings.auto_scaler;
    if !a.autoscale_enabled {
        return String::new();
    }
    let mut out = format!(
        "{}–{} replicas, target {}%, refresh {} s",
        a.min_replicas, a.max_replicas, a.target_utilization, a.refresh_period_in_seconds
    );
    if let Some(u) = s.deployment_status.utilization {
        out.push_str(&format!(", now {u:.0}%"));
    }
    out
}

/// Prints one service.
pub fn service(s: &Service, format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return json(s);
    }
    let mut t = table(&["FIELD", "VALUE"]);
    let d = &s.settings;
    let rows = [
        ("name", s.name.clone()),
        ("state", format!("{:?}", s.state)),
        (
            "serving revision",
            s.serving_revision
                .map(|r| r.to_string())
                .unwrap_or_else(|| "none".into()),
        ),
        ("latest revision", s.latest_revision.to_string()),
        ("replicas", replicas_line(s)),
        (
            "replica issue",
            s.deployment_status.reason.clone().unwrap_or_default(),
        ),
        ("autoscale", autoscale_line(s)),
        (
            "last scaling",
            s.deployment_status
                .last_scaling
                .as_ref()
                .map(|d| {
                    format!(
                        "{} → {} at {}{}: {}",
                        d.from,
                        d.to,
                        d.time,
                        if d.applied { "" } else { " (failed)" },
                        d.reason
                    )
                })
                .unwrap_or_default(),
        ),
        ("models", s.models.join(", ")),
        ("follows", follows_line(&s.follows)),
        ("environment", s.environment.clone()),
        ("entry script", s.entry_script.clone()),
        ("scoring uri", s.scoring_uri.clone().unwrap_or_default()),
        ("swagger uri", s.swagger_uri.clone().unwrap_or_default()),
        ("compute type", format!("{:?}", d.compute_type)),
        (
            "auth",
            if d.auth_enabled {
                "key".into()
            } else if d.token_auth_enabled {
                "token".into()
            } else {
                "none".into()
            },
        ),
        ("scoring timeout", format!("{} ms", d.scoring_timeout_ms)),
        (
            "queue",
            format!(
                "{} per replica, wait {} ms",
                d.max_concurrent_requests_per_container, d.max_queue_wait_ms
            ),
        ),
        ("description", s.description.clone().unwrap_or_default()),
        ("tags", key_values(&s.tags)),
        ("operation", s.operation_id.clone().unwrap_or_default()),
        (
            "error",
            s.error
                .as_ref()
                .map(|e| format!("{} at `{}`: {}", e.code, e.step, e.message))
                .unwrap_or_default(),
        ),
    ];
    for (k, v) in rows
        .into_iter()
        .chain(rollout::service_rows(s))
        .chain(resource_rows(s))
    {
        if !v.is_empty() {
            t.add_row(vec![k.to_owned(), v]);
        }
    }
    line(&t.to_string())
}

/// The `resources` rows of `service show`: the requested values and what each
/// is mapped to under the server's enforcement mode.
fn resource_rows(s: &Service) -> Vec<(&'static str, String)> {
    let Some(r) = &s.resources else {
        return Vec::new();
    };
    let c = &s.settings.container_resource_requirements;
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    vec![
        ("resource enforcement", r.enforcement.as_str().to_owned()),
        ("cpu", format!("{} → {}", c.cpu, r.cpu)),
        (
            "cpu limit",
            format!("{} → {}", opt(c.cpu_limit), r.cpu_limit),
        ),
        ("memory (GB)", format!("{} → {}", c.memory_in_gb, r.memory)),
        (
            "memory limit (GB)",
            format!("{} → {}", opt(c.memory_in_gb_limit), r.memory_limit),
        ),
        ("gpu", format!("{} → {}", c.gpu, r.gpu)),
        ("gpu ids", r.gpu_ids.join(" ")),
        (
            "max processes",
            format!(
                "{} → {}",
                s.settings.max_processes_per_container, r.processes
            ),
        ),
        ("isolation", r.isolation.clone()),
        (
            "last limit kill",
            r.last_limit_kill
                .as_ref()
                .map(|k| format!("{} r{}/{}: {}", k.time, k.revision, k.replica, k.reason))
                .unwrap_or_default(),
        ),
    ]
}

/// Prints revisions.
pub fn revisions(list: &[Revision], format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return json(&list);
    }
    let mut t = table(&[
        "REVISION",
        "SERVING",
        "MODELS",
        "ENTRY SCRIPT",
        "ENVIRONMENT",
        "REPLICAS",
        "CREATED",
    ]);
    for r in list {
        t.add_row(vec![
            r.revision.to_string(),
            if r.serving { "*".into() } else { String::new() },
            r.spec.models.join(", "),
            r.spec.inference.entry_script.clone(),
            r.spec.inference.environment.clone(),
            r.spec.deployment.desired_replicas().to_string(),
            r.created_time.clone(),
        ]);
    }
    line(&t.to_string())
}

/// Appends `path: old → new` lines for every leaf that differs.
pub fn diff_values(
    path: &str,
    a: &serde_json::Value,
    b: &serde_json::Value,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                diff_values(
                    &child,
                    x.get(key).unwrap_or(&Value::Null),
                    y.get(key).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        _ if a != b => out.push(format!("{path}: {a} → {b}")),
        _ => {}
    }
}

/// One event as a line: `id time type service [operation] details`.
pub fn event_line(e: &Event) -> String {
    let mut text = format!(
        "{:>6}  {}  {:<22} {}",
        e.id,
        e.time,
        e.event_type,
        e.service.as_deref().unwrap_or("-")
    );
    if let Some(details) = e.data.as_object().filter(|d| !d.is_empty()) {
        let parts: Vec<String> = details
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| match v.as_str() {
                Some(s) => format!("{k}={s}"),
                None => format!("{k}={v}"),
            })
            .collect();
        text.push_str("  ");
        text.push_str(&parts.join(" "));
    }
    if let Some(op) = &e.operation {
        text.push_str(&format!("  (operation {op})"));
    }
    text
}

/// Prints events.
pub fn events(list: &[Event], format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return json(&serde_json::json!({ "events": list }));
    }
    for e in list {
        line(&event_line(e))?;
    }
    Ok(())
}

/// Prints webhooks (never secrets: the server does not return them).
pub fn webhooks(list: &[Webhook], format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return json(&serde_json::json!({ "webhooks": list }));
    }
    let mut t = table(&[
        "ID",
        "URL",
        "EVENTS",
        "LAST DELIVERY",
        "FAILURES",
        "LAST ERROR",
    ]);
    for w in list {
        t.add_row(vec![
            w.id.clone(),
            w.url.clone(),
            w.events.join(","),
            match (&w.last_delivery_status, &w.last_delivery_time) {
                (Some(status), Some(time)) => format!("{status} {time}"),
                _ => "-".into(),
            },
            w.consecutive_failures.to_string(),
            w.last_error.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    line(&t.to_string())
}

#[cfg(test)]
mod tests {
    use super::size;

    #[test]
    fn diffs_name_every_changed_leaf() {
        let mut out = Vec::new();
        super::diff_values(
            "",
            &serde_json::json!({"models": ["m:1"], "deployment": {"numReplicas": 1, "x": 2}}),
            &serde_json::json!({"models": ["m:2"], "deployment": {"numReplicas": 3, "x": 2}}),
            &mut out,
        );
        assert_eq!(
            out,
            vec![
                "deployment.numReplicas: 1 → 3",
                "models: [\"m:1\"] → [\"m:2\"]"
            ]
        );
    }

    #[test]
    fn follows_and_follower_plans_say_what_happens() {
        use berth_api::{Follow, FollowPolicy, FollowerAction, FollowerPlan};
        let follow = |available, pending, rejected| Follow {
            reference: "m@champion".into(),
            version: 7,
            policy: FollowPolicy::Manual,
            available,
            pending,
            rejected,
        };
        assert_eq!(
            super::follows_line(&[follow(None, None, None)]),
            "m@champion → 7 (manual)"
        );
        assert_eq!(
            super::follows_line(&[follow(Some(8), None, None)]),
            "m@champion → 7 (manual), update available: m@champion → 8"
        );
        let rejected = super::follows_line(&[follow(None, None, Some(8))]);
        assert!(rejected.contains("rejected: m:8"), "{rejected}");
        let plan = |action, operation: Option<&str>| FollowerPlan {
            service: "svc".into(),
            reference: "m@champion".into(),
            from: Some(7),
            to: 8,
            action,
            operation: operation.map(str::to_owned),
            message: None,
        };
        let lines = super::follower_plans(&[
            plan(FollowerAction::AutoRollout, Some("op-1")),
            plan(FollowerAction::Queued, None),
            plan(FollowerAction::UpdateAvailable, None),
            plan(FollowerAction::Rejected, None),
        ]);
        assert_eq!(
            lines[0],
            "svc follows m@champion (7 → 8): automatic rollout started (operation op-1)"
        );
        assert!(lines[1].contains("queued"), "{}", lines[1]);
        assert!(
            lines[2].contains("berth service update -n svc --follow"),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].contains("another version to retry"),
            "{}",
            lines[3]
        );
    }

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(size(12), "12 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 << 30), "3.0 GiB");
    }
}
