//! The worker conformance cases (`fixtures/scripts/<case>/case.json`, format in the README there)
//! run through the real supervisor ([`spawn`]) and the real client ([`WorkerConn`]) against the
//! real shim. `python/tests/test_worker_shim.py` runs the same cases through its own Python
//! gateway and checks the same things, so both ends enforce one contract.
//!
//! The interpreter is `$BERTH_TEST_PYTHON`, else `python3`. A case whose `requires` modules that
//! interpreter cannot import is skipped: the test passes and says so on stderr, and
//! `skips_are_limited_to_inference_schema_cases` fails if anything other than a missing
//! `inference_schema` caused a skip. `scripts/schema-python.sh` prints an interpreter that has it.
//!
//! [`WorkerConn`]: crate::WorkerConn

use std::ffi::OsString;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tempfile::TempDir;

use crate::logs::Stream;
use crate::protocol::{PROTOCOL_VERSION, ScoreRequest, ScoreResult};
use crate::supervisor::{SpawnError, Worker, WorkerSpec, spawn};
use crate::testing::{fixture, python};

use self::json::Json;

mod json;

/// The one module whose absence may skip cases (the shim is stdlib-only; inference-schema is an
/// optional package of the user's environment).
const OPTIONAL_MODULE: &str = "inference_schema";

/// Environment variables of the test process that are not passed on (as the Python gateway does).
const SCRUBBED_PREFIXES: [&str; 4] = ["AZUREML_", "AML_", "SERVICE_", "SCORING_"];

/// Header the shim must never pass through (it becomes the run-failed flag).
const RUN_FAILED_HEADER: &str = "x-ms-run-function-failed";

/// Keys `case.json` may use, per object (a misspelt key would silently disable a check).
const CASE_KEYS: &[&str] = &[
    "description",
    "entry_script",
    "env",
    "requires",
    "init",
    "requests",
    "swagger",
    "output_contains",
];
const INIT_KEYS: &[&str] = &[
    "ok",
    "input_mode",
    "stage",
    "message_contains",
    "message_excludes",
];
const REQUEST_KEYS: &[&str] = &[
    "name",
    "method",
    "query",
    "headers",
    "body",
    "body_b64",
    "body_repeat",
    "expect",
];
const EXPECT_KEYS: &[&str] = &[
    "status",
    "json",
    "body",
    "body_b64",
    "headers",
    "run_failed",
    "run_returned",
];
const SWAGGER_KEYS: &[&str] = &["version", "status", "json", "json_path"];
const OUTPUT_KEYS: &[&str] = &["stdout", "stderr"];

/// One test per case directory; `case_list_matches_the_fixture_directories` keeps this list honest.
macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        const CASES: &[&str] = &[$(stringify!($name)),*];

        mod case {
            $(
                #[tokio::test]
                async fn $name() {
                    super::run_case(stringify!($name)).await;
                }
            )*
        }
    };
}

cases!(
    driver_module,
    echo,
    get_query,
    helper_import,
    import_error,
    init_raises,
    json_string,
    large_body,
    main_module,
    missing_run,
    model_multi,
    model_single,
    print_output,
    rawhttp,
    rawhttp_server_import,
    request_headers,
    response_status,
    returns_none,
    run_bytes,
    run_raises,
    run_varargs,
    schema,
    schema_rawhttp,
    swagger_user,
    timeout,
    unicode,
    unserialisable,
);

#[test]
fn case_list_matches_the_fixture_directories() {
    let root = fixture("");
    let mut found: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("case.json").is_file())
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut listed: Vec<String> = CASES.iter().map(|name| (*name).to_string()).collect();
    listed.sort();
    assert_eq!(
        listed,
        found,
        "the cases!() list in {} must name every directory of {} that has a case.json",
        file!(),
        root.display()
    );
}

