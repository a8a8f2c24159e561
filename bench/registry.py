#!/usr/bin/env python3
"""Registry benchmark: streaming registration throughput, server peak memory, list latency.

Prints figures, asserts nothing. Usage:

    cargo build --release && python3 bench/registry.py [--size-mib 1024] [--versions 10000]

It starts `target/release/berth server` on a free loopback port with a temporary data
directory, registers a model of --size-mib through the CLI (streamed from disk),
reads the server's peak RSS (VmHWM) after a small and after the large upload, then
registers --versions small versions over one keep-alive connection and times
`GET /v1/models` (all of them) and `GET /v1/models?name=..&latest=true`.
Last, the cost of `--sqlite-synchronous full` (the default: every commit on disk)
against `normal`: --sync-versions small registrations on a fresh server with each,
printed side by side.

`--store URL` runs the main figures on that metadata store (`postgres://...` pointing at an
empty database, or `sqlite://PATH`) so registrations/s and list latency can be compared
across backends; the synchronous comparison is SQLite's own and is skipped then.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(
    binary: Path, data: Path, extra: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    proc = subprocess.Popen(
        [str(binary), "server", "--data", str(data), "--addr", "127.0.0.1:0", "--log", "warn", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    config = data / "config.json"
    deadline = time.time() + 30
    while not config.exists():
        if time.time() > deadline or proc.poll() is not None:
            raise SystemExit("server did not start")
        time.sleep(0.02)
    return proc, json.loads(config.read_text())


def write_file(path: Path, mib: int) -> None:
    block = os.urandom(1 << 20)
    with path.open("wb") as f:
        for i in range(mib):
            # Vary each block so the content is not trivially compressible or repeated.
            f.write(block[i % 251 :] + block[: i % 251])


def register_cli(binary: Path, config: Path, name: str, path: Path) -> float:
    env = dict(os.environ, BERTH_CONFIG=str(config))
    started = time.perf_counter()
    subprocess.run(
        [str(binary), "model", "register", "-n", name, "--asset-path", str(path), "-o", "json"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def multipart(name: str, content: bytes) -> tuple[bytes, str]:
    boundary = "berthbenchboundary"
    meta = json.dumps({"name": name, "kind": "file", "assetName": "m.bin"})
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n"
        f"Content-Type: application/json\r\n\r\n{meta}\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; filename=\"m.bin\"\r\n\r\n"
    ).encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def registrations_per_second(binary: Path, data: Path, versions: int, mode: str) -> float:
    """Small registrations/s over one keep-alive connection with `--sqlite-synchronous mode`."""
    proc, config = start_server(binary, data, ("--sqlite-synchronous", mode))
    try:
        host, port = config["endpoint"].removeprefix("http://").rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port))
        headers = {"Authorization": f"Bearer {config['token']}"}
        started = time.perf_counter()
        for i in range(versions):
            body, ctype = multipart("sync", i.to_bytes(4, "big"))
            conn.request("POST", "/v1/models", body=body, headers={**headers, "Content-Type": ctype})
            response = conn.getresponse()
            response.read()
            if response.status != 201:
                raise SystemExit(f"registration {i} failed: {response.status}")
        return versions / (time.perf_counter() - started)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, default=ROOT / "target" / "release" / "berth")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--sync-versions", type=int, default=1_000)
    parser.add_argument("--only-sync", action="store_true", help="run only the synchronous comparison")
    parser.add_argument("--store", help="metadata store URL for the main figures (an empty database)")
    args = parser.parse_args()
    if not args.binary.exists():
        raise SystemExit(f"{args.binary} not found: run `cargo build --release` first")

    if not args.only_sync:
        main_figures(args)
    if args.store:
        print(f"store: {args.store.split('@')[-1]} (synchronous comparison skipped: SQLite only)")
        return
    with tempfile.TemporaryDirectory(prefix="berth-bench-") as tmp:
        rates = {
            mode: registrations_per_second(args.binary, Path(tmp) / mode, args.sync_versions, mode)
            for mode in ("full", "normal")
        }
    print(f"register {args.sync_versions} small versions: synchronous=FULL {rates['full']:.0f}/s, "
          f"NORMAL {rates['normal']:.0f}/s (FULL costs {100 * (1 - rates['full'] / rates['normal']):.0f} %)")


def main_figures(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="berth-bench-") as tmp:
        tmp_path = Path(tmp)
        extra = ("--store", args.store) if args.store else ()
        proc, config = start_server(args.binary, tmp_path / "data", extra)
        try:
            small = tmp_path / "small.bin"
            write_file(small, 16)
            register_cli(args.binary, tmp_path / "data" / "config.json", "small", small)
            rss_small = peak_rss_mib(proc.pid)

            big = tmp_path / "big.bin"
            write_file(big, args.size_mib)
            secs = register_cli(args.binary, tmp_path / "data" / "config.json", "big", big)
            rss_big = peak_rss_mib(proc.pid)
            big.unlink()
            print(f"register {args.size_mib} MiB via CLI: {secs:.2f} s = {args.size_mib / secs:.0f} MiB/s")
            print(f"server peak RSS after a 16 MiB upload: {rss_small:.1f} MiB")
            print(f"server peak RSS after a {args.size_mib} MiB upload: {rss_big:.1f} MiB "
                  f"(ratio {rss_big / rss_small:.2f}; flat means streaming)")

            host, port = config["endpoint"].removeprefix("http://").rsplit(":", 1)
            conn = http.client.HTTPConnection(host, int(port))
            headers = {"Authorization": f"Bearer {config['token']}"}
            started = time.perf_counter()
            for i in range(args.versions):
                body, ctype = multipart("many", i.to_bytes(4, "big"))
                conn.request("POST", "/v1/models", body=body, headers={**headers, "Content-Type": ctype})
                response = conn.getresponse()
                response.read()
                if response.status != 201:
                    raise SystemExit(f"registration {i} failed: {response.status}")
            reg_secs = time.perf_counter() - started
            print(f"register {args.versions} small versions: {reg_secs:.1f} s = "
                  f"{args.versions / reg_secs:.0f} registrations/s")

            def timed(path: str, runs: int) -> tuple[float, float, int]:
                samples = []
                size = 0
                for _ in range(runs):
                    t = time.perf_counter()
                    conn.request("GET", path, headers=headers)
                    response = conn.getresponse()
                    size = len(response.read())
                    samples.append((time.perf_counter() - t) * 1000)
                samples.sort()
                return statistics.median(samples), samples[int(len(samples) * 0.9)], size

            total = args.versions + 2
            p50, p90, size = timed("/v1/models", 10)
            print(f"list all {total} versions: p50 {p50:.1f} ms, p90 {p90:.1f} ms ({size / 1e6:.1f} MB JSON)")
            p50, p90, _ = timed("/v1/models?name=many&latest=true", 50)
            print(f"list latest of one name among {total}: p50 {p50:.2f} ms, p90 {p90:.2f} ms")
            p50, p90, _ = timed("/v1/models?latest=true", 50)
            print(f"list latest of every name among {total}: p50 {p50:.2f} ms, p90 {p90:.2f} ms")
            p50, p90, _ = timed("/v1/models/many", 200)
            print(f"show latest version: p50 {p50:.2f} ms, p90 {p90:.2f} ms")
            print(f"server peak RSS at the end: {peak_rss_mib(proc.pid):.1f} MiB")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
