"""The scoring agent in Faust's test context: records in, table writes and record batches out."""

import asyncio
from dataclasses import replace
from unittest.mock import AsyncMock

import orjson
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from leadpulse.agents import scoring as scoring_module
from leadpulse.cli.offline import score_lines
from leadpulse.schemas.outputs import dumps, snapshot_record
from leadpulse.scoring.accounts import AccountState, fold, member_from_bytes, receive
from leadpulse.scoring.identity import version_of
from leadpulse.scoring.timeutil import format_ms, now_ms, parse_rfc3339_ms
from leadpulse.streams.chunks import chunk_event
from leadpulse.streams.outbox import DeliveryFailed
from leadpulse.streams.partitioning import home_partition
from tests.factories import buyer_documents, raw_event, seen_hashes


async def settled(condition, timeout_s=10.0):
    """Batches are taken every few milliseconds: wait until the agent has acted."""
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return False


async def put_at(agent, document: bytes, key: bytes | None, offset: int, topic: str | None = None):
    """Deliver a record at a chosen offset (test_context numbers them itself otherwise), on
    `topic` if given, referenced once as Faust's conductor does for a consumed message
    (test_context does not)."""
    channel = agent.stream().channel
    message = agent.to_message(key, document, offset=offset)
    if topic is not None:
        message.topic = topic
    message.incref()
    event = await channel.decode(message)
    await channel.put(event)
    return event


async def test_events_update_the_table_and_publish_snapshot_stage_changes_and_a_hot_lead(scorer, sent):
    async with scorer.agent.test_context() as agent:
        for document in buyer_documents("agent-c1"):
            await agent.put(orjson.dumps(document), key=b"agent-c1")
        assert await settled(lambda: (s := scorer.contacts.get("agent-c1")) is not None and s.stage == "opportunity")
    assert len([k for k, _ in sent("hot_leads") if k == b"agent-c1"]) == 1
    snapshots = [record for key, record in sent("scores") if key == b"agent-c1"]
    assert snapshots[-1]["temperature_label"] == "hot"
    assert [r["to_stage"] for k, r in sent("stage_changes") if k == b"agent-c1"] == ["lead", "opportunity"]


async def test_records_handed_over_as_one_chunk_are_scored_and_acknowledged_together_once_delivered(scorer, sent):
    contact = "agent-chunked"
    key = contact.encode()
    tp = TP(scorer.settings.input_topic, home_partition(key, scorer.settings.partitions))
    documents = [orjson.dumps(document) for document in buyer_documents(contact)]
    records = [
        ConsumerRecord(tp.topic, tp.partition, 100 + i, now_ms(), 0, key, document, None, len(key), len(document), [])
        for i, document in enumerate(documents)
    ]
    async with scorer.agent.test_context() as agent:
        chunk = chunk_event(scorer.app, tp, records)
        chunk.message.incref()  # the channel's reference, as the consumer takes one
        await agent.stream().channel.put(chunk)
        assert await settled(lambda: chunk.message.acked)
    assert scorer.contacts.get(contact).stage == "opportunity"
    assert [r["to_stage"] for k, r in sent("stage_changes") if k == key] == ["lead", "opportunity"]
    assert set(range(100, 100 + len(records))) <= scorer.app.consumer._acked_index[tp]


async def test_a_malformed_record_is_dead_lettered_and_the_agent_keeps_scoring(scorer, sent):
    async with scorer.agent.test_context() as agent:
        await agent.put(b"{broken", key=b"agent-c2")
        await agent.put(orjson.dumps(raw_event(event_id="ok-1", contact_id="agent-c2")), key=b"agent-c2")
        assert await settled(lambda: scorer.contacts.get("agent-c2") is not None)
    letters = sent("dead_letters")
    assert len(letters) == 1
    assert letters[0][1]["reason"].startswith("not valid JSON")
    assert letters[0][1]["value"]["text"] == "{broken"
    assert letters[0][1]["origin"]["key"]["text"] == "agent-c2"


