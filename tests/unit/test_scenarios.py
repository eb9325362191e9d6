"""The default rules on the journeys a marketer would check first."""

from leadpulse.scoring.engine import HotLead, apply, new_state, snapshot
from tests.factories import DAY_MS, DEFAULT_RULES, T0, event

RULES = DEFAULT_RULES


def buyer_journey(start):
    return [
        event(
            "profile_updated",
            start,
            "buyer",
            seniority="director",
            budget=60_000,
            company_size=400,
            industry="software",
        ),
        event("page_viewed", start + 1 * DAY_MS, "buyer", path="/pricing"),
        event("page_viewed", start + 2 * DAY_MS, "buyer", path="/pricing/enterprise"),
        event("webinar_attended", start + 5 * DAY_MS, "buyer"),
        event("email_replied", start + 9 * DAY_MS, "buyer"),
        event("demo_requested", start + 13 * DAY_MS, "buyer"),
    ]


def run(events):
    state, outputs = new_state(events[0].contact_id), []
    for item in events:
        state, produced, *_ = apply(state, item, RULES)
        outputs.extend(produced)
    return state, outputs


def test_a_decision_maker_with_budget_who_engages_for_two_weeks_ends_hot_and_an_opportunity():
    state, outputs = run(buyer_journey(T0))
    view = snapshot(state, T0 + 14 * DAY_MS, RULES)
    assert (view.temperature_label, view.stage) == ("hot", "opportunity")
    alerts = [o for o in outputs if isinstance(o, HotLead)]
    assert len(alerts) == 1
    assert {r.signal for r in alerts[0].snapshot.reasons} >= {"demo request", "budget: 60000"}


def test_a_visitor_who_only_reads_blog_posts_stays_a_cold_suspect():
    posts = [event("page_viewed", T0 + i * DAY_MS, "anon-7", identified=False, path="/blog/post") for i in range(40)]
    state, outputs = run(posts)
    view = snapshot(state, T0 + 40 * DAY_MS, RULES)
    assert (view.temperature_label, view.stage) == ("cold", "suspect")
    assert not any(isinstance(o, HotLead) for o in outputs)


def test_the_same_buyer_six_months_later_is_no_longer_hot_but_keeps_the_stage():
    state, _ = run(buyer_journey(T0))
    view = snapshot(state, T0 + 13 * DAY_MS + 182 * DAY_MS, RULES)
    assert view.temperature_label != "hot"
    assert view.stage == "opportunity"