#[test]
fn case_files_use_only_documented_keys() {
    for name in CASES {
        let case = load_case(name);
        check_keys(name, "case", &case, CASE_KEYS);
        check_keys(name, "init", &case["init"], INIT_KEYS);
        check_keys(
            name,
            "output_contains",
            &case["output_contains"],
            OUTPUT_KEYS,
        );
        for request in array(&case["requests"]) {
            check_keys(name, "request", request, REQUEST_KEYS);
            check_keys(name, "expect", &request["expect"], EXPECT_KEYS);
        }
        for swagger in array(&case["swagger"]) {
            check_keys(name, "swagger", swagger, SWAGGER_KEYS);
        }
    }
}

#[test]
fn skips_are_limited_to_inference_schema_cases() {
    let python = python();
    let runs = Command::new(&python)
        .args(["-c", "pass"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        runs,
        "the test interpreter {} does not run",
        python.display()
    );
    let mut skipped = Vec::new();
    let mut not_allowed = Vec::new();
    for name in CASES {
        let missing = missing_modules(&load_case(name));
        if missing.is_empty() {
            continue;
        }
        skipped.push(format!("{name} (needs {})", missing.join(", ")));
        crate::test_skips::record(
            &format!("berth-worker conformance case {name}"),
            &format!(
                "{} cannot import {}; scripts/schema-python.sh prints an interpreter that can",
                python.display(),
                missing.join(", ")
            ),
        );
        if missing.iter().any(|module| module != OPTIONAL_MODULE) {
            not_allowed.push(format!("{name}: {}", missing.join(", ")));
        }
    }
    report(&format!(
        "conformance cases skipped with {}: {}",
        python.display(),
        if skipped.is_empty() {
            "none".to_string()
        } else {
            skipped.join("; ")
        }
    ));
    assert!(
        not_allowed.is_empty(),
        "only a missing {OPTIONAL_MODULE} may skip a case; {} cannot import what these need: {}",
        python.display(),
        not_allowed.join("; ")
    );
}

/// Write past the test harness's output capture, so that skips show up in `cargo test` output.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn load_case(name: &str) -> Json {
    let path = fixture(name).join("case.json");
    let text =
        std::fs::read(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    Json::parse(&text).unwrap_or_else(|err| panic!("parsing {}: {err}", path.display()))
}

fn check_keys(case: &str, what: &str, value: &Json, allowed: &[&str]) {
    if value.is_null() {
        return;
    }
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{case}: {what} is not an object"));
    for (key, _) in object {
        assert!(
            allowed.contains(&key.as_str()),
            "{case}: unknown key {key:?} in {what} (allowed: {allowed:?})"
        );
    }
}

fn array(value: &Json) -> &[Json] {
    value.as_array().unwrap_or_default()
}

fn str_of<'a>(value: &'a Json, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} must be a string, not {value}"))
}

fn strings(value: &Json) -> Vec<&str> {
    array(value)
        .iter()
        .map(|item| str_of(item, "list item"))
        .collect()
}

/// Modules in `requires` that the test interpreter cannot import (the same probe as the Python
/// tests' `python_has_module`).
fn missing_modules(case: &Json) -> Vec<String> {
    strings(&case["requires"])
        .into_iter()
        .filter(|module| !python_has(module))
        .map(str::to_string)
        .collect()
}

