//! The fake API server's object store: Deployments, Secrets and Pods as JSON
//! with resourceVersions, a bounded event history for watches (older versions
//! answer 410 Gone), and the write rules of the real one (409 on creating an
//! existing name or on a stale resourceVersion).

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Kinds the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Deployment,
    Secret,
    Pod,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::Secret => "Secret",
            Self::Pod => "Pod",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Self::Deployment => "apps/v1",
            Self::Secret | Self::Pod => "v1",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Self::Deployment => "deployments",
            Self::Secret => "secrets",
            Self::Pod => "pods",
        }
    }
}

/// One change, as a watch sends it.
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub kind: Kind,
    pub namespace: String,
    pub kind_of_change: &'static str,
    pub object: Value,
}

/// Why a write was refused: HTTP status, reason, message.
#[derive(Debug, Clone)]
pub struct Refusal(pub u16, pub &'static str, pub String);

impl Refusal {
    /// The `Status` object the real API server answers with.
    pub fn status(&self) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": self.2, "reason": self.1, "code": self.0})
    }
}

type Key = (Kind, String, String);

/// Every object and the recent history.
#[derive(Default)]
pub struct Store {
    pub rv: u64,
    objects: BTreeMap<Key, Value>,
    history: Vec<Event>,
    /// Watches from a resourceVersion below this get 410 Gone.
    pub compacted: u64,
    next_uid: u64,
}

/// Whether `object`'s labels match `selector` (`k=v,k2=v2`, equality only).
pub fn matches(object: &Value, selector: Option<&str>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    let labels = &object["metadata"]["labels"];
    selector.split(',').all(|term| match term.split_once('=') {
        Some((k, v)) => labels[k.trim_end_matches('=')].as_str() == Some(v.trim_start_matches('=')),
        None => labels.get(term).is_some(),
    })
}

/// RFC 7386 JSON merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

impl Store {
    fn bump(&mut self, kind: Kind, namespace: &str, change: &'static str, object: &mut Value) {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.history.push(Event {
            rv: self.rv,
            kind,
            namespace: namespace.to_owned(),
            kind_of_change: change,
            object: object.clone(),
        });
    }

    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        self.objects
            .get(&(kind, namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    pub fn list(&self, kind: Kind, namespace: Option<&str>, selector: Option<&str>) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((k, ns, _), o)| {
                *k == kind && namespace.is_none_or(|n| n == ns) && matches(o, selector)
            })
            .map(|(_, o)| o.clone())
            .collect()
    }

    pub fn create(
        &mut self,
        kind: Kind,
        namespace: &str,
        mut object: Value,
    ) -> Result<Value, Refusal> {
        let Some(name) = object["metadata"]["name"].as_str().map(str::to_owned) else {
            return Err(Refusal(
                422,
                "Invalid",
                "metadata.name: Required value".into(),
            ));
        };
        let key = (kind, namespace.to_owned(), name.clone());
        if self.objects.contains_key(&key) {
            return Err(Refusal(
                409,
                "AlreadyExists",
                format!(
                    "{}.{} \"{name}\" already exists",
                    kind.plural(),
                    kind.api_version()
                ),
            ));
        }
        self.next_uid += 1;
        object["apiVersion"] = json!(kind.api_version());
        object["kind"] = json!(kind.name());
        object["metadata"]["namespace"] = json!(namespace);
        object["metadata"]["uid"] = json!(format!("00000000-0000-0000-0000-{:012}", self.next_uid));
        object["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        object["metadata"]["generation"] = json!(1);
        self.bump(kind, namespace, "ADDED", &mut object);
        self.objects.insert(key, object.clone());
        Ok(object)
    }

    /// Replaces (`PUT`): refused when the body's resourceVersion is stale.
    pub fn replace(
        &mut self,
        kind: Kind,
        namespace: &str,
        name: &str,
        mut object: Value,
    ) -> Result<Value, Refusal> {
        let key = (kind, namespace.to_owned(), name.to_owned());
        let Some(current) = self.objects.get(&key) else {
            return Err(not_found(kind, name));
        };
        if let Some(rv) = object["metadata"]["resourceVersion"].as_str()
            && Some(rv) != current["metadata"]["resourceVersion"].as_str()
        {
            return Err(conflict(kind, name));
        }
        for field in ["uid", "creationTimestamp", "namespace", "name"] {
            object["metadata"][field] = current["metadata"][field].clone();
        }
        object["apiVersion"] = json!(kind.api_version());
        object["kind"] = json!(kind.name());
        // The generation counts spec changes only (status writes leave it).
        let generation = current["metadata"]["generation"].as_u64().unwrap_or(1);
        let spec_changed = object.get("spec") != current.get("spec");
        object["metadata"]["generation"] = json!(generation + u64::from(spec_changed));
        self.bump(kind, namespace, "MODIFIED", &mut object);
        self.objects.insert(key, object.clone());
        Ok(object)
    }

    /// Merge patch (also used for strategic-merge and apply bodies, which the
    /// objects Berth sends reduce to).
    pub fn patch(
        &mut self,
        kind: Kind,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, Refusal> {
        let Some(mut object) = self.get(kind, namespace, name) else {
            return Err(not_found(kind, name));
        };
        if let Some(rv) = patch["metadata"]["resourceVersion"].as_str()
            && Some(rv) != object["metadata"]["resourceVersion"].as_str()
        {
            return Err(conflict(kind, name));
        }
        let mut patch = patch.clone();
        if let Some(m) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        merge(&mut object, &patch);
        self.replace(kind, namespace, name, object)
    }

    pub fn delete(&mut self, kind: Kind, namespace: &str, name: &str) -> Result<Value, Refusal> {
        let key = (kind, namespace.to_owned(), name.to_owned());
        let Some(mut object) = self.objects.remove(&key) else {
            return Err(not_found(kind, name));
        };
        self.bump(kind, namespace, "DELETED", &mut object);
        Ok(object)
    }

    /// Events after `rv` of `kind` in `namespace` matching `selector`, or 410
    /// when `rv` is older than the kept history.
    pub fn events_since(
        &self,
        rv: u64,
        kind: Kind,
        namespace: Option<&str>,
        selector: Option<&str>,
    ) -> Result<Vec<Event>, Refusal> {
        if rv < self.compacted {
            return Err(Refusal(
                410,
                "Expired",
                format!("too old resource version: {rv} ({})", self.compacted),
            ));
        }
        Ok(self
            .history
            .iter()
            .filter(|e| {
                e.rv > rv
                    && e.kind == kind
                    && namespace.is_none_or(|n| n == e.namespace)
                    && matches(&e.object, selector)
            })
            .cloned()
            .collect())
    }

    /// Forgets the history up to now: older watches get 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }
}

fn not_found(kind: Kind, name: &str) -> Refusal {
    Refusal(
        404,
        "NotFound",
        format!(
            "{}.{} \"{name}\" not found",
            kind.plural(),
            kind.api_version()
        ),
    )
}

fn conflict(kind: Kind, name: &str) -> Refusal {
    Refusal(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            kind.plural()
        ),
    )
}
