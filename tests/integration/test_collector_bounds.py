"""`leadpulse collect` under abuse, as a process of its own on the real broker: whatever a
sender does (huge error batches, idle or half-open connections, batch contexts copied into
thousands of messages) or the broker does (an outage), the collector's memory, descriptors,
answer sizes and waits stay bounded, the answer at a bound is a status code an SDK acts on
(503 + Retry-After), and a 200 still means the broker acknowledged every message."""

from __future__ import annotations

import asyncio
import base64
import gzip
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from leadpulse.cli.collect import RESERVED_DESCRIPTORS
from leadpulse.cli.processes import CollectorProcess, LocalBroker, broker_port, free_port
from leadpulse.collector.service import MAX_LINGERING
from leadpulse.schemas.events import decode_event
from leadpulse.streams.settings import Settings
from tests.integration.harness import read_all, wait_for

pytestmark = [pytest.mark.integration]

WRITE_KEY = "bounds-write-key-0001"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
SDK_TIMEOUT_S = 10.0  # RudderStack's Python SDK; Segment's waits 15 s


@pytest.fixture
def collector_settings(make_settings, tmp_path):
    keys = tmp_path / "write-keys"
    keys.write_text(WRITE_KEY + "\n")

    def build(**overrides: Any) -> Settings:
        return make_settings(write_keys_file=keys, collect_port=free_port(), **overrides)

    return build


def status_kb(pid: int, field: str) -> int:
    """VmRSS (resident now) or VmHWM (the peak resident size) of a process, in KB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def open_descriptors(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


async def post(
    session: aiohttp.ClientSession, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str], float]:
    started = time.monotonic()
    async with session.post(path, data=body, headers={**AUTH, **(headers or {})}) as response:
        data = await response.read()
        return response.status, data, dict(response.headers), time.monotonic() - started


def page(**fields: Any) -> bytes:
    return orjson.dumps({"anonymousId": "cookie-1", "name": "Pricing", "properties": {"path": "/pricing"}, **fields})


def test_error_answers_are_bounded_and_twenty_abusive_batches_keep_the_collector_small(collector_settings, collectors):
    collector = collectors(collector_settings())
    assert collector.pid is not None
    abusive = b'{"batch":[' + b",".join([b"1"] * 200_000) + b"]}"  # 400 KB of non-objects

    async def attack() -> tuple[Any, list[tuple[int, bytes, dict[str, str], float]], Any, int]:
        async with aiohttp.ClientSession(
            collector.base_url, connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=120)
        ) as session:
            one = await post(session, "/v1/batch", abusive)
            before = status_kb(collector.pid, "VmRSS")
            flood = [asyncio.ensure_future(post(session, "/v1/batch", abusive)) for _ in range(20)]
            await asyncio.sleep(0.05)
            normal = await post(session, "/v1/page", page(messageId="during-the-flood"))
            return one, await asyncio.gather(*flood), normal, before

    one, answers, normal, before_kb = asyncio.run(attack())
    peak_kb = status_kb(collector.pid, "VmHWM")
    print(
        f"\n20 x 400 KB batches of 200,000 non-objects: RSS {before_kb / 1024:.0f} MB before, peak "
        f"{peak_kb / 1024:.0f} MB; answers {max(len(a[1]) for a in answers):,} bytes; a normal call "
        f"sent during them answered in {normal[3]:.2f} s"
    )
    status, answer, _, _ = one
    assert status == 400 and len(answer) < 8_000, f"{len(answer):,} bytes answered to a 400 KB batch"
    document = orjson.loads(answer)
    assert document["rejected_count"] == 200_000 and len(document["rejected"]) <= 20
    assert document["rejected"][0] == {"index": 0, "field": "batch[0]", "reason": "expected a JSON object, got number"}
    assert all(a[0] in (400, 503) for a in answers) and max(len(a[1]) for a in answers) < 8_000
    assert peak_kb - before_kb < 100 * 1024, f"peak RSS grew by {(peak_kb - before_kb) / 1024:.0f} MB"
    assert normal[0] == 200 and normal[3] < SDK_TIMEOUT_S, normal


class LowFileLimitCollector(CollectorProcess):
    """The collector started under `ulimit -n 1024` (a common default): descriptors run out
    after ~1,000 connections unless the collector caps them."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        super().__init__(settings, log_path)
        self.command = ["sh", "-c", 'ulimit -Sn 1024 && exec "$@"', "sh", sys.executable, "-m", "leadpulse", "collect"]


