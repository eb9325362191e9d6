"""Routes: which alerts go where, by topic, model, segment, stage, account, score and any
record field; and reading an alert from an output record's bytes."""

import orjson
import pytest

from leadpulse.notify.alerts import alert_from
from leadpulse.notify.routing import destinations_for
from leadpulse.scoring.timeutil import parse_rfc3339_ms
from tests.factories import DAY_MS, T0, notify_records
from tests.unit.test_notify_config import CRM, parse

RECORDS = notify_records()
SALES = '[destinations.sales]\nkind = "webhook"\nurl = "http://127.0.0.1:9/sales"\nsecret_env = "CRM_SECRET"\n'
TOPICS = 'topics = ["hot-leads", "hot-accounts", "stage-changes", "nurture"]\n'


def alert(topic, **changes):
    return alert_from(topic, orjson.dumps({**RECORDS[topic], **changes}))


def routed(routes, topic, **changes):
    config = parse(TOPICS + CRM + SALES + routes)
    return destinations_for(config, alert(topic, **changes))


def test_an_alert_is_read_from_its_record_with_its_id_key_and_time():
    lead = alert("hot-leads")
    assert (lead.kind, lead.id, lead.key, lead.occurred_ms) == (
        "hot_lead",
        RECORDS["hot-leads"]["id"],
        "ada@acme.io",
        T0,
    )
    assert alert("hot-accounts").key == "acme.io"
    nurture = alert("nurture")
    assert (nurture.occurred_ms, nurture.current_until_ms) == (T0, T0 + 7 * DAY_MS)


@pytest.mark.parametrize(
    ("topic", "value", "expected"),
    [
        ("hot-leads", b"{not json", "hot-leads record: not JSON"),
        ("hot-leads", b"[1]", "hot-leads record: expected a JSON object, got list"),
        (
            "hot-leads",
            orjson.dumps(RECORDS["stage-changes"]),
            "hot-leads record: kind: expected 'hot_lead', got 'stage_change'",
        ),
        (
            "hot-accounts",
            orjson.dumps({**RECORDS["hot-accounts"], "account_id": ""}),
            "hot-accounts record: account_id: expected a non-empty string",
        ),
        (
            "hot-leads",
            orjson.dumps({**RECORDS["hot-leads"], "id": 7}),
            "hot-leads record: id: expected a non-empty string, got 7",
        ),
        (
            "hot-leads",
            orjson.dumps({**RECORDS["hot-leads"], "occurred_at": "yesterday"}),
            "hot-leads record: occurred_at: not an RFC 3339",
        ),
        (
            "nurture",
            orjson.dumps({**RECORDS["nurture"], "period_end": None}),
            "nurture record: period_end: expected a non-empty string",
        ),
        ("contact-scores", b"{}", "'contact-scores' is not a topic the notifier reads"),
        (
            "hot-leads",
            orjson.dumps({**RECORDS["hot-leads"], "id": "a b"}),
            "hot-leads record: id: expected up to 256 printable ASCII",
        ),
        (
            "hot-leads",
            orjson.dumps({**RECORDS["hot-leads"], "id": "é"}),
            "hot-leads record: id: expected up to 256 printable ASCII",
        ),
    ],
)
def test_a_record_that_is_not_an_alert_is_one_line(topic, value, expected):
    with pytest.raises(ValueError) as caught:
        alert_from(topic, value)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_destinations_come_once_each_in_the_order_the_file_names_them():
    routes = '[[routes]]\nto = ["sales"]\n[[routes]]\nto = ["crm", "sales"]\n'
    assert routed(routes, "hot-leads") == ("sales", "crm")


def test_an_alert_no_route_matches_goes_nowhere():
    routes = '[[routes]]\ntopics = "hot-accounts"\nto = "crm"\n[[routes]]\ntopics = "nurture"\nto = "sales"\n'
    assert routed(routes, "hot-leads") == ()
    assert routed(routes, "nurture") == ("sales",)


@pytest.mark.parametrize(
    ("criteria", "topic", "changes", "expected"),
    [
        ("segments = ['enterprise']", "hot-leads", {"segments": ["smb", "enterprise"]}, True),
        ("segments = ['enterprise']", "hot-leads", {"segments": ["smb"]}, False),
        ("segments = ['enterprise']", "hot-leads", {"segments": []}, False),
        ("models = 'enterprise'", "hot-leads", {"model": "enterprise"}, True),
        ("models = 'enterprise'", "hot-leads", {"model": "default"}, False),
        ("models = 'enterprise'", "hot-accounts", {}, False),  # no model on the record: no match
        ("min_score = 80", "hot-leads", {"score": 80}, True),
        ("min_score = 80", "hot-leads", {"score": 79}, False),
        ("min_score = 80", "nurture", {}, False),
        (
            "stages = ['opportunity', 'customer']",
            "stage-changes",
            {"to_stage": "opportunity", "from_stage": "prospect"},
            True,
        ),
        (
            "stages = ['opportunity', 'customer']",
            "stage-changes",
            {"to_stage": "prospect", "from_stage": "opportunity"},
            False,
        ),
        ("stages = 'prospect'", "hot-leads", {"stage": "prospect"}, True),
        ("accounts = ['acme.io', 'globex.com']", "hot-accounts", {}, True),
        ("accounts = ['globex.com']", "hot-accounts", {}, False),
        ("where = { interests = 'pricing' }", "hot-leads", {"interests": [{"name": "pricing", "weight": 3.0}]}, True),
        ("where = { interests = 'pricing' }", "hot-leads", {"interests": [{"name": "security", "weight": 3.0}]}, False),
        (
            "where.committee.covered = 'economic buyer'",
            "hot-accounts",
            {"committee": {"covered": ["economic buyer"], "missing": [], "coverage": 1.0}},
            True,
        ),
        ("where.committee.covered = 'economic buyer'", "hot-accounts", {}, False),
        ("where = { fit = [80, 90] }", "hot-leads", {"fit": 80.0}, True),
        ("where = { fit = 1 }", "hot-leads", {"fit": True}, False),  # true is not 1
        ("where = { merged_from = 'anon-1' }", "hot-leads", {}, False),  # absent: no match
        ("topics = 'stage-changes'\nmin_score = 30", "hot-leads", {}, False),
    ],
)
def test_a_route_sends_an_alert_only_when_every_criterion_holds(criteria, topic, changes, expected):
    routes = f"[[routes]]\n{criteria}\nto = 'sales'\n[[routes]]\nto = 'crm'\n"
    assert routed(routes, topic, **changes) == (("sales", "crm") if expected else ("crm",))


def test_several_criteria_must_all_hold():
    routes = "[[routes]]\nsegments = 'enterprise'\nmin_score = 90\nto = 'sales'\n"
    routes += "[[routes]]\ntopics = 'nurture'\nto = 'crm'\n"
    assert routed(routes, "hot-leads", segments=["enterprise"], score=95) == ("sales",)
    assert routed(routes, "hot-leads", segments=["enterprise"], score=85) == ()
    assert routed(routes, "hot-leads", segments=["smb"], score=95) == ()


def test_the_record_time_is_the_published_one():
    assert alert("hot-leads", occurred_at="2026-11-26T09:30:00+01:00").occurred_ms == parse_rfc3339_ms(
        "2026-11-26T08:30:00Z"
    )
