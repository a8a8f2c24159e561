//! The deployment config's `rollout` block (Berth extension) → [`RolloutSettings`].
//!
//! `{strategy, canaryPercent, steps, bakeSeconds | bake, maxErrorRate, maxP99Ms,
//! minRequests, autoRollback, shadow: {percent, revision}}`. Keys given are
//! merged onto `current` (the defaults on create, the serving revision's
//! settings on update); `null` for `maxP99Ms` or `shadow` removes them. Every
//! problem names the key, the value and the rule.

use berth_api::duration;
use berth_api::rollout::{RolloutSettings, RolloutStrategy, ShadowSettings};
use serde_json::{Map, Value};

/// Keys of the `rollout` block.
pub const ROLLOUT_KEYS: &[&str] = &[
    "strategy",
    "canaryPercent",
    "steps",
    "bakeSeconds",
    "bake",
    "maxErrorRate",
    "maxP99Ms",
    "minRequests",
    "autoRollback",
    "shadow",
];

/// Keys of `rollout.shadow`.
const SHADOW_KEYS: &[&str] = &["percent", "revision"];

/// Longest bake: one day.
pub const MAX_BAKE_SECONDS: u64 = 24 * 3600;

/// Reads a `rollout` value onto `current`; `problems` gets every mistake.
pub fn read(
    value: &Value,
    current: &RolloutSettings,
    problems: &mut Vec<String>,
) -> RolloutSettings {
    let mut out = current.clone();
    let Some(block) = value.as_object() else {
        problems.push(format!(
            "`rollout` must be an object like {{\"strategy\": \"canary\", \"canaryPercent\": 10, \"bake\": \"2m\"}}, not {value}"
        ));
        return out;
    };
    for key in block.keys() {
        if !ROLLOUT_KEYS.contains(&key.as_str()) {
            problems.push(format!(
                "unknown key `rollout.{key}`{}; known keys: `{}`",
                super::suggestion(key, ROLLOUT_KEYS),
                ROLLOUT_KEYS.join("`, `")
            ));
        }
    }
    let given = |key: &str| block.get(key).filter(|v| !v.is_null());
    if let Some(v) = given("strategy") {
        match v.as_str().and_then(RolloutStrategy::parse) {
            Some(s) => out.strategy = s,
            None => problems.push(format!(
                "`rollout.strategy` is {v}: it must be `rolling`, `canary`, `linear` or `blueGreen`"
            )),
        }
    }
    if let Some(n) = ranged(
        block,
        "canaryPercent",
        1,
        99,
        "a percent from 1 to 99",
        problems,
    ) {
        out.canary_percent = n as u32;
    }
    if let Some(n) = ranged(
        block,
        "steps",
        2,
        20,
        "a whole number of steps from 2 to 20",
        problems,
    ) {
        out.steps = n as u32;
    }
    match (given("bakeSeconds"), given("bake")) {
        (Some(_), Some(_)) => problems.push(
            "`rollout.bakeSeconds` and `rollout.bake` are both given: give one (`bake` takes `15s`, `2m`, `1h`)".into(),
        ),
        (Some(_), None) => {
            if let Some(n) = ranged(
                block,
                "bakeSeconds",
                0,
                MAX_BAKE_SECONDS,
                "whole seconds from 0 to 86400 (24h)",
                problems,
            ) {
                out.bake_seconds = n;
            }
        }
        (None, Some(v)) => {
            let parsed = match v {
                Value::String(text) => duration::parse_seconds(text)
                    .map_err(|e| format!("`rollout.bake`: {e}")),
                Value::Number(n) => n.as_u64().ok_or_else(|| {
                    format!("`rollout.bake` is {v}: write {}", duration::DURATION_RULE)
                }),
                other => Err(format!(
                    "`rollout.bake` is {other}: write {}",
                    duration::DURATION_RULE
                )),
            };
            match parsed {
                Ok(n) if n > MAX_BAKE_SECONDS => problems.push(format!(
                    "`rollout.bake` is {v}: a bake lasts at most 24h (86400 seconds)"
                )),
                Ok(n) => out.bake_seconds = n,
                Err(e) => problems.push(e),
            }
        }
        (None, None) => {}
    }
    if let Some(v) = given("maxErrorRate") {
        match v.as_f64() {
            Some(rate) if (0.0..=100.0).contains(&rate) => out.max_error_rate = rate,
            _ => problems.push(format!(
                "`rollout.maxErrorRate` is {v}: it is percent points of 5xx rate above the baseline's, from 0 to 100 (e.g. 1 or 0.5)"
            )),
        }
    }
    if block.get("maxP99Ms") == Some(&Value::Null) {
        out.max_p99_ms = None;
    } else if let Some(n) = ranged(
        block,
        "maxP99Ms",
        1,
        u64::MAX,
        "a whole number of milliseconds ≥ 1 (or null for no latency gate)",
        problems,
    ) {
        out.max_p99_ms = Some(n);
    }
    if let Some(n) = ranged(
        block,
        "minRequests",
        1,
        u64::MAX,
        "a whole number of requests ≥ 1",
        problems,
    ) {
        out.min_requests = n;
    }
    if let Some(v) = given("autoRollback") {
        match v.as_bool() {
            Some(b) => out.auto_rollback = b,
            None => problems.push(format!(
                "`rollout.autoRollback` is {v}: it must be true or false"
            )),
        }
    }
    match block.get("shadow") {
        None => {}
        Some(Value::Null) => out.shadow = None,
        Some(v) => out.shadow = read_shadow(v, out.shadow.as_ref(), problems),
    }
    if out.bake_seconds == 0
        && matches!(
            out.strategy,
            RolloutStrategy::Canary | RolloutStrategy::Linear
        )
    {
        problems.push(format!(
            "`rollout.bakeSeconds` is 0 for the {} strategy: each step must bake to be judged; set `rollout.bake` (e.g. \"60s\"), or use `blueGreen`/`rolling`",
            out.strategy.as_str()
        ));
    }
    out
}

