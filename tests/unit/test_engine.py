import orjson
import pytest

from leadpulse.scoring.engine import (
    HotLead,
    StageChange,
    apply,
    cooling_due_ms,
    future_reason,
    new_state,
    next_cooling_ms,
    reevaluate,
    snapshot,
)
from leadpulse.scoring.rules import parse_rules
from leadpulse.scoring.state import from_bytes, to_bytes
from tests.factories import DAY_MS, DEFAULT_RULES, T0, event, seen_hashes

H = 30 * DAY_MS
RULES = DEFAULT_RULES


def fold(*events, rules=RULES, state=None):
    state = state or new_state(events[0].contact_id)
    outputs = []
    for item in events:
        state, produced, *_ = apply(state, item, rules)
        outputs.extend(produced)
    return state, outputs


def engagement_of(state, at_ms=None):
    return snapshot(state, state.last_event_ms if at_ms is None else at_ms, RULES).engagement


def test_engagement_halves_after_one_half_life():
    state, _ = fold(event("webinar_attended", T0))
    assert engagement_of(state, T0) == 25.0
    assert engagement_of(state, T0 + H) == 12.5
    assert engagement_of(state, T0 + 2 * H) == 6.2


def test_a_late_event_adds_its_decayed_points_and_keeps_the_reference():
    state, _ = fold(event("webinar_attended", T0 + H), event("webinar_registered", T0))
    assert state.signals["webinar registration"].ref_ms == T0
    assert engagement_of(state, T0 + H) == pytest.approx(25 + 5, abs=0.05)


def test_a_newer_event_decays_the_sum_to_its_time_then_adds():
    state, _ = fold(event("email_replied", T0), event("email_replied", T0 + H))
    assert state.signals["e-mail reply"].value == pytest.approx(15 * 0.5 + 15)
    assert state.signals["e-mail reply"].ref_ms == T0 + H


def test_category_caps_apply_when_reading_not_when_adding():
    pages = [event("page_viewed", T0 + i * 60_000, path="/pricing") for i in range(5)]
    state, _ = fold(*pages)
    assert state.signals["pricing page"].value == pytest.approx(50, abs=0.01)
    assert engagement_of(state) == 25.0
    assert engagement_of(state, T0 + H) == 25.0  # 50 decays to 25: still at the cap


def test_negative_signals_lower_engagement_but_never_below_zero():
    state, _ = fold(event("webinar_attended", T0), event("newsletter_unsubscribed", T0))
    assert engagement_of(state) == 5.0
    state, _ = fold(event("email_bounced", T0, hard=True))
    assert engagement_of(state) == 0.0


def test_a_duplicate_event_id_is_counted_once():
    first = event("demo_requested", T0, event_id="dup")
    state, _ = fold(first)
    again = apply(state, event("demo_requested", T0, event_id="dup"), RULES)
    assert again.outcome == "duplicate"
    assert again.state is state
    assert again.outputs == ()


def test_the_duplicate_memory_is_bounded_by_the_dedup_window():
    events = [event("email_opened", T0 + i, event_id=f"id-{i}") for i in range(RULES.dedup_window + 10)]
    state, _ = fold(*events)
    assert len(seen_hashes(state)) == RULES.dedup_window
    assert (
        apply(state, event("email_opened", T0, event_id=f"id-{RULES.dedup_window + 9}"), RULES).outcome == "duplicate"
    )


def test_an_unknown_event_type_is_applied_but_scores_nothing():
    applied = apply(new_state("c-1"), event("chat_started", T0), RULES)
    assert applied.outcome == "unscored"
    assert snapshot(applied.state, T0, RULES).score == 0


def test_events_too_far_in_the_future_get_a_reason():
    assert future_reason(event("page_viewed", T0 + 16 * 60_000), T0, RULES) is not None
    assert future_reason(event("page_viewed", T0 + 14 * 60_000), T0, RULES) is None


def test_fit_uses_the_latest_profile_value_by_event_time():
    state, _ = fold(
        event("profile_updated", T0 + 10, seniority="vp"), event("profile_updated", T0, seniority="manager")
    )
    assert snapshot(state, T0, RULES).fit == 25.0


def test_score_combines_fit_and_engagement_with_the_rule_weights():
    state, _ = fold(event("profile_updated", T0, seniority="vp", budget=60_000), event("webinar_attended", T0))
    view = snapshot(state, T0, RULES)
    assert (view.fit, view.engagement, view.score) == (50.0, 25.0, round(0.4 * 50 + 0.6 * 25))


def test_reasons_list_the_top_signals_of_both_parts():
    state, _ = fold(
        event("profile_updated", T0, seniority="vp"), event("webinar_attended", T0), event("email_opened", T0)
    )
    reasons = [(r.signal, r.part, r.points) for r in snapshot(state, T0, RULES).reasons]
    assert reasons == [
        ("seniority: vp", "fit", 25.0),
        ("webinar attended", "engagement", 25.0),
        ("e-mail opened", "engagement", 1.0),
    ]


