"""Erasure on the real broker (docs/erasure.md): `leadpulse erase` removes a person from every
table, and within the documented delay from every topic of the cluster and from the worker's
data folder; only the erase command's topic can erase, and erasure markers expire.

The broker of this module checks retention every half second and its cleaner backs off half
a second (KAFKA_EXTRA_PROPERTIES), and the worker creates its topics with a short
LEADPULSE_EVENT_RETENTION and LEADPULSE_COMPACTION_LAG, as docs/erasure.md says to test it:
the same mechanisms as in production, on a clock of seconds instead of days."""

import asyncio
from importlib import resources
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from leadpulse.cli.main import main
from leadpulse.cli.processes import LocalBroker, broker_port
from leadpulse.scoring.erasure import NOT_HERE, Erasure, expiry_key, marker_key
from leadpulse.scoring.rules import load_rules
from leadpulse.scoring.timeutil import format_ms, now_ms
from leadpulse.streams.partitioning import home_partition
from leadpulse.streams.security import client_options
from leadpulse.streams.settings import Settings
from leadpulse.streams.startup import changelog_topic
from tests.factories import buyer_documents, raw_event
from tests.integration.harness import (
    produce,
    read_all,
    request_erasures,
    scores_reach,
    set_topic_config,
    wait_for,
)
from tests.integration.oracle import Oracle

pytestmark = pytest.mark.integration

EVENT_RETENTION_MS = 30_000  # long enough to score everything before the input is deleted
COMPACTION_LAG_MS = 2_000
HOUR_MS = 3_600_000


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """This module's own broker: retention and cleaner checks on a clock of seconds."""
    fast = "log.retention.check.interval.ms=500\nlog.cleaner.backoff.ms=500\nlog.initial.task.delay.ms=500"
    instance = LocalBroker(
        port=broker_port(),
        data_dir=tmp_path_factory.mktemp("kafka-erasure"),
        extra_env={"KAFKA_EXTRA_PROPERTIES": fast},
    )
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


# The person: an e-mail sent in mixed case, a phone, a last name, a street, two devices.
SENT_AS, EVE = "Eve@VictimCorp.com", "eve@victimcorp.com"
PHONE, LAST_NAME, STREET = "+33 6 12 34 56 78", "Quillfeather", "17 Rue des Glycines"
LAPTOP, PHONE_COOKIE = "eve-laptop-7f3a", "eve-phone-91bc"
NEEDLES = tuple(needle.lower().encode() for needle in (EVE, PHONE, LAST_NAME, STREET, LAPTOP, PHONE_COOKIE))


def person_lines() -> list[bytes]:
    """Eve browses on two devices, identifies with her details (Segment identify and alias),
    becomes a hot lead with stage changes, in the account victimcorp.com with a colleague."""
    at = format_ms(now_ms() - 2 * HOUR_MS)
    segment = [
        {
            "type": "page",
            "anonymousId": LAPTOP,
            "messageId": "s-1",
            "timestamp": at,
            "properties": {"path": "/pricing"},
        },
        {
            "type": "identify",
            "userId": SENT_AS,
            "anonymousId": LAPTOP,
            "messageId": "s-2",
            "timestamp": at,
            "traits": {
                "email": SENT_AS,
                "phone": PHONE,
                "lastName": LAST_NAME,
                "title": "CTO",
                "address": {"street": STREET, "city": "Lyon", "country": "FR"},
            },
        },
        {"type": "alias", "userId": SENT_AS, "previousId": PHONE_COOKIE, "messageId": "s-3", "timestamp": at},
    ]
    native = [
        raw_event("page_viewed", event_id="n-1", anonymous_id=PHONE_COOKIE, contact_id=None, occurred_at=at),
        *buyer_documents(SENT_AS, at),
        *buyer_documents("bob@victimcorp.com", at),
        raw_event("page_viewed", event_id="n-2", contact_id="ada@acme.io", occurred_at=at),
    ]
    return [orjson.dumps({k: v for k, v in line.items() if v is not None}) for line in (*segment, *native)]


