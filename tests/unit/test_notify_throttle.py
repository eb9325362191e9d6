"""Throttles: an old alert is not news, a cool-down per destination and contact, a rate limit
per destination; each with its memory bound."""

import orjson
from hypothesis import given
from hypothesis import strategies as st

from leadpulse.notify.alerts import DEFAULT_TOPICS, alert_from
from leadpulse.notify.config import Destination, NotifyConfig
from leadpulse.notify.throttle import Cooldown, RateLimit, too_old
from tests.factories import DAY_MS, T0, notify_records

RECORDS = notify_records()
HOUR = 3_600_000


def config(rates=None, cooldowns=None):
    """Destinations named in either mapping, with those rates (messages/s) and cool-downs (ms)."""
    rates, cooldowns = rates or {}, cooldowns or {}
    destinations = {
        name: Destination(
            name, "webhook", "http://127.0.0.1:9/", (), None, rates.get(name), 10.0, HOUR, cooldowns.get(name, 0)
        )
        for name in {**rates, **cooldowns}
    }
    return NotifyConfig(destinations, (), DEFAULT_TOPICS, HOUR, 0)


def test_an_alert_older_than_the_maximum_age_is_too_old():
    lead = alert_from("hot-leads", orjson.dumps(RECORDS["hot-leads"]))
    assert not too_old(lead, T0 + HOUR, HOUR)
    assert too_old(lead, T0 + HOUR + 1, HOUR)
    assert not too_old(lead, T0 - 5_000, HOUR)  # a clock a little behind the worker's


def test_a_nurture_record_is_news_for_its_whole_period():
    nurture = alert_from("nurture", orjson.dumps(RECORDS["nurture"]))  # a 7-day period from T0
    assert not too_old(nurture, T0 + 6 * DAY_MS, HOUR)
    assert not too_old(nurture, T0 + 7 * DAY_MS + HOUR, HOUR)
    assert too_old(nurture, T0 + 7 * DAY_MS + HOUR + 1, HOUR)


def test_a_cooldown_keeps_a_destination_quiet_about_one_contact_for_its_period():
    cooldown = Cooldown(config(cooldowns={"slack": 10 * 60_000, "crm": 0}))
    assert cooldown.allows("slack", "c-1", T0)
    cooldown.note("slack", "c-1", T0)
    assert not cooldown.allows("slack", "c-1", T0 + 10 * 60_000 - 1)
    assert cooldown.allows("slack", "c-2", T0 + 1)  # another contact
    assert cooldown.allows("slack", "c-1", T0 + 10 * 60_000)
    cooldown.note("crm", "c-1", T0)  # no cool-down there: nothing kept
    assert cooldown.allows("crm", "c-1", T0 + 1) and cooldown.allows("other", "c-1", T0 + 1)
    assert len(cooldown) == 1


def test_a_cooldown_forgets_pairs_whose_period_has_passed():
    cooldown = Cooldown(config(cooldowns={"slack": 1_000}))
    for number in range(100):
        cooldown.note("slack", f"c-{number}", T0 + number * 100)
    assert len(cooldown) == 10  # the last second's


@given(
    st.lists(st.tuples(st.sampled_from(["slack", "crm"]), st.integers(0, 20), st.integers(0, 5_000)), max_size=200),
    st.integers(1, 8),
)
def test_a_cooldown_holds_back_only_what_its_period_covers_and_stays_in_its_bound(steps, capacity):
    """Against a model that never forgets: with room for every pair the decisions are the
    model's; with less, an alert is still held back only within its period after the last one
    let through (a forgotten pair may alert early, never late)."""
    periods = {"slack": 3_000, "crm": 10_000}
    roomy, tight = Cooldown(config(cooldowns=periods), 42), Cooldown(config(cooldowns=periods), capacity)
    model: dict[tuple[str, str], int] = {}  # the roomy one's sends
    sent: dict[tuple[str, str], int] = {}  # the tight one's sends
    now = T0
    for destination, contact, elapsed in steps:
        now += elapsed
        pair = (destination, f"c-{contact}")
        expected = pair not in model or now - model[pair] >= periods[destination]
        assert roomy.allows(*pair, now) == expected
        if expected:
            roomy.note(*pair, now)
            model[pair] = now
        if tight.allows(*pair, now):
            tight.note(*pair, now)
            sent[pair] = now
        else:
            assert now - sent[pair] < periods[destination]
        assert len(tight) <= capacity


def test_a_rate_limit_lets_a_second_s_worth_go_then_one_per_interval():
    limit = RateLimit(config({"slack": 1.0, "crm": 10.0, "free": None}))
    assert limit.wait_ms("slack", T0) == 0
    assert limit.wait_ms("slack", T0) == 1_000
    assert limit.wait_ms("slack", T0 + 400) == 600
    assert limit.wait_ms("slack", T0 + 1_000) == 0
    assert [limit.wait_ms("crm", T0) for _ in range(11)] == [0] * 10 + [100]
    assert all(limit.wait_ms("free", T0) == 0 for _ in range(1_000))


def test_a_pause_holds_a_destination_until_its_retry_after():
    limit = RateLimit(config({"slack": 1.0, "free": None}))
    limit.pause("free", T0 + 30_000)
    assert limit.wait_ms("free", T0) == 30_000
    assert limit.wait_ms("free", T0 + 30_000) == 0
    limit.pause("slack", T0 + 5_000)
    limit.pause("slack", T0 + 1_000)  # an earlier Retry-After does not shorten it
    assert limit.wait_ms("slack", T0 + 4_000) == 1_000
    limit.pause("unknown", T0 + 5_000)  # not a destination: nothing kept
    assert limit.paused_until_ms.keys() == {"free", "slack"}


def test_a_clock_that_steps_back_adds_no_tokens():
    limit = RateLimit(config({"slack": 1.0}))
    assert limit.wait_ms("slack", T0 + 10_000) == 0
    assert limit.wait_ms("slack", T0) > 0
    assert limit.wait_ms("slack", T0 + 10_000) > 0


@given(st.floats(0.5, 50), st.lists(st.integers(0, 700), min_size=1, max_size=300))
def test_no_window_carries_more_than_the_burst_and_the_rate(rate, gaps):
    limit, now, sent = RateLimit(config({"d": rate})), T0, []
    for gap in gaps:
        now += gap
        if limit.wait_ms("d", now) == 0:
            sent.append(now)
    burst = max(1.0, rate)
    for start in sent:
        for window in (0, 1_000, 10_000):
            inside = sum(1 for at in sent if start <= at <= start + window)
            assert inside <= burst + rate * window / 1000 + 1e-9
