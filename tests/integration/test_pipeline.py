"""The pipeline on a real Kafka broker, checked against the offline scorer (the oracle)."""

from dataclasses import replace

import orjson
import pytest

from leadpulse.cli.offline import score_lines
from leadpulse.cli.processes import ROOT, free_port
from leadpulse.cli.traffic import DAY_MS
from leadpulse.schemas.outputs import snapshot_record
from leadpulse.scoring.engine import snapshot
from leadpulse.scoring.rules import SHIPPED_RULES, load_rules
from leadpulse.scoring.timeutil import format_ms, now_ms, parse_rfc3339_ms
from leadpulse.streams.partitioning import home_partition
from tests.factories import buyer_documents
from tests.integration.harness import latest_by_key, produce, read_all, scores_reach, wait_for
from tests.integration.oracle import Oracle, traffic_lines

pytestmark = pytest.mark.integration

MALFORMED = [
    b'{"event_id": "bad-1", "type": "page_viewed"',
    b'{"event_id": "bad-2", "type": "page_viewed", "occurred_at": "2026-10-01T09:00:00Z"}',
    b'{"event_id": "bad-3", "type": "page_viewed", "contact_id": "c-x", "occurred_at": "yesterday"}',
    b'{"event_id": "bad-4", "type": "page_viewed", "contact_id": "c-x", "occurred_at": "2099-01-01T00:00:00Z"}',
]


@pytest.mark.parametrize("store", ["rocksdb://", "memory://"])
def test_every_output_topic_matches_the_offline_scorer(make_settings, workers, store):
    settings = make_settings(store=store)
    lines = traffic_lines(4_000, 500)
    mixed = lines[:1000] + MALFORMED[:2] + lines[1000:3000] + MALFORMED[2:] + lines[3000:]
    oracle = Oracle(mixed)  # the offline scorer refuses what the worker dead-letters (the 2099 event too)
    workers(settings)
    produce(settings, mixed)

    scores_reach(settings, oracle.snapshots, timeout_s=90)

    stage_changes = [orjson.loads(v) for _, v in read_all(settings, settings.topic("stage-changes"))]
    assert {record["id"] for record in stage_changes} == oracle.stage_change_ids
    hot_leads = {r["id"]: r for r in (orjson.loads(v) for _, v in read_all(settings, settings.topic("hot-leads")))}
    assert hot_leads == oracle.hot_leads
    assert all(record["reasons"] for record in hot_leads.values())

    letters = [orjson.loads(v) for _, v in read_all(settings, settings.topic("dead-letters"))]
    assert sorted(letter["value"]["text"] for letter in letters) == sorted(m.decode() for m in MALFORMED)
    assert oracle.bad_lines == len(MALFORMED)
    by_id = {
        orjson.loads(letter["value"]["text"] + ("}" if letter["field"] == "" else ""))["event_id"]: letter
        for letter in letters
    }
    assert by_id["bad-1"]["reason"].startswith("not valid JSON")
    assert by_id["bad-2"]["field"] == "contact_id"
    assert by_id["bad-3"]["field"] == "occurred_at" and "RFC 3339" in by_id["bad-3"]["reason"]
    assert by_id["bad-4"]["field"] == "occurred_at" and "future" in by_id["bad-4"]["reason"]
    for letter in letters:
        origin = letter["origin"]
        assert origin["topic"] == settings.input_topic
        assert 0 <= origin["partition"] < settings.partitions and origin["offset"] >= 0


SELF_SERVE_MODEL = """
[models.self-serve]                  # mid-market software buys from the product pages and webinars
applies_to = ["mid-market software"]
[models.self-serve.weights]
fit = 0.3
engagement = 0.7
[[models.self-serve.signals]]
name = "pricing page"
event = "page_viewed"
path_prefix = "/pricing"
category = "web"
points = 15
[[models.self-serve.signals]]
name = "product page"
event = "page_viewed"
path_prefix = "/product"
category = "web"
points = 10
[[models.self-serve.signals]]
name = "webinar attended"
event = "webinar_attended"
category = "events"
points = 35
[[models.self-serve.signals]]
name = "quote request"
event = "quote_requested"
category = "intent"
points = 50
"""


