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

from _studio import PYTHON_ROOT, SHOTS, Studio, wait_js, wait_until


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
        for n, where in enumerate(["services/studio-svc/keys", "services/studio-svc/update", "models", "events"]):
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