def test_an_anonymous_visitor_is_a_suspect_and_an_identified_one_a_lead():
    anonymous, outputs = fold(event("page_viewed", T0, identified=False, path="/blog/x"))
    assert anonymous.stage == "suspect"
    assert [(o.from_stage, o.to_stage) for o in outputs] == [(None, "suspect")]
    known, _ = fold(event("newsletter_subscribed", T0))
    assert known.stage == "lead"


def test_fit_and_lifetime_engagement_make_a_prospect_and_intent_an_opportunity():
    _, outputs = fold(
        event("profile_updated", T0, seniority="director", budget=25_000, company_size=300),
        event("webinar_attended", T0 + 1),
        event("form_submitted", T0 + 2, form="whitepaper"),
        event("quote_requested", T0 + 3),
    )
    assert [(o.from_stage, o.to_stage) for o in outputs if isinstance(o, StageChange)] == [
        (None, "lead"),
        ("lead", "prospect"),
        ("prospect", "opportunity"),
    ]


def test_a_quote_request_from_an_unqualified_lead_stays_a_lead():
    state, _ = fold(event("quote_requested", T0))
    assert state.stage == "lead"


def test_explicit_crm_events_set_the_stage_and_side_stages_hold_until_a_later_explicit_event():
    state, _ = fold(event("sales_qualified", T0), event("deal_lost", T0 + 10))
    assert state.stage == "nurturing"
    state, _ = fold(event("webinar_attended", T0 + 20), event("demo_requested", T0 + 30), state=state)
    assert state.stage == "nurturing"
    state, _ = fold(event("opportunity_opened", T0 + 40), state=state)
    assert state.stage == "opportunity"
    state, _ = fold(event("disqualified", T0 + 5), state=state)  # older than the last explicit event
    assert state.stage == "opportunity"


def hot_buyer():
    """A decision maker with budget who asks for a demo: hot at once."""
    return [
        event("profile_updated", T0, seniority="c_level", budget=60_000, company_size=300, industry="saas"),
        event("demo_requested", T0),
        event("webinar_attended", T0),
        event("form_submitted", T0, form="contact"),
    ]


def test_a_hot_alert_fires_once_per_episode_and_rearms_below_the_gap():
    buyer = hot_buyer()
    state, outputs = fold(*buyer)
    assert sum(isinstance(o, HotLead) for o in outputs) == 1
    assert not state.hot_armed
    hot_again, outputs = fold(event("email_replied", T0 + 1), state=state)
    assert not any(isinstance(o, HotLead) for o in outputs)
    _, outputs = fold(*[event(e.type, T0 + 3 * H, **e.properties) for e in buyer], state=hot_again)
    assert sum(isinstance(o, HotLead) for o in outputs) == 1


def test_a_cooling_tick_lowers_the_temperature_but_never_rearms_the_alert():
    """Re-arming is decided at event time in apply, so the offline scorer (no ticks) agrees."""
    buyer = hot_buyer()
    hot, _ = fold(*buyer)
    cooled = reevaluate(hot, T0 + 3 * H, RULES)
    assert cooled.outcome == "scored" and cooled.state.temperature < hot.temperature
    assert not cooled.state.hot_armed and cooled.outputs == ()


def test_a_hot_alert_carries_the_snapshot_with_reasons_and_a_deterministic_id():
    _, outputs = fold(
        event(
            "profile_updated", T0, seniority="c_level", budget=60_000, company_size=300, industry="saas", event_id="p"
        ),
        event("demo_requested", T0, event_id="d"),
        event("webinar_attended", T0, event_id="w"),
        event("form_submitted", T0, form="contact", event_id="f"),
    )
    alert = next(o for o in outputs if isinstance(o, HotLead))
    assert alert.cause_event_id == "w"  # fit 80 and engagement 75 reach 77
    assert alert.snapshot.temperature_label == "hot"
    assert alert.snapshot.reasons[0].points > 0
    _, replayed = fold(
        *[
            event(e, T0, event_id=i, **p)
            for e, i, p in [
                (
                    "profile_updated",
                    "p",
                    {"seniority": "c_level", "budget": 60_000, "company_size": 300, "industry": "saas"},
                ),
                ("demo_requested", "d", {}),
                ("webinar_attended", "w", {}),
                ("form_submitted", "f", {"form": "contact"}),
            ]
        ]
    )
    assert [o.id for o in replayed] == [o.id for o in outputs]


