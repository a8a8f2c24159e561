"""The gateway side of the Berth worker protocol (version 1), in Python, for tests and measurements.

It does what the Rust supervisor does, minimally: listen on a Unix socket in a private directory,
start ``python3 -u berth_worker.py --socket PATH``, accept the one connection, read HELLO and the
init result, then exchange SCORE / PING / SWAGGER / SHUTDOWN frames. See docs/worker-protocol.md.

Run ``python3 python/tests/worker_gateway.py bench`` to measure round trips per second against a
trivial echo run(), one request at a time and pipelined.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[2]
SHIM = REPO / "crates" / "berth-worker" / "shim" / "berth_worker.py"
FIXTURES = REPO / "crates" / "berth-worker" / "fixtures" / "scripts"

PROTOCOL_VERSION = 1
T_HELLO, T_INIT_OK, T_INIT_FAILED = 0x01, 0x02, 0x03
T_SCORE_RESULT, T_SCORE_EXPIRED, T_PONG, T_SWAGGER_RESULT = 0x11, 0x13, 0x21, 0x31
T_SCORE, T_SCORE_BY, T_PING, T_SWAGGER, T_SHUTDOWN = 0x10, 0x12, 0x20, 0x30, 0x40
FLAG_RUN_FAILED, FLAG_RUN_RETURNED = 0x01, 0x02

_FRAME_HEAD = struct.Struct(">IB")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")

Headers = Sequence[Tuple[str, bytes]]


def test_python() -> str:
    """The interpreter that runs the shim: $BERTH_TEST_PYTHON, else the one running the tests."""
    return os.environ.get("BERTH_TEST_PYTHON") or sys.executable


def python_has_module(python: str, module: str) -> bool:
    probe = f"import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({module!r}) else 1)"
    return subprocess.run([python, "-c", probe], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


class ProtocolViolation(Exception):
    pass


class WorkerExited(Exception):
    def __init__(self, returncode: Optional[int], stderr: str) -> None:
        super().__init__(f"worker exited with {returncode} before connecting:\n{stderr}")
        self.returncode = returncode
        self.stderr = stderr


# -- encoding ----------------------------------------------------------------------------------------


def frame(frame_type: int, payload: bytes = b"") -> bytes:
    return _FRAME_HEAD.pack(1 + len(payload), frame_type) + payload


def str16(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _U16.pack(len(raw)) + raw


def bytes32(raw: bytes) -> bytes:
    return _U32.pack(len(raw)) + raw


def headers_block(headers: Headers) -> bytes:
    parts = [_U16.pack(len(headers))]
    for name, value in headers:
        parts.append(str16(name.lower()))
        parts.append(bytes32(value))
    return b"".join(parts)


def encode_score(seq: int, method: str, request_id: str, query: bytes, headers: Headers, body: bytes) -> bytes:
    payload = b"".join((_U64.pack(seq), str16(method), str16(request_id), bytes32(query), headers_block(headers), body))
    return frame(T_SCORE, payload)


def encode_score_by(start_by_ns: int, seq: int, method: str, body: bytes) -> bytes:
    """A SCORE_BY: a SCORE the worker runs only if it reaches it before ``start_by_ns``."""
    payload = b"".join((_U64.pack(start_by_ns), _U64.pack(seq), str16(method), str16("req"), bytes32(b""), headers_block(()), body))
    return frame(T_SCORE_BY, payload)


# -- decoding ----------------------------------------------------------------------------------------


@dataclass
class Hello:
    protocol_version: int
    pid: int
    python_version: str
    shim_version: str


@dataclass
class InitResult:
    ok: bool
    init_ms: int = 0
    input_mode: int = 0
    stage: int = -1
    message: str = ""


@dataclass
class ScoreResult:
    seq: int
    status: int
    exec_us: int
    flags: int
    headers: List[Tuple[str, bytes]] = field(default_factory=list)
    body: bytes = b""

    @property
    def run_failed(self) -> bool:
        return bool(self.flags & FLAG_RUN_FAILED)

    @property
    def run_returned(self) -> bool:
        return bool(self.flags & FLAG_RUN_RETURNED)

    def header_values(self, name: str) -> List[str]:
        return [value.decode("latin-1") for key, value in self.headers if key == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


def _read_str16(payload: bytes, pos: int) -> Tuple[str, int]:
    (length,) = _U16.unpack_from(payload, pos)
    pos += 2
    return payload[pos : pos + length].decode("utf-8"), pos + length


def decode_score_result(payload: bytes) -> ScoreResult:
    seq, status, exec_us, flags = struct.unpack_from(">QHIB", payload, 0)
    pos = 15
    (count,) = _U16.unpack_from(payload, pos)
    pos += 2
    headers = []
    for _ in range(count):
        name, pos = _read_str16(payload, pos)
        (length,) = _U32.unpack_from(payload, pos)
        pos += 4
        headers.append((name, payload[pos : pos + length]))
        pos += length
    return ScoreResult(seq, status, exec_us, flags, headers, payload[pos:])


# -- the worker process --------------------------------------------------------------------------------


class _Pump(threading.Thread):
    def __init__(self, stream: Any) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.lines: List[str] = []

    def run(self) -> None:
        for raw in iter(self.stream.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
        self.stream.close()


class WorkerProcess:
    """One shim process and its connection. Use as a context manager."""

    def __init__(
        self,
        cwd: Path,
        env: Optional[Mapping[str, str]] = None,
        entry_script: Optional[str] = "score.py",
        python: Optional[str] = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.cwd = Path(cwd)
        self.env = dict(env or {})
        self.entry_script = entry_script
        self.python = python or test_python()
        self.extra_args = list(extra_args)
        self.tmpdir = tempfile.mkdtemp(prefix="bw-")
        os.chmod(self.tmpdir, 0o700)
        self.socket_path = os.path.join(self.tmpdir, "w.sock")
        self.proc: Optional[subprocess.Popen] = None  # type: ignore[type-arg]
        self.sock: Optional[socket.socket] = None
        self.reader: Any = None
        self.hello: Optional[Hello] = None
        self.init: Optional[InitResult] = None
        self._seq = 0
        self._stdout: Optional[_Pump] = None
        self._stderr: Optional[_Pump] = None

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> InitResult:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.socket_path)
        listener.listen(1)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AZUREML_", "AML_", "SERVICE_", "SCORING_"))}
        if self.entry_script is not None:
            env["AZUREML_ENTRY_SCRIPT"] = self.entry_script
        env.update(self.env)
        cmd = [self.python, "-u", str(SHIM), "--socket", self.socket_path, *self.extra_args]
        self.proc = subprocess.Popen(
            cmd, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._stdout = _Pump(self.proc.stdout)
        self._stderr = _Pump(self.proc.stderr)
        self._stdout.start()
        self._stderr.start()
        deadline = time.monotonic() + timeout
        try:
            while True:
                ready, _, _ = select.select([listener], [], [], 0.05)
                if ready:
                    self.sock, _ = listener.accept()
                    break
                if self.proc.poll() is not None:
                    self._join_pumps()
                    raise WorkerExited(self.proc.returncode, self.stderr_text())
                if time.monotonic() > deadline:
                    raise TimeoutError("the worker did not connect")
        finally:
            listener.close()
            os.unlink(self.socket_path)
        self.sock.settimeout(timeout)
        self.reader = self.sock.makefile("rb", buffering=256 * 1024)
        kind, payload = self.read_frame()
        if kind != T_HELLO:
            raise ProtocolViolation(f"expected HELLO, got 0x{kind:02x}")
        version, pid = struct.unpack_from(">HI", payload, 0)
        python_version, pos = _read_str16(payload, 6)
        shim_version, pos = _read_str16(payload, pos)
        self.hello = Hello(version, pid, python_version, shim_version)
        kind, payload = self.read_frame()
        if kind == T_INIT_OK:
            init_ms, mode = struct.unpack(">IB", payload)
            self.init = InitResult(True, init_ms=init_ms, input_mode=mode)
        elif kind == T_INIT_FAILED:
            self.init = InitResult(False, stage=payload[0], message=payload[1:].decode("utf-8"))
        else:
            raise ProtocolViolation(f"expected INIT_OK or INIT_FAILED, got 0x{kind:02x}")
        return self.init

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        self._join_pumps()
        return code

    def shutdown(self, timeout: float = 30.0) -> int:
        self.send(frame(T_SHUTDOWN))
        return self.wait(timeout)

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None:
            self._join_pumps()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self) -> "WorkerProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _join_pumps(self) -> None:
        for pump in (self._stdout, self._stderr):
            if pump is not None:
                pump.join(10)

    def stdout_text(self) -> str:
        return "\n".join(self._stdout.lines) if self._stdout else ""

    def stderr_text(self) -> str:
        return "\n".join(self._stderr.lines) if self._stderr else ""

    # -- frames ----------------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(data)

    def read_frame(self) -> Tuple[int, bytes]:
        head = self.reader.read(5)
        if len(head) < 5:
            raise EOFError("the worker closed the connection")
        length, kind = _FRAME_HEAD.unpack(head)
        payload = self.reader.read(length - 1)
        if len(payload) != length - 1:
            raise EOFError("the worker closed the connection inside a frame")
        return kind, payload

    def send_score(
        self,
        method: str = "POST",
        body: bytes = b"",
        query: bytes = b"",
        headers: Headers = (),
        request_id: str = "req",
    ) -> int:
        self._seq += 1
        self.send(encode_score(self._seq, method, request_id, query, headers, body))
        return self._seq

    def read_result(self) -> ScoreResult:
        kind, payload = self.read_frame()
        if kind != T_SCORE_RESULT:
            raise ProtocolViolation(f"expected SCORE_RESULT, got 0x{kind:02x}")
        return decode_score_result(payload)

    def score(self, method: str = "POST", body: bytes = b"", query: bytes = b"", headers: Headers = ()) -> ScoreResult:
        seq = self.send_score(method, body, query, headers)
        result = self.read_result()
        if result.seq != seq:
            raise ProtocolViolation(f"result for seq {result.seq}, expected {seq}")
        return result

    def ping(self, nonce: int) -> int:
        self.send(frame(T_PING, _U64.pack(nonce)))
        kind, payload = self.read_frame()
        if kind != T_PONG:
            raise ProtocolViolation(f"expected PONG, got 0x{kind:02x}")
        return _U64.unpack(payload)[0]

    def swagger(self, version: str = "") -> Tuple[int, Any]:
        self.send(frame(T_SWAGGER, str16(version)))
        kind, payload = self.read_frame()
        if kind != T_SWAGGER_RESULT:
            raise ProtocolViolation(f"expected SWAGGER_RESULT, got 0x{kind:02x}")
        (status,) = _U16.unpack_from(payload, 0)
        return status, json.loads(payload[2:])


# -- conformance cases ---------------------------------------------------------------------------------


def load_case(name: str) -> Dict[str, Any]:
    case_dir = FIXTURES / name
    with open(case_dir / "case.json", encoding="utf-8") as handle:
        case = json.load(handle)
    case["env"] = {k: v.replace("$CASE", str(case_dir)) for k, v in case.get("env", {}).items()}
    return case


def case_names() -> List[str]:
    return sorted(p.parent.name for p in FIXTURES.glob("*/case.json"))


def request_body(spec: Mapping[str, Any]) -> bytes:
    import base64

    if "body_b64" in spec:
        return base64.b64decode(spec["body_b64"])
    if "body_repeat" in spec:
        return spec["body_repeat"]["text"].encode("utf-8") * int(spec["body_repeat"]["count"])
    return str(spec.get("body", "")).encode("utf-8")


def request_headers(spec: Mapping[str, Any]) -> List[Tuple[str, bytes]]:
    return [(name, value.encode("latin-1")) for name, value in spec.get("headers", [])]


def json_path(document: Any, path: str) -> Any:
    node = document
    for key in path.split("."):
        node = node[key]
    return node


# -- benchmark -----------------------------------------------------------------------------------------


def bench(total: int = 20000, depth: int = 32) -> Dict[str, float]:
    """Round trips per second against fixtures/scripts/echo, sequential and pipelined (``depth`` in flight)."""
    body = b'{"data": [[1.0, 2.0, 3.0]]}'
    headers = [("content-type", b"application/json"), ("x-request-id", b"0123456789abcdef"), ("host", b"localhost")]
    figures: Dict[str, float] = {}
    with WorkerProcess(FIXTURES / "echo") as worker:
        init = worker.start()
        assert init.ok, init.message
        for _ in range(500):
            worker.score("POST", body, headers=headers)
        started = time.perf_counter()
        for _ in range(total):
            worker.score("POST", body, headers=headers)
        elapsed = time.perf_counter() - started
        figures["sequential_rps"] = total / elapsed
        figures["sequential_us"] = elapsed / total * 1e6

        started = time.perf_counter()
        sent = received = 0
        while received < total:
            batch = []
            while sent - received < depth and sent < total:
                worker._seq += 1
                batch.append(encode_score(worker._seq, "POST", "req", b"", headers, body))
                sent += 1
            if batch:
                worker.send(b"".join(batch))
            worker.read_result()
            received += 1
        elapsed = time.perf_counter() - started
        figures["pipelined_rps"] = total / elapsed
        figures["pipelined_us"] = elapsed / total * 1e6
        worker.shutdown()
    return figures


if __name__ == "__main__":
    if sys.argv[1:2] == ["bench"]:
        count = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
        for key, value in bench(count).items():
            print(f"{key}: {value:,.1f}")
    else:
        print(__doc__)