fn python_has(module: &str) -> bool {
    let probe = format!(
        "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({module:?}) else 1)"
    );
    Command::new(python())
        .args(["-c", &probe])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The worker spec for a case: the case directory as working directory, the test process's
/// environment without AZUREML_/AML_/SERVICE_/SCORING_ variables, AZUREML_ENTRY_SCRIPT (unless
/// `entry_script` is null) and the case's `env` with `$CASE` expanded.
fn case_spec(name: &str, case: &Json, tmp: &TempDir) -> WorkerSpec {
    let dir = fixture(name);
    let mut spec = WorkerSpec::new(
        python(),
        tmp.path().join("rt"),
        tmp.path().join("s"),
        dir.clone(),
    );
    spec.clear_env = true;
    spec.env = std::env::vars_os()
        .filter(|(key, _)| {
            let key = key.to_string_lossy();
            !SCRUBBED_PREFIXES
                .iter()
                .any(|prefix| key.starts_with(prefix))
        })
        .collect();
    match case.get("entry_script") {
        None => spec = spec.env("AZUREML_ENTRY_SCRIPT", "score.py"),
        Some(Json::Null) => {}
        Some(entry) => spec = spec.env("AZUREML_ENTRY_SCRIPT", str_of(entry, "entry_script")),
    }
    if let Some(env) = case["env"].as_object() {
        let case_dir = dir.to_string_lossy();
        for (key, value) in env {
            let value = str_of(value, key).replace("$CASE", &case_dir);
            spec = spec.env(key, OsString::from(value));
        }
    }
    spec.connect_timeout = Duration::from_secs(60);
    spec.init_timeout = Duration::from_secs(60);
    spec
}

/// Check failures of one case, collected so that one report shows all of them (like `subTest`).
struct Failures {
    case: String,
    list: Vec<String>,
}

impl Failures {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.list.push(what());
        }
    }

    fn eq<T: PartialEq + std::fmt::Debug>(&mut self, label: &str, got: T, want: T) {
        self.check(got == want, || {
            format!("{label}: got {got:?}, expected {want:?}")
        });
    }

    fn finish(self) {
        assert!(
            self.list.is_empty(),
            "conformance case {} failed {} check(s):\n- {}",
            self.case,
            self.list.len(),
            self.list.join("\n- ")
        );
    }
}

async fn run_case(name: &str) {
    let case = load_case(name);
    let missing = missing_modules(&case);
    if !missing.is_empty() {
        report(&format!(
            "conformance case {name}: SKIPPED: {} not importable by {}",
            missing.join(", "),
            python().display()
        ));
        return;
    }
    let tmp = TempDir::new().unwrap();
    let mut failures = Failures {
        case: name.to_string(),
        list: Vec::new(),
    };
    let expected = &case["init"];
    let spawned = spawn(case_spec(name, &case, &tmp)).await;
    if expected["ok"].as_bool() == Some(true) {
        let worker = match spawned {
            Ok(worker) => worker,
            Err(err) => panic!("{name}: spawning failed: {err}\noutput:\n{}", err.output()),
        };
        run_worker(&worker, &case, &mut failures).await;
    } else {
        let worker_output = match spawned {
            Ok(worker) => {
                worker.kill();
                panic!("{name}: init unexpectedly succeeded");
            }
            Err(SpawnError::InitFailed {
                stage,
                message,
                exit,
                output,
            }) => {
                failures.eq("init stage", stage.to_u8(), u8_of(&expected["stage"]));
                for needle in strings(&expected["message_contains"]) {
                    failures.check(message.contains(needle), || {
                        format!("init message lacks {needle:?}:\n{message}")
                    });
                }
                for needle in strings(&expected["message_excludes"]) {
                    failures.check(!message.contains(needle), || {
                        format!("init message contains {needle:?}:\n{message}")
                    });
                }
                failures.eq("exit code", exit.and_then(|status| status.code()), Some(3));
                output
            }
            Err(err) => panic!(
                "{name}: expected INIT_FAILED, got: {err}\noutput:\n{}",
                err.output()
            ),
        };
        // SpawnError carries the last lines of stdout and stderr merged, so which stream a
        // needle came from cannot be told here (the Python test can).
        for stream in ["stdout", "stderr"] {
            for needle in strings(&case["output_contains"][stream]) {
                failures.check(worker_output.contains(needle), || {
                    format!("output ({stream}) lacks {needle:?}:\n{worker_output}")
                });
            }
        }
    }
    failures.finish();
}

