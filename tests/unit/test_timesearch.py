"""The time searches of the cooling schedule and the nurture tracks (scoring.timesearch):
whatever the hint, the time found is the first minute the condition holds; a good hint
only saves checks."""

import math

from hypothesis import given
from hypothesis import strategies as st

from leadpulse.scoring import engine
from leadpulse.scoring.engine import next_cooling_ms, snapshot
from leadpulse.scoring.timesearch import STEP_MS, decay_eta_ms, first_time
from tests.factories import DAY_MS, DEFAULT_RULES, T0, event

HORIZON = 600 * DAY_MS


@given(
    threshold=st.integers(-HORIZON, 2 * HORIZON),
    hint=st.none() | st.floats(-HORIZON, 2 * HORIZON, allow_nan=False),
)
def test_the_time_found_is_within_a_minute_after_the_condition_starts_to_hold_whatever_the_hint(threshold, hint):
    checked: list[int] = []

    def holds(at: int) -> bool:
        checked.append(at)
        return at >= T0 + threshold

    found = first_time(holds, T0, HORIZON, hint)
    if threshold > HORIZON:
        assert found is None
        return
    assert found is not None and holds(found)
    assert found - max(T0 + threshold, T0) <= STEP_MS  # the start itself is taken not to hold
    assert len(checked) <= 45  # a hint far off costs checks, never the answer


@given(
    totals=st.lists(
        st.tuples(st.floats(-80, 120), st.sampled_from([0.0, -20.0, -60.0]), st.sampled_from([0.0, 20.0, 35.0, 50.0])),
        min_size=1,
        max_size=6,
    ),
    below=st.floats(0.5, 90),
)
def test_the_decay_estimate_is_where_the_clamped_sum_of_the_totals_reaches_the_level(totals, below):
    def engagement(after_ms: float) -> float:
        u = 2.0 ** (-after_ms / (30 * DAY_MS))
        return math.fsum(min(max(value * u, floor), cap) for value, floor, cap in totals)

    eta = decay_eta_ms(totals, below, 30 * DAY_MS)
    if eta is not None:
        assert eta > 0 and math.isclose(engagement(eta), below, abs_tol=1e-6)


def test_a_hot_contact_s_next_band_drop_is_found_in_a_few_checks_of_its_score(monkeypatch):
    state = engine.view_of(
        fold_of(
            event("profile_updated", T0, seniority="vp", company_size=300),
            event("demo_requested", T0),
            event("webinar_attended", T0 + 1),
            event("page_viewed", T0 + 2, path="/pricing"),
        ),
        DEFAULT_RULES,
    )
    calls = []
    score_parts = engine.score_parts
    monkeypatch.setattr(engine, "score_parts", lambda *args: calls.append(args) or score_parts(*args))
    due = next_cooling_ms(state, DEFAULT_RULES)
    assert due is not None and len(calls) <= 6  # a bisection over 20 half-lives takes ~21
    assert snapshot(state, due, DEFAULT_RULES).temperature < snapshot(state, due - STEP_MS, DEFAULT_RULES).temperature


def fold_of(*events):
    state = engine.new_state(events[0].contact_id)
    for one in events:
        state = engine.apply(state, one, DEFAULT_RULES).state
    return state
