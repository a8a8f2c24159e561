//! Supervisor tests against the real `python3` running the real embedded shim.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tempfile::TempDir;

use super::*;
use crate::logs::Stream;
use crate::protocol::{InputMode, ScoreRequest};
use crate::testing::{fixture, spec, spec_for_source};

fn post(body: impl Into<Bytes>) -> ScoreRequest {
    ScoreRequest {
        method: "POST".into(),
        request_id: "test".into(),
        headers: vec![("content-type".into(), Bytes::from_static(b"text/plain"))],
        body: body.into(),
        ..ScoreRequest::default()
    }
}

async fn start(case: &str, tmp: &TempDir) -> Worker {
    match spawn(spec(case, tmp)).await {
        Ok(worker) => worker,
        Err(err) => panic!("spawning {case}: {err}\noutput:\n{}", err.output()),
    }
}

fn fake_python(tmp: &TempDir, script: &str) -> PathBuf {
    let path = tmp.path().join("fake-python");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn echo_worker_lifecycle() {
    let tmp = TempDir::new().unwrap();
    let worker = start("echo", &tmp).await;
    assert_eq!(worker.hello().protocol_version, PROTOCOL_VERSION);
    assert_eq!(worker.hello().pid, worker.pid());
    assert_eq!(worker.hello().shim_version, crate::SHIM_VERSION);
    assert_eq!(worker.init().input_mode, InputMode::Raw);
    assert!(worker.exit_status().is_none());

    let result = worker.conn().score(post("hello")).await.unwrap();
    assert_eq!(result.status, 200);
    assert_eq!(result.body, Bytes::from_static(b"\"hello\""));
    assert_eq!(
        result.headers,
        vec![(
            "content-type".to_string(),
            Bytes::from_static(b"application/json")
        )]
    );
    assert!(result.run_returned() && !result.run_failed());

    worker.conn().ping().await.unwrap();
    let swagger = worker.conn().swagger("9").await.unwrap();
    assert_eq!(swagger.status, 404);

    let socket_dir = tmp.path().join("s");
    assert_eq!(
        std::fs::metadata(&socket_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::read_dir(&socket_dir).unwrap().count(),
        0,
        "socket file removed after accept"
    );

    let stopped = worker.shutdown(Duration::from_secs(10)).await.unwrap();
    assert!(!stopped.forced);
    assert_eq!(stopped.status.code(), Some(0));
    assert_eq!(worker.exit_status().and_then(|s| s.code()), Some(0));
    assert!(worker.conn().score(post("late")).await.is_err());
}

#[tokio::test]
async fn concurrent_callers_share_one_worker() {
    let tmp = TempDir::new().unwrap();
    let worker = start("echo", &tmp).await;
    let mut tasks = Vec::new();
    for task in 0..64 {
        let conn = worker.conn().clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let text = format!("{task}/{i}");
                let result = conn.score(post(text.clone())).await.unwrap();
                assert_eq!(result.body, Bytes::from(format!("\"{text}\"")));
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(worker.conn().in_flight(), 0);
    worker.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test]
async fn shutdown_answers_requests_already_sent() {
    let tmp = TempDir::new().unwrap();
    let worker = start("echo", &tmp).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let conn = worker.conn().clone();
        tasks.push(tokio::spawn(async move {
            conn.score(post(format!("{i}"))).await
        }));
    }
    while worker.conn().in_flight() < 20 {
        tokio::task::yield_now().await;
    }
    let stopped = worker.shutdown(Duration::from_secs(10)).await.unwrap();
    assert_eq!((stopped.status.code(), stopped.forced), (Some(0), false));
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().status, 200);
    }
}

#[tokio::test]
async fn shutdown_kills_after_the_grace_period() {
    let tmp = TempDir::new().unwrap();
    let source =
        "import time\ndef init():\n    pass\ndef run(data):\n    time.sleep(60)\n    return data\n";
    let worker = spawn(spec_for_source(source, &tmp)).await.unwrap();
    let conn = worker.conn().clone();
    let in_flight = tokio::spawn(async move { conn.score(post("slow")).await });
    while worker.conn().in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    let started = Instant::now();
    let stopped = worker.shutdown(Duration::from_millis(300)).await.unwrap();
    assert!(stopped.forced);
    assert_eq!(stopped.status.signal(), Some(9));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(in_flight.await.unwrap().is_err());
}

