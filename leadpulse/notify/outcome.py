"""What one delivery attempt's answer means, and when to try again: pure (no clock, no
randomness of its own, no I/O), so that every decision of the delivery engine is a function
of the answer, the attempt number and the time passed in.

An answer is one of three outcomes: `Delivered` (any 2xx), `Never` (a status saying the
request can never succeed as sent: 400, 401, 403, 404, 410 — retrying would only repeat the
refusal, so the alert is dead-lettered at once and can be re-driven once the receiver is
fixed) or `Retry` (everything else: 5xx, 429, 408, other statuses, a timeout, a refused or
dropped connection). A `Retry` may carry the receiver's own `Retry-After` (429 and 503 send
it: Slack's rate limit does), which replaces the computed backoff, within bounds.

The backoff is exponential with equal jitter: attempt n waits between half and all of
min(cap, base·2^(n-1)), so that many alerts failing together (one receiver down) do not come
back together, while no wait is ever shorter than half its step (a receiver that is down
is not hammered)."""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime

NEVER_STATUSES = frozenset({400, 401, 403, 404, 410})
"""Answers that mean "never", whatever the time: a malformed request, credentials or a
signing secret the receiver refuses, an endpoint that does not exist or is gone."""
BASE_BACKOFF_MS = 1_000
MAX_BACKOFF_MS = 5 * 60_000
"""The longest computed wait between two attempts: a receiver back after an outage is
reached again within this (docs/notify.md, recovery after an outage)."""
MAX_RETRY_AFTER_MS = 60 * 60_000
"""A receiver's Retry-After is followed up to an hour; a longer one is taken as an hour."""


@dataclass(frozen=True)
class Delivered:
    status: int


@dataclass(frozen=True)
class Retry:
    reason: str  # "HTTP 503", "timeout after 10 s", "connection refused"...
    after_ms: int | None = None  # the receiver's Retry-After, bounded; None: the backoff decides


@dataclass(frozen=True)
class Never:
    reason: str


Outcome = Delivered | Retry | Never


def of_status(status: int, retry_after: str | None, now_ms: int) -> Outcome:
    """The outcome of an HTTP answer with this status (and its Retry-After header, if any)."""
    if 200 <= status < 300:
        return Delivered(status)
    if status in NEVER_STATUSES:
        return Never(f"HTTP {status}")
    return Retry(f"HTTP {status}", retry_after_ms(retry_after, now_ms))


def of_error(error: BaseException, timeout_s: float) -> Retry:
    """A request that got no complete answer: always worth another attempt (the receiver may
    have taken it: at-least-once, and the receiver deduplicates on webhook-id)."""
    if isinstance(error, TimeoutError):
        return Retry(f"timeout after {timeout_s:g} s")
    name = type(error).__name__
    detail = str(error).splitlines()[0][:200] if str(error) else ""
    return Retry(f"{name}: {detail}" if detail else name)


def retry_after_ms(value: str | None, now_ms: int) -> int | None:
    """Retry-After as milliseconds from now: delta-seconds ("30") or an HTTP date; None when
    absent or unreadable (the backoff decides then); capped at MAX_RETRY_AFTER_MS."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        wait = int(text) * 1_000
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        wait = int(when.timestamp() * 1_000) - now_ms
    return max(0, min(wait, MAX_RETRY_AFTER_MS))


def backoff_ms(attempt: int, jitter: float, *, base_ms: int = BASE_BACKOFF_MS, cap_ms: int = MAX_BACKOFF_MS) -> int:
    """The wait after failed attempt number `attempt` (1 for the first), given `jitter` drawn
    uniformly from [0, 1): between half and all of min(cap, base·2^(attempt-1))."""
    step = min(cap_ms, base_ms * (1 << min(max(attempt, 1) - 1, 40)))
    return step // 2 + int(jitter * (step - step // 2))


def next_attempt_ms(
    outcome: Retry, attempt: int, jitter: float, *, now_ms: int, deadline_ms: int, cap_ms: int
) -> int | None:
    """When to try again after `outcome`, or None when that would be past the destination's
    retry window (`deadline_ms`): the alert is dead-lettered then, with `outcome` as the reason."""
    wait = outcome.after_ms if outcome.after_ms is not None else backoff_ms(attempt, jitter, cap_ms=cap_ms)
    at = now_ms + wait
    return at if at <= deadline_ms else None