fn read_shadow(
    value: &Value,
    current: Option<&ShadowSettings>,
    problems: &mut Vec<String>,
) -> Option<ShadowSettings> {
    let Some(block) = value.as_object() else {
        problems.push(format!(
            "`rollout.shadow` must be an object like {{\"percent\": 20}} (or null to stop mirroring), not {value}"
        ));
        return current.cloned();
    };
    for key in block.keys() {
        if !SHADOW_KEYS.contains(&key.as_str()) {
            problems.push(format!(
                "unknown key `rollout.shadow.{key}`{}; known keys: `percent`, `revision`",
                super::suggestion(key, SHADOW_KEYS)
            ));
        }
    }
    let percent = ranged(
        block,
        "percent",
        1,
        100,
        "a percent of requests from 1 to 100",
        problems,
    )
    .map(|n| n as u32)
    .or(current.map(|c| c.percent));
    let revision = if block.contains_key("revision") {
        if block.get("revision") == Some(&Value::Null) {
            None
        } else {
            ranged(
                block,
                "revision",
                1,
                u64::from(u32::MAX),
                "a revision number ≥ 1 (absent: the rollout's candidate)",
                problems,
            )
            .map(|n| n as u32)
        }
    } else {
        current.and_then(|c| c.revision)
    };
    match percent {
        Some(percent) => Some(ShadowSettings { revision, percent }),
        None => {
            if !block.contains_key("percent") {
                problems.push(
                    "`rollout.shadow.percent` is missing: say which share of requests to copy (1 to 100)"
                        .into(),
                );
            }
            None
        }
    }
}

