"""The stream and the offline scorer accept and refuse the same records: the agent's decode,
validate and "in the future" check, fed as Kafka hands records over, against `score_lines`
over the same bytes (both go through schemas.events.admit_event)."""

import random

import orjson
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from leadpulse.cli.offline import score_lines
from leadpulse.scoring.timeutil import format_ms, now_ms
from leadpulse.streams.chunks import chunk_event
from tests.agents.test_scoring_agent import settled

MINUTE_MS, DAY_MS = 60_000, 86_400_000
# Event times around the clock: far from the 15-minute limit by more than a test can take,
# so the agent's clock and the offline scorer's (read a moment apart) decide alike.
OFFSETS_MS = [-40 * DAY_MS, -DAY_MS, -MINUTE_MS, 0, 5 * MINUTE_MS, 13 * MINUTE_MS, 17 * MINUTE_MS, DAY_MS]
FAR = ["2099-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1970-01-01T00:00:00Z"]


def native(rng: random.Random, n: int, clock: int) -> dict:
    at = format_ms(clock + rng.choice(OFFSETS_MS)) if rng.random() < 0.8 else rng.choice(FAR)
    return {"event_id": f"n-{n}", "type": "page_viewed", "contact_id": f"parity-{n % 7}", "occurred_at": at}


def segment(rng: random.Random, n: int, clock: int) -> dict:
    """A Segment message, with a `receivedAt` (the collector's stamp) now, long ago or absent."""
    received = rng.choice([None, clock, clock - DAY_MS, clock - 40 * DAY_MS])
    at = received if received is not None else clock
    message: dict = {"type": "track", "event": "Demo Requested", "messageId": f"s-{n}", "userId": f"parity-{n % 5}"}
    when = rng.choice(["timestamp", "originalTimestamp", "none"])
    if when != "none":
        message[when] = format_ms(at + rng.choice(OFFSETS_MS))
    if received is not None:
        message["receivedAt"] = format_ms(received)
        message["sentAt"] = format_ms(received)
    return message


def records(seed: int, count: int, clock: int) -> list[bytes]:
    rng = random.Random(seed)
    lines = [orjson.dumps((native if rng.random() < 0.5 else segment)(rng, n, clock)) for n in range(count)]
    # and records no decoder takes, which the two must refuse alike too
    return [*lines, b"{oops", b"[1]", b'{"event_id": "x", "type": "Page Viewed", "contact_id": "c", "occurred_at": 1}']


async def test_the_worker_and_the_offline_scorer_accept_and_refuse_the_same_records(scorer, sent):
    clock = now_ms()
    values = records(seed=18, count=400, clock=clock)
    tp = TP(scorer.settings.input_topic, scorer.settings.partitions - 1)  # one the commit-policy tests leave alone
    consumed = [
        ConsumerRecord(tp.topic, tp.partition, 5_000 + i, clock, 0, b"parity", value, None, 6, len(value), [])
        for i, value in enumerate(values)
    ]
    async with scorer.agent.test_context() as agent:
        chunk = chunk_event(scorer.app, tp, consumed)
        chunk.message.incref()
        await agent.stream().channel.put(chunk)
        assert await settled(lambda: chunk.message.acked)
    stream_refused = {
        letter["origin"]["offset"] - 5_000: letter["field"]
        for _, letter in sent("dead_letters")
        if letter["origin"]["topic"] == tp.topic
    }

    offline_refused: dict[int, str] = {}
    score_lines(
        values,
        scorer.rules,
        limits=scorer.settings.input_limits,
        on_bad=lambda line, error: offline_refused.setdefault(line - 1, error.field),
    )

    assert offline_refused == stream_refused
    future = [i for i, field in offline_refused.items() if field == "occurred_at" and b"2099" in values[i]]
    assert future and len(offline_refused) < len(values) // 2  # both kinds of outcome are exercised
