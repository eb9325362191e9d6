"""The collector's HTTP contract, against a real aiohttp server on 127.0.0.1 with an in-memory
sink in place of Kafka (the broker path is tests/integration/test_collector.py)."""

import asyncio
import base64
import gzip
import os
import re
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from leadpulse.cli.main import main
from leadpulse.collector.keys import basic_auth_user, is_known, load_write_keys
from leadpulse.collector.service import MAX_MESSAGE_BYTES, Collector, runner
from leadpulse.schemas.events import decode_event
from leadpulse.schemas.limits import DEFAULT_LIMITS
from leadpulse.scoring.timeutil import format_ms, now_ms
from leadpulse.streams.settings import Settings, SettingsError
from tests.factories import DEFAULT_RULES

KEYS = (b"first-write-key-0001", b"second-write-key-002")
AT = format_ms(now_ms() - 60_000)


class MemorySink:
    """Records what the collector sends; `gate` holds the acknowledgement back, `fail` refuses it."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def send(self, records):
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.records.extend(records)

    def messages(self) -> list[dict[str, Any]]:
        return [orjson.loads(value) for _, value in self.records]


@pytest_asyncio.fixture(loop_scope="function")
async def collector():
    sink = MemorySink()
    app_runner = runner(Collector(KEYS, sink, DEFAULT_RULES, DEFAULT_LIMITS))
    await app_runner.setup()
    try:
        site = aiohttp.web.TCPSite(app_runner, "127.0.0.1", 0)
        await site.start()
        host, port = app_runner.addresses[0][:2]
        async with aiohttp.ClientSession(f"http://{host}:{port}") as session:
            yield session, sink
    finally:
        await app_runner.cleanup()


def auth(key: bytes = KEYS[1]) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(key + b":").decode()}


def track(**fields: Any) -> dict[str, Any]:
    document = {"type": "track", "event": "Demo Requested", "userId": "ada", "messageId": "m1", "timestamp": AT}
    document.update(fields)
    return {key: value for key, value in document.items() if value is not None}


async def post(session, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with session.post(path, data=data, headers=auth() if headers is None else headers) as response:
        return response.status, await response.json(content_type=None)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        auth(b"not-a-known-write-key"),
        {"Authorization": "Bearer first-write-key-0001"},
        {"Authorization": "Basic %%"},
    ],
)
async def test_a_request_without_a_known_write_key_is_refused_401(collector, headers):
    session, sink = collector
    status, answer = await post(session, "/v1/batch", {"batch": [track()]}, headers)
    assert status == 401 and answer["success"] is False and "write key" in answer["message"]
    assert sink.records == []


async def test_any_of_several_keys_is_accepted_also_in_the_body_as_segment_allows(collector):
    session, sink = collector
    assert (await post(session, "/v1/batch", {"batch": [track()]}, auth(KEYS[0])))[0] == 200
    assert (await post(session, "/v1/batch", {"batch": [track()], "writeKey": KEYS[1].decode()}, {}))[0] == 200
    assert all("writeKey" not in message for message in sink.messages())


@pytest.mark.parametrize(
    ("call", "body", "event_type"),
    [
        ("track", {"event": "Email Opened"}, "email_opened"),
        ("identify", {"traits": {"title": "CTO"}}, "profile_updated"),
        ("page", {"properties": {"path": "/pricing"}}, "page_viewed"),
        ("screen", {"name": "Home"}, "page_viewed"),
        ("group", {"groupId": "acme"}, "account_linked"),
        ("alias", {"previousId": "cookie-1"}, "identity_linked"),
    ],
)
async def test_each_call_endpoint_produces_its_message_keyed_by_user(collector, call, body, event_type):
    session, sink = collector
    status, answer = await post(session, f"/v1/{call}", {"userId": "ada", "timestamp": AT, **body})
    assert (status, answer) == (200, {"success": True, "accepted": 1})
    [(key, value)] = sink.records
    message = orjson.loads(value)
    assert key == b"ada" and message["type"] == call and "receivedAt" in message
    assert decode_event(value).type == event_type


async def test_an_anonymous_message_is_keyed_by_its_anonymous_id(collector):
    session, sink = collector
    await post(session, "/v1/page", {"anonymousId": "cookie-1", "timestamp": AT})
    assert sink.records[0][0] == b"cookie-1"


async def test_a_batch_keeps_its_valid_messages_and_lists_the_others_by_field(collector):
    session, sink = collector
    batch = [
        track(messageId="a"),
        track(userId=None),
        "not an object",
        track(messageId="b", event="Video Played"),
        {"event_id": "e1", "type": "track", "contact_id": "c", "occurred_at": AT},
        track(timestamp=format_ms(now_ms() + 3_600_000)),
        track(properties={"blob": "x" * MAX_MESSAGE_BYTES}),
    ]
    status, answer = await post(session, "/v1/batch", {"batch": batch})
    assert status == 200 and answer["accepted"] == 2
    assert [(r["index"], r["field"]) for r in answer["rejected"]] == [
        (1, "batch[1].userId"),
        (2, "batch[2]"),
        (4, "batch[4].event_id"),
        (5, "batch[5].timestamp"),
        (6, "batch[6]"),
    ]
    assert "in the future" in answer["rejected"][3]["reason"] and "32 KB" in answer["rejected"][4]["reason"]
    assert [m["messageId"] for m in sink.messages()] == ["a", "b"]


async def test_a_batch_with_no_valid_message_is_a_400_naming_the_first_field(collector):
    session, sink = collector
    status, answer = await post(session, "/v1/batch", {"batch": [track(event=None), track(userId=7)]})
    assert status == 400 and answer["code"] == "invalid_request"
    assert answer["message"].startswith("batch[0].event: required in a track call")
    assert "and 1 more" in answer["message"] and len(answer["rejected"]) == 2
    status, answer = await post(session, "/v1/track", {"userId": "ada", "timestamp": AT})
    assert (status, answer["message"]) == (400, "event: required in a track call: the event name, got null")
    assert sink.records == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body: not valid JSON"),
        (b"[1]", "body: expected a JSON object, got array"),
        (b'{"batch": {}}', "batch: expected a list of messages, got object"),
        (b'{"batch": []}', "batch: expected a list of messages, got array"),
    ],
)
async def test_a_body_that_is_not_a_batch_is_a_400_naming_it(collector, body, message):
    session, _ = collector
    status, answer = await post(session, "/v1/batch", body)
    assert status == 400 and answer["message"].startswith(message)


async def test_batch_level_sent_at_and_context_reach_each_message(collector):
    session, sink = collector
    body = {
        "batch": [track(context={"page": {"path": "/own"}}), track(messageId="m2")],
        "sentAt": AT,
        "context": {"library": {"name": "analytics-python"}, "page": {"path": "/shared"}},
    }
    assert (await post(session, "/v1/batch", body))[0] == 200
    first, second = sink.messages()
    assert first["sentAt"] == second["sentAt"] == AT
    assert (first["context"]["page"]["path"], second["context"]["page"]["path"]) == ("/own", "/shared")
    assert second["context"]["library"]["name"] == "analytics-python"


async def test_a_gzip_body_is_read_and_a_bad_or_oversized_one_refused(collector):
    session, sink = collector
    gzipped = {**auth(), "Content-Encoding": "gzip"}
    assert (await post(session, "/v1/batch", gzip.compress(orjson.dumps({"batch": [track()]})), gzipped))[0] == 200
    assert len(sink.records) == 1
    status, answer = await post(session, "/v1/batch", b"plain text", gzipped)
    assert (status, answer["message"]) == (400, "body: Content-Encoding is gzip but the body is not")
    bomb = gzip.compress(b'{"batch": [' + b" " * 50_000_000 + b"]}")  # 50 MB inflated, 50 KB sent
    status, answer = await post(session, "/v1/batch", bomb, gzipped)
    assert (status, answer["code"]) == (400, "payload_too_large") and "512000 bytes" in answer["message"]
    status, answer = await post(session, "/v1/batch", b"{}", {**auth(), "Content-Encoding": "br"})
    assert status == 400 and "Content-Encoding" in answer["message"]


async def test_a_body_over_500_kb_is_refused_whole(collector):
    session, sink = collector
    batch = [track(messageId=str(i), properties={"note": "n" * 20_000}) for i in range(30)]
    status, answer = await post(session, "/v1/batch", {"batch": batch})
    assert (status, answer["code"]) == (400, "payload_too_large") and sink.records == []


async def test_the_answer_waits_for_kafkas_acknowledgement_and_is_503_without_it(collector):
    session, sink = collector
    sink.gate = asyncio.Event()
    request = asyncio.ensure_future(post(session, "/v1/batch", {"batch": [track()]}))
    await asyncio.sleep(0.3)  # a chance to answer too early, which it must not take
    assert not request.done()
    sink.gate.set()
    assert (await request)[0] == 200
    sink.fail = RuntimeError("broker gone")
    status, answer = await post(session, "/v1/batch", {"batch": [track()]})
    assert status == 503 and "retry" in answer["message"]


async def test_health_and_metrics_answer_without_a_key(collector):
    session, _ = collector
    await post(session, "/v1/batch", {"batch": [track(), track(userId=None)]})
    async with session.get("/health") as response:
        assert response.status == 200
    async with session.get("/metrics") as response:
        text = await response.text()
    assert 'leadpulse_collector_messages_total{outcome="accepted"} 1.0' in text
    assert 'leadpulse_collector_messages_total{outcome="rejected"} 1.0' in text


def test_write_keys_come_from_a_file_and_bad_files_name_the_setting(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# sources\nfirst-write-key-0001  # web site\n\nsecond-write-key-002\n")
    assert load_write_keys(keys) == KEYS
    for content, problem in [("short\n", "16\\+"), ("# none\n", "no write key"), ("a" * 20 + ":x\n", "or ':'")]:
        keys.write_text(content)
        with pytest.raises(SettingsError, match=f"LEADPULSE_WRITE_KEYS_FILE={re.escape(repr(str(keys)))}: .*{problem}"):
            load_write_keys(keys)
    with pytest.raises(SettingsError, match="LEADPULSE_WRITE_KEYS_FILE: required"):
        load_write_keys(None)
    with pytest.raises(SettingsError, match="LEADPULSE_WRITE_KEYS_FILE='/nope': no such write keys file"):
        Settings.from_env({"LEADPULSE_WRITE_KEYS_FILE": "/nope"})


def test_basic_auth_user_names_are_read_and_compared_whole():
    assert basic_auth_user("Basic " + base64.b64encode(b"key:").decode()) == b"key"
    assert basic_auth_user("basic " + base64.b64encode(b"key").decode()) == b"key"
    assert basic_auth_user(None) is None and basic_auth_user("Basic !!") is None
    assert is_known(KEYS[1], KEYS) and not is_known(KEYS[1][:-1], KEYS) and not is_known(None, KEYS)


def test_collect_without_a_keys_file_stops_in_one_line(monkeypatch, capsys):
    for name in list(os.environ):
        if name.startswith("LEADPULSE_"):
            monkeypatch.delenv(name)
    assert main(["collect"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "leadpulse: bad setting: LEADPULSE_WRITE_KEYS_FILE: required by `leadpulse collect` "
        "(a file with one write key per line)"
    ]
