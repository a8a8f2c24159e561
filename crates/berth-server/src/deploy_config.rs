//! Reading Azure ML `deploymentconfig.json` objects into [`DeploymentSettings`].
//!
//! Every key the reference's parser reads is accepted for every compute type (all
//! run on the local target). Unknown keys, wrong types and out-of-range values
//! are all reported at once, each naming the key, the value and the rule. Keys
//! that describe cloud resources Berth does not have are accepted with a warning.
//! The Berth `rollout` block (strategy, bake, gates, shadow) is read by [`rollout`].

use berth_api::ServiceKeys;
use berth_api::deployment::{ComputeType, DeploymentSettings};
use serde_json::{Map, Value};

mod rollout;

/// A parsed deployment config.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedDeploymentConfig {
    /// The settings.
    pub settings: DeploymentSettings,
    /// Keys given in `keys`, if any.
    pub keys: Option<PartialKeys>,
    /// Accepted but unused settings.
    pub warnings: Vec<String>,
    /// A new `sslKey` (PEM) to store under `settings.ssl.key_sha256`.
    pub ssl_key: Option<String>,
}

/// `keys.primaryKey` / `keys.secondaryKey`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartialKeys {
    /// Primary.
    pub primary: Option<String>,
    /// Secondary.
    pub secondary: Option<String>,
}

const TOP_KEYS: &[&str] = &[
    "computeType",
    "containerResourceRequirements",
    "gpuCores",
    "autoScaler",
    "dataCollection",
    "authEnabled",
    "tokenAuthEnabled",
    "appInsightsEnabled",
    "requestLogBodies",
    "scoringTimeoutMs",
    "maxConcurrentRequestsPerContainer",
    "maxQueueWaitMs",
    "maxProcessesPerContainer",
    "numReplicas",
    "keys",
    "livenessProbeRequirements",
    "namespace",
    "computeTargetName",
    "location",
    "sslEnabled",
    "sslCertificate",
    "sslKey",
    "cname",
    "dnsNameLabel",
    "vaultBaseUrl",
    "keyName",
    "keyVersion",
    "vnetName",
    "subnetName",
    "port",
    "versionName",
    "trafficPercentile",
    "description",
    "tags",
    "properties",
    "rollout",
];

/// Cloud-only settings: accepted, unused, named in a warning.
const UNUSED_KEYS: &[&str] = &[
    "location",
    "dnsNameLabel",
    "vaultBaseUrl",
    "keyName",
    "keyVersion",
    "vnetName",
    "subnetName",
    "namespace",
];

/// v1 `AksEndpoint` version keys: accepted, unused here; versions are named,
/// weighted serving revisions.
const VERSION_KEYS: &[&str] = &["versionName", "trafficPercentile"];

struct Reader<'a> {
    problems: Vec<String>,
    object: &'a Map<String, Value>,
    prefix: &'static str,
}

impl<'a> Reader<'a> {
    fn new(object: &'a Map<String, Value>, prefix: &'static str) -> Self {
        Self {
            problems: Vec::new(),
            object,
            prefix,
        }
    }

    fn name(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.object.get(key).filter(|v| !v.is_null())
    }

    fn bool(&mut self, key: &str) -> Option<bool> {
        let value = self.get(key)?;
        match value {
            Value::Bool(b) => Some(*b),
            other => {
                self.problems.push(format!(
                    "`{}` is {other}: it must be true or false",
                    self.name(key)
                ));
                None
            }
        }
    }

    /// A whole number ≥ `min`.
    fn whole(&mut self, key: &str, min: u64) -> Option<u64> {
        let value = self.get(key)?;
        match value.as_u64() {
            Some(n) if n >= min => Some(n),
            _ => {
                let rule = if min == 0 {
                    "a whole number ≥ 0".to_owned()
                } else {
                    format!("a whole number greater than zero (≥ {min})")
                };
                self.problems.push(format!(
                    "`{}` is {value}: it must be {rule}",
                    self.name(key)
                ));
                None
            }
        }
    }

    fn positive(&mut self, key: &str) -> Option<f64> {
        let value = self.get(key)?;
        match value.as_f64() {
            Some(n) if n > 0.0 && n.is_finite() => Some(n),
            _ => {
                self.problems.push(format!(
                    "`{}` is {value}: it must be a number greater than zero",
                    self.name(key)
                ));
                None
            }
        }
    }

