//! A test Kubernetes API server: a real HTTP server (plain HTTP on loopback,
//! with a generated kubeconfig) that speaks the Kubernetes API for what the
//! Kubernetes target uses — Deployments (with the `scale` subresource), Secrets,
//! Pods (list and watch with resourceVersions, bookmarks, 410 Gone, logs) — and
//! a fake kubelet ([`kubelet`]) that runs each pod as a local process.
//!
//! The `kube-fake-client` crate is an in-process tower mock of the client (no
//! HTTP server, no watch streams, no scale subresource), so it cannot serve a
//! Berth server running as a separate process.

pub mod kubelet;
pub mod store;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch;

use store::{Event, Kind, Refusal, Store};

/// Shared by the HTTP handlers and the kubelet.
pub struct Shared {
    store: Mutex<Store>,
    /// Bumped on every write (value: the newest resourceVersion).
    changed: watch::Sender<u64>,
    /// Bumped to end every open watch.
    disconnect: watch::Sender<u64>,
    pub kubelet: kubelet::Kubelet,
}

impl Shared {
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the store and wakes watches and the kubelet.
    pub fn write<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let (out, rv) = {
            let mut store = self.store();
            let out = f(&mut store);
            (out, store.rv)
        };
        self.changed.send_replace(rv);
        out
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// The running fake.
pub struct KubeFake {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl KubeFake {
    /// Starts the API server and its kubelet; pods run `berth_bin replica ...`.
    pub async fn start(pod_command: kubelet::PodCommand) -> Self {
        let (changed, _) = watch::channel(0);
        let (disconnect, _) = watch::channel(0);
        let dir = tempfile::tempdir().expect("temp dir");
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            changed,
            disconnect,
            kubelet: kubelet::Kubelet::new(pod_command, dir.path().join("logs")),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        kubelet::spawn(shared.clone());
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\nusers:\n- name: berth\n  user:\n    token: fake-token\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: berth\n    namespace: default\ncurrent-context: fake\n"
            ),
        )
        .expect("kubeconfig");
        Self {
            addr,
            shared,
            kubeconfig,
            _dir: dir,
            server,
        }
    }

    /// Ends every open watch (clients must resume from their resourceVersion).
    pub fn disconnect_watches(&self) {
        self.shared.disconnect.send_modify(|g| *g += 1);
    }

    /// Forgets the event history: watches from older versions get 410 Gone.
    pub fn compact(&self) {
        self.shared.write(Store::compact);
    }

    /// Objects of `kind` in `namespace` matching `selector`.
    pub fn list(&self, kind: Kind, namespace: &str, selector: Option<&str>) -> Vec<Value> {
        self.shared.store().list(kind, Some(namespace), selector)
    }
}

impl Drop for KubeFake {
    fn drop(&mut self) {
        self.server.abort();
        self.shared.kubelet.stop_all();
    }
}

/// What a request path names.
struct Target {
    kind: Kind,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match parts.as_slice() {
        ["api", "v1", rest @ ..] => rest,
        ["apis", "apps", "v1", rest @ ..] => rest,
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] => (Some((*ns).to_owned()), rest),
        rest => (None, rest),
    };
    let kind = match *rest.first()? {
        "deployments" => Kind::Deployment,
        "secrets" => Kind::Secret,
        "pods" => Kind::Pod,
        _ => return None,
    };
    Some(Target {
        kind,
        namespace,
        name: rest.get(1).map(|s| (*s).to_owned()),
        sub: rest.get(2).map(|s| (*s).to_owned()),
    })
}

