"""Calls from web pages: browser write keys, CORS, the per-address rate, bots, consent and
Do-Not-Track, against the collector served on 127.0.0.1 with an in-memory sink (the real
SDKs in a real browser on the real broker: tests/integration/test_site_tracking.py)."""

import base64
import contextlib
import re
from typing import Any

import aiohttp
import orjson
import pytest

from leadpulse.collector.browser import ClientRates, bot_reason, consented
from leadpulse.collector.keys import BrowserKey, KeyRing, load_write_keys
from leadpulse.schemas.events import decode_event
from leadpulse.schemas.limits import DEFAULT_LIMITS
from leadpulse.streams.settings import SettingsError
from tests.factories import DEFAULT_RULES
from tests.unit.test_collector import AT, KEYS, serving

SITE = "https://www.acme.io"
BROWSER = b"browser-key-000000001"
CONSENTING = b"browser-key-consent01"
RING = KeyRing(
    KEYS,
    (
        BrowserKey(BROWSER, frozenset({SITE, "https://acme.io"}), frozenset({"email", "title"})),
        BrowserKey(CONSENTING, frozenset({SITE}), None, "analytics"),
    ),
)
HEADLESS = (  # what Debian's Chromium 156 says in headless mode
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36"
)
PERSON = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"


@contextlib.asynccontextmanager
async def browser_session(**settings: Any):
    async with (
        serving(keys=RING, **settings) as (host, port, sink),
        aiohttp.ClientSession(f"http://{host}:{port}") as session,
    ):
        yield session, sink


def from_page(key: bytes = BROWSER, origin: str = SITE, **headers: str) -> dict[str, str]:
    """The headers a browser on `origin` sends with analytics.js's call."""
    auth = base64.b64encode(key + b":").decode()
    return {"Authorization": f"Basic {auth}", "Origin": origin, "User-Agent": PERSON, "Content-Type": "text/plain"} | {
        name.replace("_", "-"): value for name, value in headers.items()
    }


def page_call(**fields: Any) -> dict[str, Any]:
    return {
        "anonymousId": "cookie-1",
        "timestamp": AT,
        "properties": {"path": "/pricing", "url": f"{SITE}/pricing"},
        "context": {"page": {"path": "/pricing", "url": f"{SITE}/pricing"}, "traits": {"email": "a@acme.io"}},
    } | fields


async def send(session, path: str, body: dict[str, Any], headers: dict[str, str]):
    async with session.post(path, data=orjson.dumps(body), headers=headers) as response:
        return response.status, await response.json(content_type=None), response.headers


async def test_a_preflight_is_answered_with_the_exact_origin_only_for_an_origin_of_a_browser_key():
    async with browser_session() as (session, _):
        asked = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,anonymousid"}
        async with session.options("/v1/p", headers={"Origin": "https://acme.io", **asked}) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == "https://acme.io"
            assert response.headers["Access-Control-Allow-Credentials"] == "true"
            assert response.headers["Access-Control-Allow-Headers"] == "authorization,anonymousid"
        async with session.options("/beacon/v1/batch", headers={"Origin": "https://evil.example", **asked}) as response:
            assert response.status == 403 and "Access-Control-Allow-Origin" not in response.headers


async def test_a_page_call_on_the_short_path_is_kept_without_the_copied_traits_or_an_address():
    async with browser_session() as (session, sink):
        status, answer, headers = await send(session, "/v1/p", page_call(), from_page())
        assert (status, answer["accepted"]) == (200, 1)
        assert headers["Access-Control-Allow-Origin"] == SITE and headers["Vary"] == "Origin"
        (kept,) = sink.messages()
        assert kept["type"] == "page" and "traits" not in kept["context"] and "ip" not in kept["context"]


async def test_the_client_address_is_kept_only_when_configured():
    async with browser_session(collect_keep_ip=True) as (session, sink):
        assert (await send(session, "/v1/p", page_call(), from_page()))[0] == 200
        assert sink.messages()[0]["context"]["ip"] == "127.0.0.1"


@pytest.mark.parametrize("origin", [None, "https://evil.example", "https://www.acme.io:8443"])
async def test_a_browser_key_from_another_origin_is_refused_403_without_cors(origin):
    async with browser_session() as (session, sink):
        headers = from_page()
        if origin is None:
            del headers["Origin"]
        else:
            headers["Origin"] = origin
        status, answer, answered = await send(session, "/v1/p", page_call(), headers)
        assert status == 403 and "origin" in answer["message"].lower()
        assert "Access-Control-Allow-Origin" not in answered
        assert sink.records == []


@pytest.mark.parametrize("path", ["/v1/g", "/v1/group", "/v1/alias", "/v1/a", "/v1/screen", "/v1/import"])
async def test_a_browser_key_cannot_use_the_server_endpoints(path):
    async with browser_session() as (session, sink):
        body = {"userId": "ada", "groupId": "acme", "previousId": "c", "batch": [], "timestamp": AT}
        status, answer, _ = await send(session, path, body, from_page())
        assert status == 403 and "server write keys only" in answer["message"] and sink.records == []


