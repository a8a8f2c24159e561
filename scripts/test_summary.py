"""Prints the closing summary of scripts/test.sh from the results its stages left in one folder.

    python3 scripts/test_summary.py RESULTS_DIR

RESULTS_DIR holds ``rust.log`` (the output of nextest or cargo test), ``rust-skips.txt`` (one
``test: reason`` line per skip recorded by a Rust test, see berth_worker::test_skips) and one
``py-*.json`` per Python suite (written by scripts/pyunit.py). Rust tests that recorded a skip
passed as far as the runner knows; here they count as skipped. A stage that left no result (it
did not build, or crashed) counts as one failure. Prints every skip with its reason, then the
line ``summary: N passed, N failed, N skipped``; exits 1 when anything failed.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import List, Optional, Tuple


def rust_counts(log: str) -> Optional[Tuple[int, int, int]]:
    """(passed, failed, not run) from nextest's Summary line or cargo test's result lines."""
    summary = [line for line in log.splitlines() if re.search(r"Summary \[.*\] +\d+ tests? run:", line)]
    if summary:
        line = summary[-1]

        def count(word: str) -> int:
            found = re.search(rf"(\d+) {word}", line)
            return int(found.group(1)) if found else 0

        failed = count("failed") + count("timed out")
        return count("passed"), failed, count("skipped")
    results = re.findall(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", log)
    if results:
        return tuple(sum(int(r[i]) for r in results) for i in range(3))  # type: ignore[return-value]
    return None


def main(argv: List[str]) -> int:
    results = Path(argv[1])
    passed = failed = not_run = 0
    skips: List[Tuple[str, str]] = []
    problems: List[str] = []

    log_path = results / "rust.log"
    counts = rust_counts(log_path.read_text(errors="replace")) if log_path.exists() else None
    if counts is None:
        failed += 1
        problems.append("the Rust tests left no summary (did the workspace build?)")
    else:
        rust_passed, rust_failed, not_run = counts
        skip_log = results / "rust-skips.txt"
        recorded = skip_log.read_text().splitlines() if skip_log.exists() else []
        for line in recorded:
            test, _, reason = line.partition(": ")
            skips.append((test, reason))
        passed += rust_passed - len(recorded)
        failed += rust_failed

    for suite in sorted(results.glob("py-*.json")):
        data = json.loads(suite.read_text())
        passed += data["passed"]
        failed += data["failed"]
        skips.extend((test, reason) for test, reason in data["skipped"])
    for expected in sorted(results.glob("py-*.expected")):
        if not expected.with_suffix(".json").exists():
            failed += 1
            problems.append(f"the Python suite {expected.read_text().strip()} left no result")

    for problem in problems:
        print(f"FAILED: {problem}")
    if skips:
        print(f"Skipped ({len(skips)}), with reasons:")
        for test, reason in skips:
            print(f"  - {test}: {reason}")
    if not_run:
        print(f"Not run: {not_run} Rust tests not selected by the filter given to scripts/test.sh, or #[ignore]d")
    skipped = len(skips) + not_run
    print(f"summary: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