fn reply(status: u16, body: &Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn refused(r: &Refusal) -> Response {
    reply(r.0, &r.status())
}

fn query(uri: &Uri) -> Vec<(String, String)> {
    form_pairs(uri.query().unwrap_or_default())
}

fn form_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let Some(t) = parse(uri.path()) else {
        return reply(
            404,
            &json!({"kind": "Status", "code": 404, "message": format!("no route {}", uri.path())}),
        );
    };
    let q = query(&uri);
    let param = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let ns = t.namespace.clone().unwrap_or_else(|| "default".into());
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return reply(
                    400,
                    &json!({"kind": "Status", "code": 400, "message": e.to_string()}),
                );
            }
        }
    };
    match (method.as_str(), t.name.as_deref(), t.sub.as_deref()) {
        ("GET", None, None) if param("watch").is_some_and(|w| w == "1" || w == "true") => {
            watch_stream(
                shared,
                t.kind,
                t.namespace,
                param("labelSelector"),
                param("resourceVersion"),
                param("allowWatchBookmarks").is_some_and(|b| b == "true"),
                param("timeoutSeconds")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(290),
            )
        }
        ("GET", None, None) => {
            let store = shared.store();
            let items = store.list(
                t.kind,
                t.namespace.as_deref(),
                param("labelSelector").as_deref(),
            );
            reply(
                200,
                &json!({"kind": format!("{}List", t.kind.name()), "apiVersion": t.kind.api_version(),
                "metadata": {"resourceVersion": store.rv.to_string()}, "items": items}),
            )
        }
        ("POST", None, None) => match shared.write(|s| s.create(t.kind, &ns, body)) {
            Ok(o) => reply(201, &o),
            Err(r) => refused(&r),
        },
        ("GET", Some(name), None) => match shared.store().get(t.kind, &ns, name) {
            Some(o) => reply(200, &o),
            None => refused(&Refusal(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", t.kind.plural()),
            )),
        },
        ("PUT", Some(name), None) => match shared.write(|s| s.replace(t.kind, &ns, name, body)) {
            Ok(o) => reply(200, &o),
            Err(r) => refused(&r),
        },
        ("PATCH", Some(name), None) => match shared.write(|s| s.patch(t.kind, &ns, name, &body)) {
            Ok(o) => reply(200, &o),
            Err(r) => refused(&r),
        },
        ("DELETE", Some(name), None) => {
            if t.kind == Kind::Pod {
                shared.kubelet.stop_pod(name);
            }
            match shared.write(|s| s.delete(t.kind, &ns, name)) {
                Ok(o) => reply(200, &o),
                Err(r) => refused(&r),
            }
        }
        (m @ ("GET" | "PUT" | "PATCH"), Some(name), Some("scale"))
            if t.kind == Kind::Deployment =>
        {
            let result = shared.write(|s| {
                if m != "GET" {
                    let replicas = body["spec"]["replicas"].clone();
                    let mut patch = json!({"spec": {"replicas": replicas}});
                    if let Some(rv) = body["metadata"]["resourceVersion"].as_str() {
                        patch["metadata"] = json!({"resourceVersion": rv});
                    }
                    s.patch(Kind::Deployment, &ns, name, &patch)?;
                }
                s.get(Kind::Deployment, &ns, name).ok_or_else(|| {
                    Refusal(404, "NotFound", format!("deployments \"{name}\" not found"))
                })
            });
            match result {
                Ok(d) => reply(
                    200,
                    &json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                    "metadata": {"name": name, "namespace": ns, "resourceVersion": d["metadata"]["resourceVersion"]},
                    "spec": {"replicas": d["spec"]["replicas"]},
                    "status": {"replicas": d["status"]["replicas"].as_u64().unwrap_or(0),
                               "selector": selector_string(&d)}}),
                ),
                Err(r) => refused(&r),
            }
        }
        ("GET", Some(name), Some("log")) if t.kind == Kind::Pod => {
            let tail = param("tailLines").and_then(|n| n.parse().ok());
            if param("follow").as_deref() == Some("true") {
                return follow_log(shared.clone(), ns, name.to_owned(), tail);
            }
            match shared.kubelet.logs(name, tail) {
                Some(text) => {
                    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], text).into_response()
                }
                None => refused(&Refusal(
                    404,
                    "NotFound",
                    format!("pods \"{name}\" not found"),
                )),
            }
        }
        _ => reply(
            405,
            &json!({"kind": "Status", "code": 405, "message": format!("{method} {} is not served by the fake", uri.path())}),
        ),
    }
}