async def test_a_browser_key_sends_only_page_track_identify_and_only_its_traits():
    async with browser_session() as (session, sink):
        batch = [
            page_call(type="page"),
            {"type": "group", "userId": "ada", "groupId": "acme", "timestamp": AT},
            {"type": "identify", "userId": "ada", "timestamp": AT, "traits": {"email": "a@acme.io", "phone": "1"}},
            {"type": "identify", "userId": "ada", "timestamp": AT, "context": {"traits": {"salary": 1}}},
            {
                "type": "identify",
                "userId": "ada",
                "anonymousId": "cookie-1",
                "timestamp": AT,
                "traits": {"title": "CTO"},
            },
        ]
        status, answer, _ = await send(session, "/v1/b", {"batch": batch}, from_page())
        assert (status, answer["accepted"], answer["rejected_count"]) == (200, 2, 3)
        assert [(r["index"], r["field"]) for r in answer["rejected"]] == [
            (1, "batch[1].type"),
            (2, "batch[2].traits.phone"),
            (3, "batch[3].context.traits.salary"),
        ]
        assert [m["type"] for m in sink.messages()] == ["page", "identify"]


async def test_rudderstacks_beacon_carries_the_key_in_the_query():
    async with browser_session() as (session, sink):
        headers = {"Origin": SITE, "User-Agent": PERSON, "Content-Type": "text/plain;charset=UTF-8"}
        status, _, _ = await send(
            session, f"/beacon/v1/batch?writeKey={BROWSER.decode()}", {"batch": [page_call(type="page")]}, headers
        )
        assert status == 200 and len(sink.records) == 1


def test_headless_browsers_are_bots_by_default_and_crawlers_always():
    assert bot_reason(HEADLESS, headless_bots=True) == "headless browser"
    assert bot_reason(HEADLESS, headless_bots=False) is None
    assert bot_reason("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", False) == "crawler"
    assert bot_reason(PERSON, headless_bots=True) is None
    assert bot_reason(None, headless_bots=False) == "no user agent"


async def test_a_bots_calls_are_answered_200_and_counted_not_kept():
    async with browser_session() as (session, sink):
        status, answer, _ = await send(session, "/v1/p", page_call(), from_page(User_Agent=HEADLESS))
        assert (status, answer["accepted"], answer["dropped"]) == (200, 0, 1) and sink.records == []
        async with session.get("/metrics") as response:
            assert 'leadpulse_collector_messages_total{outcome="bot"} 1.0' in await response.text()


async def test_do_not_track_is_honoured_when_configured_and_only_counted():
    async with browser_session(collect_do_not_track=True) as (session, sink):
        status, answer, _ = await send(session, "/v1/p", page_call(), from_page(DNT="1"))
        assert (status, answer["dropped"]) == (200, 1) and sink.records == []
        assert (await send(session, "/v1/p", page_call(), from_page(Sec_GPC="1")))[1]["dropped"] == 1
        assert (await send(session, "/v1/p", page_call(), from_page()))[1]["accepted"] == 1
        async with session.get("/metrics") as response:
            text = await response.text()
        assert 'leadpulse_collector_anonymous_calls_total{call="page",reason="do_not_track"} 2.0' in text
    async with browser_session() as (session, sink):  # off by default
        assert (await send(session, "/v1/p", page_call(), from_page(DNT="1")))[1]["accepted"] == 1


def test_consent_is_read_from_segments_and_rudderstacks_fields():
    assert consented({"context": {"consent": {"categoryPreferences": {"analytics": True}}}}, "analytics")
    assert not consented({"context": {"consent": {"categoryPreferences": {"analytics": False}}}}, "analytics")
    assert consented({"context": {"consentManagement": {"allowedConsentIds": ["analytics"]}}}, "analytics")
    denied = {"allowedConsentIds": ["analytics"], "deniedConsentIds": ["analytics"]}
    assert not consented({"context": {"consentManagement": denied}}, "analytics")
    assert not consented({}, "analytics")


async def test_without_the_keys_consent_category_a_call_is_only_counted():
    async with browser_session() as (session, sink):
        batch = [
            page_call(type="page"),
            page_call(type="page", context={"consent": {"categoryPreferences": {"analytics": True}}}),
        ]
        status, answer, _ = await send(session, "/v1/batch", {"batch": batch}, from_page(CONSENTING))
        assert (status, answer["accepted"], answer["dropped"]) == (200, 1, 1)
        assert len(sink.records) == 1
        async with session.get("/metrics") as response:
            assert (
                'leadpulse_collector_anonymous_calls_total{call="page",reason="no_consent"} 1.0'
                in await response.text()
            )


