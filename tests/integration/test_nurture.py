"""Nurture records on a real broker, checked against the offline scorer (the oracle)."""

from dataclasses import replace

import orjson
import pytest

from leadpulse.scoring.rules import load_rules
from leadpulse.scoring.timeutil import format_ms, now_ms
from tests.factories import DAY_MS
from tests.integration.harness import produce, read_all, run_cli, scores_reach, wait_for
from tests.integration.oracle import Oracle, nurture_example_lines, steady_nurture_lines, traffic_lines

pytestmark = pytest.mark.integration

WINDOW_MS = 20 * 60_000  # longer than this test runs: no contact crosses a threshold meanwhile


def test_the_cooling_timer_sends_the_nurture_records_the_offline_scorer_computes(make_settings, workers, tmp_path):
    """Events go in while the cooling timer waits an hour (complete states, no tick between the
    events of a contact), then a worker ticking every second re-reads every contact at the due
    time stored with it:
    the records it sends are exactly `leadpulse score --nurture --at` for the same events, each
    once, whatever the tick times within the period."""
    start = now_ms()
    rules = load_rules()
    if (start + WINDOW_MS) // rules.nurture.period_ms != start // rules.nurture.period_ms:
        pytest.skip("a nurture period ends within the next 20 minutes: every record would change meanwhile")
    lines = steady_nurture_lines(traffic_lines(3_000, 300, seed=23) + nurture_example_lines(start), start, WINDOW_MS)
    oracle = Oracle(lines)
    expected = oracle.nurture(start)
    tracks = {record["track"] for record in expected.values()}
    assert tracks == {"fit-but-quiet", "cooling-off", "stalled", "recycle"}, "the events should exercise every track"
    lea = [r for r in expected.values() if r["contact_id"] == "lea@acme.io"]
    assert [(r["track"], r["interest"], r["content"]["url"]) for r in lea] == [
        ("cooling-off", "pricing", "https://example.com/resources/pricing-white-paper")
    ]
    assert not any(r["contact_id"] == "ada@acme.io" for r in expected.values())  # an opportunity

    settings = make_settings(cooling_interval_s=3600.0)  # due times stored, no tick during the test
    first = workers(settings)
    produce(settings, lines)
    scores_reach(settings, oracle.snapshots, timeout_s=120, alive=first.running)
    assert read_all(settings, settings.topic("nurture"), idle_s=1.0) == []  # events alone nurture nobody
    first.stop()

    cooling = replace(settings, cooling_interval_s=1.0)
    second = workers(cooling)
    seen: dict[str, list[dict]] = {}

    def all_sent() -> bool:
        assert second.running(), "the worker exited"
        records = [orjson.loads(value) for _, value in read_all(cooling, cooling.topic("nurture"), idle_s=1.0)]
        seen["records"] = records
        return {record["id"] for record in records} == expected.keys()

    if not wait_for(all_sent, timeout_s=120):
        got = {record["id"] for record in seen["records"]}
        raise AssertionError(
            f"nurture: {len(expected.keys() - got)} records missing, {len(got - expected.keys())} extra; "
            f"e.g. missing {[expected[i] for i in sorted(expected.keys() - got)[:2]]}"
        )
    records = seen["records"]
    assert len(records) == len(expected), "a record was sent twice"
    assert {record["id"]: record for record in records} == expected
    assert second.metric("leadpulse_nurture_records_total", 'track="cooling-off"') >= 1

    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    done, _ = run_cli(cooling, "score", str(events), "--nurture", "--at", format_ms(now_ms()))
    assert done.returncode == 0, done.stderr
    printed = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert {record["id"]: record for record in printed} == {record["id"]: record for record in records}
    assert now_ms() - start < WINDOW_MS, "the test outlived the window its oracle is valid in"


def test_the_schedule_keeps_only_contacts_a_tick_can_still_change(make_settings, workers):
    """500 leads stalled for a month and 500 dormant for 200 days (both cold, both stalled by
    the track's definition): the recent ones get their record and stay scheduled for the next
    period (each at its own moment of it); the dormant ones get nothing and leave the
    schedule, which would otherwise keep every stalled lead forever."""
    start = now_ms()
    recent = [f"stalled-{i}@acme.io" for i in range(500)]
    dormant = [f"dormant-{i}@acme.io" for i in range(500)]
    lines = [
        orjson.dumps(
            {"event_id": f"sub-{contact}", "type": "newsletter_subscribed", "contact_id": contact, "occurred_at": at}
        )
        for contacts, at in ((recent, format_ms(start - 30 * DAY_MS)), (dormant, format_ms(start - 200 * DAY_MS)))
        for contact in contacts
    ]
    oracle = Oracle(lines)
    expected = oracle.nurture(start)
    assert {record["contact_id"] for record in expected.values()} == set(recent)

    settings = make_settings(cooling_interval_s=1.0)
    worker = workers(settings)
    produce(settings, lines)  # ticks publish decayed snapshots: the nurture records are the oracle here

    def sent() -> set[str]:
        assert worker.running(), "the worker exited"
        return {orjson.loads(value)["id"] for _, value in read_all(settings, settings.topic("nurture"), idle_s=1.0)}

    assert wait_for(lambda: sent() == expected.keys(), timeout_s=120), (
        f"{len(sent())} records, {len(expected)} expected"
    )
    scheduled = "leadpulse_cooling_scheduled_contacts"
    assert wait_for(lambda: worker.metric(scheduled) == len(recent), timeout_s=30), worker.metric(scheduled)