async def test_a_record_that_makes_the_engine_raise_is_dead_lettered_alone(scorer, sent, monkeypatch):
    real_apply = scoring_module.apply

    def apply_or_raise(state, event, rules):
        if event.event_id == "poison":
            raise ZeroDivisionError("injected")
        return real_apply(state, event, rules)

    monkeypatch.setattr(scoring_module, "apply", apply_or_raise)
    contacts = [f"agent-many-{i}" for i in range(999)]
    async with scorer.agent.test_context() as agent:
        for i, contact in enumerate(contacts[:500]):
            await agent.put(orjson.dumps(raw_event(event_id=f"many-{i}", contact_id=contact)), wait=False)
        await agent.put(orjson.dumps(raw_event(event_id="poison", contact_id="agent-poisoned")), wait=False)
        for i, contact in enumerate(contacts[500:], start=500):
            await agent.put(orjson.dumps(raw_event(event_id=f"many-{i}", contact_id=contact)), wait=False)
        assert await settled(lambda: all(scorer.contacts.get(c) is not None for c in contacts[-5:]))
        assert all(scorer.contacts.get(contact) is not None for contact in contacts)
        assert scorer.contacts.get("agent-poisoned") is None
    letters = [record for _, record in sent("dead_letters")]
    assert len(letters) == 1
    assert letters[0]["reason"] == "could not be processed: ZeroDivisionError: injected"


async def test_a_redelivered_event_changes_nothing_and_republishes_the_same_snapshot(scorer, sent):
    document = orjson.dumps(raw_event(event_id="dup-1", contact_id="agent-c3"))
    async with scorer.agent.test_context() as agent:
        await agent.put(document, key=b"agent-c3")
        assert await settled(lambda: len([k for k, _ in sent("scores") if k == b"agent-c3"]) == 1)
        await agent.put(document, key=b"agent-c3")
        await agent.put(orjson.dumps(raw_event(event_id="other", contact_id="agent-c4")), key=b"agent-c4")
        assert await settled(lambda: any(key == b"agent-c4" for key, _ in sent("scores")))
    first, again = [record for key, record in sent("scores") if key == b"agent-c3"]
    assert first == again
    assert len([key for key, _ in sent("stage_changes") if key == b"agent-c3"]) == 1


async def test_a_replay_of_a_long_burst_changes_nothing_beyond_the_dedup_window(scorer, sent):
    """After a crash the records since the last commit come again, with the same offsets: a
    contact with far more events in that span than the id window (64) still counts each once."""
    contact = "agent-burst"
    burst = [
        orjson.dumps(raw_event(event_id=f"burst-{i}", contact_id=contact, type="email_clicked")) for i in range(300)
    ]
    async with scorer.agent.test_context() as agent:
        for offset, document in enumerate(burst, start=10_000):
            await put_at(agent, document, contact.encode(), offset)
        assert await settled(lambda: (s := scorer.contacts.get(contact)) is not None and len(seen_hashes(s)) == 64)
        assert await settled(lambda: scorer.contacts.get(contact).positions.get(scoring_module.REKEYED) == 10_299)
        before = scorer.contacts.get(contact)
        outputs_before = len(sent("stage_changes")) + len(sent("hot_leads"))
        for offset, document in enumerate(burst, start=10_000):
            await put_at(agent, document, contact.encode(), offset)
        await put_at(agent, orjson.dumps(raw_event(event_id="marker", contact_id="agent-after")), b"agent-after", 1)
        assert await settled(lambda: scorer.contacts.get("agent-after") is not None)
        after = scorer.contacts.get(contact)
    assert after.signals == before.signals and after.seen == before.seen
    assert len(sent("stage_changes")) + len(sent("hot_leads")) == outputs_before + 1  # the marker's lead


async def test_alerts_reach_the_broker_before_the_state_is_stored(scorer, delivery_order):
    """After a crash a replayed event finds its state stored: its alerts must already be out."""
    hot_leads = scorer.topics.hot_leads.get_topic_name()

    def destinations() -> list[str]:
        return [step.to for step in delivery_order]

    async with scorer.agent.test_context() as agent:
        for document in buyer_documents("agent-c5"):
            await agent.put(orjson.dumps(document), key=b"agent-c5")
        assert await settled(
            lambda: hot_leads in destinations() and "store" in destinations()[destinations().index(hot_leads) :]
        )
    order = destinations()
    assert order.index(hot_leads) < order.index("store", order.index(hot_leads))