async def test_each_client_address_has_a_rate_and_server_keys_none():
    async with browser_session(collect_browser_burst=3, collect_browser_rate=0.5) as (session, sink):
        status, answer, _ = await send(session, "/v1/batch", {"batch": [page_call(type="page")] * 4}, from_page())
        assert status == 400 and "over 3 for a browser" in answer["message"]  # no retry could pass
        status, _, _ = await send(session, "/v1/batch", {"batch": [page_call(type="page")] * 3}, from_page())
        assert status == 200
        status, answer, headers = await send(session, "/v1/p", page_call(), from_page())
        assert status == 429 and headers["Retry-After"] == "2" and headers["Access-Control-Allow-Origin"] == SITE
        server = {"Authorization": "Basic " + base64.b64encode(KEYS[0] + b":").decode()}
        for _ in range(5):
            assert (await send(session, "/v1/p", page_call(), server))[0] == 200
        assert len(sink.records) == 3 + 5


def test_the_rate_of_addresses_is_bounded_by_forgetting_the_quietest():
    rates = ClientRates(rate=1.0, burst=2, clients=2)
    assert rates.take("a", 2, 0.0) == 0.0 and rates.take("a", 1, 0.0) == 1.0
    assert rates.take("a", 1, 1.0) == 0.0  # refilled at the rate
    rates.take("b", 1, 1.0)
    rates.take("c", 1, 1.0)  # "a" is forgotten: at most 2 addresses remembered
    assert list(rates.buckets) == ["b", "c"] and rates.take("a", 2, 1.0) == 0.0


def test_browser_keys_are_lines_with_their_origins_and_bad_lines_name_the_problem(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text(
        "server-key-0000000001  # the CRM\n"
        f"{BROWSER.decode()}  browser  origins={SITE},http://127.0.0.1:8000  traits=email,title  # web site\n"
    )
    ring = load_write_keys(keys)
    assert ring.server == (b"server-key-0000000001",)
    (browser,) = ring.browser
    assert browser.origins == {SITE, "http://127.0.0.1:8000"} and browser.traits == {"email", "title"}
    assert ring.browser_key(BROWSER) == browser and ring.browser_key(b"server-key-0000000001") is None
    for line, problem in [
        ("browser-key-000000001  browser", "needs origins="),
        ("browser-key-000000001  web origins=https://a.io", "expected `browser`"),
        ("browser-key-000000001  browser origins=https://a.io/path", "no path"),
        ("browser-key-000000001  browser origins=*", "scheme://host"),
        ("browser-key-000000001  browser origins=https://a.io colour=red", "expected origins="),
    ]:
        keys.write_text(line + "\n")
        with pytest.raises(SettingsError, match=f"LEADPULSE_WRITE_KEYS_FILE=.*: line 1: .*{re.escape(problem)}"):
            load_write_keys(keys)


@pytest.mark.parametrize(
    ("context", "url", "referrer", "channel"),
    [
        ({"campaign": {"source": "linkedin", "medium": "cpc", "name": "spring"}}, f"{SITE}/pricing", None, "paid"),
        ({}, f"{SITE}/pricing?utm_source=news&utm_medium=email&utm_campaign=june", None, "email"),
        ({}, f"{SITE}/pricing", "https://www.google.fr/", "organic"),
        ({}, f"{SITE}/pricing", "https://blog.partner.io/post", "referral"),
        ({}, f"{SITE}/pricing", f"{SITE}/", None),  # a click inside the site says nothing of the channel
    ],
)
def test_a_page_views_campaign_and_referrer_become_properties_the_rules_read(context, url, referrer, channel):
    page = {"url": url, "title": "Pricing"} | ({"referrer": referrer} if referrer else {})
    message = {
        "type": "page",
        "anonymousId": "c",
        "messageId": "m",
        "timestamp": AT,
        "context": context | {"page": page},
    }
    event = decode_event(orjson.dumps(message), DEFAULT_LIMITS, DEFAULT_RULES.mapping)
    assert event.properties.get("channel") == channel
    assert event.properties["path"] == "/pricing" and event.properties["title"] == "Pricing"
    if "campaign" in context or "utm_" in url:
        assert event.properties["campaign_source"] in ("linkedin", "news")
        assert event.properties["campaign_name"] in ("spring", "june")


def test_rudderstacks_identify_traits_in_the_context_make_the_profile():
    message = {"type": "identify", "userId": "bob", "timestamp": AT, "context": {"traits": {"title": "CTO"}}}
    event = decode_event(orjson.dumps(message), DEFAULT_LIMITS, DEFAULT_RULES.mapping)
    assert event.properties["job_title"] == "CTO"


def test_rudderstacks_empty_user_id_before_identify_is_an_anonymous_call():
    message = {"type": "page", "userId": "", "anonymousId": "cookie-9", "timestamp": AT, "properties": {"path": "/"}}
    event = decode_event(orjson.dumps(message), DEFAULT_LIMITS, DEFAULT_RULES.mapping)
    assert event.contact_id == "cookie-9" and not event.identified


@pytest.mark.parametrize(
    ("agent", "reason"),
    [
        ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "crawler"),
        ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "crawler"),
        ("python-requests/2.32.3", "crawler"),
        ("Mozilla/5.0 (Linux; Android 12; Cubot X30) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36", None),
    ],
)
def test_crawlers_are_told_from_phones_whose_names_end_in_bot(agent, reason):
    assert bot_reason(agent, headless_bots=True) == reason
