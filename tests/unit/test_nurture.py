"""Nurture triggers (docs/scoring.md#nurturing) with the shipped rules: who gets a record, with
which content, and how often."""

from leadpulse.scoring.engine import apply, new_state, snapshot
from leadpulse.scoring.nurture import nurture, nurtures_at, rearm_ms, revisit, revisit_due_ms
from tests.factories import DAY_MS, DEFAULT_RULES, T0, event

RULES = DEFAULT_RULES
PERIOD = RULES.nurture.period_ms


def fold(*events, state=None):
    state = state or new_state(events[0].contact_id)
    for item in events:
        state = apply(state, item, RULES).state
    return state


def pricing_reader(at=T0, contact="lea@acme.io", last_email_at=None):
    """A manager of a mid-sized software company who read the pricing pages and attended the
    ROI webinar: warm (73) on the day; a later e-mail open keeps her from stalling."""
    events = [
        event("profile_updated", at, contact, seniority="manager", company_size=300, industry="saas", budget=25_000),
        event("page_viewed", at, contact, path="/pricing"),
        event("page_viewed", at, contact, path="/pricing/enterprise"),
        event("form_submitted", at, contact, form="contact"),
        event("webinar_attended", at, contact, topic="roi"),
    ]
    if last_email_at is not None:
        events.append(event("email_opened", last_email_at, contact))
    return fold(*events)


def tracks(records):
    return [(record.track, record.content.title) for record in records]


def test_a_lead_that_cooled_from_warm_to_cool_receives_the_white_paper_of_its_interest():
    lea = pricing_reader(last_email_at=T0 + 20 * DAY_MS)
    assert snapshot(lea, T0 + 20 * DAY_MS, RULES).temperature_label == "warm"
    assert nurtures_at(lea, T0 + 20 * DAY_MS, RULES) == ()
    at = T0 + 32 * DAY_MS
    assert snapshot(lea, at, RULES).temperature_label == "cool"
    (record,) = nurtures_at(lea, at, RULES)
    assert (record.track, record.trigger, record.interest, record.stage) == (
        "cooling-off",
        "cooled",
        "pricing",
        "prospect",
    )
    assert record.content.url == "https://example.com/resources/pricing-white-paper"
    assert record.period_start_ms <= at < record.period_end_ms == record.period_start_ms + PERIOD


