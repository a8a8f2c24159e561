"""Runs one folder of Python unittest tests and records the outcome for scripts/test.sh.

    python3 scripts/pyunit.py START_DIR RESULT_FILE

Discovers ``test*.py`` below START_DIR (verbosity 2, output as unittest prints it), then writes
RESULT_FILE as JSON: ``{"suite", "passed", "failed", "skipped": [[test, reason], ...]}``. Exits 1
when any test failed or errored, or when discovery found no test at all (a suite that ran nothing
has not passed).
"""

from __future__ import annotations

import json
import sys
import unittest


def main(argv: list) -> int:
    if len(argv) != 3:
        print("usage: pyunit.py START_DIR RESULT_FILE", file=sys.stderr)
        return 2
    start_dir, result_file = argv[1], argv[2]
    suite = unittest.defaultTestLoader.discover(start_dir)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stderr).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = [[test.id(), reason] for test, reason in result.skipped]
    passed = result.testsRun - failed - len(skipped)
    with open(result_file, "w", encoding="utf-8") as f:
        json.dump({"suite": start_dir, "passed": passed, "failed": failed, "skipped": skipped}, f)
    if result.testsRun == 0:
        print(f"pyunit: no test found under {start_dir}", file=sys.stderr)
        return 1
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
