"""Delivering one alert to one destination, until it is delivered or dead-lettered: the I/O
edge of the notify service (aiohttp), driven by the pure decisions of outcome.py and the
requests and throttles of requests.py and throttle.py.

Each (alert, destination) is a task of its own. Tasks of one destination and key form a
lane: a task starts only when the one before it in its lane has finished, so one key's
alerts reach a destination in the order they were read, and a key whose alert is being
retried holds back only that key at that destination. Another key, or another destination,
never waits for it (no head-of-line blocking). A destination's concurrent requests are
bounded (MAX_CONCURRENT_REQUESTS), held only during an attempt, never during a backoff.

A task ends with `on_settled(None)` once its destination answered 2xx, or with
`on_settled(failure)` once that failure's record is acknowledged by the broker (the
`dead_letter` callable); a cancelled task (a revoked partition, shutdown) calls neither,
so its alert stays unsettled and is read again: at-least-once."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import aiohttp

from leadpulse.notify.alerts import Alert
from leadpulse.notify.config import Destination, NotifyConfig
from leadpulse.notify.failures import Failure
from leadpulse.notify.metrics import NotifyMetrics
from leadpulse.notify.outcome import Delivered, Never, Outcome, next_attempt_ms, of_error, of_status
from leadpulse.notify.requests import OutgoingRequest, request_for
from leadpulse.notify.throttle import RateLimit

log = logging.getLogger(__name__)

MAX_CONCURRENT_REQUESTS = 16
"""Requests in progress to one destination at once."""
MAX_ANSWER_BYTES = 64 * 1024
"""Bytes of an answer's body read (and dropped): a receiver cannot make the service hold more."""

Settled = Callable[[Failure | None], None]
DeadLetter = Callable[[Failure], Awaitable[None]]
Clock = Callable[[], int]


@dataclass
class _Destination:
    config: Destination
    requests: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_CONCURRENT_REQUESTS))
    waiting: dict[int, int] = field(default_factory=dict)  # task number -> its alert's occurred_ms
    failing: str | None = None  # the last attempt's failure while no attempt since has delivered

    def note(self, outcome: Outcome) -> None:
        """One log line when the destination starts failing and one when it delivers again
        (each alert's retries are counted in the metrics, not logged)."""
        if isinstance(outcome, Delivered):
            if self.failing is not None:
                log.warning("destination %s delivers again", self.config.name)
            self.failing = None
            return
        if self.failing is None:
            log.warning("destination %s failing: %s", self.config.name, outcome.reason)
        self.failing = outcome.reason