fn selector_string(deployment: &Value) -> String {
    deployment["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn watch_line(kind_of_change: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind_of_change, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

struct WatchState {
    last: u64,
    pending: Vec<Bytes>,
    done: bool,
    changed: watch::Receiver<u64>,
    disconnect: watch::Receiver<u64>,
    next_bookmark: tokio::time::Instant,
}

#[allow(clippy::too_many_arguments)]
fn watch_stream(
    shared: Arc<Shared>,
    kind: Kind,
    namespace: Option<String>,
    selector: Option<String>,
    rv: Option<String>,
    bookmarks: bool,
    timeout_seconds: u64,
) -> Response {
    let mut changed = shared.subscribe();
    let mut disconnect = shared.disconnect.subscribe();
    disconnect.mark_unchanged();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout_seconds);
    // Without a resourceVersion: the current objects as ADDED, then changes
    // (`pending` is popped from the end).
    let mut pending: Vec<Bytes> = Vec::new();
    let start = match rv
        .as_deref()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|v| *v > 0)
    {
        Some(v) => v,
        None => {
            let store = shared.store();
            pending.extend(
                store
                    .list(kind, namespace.as_deref(), selector.as_deref())
                    .iter()
                    .rev()
                    .map(|o| watch_line("ADDED", o)),
            );
            store.rv
        }
    };
    changed.borrow_and_update();
    let state = WatchState {
        last: start,
        pending,
        done: false,
        changed,
        disconnect,
        next_bookmark: tokio::time::Instant::now() + Duration::from_millis(500),
    };
    let stream = futures_util::stream::unfold(state, move |mut st| {
        let shared = shared.clone();
        let namespace = namespace.clone();
        let selector = selector.clone();
        async move {
            if st.done {
                return None;
            }
            loop {
                if let Some(line) = st.pending.pop() {
                    return Some((Ok::<_, Infallible>(line), st));
                }
                let events: Result<Vec<Event>, Refusal> = shared.store().events_since(
                    st.last,
                    kind,
                    namespace.as_deref(),
                    selector.as_deref(),
                );
                match events {
                    Err(r) => {
                        st.done = true;
                        return Some((Ok(watch_line("ERROR", &r.status())), st));
                    }
                    Ok(events) if !events.is_empty() => {
                        st.last = events.last().map_or(st.last, |e| e.rv);
                        st.pending = events
                            .iter()
                            .rev()
                            .map(|e| watch_line(e.kind_of_change, &e.object))
                            .collect();
                        continue;
                    }
                    Ok(_) => {}
                }
                tokio::select! {
                    _ = st.changed.changed() => {}
                    _ = st.disconnect.changed() => return None,
                    _ = tokio::time::sleep_until(deadline) => return None,
                    _ = tokio::time::sleep_until(st.next_bookmark), if bookmarks => {
                        st.next_bookmark = tokio::time::Instant::now() + Duration::from_millis(500);
                        // Nothing matched after `last`, so a bookmark at `last` is exact.
                        let bookmark = json!({"kind": kind.name(), "apiVersion": kind.api_version(),
                            "metadata": {"resourceVersion": st.last.to_string()}});
                        return Some((Ok(watch_line("BOOKMARK", &bookmark)), st));
                    }
                }
            }
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// `GET .../pods/{name}/log?follow=true`: the (tail of the) log, then what the
/// pod appends, until the pod is deleted.
fn follow_log(shared: Arc<Shared>, ns: String, pod: String, tail: Option<usize>) -> Response {
    let Some(start) = shared.kubelet.logs(&pod, tail) else {
        return reply(
            404,
            &json!({"kind": "Status", "code": 404, "message": format!("pods \"{pod}\" not found")}),
        );
    };
    let whole = shared.kubelet.logs(&pod, None).unwrap_or_default().len();
    let first = Bytes::from(start);
    let state = (shared, ns, pod, whole, Some(first));
    let stream =
        futures_util::stream::unfold(state, |(shared, ns, pod, mut offset, first)| async move {
            if let Some(first) = first {
                return Some((Ok::<_, Infallible>(first), (shared, ns, pod, offset, None)));
            }
            loop {
                let text = shared.kubelet.logs(&pod, None)?;
                if text.len() > offset {
                    let chunk = Bytes::from(text[offset..].to_owned());
                    offset = text.len();
                    return Some((Ok(chunk), (shared, ns, pod, offset, None)));
                }
                shared.store().get(Kind::Pod, &ns, &pod)?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(stream),
    )
        .into_response()
}
