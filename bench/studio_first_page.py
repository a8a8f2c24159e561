"""Berth Studio's first page on loopback: bytes per page and how long it takes.

    BERTH_BIN=target/release/berth "$(bash scripts/studio-python.sh)" bench/studio_first_page.py [--runs 50]

Starts a server, signs in over HTTP, then prints
- the bytes of the console page and each embedded asset (what one page load fetches),
- over HTTP (urllib, keep-alive off): the time for `GET /` with the session and for the page plus
  its assets one after another (p50/p90/max),
- in headless Chromium (Playwright pointed at /usr/bin/chromium): a cold navigation to `/#/services`
  with no cache, until the services table is on screen (p50/p90/max), with the browser's own
  responseEnd / DOMContentLoaded / load marks of the last run.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python", "studio_tests"))

from _studio import Studio  # noqa: E402

ASSETS = ["/studio/assets/app.js", "/studio/assets/app.css", "/studio/assets/icon.svg"]


def quantiles(xs: "list[float]") -> str:
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, int(len(xs) * 0.9))]
    return f"p50 {statistics.median(xs):.2f} ms, p90 {p90:.2f} ms, max {xs[-1]:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    studio = Studio()
    try:
        url = urllib.parse.urlparse(studio.endpoint)
        conn = http.client.HTTPConnection(url.hostname, url.port)
        conn.request("POST", "/studio/signin", body="token=" + studio.token, headers={"Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        response.read()
        cookie = (response.getheader("Set-Cookie") or "").split(";")[0]
        conn.close()

        def get(path: str) -> int:
            c = http.client.HTTPConnection(url.hostname, url.port)
            c.request("GET", path, headers={"Cookie": cookie})
            body = c.getresponse().read()
            c.close()
            return len(body)

        sizes = {"/": get("/")}
        for asset in ASSETS:
            sizes[asset] = get(asset)
        for path, size in sizes.items():
            print(f"{path:28s} {size:7d} bytes")
        print(f"{'total per page':28s} {sum(sizes.values()):7d} bytes ({sum(sizes.values()) / 1024:.1f} KiB)")

        page_only, with_assets = [], []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            get("/")
            t1 = time.perf_counter()
            for asset in ASSETS:
                get(asset)
            t2 = time.perf_counter()
            page_only.append((t1 - t0) * 1000)
            with_assets.append((t2 - t0) * 1000)
        print(f"HTTP GET / (signed in): {quantiles(page_only)}")
        print(f"HTTP page + assets, sequential: {quantiles(with_assets)}")

        ctx = studio.context()
        page, _ = studio.page(ctx)
        studio.sign_in(page)
        browser_ms = []
        shown_ms = []
        marks = {}
        for _ in range(max(5, args.runs // 5)):
            client = ctx.new_cdp_session(page)
            client.send("Network.setCacheDisabled", {"cacheDisabled": True})
            page.goto("about:blank")
            t0 = time.perf_counter()
            page.goto(studio.endpoint + "/#/services")
            page.wait_for_selector("#svc-list table, #svc-list .empty")
            browser_ms.append((time.perf_counter() - t0) * 1000)
            marks = page.evaluate(
                "() => { const n = performance.getEntriesByType('navigation')[0];"
                " const shown = performance.getEntriesByName('studio:services-shown')[0];"
                " return {responseEnd: n.responseEnd, domContentLoaded: n.domContentLoadedEventEnd, load: n.loadEventEnd,"
                " listShown: shown ? shown.startTime : NaN}; }"
            )
            shown_ms.append(marks["listShown"])
            client.detach()
        print(f"Chromium, in-page time from navigation start to the list on screen: {quantiles(shown_ms)}")
        print(f"Chromium cold load of /#/services until the list shows: {quantiles(browser_ms)}")
        print("last run's marks (ms from navigation start): " + ", ".join(f"{k} {v:.1f}" for k, v in marks.items()))
        ctx.close()
    finally:
        studio.close()


if __name__ == "__main__":
    main()
