"""The collector's HTTP contract, against a real aiohttp server on 127.0.0.1 with an in-memory
sink in place of Kafka (the broker path is tests/integration/test_collector.py)."""

import asyncio
import base64
import contextlib
import gzip
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from leadpulse.cli.main import main
from leadpulse.collector.browser import BrowserSettings
from leadpulse.collector.keys import KeyRing, basic_auth_user, is_known, load_write_keys
from leadpulse.collector.service import MAX_MESSAGE_BYTES, Collector, CollectorBounds, CollectorSite, runner
from leadpulse.schemas.events import decode_event
from leadpulse.schemas.limits import DEFAULT_LIMITS
from leadpulse.scoring.timeutil import format_ms, now_ms
from leadpulse.streams.settings import Settings, SettingsError
from tests.factories import DEFAULT_RULES

KEYS = (b"first-write-key-0001", b"second-write-key-002")
AT = format_ms(now_ms() - 60_000)


def bounds(**settings: Any) -> CollectorBounds:
    """The collector's bounds with some settings changed (the defaults are the settings')."""
    return Settings(**settings).section(CollectorBounds, "collect_")


DEFAULT_BOUNDS = bounds()
SERVER_KEYS = KeyRing(KEYS)


class MemorySink:
    """Records what the collector sends; `gate` holds the acknowledgement back (up to the
    timeout, as the Kafka sink does), `fail` refuses it, `down` is the broker's state."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None
        self.down: str | None = None

    async def send(self, records, timeout_s):
        if self.gate is not None:
            async with asyncio.timeout(timeout_s):
                await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.records.extend(records)

    def problem(self):
        return self.down

    def messages(self) -> list[dict[str, Any]]:
        return [orjson.loads(value) for _, value in self.records]


@contextlib.asynccontextmanager
async def serving(
    bounds: CollectorBounds = DEFAULT_BOUNDS, keys: KeyRing = SERVER_KEYS, **browser: Any
) -> AsyncIterator[tuple[str, int, MemorySink]]:
    """A collector on 127.0.0.1, served as `leadpulse collect` serves it (connection cap,
    timeouts), with `bounds`, `keys` and the browser settings changed by `browser`
    (`collect_keep_ip=True`...); yields its address and sink."""
    sink = MemorySink()
    settings = Settings(**browser).section(BrowserSettings, "collect_")
    collector = Collector(keys, sink, DEFAULT_RULES, DEFAULT_LIMITS, bounds, browser=settings)
    app_runner = runner(collector)
    await app_runner.setup()
    try:
        await CollectorSite(app_runner, collector, "127.0.0.1", 0, backlog=128).start()
        host, port = app_runner.addresses[0][:2]
        yield host, port, sink
    finally:
        await app_runner.cleanup()


@contextlib.asynccontextmanager
async def session_to(
    bounds: CollectorBounds = DEFAULT_BOUNDS,
) -> AsyncIterator[tuple[aiohttp.ClientSession, MemorySink]]:
    async with serving(bounds) as (host, port, sink), aiohttp.ClientSession(f"http://{host}:{port}") as session:
        yield session, sink


@pytest_asyncio.fixture(loop_scope="function")
async def collector():
    async with session_to() as (session, sink):
        yield session, sink


def auth(key: bytes = KEYS[1]) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(key + b":").decode()}


def track(**fields: Any) -> dict[str, Any]:
    document = {"type": "track", "event": "Demo Requested", "userId": "ada", "messageId": "m1", "timestamp": AT}
    document.update(fields)
    return {key: value for key, value in document.items() if value is not None}


async def post(session, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    return (await post_full(session, path, body, headers))[:2]


async def post_full(
    session, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with session.post(path, data=data, headers=auth() if headers is None else headers) as response:
        return response.status, await response.json(content_type=None), dict(response.headers)


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
    assert load_write_keys(keys).server == KEYS
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


# --- bounds: nothing a sender or the broker does makes the collector hold more -----------


async def test_an_error_answer_counts_every_invalid_message_and_lists_the_first_few(collector):
    session, _ = collector
    body = b'{"batch":[' + b",".join([b"1"] * 200_000) + b"]}"
    async with session.post("/v1/batch", data=body, headers=auth()) as response:
        status, raw = response.status, await response.read()
    answer = orjson.loads(raw)
    assert status == 400 and len(raw) < 4_000
    assert answer["rejected_count"] == 200_000 and len(answer["rejected"]) == 20
    assert answer["message"] == "batch[0]: expected a JSON object, got number (and 199999 more messages refused)"
    status, answer = await post(session, "/v1/batch", {"batch": [track(), *([track(userId=7)] * 30)]})
    assert (status, answer["accepted"], answer["rejected_count"], len(answer["rejected"])) == (200, 1, 30, 20)
    assert answer["rejected"][-1] == {
        "index": 20,
        "field": "batch[20].userId",
        "reason": "expected a non-empty string, got number",
    }


async def test_a_listed_field_named_by_the_sender_is_cut():
    async with session_to(bounds(collect_rejected_listed=0)) as (session, _):
        status, answer = await post(session, "/v1/batch", {"batch": [track(event=None)] * 3})
        assert (status, answer["rejected_count"], answer["rejected"]) == (400, 3, [])
        assert answer["message"].startswith("batch[0].event: required")
    async with session_to() as (session, _):
        long_key = "k" * 5_000
        status, answer = await post(session, "/v1/batch", {"batch": [track(context={long_key: 1, "groupId": 7})]})
        assert status == 400 and all(len(r["field"]) <= 203 for r in answer["rejected"])


async def test_a_message_without_message_id_gets_a_unique_one_and_one_with_an_id_keeps_it(collector):
    session, sink = collector
    visit = {"anonymousId": "cookie-1", "properties": {"path": "/pricing"}}
    for _ in range(3):
        assert (await post(session, "/v1/page", visit))[0] == 200
    for _ in range(2):
        assert (await post(session, "/v1/page", {**visit, "messageId": "sdk-1"}))[0] == 200
    ids = [decode_event(value).event_id for _, value in sink.records]
    assert len(set(ids[:3])) == 3 and ids[3:] == ["sdk-1", "sdk-1"]


async def test_a_batch_context_is_refused_before_it_is_copied_into_every_message(collector):
    session, sink = collector
    tiny = [track(messageId=str(i)) for i in range(300)]
    status, answer = await post(session, "/v1/batch", {"batch": tiny, "context": {"note": "x" * 40_000}})
    assert (status, answer["code"]) == (400, "payload_too_large") and answer["message"].startswith("context: 40")
    status, answer = await post(session, "/v1/batch", {"batch": tiny, "context": {"note": "x" * 20_000}})
    assert (status, answer["code"]) == (400, "payload_too_large")
    assert "copied into each of 300 messages makes more than 4194304 bytes" in answer["message"]
    assert sink.records == []
    status, answer = await post(session, "/v1/batch", {"batch": tiny, "context": {"note": "x" * 1_000}})
    assert (status, answer["accepted"]) == (200, 300)
    assert all(len(message["context"]["note"]) == 1_000 for message in sink.messages())


async def test_requests_past_the_in_flight_bytes_are_answered_503_with_retry_after():
    async with session_to(bounds(collect_max_in_flight_bytes=1024 * 1024, collect_max_expanded_bytes=1024 * 1024)) as (
        session,
        sink,
    ):
        sink.gate = asyncio.Event()
        notes = {f"note{n}": "n" * 1_900 for n in range(10)}
        big = {"batch": [track(messageId=str(i), properties=notes) for i in range(20)]}  # 380 KB
        held = [asyncio.ensure_future(post_full(session, "/v1/batch", big)) for _ in range(2)]
        await asyncio.sleep(0.3)
        status, answer, headers = await post_full(session, "/v1/batch", big)
        assert (status, answer["code"], headers.get("Retry-After")) == (503, "unavailable", "5"), answer
        assert "busy" in answer["message"]
        sink.gate.set()
        assert [(await request)[0] for request in held] == [200, 200]
        assert (await post(session, "/v1/batch", big))[0] == 200  # what was held is given back


async def test_an_unacknowledged_delivery_is_answered_503_with_retry_after_within_the_bound():
    async with session_to(bounds(collect_delivery_timeout_s=0.3, collect_retry_after_s=7)) as (session, sink):
        sink.gate = asyncio.Event()  # never set: the broker does not answer
        started = time.monotonic()
        status, answer, headers = await post_full(session, "/v1/batch", {"batch": [track()]})
        assert (status, headers["Retry-After"]) == (503, "7") and time.monotonic() - started < 2
        assert "retry" in answer["message"]


async def test_health_is_503_while_the_broker_cannot_deliver_and_calls_are_refused_at_once(collector):
    session, sink = collector
    sink.down = "broker unreachable (KafkaConnectionError)"
    async with session.get("/health") as response:
        assert (response.status, await response.json()) == (
            503,
            {"status": "unavailable", "reason": "broker unreachable (KafkaConnectionError)"},
        )
    status, answer, headers = await post_full(session, "/v1/batch", {"batch": [track()]})
    assert status == 503 and "Retry-After" in headers and "broker unreachable" in answer["message"]
    sink.down = None
    async with session.get("/health") as response:
        assert response.status == 200
    assert (await post(session, "/v1/batch", {"batch": [track()]}))[0] == 200


async def read_until_closed(reader: asyncio.StreamReader, timeout_s: float) -> bytes:
    async with asyncio.timeout(timeout_s):
        return await reader.read()


async def test_connections_past_the_cap_are_answered_503_and_the_rest_keep_being_served():
    async with serving(bounds(collect_max_connections=3)) as (host, port, _):
        held = [await asyncio.open_connection(host, port) for _ in range(3)]
        reader, writer = await asyncio.open_connection(host, port)
        answer = await read_until_closed(reader, 5)
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable") and b"Retry-After: 5" in answer
        writer.close()
        for _, held_writer in held:
            held_writer.close()
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession(f"http://{host}:{port}") as session:
            assert (await post(session, "/v1/batch", {"batch": [track()]}))[0] == 200


async def test_an_idle_or_slow_headed_connection_is_closed_after_the_idle_timeout():
    async with serving(bounds(collect_idle_timeout_s=0.5)) as (host, port, _):
        silent = await asyncio.open_connection(host, port)
        slow = await asyncio.open_connection(host, port)
        slow[1].write(b"POST /v1/batch HTTP/1.1\r\nHost: x\r\n")  # ...and the rest of the head never comes
        assert await read_until_closed(silent[0], 5) == b""
        assert await read_until_closed(slow[0], 5) == b""


async def test_a_body_that_does_not_arrive_in_time_is_answered_408():
    async with serving(bounds(collect_body_timeout_s=0.5)) as (host, port, sink):
        reader, writer = await asyncio.open_connection(host, port)
        head = f"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: {auth()['Authorization']}\r\n"
        writer.write(head.encode() + b"Content-Length: 1000\r\n\r\n" + b'{"batch": [')
        async with asyncio.timeout(15):
            answer = await reader.readuntil(b"\r\n\r\n")
        # The client gives up sending (half-close): else aiohttp reads the rest of the body it
        # dropped for its lingering time (10 s) before it closes the connection.
        writer.write_eof()
        answer += await read_until_closed(reader, 5)
        assert answer.startswith(b"HTTP/1.1 408") and b"body: not received within 0.5 s" in answer
        assert b"\r\nConnection: close\r\n" in answer
        assert sink.records == []


def test_collector_settings_are_checked_at_start_naming_the_variable():
    bad = {
        "LEADPULSE_COLLECT_MAX_CONNECTIONS": ("0", "must be from 1 to 100000"),
        "LEADPULSE_COLLECT_IDLE_TIMEOUT": ("0", "must be from 0.1 to 3600 seconds"),
        "LEADPULSE_COLLECT_BODY_TIMEOUT": ("soon", "not a duration"),
        "LEADPULSE_COLLECT_DELIVERY_TIMEOUT": ("10m", "SDKs give up after 10-15 s"),
        "LEADPULSE_COLLECT_RETRY_AFTER": ("0.5", "expected a whole number"),
        "LEADPULSE_COLLECT_MAX_IN_FLIGHT_BYTES": ("1000", "must be from 1048576"),
        "LEADPULSE_COLLECT_MAX_EXPANDED_BYTES": ("1000", "at least the 500 KB"),
        "LEADPULSE_COLLECT_REJECTED_LISTED": ("-1", "must be from 0 to 1000"),
    }
    for name, (raw, problem) in bad.items():
        with pytest.raises(SettingsError, match=f"^{name}=.*{problem}"):
            Settings.from_env({name: raw})
    with pytest.raises(SettingsError, match=r"^LEADPULSE_COLLECT_MAX_EXPANDED_BYTES=8388608: more than"):
        Settings.from_env(
            {"LEADPULSE_COLLECT_MAX_EXPANDED_BYTES": "8388608", "LEADPULSE_COLLECT_MAX_IN_FLIGHT_BYTES": "4194304"}
        )
    settings = Settings.from_env(
        {"LEADPULSE_COLLECT_DELIVERY_TIMEOUT": "3s", "LEADPULSE_COLLECT_MAX_CONNECTIONS": "50"}
    )
    bounds = settings.section(CollectorBounds, "collect_")
    assert (bounds.delivery_timeout_s, bounds.max_connections, bounds.idle_timeout_s) == (3.0, 50, 10.0)


def test_collect_stops_in_one_line_when_the_open_files_limit_cannot_hold_the_connection_cap(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text(KEYS[0].decode() + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPULSE_")} | {
        "LEADPULSE_WRITE_KEYS_FILE": str(keys),
        "LEADPULSE_BROKER": "127.0.0.1:1",  # never reached: the check comes first
    }
    done = subprocess.run(
        ["prlimit", "--nofile=512:512", sys.executable, "-m", "leadpulse", "collect"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.decode().strip().splitlines() == [
        "leadpulse: bad setting: LEADPULSE_COLLECT_MAX_CONNECTIONS=1000: needs 1164 open files with its reserve, "
        "over this process's hard limit of 512 (ulimit -Hn); lower it or raise the limit"
    ]