def test_a_record_is_the_same_anywhere_in_its_period_and_sent_once_per_period():
    lea = pricing_reader(last_email_at=T0 + 20 * DAY_MS)
    at = T0 + 32 * DAY_MS
    end = (at // PERIOD + 1) * PERIOD - 1  # the last millisecond of the period

    def cooling_off(records):
        return [record for record in records if record.track == "cooling-off"]

    first = nurture(lea, at, RULES)
    assert cooling_off(nurtures_at(lea, end, RULES)) == cooling_off(first.nurtures)  # same id, same content
    assert cooling_off(nurture(first.state, end, RULES).nurtures) == []
    (again,) = cooling_off(nurture(first.state, end + 1, RULES).nurtures)
    assert again.id != first.nurtures[0].id and again.period_start_ms == end + 1


def test_a_contact_without_events_for_three_weeks_has_stalled():
    lea = pricing_reader(last_email_at=T0 + 5 * DAY_MS)
    assert "stalled" not in [r.track for r in nurtures_at(lea, T0 + 25 * DAY_MS, RULES)]
    assert "stalled" in [r.track for r in nurtures_at(lea, T0 + 26 * DAY_MS, RULES)]


def test_a_good_fit_doing_little_gets_the_brief_of_its_segment():
    vp = fold(event("profile_updated", T0, "vp@globex.eu", seniority="vp", budget=60_000, company_size=300))
    assert tracks(nurtures_at(vp, T0, RULES)) == [("fit-but-quiet", "Executive brief: pipeline you are not seeing")]
    manager = fold(event("profile_updated", T0, "m@globex.eu", seniority="manager", budget=60_000, company_size=300))
    assert tracks(nurtures_at(manager, T0, RULES)) == [("fit-but-quiet", "Getting started with lead scoring")]
    intern = fold(event("profile_updated", T0, "i@globex.eu", seniority="individual", company_size=300))
    assert nurtures_at(intern, T0, RULES) == ()


def test_a_lost_deal_is_recycled_after_the_delay():
    lost = fold(
        event("profile_updated", T0, "bo@shop.fr", seniority="individual"),
        event("opportunity_opened", T0, "bo@shop.fr"),
        event("deal_lost", T0 + DAY_MS, "bo@shop.fr"),
    )
    assert "recycle" not in [r.track for r in nurtures_at(lost, T0 + 90 * DAY_MS, RULES)]
    recycled = [r for r in nurtures_at(lost, T0 + 91 * DAY_MS, RULES) if r.track == "recycle"]
    assert tracks(recycled) == [("recycle", "What is new since we last spoke")]
    assert recycled[0].stage == "nurturing"


def test_hot_contacts_opportunities_and_customers_are_never_nurtured():
    hot = pricing_reader()
    hot = fold(event("demo_requested", T0, "lea@acme.io"), state=hot)
    assert snapshot(hot, T0, RULES).stage == "opportunity"
    assert all(nurtures_at(hot, T0 + days * DAY_MS, RULES) == () for days in (0, 30, 100, 400))
    customer = fold(
        event("profile_updated", T0, "c@x.io", seniority="vp", budget=60_000), event("deal_won", T0, "c@x.io")
    )
    assert all(nurtures_at(customer, T0 + days * DAY_MS, RULES) == () for days in (0, 30, 100))
    anonymous = fold(event("profile_updated", T0, "cookie-1", identified=False, seniority="vp", budget=60_000))
    assert nurtures_at(anonymous, T0 + 30 * DAY_MS, RULES) == ()


def test_the_strongest_interest_chooses_the_content():
    reader = fold(
        event("profile_updated", T0, "r@acme.io", seniority="individual"),
        event("page_viewed", T0, "r@acme.io", path="/security"),
        event("page_viewed", T0, "r@acme.io", path="/trust"),
        event("page_viewed", T0, "r@acme.io", path="/pricing"),
    )
    (record,) = nurtures_at(reader, T0 + 22 * DAY_MS, RULES)
    assert (record.track, record.interest, record.content.title) == (
        "stalled",
        "security",
        "Security and GDPR white paper",
    )


def test_the_timer_is_asked_back_when_a_track_becomes_due_then_next_period():
    lea = pricing_reader(last_email_at=T0 + 5 * DAY_MS)
    cool_at = revisit_due_ms(lea, RULES, T0 + 5 * DAY_MS)
    assert cool_at is not None and T0 + 5 * DAY_MS < cool_at <= T0 + 26 * DAY_MS
    stalled_at = T0 + 26 * DAY_MS
    visited = revisit(lea, stalled_at, RULES)
    assert visited.outcome == "scored" and "stalled" in [r.track for r in visited.nurtures]
    assert visited.state.nurtured["stalled"] == stalled_at // PERIOD
    due = revisit_due_ms(visited.state, RULES, stalled_at)
    assert due == rearm_ms("lea@acme.io", stalled_at // PERIOD + 1, RULES)  # its moment of the next period
    assert (stalled_at // PERIOD + 1) * PERIOD <= due < (stalled_at // PERIOD + 2) * PERIOD
    assert revisit(visited.state, stalled_at + 1, RULES).nurtures == ()


def test_a_contact_nothing_can_nurture_is_not_scheduled_for_it():
    customer = fold(event("deal_won", T0, "c@x.io"))
    assert revisit_due_ms(customer, RULES, T0 + DAY_MS) is None


def test_a_good_fit_is_re_read_when_its_engagement_has_decayed_to_the_threshold():
    """Engagement 18 on the day, 15 about eight days later: the timer comes back then, to the minute."""
    vp = fold(
        event("profile_updated", T0, "vp@globex.eu", seniority="vp", budget=60_000, company_size=300),
        event("email_replied", T0, "vp@globex.eu"),
        event("email_clicked", T0, "vp@globex.eu"),
    )
    assert snapshot(vp, T0, RULES).engagement == 18.0 and nurtures_at(vp, T0, RULES) == ()
    due = revisit_due_ms(vp, RULES, T0)
    assert due is not None and 7 * DAY_MS < due - T0 < 9 * DAY_MS
    assert [r.track for r in nurtures_at(vp, due, RULES)] == ["fit-but-quiet"]
    assert nurtures_at(vp, due - 60_000, RULES) == ()


def test_a_stalled_lead_is_nurtured_once_per_period_until_it_is_dormant_then_never():
    """Without an end, a stalled track holds forever and keeps half of all contacts on the
    stream's schedule; `dormant_after` (180 days by default) ends every track."""
    lead = fold(event("newsletter_subscribed", T0, "quiet@acme.io"))
    dormant = T0 + RULES.nurture.dormant_after_ms
    at, sent = T0, []
    while (due := revisit_due_ms(lead, RULES, at)) is not None:
        assert due > at, "the schedule never asks back for the past"
        visited = revisit(lead, due, RULES)
        sent += [(record.track, due // PERIOD) for record in visited.nurtures]
        lead, at = visited.state, due
    stalled_periods = [period for track, period in sent if track == "stalled"]
    assert stalled_periods == sorted(set(stalled_periods)), "at most one record per period"
    assert len(stalled_periods) >= (dormant - T0 - 21 * DAY_MS) // PERIOD - 1
    assert all(period <= (dormant - 1) // PERIOD for period in stalled_periods)
    assert nurtures_at(lead, dormant, RULES) == () and nurtures_at(lead, dormant + 365 * DAY_MS, RULES) == ()


def test_contacts_whose_track_re_arms_fall_due_spread_over_the_period_not_at_its_start():
    """10,000 stalled leads sent their record in one period: the stream re-reads them across
    the next period (in ten slices of it, none holds more than twice its share)."""
    period = (T0 + 30 * DAY_MS) // PERIOD + 1  # a period that starts with every lead stalled
    slices = [0] * 10
    for index in range(10_000):
        lead = fold(event("newsletter_subscribed", T0, f"lead-{index}@acme.io"))
        visited = revisit(lead, period * PERIOD + 1, RULES)
        assert [r.track for r in visited.nurtures] == ["stalled"]
        due = revisit_due_ms(visited.state, RULES, period * PERIOD + 1)
        assert due is not None and (period + 1) * PERIOD <= due < (period + 2) * PERIOD
        assert [r.track for r in nurtures_at(visited.state, due, RULES)] == ["stalled"]
        slices[(due - (period + 1) * PERIOD) * 10 // PERIOD] += 1
    assert max(slices) < 2 * 1_000 and min(slices) > 1_000 // 2
