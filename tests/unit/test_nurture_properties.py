"""Nurture records (docs/scoring.md#nurturing) as properties over generated event sets and
cooling-tick times, with the shipped rules."""

from hypothesis import given, settings
from hypothesis import strategies as st

from leadpulse.scoring.engine import apply, new_state, snapshot
from leadpulse.scoring.nurture import nurture, revisit
from tests.factories import DAY_MS, DEFAULT_RULES
from tests.unit.test_properties import event_sets

RULES = DEFAULT_RULES
PERIOD = RULES.nurture.period_ms


def fold_all(events):
    states = {}
    for item in events:
        states[item.contact_id] = apply(states.get(item.contact_id) or new_state(item.contact_id), item, RULES).state
    return states


def nurture_all(states, at_ms):
    """Each contact nurtured at `at_ms`: (records, nurture memory) by contact. The rest of the
    state is the engine's, order-independent up to float rounding (test_properties.py)."""
    results = {cid: nurture(state, max(at_ms, state.last_event_ms), RULES) for cid, state in sorted(states.items())}
    return (
        {cid: done.nurtures for cid, done in results.items()},
        {cid: done.state.nurtured for cid, done in results.items()},
    )


@settings(max_examples=300)
@given(event_sets(max_size=40), st.integers(0, 400), st.randoms(use_true_random=False))
def test_the_same_events_in_any_order_give_the_same_nurture_records_and_state(events, days_later, rnd):
    at = max(e.occurred_ms for e in events) + days_later * DAY_MS
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert nurture_all(fold_all(shuffled), at) == nurture_all(fold_all(events), at)


@settings(max_examples=300)
@given(event_sets(max_size=40), st.lists(st.integers(0, 400 * 24), min_size=1, max_size=12))
def test_hot_contacts_opportunities_and_customers_never_get_a_record(events, hours_later):
    states = fold_all(events)
    last = max(e.occurred_ms for e in events)
    for at in sorted(last + hours * 3_600_000 for hours in hours_later):
        for cid, state in states.items():
            visited = revisit(state, at, RULES)
            if visited.nurtures:
                view = snapshot(state, at, RULES)
                assert view.temperature_label != "hot"
                assert view.stage not in ("opportunity", "customer", "suspect", "disqualified")
            states[cid] = visited.state


@st.composite
def events_and_ticks(draw):
    """Events and cooling ticks interleaved as a stream could see them: ticks in clock order,
    each at or after the events that arrived before it."""
    events = draw(event_sets(max_size=30))
    steps, clock = [], max(e.occurred_ms for e in events) - 200 * DAY_MS
    for item in events:
        steps.append(("event", item))
        if draw(st.booleans()):
            clock += draw(st.integers(0, 40 * 24)) * 3_600_000
            steps.append(("tick", clock))
    for _ in range(draw(st.integers(1, 6))):
        clock += draw(st.integers(0, 40 * 24)) * 3_600_000
        steps.append(("tick", clock))
    return steps


@settings(max_examples=300)
@given(events_and_ticks())
def test_a_contact_gets_at_most_one_record_per_track_per_period(steps):
    states, sent = {}, []
    for kind, step in steps:
        if kind == "event":
            states[step.contact_id] = apply(
                states.get(step.contact_id) or new_state(step.contact_id), step, RULES
            ).state
            continue
        for cid, state in states.items():
            visited = revisit(state, max(step, state.last_event_ms), RULES)
            states[cid] = visited.state
            sent.extend(
                (record.contact_id, record.track, record.period_start_ms // PERIOD) for record in visited.nurtures
            )
    assert len(sent) == len(set(sent))