    fn string(&mut self, key: &str) -> Option<String> {
        let value = self.get(key)?;
        match value.as_str() {
            Some(s) => Some(s.to_owned()),
            None => {
                self.problems.push(format!(
                    "`{}` is {value}: it must be a string",
                    self.name(key)
                ));
                None
            }
        }
    }

    fn object(&mut self, key: &str, known: &[&str]) -> Option<&'a Map<String, Value>> {
        let value = self.get(key)?;
        let Some(map) = value.as_object() else {
            self.problems.push(format!(
                "`{}` must be an object, not {value}",
                self.name(key)
            ));
            return None;
        };
        for inner in map.keys() {
            if !known.contains(&inner.as_str()) {
                self.problems.push(format!(
                    "unknown key `{}.{inner}`{}; known keys: `{}`",
                    self.name(key),
                    suggestion(inner, known),
                    known.join("`, `")
                ));
            }
        }
        Some(map)
    }
}

/// " (did you mean `x`?)" for a near miss.
fn suggestion(key: &str, known: &[&str]) -> String {
    let lower = key.to_ascii_lowercase();
    known
        .iter()
        .find(|k| {
            let k = k.to_ascii_lowercase();
            k == lower || edit_distance(&k, &lower) <= 2
        })
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + cost);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// Whether the config is read for a create or an update of `current`.
enum Mode<'a> {
    Create,
    Update(&'a DeploymentSettings),
}

/// Parses a deployment config; `None` gives the defaults of a local deployment.
pub fn parse(value: Option<&Value>) -> Result<ParsedDeploymentConfig, Vec<String>> {
    let empty = Map::new();
    let object = match value {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(vec![format!(
                "the deployment config must be a JSON object, not {other}"
            )]);
        }
    };
    read(object, Mode::Create, value.is_some())
}

/// Applies the deployment fields of an update to `current`, with the
/// reference's update rules (autoscale bounds need `autoscaleEnabled: true` in
/// the same change, switching auth flips both flags, requests vs limits).
pub fn apply_update(
    current: &DeploymentSettings,
    patch: &Map<String, Value>,
) -> Result<ParsedDeploymentConfig, Vec<String>> {
    read(patch, Mode::Update(current), true)
}

