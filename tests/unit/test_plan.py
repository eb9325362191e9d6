"""The per-event fast path (scoring/plan.py, engine's cached profile reading) gives exactly
what the rules' straightforward reading gives, on generated events, under the shipped rules
and under rules with 10 named models and 50 segments."""

import math
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from leadpulse.scoring.engine import (
    DEFAULT_MODEL,
    Event,
    HotLead,
    _combine,
    _decayed_signals,
    _fit_points,
    _sums_of,
    apply,
    new_state,
    score_parts,
    segments_of,
    stage_of,
    view_of,
)
from leadpulse.scoring.plan import plan_of
from leadpulse.scoring.rules import FUNNEL_STAGES, SIDE_STAGES, STAGE_LEVEL, hot_hysteresis, load_rules
from tests.factories import DEFAULT_RULES, T0
from tests.unit.test_properties import KINDS, PATHS, PROFILE, event_sets

MANY_MODELS = load_rules(Path(__file__).resolve().parents[2] / "bench" / "rules" / "many_models.toml")
RULESETS = st.sampled_from([DEFAULT_RULES, MANY_MODELS])
EVENT_TYPES = st.sampled_from(sorted({*DEFAULT_RULES.signals, "profile_updated", "chat_started", "page"}))
WORDS = st.sampled_from(["api", "gdpr", "roi", "pricing", "security", "Lead-Scoring", " ROI ", "misc", 7])
PROPERTIES = st.fixed_dictionaries(
    {},
    optional={
        "path": st.one_of(PATHS, st.sampled_from(["/pricing/x", "/plans", "/docs/api/v1", "/security"]), st.integers()),
        "tags": st.one_of(st.lists(WORDS, max_size=3), WORDS),
        "tag": WORDS,
        "topic": WORDS,
        "form": st.sampled_from(["contact", "talk_to_sales", "ebook"]),
        "hard": st.one_of(st.booleans(), st.just(1)),
    },
)
BUYER = st.fixed_dictionaries(  # profiles that make the named models apply, and hot
    {
        "seniority": st.sampled_from(["c_level", "owner", "vp", "director"]),
        "budget": st.sampled_from([25_000, 120_000, 300_000]),
    },
    optional={
        "company_size": st.sampled_from([60, 1_200, 6_000]),
        "industry": st.sampled_from(["software", "financial_services", "retail"]),
        "country": st.sampled_from(["fr", "us"]),
        "department": st.sampled_from(["it", "finance"]),
        "channel": st.sampled_from(["partner", "paid"]),
    },
)
ENGAGED = st.tuples(
    st.sampled_from(["demo_requested", "webinar_attended", "trial_started", "form_submitted"]), st.just({})
)
MANY_KINDS = st.one_of(
    KINDS,
    st.tuples(st.just("profile_updated"), st.one_of(PROFILE, BUYER)),
    ENGAGED,
    st.tuples(st.just("page_viewed"), st.just({"path": "/pricing"})),
)


@settings(max_examples=400)
@given(RULESETS, EVENT_TYPES, PROPERTIES)
def test_the_plan_finds_the_signals_interests_and_model_signals_the_rules_find(rules, event_type, properties):
    plan = plan_of(rules)
    for _ in range(2):  # the second answer comes from the plan's memory of paths
        assert plan.signal_for(event_type, properties) == rules.signal_for(event_type, properties)
        assert list(plan.interests_of(properties)) == rules.interests_of(properties)
        touched = {model.name: signal for model, signal in plan.own_signals_for(event_type, properties)}
        for model in rules.own_signal_models:
            assert touched.get(model.name) == model.signal_for(event_type, properties)


def reference_settle(armed, model_armed, view, rules):
    """What settling decides, read the straightforward way: every model's score from its fit
    points and decayed signals, the models that apply from every segment of the contact."""
    at = view.last_event_ms
    fit, _, score = _combine(
        list(_fit_points(view, rules)),
        list(_decayed_signals(view.signals, at, rules.signal_categories, rules.half_life_ms)),
        rules,
    )
    armed, fired = hot_hysteresis(armed, score, rules.hot_floor, rules.rearm_gap)
    alerts = [DEFAULT_MODEL] if fired else []
    model_armed = dict(model_armed)
    segments = segments_of(view, fit, rules)
    for model in rules.models:
        if not model.applies(segments):
            continue
        decayed = list(_decayed_signals(_sums_of(view, model), at, model.signal_categories, rules.half_life_ms))
        model_score = _combine(list(_fit_points(view, model)), decayed, model)[2]
        model_armed[model.name], fired = hot_hysteresis(
            model_armed.get(model.name, True), model_score, model.hot_floor, model.rearm_gap
        )
        alerts += [model.name] if fired else []
    return armed, model_armed, alerts


