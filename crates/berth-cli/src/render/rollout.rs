//! Printing progressive delivery: the traffic split with live figures, a
//! running rollout (step, weights, bake, gates), the mirror's figures and its
//! differing answers, and the text of a rolled-back operation.

use berth_api::{
    GateFigure, GateKind, GateVerdict, MirrorDiffList, MirrorStatus, Operation, RolloutSettings,
    RolloutStatus, RolloutStrategy, Service, Traffic, TrafficShare,
};

use super::{json, line, table};
use crate::args::OutputFormat;

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.1} ms"))
}

/// `12.5%` or `250.0 ms`, as the gate measures.
fn gate_value(gate: GateKind, value: f64) -> String {
    match gate {
        GateKind::ErrorRate => format!("{value:.2}%"),
        GateKind::P99Latency => format!("{value:.1} ms"),
    }
}

fn gate_name(gate: GateKind) -> &'static str {
    match gate {
        GateKind::ErrorRate => "error rate",
        GateKind::P99Latency => "p99 latency",
    }
}

fn verdict_name(verdict: GateVerdict) -> &'static str {
    match verdict {
        GateVerdict::Pending => "pending",
        GateVerdict::Passing => "passing",
        GateVerdict::Failed => "FAILED",
    }
}

/// `error rate: 4.10% (baseline 0.20%) vs threshold 1.20% over 57 requests: FAILED`.
pub fn gate_line(g: &GateFigure) -> String {
    let measured = g
        .measured
        .map_or_else(|| "not measured yet".into(), |v| gate_value(g.gate, v));
    let baseline = g
        .baseline
        .map(|b| format!(" (baseline {})", gate_value(g.gate, b)))
        .unwrap_or_default();
    format!(
        "{}: {measured}{baseline} vs threshold {} over {} request{}: {}",
        gate_name(g.gate),
        gate_value(g.gate, g.threshold),
        g.requests,
        if g.requests == 1 { "" } else { "s" },
        verdict_name(g.verdict)
    )
}