fn read(
    object: &Map<String, Value>,
    mode: Mode<'_>,
    given: bool,
) -> Result<ParsedDeploymentConfig, Vec<String>> {
    let mut r = Reader::new(object, "");
    let mut warnings = Vec::new();
    for key in object.keys() {
        if !TOP_KEYS.contains(&key.as_str()) {
            r.problems.push(format!(
                "unknown key `{key}` in the deployment config{}",
                suggestion(key, TOP_KEYS)
            ));
        }
    }
    let named_type = r
        .string("computeType")
        .map(|t| match t.to_ascii_lowercase().as_str() {
            "local" => Ok(ComputeType::Local),
            "aci" => Ok(ComputeType::Aci),
            "aks" | "aksendpoint" => Ok(ComputeType::Aks),
            _ => Err(t),
        });
    let mut s = match (&mode, named_type) {
        (_, Some(Err(t))) => {
            r.problems.push(format!(
                "`computeType` is `{t}`: it must be `local`, `aci` or `aks`"
            ));
            DeploymentSettings::defaults(ComputeType::Local)
        }
        (Mode::Create, Some(Ok(t))) => DeploymentSettings::defaults(t),
        (Mode::Create, None) if given && !object.is_empty() => {
            r.problems.push(
                "`computeType` is missing: set it to `local`, `aci` or `aks` (every type runs on this server)".into(),
            );
            DeploymentSettings::defaults(ComputeType::Local)
        }
        (Mode::Create, None) => DeploymentSettings::defaults(ComputeType::Local),
        (Mode::Update(current), Some(Ok(t))) if t != current.compute_type => {
            r.problems.push(format!(
                "`computeType` cannot change from {:?} to {t:?} in an update; deploy a new service instead",
                current.compute_type
            ));
            (*current).clone()
        }
        (Mode::Update(current), _) => (*current).clone(),
    };
    let compute_type = s.compute_type;
    for key in UNUSED_KEYS {
        if let Some(v) = r.get(key)
            && v != &Value::Bool(false)
        {
            warnings.push(format!(
                "`{key}` is accepted but not used: it configures a cloud resource this server does not have"
            ));
        }
    }
    for key in VERSION_KEYS {
        if r.get(key).is_some() {
            warnings.push(format!(
                "`{key}` is not used in a deployment config: name and weigh revisions with `PUT /v1/services/{{name}}/traffic` (`berth service traffic --set 3=90,4=10 --names 4=blue`, or `AksEndpoint` versions in the SDK)"
            ));
        }
    }
    if let Some(res) = r.object(
        "containerResourceRequirements",
        &["cpu", "memoryInGB", "cpuLimit", "memoryInGBLimit", "gpu"],
    ) {
        let mut inner = Reader::new(res, "containerResourceRequirements");
        let c = &mut s.container_resource_requirements;
        if let Some(v) = inner.positive("cpu") {
            c.cpu = v;
        }
        if let Some(v) = inner.positive("memoryInGB") {
            c.memory_in_gb = v;
        }
        if let Some(v) = inner.positive("cpuLimit") {
            c.cpu_limit = Some(v);
        }
        if let Some(v) = inner.positive("memoryInGBLimit") {
            c.memory_in_gb_limit = Some(v);
        }
        if let Some(v) = inner.whole("gpu", 0) {
            c.gpu = v as u32;
        }
        r.problems.append(&mut inner.problems);
    }
    if let Some(v) = r.whole("gpuCores", 0) {
        s.container_resource_requirements.gpu = v as u32;
    }
    let res = &s.container_resource_requirements;
    if let Some(limit) = res.cpu_limit
        && res.cpu > limit
    {
        r.problems.push(format!(
            "`containerResourceRequirements.cpu` ({}) is above `cpuLimit` ({limit}): the request must not exceed the limit",
            res.cpu
        ));
    }
    if let Some(limit) = res.memory_in_gb_limit
        && res.memory_in_gb > limit
    {
        r.problems.push(format!(
            "`containerResourceRequirements.memoryInGB` ({}) is above `memoryInGBLimit` ({limit}): the request must not exceed the limit",
            res.memory_in_gb
        ));
    }
    // GPUs are checked against the server's free GPUs by the routes (`Unschedulable`).
    let num_replicas = r.whole("numReplicas", 1);
    let mut enabled_in_call = None;
    if let Some(auto) = r.object(
        "autoScaler",
        &[
            "autoscaleEnabled",
            "minReplicas",
            "maxReplicas",
            "refreshPeriodInSeconds",
            "targetUtilization",
        ],
    ) {
        let mut inner = Reader::new(auto, "autoScaler");
        let enabled = inner.bool("autoscaleEnabled");
        let parts = [
            inner.whole("minReplicas", 1),
            inner.whole("maxReplicas", 1),
            inner.whole("refreshPeriodInSeconds", 1),
            inner.whole("targetUtilization", 1),
        ];
        if let Some(t) = parts[3]
            && t > 100
        {
            inner.problems.push(format!(
                "`autoScaler.targetUtilization` is {t}: it is a percentage from 1 to 100"
            ));
        }
        r.problems.append(&mut inner.problems);
        let a = &mut s.auto_scaler;
        a.min_replicas = parts[0].map_or(a.min_replicas, |v| v as u32);
        a.max_replicas = parts[1].map_or(a.max_replicas, |v| v as u32);
        a.refresh_period_in_seconds = parts[2].map_or(a.refresh_period_in_seconds, |v| v as u32);
        a.target_utilization = parts[3].map_or(a.target_utilization, |v| v as u32);
        if let Some(enabled) = enabled {
            a.autoscale_enabled = enabled;
        }
        if enabled != Some(true) && parts.iter().any(Option::is_some) {
            r.problems.push(
                "`autoScaler` bounds are given without `autoScaler.autoscaleEnabled: true` in the same change: enable autoscaling, or drop the bounds".into(),
            );
        }
        enabled_in_call = enabled;
    }
    match (enabled_in_call, num_replicas) {
        (Some(true), Some(_)) => r.problems.push(
            "`numReplicas` is given while enabling autoscaling: give one or the other".into(),
        ),
        (Some(false), None) => r.problems.push(
            "`autoScaler.autoscaleEnabled` is false but `numReplicas` is not given: say how many replicas to run".into(),
        ),
        (None, Some(_)) if s.auto_scaler.autoscale_enabled => r.problems.push(
            "`numReplicas` is given while autoscaling is enabled: set `autoScaler.autoscaleEnabled: false` in the same change, or drop `numReplicas`".into(),
        ),
        _ => {}
    }
    if s.auto_scaler.min_replicas > s.auto_scaler.max_replicas {
        r.problems.push(format!(
            "`autoScaler.minReplicas` ({}) is above `autoScaler.maxReplicas` ({})",
            s.auto_scaler.min_replicas, s.auto_scaler.max_replicas
        ));
    }
    match num_replicas {
        Some(n) => s.num_replicas = n as u32,
        // The reference autoscales an AKS service that names no replica count.
        None if matches!(mode, Mode::Create)
            && compute_type == ComputeType::Aks
            && enabled_in_call.is_none() =>
        {
            s.auto_scaler.autoscale_enabled = true;
        }
        None => {}
    }
    if let Some(dc) = r.object("dataCollection", &["storageEnabled", "eventHubEnabled"]) {
        let mut inner = Reader::new(dc, "dataCollection");
        if let Some(v) = inner.bool("storageEnabled") {
            s.data_collection.storage_enabled = v;
        }
        if let Some(v) = inner.bool("eventHubEnabled") {
            s.data_collection.event_hub_enabled = v;
        }
        r.problems.append(&mut inner.problems);
    }
    let key_flag = r.bool("authEnabled");
    let token_flag = r.bool("tokenAuthEnabled");
    if let Mode::Update(current) = &mode {
        if token_flag == Some(true) && current.auth_enabled && key_flag != Some(false) {
            r.problems.push(
                "enabling `tokenAuthEnabled` needs `authEnabled: false` in the same change: a service uses one auth mode".into(),
            );
        }
        if key_flag == Some(true) && current.token_auth_enabled && token_flag != Some(false) {
            r.problems.push(
                "enabling `authEnabled` needs `tokenAuthEnabled: false` in the same change: a service uses one auth mode".into(),
            );
        }
    }
    if let Some(v) = key_flag {
        s.auth_enabled = v;
    }
    if let Some(v) = token_flag {
        s.token_auth_enabled = v;
    }
    if key_flag == Some(true) && token_flag == Some(true) {
        r.problems.push(
            "`authEnabled` and `tokenAuthEnabled` are both true: a service uses key auth or token auth, not both".into(),
        );
    }
    if let Some(v) = r.bool("appInsightsEnabled") {
        s.app_insights_enabled = v;
    }
    if let Some(v) = r.bool("requestLogBodies") {
        s.request_log_bodies = v;
    }
    if s.request_log_bodies && !s.app_insights_enabled {
        warnings.push(
            "`requestLogBodies` has no effect while `appInsightsEnabled` is false: request logging is off".into(),
        );
    }
    if let Some(v) = r.whole("scoringTimeoutMs", 1) {
        s.scoring_timeout_ms = v;
    }
    if let Some(v) = r.whole("maxConcurrentRequestsPerContainer", 1) {
        s.max_concurrent_requests_per_container = v.min(u32::MAX as u64) as u32;
    }
    if let Some(v) = r.whole("maxQueueWaitMs", 1) {
        s.max_queue_wait_ms = v;
    }
    if let Some(v) = r.whole("maxProcessesPerContainer", 8) {
        s.max_processes_per_container = v.min(u64::from(u32::MAX)) as u32;
    }
    if let Some(probe) = r.object(
        "livenessProbeRequirements",
        &[
            "periodSeconds",
            "initialDelaySeconds",
            "timeoutSeconds",
            "successThreshold",
            "failureThreshold",
        ],
    ) {
        let mut inner = Reader::new(probe, "livenessProbeRequirements");
        let p = &mut s.liveness_probe_requirements;
        p.period_seconds = inner
            .whole("periodSeconds", 1)
            .map_or(p.period_seconds, |v| v as u32);
        p.initial_delay_seconds = inner
            .whole("initialDelaySeconds", 1)
            .map_or(p.initial_delay_seconds, |v| v as u32);
        p.timeout_seconds = inner
            .whole("timeoutSeconds", 1)
            .map_or(p.timeout_seconds, |v| v as u32);
        p.success_threshold = inner
            .whole("successThreshold", 1)
            .map_or(p.success_threshold, |v| v as u32);
        p.failure_threshold = inner
            .whole("failureThreshold", 1)
            .map_or(p.failure_threshold, |v| v as u32);
        r.problems.append(&mut inner.problems);
    }
    if let Some(ns) = r.string("namespace") {
        let valid = !ns.is_empty()
            && ns.len() <= 63
            && ns
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !ns.starts_with('-')
            && !ns.ends_with('-');
        if !valid {
            r.problems.push(format!(
                "`namespace` is `{ns}`: it must be a lowercase DNS label (letters, digits, '-', at most 63)"
            ));
        }
        s.namespace = Some(ns);
    }
    if let Some(target) = r.string("computeTargetName") {
        match berth_api::compute::check_compute_name(&target) {
            Ok(()) => s.compute_target_name = Some(target),
            Err(e) => r.problems.push(format!("`computeTargetName`: {e}")),
        }
    }
    let mut keys = None;
    if let Some(k) = r.object("keys", &["primaryKey", "secondaryKey"]) {
        let mut inner = Reader::new(k, "keys");
        let parsed = PartialKeys {
            primary: inner.string("primaryKey"),
            secondary: inner.string("secondaryKey"),
        };
        for (name, key) in [
            ("keys.primaryKey", &parsed.primary),
            ("keys.secondaryKey", &parsed.secondary),
        ] {
            if let Some(key) = key
                && (key.len() < 16 || key.len() > 256 || !key.bytes().all(|b| b.is_ascii_graphic()))
            {
                inner.problems.push(format!(
                    "`{name}` must be 16 to 256 printable ASCII characters without spaces"
                ));
            }
        }
        r.problems.append(&mut inner.problems);
        keys = Some(parsed);
    }
    for key in ["description", "tags", "properties"] {
        if matches!(mode, Mode::Create) && r.get(key).is_some() {
            warnings.push(format!(
                "`{key}` in the deployment config is not used: pass it with the service (`--description`, `--tag`, `--property`)"
            ));
        }
    }
    if let Some(port) = r.get("port") {
        match port.as_u64() {
            Some(p) if (1..=65535).contains(&p) && compute_type == ComputeType::Local => {
                s.port = Some(p as u16);
            }
            Some(p) if (1..=65535).contains(&p) => warnings.push(format!(
                "`port` ({p}) is used by local services only (`computeType: local`); this {compute_type:?} service is served by the gateway"
            )),
            _ => r.problems.push(format!(
                "`port` is {port}: it must be a whole number from 1 to 65535 (the local service's own port on 127.0.0.1)"
            )),
        }
    }
    let ssl_key = read_ssl(&mut r, &mut s);
    // Berth extension; an update without it keeps the current settings.
    match object.get("rollout") {
        None => {}
        Some(Value::Null) => s.rollout = berth_api::RolloutSettings::default(),
        Some(block) => s.rollout = rollout::read(block, &s.rollout, &mut r.problems),
    }
    if r.problems.is_empty() {
        Ok(ParsedDeploymentConfig {
            settings: s,
            keys,
            warnings,
            ssl_key,
        })
    } else {
        Err(r.problems)
    }
}