async def test_a_refused_delivery_stops_the_worker_without_acknowledging_the_batch(scorer, capture, monkeypatch):
    crash = AsyncMock()
    monkeypatch.setattr(scorer.app, "crash", crash)
    capture.fail_next = MessageSizeTooLargeError()
    async with scorer.agent.test_context() as agent:
        event = await put_at(agent, orjson.dumps(raw_event(event_id="refused", contact_id="agent-c6")), None, 7)
        assert await settled(lambda: crash.await_count == 1)
    assert isinstance(crash.await_args.args[0], DeliveryFailed)
    assert not event.message.acked, "the batch was acknowledged although its outputs never reached the broker"


async def test_a_retriable_delivery_error_is_retried_until_the_broker_takes_the_records(
    scorer, capture, sent, monkeypatch
):
    crash = AsyncMock()
    monkeypatch.setattr(scorer.app, "crash", crash)
    capture.fail_next = KafkaTimeoutError()
    async with scorer.agent.test_context() as agent:
        await agent.put(orjson.dumps(raw_event(event_id="retried", contact_id="agent-c7")), wait=False)
        assert await settled(lambda: scorer.pipeline.readiness.deliveries.failing_since is not None)
        assert not any(key == b"agent-c7" for key, _ in sent("scores"))
        capture.fail_next = None
        assert await settled(lambda: any(key == b"agent-c7" for key, _ in sent("scores")))
    assert scorer.pipeline.readiness.deliveries.failing_since is None
    assert crash.await_count == 0


async def test_the_future_limit_is_judged_by_the_record_time_so_a_replay_decides_alike(scorer, sent):
    """Written at 09:00 and stamped 10:00: refused now as when it was first read, although by
    the clock of a later replay 10:00 is long past."""
    written = now_ms() - 5 * 3_600_000
    document = orjson.dumps(
        raw_event(event_id="early", contact_id="agent-c8", occurred_at=format_ms(written + 3_600_000))
    )
    async with scorer.agent.test_context() as agent:
        await agent.put(document, key=b"agent-c8", timestamp=written / 1000)
        assert await settled(lambda: len(sent("dead_letters")) == 1)
    letter = sent("dead_letters")[0][1]
    assert letter["field"] == "occurred_at" and "in the future" in letter["reason"]
    assert scorer.contacts.get("agent-c8") is None


async def test_a_late_event_after_a_cooling_tick_does_not_move_updated_at_back(scorer, sent):
    contact = "agent-c9"
    events_at = now_ms() - 40 * 86_400_000
    async with scorer.agent.test_context() as agent:
        for offset, document in enumerate(buyer_documents(contact, format_ms(events_at)), start=20_000):
            await put_at(agent, orjson.dumps(document), contact.encode(), offset)
        assert await settled(lambda: (s := scorer.contacts.get(contact)) is not None and s.stage == "opportunity")
        tick_at = now_ms()
        tick = agent.to_message(contact.encode(), orjson.dumps({"at_ms": tick_at}), offset=1)
        tick.topic = scorer.cooling_topic
        channel = agent.stream().channel
        await channel.put(await channel.decode(tick))
        assert await settled(lambda: scorer.contacts.get(contact).published_ms == tick_at)
        late = raw_event("email_opened", event_id="late", contact_id=contact, occurred_at=format_ms(events_at - 1000))
        await put_at(agent, orjson.dumps(late), contact.encode(), 30_000)
        assert await settled(lambda: scorer.contacts.get(contact).positions.get(scoring_module.REKEYED) == 30_000)
    published = [parse_rfc3339_ms(record["updated_at"]) for key, record in sent("scores") if key == contact.encode()]
    assert published == sorted(published) and published[-1] == tick_at