def test_two_named_models_score_in_the_same_pass_and_hot_leads_name_the_model_that_fired(
    make_settings, workers, tmp_path
):
    """The shipped rules (the default model and `enterprise`) plus a `self-serve` model with
    signals of its own: every model's snapshot and alert equal the offline scorer's."""
    rules_path = tmp_path / "models.toml"
    rules_path.write_text((ROOT / SHIPPED_RULES).read_text() + SELF_SERVE_MODEL)
    settings = make_settings(rules=rules_path)
    lines = traffic_lines(4_000, 500)
    oracle = Oracle(lines, load_rules(rules_path))
    fired = {record["model"] for record in oracle.hot_leads.values()}
    assert fired == {"default", "enterprise", "self-serve"}, "the traffic must make each model fire"
    workers(settings)
    produce(settings, lines)

    scores_reach(settings, oracle.snapshots, timeout_s=90)
    hot_leads = {r["id"]: r for r in (orjson.loads(v) for _, v in read_all(settings, settings.topic("hot-leads")))}
    assert hot_leads == oracle.hot_leads


def test_unkeyed_inputs_are_rekeyed_by_contact(make_settings, workers):
    settings = make_settings()
    lines = traffic_lines(2_000, 300, seed=5)
    oracle = Oracle(lines)
    workers(settings)
    produce(settings, lines, keyed=False)
    scores_reach(settings, oracle.snapshots, timeout_s=90)
    assert len(read_all(settings, settings.internal_topic("events-by-contact"))) > 0


def test_the_query_api_answers_for_contacts_on_every_partition(make_settings, workers):
    settings = make_settings()
    lines = traffic_lines(2_000, 400, seed=3)
    oracle = Oracle(lines)
    worker = workers(settings)
    produce(settings, lines)
    scores_reach(settings, oracle.snapshots, timeout_s=90)

    one_per_partition = {}
    for contact_id in oracle.snapshots:
        one_per_partition.setdefault(home_partition(contact_id.encode(), settings.partitions), contact_id)
    assert len(one_per_partition) == settings.partitions
    for contact_id in one_per_partition.values():
        assert worker.get(f"/contacts/{contact_id}?at=last-event") == (200, oracle.snapshots[contact_id])
    status, body = worker.get("/contacts/nobody-knows-me")
    assert status == 404 and "unknown contact" in body["error"]
    assert worker.get("/health")[1]["status"] == "ok"


def test_a_graceful_restart_with_rocksdb_resumes_with_identical_state(make_settings, workers):
    settings = make_settings(store="rocksdb://")
    lines = traffic_lines(3_000, 400, seed=8)
    first, second = lines[:1500], lines[1500:]
    worker = workers(settings)
    produce(settings, first)
    scores_reach(settings, Oracle(first).snapshots, timeout_s=90)
    before = {cid: worker.get(f"/contacts/{cid}?at=last-event")[1] for cid in list(Oracle(first).snapshots)[:50]}

    worker.stop()
    worker.start()
    after = {cid: worker.get(f"/contacts/{cid}?at=last-event")[1] for cid in before}
    assert after == before

    produce(settings, second)
    oracle = Oracle(lines)
    scores_reach(settings, oracle.snapshots, timeout_s=90)


@pytest.mark.parametrize("store", ["rocksdb://", "memory://"])
def test_a_worker_killed_mid_stream_recovers_to_the_oracle(make_settings, workers, store):
    settings = make_settings(store=store)
    lines = traffic_lines(40_000, 4_000, seed=13)
    oracle = Oracle(lines)
    produce(settings, lines)
    worker = workers(settings)
    assert wait_for(lambda: worker.metric("leadpulse_events_total", 'outcome="scored"') >= 2_000, 60, 0.05)
    worker.kill()
    at_kill = latest_by_key(read_all(settings, settings.topic("contact-scores"), idle_s=0.5))
    assert at_kill != oracle.snapshots, "the worker finished before it was killed: nothing was tested"
    worker.start()
    scores_reach(settings, oracle.snapshots, timeout_s=120)