def test_half_open_connections_are_capped_with_a_503_and_closed_when_idle(collector_settings, tmp_path):
    collector = LowFileLimitCollector(collector_settings(), tmp_path / "collector.log")
    sockets: list[socket.socket] = []
    try:
        collector.start()
        assert collector.pid is not None
        address = (collector.settings.collect_host, collector.settings.collect_port)
        for _ in range(1_100):  # connect, then say nothing: a half-open or abandoned client
            sockets.append(socket.create_connection(address, timeout=10))

        def answer(sock: socket.socket) -> bytes:
            try:  # within the socket's timeout
                return sock.recv(4096)
            except TimeoutError:
                return b"(nothing)"

        for sock in sockets[-50:]:
            sock.settimeout(3)
        refused = [answer(s) for s in sockets[-50:]]  # those past the cap are answered at once
        assert all(r.startswith(b"HTTP/1.1 503") and b"Retry-After:" in r for r in refused), refused[:2]
        status, data, headers, took = asyncio.run(one_call(collector.base_url))
        assert status == 503 and "Retry-After" in headers and took < 5, (status, data, took)
        assert open_descriptors(collector.pid) <= 1_000 + MAX_LINGERING + RESERVED_DESCRIPTORS

        started = time.monotonic()  # the idle ones are closed after the idle timeout (10 s)
        for sock in sockets[:1_000]:
            sock.settimeout(max(1.0, 30 - (time.monotonic() - started)))
            assert answer(sock) == b"", "an idle connection was not closed"
        status, data, _, _ = asyncio.run(one_call(collector.base_url))
        assert status == 200, data
        log = collector.log_path.read_text(errors="replace")
        assert "Traceback" not in log and len(log) < 5_000, log[-3_000:]
    finally:
        for sock in sockets:
            sock.close()
        collector.kill()


async def one_call(base_url: str) -> tuple[int, bytes, dict[str, str], float]:
    async with aiohttp.ClientSession(base_url, timeout=aiohttp.ClientTimeout(total=30)) as session:
        return await post(session, "/v1/page", page())


def test_calls_without_a_message_id_are_never_merged_and_retries_with_one_stay_duplicates(
    collector_settings, collectors
):
    settings = collector_settings()
    collector = collectors(settings)

    async def send() -> list[int]:
        async with aiohttp.ClientSession(collector.base_url) as session:
            statuses = [(await post(session, "/v1/page", page()))[0] for _ in range(3)]  # three identical visits
            statuses += [(await post(session, "/v1/page", page(messageId="sdk-1")))[0] for _ in range(2)]  # a retry
            return statuses

    assert asyncio.run(send()) == [200] * 5
    records = wait_for(lambda: read_all(settings, settings.input_topic, idle_s=1.0), timeout_s=30)
    assert len(records) == 5
    ids = [decode_event(value).event_id for _, value in records if value is not None]
    assert len(set(ids[:3])) == 3, "distinct calls share an event id: the worker would drop two as duplicates"
    assert ids[3] == ids[4] == "sdk-1"


def test_a_batch_context_cannot_multiply_the_work_or_the_records(collector_settings, collectors):
    collector = collectors(collector_settings())
    tiny = [{"type": "page", "anonymousId": f"a{i}", "messageId": f"m{i}"} for i in range(3_000)]
    huge_context = gzip.compress(orjson.dumps({"batch": tiny, "context": {"note": "x" * 306_000}}))
    wide_context = gzip.compress(orjson.dumps({"batch": tiny, "context": {"note": "x" * 20_000}}))
    shared = {"library": {"name": "analytics-python"}, "page": {"path": "/shared"}, "note": "y" * 1_000}
    normal = orjson.dumps({"batch": tiny[:100], "context": shared})
    assert len(gzip.decompress(huge_context)) < 500 * 1024  # within the request limit: the context is the problem

    async def send() -> tuple[Any, ...]:
        async with aiohttp.ClientSession(collector.base_url, timeout=aiohttp.ClientTimeout(total=60)) as session:
            gzipped = {"Content-Encoding": "gzip"}
            first = asyncio.ensure_future(post(session, "/v1/batch", huge_context, gzipped))
            await asyncio.sleep(0.01)
            async with session.get("/health") as response:  # the event loop is not held by the batch
                await response.read()
            return (
                await first,
                await post(session, "/v1/batch", wide_context, gzipped),
                await post(session, "/v1/batch", normal),
            )

    huge, wide, fine = asyncio.run(send())
    print(f"\n306 KB batch context over 3,000 messages answered in {huge[3]:.2f} s, 20 KB one in {wide[3]:.2f} s")
    assert huge[0] == 400 and orjson.loads(huge[1])["message"].startswith("context: ") and huge[3] < 2
    assert wide[0] == 400 and orjson.loads(wide[1])["code"] == "payload_too_large" and wide[3] < 2
    assert "context" in orjson.loads(wide[1])["message"]
    assert fine[0] == 200 and orjson.loads(fine[1])["accepted"] == 100