async def _holding(settings: Settings) -> dict[str, set[bytes]]:
    """Every topic of the cluster, every partition from its first offset to its end: which
    topic holds which of the person's needles (keys and values, any case)."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        described = await admin.describe_topics(await admin.list_topics())
    finally:
        await admin.close()
    partitions = [TopicPartition(entry["topic"], p["partition"]) for entry in described for p in entry["partitions"]]
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=None, enable_auto_commit=False)
    await consumer.start()
    found: dict[str, set[bytes]] = {}
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        pending = {tp for tp in partitions if ends[tp] > await consumer.position(tp)}
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1_000)
            for tp, records in batches.items():
                for record in records:
                    blob = ((record.key or b"") + b"\n" + (record.value or b"")).lower()
                    found.setdefault(tp.topic, set()).update(needle for needle in NEEDLES if needle in blob)
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return {topic: needles for topic, needles in found.items() if needles}


def files_holding(folders: list[Path]) -> dict[str, set[bytes]]:
    """Every file under `folders` (RocksDB's SST, WAL, MANIFEST, LOG; the worker's log) read
    as bytes: which holds which needle."""
    found = {}
    for folder in folders:
        for path in folder.rglob("*") if folder.is_dir() else [folder]:
            if path.is_file():
                blob = path.read_bytes().lower()
                needles = {needle for needle in NEEDLES if needle in blob}
                if needles:
                    found[str(path)] = needles
    return found


def test_after_erase_and_the_erasure_delay_no_topic_and_no_state_file_holds_the_person(
    make_settings, workers, monkeypatch
):
    settings = make_settings(partitions=4, event_retention=EVENT_RETENTION_MS, compaction_lag=COMPACTION_LAG_MS)
    lines = person_lines()
    worker = workers(settings)
    produce(settings, lines)
    future = raw_event("demo_requested", event_id="f-1", contact_id=SENT_AS, properties={"phone": PHONE})
    produce(settings, [orjson.dumps({**future, "occurred_at": "2099-01-01T00:00:00Z"})])  # a dead letter
    scores_reach(settings, Oracle(lines).snapshots, timeout_s=60)
    assert worker.get(f"/contacts/{EVE}")[0] == 200, "the id sent in mixed case is the lower-case contact"
    assert worker.get(f"/contacts/{SENT_AS}?at=last-event") == worker.get(f"/contacts/{EVE}?at=last-event")

    # The scan finds the person everywhere before the erasure: it would see what remains after.
    before = asyncio.run(_holding(settings))
    for topic in (
        *(settings.topic(name) for name in ("contact-scores", "stage-changes", "hot-leads", "dead-letters")),
        *(settings.internal_topic(name) for name in ("events-by-contact", "account-members")),
    ):
        assert topic in before, f"{topic} never held the person: the scan proves nothing"
    assert settings.input_topic in before and changelog_topic(settings) in before
    if settings.store.startswith("rocksdb"):  # TEST_STORE=memory:// keeps no file
        assert files_holding([settings.data_dir]), "the state folder never held the person: the scan proves nothing"

    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    assert main(["erase", SENT_AS]) == 0  # in the case it was sent in: matched all the same
    erase_line = orjson.dumps(
        raw_event("contact_erased", event_id="x", contact_id=EVE, occurred_at=format_ms(now_ms()))
    )
    after = Oracle([*lines, erase_line])
    scores_reach(settings, after.snapshots, timeout_s=60)
    scores_reach(settings, after.accounts, timeout_s=60, topic="account-scores")
    assert EVE not in str(after.accounts) and "bob@victimcorp.com" in after.snapshots
    assert worker.get(f"/contacts/{EVE}")[0] == 404 and worker.get(f"/contacts/{LAPTOP}")[0] == 404

    remaining: dict[str, dict[str, set[bytes]]] = {}

    def gone() -> bool:
        remaining["topics"] = asyncio.run(_holding(settings))
        remaining["files"] = files_holding([settings.data_dir, worker.log_path])
        return not remaining["topics"] and not remaining["files"]

    delay_s = (EVENT_RETENTION_MS + COMPACTION_LAG_MS) / 1000
    assert wait_for(gone, timeout_s=delay_s + 30, interval_s=2.0), f"still holding the person: {remaining}"
    assert worker.running()


def test_only_the_erase_command_erases_and_an_erasure_marker_expires_after_its_grace(make_settings, workers, tmp_path):
    rules = tmp_path / "rules.toml"
    shipped = (resources.files("leadpulse.scoring") / "default_rules.toml").read_text()
    rules.write_text(shipped.replace('grace = "30d"', 'grace = "2s"'))
    settings = make_settings(partitions=2, rules=rules)
    # A topic made before the worker set lifetimes (an upgrade): the worker says it in one line.
    asyncio.run(set_topic_config(settings, settings.topic("nurture"), {}, create=True))
    at_ms = now_ms() - HOUR_MS
    at = format_ms(at_ms)
    lines = [
        orjson.dumps(line) for line in (*buyer_documents("bob@shop.fr", at), *buyer_documents("carol@shop.fr", at))
    ]
    # Anyone with a write key: a native erasure and a Segment track "Contact Erased" on the input topic.
    attacks = [
        orjson.dumps(raw_event("contact_erased", event_id="a-1", contact_id="bob@shop.fr", occurred_at=at)),
        b'{"type": "track", "event": "Contact Erased", "userId": "bob@shop.fr", "messageId": "a-2", "timestamp": "'
        + at.encode()
        + b'"}',
    ]
    worker = workers(settings)
    warning = "topics made without the retention and compaction settings of the erasure delay"
    assert f"{warning}: {settings.topic('nurture')}; apply them" in Path(worker.log_path).read_text()
    produce(settings, [*lines, *attacks])
    scores_reach(settings, Oracle([*lines, attacks[1]]).snapshots, timeout_s=60)
    letters = [orjson.loads(value) for _, value in read_all(settings, settings.topic("dead-letters"), idle_s=0.5)]
    assert [(letter["field"], letter["reason"]) for letter in letters] == [("type", f"type: {NOT_HERE}")]

    # An erasure from the erase command's topic, an hour old: its 2 s grace is long over.
    erase = orjson.dumps(raw_event("contact_erased", event_id="x-1", contact_id="carol@shop.fr", occurred_at=at))
    request_erasures(settings, [erase])
    assert wait_for(lambda: worker.get("/contacts/carol@shop.fr")[0] == 404, 60, 0.2)
    late = orjson.dumps(raw_event("webinar_attended", event_id="late", contact_id="carol@shop.fr", occurred_at=at))
    produce(settings, [late])  # occurred before the deadline: forgotten, and its record time expires the marker
    assert wait_for(lambda: worker.metric("leadpulse_events_total", 'outcome="forgotten"') >= 1, 60, 0.2)
    changelog = read_all(settings, changelog_topic(settings), idle_s=0.5)
    marker = marker_key("carol@shop.fr")
    written = [value for key, value in changelog if key == marker]
    assert written and written[-1] is None, "the marker was not deleted after its grace"
    carols = home_partition(b"carol@shop.fr", settings.partitions)
    index = [value for key, value in changelog if key == expiry_key(carols, marker, Erasure(at_ms + 2_000))]
    assert index == [b"", None], "the marker's expiry index entry was not written, then deleted"

    back = orjson.dumps(raw_event("page_viewed", event_id="back", contact_id="carol@shop.fr"))
    back = orjson.dumps({**orjson.loads(back), "occurred_at": format_ms(now_ms())})
    produce(settings, [back])
    offline = Oracle([*lines, attacks[1], erase, late, back], load_rules(rules))
    assert "carol@shop.fr" in offline.snapshots, "back after the grace: a new profile, offline too"
    scores_reach(settings, offline.snapshots, timeout_s=60)