async def test_an_erasure_deletes_the_contact_publishes_tombstones_and_forgets_its_late_events(scorer, capture):
    contact = "agent-erased@acme.io"
    at = now_ms() - 60_000
    async with scorer.agent.test_context() as agent:
        for document in buyer_documents(contact):
            await agent.put(orjson.dumps(document), key=contact.encode())
        assert await settled(lambda: scorer.contacts.get(contact) is not None)
        erase = raw_event("contact_erased", event_id="erase-1", contact_id=contact, occurred_at=format_ms(at))
        await agent.put(orjson.dumps(erase), key=contact.encode())
        assert await settled(lambda: scorer.contacts.get(contact) is None)
        late = raw_event("demo_requested", event_id="late-1", contact_id=contact, occurred_at=format_ms(at - 1_000))
        await agent.put(orjson.dumps(late), key=contact.encode())
        after_late = raw_event(event_id="other-1", contact_id="agent-bystander")
        await agent.put(orjson.dumps(after_late), key=b"agent-bystander")
        assert await settled(lambda: scorer.contacts.get("agent-bystander") is not None)

    assert scorer.contacts.get(contact) is None, "a late event re-created the erased contact"
    assert scorer.contacts.erasure(contact) is not None
    records = {
        topic: [(k, v) for to, _, batch in capture.batches if to == topic for k, v in batch]
        for topic in (
            scorer.topics.scores.get_topic_name(),
            scorer.contacts.table.changelog_topic.get_topic_name(),
        )
    }
    scores, changelog = records.values()
    assert [v for k, v in scores if k == contact.encode()][-1] is None, "no tombstone in contact-scores"
    assert [v for k, v in changelog if k == contact.encode()][-1] is None, "no tombstone in the changelog"


async def test_an_erased_contact_leaves_its_account_before_its_state_is_deleted(scorer, capture):
    """The leave record goes out with the alerts, as on a change of account: once the state
    is deleted, a replayed erasure finds nothing to leave from."""
    contact = "agent-leaver@initech.io"
    async with scorer.agent.test_context() as agent:
        for document in buyer_documents(contact):
            await agent.put(orjson.dumps(document), key=contact.encode())
        assert await settled(lambda: scorer.contacts.get(contact) is not None)
        assert scorer.contacts.get(contact).account_sent == "initech.io"
        erase = raw_event("contact_erased", event_id="erase-2", contact_id=contact, occurred_at=format_ms(now_ms()))
        await agent.put(orjson.dumps(erase), key=contact.encode())
        assert await settled(lambda: scorer.contacts.get(contact) is None)

    members, changelog = scorer.topics.account_members.get_topic_name(), scorer.contacts.table.changelog_topic
    sent_in_order = [(to, key, value) for to, _, batch in capture.batches for key, value in batch]
    to_account = [
        (index, member_from_bytes(value))
        for index, (to, key, value) in enumerate(sent_in_order)
        if to == members and key == b"initech.io" and value is not None
    ]
    assert to_account[-1][1].left and to_account[-1][1].contact_id == contact
    assert not any(record.left for _, record in to_account[:-1])
    tombstone = max(
        index
        for index, (to, key, value) in enumerate(sent_in_order)
        if to == changelog.get_topic_name() and key == contact.encode() and value is None
    )
    assert to_account[-1][0] < tombstone, "the leave record must reach the broker before the state is deleted"


class Relay:
    """Kafka's part in identity stitching: what the agent sent to one of its own inputs is
    read back by it, on that topic, at growing offsets."""

    def __init__(self, agent, capture, offset=40_000):
        self.agent, self.capture, self.offset, self.done = agent, capture, offset, 0

    async def forward(self, topic):
        channel = self.agent.stream().channel
        batches, self.done = self.capture.batches[self.done :], len(self.capture.batches)
        for to, _, records in batches:
            for key, value in records:
                if to != topic:
                    continue
                self.offset += 1
                message = self.agent.to_message(key, value, offset=self.offset)
                message.topic = topic
                await channel.put(await channel.decode(message))