/// `3=90, 4=10`.
fn weights_text(r: &RolloutStatus) -> String {
    r.weights
        .iter()
        .map(|(rev, w)| format!("{rev}={w}%"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The lines that describe a rollout.
pub fn rollout_lines(r: &RolloutStatus) -> Vec<String> {
    let mut out = vec![format!(
        "{} of revision {}{} ({}), step {}/{}, weights {}",
        r.strategy.as_str(),
        r.candidate,
        r.baseline
            .map(|b| format!(" replacing {b}"))
            .unwrap_or_default(),
        r.phase,
        r.step,
        r.steps,
        weights_text(r)
    )];
    if let Some(ends) = &r.bake_ends {
        out.push(format!("bake ends {ends}"));
    }
    out.extend(r.gates.iter().map(gate_line));
    out.push(format!("operation {}", r.operation_id));
    out
}

/// The lines that describe mirroring.
pub fn mirror_lines(m: &MirrorStatus) -> Vec<String> {
    let side = |label: &str, s: &berth_api::MirrorSide| {
        format!(
            "{label} revision {}: {} requests, {} errors, p50 {}, p99 {}",
            s.revision,
            s.requests,
            s.errors,
            ms(s.p50_ms),
            ms(s.p99_ms)
        )
    };
    vec![
        format!(
            "{}% copied to revision {}: {} mirrored, {} dropped, {} differing answers",
            m.percent, m.revision, m.mirrored, m.dropped, m.differing
        ),
        side("primary", &m.primary),
        side("shadow ", &m.shadow),
    ]
}

/// `3 90% stable, 4 (blue) 10% candidate`.
pub fn traffic_shares(shares: &[TrafficShare]) -> String {
    shares
        .iter()
        .map(|s| {
            let name = s
                .name
                .as_ref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            format!("{}{name} {}% {}", s.revision, s.weight, s.role)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `canary 10% for 2m; gates: 5xx ≤ baseline + 1 points, p99 ≤ 300 ms, after 20 requests; auto-rollback`.
pub fn settings_line(r: &RolloutSettings) -> String {
    let bake = berth_api::duration::format_seconds(r.bake_seconds);
    let shape = match r.strategy {
        RolloutStrategy::Rolling => return "rolling (all at once when ready)".into(),
        RolloutStrategy::Canary => format!("canary {}% for {bake}", r.canary_percent),
        RolloutStrategy::Linear => format!("linear in {} steps of {bake}", r.steps),
        RolloutStrategy::BlueGreen => format!("blueGreen, old revision warm for {bake}"),
    };
    let p99 = r
        .max_p99_ms
        .map(|ms| format!(", p99 ≤ {ms} ms"))
        .unwrap_or_default();
    let shadow = r
        .shadow
        .as_ref()
        .map(|sh| {
            let to = sh
                .revision
                .map(|rev| format!("revision {rev}"))
                .unwrap_or_else(|| "the candidate".into());
            format!("; mirror {}% to {to}", sh.percent)
        })
        .unwrap_or_default();
    format!(
        "{shape}; gates: 5xx ≤ baseline + {} points{p99}, after {} requests; {}{shadow}",
        r.max_error_rate,
        r.min_requests,
        if r.auto_rollback {
            "auto-rollback"
        } else {
            "no auto-rollback"
        }
    )
}

/// The `service show` rows for traffic, rollout and mirror (empty when absent).
pub fn service_rows(s: &Service) -> Vec<(&'static str, String)> {
    let mut rows = vec![("rollout settings", settings_line(&s.settings.rollout))];
    // One revision at 100 % says nothing the serving revision does not.
    if s.traffic.len() > 1 || s.traffic.iter().any(|t| t.name.is_some()) {
        rows.push(("traffic", traffic_shares(&s.traffic)));
    }
    if let Some(r) = &s.rollout {
        rows.push(("rollout", rollout_lines(r).join("\n")));
    }
    if let Some(m) = &s.mirror {
        rows.push(("mirror", mirror_lines(m).join("\n")));
    }
    rows
}

/// Prints `GET /v1/services/{name}/traffic`.
pub fn traffic(t: &Traffic, format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return json(t);
    }
    let mut tab = table(&[
        "REVISION", "NAME", "WEIGHT", "REPLICAS", "REQ/S", "5XX", "P50", "P99",
    ]);
    for e in &t.revisions {
        tab.add_row(vec![
            e.revision.to_string(),
            e.name.clone().unwrap_or_else(|| "-".into()),
            format!("{}%", e.weight),
            format!("{}/{}", e.ready_replicas, e.desired_replicas),
            format!("{:.1}", e.figures.requests_per_second),
            format!("{:.2}%", e.figures.error_rate),
            ms(e.figures.p50_ms),
            ms(e.figures.p99_ms),
        ]);
    }
    line(&tab.to_string())?;
    if let Some(r) = &t.rollout {
        line("")?;
        line("Rollout:")?;
        for l in rollout_lines(r) {
            line(&format!("  {l}"))?;
        }
    }
    if let Some(m) = &t.mirror {
        line("")?;
        line("Mirror:")?;
        for l in mirror_lines(m) {
            line(&format!("  {l}"))?;
        }
    }
    Ok(())
}

/// Prints a rollout after promote or abort.
pub fn rollout(r: &RolloutStatus, format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return json(r);
    }
    line(&rollout_lines(r).join("\n"))
}

/// Prints the mirror's figures.
pub fn mirror(m: &MirrorStatus, format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return json(m);
    }
    line(&mirror_lines(m).join("\n"))
}

/// Prints the differing answer pairs.
pub fn mirror_diffs(list: &MirrorDiffList, format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return json(list);
    }
    if list.value.is_empty() {
        return line("no differing answers recorded");
    }
    for d in &list.value {
        line(&format!("{}  request {}", d.time, d.request_id))?;
        line(&format!("  request: {}", d.request))?;
        line(&format!(
            "  primary: HTTP {} {}",
            d.primary_status, d.primary_body
        ))?;
        line(&format!(
            "  shadow:  HTTP {} {}",
            d.shadow_status, d.shadow_body
        ))?;
    }
    Ok(())
}

/// The failed gates of `rollout` when it belongs to `operation_id`.
fn failed_gates(operation_id: &str, rollout: Option<&RolloutStatus>) -> Vec<String> {
    rollout
        .filter(|r| r.operation_id == operation_id)
        .map(|r| {
            r.gates
                .iter()
                .filter(|g| g.verdict == GateVerdict::Failed)
                .map(gate_line)
                .collect()
        })
        .unwrap_or_default()
}

/// Why a `RolledBack` operation ended: its error, and the failed gates of
/// that rollout (gate, measured value, threshold) as the operation stored them
/// (else as the service still shows them).
pub fn rolled_back_text(operation: &Operation, service: Option<&Service>) -> String {
    let mut text = format!(
        "{} operation {} was rolled back",
        operation.operation_type.as_str(),
        operation.id
    );
    if let Some(revision) = operation.target_revision {
        text.push_str(&format!(" (revision {revision} does not serve)"));
    }
    if let Some(e) = &operation.error {
        text.push_str(&format!(": {} ({} at `{}`)", e.message, e.code, e.step));
    }
    let status = operation
        .rollout
        .as_ref()
        .or_else(|| service.and_then(|s| s.rollout.as_ref()));
    for g in failed_gates(&operation.id, status) {
        text.push_str(&format!("\n  gate {g}"));
    }
    if let Some(s) = service {
        text.push_str(&format!(
            "\nservice {} is {:?}; serving revision: {}",
            s.name,
            s.state,
            s.serving_revision
                .map(|r| r.to_string())
                .unwrap_or_else(|| "none".into())
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::{OperationError, OperationState, OperationType};

    fn failed_gate() -> GateFigure {
        GateFigure {
            gate: GateKind::ErrorRate,
            threshold: 1.2,
            measured: Some(30.5),
            baseline: Some(0.2),
            requests: 57,
            verdict: GateVerdict::Failed,
        }
    }

    #[test]
    fn settings_read_as_a_sentence() {
        assert_eq!(
            settings_line(&RolloutSettings::default()),
            "rolling (all at once when ready)"
        );
        let canary = RolloutSettings {
            strategy: RolloutStrategy::Canary,
            bake_seconds: 120,
            max_p99_ms: Some(300),
            shadow: Some(berth_api::ShadowSettings {
                revision: None,
                percent: 20,
            }),
            ..RolloutSettings::default()
        };
        assert_eq!(
            settings_line(&canary),
            "canary 10% for 2m; gates: 5xx ≤ baseline + 1 points, p99 ≤ 300 ms, after 20 requests; auto-rollback; mirror 20% to the candidate"
        );
        let linear = RolloutSettings {
            strategy: RolloutStrategy::Linear,
            auto_rollback: false,
            ..RolloutSettings::default()
        };
        assert!(settings_line(&linear).starts_with("linear in 4 steps of 1m;"));
        assert!(settings_line(&linear).ends_with("no auto-rollback"));
    }

    #[test]
    fn gates_read_measured_against_threshold() {
        assert_eq!(
            gate_line(&failed_gate()),
            "error rate: 30.50% (baseline 0.20%) vs threshold 1.20% over 57 requests: FAILED"
        );
        let pending = GateFigure {
            gate: GateKind::P99Latency,
            threshold: 250.0,
            measured: None,
            baseline: None,
            requests: 1,
            verdict: GateVerdict::Pending,
        };
        assert_eq!(
            gate_line(&pending),
            "p99 latency: not measured yet vs threshold 250.0 ms over 1 request: pending"
        );
    }

    #[test]
    fn a_rolled_back_operation_names_gate_threshold_and_measured_value() {
        let operation = Operation {
            id: "op-1".into(),
            operation_type: OperationType::Update,
            state: OperationState::RolledBack,
            service: "svc".into(),
            target_revision: Some(4),
            created_time: "t".into(),
            end_time: Some("t".into()),
            error: Some(OperationError {
                code: "GateFailed".into(),
                step: "canary bake".into(),
                message: "error rate 30.5% above 1.2%".into(),
                output: vec![],
            }),
            rollout: None,
            events: vec![],
        };
        let rollout = RolloutStatus {
            operation_id: "op-1".into(),
            strategy: RolloutStrategy::Canary,
            candidate: 4,
            baseline: Some(3),
            step: 1,
            steps: 1,
            phase: "done".into(),
            weights: [("3".to_string(), 100)].into(),
            bake_ends: None,
            gates: vec![failed_gate()],
        };
        let text = rolled_back_text(&operation, None);
        assert!(
            text.starts_with("Update operation op-1 was rolled back (revision 4 does not serve): error rate 30.5% above 1.2% (GateFailed at `canary bake`)"),
            "{text}"
        );
        assert_eq!(
            failed_gates("op-1", Some(&rollout)),
            vec![gate_line(&failed_gate())]
        );
        assert!(failed_gates("op-2", Some(&rollout)).is_empty());
        let lines = rollout_lines(&rollout);
        assert_eq!(
            lines[0],
            "canary of revision 4 replacing 3 (done), step 1/1, weights 3=100%"
        );
        assert!(lines[1].contains("vs threshold 1.20%"), "{lines:?}");
        let shares = [
            TrafficShare {
                revision: 3,
                weight: 90,
                role: "stable".into(),
                name: None,
            },
            TrafficShare {
                revision: 4,
                weight: 10,
                role: "candidate".into(),
                name: Some("blue".into()),
            },
        ];
        assert_eq!(
            traffic_shares(&shares),
            "3 90% stable, 4 (blue) 10% candidate"
        );
    }
}
