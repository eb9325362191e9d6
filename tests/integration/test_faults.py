"""Guarantees under injected failures, on the real broker, checked against the offline scorer:
a delivery the broker refuses, poison records, a crash in the middle of a long burst."""

import asyncio
import random

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from leadpulse.cli.kafka_clients import ensure_topic
from leadpulse.scoring.timeutil import format_ms, now_ms
from leadpulse.streams.startup import prepare_topics
from tests.integration.harness import latest_by_key, produce, read_all, scores_reach, set_topic_config, wait_for
from tests.integration.oracle import Oracle, traffic_lines

pytestmark = pytest.mark.integration
OUTCOMES = ("scored", "unscored", "duplicate", "replayed", "rekeyed", "dead_letter")


def outcome_counts(worker) -> dict[str, float]:
    return {outcome: worker.metric("leadpulse_events_total", f'outcome="{outcome}"') for outcome in OUTCOMES}


def test_a_delivery_the_broker_refuses_stops_the_worker_and_nothing_is_committed_past_it(make_settings, workers):
    """hot-leads is changed to take records of 200 bytes at most once the worker has read its
    limit (at start-up: a record it knows to be too large is dead-lettered instead, see
    test_record_limits.py): the first hot lead is refused for good. The worker must stop
    rather than commit; once the topic is fixed, a restart completes every output as the
    offline scorer has it."""
    settings = make_settings()
    hot_leads = settings.topic("hot-leads")
    lines = traffic_lines(20_000, 300, seed=23)
    oracle = Oracle(lines)
    assert oracle.hot_lead_ids, "the traffic must make hot leads for this test to mean anything"
    worker = workers(settings)
    asyncio.run(set_topic_config(settings, hot_leads, {"max.message.bytes": "200"}, create=False))
    produce(settings, lines)
    assert wait_for(lambda: not worker.running(), timeout_s=90, interval_s=0.2), "the worker kept running"
    assert worker.process.returncode != 0
    log = worker.log_path.read_text(errors="replace")
    assert "a scoring batch could not be delivered" in log and "MessageSizeTooLarge" in log

    asyncio.run(set_topic_config(settings, hot_leads, {"max.message.bytes": "1048588"}, create=False))
    worker.start()
    scores_reach(settings, oracle.snapshots, timeout_s=120)
    published = {orjson.loads(value)["id"] for _, value in read_all(settings, hot_leads)}
    assert published == oracle.hot_lead_ids


def _poison(settings) -> list[tuple[bytes | None, bytes]]:
    """Records an attacker or a broken producer could write, as (key, value)."""
    at = format_ms(now_ms() - 3_600_000)

    def event(**fields):
        document = {"event_id": "p", "type": "page_viewed", "contact_id": "poison-c", "occurred_at": at}
        document.update(fields)
        return orjson.dumps(document)

    return [
        (b"k", b"\xff\xfe\xfd not UTF-8"),
        (None, b"not json at all"),
        (b"k", b"\x01" * 170_000),
        (b"k", b'"' * 900_000),
        (b"k", b"[" * 5_000 + b"]" * 5_000),
        (b"k", b'{"a":' * 900 + b"1" + b"}" * 900),
        (b"k", event(event_id=5)),
        (b"k", event(occurred_at="0001-01-01T00:00:00Z")),
        (b"k", event(occurred_at="9999-12-31T23:59:59-05:00")),
        (b"k", event(contact_id="x" * 100_000)),
        (b"k", event(contact_id="")),
        (b"k", event(properties={"job_title": "CEO " * 5_000})),
        (b"k", event(properties={f"p{i}": i for i in range(5_000)})),
        (b"someone-else", orjson.dumps({"nested": [[[[[[[[[[[["deep"]]]]]]]]]]]]})),
        (b"k", b"{}"),
        (b"k", b"null"),
    ]


def _fuzzed(count: int, seed: int) -> list[bytes]:
    """Valid events cut, re-typed or stripped at random: each is either still valid or is
    rejected; the oracle decides which by decoding it the same way."""
    rng = random.Random(seed)
    out = []
    for line in traffic_lines(count, 50, seed=seed):
        document = orjson.loads(line)
        document["event_id"] = f"fuzz-{seed}-{len(out)}"
        choice = rng.randrange(5)
        if choice == 0:
            out.append(orjson.dumps(document)[: rng.randrange(1, 40)])
            continue
        if choice == 1:
            document[rng.choice(list(document))] = rng.choice([None, 7, [], {}, "", True])
        elif choice == 2:
            document.pop(rng.choice(list(document)))
        out.append(orjson.dumps(document))
    return out


