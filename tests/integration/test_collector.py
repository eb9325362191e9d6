"""`leadpulse collect` on the real broker, driven by the real Segment and RudderStack Python
SDKs pointed at its URL, with a real worker: what the SDKs send ends up scored in
contact-scores, exactly as the offline scorer scores the records the collector produced
(and Segment messages written to the topic directly, unkeyed)."""

from datetime import UTC, datetime, timedelta

from rudderstack.analytics import Client as RudderClient
from segment.analytics import Client as SegmentClient

from leadpulse.cli.processes import ROOT, free_port
from tests.integration.harness import produce, read_all, scores_reach, wait_for
from tests.integration.oracle import Oracle

SEGMENT_KEY, RUDDER_KEY = "segment-write-key-01", "rudder-write-key-001"


def test_events_sent_by_the_segment_and_rudderstack_sdks_are_scored(make_settings, workers, collectors, tmp_path):
    keys = tmp_path / "write-keys"
    keys.write_text(f"{SEGMENT_KEY}  # web site\n{RUDDER_KEY}  # app\n")
    settings = make_settings(write_keys_file=keys, collect_port=free_port())
    worker = workers(settings)
    collector = collectors(settings)
    errors: list[object] = []

    def on_error(error, _batch):
        errors.append(error)

    hour_ago = datetime.now(UTC) - timedelta(hours=1)

    def at(minutes):
        return hour_ago + timedelta(minutes=minutes)

    segment = SegmentClient(SEGMENT_KEY, host=collector.base_url, on_error=on_error, max_retries=2, upload_interval=0.1)
    traits = {
        "email": "ada@acme.io",
        "title": "VP Sales",
        "seniority": "vp",
        "company": {"name": "Acme", "industry": "software", "employee_count": 400},
    }
    segment.page(anonymous_id="cookie-ada", name="Pricing", properties={"path": "/pricing"}, timestamp=at(0))
    segment.identify("ada@acme.io", traits, anonymous_id="cookie-ada", timestamp=at(1))
    segment.page("ada@acme.io", name="Pricing", properties={"path": "/pricing/teams"}, timestamp=at(2))
    segment.group("ada@acme.io", "acme", {"name": "Acme", "employees": 400}, timestamp=at(3))
    segment.track("ada@acme.io", "Demo Requested", {"plan": "teams"}, timestamp=at(4))
    segment.track("ada@acme.io", "Video Played", timestamp=at(5))  # no mapping: unscored
    segment.flush()
    segment.shutdown()

    rudder = RudderClient(RUDDER_KEY, host=collector.base_url, on_error=on_error, max_retries=2, upload_interval=0.1)
    rudder.screen("bob@shop.fr", name="Home", properties={"path": "/product"}, timestamp=at(6))
    rudder.track("bob@shop.fr", "Email Link Clicked", timestamp=at(7))
    rudder.track("bob@shop.fr", "Webinar Attended", timestamp=at(8))
    rudder.alias("cookie-bob", "bob@shop.fr", timestamp=at(9))
    rudder.flush()  # gzip bodies: the RudderStack SDK compresses by default
    rudder.shutdown()

    intruder = SegmentClient("not-a-write-key-0001", host=collector.base_url, on_error=on_error, max_retries=0)
    intruder.track("mallory", "Demo Requested")
    intruder.flush()
    intruder.shutdown()
    assert [getattr(error, "status", error) for error in errors] == [401]

    # Segment messages written straight to the topic, unkeyed (as a Kafka destination may):
    # the worker re-keys them by userId / anonymousId.
    produce(settings, (ROOT / "examples" / "segment.jsonl").read_bytes().splitlines(), keyed=False)

    records = wait_for(lambda: [v for _, v in read_all(settings, settings.input_topic, idle_s=1.0)], timeout_s=30)
    assert len(records) == 18
    oracle = Oracle(records)
    expected = oracle.snapshots
    assert set(expected) == {"ada@acme.io", "bob@shop.fr", "grace@initech.com"}
    # identify with both ids, and alias, link the cookies: their pages count for the users
    assert oracle.merged_into == {
        "cookie-ada": "ada@acme.io",
        "cookie-77": "grace@initech.com",
        "cookie-bob": "bob@shop.fr",
    }
    assert expected["ada@acme.io"]["stage"] == "opportunity" and expected["ada@acme.io"]["account_id"] == "acme"
    assert expected["bob@shop.fr"]["engagement"] > 0
    scores_reach(settings, expected, timeout_s=120, alive=worker.running)
    assert worker.metric("leadpulse_unmapped_events_total") == 2
