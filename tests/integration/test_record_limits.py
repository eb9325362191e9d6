"""No input makes the worker write a record the broker refuses (docs/guarantees.md#bounds), on
the real broker: topics created with a small max.message.bytes, read by the worker at start-up."""

import asyncio
from dataclasses import replace

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from leadpulse.cli.kafka_clients import latest_by_key
from leadpulse.cli.offline import score_lines
from leadpulse.schemas.limits import batch_limit
from leadpulse.schemas.outputs import account_record, snapshot_record
from leadpulse.scoring.rules import load_rules
from leadpulse.streams.outbox import Outbox
from leadpulse.streams.startup import read_record_limits, topic_specs
from tests.integration.harness import produce, read_all, scores_reach, set_topic_config, wait_for
from tests.integration.oracle import traffic_lines

pytestmark = pytest.mark.integration

LIMIT = 65_536  # max.message.bytes of every topic the worker writes
PAD = "\x01" * 3_000  # 3,000 characters as sent, 18,000 bytes as stored
PADDED = ["job_title", "department", "industry", "country", "channel"]


def padded_lines(contact: str) -> list[bytes]:
    """Five padded profile values, then a demo request: the fourth value would take the
    contact's state over 64 KB."""
    lines = [
        orjson.dumps(
            {
                "event_id": f"{contact}-pad-{number}",
                "type": "profile_updated",
                "contact_id": contact,
                "occurred_at": f"2026-11-0{number + 1}T09:00:00Z",
                "properties": {attribute: PAD},
            }
        )
        for number, attribute in enumerate(PADDED[:4])
    ]
    lines.append(
        orjson.dumps(
            {
                "event_id": f"{contact}-demo",
                "type": "demo_requested",
                "contact_id": contact,
                "occurred_at": "2026-11-06T09:00:00Z",
            }
        )
    )
    return lines


# Two member attributes padded: the member record (36 KB) fits account-members, but an account
# snapshot listing it in each of its 3 top places (108 KB) would not fit account-scores.
COMMITTEE = orjson.dumps(
    {
        "event_id": "committee-profile",
        "type": "profile_updated",
        "contact_id": "committee@bigcorp.example",
        "occurred_at": "2026-11-02T09:00:00Z",
        "properties": {"department": PAD, "seniority": PAD},
    }
)


def test_an_event_or_member_record_that_would_outgrow_a_64_kb_topic_is_dead_lettered_and_the_worker_scores_on(
    make_settings, workers
):
    settings = make_settings(partitions=2, max_string=20_000)
    changelog = f"{settings.app_id}-contacts-changelog"
    account_scores = settings.topic("account-scores")
    for spec in topic_specs(settings):
        if spec.partitions is None:  # Faust's assignor topic is Faust's own
            config = {**spec.config, "max.message.bytes": str(LIMIT)}
            asyncio.run(set_topic_config(settings, spec.name, config, create=True))
    contact = "padded@bigcorp.example"
    lines = [*traffic_lines(600, 60, seed=5), *padded_lines(contact), COMMITTEE]

    refused: list[tuple[int, str]] = []
    run = score_lines(
        lines,
        load_rules(),
        limits=replace(settings.input_limits, max_message_bytes=LIMIT),  # the worker's limits, the topics' size
        on_bad=lambda line, error: refused.append((line, str(error))),
    )
    expected = {view.contact_id: snapshot_record(view) for view in run.snapshots(None)}
    assert [line for line, _ in refused] == [len(lines) - 2], "the oracle refuses the fourth padded value"
    accounts = {view.account_id: account_record(view) for view in run.accounts(None)}
    assert accounts["bigcorp.example"]["contacts"] == 1, "the oracle leaves the committee member out"

    worker = workers(settings)
    produce(settings, lines)
    scores_reach(settings, expected, timeout_s=90, alive=worker.running)
    scores_reach(settings, accounts, timeout_s=30, alive=worker.running, topic="account-scores")
    letters = [orjson.loads(value) for _, value in read_all(settings, settings.topic("dead-letters"))]
    members = [letter for letter in letters if letter["origin"]["topic"] == settings.internal_topic("account-members")]
    (letter,) = [letter for letter in letters if letter not in members]
    reason = letter["reason"]
    assert reason.startswith(f"{changelog}: a record of ")
    assert f"over the {batch_limit(LIMIT)} bytes the topic takes" in reason
    assert letter["origin"]["offset"] is not None and letter["origin"]["key"]["text"] == contact
    assert wait_for(
        lambda: worker.metric("leadpulse_records_too_large_total", f'topic="{changelog}"') == 1, timeout_s=10
    )
    # The committee member's record, refused by the accounts agent with its cause (each time
    # the contact is published: once, unless a cooling tick publishes it again).
    assert members and all(refusal["reason"].startswith(f"{account_scores}: a record of ") for refusal in members)
    assert all("committee@bigcorp.example" in refusal["value"]["text"] for refusal in members)
    assert wait_for(
        lambda: worker.metric("leadpulse_records_too_large_total", f'topic="{account_scores}"') >= 1, timeout_s=10
    )
    assert worker.running() and worker.health() is not None
    state = latest_by_key(read_all(settings, settings.topic("contact-scores")))[contact]
    assert state["stage"] == expected[contact]["stage"]


def test_the_outbox_cuts_batches_at_the_limit_the_worker_read_from_the_topic(make_settings):
    """Sixty records of 2 KB to a topic of 16 KB: one record batch of the producer's size
    would be refused whole; cut at the topic's limit, every record arrives, in order."""
    settings = make_settings(partitions=1)
    topic = settings.topic("small-batches")
    records = [(f"k{i}".encode(), bytes([65 + i % 26]) * 2_000) for i in range(60)]

    async def send() -> None:
        await set_topic_config(settings, topic, {"max.message.bytes": "16384"}, create=True)
        limits = await read_record_limits(settings, [topic])
        assert limits.of(topic) == batch_limit(16_384)
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, max_batch_size=256 * 1024)
        await producer.start()
        try:
            outbox = Outbox(limits=limits)
            for key, value in records:
                outbox.add(topic, 0, key, value)
            await outbox.deliver(producer)
        finally:
            await producer.stop()

    asyncio.run(send())
    assert read_all(settings, topic) == records