/// Why an `sslEnabled` service is refused by a server without TLS.
pub const SSL_NEEDS_TLS: &str = "`sslEnabled` needs the server to serve TLS: start it with `--tls-cert` and `--tls-key` (or BERTH_TLS_CERT / BERTH_TLS_KEY)";

/// `sslEnabled`, `sslCertificate`, `sslKey`, `cname`: checks the pair and the
/// name, updates `s.ssl`; returns a new key to store. In an update, keys not
/// given keep their current values; a new certificate needs its key.
fn read_ssl(r: &mut Reader<'_>, s: &mut DeploymentSettings) -> Option<String> {
    let enabled = r.bool("sslEnabled");
    let cert = r.string("sslCertificate");
    let key = r.string("sslKey");
    let cname = r.string("cname");
    if enabled == Some(false) {
        s.ssl = None;
        return None;
    }
    if enabled.is_none() && cert.is_none() && key.is_none() && cname.is_none() {
        return None;
    }
    let current = s.ssl.clone();
    if enabled.is_none() && current.is_none() {
        r.problems
            .push("`sslCertificate`, `sslKey` and `cname` need `\"sslEnabled\": true`".into());
        return None;
    }
    let cname = match cname.or_else(|| current.as_ref().map(|c| c.cname.clone())) {
        Some(name) if valid_cname(&name) => Some(name.to_ascii_lowercase()),
        Some(name) => {
            r.problems.push(format!(
                "`cname` `{name}` is not a host name (letters, digits, `-` and `.`, optionally starting with `*.`)"
            ));
            None
        }
        None => {
            r.problems
                .push("`sslEnabled` needs `cname`: the host name clients connect with".into());
            None
        }
    };
    let (certificate, key_sha256, new_key) = match (cert, key, current) {
        (Some(cert), Some(key), _) => match crate::tls::parse_pem_pair(&cert, &key) {
            Ok(_) => {
                let digest = crate::tls::key_digest(&key);
                (cert, digest, Some(key))
            }
            Err(e) => {
                r.problems.push(e.to_string());
                return None;
            }
        },
        (None, None, Some(current)) => (current.certificate, current.key_sha256, None),
        (None, None, None) => {
            r.problems
                .push("`sslEnabled` needs `sslCertificate` and `sslKey` (PEM text)".into());
            return None;
        }
        (Some(_), None, _) | (None, Some(_), _) => {
            r.problems
                .push("`sslCertificate` and `sslKey` go together: give both".into());
            return None;
        }
    };
    s.ssl = Some(berth_api::deployment::SslSettings {
        cname: cname?,
        certificate,
        key_sha256,
    });
    new_key
}

