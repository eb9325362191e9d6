"""A web site tracked by the real browser SDKs: the README's two snippets (analytics.js from
npm `@segment/analytics-next`, RudderStack's `@rudderstack/analytics-js`, both served from
tests/browser/node_modules by a static server on 127.0.0.1, their remote settings replaced
by local ones) in headless Chromium, posting to `leadpulse collect` on the real broker.
What arrived on the input topic is scored by the offline scorer (the worker scores the
same records the same way: tests/integration/test_collector.py).

One browser for the module. Needs `make browser` (npm ci, Chromium): without it the module
is skipped with one line."""

import base64
import contextlib
import functools
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from leadpulse.cli.processes import ROOT, free_port
from tests.integration.browser import chromium_missing, launch_chromium
from tests.integration.harness import read_all, wait_for
from tests.integration.oracle import Oracle

MODULES = ROOT / "tests" / "browser" / "node_modules"
SEGMENT_BUNDLES = MODULES / "@segment" / "analytics-next" / "dist" / "umd"
RUDDER_BUNDLE = MODULES / "@rudderstack" / "analytics-js" / "dist" / "npm" / "modern" / "bundled" / "umd" / "index.js"
KEY = "browser-key-0123456789"
TRAITS = ("email", "title", "seniority")


def _missing() -> str | None:
    if not SEGMENT_BUNDLES.is_dir() or not RUDDER_BUNDLE.is_file():
        return "tests/browser/node_modules missing (`make browser` runs npm ci)"
    return chromium_missing()


if (_why := _missing()) is not None:
    pytest.skip(f"browser tests skipped: {_why}", allow_module_level=True)

from playwright.sync_api import Page  # noqa: E402


def readme_snippets() -> dict[str, str]:
    """The README's HTML snippets of "Track your web site", by SDK."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Track your web site") :]
    section = section[: section.index("\n### ", 5)]
    snippets = re.findall(r"```html\n(.*?)```", section, re.DOTALL)
    return {"segment" if "AnalyticsNext" in s else "rudder": s for s in snippets}


def site_page(snippet: str, collector: str, body: str) -> str:
    """A README snippet pointed at the test's collector, with some page content."""
    host = collector.removeprefix("http://")
    page = snippet.replace("YOUR_BROWSER_KEY", KEY).replace('protocol: "https"', 'protocol: "http"')
    page = page.replace("https://collect.acme.io", collector).replace("collect.acme.io", host)
    return page + body


