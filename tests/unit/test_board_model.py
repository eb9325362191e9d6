"""The lead board's read model (leadpulse/board/model.py, store.py) on SQLite, fed the records
the worker publishes (built by the scoring core and schemas.outputs, as in the stream)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from leadpulse.board.model import (
    DAY_MS,
    MAX_EVENTS_PER_CONTACT,
    MAX_POINTS_PER_DAY,
    Point,
    Step,
    funnel,
    history_bound,
    history_step,
    week_of,
)
from leadpulse.board.store import CONTACT_TABLES, TABLES, Incoming, Store
from leadpulse.schemas.outputs import snapshot_record
from leadpulse.scoring.engine import apply, new_state, snapshot
from leadpulse.scoring.timeutil import format_ms
from tests.factories import DEFAULT_RULES, T0, event, notify_records

CONTACT = "ada@acme.io"


def scores_of(contact: str, at_ms: int = T0) -> dict[str, Any]:
    """The contact-scores record of a hot buyer, as the worker publishes it."""
    state = new_state(contact)
    for item in [
        event("profile_updated", at_ms, contact, seniority="c_level", budget=60_000, company_size=300, industry="saas"),
        event("demo_requested", at_ms, contact),
        event("webinar_attended", at_ms, contact),
    ]:
        state, *_ = apply(state, item, DEFAULT_RULES)
    return snapshot_record(snapshot(state, at_ms, DEFAULT_RULES))


class Feed:
    """Records with consecutive offsets per topic, one partition each, as a consumer reads them."""

    def __init__(self) -> None:
        self.next: dict[str, int] = {}

    def record(self, role: str, key: str | None, value: dict[str, Any] | None, at_ms: int = T0) -> Incoming:
        offset = self.next.get(role, 0)
        self.next[role] = offset + 1
        body = None if value is None else orjson.dumps(value)
        return Incoming(role, f"t.{role}", 0, offset, None if key is None else key.encode(), body, at_ms)


def everything(feed: Feed) -> list[Incoming]:
    outputs = notify_records(CONTACT)
    return [
        feed.record("contact-scores", CONTACT, scores_of(CONTACT)),
        feed.record("hot-leads", CONTACT, outputs["hot-leads"]),
        feed.record("stage-changes", CONTACT, outputs["stage-changes"]),
        feed.record("nurture", CONTACT, outputs["nurture"]),
        feed.record("account-scores", "acme.io", outputs["hot-accounts"]),
        feed.record("hot-accounts", "acme.io", outputs["hot-accounts"]),
    ]


def dump(store: Store) -> list[tuple[Any, ...]]:
    """Every row of every table, in order: what two states of the read model compare by."""
    return [(table, *row.values()) for table in TABLES for row in store._read(f"SELECT * FROM {table} ORDER BY 1, 2")]


@pytest.fixture
def make_store(tmp_path):
    """Read models by name, each in a database of its own (tests/integration/test_board_postgres.py
    runs these tests again with PostgreSQL databases)."""
    opened: list[Store] = []

    def make(name: str) -> Store:
        opened.append(Store(str(tmp_path / f"{name}.sqlite3"), retention_days=30))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store):
    return make_store("board")


def test_every_output_topic_lands_in_the_read_model(store):
    applied = store.apply(everything(Feed()))
    assert applied.bad == [] and applied.records == 6
    assert [lead.contact_id for lead in applied.hot_leads] == [CONTACT]
    contact = store.contact(CONTACT)
    assert contact is not None and contact["temperature_label"] == "hot" and contact["account_id"] == "acme.io"
    assert contact["reasons"] and contact["hot_leads"][0]["reasons"]
    assert contact["stage_changes"] and contact["nurture"][0]["title"] == "Pricing guide"
    assert [row["contact_id"] for row in store.hot_contacts()] == [CONTACT]
    assert store.account("acme.io")["members"][0]["contact_id"] == CONTACT
    assert [row["account_id"] for row in store.hot_accounts()] == ["acme.io"]


def test_a_replay_of_applied_records_changes_nothing(store):
    batch = everything(Feed())
    store.apply(batch)
    before = dump(store)
    again = store.apply(batch)
    assert again.records == 0 and again.hot_leads == []
    assert dump(store) == before


def test_a_replay_from_offset_zero_on_a_rebuilt_database_gives_the_same_rows(make_store, store):
    """Idempotent by content too: a fresh database fed the same records equals the first."""
    batch = everything(Feed())
    store.apply(batch)
    rebuilt = make_store("rebuilt")
    rebuilt.apply(batch[:3])
    rebuilt.apply(batch)  # overlapping batches, as after a crash between two commits
    assert dump(rebuilt) == dump(store)


def test_a_restart_resumes_from_the_offsets_stored_with_the_rows(store):
    feed = Feed()
    store.apply(everything(feed))
    stored = store.offsets()
    store.close()
    reopened = Store(store.url, retention_days=30)
    assert reopened.offsets() == stored == {(f"t.{role}", 0): 1 for role in feed.next}
    changed = scores_of(CONTACT)
    changed["score"] = 1
    stale = Incoming("contact-scores", "t.contact-scores", 0, 0, CONTACT.encode(), orjson.dumps(changed), T0)
    assert reopened.apply([stale]).records == 0
    assert reopened.contact(CONTACT)["score"] != 1
    reopened.close()


def test_a_tombstone_deletes_the_person_everywhere(store):
    feed = Feed()
    batch = everything(feed)
    store.apply(batch)
    store.apply([feed.record("contact-scores", CONTACT, None, at_ms=T0 + 1_000)])
    assert store.contact(CONTACT) is None
    assert not any(CONTACT in repr(row) for row in dump(store) if row[0] in CONTACT_TABLES)
    assert not any(CONTACT in repr(row) for row in dump(store) if row[0] != "offsets")
    assert store.account("acme.io")["members"] == []


def test_alerts_written_before_an_erasure_are_not_stored_again_those_after_it_are(store):
    feed = Feed()
    outputs = notify_records(CONTACT)
    store.apply([feed.record("contact-scores", CONTACT, None, at_ms=T0 + 1_000)])
    replayed = store.apply([feed.record("hot-leads", CONTACT, outputs["hot-leads"], at_ms=T0 + 999)])
    assert replayed.hot_leads == []
    later = dict(outputs["hot-leads"], id="a-new-episode")
    came_back = store.apply([feed.record("hot-leads", CONTACT, later, at_ms=T0 + 5_000)])
    assert [lead.id for lead in came_back.hot_leads] == ["a-new-episode"]


def test_a_record_its_topic_does_not_carry_is_passed_and_its_offset_moves_on(store):
    feed = Feed()
    broken = Incoming("hot-leads", "t.hot-leads", 0, 0, b"x", b"{not json", T0)
    feed.next["hot-leads"] = 1
    applied = store.apply([broken, feed.record("hot-leads", CONTACT, {"id": "no fields"})])
    assert [where for _, where, _ in applied.bad] == ["t.hot-leads:0@0", "t.hot-leads:0@1"]
    assert store.offsets() == {("t.hot-leads", 0): 2}


def test_the_workers_compaction_nudge_is_nobody(store):
    applied = store.apply([Incoming("contact-scores", "t.contact-scores", 0, 0, b"\x00roll", None, T0)])
    assert applied.bad == [] and store.counts()["contacts"] == 0


def test_history_keeps_changes_and_one_point_a_day(store):
    feed = Feed()
    record = scores_of(CONTACT)
    for minute in range(30):  # thirty snapshots in one day, same stage and temperature
        at = T0 + minute * 60_000
        store.apply([feed.record("contact-scores", CONTACT, dict(record, updated_at=format_ms(at)))])
    history = store.contact(CONTACT)["history"]
    assert [(p["at_ms"], p["change"]) for p in history] == [(T0, 1), (T0 + 29 * 60_000, 0)]
    cold = dict(record, temperature=1, temperature_label="cold", updated_at=format_ms(T0 + 40 * 60_000))
    store.apply([feed.record("contact-scores", CONTACT, cold)])
    assert [p["temperature"] for p in store.contact(CONTACT)["history"]] == [4, 4, 1]


def test_history_is_bounded_by_the_retention_and_a_cap_per_day(store):
    feed = Feed()
    record = scores_of(CONTACT)
    for day in range(60):  # a day's records in one transaction, as a consumer's poll brings them
        day_records = []
        for flap in range(20):  # a temperature flapping at a band's edge all day
            at = T0 + day * DAY_MS + flap * 60_000
            value = dict(record, temperature=4 if flap % 2 == 0 else 3, updated_at=format_ms(at))
            day_records.append(feed.record("contact-scores", CONTACT, value))
        store.apply(day_records)
    history = store.contact(CONTACT)["history"]
    assert len(history) <= history_bound(30)
    assert min(p["at_ms"] for p in history) >= T0 + 59 * DAY_MS - 30 * DAY_MS
    per_day: dict[int, int] = {}
    for point in history:
        per_day[point["at_ms"] // DAY_MS] = per_day.get(point["at_ms"] // DAY_MS, 0) + 1
    assert max(per_day.values()) == MAX_POINTS_PER_DAY


def test_alerts_per_contact_are_capped(store):
    feed = Feed()
    lead = notify_records(CONTACT)["hot-leads"]
    for number in range(MAX_EVENTS_PER_CONTACT + 20):
        at = format_ms(T0 + number * 1_000)
        store.apply([feed.record("hot-leads", CONTACT, dict(lead, id=f"h{number}", occurred_at=at))])
    store.apply([feed.record("contact-scores", CONTACT, scores_of(CONTACT))])
    kept = store.contact(CONTACT)["hot_leads"]
    assert len(kept) == MAX_EVENTS_PER_CONTACT and kept[0]["id"] == f"h{MAX_EVENTS_PER_CONTACT + 19}"


@pytest.mark.parametrize(
    ("last", "at_ms", "temperature", "that_day", "step"),
    [
        (None, T0, 4, 0, Step.APPEND),
        (Point(T0, 80, 4, "lead", True), T0 - 1, 4, 1, Step.SKIP),
        (Point(T0, 80, 4, "lead", True), T0 + 60_000, 4, 1, Step.APPEND),  # the day's daily point
        (Point(T0, 80, 4, "lead", False), T0 + 60_000, 4, 2, Step.REPLACE),  # it moves to the latest
        (Point(T0, 80, 4, "lead", False), T0 + 60_000, 3, 2, Step.APPEND),  # a change
        (Point(T0, 80, 4, "lead", True), T0 + 60_000, 3, MAX_POINTS_PER_DAY, Step.REPLACE),  # the cap
        (Point(T0, 80, 4, "lead", False), T0 + DAY_MS, 4, 0, Step.APPEND),  # a new day
    ],
)
def test_history_step(last, at_ms, temperature, that_day, step):
    assert history_step(last, at_ms, temperature, "lead", that_day) is step


def test_the_funnel_counts_contacts_reaching_each_stage_and_the_conversion_between_them():
    now = {"lead": 60, "prospect": 25, "opportunity": 10, "customer": 5, "disqualified": 3}
    reached = {"lead": 120, "prospect": 40, "opportunity": 12}
    weekly = [(week_of(T0), "lead", 7), (week_of(T0), "prospect", 2), (week_of(T0 + 7 * DAY_MS), "lead", 1)]
    result = funnel(now, reached, weekly)
    rows = {row.stage: row for row in result.stages}
    assert rows["lead"].reached == 120 and rows["prospect"].reached == 40
    assert rows["opportunity"].reached == 15  # 10 there and 5 further on, more than the 12 entries seen
    assert rows["prospect"].conversion == pytest.approx(40 / 120)
    assert rows["suspect"].conversion is None
    assert [counts[1:3] for _, counts in result.weeks] == [(7, 2), (1, 0)]
    starts = [datetime.fromtimestamp(start / 1000, UTC) for start, _ in result.weeks]
    assert all(s.weekday() == 0 and s.hour == 0 and s.minute == 0 for s in starts)  # Mondays, midnight UTC
    assert result.other == (("disqualified", 3),)


def test_search_finds_by_id_email_prefix_and_domain(store):
    store.apply(everything(Feed()))
    assert [c["contact_id"] for c in store.search("Ada@Acme.io")["contacts"]] == [CONTACT]
    assert [c["contact_id"] for c in store.search("ada@")["contacts"]] == [CONTACT]
    found = store.search("acme.io")
    assert [c["contact_id"] for c in found["contacts"]] == [CONTACT]
    assert [a["account_id"] for a in found["accounts"]] == ["acme.io"]
    assert store.search("%")["contacts"] == []  # a wildcard is a character, not a pattern


def test_hot_now_filters_by_segment_model_and_stage(store):
    store.apply(everything(Feed()))
    contact = store.contact(CONTACT)
    segment = contact["segments"][0]
    assert [r["contact_id"] for r in store.hot_contacts(segment=segment)] == [CONTACT]
    assert store.hot_contacts(segment="nobody's segment") == []
    assert [r["contact_id"] for r in store.hot_contacts(stage=contact["stage"])] == [CONTACT]
    assert store.hot_contacts(stage="customer") == []
    hot_models = [m["model"] for m in contact["models"] if m["temperature"] == 4]
    for model in hot_models:
        assert [r["contact_id"] for r in store.hot_contacts(model=model)] == [CONTACT]
    assert store.hot_contacts(model="no such model") == []
