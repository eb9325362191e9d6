"""The three throttles users ask of an alerting tool, as pure decisions with the time passed
in (the sender owns the clock):

- `too_old`: an alert older than the configured age is not news. A replay of history (a new
  app id re-scoring the input topic from the start, or a notifier that was down for a day)
  then pages nobody; the alert counts as handled, not as failed.
- `Cooldown`: after an alert about a contact (or account), a destination gets nothing more
  about it for a while, so a flapping contact does not fill a channel.
- `RateLimit`: a token bucket per destination (Slack allows about one message a second per
  incoming webhook), which a receiver's 429 + Retry-After can also pause.

Each keeps bounded memory, stated on the class, and says what happens at the bound."""

from __future__ import annotations

import math
from collections import OrderedDict

from leadpulse.notify.alerts import Alert
from leadpulse.notify.config import NotifyConfig

DEFAULT_COOLDOWN_PAIRS = 100_000


def too_old(alert: Alert, now_ms: int, max_age_ms: int) -> bool:
    """Older than `max_age_ms` at `now_ms`. A nurture record is news for its whole period, so
    its age counts from its period's end; every other alert's from its occurred_at."""
    reference = alert.occurred_ms if alert.current_until_ms is None else alert.current_until_ms
    return now_ms - reference > max_age_ms


class Cooldown:
    """When each (destination, key) was last alerted, to keep quiet for the destination's
    `cooldown_ms` after it (0: no cool-down, nothing kept).

    Bound: at most `capacity` pairs (default 100,000: some 30 MB with typical ids, 80 MB
    with 256-character ids). Pairs whose period has passed are dropped as new ones come; at
    the bound the pair alerted longest ago is forgotten, and could alert again before its
    period ends: a rare early repeat rather than unbounded memory. The state lives in memory
    only: after a restart each pair may alert once more."""

    def __init__(self, config: NotifyConfig, capacity: int = DEFAULT_COOLDOWN_PAIRS) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        destinations = config.destinations.values()
        self.periods = {d.name: d.cooldown_ms for d in destinations if d.cooldown_ms > 0}
        self.capacity = capacity
        self.last: OrderedDict[tuple[str, str], int] = OrderedDict()  # least recently alerted first

    def allows(self, destination: str, key: str, now_ms: int) -> bool:
        """Whether an alert about `key` may go to `destination` now. Asked once per alert,
        before its first attempt (retries of an allowed alert are not asked again)."""
        period = self.periods.get(destination, 0)
        last = self.last.get((destination, key))
        return period == 0 or last is None or now_ms - last >= period

    def note(self, destination: str, key: str, now_ms: int) -> None:
        """An alert about `key` is on its way to `destination`: the period starts now."""
        if destination not in self.periods:
            return
        pair = (destination, key)
        self.last[pair] = now_ms
        self.last.move_to_end(pair)
        self._forget(now_ms)

    def __len__(self) -> int:
        return len(self.last)

    def _forget(self, now_ms: int) -> None:
        while self.last:
            (destination, _), at = next(iter(self.last.items()))
            if len(self.last) <= self.capacity and now_ms - at < self.periods[destination]:
                return
            self.last.popitem(last=False)


class RateLimit:
    """A token bucket per destination that has a `rate_per_s` (None: unlimited): up to one
    second's worth of messages (at least one) go at once, then one per 1/rate seconds.
    Bound: one bucket per configured destination, fixed at start."""

    def __init__(self, config: NotifyConfig) -> None:
        destinations = config.destinations.values()
        self.rates = {d.name: d.rate_per_s for d in destinations if d.rate_per_s is not None}
        self.burst = {name: max(1.0, rate) for name, rate in self.rates.items()}
        self.tokens = dict(self.burst)
        self.updated_ms: dict[str, int | None] = dict.fromkeys(self.rates)
        self.paused_until_ms: dict[str, int] = {}
        self.names = frozenset(config.destinations)

    def wait_ms(self, destination: str, now_ms: int) -> int:
        """0 when a message may go now (and then it takes its token); else how long to wait
        before asking again (nothing taken)."""
        paused = self.paused_until_ms.get(destination, 0) - now_ms
        if paused > 0:
            return paused
        rate = self.rates.get(destination)
        if rate is None:
            return 0
        self._refill(destination, rate, now_ms)
        if self.tokens[destination] >= 1.0:
            self.tokens[destination] -= 1.0
            return 0
        return max(1, math.ceil((1.0 - self.tokens[destination]) * 1000 / rate))

    def pause(self, destination: str, until_ms: int) -> None:
        """Nothing goes to `destination` before `until_ms` (a 429's Retry-After). Only
        configured destinations are kept: the bound stays one entry per destination."""
        if destination in self.names:
            self.paused_until_ms[destination] = max(until_ms, self.paused_until_ms.get(destination, until_ms))

    def _refill(self, destination: str, rate: float, now_ms: int) -> None:
        updated = self.updated_ms[destination]
        if updated is not None and now_ms > updated:
            self.tokens[destination] = min(
                self.burst[destination], self.tokens[destination] + (now_ms - updated) * rate / 1000
            )
        if updated is None or now_ms > updated:
            self.updated_ms[destination] = now_ms  # a clock that steps back adds nothing