def test_cooling_is_scheduled_at_the_next_band_drop():
    state, _ = fold(event("profile_updated", T0, seniority="vp"), event("demo_requested", T0))
    band = snapshot(state, T0, RULES).temperature
    due = next_cooling_ms(state, RULES)
    assert due is not None
    assert snapshot(state, due, RULES).temperature == band - 1
    assert snapshot(state, due - 120_000, RULES).temperature == band


def test_cooling_is_scheduled_band_after_band():
    state, _ = fold(
        event("profile_updated", T0, seniority="c_level", budget=60_000, company_size=300, industry="saas"),
        event("demo_requested", T0),
        event("webinar_attended", T0),
    )
    bands, due = [snapshot(state, T0, RULES).temperature], T0
    while (due := next_cooling_ms(state, RULES, due)) is not None:
        bands.append(snapshot(state, due, RULES).temperature)
    assert bands == [4, 3, 2]  # fit 80 alone keeps the score at 32: cool, never cold


def test_a_cold_contact_needs_no_cooling_check():
    state, _ = fold(event("email_opened", T0))
    assert next_cooling_ms(state, RULES) is None


def test_state_round_trips_through_bytes_compactly():
    state, _ = fold(
        event("profile_updated", T0, seniority="vp", budget=60_000),
        event("page_viewed", T0 + 1, path="/pricing"),
        event("deal_lost", T0 + 2),
    )
    data = to_bytes(state)
    assert from_bytes(data) == state
    assert len(data) < 400


def test_the_stream_bookkeeping_in_a_state_round_trips_and_survives_apply():
    state, _ = fold(event("page_viewed", T0, path="/pricing"))
    state.positions = {"e": 41, "r": 7}
    state.published_ms = T0 + 5
    state.cooling_due_ms = T0 + H
    assert from_bytes(to_bytes(state)) == state
    after, _ = fold(event("page_viewed", T0 + 1, path="/blog"), state=state)
    assert (after.positions, after.published_ms, after.cooling_due_ms) == ({"e": 41, "r": 7}, T0 + 5, T0 + H)


def test_a_state_stored_by_the_previous_format_still_loads():
    state, _ = fold(event("page_viewed", T0, path="/pricing"))
    old = orjson.loads(to_bytes(state))[:12]
    old[0] = 1
    loaded = from_bytes(orjson.dumps(old))
    assert loaded.signals == state.signals and loaded.positions == {} and loaded.published_ms == state.last_event_ms


def test_a_state_stored_by_format_5_loads_with_nothing_nurtured():
    state, _ = fold(event("profile_updated", T0, seniority="vp"), event("page_viewed", T0 + 1, path="/pricing"))
    stored = orjson.loads(to_bytes(state))
    assert stored[0] == 8 and stored[19] == {}
    loaded = from_bytes(orjson.dumps([5, *stored[1:19]]))
    assert loaded == state and loaded.nurtured == {}


def test_a_state_remembers_the_nurture_periods_it_was_sent():
    state, _ = fold(event("page_viewed", T0, path="/pricing"))
    state.nurtured = {"cooling-off": 1461, "stalled": 1460}
    assert from_bytes(to_bytes(state)) == state
    after, _ = fold(event("page_viewed", T0 + 1, path="/blog"), state=state)
    assert after.nurtured == {"cooling-off": 1461, "stalled": 1460}


def test_a_contact_that_cooled_while_nobody_looked_is_due_at_once():
    hot, _ = fold(
        event("profile_updated", T0, seniority="c_level", budget=60_000, company_size=300, industry="saas"),
        event("demo_requested", T0),
        event("webinar_attended", T0),
    )
    assert cooling_due_ms(hot, RULES, T0 + 10 * H) == T0 + 10 * H
    due = cooling_due_ms(hot, RULES, T0)
    assert due is not None and T0 < due < T0 + 10 * H


def test_a_rules_version_appears_on_every_output():
    rules = parse_rules(
        'version = "v-test"\n[weights]\nfit = 0.0\nengagement = 1.0\n[categories.all]\ncap = 100\n'
        '[[signals]]\nname = "x"\nevent = "demo_requested"\n'
        'category = "all"\npoints = 100\n'
    )
    state, outputs = fold(event("demo_requested", T0), rules=rules)
    assert snapshot(state, T0, rules).rules_version == "v-test"
    assert {o.rules_version for o in outputs if isinstance(o, StageChange)} == {"v-test"}
    assert {o.snapshot.rules_version for o in outputs if isinstance(o, HotLead)} == {"v-test"}


def test_a_negative_attribute_seen_after_qualifying_does_not_undo_the_prospect_stage():
    state, _ = fold(
        event("form_submitted", T0, form="contact", identified=False),
        event("profile_updated", T0, seniority="director", budget=25_000, channel="referral", identified=False),
    )
    assert state.stage == "prospect"
    state, outputs = fold(event("profile_updated", T0, job_title="Marketing intern", identified=False), state=state)
    assert state.stage == "prospect" and outputs == []
