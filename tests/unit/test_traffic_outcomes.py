"""The synthetic traffic's outcomes (cli.traffic, `outcomes=True`): drawn from the ground
truth of docs/backtest.md, so that a calibration has something true to find."""

from __future__ import annotations

from collections import defaultdict

from leadpulse.cli.traffic import DAY_MS, Traffic, conversion_logit
from leadpulse.scoring.timeutil import parse_rfc3339_ms

START = parse_rfc3339_ms("2026-01-01T00:00:00Z")
OUTCOMES = ("sales_qualified", "opportunity_opened", "deal_won", "deal_lost", "disqualified")


def history(seed: int = 3, events: int = 30_000) -> list[dict[str, object]]:
    return list(Traffic(seed, START, 200 * DAY_MS, 3_000, outcomes=True).events(events))


def test_the_same_seed_draws_the_same_outcomes() -> None:
    assert history(seed=5, events=3_000) == history(seed=5, events=3_000)


def test_contacts_who_ask_for_a_demo_convert_several_times_more_often_than_the_others() -> None:
    types: dict[str, set[str]] = defaultdict(set)
    for event in history():
        if "contact_id" in event:
            types[str(event["contact_id"])].add(str(event["type"]))
    asked = [kinds for kinds in types.values() if kinds & {"demo_requested", "quote_requested"}]
    others = [kinds for kinds in types.values() if not kinds & {"demo_requested", "quote_requested"}]
    rate_asked = sum("opportunity_opened" in kinds for kinds in asked) / len(asked)
    rate_others = sum("opportunity_opened" in kinds for kinds in others) / len(others)
    assert len(asked) > 100 and len(others) > 1_000
    assert rate_asked > 4 * rate_others > 0  # some quiet contacts convert too: the noise


def test_outcomes_follow_each_other_in_order_and_never_after_the_history_ends() -> None:
    times: dict[tuple[str, str], list[int]] = defaultdict(list)
    for event in history():
        if event["type"] in OUTCOMES:
            occurred = parse_rfc3339_ms(str(event["occurred_at"]))
            assert occurred <= START + 200 * DAY_MS
            times[(str(event["contact_id"]), str(event["type"]))].append(occurred)
    opened = [(contact, at) for (contact, kind), ats in times.items() if kind == "opportunity_opened" for at in ats]
    assert opened
    for contact, at in opened:  # each opportunity follows a qualification of the same contact
        assert any(qualified < at for qualified in times[(contact, "sales_qualified")])


def test_the_ground_truth_rewards_intent_and_seniority_and_penalises_unsubscribes() -> None:
    quiet = [("page_viewed", {"path": "/blog/b2b-funnel"})]
    demo = [*quiet, ("demo_requested", {})]
    senior = [*demo, ("profile_updated", {"seniority": "vp", "budget": 60_000, "industry": "saas"})]
    leaving = [*quiet, ("newsletter_unsubscribed", {})]
    assert conversion_logit(leaving) < conversion_logit(quiet) < conversion_logit(demo) < conversion_logit(senior)