async fn run_worker(worker: &Worker, case: &Json, failures: &mut Failures) {
    failures.eq(
        "hello protocol version",
        worker.hello().protocol_version,
        PROTOCOL_VERSION,
    );
    failures.eq("hello pid", worker.hello().pid, worker.pid());
    failures.eq(
        "input mode",
        worker.init().input_mode.to_u8(),
        u8_of(&case["init"]["input_mode"]),
    );
    for request in array(&case["requests"]) {
        check_request(worker, request, failures).await;
    }
    for swagger in array(&case["swagger"]) {
        check_swagger(worker, swagger, failures).await;
    }
    match worker.shutdown(Duration::from_secs(30)).await {
        Ok(stopped) => {
            failures.eq("shutdown forced", stopped.forced, false);
            failures.eq("shutdown exit code", stopped.status.code(), Some(0));
        }
        Err(err) => failures.check(false, || format!("shutdown: {err}")),
    }
    for (stream, key) in [(Stream::Stdout, "stdout"), (Stream::Stderr, "stderr")] {
        for needle in strings(&case["output_contains"][key]) {
            let text = wait_for_output(worker, stream, needle).await;
            failures.check(text.contains(needle), || {
                format!("{key} lacks {needle:?}:\n{text}")
            });
        }
    }
}