def reference_stage(state, rules):
    if state.crm_last is not None and state.crm_last.stage in SIDE_STAGES:
        return state.crm_last.stage
    level = max(1 if state.identified else 0, state.crm_level)
    best = min(max(math.fsum(max(points, 0.0) for points in state.best_fit.values()), 0.0), 100.0)
    lifetimes = {}
    for name, summed in state.signals.items():
        category = rules.signal_categories.get(name)
        if category is not None:
            lifetimes.setdefault(category, []).append(summed.lifetime)
    lifetime = math.fsum(min(math.fsum(values), rules.categories[name].cap) for name, values in lifetimes.items())
    qualifies = best >= rules.prospect_fit and min(max(lifetime, 0.0), 100.0) >= rules.prospect_engagement
    if level < STAGE_LEVEL["prospect"] and qualifies:
        level = STAGE_LEVEL["prospect"]
    if level >= STAGE_LEVEL["prospect"] and state.intent:
        level = max(level, STAGE_LEVEL["opportunity"])
    return FUNNEL_STAGES[level]


@st.composite
def busy_weeks(draw):
    """Events of two contacts within two weeks: hot episodes of several models, and cooling."""
    kinds = draw(st.lists(MANY_KINDS, min_size=1, max_size=25))
    contacts = st.sampled_from(["a", "b"])
    times = st.integers(0, 14 * 24 * 60).map(lambda minutes: T0 + minutes * 60_000)
    return [
        Event(f"e{index}", event_type, draw(contacts), draw(st.booleans()), draw(times), properties)
        for index, (event_type, properties) in enumerate(kinds)
    ]


@settings(max_examples=300, deadline=None)
@given(RULESETS, st.one_of(event_sets(max_size=25, kinds_of=MANY_KINDS), busy_weeks()), st.integers(0, 400))
def test_each_event_settles_as_the_straightforward_reading_of_every_model_and_segment(rules, events, days_later):
    states = {}
    for event in events:
        before = states.get(event.contact_id) or new_state(event.contact_id)
        applied = apply(before, event, rules)
        states[event.contact_id] = state = applied.state
        if applied.outcome == "duplicate":
            continue
        view = view_of(state, rules)
        armed, model_armed, alerts = reference_settle(before.hot_armed, before.model_armed, view, rules)
        assert state.hot_armed == armed
        assert all(state.model_armed.get(m.name, True) == model_armed.get(m.name, True) for m in rules.models)
        assert [output.model for output in applied.outputs if isinstance(output, HotLead)] == alerts
        assert state.stage == stage_of(view, rules) == reference_stage(view, rules)
        at = view.last_event_ms + days_later * 86_400_000
        decayed = list(_decayed_signals(view.signals, at, rules.signal_categories, rules.half_life_ms))
        assert score_parts(view, at, rules) == _combine(list(_fit_points(view, rules)), decayed, rules)


def test_a_model_on_the_top_level_signals_reads_their_engagement_after_a_model_with_its_own():
    """10 models: europe (its own signals: pricing, webinar, demo) comes before executives,
    retail and partners (the top level's); a contact in all four engages through forms,
    replies and a trial, which only the top level's signals count."""
    profile = {"seniority": "c_level", "budget": 300_000, "country": "fr", "industry": "retail", "channel": "partner"}
    kinds = [
        ("profile_updated", profile),
        ("form_submitted", {"form": "contact"}),
        ("email_replied", {}),
        ("webinar_attended", {}),
        ("trial_started", {}),
    ]
    state, alerts = new_state("c"), []
    for index, (event_type, properties) in enumerate(kinds):
        applied = apply(state, Event(f"e{index}", event_type, "c", True, T0 + index * 60_000, properties), MANY_MODELS)
        state = applied.state
        alerts += [output.model for output in applied.outputs if isinstance(output, HotLead)]
    assert sorted(alerts) == ["default", "executives", "partners", "retail"]