@pytest.fixture
def own_broker(tmp_path_factory):
    instance = LocalBroker(port=broker_port(), data_dir=tmp_path_factory.mktemp("kafka-collector-outage"))
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


def test_a_broker_outage_is_answered_503_with_retry_after_in_time_and_nothing_acknowledged_is_lost(
    own_broker, tmp_path, collectors
):
    keys = tmp_path / "write-keys"
    keys.write_text(WRITE_KEY + "\n")
    settings = Settings(
        broker=f"kafka://127.0.0.1:{own_broker.port}",
        input_topic="collector-outage.events",
        partitions=4,
        write_keys_file=keys,
        collect_port=free_port(),
    )
    collector = collectors(settings)
    bound_s = 5.0 + 1.5  # the default delivery timeout, plus room for a busy machine
    answers: list[tuple[str, int, float, str | None]] = []  # (messageId, status, seconds, Retry-After)

    async def health(session: aiohttp.ClientSession) -> int:
        async with session.get("/health") as response:
            await response.read()
            return response.status

    async def sender(session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        number = 0
        while not stop.is_set():
            number += 1
            message_id = f"outage-{number}"
            body = orjson.dumps({"type": "track", "event": "Email Opened", "userId": "ada", "messageId": message_id})
            try:
                status, _, headers, took = await post(session, "/v1/track", body)
            except (aiohttp.ClientError, TimeoutError):
                status, headers, took = 0, {}, 0.0
            answers.append((message_id, status, took, headers.get("Retry-After")))
            await asyncio.sleep(0.05)

    async def scenario() -> tuple[float, float]:
        async with aiohttp.ClientSession(collector.base_url, timeout=aiohttp.ClientTimeout(total=60)) as session:
            stop = asyncio.Event()
            senders = [asyncio.ensure_future(sender(session, stop)) for _ in range(4)]
            await asyncio.sleep(2)
            await asyncio.to_thread(own_broker.stop)
            stopped = time.monotonic()
            while await health(session) == 200 and time.monotonic() - stopped < 15:
                await asyncio.sleep(0.2)
            down_s = time.monotonic() - stopped  # asserted below, with the other figures
            await asyncio.sleep(max(0.0, 12 - down_s))
            await asyncio.to_thread(own_broker.start)
            restarted = time.monotonic()
            while await health(session) != 200:
                assert time.monotonic() - restarted < 60, "/health stays 503 after the broker is back"
                await asyncio.sleep(0.2)
            back_s = time.monotonic() - restarted
            acknowledged = sum(1 for a in answers if a[1] == 200)
            while sum(1 for a in answers if a[1] == 200) < acknowledged + 20:
                await asyncio.sleep(0.1)
            stop.set()
            await asyncio.gather(*senders)
            return down_s, back_s

    down_s, back_s = asyncio.run(scenario())
    refused = [a for a in answers if a[1] != 200]
    slowest = max(a[2] for a in answers)
    print(
        f"\n{len(answers)} calls, {len(refused)} refused during the outage; slowest answer {slowest:.1f} s; "
        f"/health 503 {down_s:.1f} s after the stop, 200 {back_s:.1f} s after the restart; the collector's log:\n"
        + collector.log_path.read_text(errors="replace")[-3_000:]
    )
    assert down_s < 15, "/health still said 200 15 s after the broker stopped"
    assert refused, "no call was sent during the outage"
    assert all(status == 503 and retry_after for _, status, _, retry_after in refused), refused[:3]
    assert slowest < bound_s, f"an answer took {slowest:.1f} s (SDKs give up after {SDK_TIMEOUT_S:.0f} s)"
    log = collector.log_path.read_text(errors="replace")
    assert "Traceback" not in log and log.count("\n") < 100, log[-3_000:]  # an outage is a few lines
    acknowledged = {message_id for message_id, status, _, _ in answers if status == 200}
    stored = {orjson.loads(v)["messageId"] for _, v in read_all(settings, settings.input_topic) if v is not None}
    assert acknowledged <= stored, f"acknowledged but not in the topic: {sorted(acknowledged - stored)[:5]}"