/// The captured text of one stream ("\n"-joined lines), once it contains `needle` or the pipes
/// had ample time to drain after the exit.
async fn wait_for_output(worker: &Worker, stream: Stream, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = worker
            .logs()
            .snapshot()
            .into_iter()
            .filter(|line| line.stream == stream)
            .map(|line| line.text)
            .collect::<Vec<_>>()
            .join("\n");
        if text.contains(needle) || Instant::now() >= deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn check_request(worker: &Worker, request: &Json, failures: &mut Failures) {
    let label = format!("request {:?}", str_of(&request["name"], "name"));
    let score = ScoreRequest {
        method: str_of(&request["method"], "method").to_string(),
        request_id: format!("{}/{label}", failures.case),
        query: Bytes::from(latin1(request["query"].as_str().unwrap_or(""))),
        headers: array(&request["headers"])
            .iter()
            .map(|pair| {
                let pair = strings(pair);
                assert_eq!(pair.len(), 2, "{label}: a header is [name, value]");
                (pair[0].to_lowercase(), Bytes::from(latin1(pair[1])))
            })
            .collect(),
        body: request_body(request),
    };
    let result = match worker.conn().score(score).await {
        Ok(result) => result,
        Err(err) => {
            failures.check(false, || format!("{label}: {err}"));
            return;
        }
    };
    check_result(&label, &result, &request["expect"], failures);
}

fn check_result(label: &str, result: &ScoreResult, expect: &Json, failures: &mut Failures) {
    let body = &result.body;
    failures.check(result.status == u16_of(&expect["status"]), || {
        format!(
            "{label}: status {} (expected {}), body {}",
            result.status,
            expect["status"],
            String::from_utf8_lossy(&body[..body.len().min(2000)])
        )
    });
    if let Some(want) = expect.get("json") {
        match Json::parse(body) {
            Ok(got) => failures.check(got.py_eq(want), || {
                format!("{label}: json {got} (expected {want})")
            }),
            Err(err) => failures.check(false, || {
                format!(
                    "{label}: body is not JSON ({err}): {}",
                    String::from_utf8_lossy(body)
                )
            }),
        }
    }
    if let Some(want) = expect.get("body") {
        failures.eq(
            &format!("{label}: body"),
            std::str::from_utf8(body).ok(),
            Some(str_of(want, "body")),
        );
    }
    if let Some(want) = expect.get("body_b64") {
        failures.eq(
            &format!("{label}: body"),
            body.clone(),
            Bytes::from(b64decode(str_of(want, "body_b64"))),
        );
    }
    if let Some(headers) = expect["headers"].as_object() {
        for (name, value) in headers {
            let name = name.to_lowercase();
            let got: Vec<String> = result
                .headers
                .iter()
                .filter(|(key, _)| *key == name)
                .map(|(_, value)| value.iter().map(|&byte| char::from(byte)).collect())
                .collect();
            let want: Vec<&str> = match value {
                Json::Null => Vec::new(),
                Json::Array(_) => strings(value),
                other => vec![str_of(other, "header value")],
            };
            failures.eq(
                &format!("{label}: header {name}"),
                got,
                want.iter().map(|v| v.to_string()).collect(),
            );
        }
    }
    if let Some(want) = expect.get("run_failed") {
        failures.eq(
            &format!("{label}: run_failed"),
            Some(result.run_failed()),
            want.as_bool(),
        );
    }
    if let Some(want) = expect.get("run_returned") {
        failures.eq(
            &format!("{label}: run_returned"),
            Some(result.run_returned()),
            want.as_bool(),
        );
    }
    if !result.run_returned() {
        failures.eq(
            &format!("{label}: exec_us without a run() result"),
            result.exec_us,
            0,
        );
    }
    for (name, _) in &result.headers {
        failures.check(*name == name.to_lowercase(), || {
            format!("{label}: header name {name:?} is not lowercase")
        });
        failures.check(name != RUN_FAILED_HEADER, || {
            format!("{label}: {RUN_FAILED_HEADER} passed through as a header")
        });
    }
}

async fn check_swagger(worker: &Worker, swagger: &Json, failures: &mut Failures) {
    let version = str_of(&swagger["version"], "version");
    let label = format!("swagger {version:?}");
    let result = match worker.conn().swagger(version).await {
        Ok(result) => result,
        Err(err) => {
            failures.check(false, || format!("{label}: {err}"));
            return;
        }
    };
    let document = match Json::parse(&result.body) {
        Ok(document) => document,
        Err(err) => {
            failures.check(false, || {
                format!(
                    "{label}: document is not JSON ({err}): {}",
                    String::from_utf8_lossy(&result.body)
                )
            });
            return;
        }
    };
    failures.check(result.status == u16_of(&swagger["status"]), || {
        format!(
            "{label}: status {} (expected {}): {document}",
            result.status, swagger["status"]
        )
    });
    if let Some(want) = swagger.get("json") {
        failures.check(document.py_eq(want), || {
            format!("{label}: document {document} (expected {want})")
        });
    }
    if let Some(paths) = swagger["json_path"].as_object() {
        for (path, want) in paths {
            let got = path
                .split('.')
                .try_fold(&document, |node, key| node.get(key));
            failures.check(got.is_some_and(|got| got.py_eq(want)), || {
                let got = got.map_or_else(|| "absent".to_string(), ToString::to_string);
                format!("{label}: {path} is {got} (expected {want})")
            });
        }
    }
}

fn request_body(request: &Json) -> Bytes {
    if let Some(b64) = request.get("body_b64") {
        return Bytes::from(b64decode(str_of(b64, "body_b64")));
    }
    if let Some(repeat) = request.get("body_repeat") {
        let text = str_of(&repeat["text"], "body_repeat.text");
        let count = repeat["count"].as_u64().expect("body_repeat.count");
        return Bytes::from(text.repeat(usize::try_from(count).unwrap()));
    }
    Bytes::from(request["body"].as_str().unwrap_or("").to_string())
}

fn latin1(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or_else(|_| panic!("{text:?} is not latin-1")))
        .collect()
}

fn u8_of(value: &Json) -> u8 {
    value
        .as_u64()
        .and_then(|v| u8::try_from(v).ok())
        .unwrap_or_else(|| panic!("{value} is not a small integer"))
}

fn u16_of(value: &Json) -> u16 {
    value
        .as_u64()
        .and_then(|v| u16::try_from(v).ok())
        .unwrap_or_else(|| panic!("{value} is not a status"))
}

/// Standard base64 with optional padding.
fn b64decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().take_while(|&c| c != b'=') {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("invalid base64 {text:?}"),
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from(acc >> bits).unwrap());
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn base64_decoding() {
    assert_eq!(b64decode("//4="), vec![0xff, 0xfe]);
    assert_eq!(b64decode("AAFiaW5hcnn/"), b"\x00\x01binary\xff".to_vec());
    assert_eq!(b64decode("iVBORw0KGgoAAAAN").len(), 12);
    assert_eq!(b64decode(""), Vec::<u8>::new());
}
