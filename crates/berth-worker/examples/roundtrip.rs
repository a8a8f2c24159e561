//! Round trips through the real supervisor, client and shim against a trivial echo `run()`
//! (`fixtures/scripts/echo/score.py`): one request at a time (req/s, p50, p99), then 8 and 64
//! callers sharing the one worker (pipelined). Prints figures; asserts nothing.
//!
//! `bash bench/worker_roundtrip.sh` builds this in release, runs it, and compares it with calling
//! the same `run()` in-process. Direct use:
//!
//! ```text
//! cargo run --release -p berth-worker --example roundtrip -- [--requests N] [--python PATH]
//! ```
//!
//! The interpreter is `--python`, else `$BERTH_TEST_PYTHON`, else `python3`. Output is one
//! `name: value` line per figure (times in microseconds).

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_worker::{ScoreRequest, WorkerConn, WorkerSpec, spawn};
use bytes::Bytes;

const WARMUP: usize = 1_000;

struct Args {
    requests: usize,
    python: PathBuf,
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let mut args = Args {
        requests: 20_000,
        python: std::env::var_os("BERTH_TEST_PYTHON")
            .map_or_else(|| PathBuf::from("python3"), PathBuf::from),
    };
    let mut argv = std::env::args().skip(1);
    while let Some(arg) = argv.next() {
        let mut value = || argv.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--requests" => args.requests = value()?.parse()?,
            "--python" => args.python = PathBuf::from(value()?),
            other => {
                return Err(format!(
                    "unknown argument {other}; usage: roundtrip [--requests N] [--python PATH]"
                )
                .into());
            }
        }
    }
    if args.requests < 64 {
        return Err("--requests must be at least 64".into());
    }
    Ok(args)
}

/// The request every round trip sends: a small JSON body and typical headers.
fn request() -> ScoreRequest {
    ScoreRequest {
        method: "POST".into(),
        request_id: "bench".into(),
        headers: vec![
            (
                "content-type".into(),
                Bytes::from_static(b"application/json"),
            ),
            (
                "x-request-id".into(),
                Bytes::from_static(b"0123456789abcdef"),
            ),
            ("host".into(), Bytes::from_static(b"localhost")),
        ],
        body: Bytes::from_static(b"{\"data\": [[1.0, 2.0, 3.0]]}"),
        ..ScoreRequest::default()
    }
}

async fn one(conn: &WorkerConn, request: &ScoreRequest) -> Result<Duration, Box<dyn Error>> {
    let started = Instant::now();
    let result = conn.score(request.clone()).await?;
    let elapsed = started.elapsed();
    if result.status != 200 {
        return Err(format!("status {}: {:?}", result.status, result.body).into());
    }
    Ok(elapsed)
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// Requests per second, wall time per request, and the p50 and p99 of each request's own
/// latency (send to answer), for a run of `latencies` that took `elapsed`.
fn report(label: &str, mut latencies: Vec<Duration>, elapsed: Duration) {
    latencies.sort_unstable();
    let count = latencies.len();
    println!("{label}_rps: {:.0}", count as f64 / elapsed.as_secs_f64());
    println!(
        "{label}_us_per_request: {:.2}",
        micros(elapsed) / count as f64
    );
    println!(
        "{label}_latency_p50_us: {:.1}",
        micros(latencies[count / 2])
    );
    println!(
        "{label}_latency_p99_us: {:.1}",
        micros(latencies[count * 99 / 100])
    );
}

async fn concurrent(
    conn: &WorkerConn,
    callers: usize,
    total: usize,
) -> Result<(Vec<Duration>, Duration), Box<dyn Error>> {
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(callers);
    for _ in 0..callers {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let request = request();
            let mut latencies = Vec::with_capacity(total / callers);
            for _ in 0..total / callers {
                latencies.push(one(&conn, &request).await.map_err(|err| err.to_string())?);
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok((latencies, started.elapsed()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scripts/echo");
    let tmp = tempfile::Builder::new().prefix("bw-bench").tempdir()?;
    let spec = WorkerSpec::new(
        &args.python,
        tmp.path().join("rt"),
        tmp.path().join("s"),
        &script,
    )
    .env("AZUREML_ENTRY_SCRIPT", "score.py");
    let worker = spawn(spec)
        .await
        .map_err(|err| format!("{err}\n{}", err.output()))?;
    let conn = worker.conn();
    println!("python: {}", worker.hello().python_version);
    println!("script: {}", script.join("score.py").display());
    println!("requests: {}", args.requests);

    let request = request();
    for _ in 0..WARMUP {
        one(conn, &request).await?;
    }

    let mut latencies = Vec::with_capacity(args.requests);
    let mut exec_us = Vec::with_capacity(args.requests);
    let started = Instant::now();
    for _ in 0..args.requests {
        let one_started = Instant::now();
        let result = conn.score(request.clone()).await?;
        latencies.push(one_started.elapsed());
        exec_us.push(result.exec_us);
    }
    report("sequential", latencies, started.elapsed());
    exec_us.sort_unstable();
    println!("sequential_exec_us_p50: {}", exec_us[exec_us.len() / 2]);

    for callers in [8, 64] {
        let (latencies, elapsed) = concurrent(conn, callers, args.requests).await?;
        report(&format!("concurrency{callers}"), latencies, elapsed);
    }

    let stopped = worker.shutdown(Duration::from_secs(10)).await?;
    if stopped.status.code() != Some(0) {
        return Err(format!("the worker stopped with {}", stopped.status).into());
    }
    Ok(())
}