fn valid_cname(name: &str) -> bool {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    !rest.is_empty()
        && name.len() <= 253
        && rest.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Fills missing keys with fresh random ones (32 alphanumeric characters).
pub fn complete_keys(given: Option<PartialKeys>) -> ServiceKeys {
    let given = given.unwrap_or_default();
    ServiceKeys {
        primary_key: given.primary.unwrap_or_else(random_key),
        secondary_key: given.secondary.unwrap_or_else(random_key),
    }
}

/// A random 32-character alphanumeric key.
pub fn random_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 32];
    // getrandom failing means the OS has no entropy source; fall back loudly.
    if getrandom::fill(&mut bytes).is_err() {
        tracing::error!("the operating system gave no random bytes for a scoring key");
    }
    bytes
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn update(current: &DeploymentSettings, patch: Value) -> Result<DeploymentSettings, String> {
        apply_update(current, patch.as_object().unwrap())
            .map(|p| p.settings)
            .map_err(|p| p.join("\n"))
    }

    #[test]
    fn updates_follow_the_reference_quirks() {
        let aks = parse(Some(&json!({"computeType": "aks", "numReplicas": 2})))
            .unwrap()
            .settings;
        let err = update(&aks, json!({"autoScaler": {"maxReplicas": 4}})).unwrap_err();
        assert!(err.contains("in the same change"), "{err}");
        let scaled = update(
            &aks,
            json!({"autoScaler": {"autoscaleEnabled": true, "maxReplicas": 4}}),
        )
        .unwrap();
        assert!(scaled.auto_scaler.autoscale_enabled);
        let err = update(&scaled, json!({"numReplicas": 3})).unwrap_err();
        assert!(err.contains("autoscaleEnabled: false"), "{err}");
        let err = update(&scaled, json!({"autoScaler": {"autoscaleEnabled": false}})).unwrap_err();
        assert!(err.contains("`numReplicas` is not given"), "{err}");
        let fixed = update(
            &scaled,
            json!({"autoScaler": {"autoscaleEnabled": false}, "numReplicas": 3}),
        )
        .unwrap();
        assert_eq!(fixed.desired_replicas(), 3);
        let err = update(
            &aks,
            json!({"containerResourceRequirements": {"cpuLimit": 0.05}}),
        )
        .unwrap_err();
        assert!(err.contains("above `cpuLimit`"), "{err}");
        let err = update(&aks, json!({"computeType": "aci"})).unwrap_err();
        assert!(err.contains("cannot change"), "{err}");
        let err = update(&aks, json!({"tokenAuthEnabled": true})).unwrap_err();
        assert!(
            err.contains("`authEnabled: false` in the same change"),
            "{err}"
        );
        let timeouts = update(
            &aks,
            json!({"scoringTimeoutMs": 5000, "maxQueueWaitMs": 100}),
        )
        .unwrap();
        assert_eq!(
            (timeouts.scoring_timeout_ms, timeouts.max_queue_wait_ms),
            (5000, 100)
        );
        assert_eq!(
            timeouts.num_replicas, 2,
            "untouched fields keep their values"
        );
    }

    #[test]
    fn a_rollout_block_is_read_on_create_and_merged_on_update() {
        use berth_api::rollout::{RolloutSettings, RolloutStrategy};
        let created = parse(Some(&json!({"computeType": "aks", "numReplicas": 2,
            "rollout": {"strategy": "canary", "canaryPercent": 20, "bake": "2m", "maxP99Ms": 300}})))
        .unwrap()
        .settings;
        let r = &created.rollout;
        assert_eq!(
            (r.strategy, r.canary_percent, r.bake_seconds, r.max_p99_ms),
            (RolloutStrategy::Canary, 20, 120, Some(300))
        );
        assert_eq!(
            parse(None).unwrap().settings.rollout,
            RolloutSettings::default()
        );
        // An update without `rollout` keeps the current settings, like other settings.
        let replicas = update(&created, json!({"numReplicas": 3})).unwrap();
        assert_eq!(replicas.rollout, created.rollout);
        let merged = update(&created, json!({"rollout": {"bake": "30s"}})).unwrap();
        assert_eq!(
            (merged.rollout.strategy, merged.rollout.bake_seconds),
            (RolloutStrategy::Canary, 30)
        );
        let reset = update(&created, json!({"rollout": null})).unwrap();
        assert_eq!(reset.rollout, RolloutSettings::default());
        let err = update(&created, json!({"rollout": {"steps": 50}})).unwrap_err();
        assert!(err.contains("`rollout.steps` is 50"), "{err}");
        let err = parse(Some(
            &json!({"computeType": "aci", "rollout": {"strategy": "big-bang"}}),
        ))
        .unwrap_err()
        .join("\n");
        assert!(err.contains("`rollout.strategy` is \"big-bang\""), "{err}");
    }

    #[test]
    fn changing_only_the_rollout_is_a_live_change() {
        use berth_api::service::{InferenceSpec, ServiceSpec};
        let deployment = parse(Some(&json!({"computeType": "aks", "numReplicas": 1})))
            .unwrap()
            .settings;
        let old = ServiceSpec {
            models: vec!["m:1".into()],
            inference: InferenceSpec {
                entry_script: "score.py".into(),
                source_snapshot: "sha256:00".into(),
                source_directory_name: None,
                environment: "env:1".into(),
            },
            deployment,
        };
        let mut new = old.clone();
        new.deployment = update(
            &old.deployment,
            json!({"rollout": {"strategy": "linear", "steps": 5, "bake": "1m",
                "maxErrorRate": 2, "minRequests": 10, "autoRollback": false,
                "shadow": {"percent": 20}}}),
        )
        .unwrap();
        assert_ne!(old.deployment.rollout, new.deployment.rollout);
        assert!(!crate::domain::change::needs_new_replicas(&old, &new));
        // The same check still sees a rolling change next to it.
        new.models = vec!["m:2".into()];
        assert!(crate::domain::change::needs_new_replicas(&old, &new));
    }

    #[test]
    fn a_local_port_is_kept_and_others_are_named() {
        let local = parse(Some(&json!({"computeType": "local", "port": 8890}))).unwrap();
        assert_eq!(local.settings.port, Some(8890));
        assert!(local.warnings.is_empty(), "{:?}", local.warnings);
        let aci = parse(Some(&json!({"computeType": "aci", "port": 8890}))).unwrap();
        assert_eq!(aci.settings.port, None);
        assert!(
            aci.warnings[0].contains("local services only"),
            "{:?}",
            aci.warnings
        );
        for bad in [json!(0), json!(70000), json!("80")] {
            let err = parse(Some(&json!({"computeType": "local", "port": bad}))).unwrap_err();
            assert!(err[0].contains("from 1 to 65535"), "{err:?}");
        }
        let moved = update(&local.settings, json!({"port": 8891})).unwrap();
        assert_eq!(moved.port, Some(8891));
    }

    #[test]
    fn version_keys_point_to_the_traffic_route() {
        let parsed = parse(Some(
            &json!({"computeType": "aks", "versionName": "blue", "trafficPercentile": 20}),
        ))
        .unwrap();
        assert_eq!(parsed.warnings.len(), 2, "{:?}", parsed.warnings);
        assert!(
            parsed.warnings[0].contains("`berth service traffic --set"),
            "{:?}",
            parsed.warnings
        );
    }

    #[test]
    fn absent_config_means_one_local_replica() {
        let parsed = parse(None).unwrap();
        assert_eq!(parsed.settings.compute_type, ComputeType::Local);
        assert_eq!(parsed.settings.desired_replicas(), 1);
        assert!(!parsed.settings.auth_enabled);
    }

    #[test]
    fn the_reference_aks_example_parses() {
        let parsed = parse(Some(&json!({"computeType":"aks","autoScaler":{"autoscaleEnabled":true,"minReplicas":1,
            "maxReplicas":3,"refreshPeriodInSeconds":1,"targetUtilization":70},"dataCollection":
            {"storageEnabled":true},"authEnabled":true,"containerResourceRequirements":{"cpu":0.5,"memoryInGB":1.0}})))
        .unwrap();
        let s = parsed.settings;
        assert_eq!(s.compute_type, ComputeType::Aks);
        assert!(s.auto_scaler.autoscale_enabled);
        assert_eq!(s.auto_scaler.max_replicas, 3);
        assert!(s.data_collection.storage_enabled);
        assert_eq!(s.container_resource_requirements.cpu, 0.5);
        assert_eq!(s.scoring_timeout_ms, 60_000);
    }

    #[test]
    fn aks_without_replicas_autoscales_and_aci_has_auth_off() {
        assert!(
            parse(Some(&json!({"computeType": "AKS"})))
                .unwrap()
                .settings
                .auto_scaler
                .autoscale_enabled
        );
        let aci = parse(Some(&json!({"computeType": "aci"})))
            .unwrap()
            .settings;
        assert!(!aci.auth_enabled && !aci.auto_scaler.autoscale_enabled);
    }

    #[test]
    fn every_problem_names_key_value_and_rule() {
        let problems = parse(Some(&json!({
            "computeType": "aks", "numReplica": 2, "scoringTimeoutMs": 0,
            "containerResourceRequirements": {"cpu": 2, "cpuLimit": 1, "memoryInGb": 1},
            "autoScaler": {"minReplicas": 3}, "authEnabled": "yes",
            "livenessProbeRequirements": {"periodSeconds": -1}
        })))
        .unwrap_err()
        .join("\n");
        for needle in [
            "unknown key `numReplica` in the deployment config (did you mean `numReplicas`?)",
            "`scoringTimeoutMs` is 0: it must be a whole number greater than zero",
            "`containerResourceRequirements.cpu` (2) is above `cpuLimit` (1)",
            "unknown key `containerResourceRequirements.memoryInGb` (did you mean `memoryInGB`?)",
            "without `autoScaler.autoscaleEnabled: true`",
            "`authEnabled` is \"yes\": it must be true or false",
            "`livenessProbeRequirements.periodSeconds` is -1",
        ] {
            assert!(problems.contains(needle), "{needle} missing in\n{problems}");
        }
    }

    #[test]
    fn contradictions_are_refused() {
        let p = parse(Some(&json!({"computeType": "aks", "numReplicas": 2, "autoScaler": {"autoscaleEnabled": true}}))).unwrap_err();
        assert!(p[0].contains("one or the other"), "{p:?}");
        let p = parse(Some(
            &json!({"computeType": "aks", "authEnabled": true, "tokenAuthEnabled": true}),
        ))
        .unwrap_err();
        assert!(p[0].contains("not both"));
        let p = parse(Some(&json!({"computeType": "vm"}))).unwrap_err();
        assert!(p[0].contains("`local`, `aci` or `aks`"));
        let p = parse(Some(&json!({"numReplicas": 1}))).unwrap_err();
        assert!(p[0].contains("`computeType` is missing"));
    }

    #[test]
    fn cloud_only_keys_are_accepted_with_a_warning_and_keys_are_kept() {
        let parsed = parse(Some(
            &json!({"computeType": "aci", "location": "westeurope", "dnsNameLabel": "x",
            "keys": {"primaryKey": "p".repeat(32)}}),
        ))
        .unwrap();
        assert_eq!(parsed.warnings.len(), 2);
        let keys = complete_keys(parsed.keys);
        assert_eq!(keys.primary_key, "p".repeat(32));
        assert_eq!(keys.secondary_key.len(), 32);
    }
}