#[tokio::test]
async fn init_failure_carries_stage_traceback_and_output() {
    let tmp = TempDir::new().unwrap();
    let err = spawn(spec("init_raises", &tmp)).await.unwrap_err();
    let SpawnError::InitFailed {
        stage,
        message,
        exit,
        output,
    } = &err
    else {
        panic!("unexpected error: {err}");
    };
    assert_eq!(*stage, InitStage::Init);
    assert!(
        message.contains("RuntimeError: model file is corrupt"),
        "{message}"
    );
    assert_eq!(exit.and_then(|s| s.code()), Some(3));
    assert!(
        output.contains("berth-worker: RuntimeError: model file is corrupt"),
        "{output}"
    );
    assert!(
        err.to_string()
            .starts_with("the entry script failed while running init():")
    );
    assert_eq!(err.init_stage(), Some(InitStage::Init));
}

#[tokio::test]
async fn load_and_contract_failures_name_their_stage() {
    let tmp = TempDir::new().unwrap();
    let err = spawn(spec("import_error", &tmp)).await.unwrap_err();
    assert_eq!(err.init_stage(), Some(InitStage::LoadScript), "{err}");
    assert!(
        err.to_string()
            .contains("No module named 'berth_missing_dependency_xyz'")
    );
    let err = spawn(spec("missing_run", &tmp)).await.unwrap_err();
    assert_eq!(err.init_stage(), Some(InitStage::Contract), "{err}");
}

#[tokio::test]
async fn process_exiting_before_connecting_reports_its_stderr() {
    let tmp = TempDir::new().unwrap();
    let mut spec = spec("echo", &tmp);
    spec.python = fake_python(
        &tmp,
        "#!/bin/sh\necho 'fake python: cannot start' >&2\nexit 7\n",
    );
    let err = spawn(spec).await.unwrap_err();
    let SpawnError::ExitedBeforeConnect { status, output } = &err else {
        panic!("unexpected error: {err}");
    };
    assert_eq!(status.code(), Some(7));
    assert!(output.contains("fake python: cannot start"), "{output}");
}

#[tokio::test]
async fn missing_interpreter_is_a_start_error() {
    let tmp = TempDir::new().unwrap();
    let mut spec = spec("echo", &tmp);
    spec.python = tmp.path().join("no-such-python");
    assert!(matches!(spawn(spec).await, Err(SpawnError::Start { .. })));
}