def test_poison_records_among_valid_ones_are_dead_lettered_and_the_worker_keeps_going(make_settings, workers):
    settings = make_settings()
    valid = traffic_lines(4_000, 400, seed=29)
    fuzz = _fuzzed(300, seed=31)
    oracle = Oracle(valid + fuzz)
    poison = _poison(settings)
    asyncio.run(prepare_topics(settings))
    worker = workers(settings)

    async def send_all() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, max_request_size=2_000_000)
        await producer.start()
        try:
            sent = 0
            mixed = [(None, line) for line in valid[:2_000] + fuzz] + poison + [(None, line) for line in valid[2_000:]]
            for key, value in mixed:
                await producer.send(settings.input_topic, value, key=key)
                sent += 1
            await producer.send(settings.internal_topic("cooling-ticks"), b'{"at_ms": 1}', key=None, partition=0)
            await producer.send(settings.internal_topic("cooling-ticks"), b"\x00garbage", key=b"c", partition=0)
            await producer.flush()
            return sent + 2
        finally:
            await producer.stop()

    sent = asyncio.run(send_all())
    scores_reach(settings, oracle.snapshots, timeout_s=120)
    assert worker.running()

    def balanced():
        counts = outcome_counts(worker)
        return counts if sum(counts.values()) - counts["rekeyed"] == sent else None

    counts = wait_for(balanced, timeout_s=30)
    assert counts, f"consumed != scored + unscored + duplicates + dead letters: {outcome_counts(worker)}, {sent} sent"
    letters = [orjson.loads(value) for _, value in read_all(settings, settings.topic("dead-letters"))]
    assert len(letters) == counts["dead_letter"] == len(poison) + 2 + oracle.bad_lines
    # the excerpt is bounded in raw bytes; JSON escapes a control byte as six characters
    bound = 6 * settings.input_limits.dead_letter_excerpt + 4_000
    assert all(len(value) < bound for _, value in read_all(settings, settings.topic("dead-letters")))
    assert all(letter["reason"] and letter["origin"]["topic"] for letter in letters)
    huge = [letter for letter in letters if letter.get("size") == 900_000]
    assert huge and "limit" in huge[0]["reason"] and huge[0]["truncated"]


def test_a_crash_during_a_long_burst_for_one_contact_counts_every_event_once(make_settings, workers):
    """A replay after kill -9 re-delivers everything since the last commit: a contact with
    thousands of events in that span (a bot, a bulk import) must not be counted twice."""
    settings = make_settings()
    start = now_ms() - 20 * 86_400_000
    burst = [
        orjson.dumps(
            {
                "event_id": f"bot-{i}",
                "type": "page_viewed",
                "contact_id": "bot@crawler.io",
                "occurred_at": format_ms(start + i * 60_000),
                "properties": {"path": "/blog/lead-scoring-101"},
            }
        )
        for i in range(10_000)
    ]
    around = traffic_lines(20_000, 2_000, seed=37)
    lines = around[:3_000] + burst + around[3_000:]
    oracle = Oracle(lines)
    produce(settings, lines)
    worker = workers(settings)
    assert wait_for(lambda: worker.metric("leadpulse_events_total", 'outcome="scored"') >= 6_000, 90, 0.02)
    worker.kill()
    at_kill = latest_by_key(read_all(settings, settings.topic("contact-scores"), idle_s=0.5))
    assert at_kill != oracle.snapshots, "the worker finished before it was killed: nothing was tested"
    worker.start()
    scores_reach(settings, oracle.snapshots, timeout_s=120)
    hot = {orjson.loads(value)["id"] for _, value in read_all(settings, settings.topic("hot-leads"))}
    assert hot == oracle.hot_lead_ids


def test_three_kills_during_one_stream_change_nothing_in_the_result(make_settings, workers):
    settings = make_settings()
    lines = traffic_lines(60_000, 6_000, seed=41)
    oracle = Oracle(lines)
    produce(settings, lines)
    worker = workers(settings)
    for progress in (1_000, 5_000, 10_000):  # counted by each new process from its own start
        assert wait_for(lambda n=progress: worker.metric("leadpulse_events_total", 'outcome="scored"') >= n, 90, 0.02)
        worker.kill()
        worker.start()
    scores_reach(settings, oracle.snapshots, timeout_s=180)
    stage_changes = {orjson.loads(value)["id"] for _, value in read_all(settings, settings.topic("stage-changes"))}
    assert stage_changes == oracle.stage_change_ids
    hot = {orjson.loads(value)["id"] for _, value in read_all(settings, settings.topic("hot-leads"))}
    assert hot == oracle.hot_lead_ids


def test_an_output_topic_deleted_mid_run_holds_the_worker_until_it_is_back(make_settings, workers):
    """Deliveries to a deleted topic fail with retriable errors: the worker waits, says so on
    /health, commits nothing past them, and goes on once the topic exists again."""
    settings = make_settings()
    stage_changes = settings.topic("stage-changes")
    lines = traffic_lines(6_000, 600, seed=43)
    oracle = Oracle(lines)
    worker = workers(settings)
    produce(settings, lines[:2_000])
    scores_reach(settings, Oracle(lines[:2_000]).snapshots, timeout_s=90)

    async def delete() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
        await admin.start()
        try:
            await admin.delete_topics([stage_changes])
        finally:
            await admin.close()

    asyncio.run(delete())
    produce(settings, lines[2_000:])
    held = wait_for(lambda: (h := worker.health()) and h["status"] != "ok" and h["delivery_error"], 120, 0.5)
    assert held, "the worker did not report the failing deliveries"
    assert worker.running()
    asyncio.run(ensure_topic(settings, stage_changes))
    scores_reach(settings, oracle.snapshots, timeout_s=180)
    assert wait_for(lambda: (h := worker.health()) and h["status"] == "ok", 60, 0.5)
    # what reached the topic after it came back: every stage change of the held batches
    after = {orjson.loads(value)["id"] for _, value in read_all(settings, stage_changes)}
    assert after and after <= oracle.stage_change_ids