async def test_a_cookie_history_is_handed_over_to_its_contact_and_the_cookie_leaves_contact_scores(scorer, capture):
    cookie, contact = "agent-cookie-1", "agent-lea@northwind.io"
    at = now_ms() - 3 * 86_400_000
    visits = [
        raw_event(event_id=f"v{i}", contact_id=None, anonymous_id=cookie, occurred_at=format_ms(at + i * 60_000))
        for i in range(3)
    ]
    for visit in visits:
        visit.pop("contact_id")
        visit["properties"] = {"path": "/pricing"}
    form = raw_event(
        "form_submitted", event_id="f1", contact_id=contact, anonymous_id=cookie, occurred_at=format_ms(now_ms())
    )
    form["properties"] = {"form": "contact"}
    identity = scorer.rekeyed_topic  # identity records travel with the re-keyed events
    async with scorer.agent.test_context() as agent:
        relay = Relay(agent, capture)
        for visit in visits:
            await agent.put(orjson.dumps(visit), key=cookie.encode())
        await agent.put(orjson.dumps(form), key=contact.encode())
        assert await settled(lambda: (s := scorer.contacts.get(contact)) is not None and cookie in s.claims)
        await relay.forward(identity)  # the link, to the cookie's partition
        assert await settled(lambda: (s := scorer.contacts.get(cookie)) is not None and s.sent_to == contact)
        await relay.forward(identity)  # the hand-over, to the contact's partition
        assert await settled(lambda: cookie in scorer.contacts.get(contact).parts)

    scores = scorer.topics.scores.get_topic_name()
    published = [(key, value) for to, _, batch in capture.batches if to == scores for key, value in batch]
    assert [value for key, value in published if key == cookie.encode()][-1] is None, "the cookie is not tombstoned"
    latest = orjson.loads([value for key, value in published if key == contact.encode()][-1])
    assert "pricing page" in {reason["signal"] for reason in latest["reasons"]}
    assert scorer.contacts.get(contact).parts[cookie].state.seen == b"", "a part carries the history, not the window"


async def test_hand_overs_reach_the_broker_before_the_state_that_sent_them_is_stored(scorer, capture, delivery_order):
    """A replay after a crash finds the anonymous id stored and would not hand it over again."""
    cookie, contact = "agent-cookie-2", "agent-max@northwind.io"
    link = raw_event(event_id="l2", contact_id=contact, anonymous_id=cookie, occurred_at=format_ms(now_ms()))
    async with scorer.agent.test_context() as agent:
        relay = Relay(agent, capture, offset=50_000)
        await agent.put(orjson.dumps(link), key=contact.encode())
        assert await settled(lambda: scorer.contacts.get(contact) is not None)
        await relay.forward(scorer.rekeyed_topic)
        assert await settled(lambda: (s := scorer.contacts.get(cookie)) is not None and s.sent_to == contact)
    handed = next(
        i for i, s in enumerate(delivery_order) if s.to == scorer.rekeyed_topic and contact.encode() in s.keys
    )
    stored = next(i for i, s in enumerate(delivery_order) if s.to == "store" and cookie.encode() in s.keys)
    assert handed < stored


async def test_erasing_a_contact_sends_an_erasure_to_each_id_it_linked_and_a_bad_identity_record_is_dead_lettered(
    scorer, capture, sent
):
    contact = "agent-erase-links@acme.io"
    link = raw_event(event_id="l3", contact_id=contact, anonymous_id="agent-cookie-3", occurred_at=format_ms(now_ms()))
    erase = raw_event("contact_erased", event_id="x3", contact_id=contact, occurred_at=format_ms(now_ms()))
    async with scorer.agent.test_context() as agent:
        await agent.put(orjson.dumps(link), key=contact.encode())
        await agent.put(orjson.dumps(erase), key=contact.encode())
        assert await settled(lambda: scorer.contacts.erasure(contact) is not None)
        bad = agent.to_message(b"agent-cookie-3", b'[1,"move"]', offset=60_000)
        bad.topic = scorer.rekeyed_topic
        channel = agent.stream().channel
        await channel.put(await channel.decode(bad))
        assert await settled(lambda: len(sent("dead_letters")) == 1)
    forwarded = [record for key, record in sent("by_contact") if key == b"agent-cookie-3"]
    assert [record[1] for record in forwarded if isinstance(record, list)] == ["link"]
    assert [record["type"] for record in forwarded if isinstance(record, dict)] == ["contact_erased"]
    assert sent("dead_letters")[0][1]["reason"].startswith("not an identity record")