/// A whole number in `min..=max` at `rollout.<key>` (or `rollout.shadow.<key>`).
fn ranged(
    block: &Map<String, Value>,
    key: &str,
    min: u64,
    max: u64,
    rule: &str,
    problems: &mut Vec<String>,
) -> Option<u64> {
    let value = block.get(key).filter(|v| !v.is_null())?;
    match value.as_u64() {
        Some(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            let prefix = if SHADOW_KEYS.contains(&key) {
                "rollout.shadow"
            } else {
                "rollout"
            };
            problems.push(format!("`{prefix}.{key}` is {value}: it must be {rule}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<RolloutSettings, String> {
        let mut problems = Vec::new();
        let out = read(&value, &RolloutSettings::default(), &mut problems);
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems.join("\n"))
        }
    }

    #[test]
    fn a_full_block_is_read() {
        let s = parse(
            json!({"strategy": "canary", "canaryPercent": 25, "bake": "2m",
            "maxErrorRate": 0.5, "maxP99Ms": 250, "minRequests": 50, "autoRollback": false,
            "shadow": {"percent": 20, "revision": 4}}),
        )
        .unwrap();
        assert_eq!(
            s,
            RolloutSettings {
                strategy: RolloutStrategy::Canary,
                canary_percent: 25,
                steps: berth_api::rollout::DEFAULT_STEPS,
                bake_seconds: 120,
                max_error_rate: 0.5,
                max_p99_ms: Some(250),
                min_requests: 50,
                auto_rollback: false,
                shadow: Some(ShadowSettings {
                    revision: Some(4),
                    percent: 20
                }),
            }
        );
        assert_eq!(
            parse(json!({"strategy": "linear", "steps": 5, "bakeSeconds": 30}))
                .unwrap()
                .bake_seconds,
            30
        );
        assert_eq!(
            parse(json!({"strategy": "blue-green", "bake": 0}))
                .unwrap()
                .strategy,
            RolloutStrategy::BlueGreen
        );
        assert_eq!(parse(json!({"bake": "1h"})).unwrap().bake_seconds, 3600);
        assert_eq!(parse(json!({})).unwrap(), RolloutSettings::default());
    }

    #[test]
    fn every_bad_value_names_key_value_and_rule() {
        for (block, needle) in [
            (
                json!({"strategy": "fast"}),
                "`rollout.strategy` is \"fast\": it must be `rolling`, `canary`, `linear` or `blueGreen`",
            ),
            (json!({"strategy": 3}), "`rollout.strategy` is 3"),
            (
                json!({"canaryPercent": 0}),
                "`rollout.canaryPercent` is 0: it must be a percent from 1 to 99",
            ),
            (
                json!({"canaryPercent": 100}),
                "`rollout.canaryPercent` is 100",
            ),
            (
                json!({"steps": 1}),
                "`rollout.steps` is 1: it must be a whole number of steps from 2 to 20",
            ),
            (json!({"steps": 21}), "`rollout.steps` is 21"),
            (
                json!({"bakeSeconds": 86401}),
                "`rollout.bakeSeconds` is 86401: it must be whole seconds from 0 to 86400",
            ),
            (
                json!({"bakeSeconds": "15s"}),
                "`rollout.bakeSeconds` is \"15s\"",
            ),
            (
                json!({"bake": "25h"}),
                "`rollout.bake` is \"25h\": a bake lasts at most 24h",
            ),
            (
                json!({"bake": "soon"}),
                "`rollout.bake`: `soon` is not a duration",
            ),
            (
                json!({"bake": true}),
                "`rollout.bake` is true: write whole seconds",
            ),
            (
                json!({"bake": "1m", "bakeSeconds": 60}),
                "both given: give one",
            ),
            (
                json!({"strategy": "canary", "bake": "0s"}),
                "`rollout.bakeSeconds` is 0 for the canary strategy",
            ),
            (
                json!({"strategy": "linear", "bakeSeconds": 0}),
                "0 for the linear strategy",
            ),
            (
                json!({"maxErrorRate": 101}),
                "`rollout.maxErrorRate` is 101: it is percent points",
            ),
            (json!({"maxErrorRate": -1}), "`rollout.maxErrorRate` is -1"),
            (
                json!({"maxP99Ms": 0}),
                "`rollout.maxP99Ms` is 0: it must be a whole number of milliseconds ≥ 1",
            ),
            (
                json!({"minRequests": 0}),
                "`rollout.minRequests` is 0: it must be a whole number of requests ≥ 1",
            ),
            (
                json!({"autoRollback": "yes"}),
                "`rollout.autoRollback` is \"yes\": it must be true or false",
            ),
            (
                json!({"shadow": {"percent": 0}}),
                "`rollout.shadow.percent` is 0: it must be a percent of requests from 1 to 100",
            ),
            (
                json!({"shadow": {"percent": 101}}),
                "`rollout.shadow.percent` is 101",
            ),
            (
                json!({"shadow": {"revision": 3}}),
                "`rollout.shadow.percent` is missing",
            ),
            (
                json!({"shadow": {"percent": 10, "revision": 0}}),
                "`rollout.shadow.revision` is 0",
            ),
            (
                json!({"shadow": {"percent": 10, "rev": 2}}),
                "unknown key `rollout.shadow.rev`",
            ),
            (json!({"shadow": 20}), "`rollout.shadow` must be an object"),
            (
                json!({"canaryPercnt": 5}),
                "unknown key `rollout.canaryPercnt` (did you mean `canaryPercent`?)",
            ),
            (json!("canary"), "`rollout` must be an object"),
        ] {
            let err = parse(block.clone()).unwrap_err();
            assert!(
                err.contains(needle),
                "{block}: `{needle}` missing in\n{err}"
            );
        }
    }

    #[test]
    fn blue_green_may_switch_without_a_bake() {
        let s = parse(json!({"strategy": "blueGreen", "bakeSeconds": 0})).unwrap();
        assert_eq!(
            (s.strategy, s.bake_seconds),
            (RolloutStrategy::BlueGreen, 0)
        );
    }

    #[test]
    fn given_keys_merge_onto_the_current_settings() {
        let current = parse(
            json!({"strategy": "canary", "canaryPercent": 20, "bake": "5m",
            "maxP99Ms": 300, "shadow": {"percent": 10, "revision": 2}}),
        )
        .unwrap();
        let mut problems = Vec::new();
        let next = read(
            &json!({"canaryPercent": 30, "shadow": {"percent": 50}}),
            &current,
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(next.canary_percent, 30);
        assert_eq!(next.bake_seconds, 300, "untouched keys keep their values");
        assert_eq!(next.max_p99_ms, Some(300));
        assert_eq!(
            next.shadow,
            Some(ShadowSettings {
                revision: Some(2),
                percent: 50
            })
        );
        let cleared = read(
            &json!({"maxP99Ms": null, "shadow": null}),
            &current,
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!((cleared.max_p99_ms, cleared.shadow), (None, None));
        // A blue-green revision without a bake cannot become a canary without one.
        let blue = parse(json!({"strategy": "blueGreen", "bake": 0})).unwrap();
        read(&json!({"strategy": "canary"}), &blue, &mut problems);
        assert!(
            problems[0].contains("0 for the canary strategy"),
            "{problems:?}"
        );
    }
}