def test_the_cooling_timer_publishes_decay_without_new_events(make_settings, workers):
    settings = make_settings(cooling_interval_s=1.0)
    long_ago = now_ms() - 40 * DAY_MS
    buyer = buyer_documents("cooling-c1", format_ms(long_ago))
    lines = [orjson.dumps(document) for document in buyer]
    rules = load_rules()
    complete = score_lines(lines, rules).contacts["cooling-c1"]
    workers(settings)
    produce(settings, lines)

    def cooled():
        """The latest snapshot holds every event and was published by a cooling tick (its
        time is after the last event): batches may split the events, so wait for exactly that."""
        snapshots = [orjson.loads(v) for _, v in read_all(settings, settings.topic("contact-scores"), idle_s=1.0)]
        latest = snapshots[-1] if snapshots else None
        if latest and latest["stage"] == complete.stage and parse_rfc3339_ms(latest["updated_at"]) > long_ago:
            return latest
        return None

    latest = wait_for(cooled, timeout_s=90)
    assert latest, "no snapshot published by the cooling timer"
    assert latest["temperature_label"] != "hot"
    assert latest == snapshot_record(snapshot(complete, parse_rfc3339_ms(latest["updated_at"]), rules))
    # the contact was hot as of its events (40 days ago): one alert, decided at event time
    hot_leads = read_all(settings, settings.topic("hot-leads"))
    assert len(hot_leads) == 1


def test_two_workers_share_the_partitions_and_route_queries_to_the_owner(make_settings, workers, tmp_path):
    first_settings = make_settings()
    second_settings = replace(first_settings, web_port=free_port(), data_dir=tmp_path / "data-2")
    lines = traffic_lines(3_000, 400, seed=17)
    oracle = Oracle(lines)
    first = workers(first_settings)
    second = workers(second_settings)
    produce(first_settings, lines)
    scores_reach(first_settings, oracle.snapshots, timeout_s=120)

    owned = [
        {p for p in worker.health()["assigned_partitions"] if p.startswith(f"{first_settings.input_topic}:")}
        for worker in (first, second)
    ]
    assert owned[0] and owned[1] and not owned[0] & owned[1]
    one_per_partition = {}
    for contact_id in oracle.snapshots:
        one_per_partition.setdefault(home_partition(contact_id.encode(), first_settings.partitions), contact_id)
    for contact_id in one_per_partition.values():
        assert first.get(f"/contacts/{contact_id}?at=last-event") == (200, oracle.snapshots[contact_id])
        assert second.get(f"/contacts/{contact_id}?at=last-event") == (200, oracle.snapshots[contact_id])


def test_a_worker_joining_mid_stream_takes_partitions_over_without_changing_the_result(
    make_settings, workers, tmp_path
):
    first_settings = make_settings()
    second_settings = replace(first_settings, web_port=free_port(), data_dir=tmp_path / "data-2")
    lines = traffic_lines(40_000, 4_000, seed=19)
    oracle = Oracle(lines)
    produce(first_settings, lines[:20_000])
    first = workers(first_settings)
    assert wait_for(lambda: first.metric("leadpulse_events_total", 'outcome="scored"') >= 2_000, 60, 0.05)
    second = workers(second_settings)  # ready once it consumes the partitions it was given
    produce(first_settings, lines[20_000:])  # half the stream arrives after the join, whatever the pace
    scores_reach(first_settings, oracle.snapshots, timeout_s=180)
    assert second.metric("leadpulse_events_total", 'outcome="scored"') > 0, "the second worker scored nothing"