@contextlib.contextmanager
def static_site(root: Path):
    """A static file server on 127.0.0.1 for `root`, stopped on exit."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *_args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as chromium:
        yield chromium


def messages(settings) -> list[dict]:
    """The input topic's messages, read on a thread of its own (Playwright's loop runs on this one)."""
    with ThreadPoolExecutor(1) as pool:
        records = pool.submit(read_all, settings, settings.input_topic, idle_s=0.5).result()
    return [orjson.loads(value) for _, value in records]


def post_from(page: Page, url: str, body: dict, key: str = KEY) -> str:
    """A call posted by the page's own JavaScript with the browser key: the status it could
    read, or the error the browser raised (CORS)."""
    return page.evaluate(
        """async ([url, body, auth]) => {
            try {
                const answer = await fetch(url, {method: "POST", body: JSON.stringify(body),
                    headers: {"Content-Type": "text/plain", "Authorization": "Basic " + auth}})
                return String(answer.status)
            } catch (error) { return error.name }
        }""",
        [url, body, base64.b64encode(f"{key}:".encode()).decode()],
    )


def test_visits_from_both_sdks_arrive_scored_and_stitched_and_the_key_holds_its_limits(
    browser, make_settings, collectors, tmp_path
):
    site_root, foreign_root = tmp_path / "site", tmp_path / "foreign"
    for root in (site_root, foreign_root):
        (root / "js" / "analytics-next").mkdir(parents=True)
        (root / "js" / "analytics-next" / "bundles").symlink_to(SEGMENT_BUNDLES)
        (root / "js" / "rudderstack").mkdir()
        (root / "js" / "rudderstack" / "index.js").symlink_to(RUDDER_BUNDLE)
    with static_site(site_root) as site, static_site(foreign_root) as foreign:
        keys = tmp_path / "write-keys"
        keys.write_text(f"{KEY}  browser  origins={site}  traits={','.join(TRAITS)}\n")
        # Chromium here says HeadlessChrome: the default counts it as a bot (tests/unit)
        settings = make_settings(write_keys_file=keys, collect_port=free_port(), collect_headless_bots=False)
        collector = collectors(settings)
        snippets = readme_snippets()
        segment = functools.partial(site_page, snippets["segment"], collector.base_url)
        rudder = functools.partial(site_page, snippets["rudder"], collector.base_url)
        (site_root / "index.html").write_text(segment('<a id="pricing" href="/pricing.html">Pricing</a>'))
        (site_root / "pricing.html").write_text(
            segment(
                "<button id=\"signup\" onclick=\"analytics.identify('ada@acme.io', {email: 'ada@acme.io', "
                "title: 'VP Sales', seniority: 'vp'}); analytics.track('Demo Requested')\">Sign up</button>"
            )
        )
        (site_root / "blog.html").write_text(
            rudder("<script>rudder.identify('bob@shop.fr', {email: 'bob@shop.fr', title: 'CTO'})</script>")
        )
        (site_root / "bye.html").write_text("<!doctype html><title>elsewhere</title>")
        (foreign_root / "index.html").write_text(segment(""))

        # analytics.js: a campaign landing, a click to pricing, a sign-up
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{site}/index.html?utm_source=linkedin&utm_medium=cpc&utm_campaign=spring")
        page.click("#pricing")
        page.wait_for_url(f"{site}/pricing.html")
        page.click("#signup")
        ada = wait_for(lambda: _calls(settings, "ada@acme.io", 2), timeout_s=30)
        anonymous_id = page.evaluate("analytics.user().then(user => user.anonymousId())")

        # the key's limits, from the page itself: a trait it may not send, server-only endpoints
        identify = {"userId": "ada@acme.io", "anonymousId": anonymous_id, "traits": {"phone": "+33 6 00 00 00 00"}}
        assert post_from(page, f"{collector.base_url}/v1/i", identify) == "400"
        assert post_from(page, f"{collector.base_url}/v1/identify", identify) == "400"
        group = {"userId": "ada@acme.io", "groupId": "acme"}
        assert post_from(page, f"{collector.base_url}/v1/g", group) == "403"
        assert post_from(page, f"{collector.base_url}/v1/import", {"batch": [group | {"type": "group"}]}) == "403"
        context.close()

        # RudderStack: a page view and an identify queued for sendBeacon, sent as the page unloads
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{site}/blog.html", referer="http://www.google.com/")
        page.wait_for_function("rudder.getAnonymousId && rudder.getAnonymousId()")
        assert _calls(settings, "bob@shop.fr", 1) is None  # queued for the beacon (flushed every 10 min or on unload)
        page.goto(f"{site}/bye.html")
        bob = wait_for(lambda: _calls(settings, "bob@shop.fr", 1), timeout_s=30)
        context.close()

        # another site with the same key: its preflight is refused, its simple POST unreadable and not kept
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{foreign}/index.html")
        assert post_from(page, f"{collector.base_url}/v1/p", {"anonymousId": "foreign-visitor"}) == "TypeError"
        simple = page.evaluate(
            """async ([url, key]) => {
                try { await fetch(url, {method: "POST", body: JSON.stringify({writeKey: key,
                        anonymousId: "foreign-visitor"})}); return "read" }
                catch (error) { return error.name }
            }""",
            [f"{collector.base_url}/v1/p", KEY],
        )
        assert simple == "TypeError"
        context.close()

    everything = messages(settings)
    assert not [m for m in everything if m.get("anonymousId") == "foreign-visitor"]
    assert not [m for m in everything if "phone" in (m.get("traits") or {}) or m.get("type") == "group"]
    pages = [m for m in everything if m["type"] == "page" and m.get("anonymousId") == anonymous_id]
    assert {m["context"]["page"]["path"] for m in pages} == {"/index.html", "/pricing.html"}
    assert all("ip" not in m["context"] for m in everything)  # no address kept by default
    landing = next(m for m in pages if m["context"]["page"]["path"] == "/index.html")
    assert landing["context"]["campaign"] == {"source": "linkedin", "medium": "cpc", "name": "spring"}
    assert {m["type"] for m in ada} >= {"identify", "track"}
    assert any(m["type"] == "identify" for m in bob)

    oracle = Oracle([orjson.dumps(m) for m in everything])
    # the anonymous visit is ada's, with the pricing page's points and the campaign's channel
    assert oracle.merged_into[anonymous_id] == "ada@acme.io"
    ada_score = oracle.snapshots["ada@acme.io"]
    assert ada_score["engagement"] > 0 and ada_score["stage"] in ("lead", "prospect", "opportunity")
    assert "pricing page" in {reason["signal"] for reason in ada_score["reasons"]}
    assert {"signal": "channel: paid", "part": "fit", "points": 3.0} in ada_score["reasons"]
    # RudderStack's identify (traits in context.traits) and its organic visit reach bob
    rudder_anonymous = next(m["anonymousId"] for m in bob)
    assert oracle.merged_into.get(rudder_anonymous) == "bob@shop.fr"
    assert {"signal": "channel: organic", "part": "fit", "points": 5.0} in oracle.snapshots["bob@shop.fr"]["reasons"]


def _calls(settings, user_id: str, count: int) -> list[dict] | None:
    """The messages of `user_id` on the input topic once there are `count`, else None."""
    found = [m for m in messages(settings) if m.get("userId") == user_id]
    return found if len(found) >= count else None