#[tokio::test]
async fn connect_timeout_kills_the_process() {
    let tmp = TempDir::new().unwrap();
    let mut spec = spec("echo", &tmp);
    spec.python = fake_python(&tmp, "#!/bin/sh\necho waiting\nexec sleep 60\n");
    spec.connect_timeout = Duration::from_secs(2);
    let started = Instant::now();
    let err = spawn(spec).await.unwrap_err();
    assert!(matches!(err, SpawnError::ConnectTimeout { .. }), "{err}");
    assert!(err.output().contains("waiting"));
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn init_timeout_kills_the_process() {
    let tmp = TempDir::new().unwrap();
    let source = "import time\nprint('loading', flush=True)\ndef init():\n    time.sleep(60)\ndef run(data):\n    return data\n";
    let mut spec = spec_for_source(source, &tmp);
    spec.init_timeout = Duration::from_secs(2);
    let err = spawn(spec).await.unwrap_err();
    assert!(matches!(err, SpawnError::InitTimeout { .. }), "{err}");
    assert!(err.output().contains("loading"), "{}", err.output());
}

#[tokio::test]
async fn crash_during_init_is_reported() {
    let tmp = TempDir::new().unwrap();
    let source = "import os\ndef init():\n    os._exit(9)\ndef run(data):\n    return data\n";
    let err = spawn(spec_for_source(source, &tmp)).await.unwrap_err();
    let SpawnError::ExitedDuringInit { status, .. } = &err else {
        panic!("unexpected error: {err}");
    };
    assert_eq!(status.code(), Some(9));
}

#[tokio::test]
async fn exit_closes_the_connection_even_if_a_child_holds_the_socket() {
    let tmp = TempDir::new().unwrap();
    let source = "import os, time\ndef init():\n    pass\ndef run(data):\n    if os.fork() == 0:\n        time.sleep(5)\n        os._exit(0)\n    os._exit(5)\n";
    let worker = spawn(spec_for_source(source, &tmp)).await.unwrap();
    let err = worker.conn().score(post("fork")).await.unwrap_err();
    assert!(err.to_string().contains("socket stayed open"), "{err}");
    assert_eq!(worker.exit_status().and_then(|s| s.code()), Some(5));
}

#[tokio::test]
async fn output_is_captured_and_followed() {
    let tmp = TempDir::new().unwrap();
    let worker = start("print_output", &tmp).await;
    let (past, mut follow) = worker.logs().follow();
    // The pump may not have read the init() line yet when init ends; wait for it.
    let mut seen: Vec<String> = past.iter().map(|line| line.text.clone()).collect();
    worker.conn().score(post("ping")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(seen.iter().any(|t| t == "run: got ping")
        && seen.iter().any(|t| t == "user-stderr-line"))
    {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let line = tokio::time::timeout(remaining, follow.recv())
            .await
            .unwrap()
            .unwrap();
        seen.push(line.text);
    }
    let snapshot = worker.logs().snapshot();
    let find = |text: &str| snapshot.iter().find(|line| line.text == text).cloned();
    assert_eq!(
        find("init: loading model").map(|l| l.stream),
        Some(Stream::Stdout)
    );
    assert_eq!(
        find("run: got ping").map(|l| l.stream),
        Some(Stream::Stdout)
    );
    assert_eq!(
        find("user-stderr-line").map(|l| l.stream),
        Some(Stream::Stderr)
    );
    worker.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test]
async fn fifty_megabyte_body() {
    let tmp = TempDir::new().unwrap();
    let worker = start("large_body", &tmp).await;
    let body = Bytes::from("abcd".repeat(13_107_200));
    let result = worker.conn().score(post(body)).await.unwrap();
    assert_eq!(result.status, 200);
    assert_eq!(
        result.body,
        Bytes::from_static(b"{\"length\": 52428800, \"head\": \"abcd\", \"tail\": \"abcd\"}")
    );
    worker.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test]
async fn kill_and_drop_end_the_process() {
    let tmp = TempDir::new().unwrap();
    let worker = start("echo", &tmp).await;
    worker.kill();
    let status = worker.exited().await.unwrap();
    assert_eq!(status.signal(), Some(9));
    worker.conn().closed().await;

    let worker = start("echo", &tmp).await;
    let proc_dir = PathBuf::from(format!("/proc/{}", worker.pid()));
    assert!(proc_dir.exists());
    drop(worker);
    let deadline = Instant::now() + Duration::from_secs(10);
    while proc_dir.exists() {
        assert!(
            Instant::now() < deadline,
            "the dropped worker is still running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn environment_reaches_the_script() {
    let tmp = TempDir::new().unwrap();
    let mut spec = spec("model_single", &tmp);
    let model_dir = fixture("model_single").join("models/sklearn_regression/3");
    spec = spec.env("AZUREML_MODEL_DIR", model_dir);
    let worker = spawn(spec).await.unwrap();
    let result = worker.conn().score(post("x")).await.unwrap();
    assert_eq!(result.status, 200, "{:?}", result.body);
    assert!(
        String::from_utf8_lossy(&result.body).contains("\"via_get_model_path\": \"single-model\"")
    );
    worker.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test]
async fn socket_path_too_long_is_refused() {
    let tmp = TempDir::new().unwrap();
    let mut spec = spec("echo", &tmp);
    spec.socket_dir = tmp.path().join("x".repeat(120));
    assert!(matches!(
        spawn(spec).await,
        Err(SpawnError::SocketPathTooLong { .. })
    ));
}

#[tokio::test]
async fn shim_install_is_idempotent() {
    let tmp = TempDir::new().unwrap();
    let first = install_shim(tmp.path()).await.unwrap();
    let second = install_shim(tmp.path()).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(std::fs::read_to_string(&first).unwrap(), SHIM_SOURCE);
    let mut names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["__pycache__", "berth_worker.py"],
        "no temporary files left"
    );
}

#[tokio::test]
async fn a_rewritten_shim_drops_its_old_bytecode() {
    let tmp = TempDir::new().unwrap();
    let cache = tmp.path().join("__pycache__");
    std::fs::create_dir(&cache).unwrap();
    std::fs::write(tmp.path().join("berth_worker.py"), "old shim").unwrap();
    std::fs::write(cache.join("berth_worker.cpython-311.pyc"), "old bytecode").unwrap();
    std::fs::write(cache.join("other.cpython-311.pyc"), "kept").unwrap();
    install_shim(tmp.path()).await.unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["other.cpython-311.pyc"]);
}

/// The server's user compiles the shim's bytecode beside it once a worker of an interpreter
/// started, so later workers (sandboxed ones too) load it instead of compiling the source.
#[tokio::test]
async fn the_shim_bytecode_is_compiled_beside_it() {
    let tmp = TempDir::new().unwrap();
    // The worker itself does not write it (nor could it in a sandbox): the server's compile must.
    let spec = spec("echo", &tmp).env("PYTHONDONTWRITEBYTECODE", "1");
    let cache = spec.runtime_dir.join("__pycache__");
    let worker = match spawn(spec).await {
        Ok(worker) => worker,
        Err(err) => panic!("{err}\n{}", err.output()),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let compiled = loop {
        let found: Vec<String> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("berth_worker.") && name.ends_with(".pyc"))
            .collect();
        if !found.is_empty() || std::time::Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(compiled.len(), 1, "{compiled:?}");
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A fake interpreter whose child connects first (another pid), then the real process runs
/// the real shim: the child's connection is closed and the worker still starts.
#[tokio::test]
async fn a_connection_from_another_pid_is_closed_and_the_worker_still_starts() {
    let tmp = TempDir::new().unwrap();
    let mut spec = spec("echo", &tmp);
    let python = spec.python.clone();
    spec.python = fake_python(
        &tmp,
        &format!(
            "#!/bin/sh\n# $1=-u $2=-c $3=boot $4=shim $5=--socket $6=path\n{py} -c 'import socket,sys,time\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ns.settimeout(5)\nprint(\"intruder got\", len(s.recv(64)), flush=True)' \"$6\"\nexec {py} \"$@\"\n",
            py = python.display()
        ),
    );
    let worker = match spawn(spec).await {
        Ok(worker) => worker,
        Err(err) => panic!("{err}\n{}", err.output()),
    };
    assert_eq!(worker.hello().pid, worker.pid());
    let result = worker.conn().score(post("hi")).await.unwrap();
    assert_eq!(result.status, 200);
    let output = worker.logs().tail_text(20);
    assert!(
        output.contains("intruder got 0"),
        "the intruder read nothing: {output}"
    );
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A worker that does not present the nonce it was given is refused.
#[tokio::test]
async fn a_hello_without_the_nonce_is_refused() {
    let tmp = TempDir::new().unwrap();
    let mut spec = spec("echo", &tmp);
    let python = spec.python.clone();
    spec.python = fake_python(
        &tmp,
        &format!(
            "#!/bin/sh\nexport BERTH_WORKER_NONCE=forged\nexec {} \"$@\"\n",
            python.display()
        ),
    );
    let err = spawn(spec).await.unwrap_err();
    assert!(matches!(err, SpawnError::BadNonce { .. }), "{err}");
}