class Deliveries:
    """Every (alert, destination) task in progress, by lane and by owner (the partition the
    alert was read from, so that a revoked partition's tasks can be cancelled together)."""

    def __init__(
        self,
        config: NotifyConfig,
        session: aiohttp.ClientSession,
        metrics: NotifyMetrics,
        dead_letter: DeadLetter,
        clock: Clock,
        *,
        max_backoff_ms: int,
        rate_limit: RateLimit,
        retry_window_ms: int | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._session = session
        self._metrics = metrics
        self._dead_letter = dead_letter
        self._clock = clock
        self._max_backoff_ms = max_backoff_ms
        self._rate_limit = rate_limit
        self._retry_window_ms = retry_window_ms  # None: each destination's own (`leadpulse notify redrive` sets one)
        self._jitter = jitter
        self._destinations = {name: _Destination(destination) for name, destination in config.destinations.items()}
        self._lanes: dict[tuple[str, str], asyncio.Task[None]] = {}  # (destination, key) -> its last task
        self._owned: dict[Hashable, set[asyncio.Task[None]]] = {}
        self._numbers = 0
        for name, destination in self._destinations.items():
            metrics.queue_depth.labels(name).set_function(partial(_depth, destination))
            metrics.oldest_pending_age.labels(name).set_function(partial(self._oldest_age_s, destination))

    def __len__(self) -> int:
        return sum(len(destination.waiting) for destination in self._destinations.values())

    def states(self) -> dict[str, dict[str, Any]]:
        """Per destination, for /health: alerts waiting, and the failure of its last attempt
        while it is failing."""
        return {
            name: {"queue_depth": len(destination.waiting), "failing": destination.failing}
            for name, destination in self._destinations.items()
        }

    def submit(self, alert: Alert, name: str, owner: Hashable, on_settled: Settled) -> None:
        """Deliver `alert` to destination `name` after the lane's earlier alerts."""
        destination = self._destinations[name]
        self._numbers += 1
        number = self._numbers
        destination.waiting[number] = alert.occurred_ms
        lane = (name, alert.key)
        before = self._lanes.get(lane)
        task = asyncio.ensure_future(self._run(destination, alert, before, on_settled))
        self._lanes[lane] = task
        owned = self._owned.setdefault(owner, set())
        owned.add(task)

        def finished(done: asyncio.Task[None]) -> None:
            destination.waiting.pop(number, None)
            owned.discard(done)
            if not owned and self._owned.get(owner) is owned:
                del self._owned[owner]
            if self._lanes.get(lane) is done:
                del self._lanes[lane]  # lanes are only as many as tasks: bounded with them
            if not done.cancelled() and done.exception() is not None:
                log.error("delivery to %s stopped: %r", name, done.exception())

        task.add_done_callback(finished)

    async def cancel(self, owner: Hashable | None = None) -> None:
        """Cancel the tasks of `owner` (None: every task) and wait until they have stopped."""
        if owner is None:
            tasks = [task for owned in self._owned.values() for task in owned]
        else:
            tasks = list(self._owned.get(owner, ()))
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _run(
        self, destination: _Destination, alert: Alert, before: asyncio.Task[None] | None, on_settled: Settled
    ) -> None:
        if before is not None:
            await asyncio.wait([before])  # finished in any way: a cancelled one is re-read by whoever reads it next
        failure = await self._deliver(destination.config, alert)
        if failure is not None:
            await self._dead_letter(failure)
            self._metrics.dead_lettered.labels(failure.destination).inc()
            log.warning(
                "alert %s to %s dead-lettered after %d attempts: %s",
                alert.id,
                failure.destination,
                failure.attempts,
                failure.reason,
            )
        on_settled(failure)

    async def _deliver(self, destination: Destination, alert: Alert) -> Failure | None:
        """Attempts until a 2xx (None), a 'never' answer or the end of the retry window (the Failure)."""
        name, metrics = destination.name, self._metrics
        first_ms = self._clock()
        window_ms = self._retry_window_ms if self._retry_window_ms is not None else destination.retry_window_ms
        deadline_ms = first_ms + window_ms
        attempt = 0
        while True:
            await self._take_rate(name)
            state = self._destinations[name]
            async with state.requests:
                attempt_ms = self._clock()
                outcome = await self._attempt(request_for(destination, alert, attempt_ms), destination.timeout_s)
            state.note(outcome)
            attempt += 1
            now = self._clock()
            if isinstance(outcome, Delivered):
                metrics.delivered.labels(name).inc()
                metrics.latency.labels(name).observe(max(0, now - alert.occurred_ms) / 1_000)
                return None
            metrics.failed.labels(name).inc()
            if isinstance(outcome, Never):
                return _failure(
                    alert, name, outcome.reason, attempts=attempt, first_ms=first_ms, last_ms=attempt_ms, now=now
                )
            if outcome.after_ms is not None:  # the receiver's own wait (Slack's 429): for all its alerts
                self._rate_limit.pause(name, now + outcome.after_ms)
            at = next_attempt_ms(
                outcome, attempt, self._jitter(), now_ms=now, deadline_ms=deadline_ms, cap_ms=self._max_backoff_ms
            )
            if at is None:
                reason = f"retry window over (last: {outcome.reason})"
                return _failure(alert, name, reason, attempts=attempt, first_ms=first_ms, last_ms=attempt_ms, now=now)
            metrics.retried.labels(name).inc()
            wait_s = (at - now) / 1_000
            log.debug("alert %s to %s: %s; attempt %d in %.1f s", alert.id, name, outcome.reason, attempt + 1, wait_s)
            await asyncio.sleep(wait_s)

    async def _take_rate(self, name: str) -> None:
        while (wait := self._rate_limit.wait_ms(name, self._clock())) > 0:
            await asyncio.sleep(wait / 1_000)

    async def _attempt(self, request: OutgoingRequest, timeout_s: float) -> Outcome:
        """One POST; the answer's status decides (its body is read, bounded, so that a
        connection closed mid-answer counts as no answer)."""
        try:
            async with self._session.post(
                request.url,
                data=request.body,
                headers=dict(request.headers),
                timeout=aiohttp.ClientTimeout(total=timeout_s),
                allow_redirects=False,  # a redirect would send the signed alert where no one configured it
            ) as response:
                read = 0
                while read < MAX_ANSWER_BYTES and (chunk := await response.content.readany()):
                    read += len(chunk)
                return of_status(response.status, response.headers.get("Retry-After"), self._clock())
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            return of_error(error, timeout_s)

    def _oldest_age_s(self, destination: _Destination) -> float:
        if not destination.waiting:
            return 0.0
        return max(0, self._clock() - min(destination.waiting.values())) / 1_000


def _depth(destination: _Destination) -> int:
    return len(destination.waiting)


def _failure(alert: Alert, name: str, reason: str, *, attempts: int, first_ms: int, last_ms: int, now: int) -> Failure:
    return Failure(alert.topic, alert.key, dict(alert.record), name, reason, attempts, first_ms, last_ms, now)