async def tick(agent, scorer, contact: str, at_ms: int, offset: int) -> None:
    """A cooling tick as the timer sends it: the contact's id as key, the time to re-read at."""
    message = agent.to_message(contact.encode(), orjson.dumps({"at_ms": at_ms}), offset=offset)
    message.topic = scorer.cooling_topic
    channel = agent.stream().channel
    await channel.put(await channel.decode(message))


async def test_a_cooling_tick_sends_due_nurture_records_before_storing_the_state_once_per_period(
    scorer, capture, sent, delivery_order
):
    """A good fit who did nothing for weeks: the tick sends the fit-but-quiet and stalled
    records, then stores the state that remembers them; a second tick in the period sends none."""
    contact = "agent-n1"
    profile = raw_event(
        "profile_updated",
        event_id="n1-p",
        contact_id=contact,
        occurred_at=format_ms(now_ms() - 30 * 86_400_000),
        properties={"seniority": "vp", "budget": 60_000, "company_size": 300},
    )
    nurture = scorer.topics.nurture.get_topic_name()
    async with scorer.agent.test_context() as agent:
        await put_at(agent, orjson.dumps(profile), contact.encode(), 40_000)
        assert await settled(lambda: scorer.contacts.get(contact) is not None)
        assert sent("nurture") == []  # events never nurture: the ticks do
        delivery_order.clear()
        at = now_ms()
        await tick(agent, scorer, contact, at, 2)
        assert await settled(lambda: scorer.contacts.get(contact).nurtured != {})
        await tick(agent, scorer, contact, at + 1, 3)
        opened = raw_event("email_opened", event_id="n1-o", contact_id=contact, occurred_at=format_ms(at))
        await put_at(agent, orjson.dumps(opened), contact.encode(), 40_001)  # read after the tick
        assert await settled(lambda: 40_001 in scorer.contacts.get(contact).positions.values())
    records = [record for key, record in sent("nurture") if key == contact.encode()]
    assert sorted(r["track"] for r in records) == ["fit-but-quiet", "stalled"]
    order = [step.to for step in delivery_order]
    assert order.index(nurture) < order.index("store")
    assert scorer.metrics.nurtures.labels("stalled")._value.get() >= 1


def records_counted(scorer) -> int:
    """Records the agent has finished with (each counted once, by outcome, after its batch is stored)."""
    return int(sum(s.value for m in scorer.metrics.events.collect() for s in m.samples if s.name.endswith("_total")))


async def test_a_linked_id_the_cap_pushes_out_stands_alone_and_its_contact_is_published_as_offline(scorer, capture):
    """A full contact's latest device has the latest event of its merged view; a link that
    happened earlier arrives last and pushes that device out: the device's detach brings the
    contact back to its own latest event, and the device is published on its own, as the
    offline scorer has them."""
    contact, cap = "agent-cap@northwind.io", scorer.rules.max_linked_ids
    start = now_ms() - 5 * 86_400_000
    devices = [f"agent-cap-device-{i}" for i in range(cap + 1)]

    def identify(index: int) -> dict:
        return raw_event(
            "profile_updated",
            event_id=f"cap-i{index}",
            contact_id=contact,
            anonymous_id=devices[index],
            occurred_at=format_ms(start + index * 60_000),
        )

    browse = raw_event(event_id="cap-p", anonymous_id=devices[cap], occurred_at=format_ms(start + 2 * 86_400_000))
    browse.pop("contact_id")
    browse["properties"] = {"path": "/pricing"}
    documents = [browse, *(identify(index) for index in range(1, cap + 1)), identify(0)]  # the earliest link last
    async with scorer.agent.test_context() as agent:
        relay, expected = Relay(agent, capture, offset=90_000), records_counted(scorer)
        for document in documents:  # at growing offsets of the one topic test_context delivers on, as the relay's
            relay.offset += 1
            await put_at(
                agent, orjson.dumps(document), (document.get("contact_id") or devices[cap]).encode(), relay.offset
            )
            expected += 1
            while True:  # deliver what it sent to its own input, as Kafka would, until nothing is left
                assert await settled(lambda done=expected: records_counted(scorer) >= done)
                before = relay.offset
                await relay.forward(scorer.rekeyed_topic)
                if relay.offset == before:
                    break
                expected += relay.offset - before
    assert devices[cap] not in scorer.contacts.get(contact).claims
    scores = scorer.topics.scores.get_topic_name()
    published = {key.decode(): value for to, _, batch in capture.batches if to == scores for key, value in batch}
    offline = score_lines([orjson.dumps(document) for document in documents], scorer.rules)
    views = {view.contact_id: snapshot_record(view) for view in offline.snapshots(None)}
    assert set(views) == {contact, devices[cap]}
    for key in (contact, devices[cap]):
        assert orjson.loads(published[key]) == orjson.loads(dumps(views[key]))


