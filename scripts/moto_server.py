"""Runs moto's S3-compatible server on 127.0.0.1 and a free port for the tests.

Prints the endpoint (``http://127.0.0.1:PORT``) on its first line, then serves until its
standard input closes (so it ends with the test process that started it) or, with
``--parent PID``, until that process has ended.
"""

from __future__ import annotations

import os
import sys
import time

from moto.server import ThreadedMotoServer


def main() -> int:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(f"http://{host}:{port}", flush=True)
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--parent":
        parent = int(args[1])
        while True:
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                break
            time.sleep(1)
    else:
        sys.stdin.read()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
