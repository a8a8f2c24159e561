"""Berth Studio in a real browser (headless Chromium from the system packages, Playwright for
Python) against a real ``berth server`` with real Python workers.

Run: ``BERTH_BIN=$PWD/target/debug/berth "$(bash scripts/studio-python.sh)" -m unittest discover -s python/studio_tests -v``
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import unittest
from typing import List

from _studio import PYTHON_ROOT, SHOTS, Studio, wait_js, wait_operation, wait_until


def _python_with_requests() -> "str | None":
    """An interpreter that can import ``requests`` (this one, or ``python3``), if any."""
    for python in (sys.executable, shutil.which("python3")):
        if python and subprocess.run([python, "-c", "import requests"], capture_output=True).returncode == 0:
            return python
    return None


class StudioTest(unittest.TestCase):
    studio: Studio

    @classmethod
    def setUpClass(cls) -> None:
        cls.studio = Studio()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.studio.close()

    def assertNoConsoleErrors(self, errors: List[str]) -> None:
        self.assertEqual(errors, [], "the console logged errors")

    def test_1_sign_in_csrf_refusal_and_sign_out(self) -> None:
        s = self.studio
        ctx = s.context()
        page, errors = s.page(ctx)
        page.goto("/")
        # Signed out: the sign-in form and nothing else.
        self.assertEqual(page.locator("#token").count(), 1)
        self.assertEqual(page.locator("header nav").count(), 0)
        s.shot(page, "00-sign-in")
        page.fill("#token", "berth_not-the-token")
        page.click("button[type=submit]")
        self.assertIn("not this workspace's token", page.inner_text("#signin-error"))
        s.shot(page, "01-sign-in-error")
        errors.clear()  # the 401 answer to the wrong token is logged by the browser as a failed load
        s.sign_in(page)
        self.assertEqual(page.inner_text("#main h1"), "Services")
        cookies = {c["name"]: c for c in ctx.cookies()}
        self.assertTrue(cookies["berth_session"]["httpOnly"])
        self.assertEqual(cookies["berth_session"]["sameSite"], "Strict")
        self.assertNotIn(s.token, page.url)
        # The script cannot read the session cookie.
        self.assertNotIn("berth_session", page.evaluate("document.cookie"))
        self.assertNoConsoleErrors(errors)

        # A change without the CSRF header is refused by the server and changes nothing.
        refused = page.evaluate(
            """async () => {
                const r = await fetch('/v1/webhooks', {method: 'POST', headers: {'Content-Type': 'application/json'},
                    body: JSON.stringify({url: 'https://example.com/x', events: []})});
                return [r.status, await r.json()];
            }"""
        )
        self.assertEqual(refused[0], 403, refused)
        self.assertEqual(refused[1]["code"], "forbidden")
        status, hooks = s.api("GET", "/v1/webhooks")
        self.assertEqual(hooks["webhooks"], [])
        # With the page's token it goes through (the console's own path).
        allowed = page.evaluate(
            """async () => {
                const csrf = document.querySelector('meta[name="berth-csrf"]').content;
                const r = await fetch('/v1/webhooks', {method: 'POST', headers: {'Content-Type': 'application/json', 'X-Berth-CSRF': csrf},
                    body: JSON.stringify({url: 'https://example.com/csrf-ok', events: []})});
                return r.status;
            }"""
        )
        self.assertEqual(allowed, 201)

        errors.clear()
        page.click("#signout")
        page.wait_for_selector("#token")
        self.assertEqual(page.locator("header nav").count(), 0)
        after = page.evaluate("async () => (await fetch('/v1/services')).status")
        self.assertEqual(after, 401)
        ctx.close()

    def test_2_studio_login_link_signs_in_once(self) -> None:
        s = self.studio
        url = s.cli("studio", "login").stdout.strip()
        self.assertIn("/studio/signin?code=", url)
        ctx = s.context()
        page, errors = s.page(ctx)
        page.goto(url)
        page.wait_for_selector("#main h1")
        self.assertNotIn("code=", page.url, "no secret stays in the address bar")
        self.assertNoConsoleErrors(errors)
        other = s.context()
        page2, _ = s.page(other)
        page2.goto(url)
        self.assertIn("already used", page2.inner_text("#signin-error"))
        other.close()
        ctx.close()

    def test_3_services_update_failure_logs_keys_and_every_page(self) -> None:
        s = self.studio
        s.deploy("studio-svc", "studio-model")
        key = s.api("GET", "/v1/services/studio-svc/keys")[1]["primaryKey"]
        ctx = s.context()
        page, errors = s.page(ctx)
        s.sign_in(page)

        # Deployed with the CLI, seen in the list.
        row = page.locator('tr[data-service="studio-svc"]')
        row.wait_for()
        self.assertIn("Healthy", row.inner_text())
        self.assertIn("r1 · 100 %", row.inner_text())
        page.fill("#svc-search", "no-such-thing")
        self.assertEqual(page.locator('tr[data-service="studio-svc"]').count(), 0)
        page.fill("#svc-search", "studio")
        self.assertEqual(page.locator('tr[data-service="studio-svc"]').count(), 1)

        # A little traffic so that the sparklines and charts have data.
        for _ in range(5):
            self.assertEqual(s.score("studio-svc", {"data": [1]}, key)[0], 200)
        time.sleep(5.5)
        page.reload()
        page.locator('tr[data-service="studio-svc"]').wait_for()
        s.shot(page, "10-services")

        # Overview.
        page.click('a[href="#/services/studio-svc"]')
        page.wait_for_selector("#scoring-uri")
        self.assertTrue(page.inner_text("#scoring-uri").endswith("/api/v1/service/studio-svc/score"))
        self.assertIn("1 ready / 1 desired", page.inner_text("#main"))
        s.shot(page, "11-service-overview")

        # Logs: a line printed by run() arrives in the live tail.
        page.goto("/#/services/studio-svc/logs")
        page.wait_for_selector("#tail-status")
        wait_until("the tail to connect", lambda: page.inner_text("#tail-status") == "live", timeout=10)
        marker = "m-%d" % int(time.time() * 1000)
        self.assertEqual(s.score("studio-svc", {"marker": marker}, key)[0], 200)
        wait_js(page, "m => document.querySelector('#log-tail').textContent.includes('scored marker ' + m)", marker, timeout=20)
        s.shot(page, "12-service-logs")

        # Test tab: prefilled body, send, status and revision shown.
        page.goto("/#/services/studio-svc/test")
        wait_js(page, "() => document.querySelector('#test-body') && document.querySelector('#test-body').value.length > 0")
        page.click("#test-send")
        page.wait_for_selector("#test-status")
        self.assertIn("200", page.inner_text("#test-status"))
        self.assertEqual(page.inner_text("#test-revision"), "r1")
        s.shot(page, "13-service-test")

        # Update through the form under a bounded load: ends Healthy on r2, no failed request.
        s.write("studio-model-2/model.txt", "v2\n")
        s.cli("model", "register", "-n", "studio-model", "-p", "studio-model-2/model.txt")
        failures: List[str] = []
        served = {"ok": 0}
        stop = threading.Event()

        def load() -> None:
            deadline = time.monotonic() + 120
            while not stop.is_set() and time.monotonic() < deadline:
                status, _, body = s.score("studio-svc", {"data": [1]}, key)
                if status == 200:
                    served["ok"] += 1
                else:
                    failures.append(f"{status}: {body[:200]!r}")
                time.sleep(0.02)

        workers = [threading.Thread(target=load, daemon=True) for _ in range(2)]
        for w in workers:
            w.start()
        try:
            page.goto("/#/services/studio-svc/update")
            page.wait_for_selector("#upd-model")
            page.select_option("#upd-model", "studio-model:2")
            page.click("#upd-submit")
            page.wait_for_selector('#operation[data-state]:not([data-state="Running"]):not([data-state="NotStarted"])', timeout=180000)
            self.assertEqual(page.get_attribute("#operation", "data-state"), "Succeeded", page.inner_text("#update-progress"))
            page.wait_for_selector("#update-outcome")
            outcome = page.inner_text("#update-outcome")
            self.assertIn("Healthy", outcome)
            self.assertIn("r2 · 100 %", outcome)
        finally:
            stop.set()
            for w in workers:
                w.join(timeout=40)
        self.assertEqual(failures, [], "requests failed during the update")
        self.assertGreater(served["ok"], 0)
        s.shot(page, "14-service-update-succeeded")

        # A failing update: the reason is shown and r2 keeps serving.
        s.write("studio-model-3/model.txt", "broken\n")
        s.cli("model", "register", "-n", "studio-model", "-p", "studio-model-3/model.txt")
        page.goto("/#/services/studio-svc/overview")
        page.goto("/#/services/studio-svc/update")
        page.wait_for_selector("#upd-model")
        page.select_option("#upd-model", "studio-model:3")
        page.click("#upd-submit")
        page.wait_for_selector('#operation[data-state]:not([data-state="Running"]):not([data-state="NotStarted"])', timeout=180000)
        self.assertEqual(page.get_attribute("#operation", "data-state"), "Failed")
        progress = page.inner_text("#update-progress")
        self.assertIn("the model file says broken", progress)
        page.wait_for_selector("#update-outcome")
        self.assertIn("r2 · 100 %", page.inner_text("#update-outcome"))
        status, headers, _ = s.score("studio-svc", {"data": [1]}, key)
        self.assertEqual((status, headers.get("x-berth-revision")), (200, "2"))
        s.shot(page, "15-service-update-failed")
        page.goto("/#/services/studio-svc/overview")
        page.wait_for_selector("#service-error")
        self.assertIn("Revision r2 is still serving", page.inner_text("#service-error"))
        s.shot(page, "16-service-overview-failed")

        # Keys: masked, revealed, regenerated after confirmation.
        page.goto("/#/services/studio-svc/keys")
        page.wait_for_selector("#key-primary")
        self.assertNotIn(key, page.inner_text("#key-primary"))
        page.click("text=Reveal >> nth=0")
        self.assertEqual(page.inner_text("#key-primary"), key)
        page.click("#regen-primary")
        page.wait_for_selector('#operation[data-state="Succeeded"]', timeout=60000)
        new_key = s.api("GET", "/v1/services/studio-svc/keys")[1]["primaryKey"]
        self.assertNotEqual(new_key, key)
        self.assertEqual(s.score("studio-svc", {"data": [1]}, key)[0], 401)
        self.assertEqual(s.score("studio-svc", {"data": [1]}, new_key)[0], 200)
        wait_js(page, "k => !document.querySelector('#key-primary').textContent.includes(k)", key)
        s.shot(page, "17-service-keys")

        # Every other tab and page renders without a console error.
        for tab in ["revisions", "traffic", "metrics", "events", "consume"]:
            page.goto(f"/#/services/studio-svc/{tab}")
            page.wait_for_selector('.tabs a[aria-current="page"]')
            page.wait_for_timeout(600)
            s.shot(page, f"2{['revisions', 'traffic', 'metrics', 'events', 'consume'].index(tab)}-service-{tab}")
        page.goto("/#/services/studio-svc/revisions")
        page.wait_for_selector('li[data-revision="3"]')
        self.assertIn("serving", page.inner_text('li[data-revision="2"]'))
        self.assertIn("change(s) from r1", page.inner_text('li[data-revision="2"]'))
        page.goto("/#/services/studio-svc/consume")
        page.wait_for_selector("#snippet-curl")
        self.assertIn("/api/v1/service/studio-svc/score", page.inner_text("#snippet-curl"))
        self.assertIn("Authorization: Bearer", page.inner_text("#snippet-curl"))
        # The snippets run as shown, once the key placeholder is filled in.
        placeholder = "<primary key from the Keys tab>"
        curl = page.inner_text("#snippet-curl").replace(placeholder, new_key)
        ran = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60)
        self.assertEqual(json.loads(ran.stdout), {"model": "v2"}, ran.stderr)
        py = page.inner_text("#snippet-python").replace(placeholder, new_key)
        with_requests = _python_with_requests()
        if with_requests is None:
            print("SKIPPED LOUDLY: no Python with `requests` here; the Python requests snippet was not run", file=sys.stderr)
        else:
            ran = subprocess.run([with_requests, "-c", py], capture_output=True, text=True, timeout=60)
            self.assertIn("{'model': 'v2'}", ran.stdout, ran.stderr)
        sdk_dir = os.path.join(s.work, "sdk-snippet")
        os.makedirs(sdk_dir, exist_ok=True)
        shutil.copy(s.server.config_path, os.path.join(sdk_dir, "config.json"))
        env = dict(os.environ, PYTHONPATH=PYTHON_ROOT)
        ran = subprocess.run(["python3", "-c", page.inner_text("#snippet-sdk")], cwd=sdk_dir, env=env, capture_output=True, text=True, timeout=60)
        self.assertIn("/api/v1/service/studio-svc/score", ran.stdout, ran.stderr)
        self.assertIn("v2", ran.stdout, ran.stderr)
        for name in ["models", "environments", "events", "webhooks"]:
            page.goto(f"/#/{name}")
            page.wait_for_selector("#main h1")
            page.wait_for_timeout(600)
            s.shot(page, f"3{['models', 'environments', 'events', 'webhooks'].index(name)}-{name}")
        page.goto("/#/models")
        page.wait_for_selector('tr[data-model="studio-model:2"]')
        self.assertIn("studio-svc", page.inner_text('tr[data-model="studio-model:2"]'))
        page.goto("/#/events")
        page.wait_for_selector('#events-table tr[data-event]')
        self.assertIn("operation.failed", page.inner_text("#events-table"))
        # The feed is live: a registration made now appears without a reload.
        s.write("studio-live/model.txt", "live\n")
        s.cli("model", "register", "-n", "studio-live", "-p", "studio-live/model.txt")
        wait_js(page, "() => document.querySelector('#events-table tbody tr').textContent.includes('studio-live')", timeout=20)
        # The charts are live too: a new sample shows up within a few seconds.
        page.goto("/#/services/studio-svc/metrics")
        page.wait_for_selector("figure.chart")
        first = page.inner_text("figure.chart >> nth=0")
        wait_js(page, "t => document.querySelector('figure.chart') && document.querySelector('figure.chart').textContent !== t", first, timeout=15)
        # The live tail follows the service across a change of replicas (a redeploy).
        page.goto("/#/services/studio-svc/logs")
        page.wait_for_selector("#tail-status")
        wait_until("the tail to connect", lambda: page.inner_text("#tail-status") == "live", timeout=10)
        s.cli("service", "redeploy", "-n", "studio-svc")
        marker = "after-redeploy-%d" % int(time.time() * 1000)
        self.assertEqual(s.score("studio-svc", {"marker": marker}, new_key)[0], 200)
        wait_js(page, "m => document.querySelector('#log-tail').textContent.includes('scored marker ' + m)", marker, timeout=30)
        self.assertGreaterEqual(int(page.get_attribute("#log-tail", "data-connections") or 0), 2, "the tail reconnected")
        self.assertNoConsoleErrors(errors)
        ctx.close()

        # A phone-sized screen.
        phone = s.context(390, 844)
        page, errors = s.page(phone)
        s.sign_in(page)
        page.locator('tr[data-service="studio-svc"]').wait_for()
        s.shot(page, "40-phone-services")
        page.goto("/#/services/studio-svc/overview")
        page.wait_for_selector("#scoring-uri")
        s.shot(page, "41-phone-service-overview")
        for n, where in enumerate(["services/studio-svc/keys", "services/studio-svc/update", "models", "events", "services/studio-svc/traffic"]):
            page.goto(f"/#/{where}")
            page.wait_for_selector(".view h1")
            page.wait_for_timeout(500)
            s.shot(page, f"4{n + 2}-phone-{where.replace('/', '-')}")
            width = page.evaluate("document.documentElement.scrollWidth")
            self.assertLessEqual(width, 390, f"{where} scrolls sideways on a phone")
        self.assertNoConsoleErrors(errors)
        phone.close()

        # Dark scheme.
        dark = s.browser.new_context(viewport={"width": 1280, "height": 800}, base_url=s.endpoint, color_scheme="dark")
        page, errors = s.page(dark)
        s.sign_in(page)
        page.locator('tr[data-service="studio-svc"]').wait_for()
        s.shot(page, "50-dark-services")
        page.goto("/#/services/studio-svc/traffic")
        page.wait_for_selector('#traffic-live tr[data-revision="2"]')
        s.shot(page, "51-dark-service-traffic")
        self.assertNoConsoleErrors(errors)
        dark.close()
        self.assertTrue(os.listdir(SHOTS))

    def test_4_keyboard_reaches_the_sections(self) -> None:
        s = self.studio
        ctx = s.context()
        page, errors = s.page(ctx)
        s.sign_in(page)
        # Tab from the top: the skip link, the brand, then the section links in order.
        focused = []
        for _ in range(8):
            page.keyboard.press("Tab")
            focused.append(page.evaluate("document.activeElement.textContent.trim()"))
        for section in ["Services", "Models", "Environments", "Events", "Webhooks"]:
            self.assertIn(section, focused)
        # Enter on a focused section link opens it.
        page.focus('header nav a[href="#/webhooks"]')
        page.keyboard.press("Enter")
        wait_js(page, "() => document.querySelector('#main h1') && document.querySelector('#main h1').textContent === 'Webhooks'")
        outline = page.evaluate(
            "() => { const a = document.querySelector('header nav a[href=\"#/models\"]'); a.focus(); return getComputedStyle(a).outlineStyle; }"
        )
        self.assertNotEqual(outline, "none", "focus is visible")
        self.assertTrue(re.match(r".*#/webhooks$", page.url))
        self.assertNoConsoleErrors(errors)
        ctx.close()

    def test_5_errors_show_the_server_message_and_webhooks_add_and_remove(self) -> None:
        s = self.studio
        ctx = s.context()
        page, errors = s.page(ctx)
        s.sign_in(page)
        page.goto("/#/webhooks")
        page.wait_for_selector("#webhook-form")
        page.fill("#wh-url", "ftp://example.com/hook")
        page.click("#webhook-form button[type=submit]")
        page.wait_for_selector("#main .error")
        self.assertIn("has scheme `ftp`", page.inner_text("#main .error"))
        self.assertIn("invalid_argument", page.inner_text("#main .error"))
        s.shot(page, "34-webhooks-error")
        errors.clear()  # the browser logs the 400 answer itself as a failed load
        page.fill("#wh-url", "https://example.com/studio-hook")
        page.check('input[name="wh-event"][value="operation.failed"]')
        page.click("#webhook-form button[type=submit]")
        page.wait_for_selector("#wh-created-secret")
        self.assertGreater(len(page.inner_text("#wh-created-secret")), 10)
        hooks = s.api("GET", "/v1/webhooks")[1]["webhooks"]
        added = [h for h in hooks if h["url"] == "https://example.com/studio-hook"]
        self.assertEqual([h["events"] for h in added], [["operation.failed"]])
        row = page.locator(f'tr[data-webhook="{added[0]["id"]}"]')
        row.wait_for()
        s.shot(page, "35-webhooks-added")
        row.locator("button").click()
        row.wait_for(state="detached")
        self.assertNotIn(added[0]["id"], [h["id"] for h in s.api("GET", "/v1/webhooks")[1]["webhooks"]])
        self.assertNoConsoleErrors(errors)
        ctx.close()

    def test_6_text_meets_wcag_aa_contrast_in_light_and_dark(self) -> None:
        s = self.studio
        for scheme in ("light", "dark"):
            ctx = s.browser.new_context(viewport={"width": 1280, "height": 800}, base_url=s.endpoint, color_scheme=scheme)
            page, errors = s.page(ctx)
            s.sign_in(page)
            ratios = page.evaluate(CONTRAST_JS)
            low = {name: round(r, 2) for name, r in ratios.items() if r < 4.5}
            self.assertEqual(low, {}, f"{scheme}: text below 4.5:1 ({ratios})")
            self.assertNoConsoleErrors(errors)
            ctx.close()


    def test_7_traffic_split_set_in_the_ui_and_a_canary_promoted_and_aborted(self) -> None:
        s = self.studio
        s.deploy("studio-split", "split-model", auth=False)
        s.write("split-model-2/model.txt", "v2\n")
        s.cli("model", "register", "-n", "split-model", "-p", "split-model-2/model.txt")
        self.assertEqual(wait_operation(s, s.patch_service("studio-split", {"models": ["split-model:2"]}))["state"], "Succeeded")
        ctx = s.context()
        page, errors = s.page(ctx)
        s.sign_in(page)
        page.goto("/#/services/studio-split/traffic")
        page.wait_for_selector('#traffic-live tr[data-revision="2"]')
        self.assertIn("100 %", page.inner_text('#traffic-live tr[data-revision="2"]'))
        self.assertIn("1 ready / 1 desired", page.inner_text('#traffic-live tr[data-revision="2"]'))

        # Weights that do not add up to 100 are refused in the page, before anything is sent.
        page.fill("#split-w-1", "70")
        page.fill("#split-w-2", "20")
        self.assertEqual(page.inner_text("#split-sum"), "Sum: 90 %")
        page.click("#split-submit")
        page.wait_for_selector("#split-error .error")
        self.assertIn("add up to 90 %", page.inner_text("#split-error"))
        self.assertIn("nothing was sent", page.inner_text("#split-error"))
        self.assertEqual(page.locator("#traffic-op #operation").count(), 0)
        self.assertEqual([e["weight"] for e in s.api("GET", "/v1/services/studio-split/traffic")[1]["revisions"]], [100])
        # What only the server knows is shown with its message: one name for two revisions.
        page.fill("#split-w-2", "30")
        page.fill("#split-n-1", "blue")
        page.fill("#split-n-2", "blue")
        page.click("#split-submit")
        page.wait_for_selector("#split-error .error")
        self.assertIn("given to revisions 1 and 2", page.inner_text("#split-error"))
        self.assertIn("invalid_argument", page.inner_text("#split-error"))
        s.shot(page, "60-traffic-split-refused")
        errors.clear()  # the browser logs the 400 answer itself as a failed load
        page.fill("#split-n-2", "green")
        page.click("#split-submit")
        page.wait_for_selector('#traffic-op #operation[data-state]:not([data-state="Running"]):not([data-state="NotStarted"])', timeout=180000)
        self.assertEqual(page.get_attribute("#traffic-op #operation", "data-state"), "Succeeded", page.inner_text("#traffic-op"))
        # The split is what `berth service traffic` reports.
        shown = json.loads(s.cli("service", "traffic", "-n", "studio-split", "-o", "json").stdout)
        self.assertEqual({e["revision"]: (e["weight"], e.get("name")) for e in shown["revisions"]}, {1: (70, "blue"), 2: (30, "green")})
        wait_js(page, "() => (document.querySelector('#traffic-live tr[data-revision=\"1\"]') || {}).textContent.includes('70 %')", timeout=15)
        self.assertIn("30 %", page.inner_text('#traffic-live tr[data-revision="2"]'))
        self.assertIn("blue", page.inner_text('#traffic-live tr[data-revision="1"]'))
        for _ in range(20):
            self.assertEqual(s.score("studio-split", {"data": [1]})[0], 200)
        s.shot(page, "61-traffic-split")
        # The list shows both weights.
        page.goto("/#/services")
        row = page.locator('tr[data-service="studio-split"]')
        row.wait_for()
        self.assertIn("r1 · 70 % blue", row.inner_text())
        self.assertIn("r2 · 30 % green", row.inner_text())
        # Both versions are served by the split service.
        page.goto("/#/models")
        for version in ("split-model:1", "split-model:2"):
            page.wait_for_selector(f'tr[data-model="{version}"]')
            self.assertIn("studio-split", page.inner_text(f'tr[data-model="{version}"]'))

        # A canary started through the API: its step, weights, bake and gates show in the
        # panel, refreshed live; promoting it from the page ends the operation Succeeded.
        s.deploy("studio-canary", "canary-model", auth=False)
        s.write("canary-model-2/model.txt", "c2\n")
        s.cli("model", "register", "-n", "canary-model", "-p", "canary-model-2/model.txt")
        rollout = {"strategy": "canary", "canaryPercent": 30, "bake": "10m", "minRequests": 5, "maxP99Ms": 5000}
        op = s.patch_service("studio-canary", {"models": ["canary-model:2"], "rollout": rollout})
        wait_until("the canary to bake", lambda: (s.api("GET", "/v1/services/studio-canary")[1].get("rolloutStatus") or {}).get("phase") == "baking")
        page.goto("/#/services/studio-canary/traffic")
        page.wait_for_selector("#rollout-promote")
        self.assertIn("canary of r2 (replacing r1)", page.inner_text("#rollout-strategy"))
        self.assertIn("1 of 1 · baking", page.inner_text("#rollout-step"))
        self.assertEqual(page.inner_text("#rollout-weights"), "r1 70 % · r2 30 %")
        self.assertIn("(in ", page.inner_text("#rollout-bake"))
        self.assertIn("pending", page.inner_text('#rollout tr[data-gate="errorRate"]'))
        # 80 requests at 30 %: the candidate gets its 5 (minRequests) all but surely.
        for _ in range(80):
            self.assertEqual(s.score("studio-canary", {"data": [1]})[0], 200)
        # The gates are judged once the candidate answered minRequests, and the page follows.
        wait_js(page, "() => (document.querySelector('#rollout tr[data-gate=\"errorRate\"]') || {}).textContent.includes('passing')", timeout=20)
        self.assertIn("passing", page.inner_text('#rollout tr[data-gate="p99Latency"]'))
        self.assertIn("≤ 5000.0 ms", page.inner_text('#rollout tr[data-gate="p99Latency"]'))
        self.assertEqual(page.get_attribute("#traffic-op #operation", "data-operation"), op)
        s.shot(page, "62-traffic-canary-baking")
        # The overview says a rollout runs, with its step, and links to the panel.
        page.goto("/#/services/studio-canary/overview")
        page.wait_for_selector("#overview-rollout")
        self.assertIn("canary of r2: step 1 of 1, baking", page.inner_text("#overview-rollout"))
        self.assertIn("r1 · 70 %, r2 · 30 % (candidate)", page.inner_text("#main"))
        page.click("#overview-rollout a")
        page.wait_for_selector("#rollout-promote")
        page.click("#rollout-promote")
        page.wait_for_selector('#traffic-op #operation[data-state]:not([data-state="Running"]):not([data-state="NotStarted"])', timeout=60000)
        self.assertEqual(page.get_attribute("#traffic-op #operation", "data-state"), "Succeeded", page.inner_text("#traffic-op"))
        wait_js(page, "() => document.querySelector('#rollout').textContent.includes('No rollout is running')", timeout=15)
        after = s.api("GET", "/v1/services/studio-canary")[1]
        self.assertEqual((after["servingRevision"], after["state"], after["traffic"]), (2, "Healthy", [{"revision": 2, "weight": 100, "role": "stable"}]))
        s.shot(page, "63-traffic-canary-promoted")

        # A canary started from the Update form's rollout fields, aborted from the panel:
        # the operation ends RolledBack, shown as such with its reason, and r2 keeps serving.
        s.write("canary-model-3/model.txt", "c3\n")
        s.cli("model", "register", "-n", "canary-model", "-p", "canary-model-3/model.txt")
        page.goto("/#/services/studio-canary/update")
        page.wait_for_selector("#upd-strategy")
        page.select_option("#upd-model", "canary-model:3")
        page.select_option("#upd-strategy", "canary")
        page.fill("#upd-canary", "20")
        page.fill("#upd-bake", "10m")
        page.click("#upd-submit")
        page.wait_for_selector("#update-progress .op-rollout:not([hidden])", timeout=120000)
        self.assertIn("canary rollout of r3", page.inner_text("#update-progress .op-rollout"))
        self.assertIn('"canaryPercent":20', page.inner_text("#update-progress"))
        s.shot(page, "64-update-canary-running")
        page.goto("/#/services/studio-canary/traffic")
        page.wait_for_selector("#rollout-abort")
        wait_js(page, "() => document.querySelector('#rollout-weights').textContent === 'r2 80 % · r3 20 %'", timeout=30)
        page.click("#rollout-abort")
        page.wait_for_selector('#traffic-op #operation[data-state="RolledBack"]', timeout=60000)
        self.assertIn("RolloutAborted", page.inner_text("#rolled-back"))
        self.assertIn("Traffic is back on r2", page.inner_text("#rolled-back"))
        status, headers, body = s.score("studio-canary", {"data": [1]})
        self.assertEqual((status, headers.get("x-berth-revision"), json.loads(body)), (200, "2", {"model": "c2"}))
        s.shot(page, "65-traffic-canary-rolled-back")

        # A candidate whose run() fails is rolled back by its error-rate gate: the panel
        # follows the rollout to RolledBack and shows the gate's message.
        s.write("canary-model-4/model.txt", "failing\n")
        s.cli("model", "register", "-n", "canary-model", "-p", "canary-model-4/model.txt")
        page.goto("/#/services/studio-canary/traffic")
        page.wait_for_selector("#rollout")
        op = s.patch_service("studio-canary", {"models": ["canary-model:4"], "rollout": {"strategy": "canary", "canaryPercent": 50, "bake": "2m", "minRequests": 5}})
        page.wait_for_selector(f'#traffic-op #operation[data-operation="{op}"]', timeout=60000)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and s.api("GET", f"/v1/operations/{op}")[1]["state"] == "Running":
            for _ in range(10):
                s.score("studio-canary", {"data": [1]})
        page.wait_for_selector('#traffic-op #operation[data-state="RolledBack"]', timeout=30000)
        gate = page.inner_text("#rolled-back")
        self.assertIn("GateFailed", gate)
        self.assertIn("errorRate", gate)
        self.assertIn("threshold", gate)
        self.assertEqual(s.score("studio-canary", {"data": [1]})[1].get("x-berth-revision"), "2")
        # The revision made meanwhile is offered by the forms without a reload.
        page.wait_for_selector("#split-w-4")
        self.assertEqual(page.input_value("#split-w-4"), "0")
        self.assertEqual(page.input_value("#split-w-2"), "100")
        self.assertIn("r4", page.inner_text("#rollback-to"))
        s.shot(page, "67-traffic-gate-rolled-back")

        # Shadow traffic: started and stopped from the panel, with its figures.
        page.goto("/#/services/studio-canary/traffic")
        page.wait_for_selector("#mirror-form")
        page.select_option("#mirror-revision", "1")
        page.fill("#mirror-percent", "100")
        page.click("#mirror-form button[type=submit]")
        page.wait_for_selector("#mirror-summary", timeout=120000)
        self.assertFalse(page.is_visible("#mirror-form"), "no second mirror while one runs")
        for _ in range(10):
            self.assertEqual(s.score("studio-canary", {"data": [1]})[0], 200)
        wait_js(page, "() => / [1-9][0-9]* answered differently/.test(document.querySelector('#mirror-summary').textContent)", timeout=20)
        page.click("#mirror-diffs-show")
        page.wait_for_selector("#mirror-diffs table")
        diffs = page.inner_text("#mirror-diffs")
        self.assertIn("c2", diffs)
        self.assertIn("v1", diffs)
        s.shot(page, "66-traffic-mirror")
        page.click("#mirror-stop")
        wait_js(page, "() => document.querySelector('#mirror').textContent.includes('Nothing is mirrored')", timeout=20)
        self.assertIsNone(s.api("GET", "/v1/services/studio-canary")[1].get("mirror"))
        self.assertNoConsoleErrors(errors)
        ctx.close()

    def test_8_models_show_their_aliases_when_the_registry_reports_them(self) -> None:
        s = self.studio
        s.write("alias-model/model.txt", "a\n")
        s.cli("model", "register", "-n", "alias-model", "-p", "alias-model/model.txt")
        ctx = s.context()
        page, errors = s.page(ctx)
        s.sign_in(page)
        page.goto("/#/models")
        page.wait_for_selector('tr[data-model="alias-model:1"]')
        listed = s.api("GET", "/v1/models")[1]["value"]
        if not any("aliases" in m for m in listed):
            # A registry without aliases: no column for them.
            self.assertNotIn("Aliases", page.inner_text("#main thead"))

        # The same answer with aliases added (as the registry reports them once it has them).
        def with_aliases(route) -> None:
            answer = route.fetch().json()
            for m in answer["value"]:
                m["aliases"] = ["champion", "latest"] if m["id"] == "alias-model:1" else []
            route.fulfill(json=answer)

        page.route("**/v1/models", with_aliases)
        page.reload()
        page.wait_for_selector('tr[data-model="alias-model:1"]')
        self.assertIn("Aliases", page.inner_text("#main thead"))
        self.assertIn("alias-model@champion", page.inner_text('tr[data-model="alias-model:1"] td.aliases'))
        s.shot(page, "36-models-aliases")
        self.assertNoConsoleErrors(errors)
        ctx.close()


# Contrast ratios (WCAG 2) of the console's text styles against the background they sit on.
CONTRAST_JS = """() => {
  const parse = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const bgOf = (el) => {
    for (; el; el = el.parentElement) {
      const c = getComputedStyle(el).backgroundColor;
      if (c && c !== 'transparent' && !/,\\s*0\\)$/.test(c)) return parse(c);
    }
    return [255, 255, 255];
  };
  const ratio = (el) => {
    const a = lum(parse(getComputedStyle(el).color)); const b = lum(bgOf(el));
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  };
  const host = document.createElement('div');
  host.innerHTML = '<p>body</p><p class="muted">muted</p><a href="#/models">link</a>' +
    '<span class="badge ok">ok</span><span class="badge busy">busy</span><span class="badge warn">warn</span>' +
    '<span class="badge bad">bad</span><span class="badge neutral">neutral</span><span class="chip">chip</span>' +
    '<button>primary</button><button class="secondary">secondary</button><button class="danger">danger</button>' +
    '<div class="error"><strong>error</strong><p class="hint">hint</p></div><div class="notice">notice</div>' +
    '<div class="rolled-back"><strong>rolled back</strong><p>rolled-back text</p></div>' +
    '<table><thead><tr><th>th</th></tr></thead></table><pre class="code">code</pre>';
  document.getElementById('main').appendChild(host);
  const out = {};
  for (const el of host.querySelectorAll('p, a, span, button, strong, th, div.notice, pre')) out[(el.className || el.tagName) + ':' + el.textContent] = ratio(el);
  out['nav'] = ratio(document.querySelector('header nav a'));
  out['nav-current'] = ratio(document.querySelector('header nav a[aria-current]'));
  out['workspace'] = ratio(document.querySelector('.workspace'));
  host.remove();
  return out;
}"""


if __name__ == "__main__":
    unittest.main()