async def test_a_state_from_before_the_app_id_named_the_re_keyed_topic_takes_the_new_topics_records(scorer, sent):
    """States written when the prefix named the re-keyed topic hold its offsets under "r"; the
    records copied to APP_ID-events-by-contact start again at 0 (streams/migration.py): none of
    them is a replay, and hand-over versions keep growing."""
    contact = "agent-migrated"
    async with scorer.agent.test_context() as agent:
        await put_at(agent, orjson.dumps(raw_event(event_id="old-1", contact_id=contact)), contact.encode(), 90_000)
        assert await settled(lambda: scorer.contacts.get(contact) is not None)
        stored = scorer.contacts.get(contact)
        scorer.contacts.table.data[contact.encode()] = scorer.contacts.encode(
            replace(stored, positions={"r": 90_000})  # as the version before wrote it
        )
        await scorer.contacts.table.call_recover_callbacks()  # restarted: nothing kept decoded from before
        copied = raw_event("demo_requested", event_id="copied-1", contact_id=contact)
        await put_at(agent, orjson.dumps(copied), contact.encode(), 0)
        assert await settled(lambda: scorer.contacts.get(contact).positions == {"r": 90_000, scoring_module.REKEYED: 0})
    after = scorer.contacts.get(contact)
    assert len(seen_hashes(after)) == 2 and after.signals != stored.signals  # the copied event counted
    assert version_of(after.positions) > version_of({"r": 90_000})


def records_sent_to_account(scorer, capture, account: bytes) -> list:
    """The member and leave records the agent sent to `account`, in send order."""
    members = scorer.topics.account_members.get_topic_name()
    return [
        member_from_bytes(value)
        for to, _, batch in capture.batches
        if to == members
        for key, value in batch
        if key == account
    ]


async def test_a_contact_that_loses_a_shared_cookie_is_published_earlier_yet_newer_and_its_account_keeps_it(
    scorer, capture
):
    """Ann's link takes the cookie first; Ben's earlier link wins it when it arrives. Ann's
    part of the cookie (a later visit) is detached, so she is published again at her own
    history's time, earlier than her last record: her account record's version grows all
    the same, and her account keeps it, while a replay of the older record is refused."""
    cookie, ann, ben = "agent-cookie-4", "agent-ann@fabrikam.io", "agent-ben@contoso.io"
    now = now_ms()
    visit = raw_event(event_id="v4", anonymous_id=cookie, occurred_at=format_ms(now - 3_600_000))
    visit.pop("contact_id")
    visit["properties"] = {"path": "/pricing"}
    ann_form = raw_event("form_submitted", event_id="f4a", contact_id=ann, anonymous_id=cookie)
    ben_form = raw_event("form_submitted", event_id="f4b", contact_id=ben, anonymous_id=cookie)
    ann_form["occurred_at"], ben_form["occurred_at"] = format_ms(now - 2 * 86_400_000), format_ms(now - 3 * 86_400_000)
    identity = scorer.rekeyed_topic
    async with scorer.agent.test_context() as agent:
        relay = Relay(agent, capture, offset=80_000)
        relay.done = len(capture.batches)  # what earlier tests sent is theirs
        await agent.put(orjson.dumps(visit), key=cookie.encode())
        await agent.put(orjson.dumps(ann_form), key=ann.encode())
        assert await settled(lambda: (s := scorer.contacts.get(ann)) is not None and cookie in s.claims)
        await relay.forward(identity)  # Ann's link, to the cookie
        assert await settled(lambda: (s := scorer.contacts.get(cookie)) is not None and s.sent_to == ann)
        await relay.forward(identity)  # the cookie's part, to Ann
        assert await settled(lambda: cookie in scorer.contacts.get(ann).parts)
        await agent.put(orjson.dumps(ben_form), key=ben.encode())
        assert await settled(lambda: (s := scorer.contacts.get(ben)) is not None and cookie in s.claims)
        await relay.forward(identity)  # Ben's earlier link wins the cookie
        assert await settled(lambda: scorer.contacts.get(cookie).sent_to == ben)
        await relay.forward(identity)  # the detach, to Ann
        assert await settled(lambda: scorer.contacts.get(ann).parts[cookie].state is None)

    sent_to_account = records_sent_to_account(scorer, capture, b"fabrikam.io")
    *before, last = sent_to_account
    assert last.at_ms < max(record.at_ms for record in before), "the detach did not take Ann back in time"
    assert last.version > max(record.version for record in before)
    account = AccountState("fabrikam.io", scorer.rules)
    for offset, record in enumerate([*sent_to_account, before[-1]]):  # then the older record replayed
        receive(account, record, offset)
    assert account.members[ann] == last
    lines = [orjson.dumps(document) for document in (visit, ann_form, ben_form)]
    offline = {view.account_id: view for view in score_lines(lines, scorer.rules).accounts(None)}
    assert account.snapshot() == offline["fabrikam.io"]


async def test_a_contact_back_after_its_erasure_rejoins_its_account_though_its_versions_start_again(scorer, capture):
    """The new profile has no stream position of its own yet, so its versions are below the
    erased profile's: the erasure's leave is marked, and time tells what came after it. A
    record of the erased profile arriving late changes nothing, and a replay after a crash
    (the old profile, its leave, the new profile, in send order) ends where it started."""
    contact = "agent-back18@wingtip.io"  # its home partition is 0, the test records': it is not re-keyed
    erased_at = now_ms() - 40 * 86_400_000
    old = buyer_documents(contact, format_ms(erased_at - 86_400_000))
    erase = raw_event("contact_erased", event_id="erase-back", contact_id=contact, occurred_at=format_ms(erased_at))
    back = raw_event("demo_requested", event_id="back-1", contact_id=contact, occurred_at=format_ms(now_ms()))
    key, events = contact.encode(), scorer.events_topic
    async with scorer.agent.test_context() as agent:
        await put_at(agent, orjson.dumps(old[0]), key, 900, events)
        await put_at(agent, orjson.dumps(old[1]), key, 95_000, scorer.rekeyed_topic)  # re-keyed from elsewhere
        assert await settled(lambda: (s := scorer.contacts.get(contact)) is not None and len(s.positions) == 2)
        await put_at(agent, orjson.dumps(erase), key, 901, scorer.erasures_topic)
        assert await settled(lambda: scorer.contacts.erasure(contact) is not None)
        await put_at(agent, orjson.dumps(back), key, 902, events)
        assert await settled(lambda: scorer.contacts.get(contact) is not None)

    sent_to_account = records_sent_to_account(scorer, capture, b"wingtip.io")
    *old_profile, leave, again = sent_to_account
    assert old_profile and leave.left and leave.erased and not again.left
    assert leave.version > max(record.version for record in old_profile) > again.version, "versions start again"
    account = AccountState("wingtip.io", scorer.rules)
    for offset, record in enumerate(sent_to_account):
        receive(account, record, offset)
    assert account.members == {contact: again}

    account = AccountState("wingtip.io", scorer.rules)
    for offset, record in enumerate([*old_profile, leave]):
        receive(account, record, offset)
    assert not fold(account, old_profile[-1], 10), "a late record of the erased profile brought it back"
    for offset, record in enumerate([*sent_to_account, *old_profile, leave, again], start=20):  # a replay
        receive(account, record, offset)
    assert account.members == {contact: again}
