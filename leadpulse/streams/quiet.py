"""A broker outage is quiet and bounded.

Without this, every aiokafka loop retries on its own clock while the broker is down: the
fetcher and the group-coordinator lookup every 100 ms (`retry_backoff_ms`), the producer's
sender after each failed request, and the metadata synchroniser whenever any of them asks
for fresh metadata. None of them backs off, and aiokafka 0.14 has no reconnect backoff
setting to give them (`reconnect_backoff_ms` is the Java client's; aiokafka's
`retry_backoff_ms` is a fixed sleep in some loops, and Faust 0.15 passes neither). Each try
logs one or two ERROR lines.

Two parts, both safe to install in any process:

- `BrokerBackoff` / `install_reconnect_backoff(client)`: every new connection an aiokafka
  client opens to a broker goes through `AIOKafkaClient._get_conn`; the wrapper waits
  until the broker's next allowed attempt before trying, doubling the wait (with jitter)
  after each failure up to a cap, and resets on success, as the Java client's
  `reconnect.backoff.ms`/`reconnect.backoff.max.ms`. Waiting (rather than failing fast)
  also slows the loops that have no sleep of their own. The state is per broker address
  and shared by all clients of the process (the consumer's runs in its own thread). It
  logs that the broker is unreachable once, then once per interval with how long, and
  once when it is back. `QuietConsumerThread` and `QuietProducer` install it on the
  clients Faust creates.
- A broker that refuses the client's credentials (SASL authentication failed, a TLS
  handshake failing on a certificate) is not unreachable: aiokafka logs it as one more
  "Unable connect" and retries forever, so a password rotated at run time looked like an
  outage. The wrapper sees the connection's own error and the backoff records a refusal
  instead: one ERROR line naming it, `problem()` (what /health reports) says so, and with
  `exit_on_refusal` the process exits with REFUSED_EXIT_CODE once the refusal has lasted its
  grace period: the credentials are read at start, so only a restart (with the new secret)
  can end it. An operation the broker denies (a revoked ACL) ends such a process at once
  (`exit_if_denied`).
- `LogThrottle`: a filter on each root handler that lets the first WARNING/ERROR of a kind
  (logger, level, message template) through, suppresses its repeats for an interval, then
  writes one summary line for the interval ("broker 127.0.0.1:9092 unreachable for 42 s:
  1,234 similar messages from aiokafka suppressed in the last 30 s; last: ..."). Faust
  replaces the root handlers when the worker starts, after the app is created, so the
  transport classes attach it when they create their Kafka clients (after Faust's logging
  set-up, before any connection), and `install_log_throttle(app)` adds a one-second app
  timer that attaches it to handlers added later and writes the summaries that are due
  when nothing else is logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import ssl
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import aiokafka.client
from aiokafka.client import ConnectionGroup
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedSaslMechanismError,
)
from faust.transport.drivers import aiokafka as aiokafka_driver

# Not the module's name: mode gives the module logger of every Service subclass (the classes
# below) a NullHandler, and a process without logging set up (the collector) then showed none
# of these lines, where Python's last-resort handler writes them to stderr.
log = logging.getLogger("leadpulse.brokers")

INITIAL_BACKOFF_S = 0.1  # first wait after a failed connection attempt
MAX_BACKOFF_S = 1.0  # cap (as the Java client's reconnect.backoff.max.ms): a returning broker waits <= 1.2 s for us
JITTER = 0.2  # each wait is +-20 %, so that clients do not retry in step
REPORT_INTERVAL_S = 30.0  # "broker unreachable for ..." and throttle summaries, once per this
# An outage counts as current (for problem(), i.e. /health) while attempts keep failing: a broker
# no client asks for any more (its partitions moved to others) is not the worker's problem.
CURRENT_S = 5.0  # > MAX_BACKOFF_S with jitter, and a consumer heartbeats every second
REFUSED_EXIT_CODE = 77  # EX_NOPERM: the broker refuses our credentials
# What a broker answers to credentials it does not accept (SASL's refusals), and a TLS handshake
# that fails on a certificate (the broker's, which our CA file no longer vouches for, say).
REFUSALS: tuple[type[BaseException], ...] = (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    IllegalSaslStateError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
    ssl.SSLError,
)
# What a broker answers to an operation the client's user may no longer perform (a revoked ACL).
DENIALS: tuple[type[BaseException], ...] = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)

QUIET_ATTR = "leadpulse_quiet"  # on a record: never throttled (our own rate-limited lines)
FLUSH_ATTR = "leadpulse_flush"  # on a record: write every pending summary first (the outage is over)

Clock = Callable[[], float]


@dataclass
class _Outage:
    since: float
    failures: int = 0  # consecutive failed windows: the next wait is INITIAL * 2**failures
    attempts: int = 0
    next_at: float = 0.0
    last_failed_at: float = 0.0
    reported_at: float = 0.0
    over: bool = False
    refusal: str | None = None  # the last attempt's error, when the broker refused the credentials
    refused_since: float | None = None  # since when every attempt was refused


class BrokerBackoff:
    """Connection attempts per broker address: exponential backoff with a cap, and the
    log lines that say the broker is unreachable (once per interval) and back. Thread-safe."""

    def __init__(
        self,
        *,
        initial_s: float = INITIAL_BACKOFF_S,
        max_s: float = MAX_BACKOFF_S,
        jitter: float = JITTER,
        report_interval_s: float = REPORT_INTERVAL_S,
        clock: Clock = time.monotonic,
        rand: Callable[[], float] = random.random,
        logger: logging.Logger = log,
    ) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.jitter = jitter
        self.report_interval_s = report_interval_s
        self.clock = clock
        self.rand = rand
        self.log = logger
        self.attempts_total = 0
        self.refusal_grace_s: float | None = None  # see exit_on_refusal
        self.exit: Callable[[int], Any] = _exit_now
        self._exit_timer: threading.Timer | None = None
        self._outages: dict[str, _Outage] = {}
        self._lock = threading.Lock()

    def wait_s(self, address: str) -> float:
        """How long to wait before the next connection attempt to `address`."""
        with self._lock:
            outage = self._outages.get(address)
            return 0.0 if outage is None else max(0.0, outage.next_at - self.clock())

    def failed(self, address: str, started: float, refusal: BaseException | None = None) -> None:
        """A connection attempt that began at `started` (clock time) failed; `refusal`: the
        broker answered, refusing the credentials (one of REFUSALS)."""
        now = self.clock()
        report: tuple[Any, ...] | None = None
        with self._lock:
            self.attempts_total += 1
            outage = self._outages.get(address)
            if refusal is not None:
                if outage is None:
                    outage = self._outages[address] = _Outage(since=started, reported_at=now)
                if outage.refused_since is None:
                    outage.refused_since = now
                    report = self._refusal_report(address, refusal)
                    self._arm_exit()
                outage.refusal = _describe_error(refusal)
            else:
                if outage is None:
                    outage = self._outages[address] = _Outage(since=started, reported_at=now)
                    report = (
                        "broker %s unreachable: reconnecting with exponential backoff (%.1f s doubling up to %.0f s); "
                        "repeated client errors are summarised every %.0f s",
                        address,
                        self.initial_s,
                        self.max_s,
                        self.report_interval_s,
                    )
                outage.refusal = outage.refused_since = None  # a network problem (again)
            outage.attempts += 1
            # Attempts that were already under way when another one failed share its wait.
            if started >= outage.last_failed_at:
                base = min(self.max_s, self.initial_s * 2.0 ** min(outage.failures, 60))  # 2.0**1024 overflows
                outage.failures += 1
                outage.next_at = now + base * (1.0 + self.jitter * (2.0 * self.rand() - 1.0))
            outage.last_failed_at = now
            if report is None and now - outage.reported_at >= self.report_interval_s:
                outage.reported_at = now
                report = (
                    "broker %s %s for %.0f s (%d connection attempts, next in %.1f s)",
                    address,
                    "unreachable" if outage.refusal is None else f"refusing the credentials ({outage.refusal})",
                    now - outage.since,
                    outage.attempts,
                    max(0.0, outage.next_at - now),
                )
        if report is not None:
            level = logging.WARNING if refusal is None else logging.ERROR
            self.log.log(level, *report, extra={QUIET_ATTR: True})

    def _refusal_report(self, address: str, refusal: BaseException) -> tuple[Any, ...]:
        if self.refusal_grace_s is None:
            then = "retrying with backoff"
        else:
            then = f"exiting with code {REFUSED_EXIT_CODE} in {self.refusal_grace_s:.0f} s unless it accepts them again"
        return (
            "broker %s refused the credentials: %s; they are read at start, so restart with valid ones (%s)",
            address,
            _describe_error(refusal),
            then,
        )

    def exit_on_refusal(self, grace_s: float) -> None:
        """From now on, a refusal that lasts `grace_s` (no accepted connection to that broker
        meanwhile) ends the process with REFUSED_EXIT_CODE, so that an orchestrator restarts
        it with fresh secrets. Exiting hard is safe as after a crash (streams/deadline.py):
        only delivered batches have committed offsets."""
        self.refusal_grace_s = grace_s

    def _arm_exit(self) -> None:
        """Called with the lock held when a refusal begins."""
        if self.refusal_grace_s is None or self._exit_timer is not None:
            return
        self._exit_timer = threading.Timer(self.refusal_grace_s, self._exit_if_still_refused)
        self._exit_timer.daemon = True
        self._exit_timer.start()

    def _exit_if_still_refused(self) -> None:
        assert self.refusal_grace_s is not None
        with self._lock:
            self._exit_timer = None
            now = self.clock()
            refused = [
                (outage.refused_since, address, outage.refusal)
                for address, outage in self._outages.items()
                if outage.refused_since is not None and not outage.over
            ]
            if not refused:
                return
            since, address, error = min(refused)
            left = since + self.refusal_grace_s - now
            if left > 0:  # this refusal began after the one the timer was armed for ended
                self._exit_timer = threading.Timer(left, self._exit_if_still_refused)
                self._exit_timer.daemon = True
                self._exit_timer.start()
                return
        self.log.error(
            "exiting with code %d: broker %s has refused the credentials for %.0f s (%s)",
            REFUSED_EXIT_CODE,
            address,
            now - since,
            error,
            extra={QUIET_ATTR: True},
        )
        self.exit(REFUSED_EXIT_CODE)

    def succeeded(self, address: str) -> None:
        """A connection to `address` was opened: the outage (if any) is over."""
        with self._lock:
            outage = self._outages.get(address)
            if outage is None or outage.over:
                return
            outage.over = True
            self.attempts_total += 1
            down_s = self.clock() - outage.since
        # Logged before the outage is forgotten: the summaries this line flushes still name it.
        self.log.info(
            "broker %s %s after %.0f s (%d connection attempts)",
            address,
            "reachable again" if outage.refusal is None else "accepts the credentials again",
            down_s,
            outage.attempts + 1,
            extra={QUIET_ATTR: True, FLUSH_ATTR: True},
        )
        with self._lock:
            if self._outages.get(address) is outage:
                del self._outages[address]

    def status(self) -> str | None:
        """'broker host:port unreachable for 42 s' while an outage lasts, else None."""
        with self._lock:
            if not self._outages:
                return None
            now = self.clock()
            address, outage = min(self._outages.items(), key=lambda item: item[1].since)
            if outage.over:
                return f"broker {address} was unreachable for {now - outage.since:.0f} s"
            return _outage_text(address, outage, now)

    def problem(self) -> str | None:
        """What stops the clients now, for readiness: a broker refusing the credentials (any
        such refusal first), else one that the last attempts could not reach; None when every
        broker asked for lately answered."""
        with self._lock:
            now = self.clock()
            current = [
                (outage.refusal is None, outage.since, address, outage)
                for address, outage in self._outages.items()
                if not outage.over and now - outage.last_failed_at <= CURRENT_S
            ]
            if not current:
                return None
            _, _, address, outage = min(current)
            return _outage_text(address, outage, now)


def _exit_now(code: int) -> None:
    """Write what is logged, then end the process at once (from any thread)."""
    logging.shutdown()
    os._exit(code)


def _outage_text(address: str, outage: _Outage, now: float) -> str:
    if outage.refusal is not None and outage.refused_since is not None:
        return f"broker {address} refuses the credentials ({outage.refusal}) for {now - outage.refused_since:.0f} s"
    return f"broker {address} unreachable for {now - outage.since:.0f} s"


def _describe_error(error: BaseException) -> str:
    """The error's class and message, once: aiokafka's messages often start with the class."""
    text = str(error).strip()[:200]
    name = type(error).__name__
    return text if name in text else f"{name}: {text}" if text else name


BROKERS = BrokerBackoff()  # the process's brokers, shared by every client (and the throttle)


def exit_if_denied(error: BaseException, backoff: BrokerBackoff = BROKERS) -> None:
    """In a process that exits on refusals (`exit_on_refusal`): if `error` (or its cause) is
    the broker denying an operation, write one ERROR line naming it and exit with
    REFUSED_EXIT_CODE now. Left to Faust, a revoked ACL ended the worker with up to five
    tracebacks and exit code 1; restarted, the worker's start-up checks name the missing ACL.
    Nothing to wait for: unlike a refused password, no retry succeeds until someone grants it."""
    if backoff.refusal_grace_s is None:
        return
    denial = _denial(error)
    if denial is None:
        return
    backoff.log.error(
        "exiting with code %d: the broker denied an operation: %s (was an ACL of this user revoked? "
        "`leadpulse topics commands` lists the ones the worker needs)",
        REFUSED_EXIT_CODE,
        _describe_error(denial),
        extra={QUIET_ATTR: True},
    )
    backoff.exit(REFUSED_EXIT_CODE)


def _denial(error: BaseException | None) -> BaseException | None:
    seen = 0
    while error is not None and seen < 10:  # the cause chain (DeliveryFailed from TopicAuthorizationFailedError)
        if isinstance(error, DENIALS):
            return error
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


# The errors of the connection attempts the current task makes (see _noting_errors)
_CONNECT_ERRORS: ContextVar[list[BaseException] | None] = ContextVar("leadpulse_connect_errors", default=None)


def _noting_errors(create_conn: Callable[..., Any]) -> Callable[..., Any]:
    """aiokafka's `create_conn`, noting its error for the task that awaits it: `_get_conn`
    logs and swallows it, and only its type tells a refusal from a network error."""

    async def create_conn_noting_errors(*args: Any, **kwargs: Any) -> Any:
        try:
            return await create_conn(*args, **kwargs)
        except BaseException as error:
            noted = _CONNECT_ERRORS.get()
            if noted is not None:
                noted.append(error)
            raise

    create_conn_noting_errors.leadpulse_noting = True  # type: ignore[attr-defined]
    return create_conn_noting_errors


def install_reconnect_backoff(client: Any, backoff: BrokerBackoff = BROKERS) -> None:
    """Make an `aiokafka.AIOKafkaClient` wait for `backoff` before each new connection."""
    if getattr(client, "_leadpulse_backoff", None) is not None:
        return
    if not getattr(aiokafka.client.create_conn, "leadpulse_noting", False):
        aiokafka.client.create_conn = _noting_errors(aiokafka.client.create_conn)
    get_conn = client._get_conn
    conns = client._conns

    async def backoff_get_conn(node_id: Any, **kwargs: Any) -> Any:
        conn = conns.get((node_id, kwargs.get("group", ConnectionGroup.DEFAULT)))
        if conn is not None and conn.connected():
            return conn  # the common case: an open connection, nothing to wait for
        address = _address(client, node_id)
        wait = backoff.wait_s(address)
        if wait > 0:
            await asyncio.sleep(wait)
        started = backoff.clock()
        errors: list[BaseException] = []
        token = _CONNECT_ERRORS.set(errors)
        try:
            conn = await get_conn(node_id, **kwargs)
        finally:
            _CONNECT_ERRORS.reset(token)
        if conn is None:
            refusal = errors[-1] if errors and isinstance(errors[-1], REFUSALS) else None
            backoff.failed(address, started, refusal)
        else:
            backoff.succeeded(address)
        return conn

    client._get_conn = backoff_get_conn
    client._leadpulse_backoff = backoff


def _address(client: Any, node_id: Any) -> str:
    broker = client.cluster.broker_metadata(node_id) if node_id != "bootstrap" else None
    if broker is None:
        return f"node {node_id}"
    return f"{broker.host}:{broker.port}"


class QuietConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """Faust's consumer thread whose aiokafka client backs off (see the module docstring)."""

    def _create_consumer(self, loop: asyncio.AbstractEventLoop) -> Any:
        consumer = super()._create_consumer(loop)
        install_reconnect_backoff(consumer._client)
        attach_log_throttle()
        return consumer

    async def crash(self, exc: BaseException) -> None:
        """A denial the consumer thread meets first (the group's offset commit, once its ACL
        is revoked) exits as the app's crash does: one line, REFUSED_EXIT_CODE. Left to Faust,
        the thread's crash stopped the worker with code 1, past `App.crash`."""
        exit_if_denied(exc)
        await super().crash(exc)


class QuietProducer(aiokafka_driver.Producer):
    """Faust's producer whose aiokafka client backs off (see the module docstring)."""

    def _new_producer(self, transactional_id: str | None = None) -> Any:
        producer = super()._new_producer(transactional_id)
        install_reconnect_backoff(producer.client)
        attach_log_throttle()
        return producer


# --- the log throttle ---------------------------------------------------------------------

_NUMBERS = re.compile(r"\d+")
_LAST_CHARS = 300


@dataclass
class _Window:
    started: float
    suppressed: int = 0
    last: str = ""


class LogThrottle(logging.Filter):
    """On one handler: the first WARNING+ record of a kind passes, its repeats within
    `interval_s` are counted instead, and one summary per interval is written to the
    handler. A kind is (logger, level, message template); digits in the template are
    ignored, for loggers that format before logging."""

    def __init__(
        self,
        handler: logging.Handler,
        *,
        interval_s: float = REPORT_INTERVAL_S,
        min_level: int = logging.WARNING,
        clock: Clock = time.monotonic,
        status: Callable[[], str | None] | None = BROKERS.status,
        max_kinds: int = 1_000,
    ) -> None:
        super().__init__()
        self.handler = handler
        self.interval_s = interval_s
        self.min_level = min_level
        self.clock = clock
        self.status = status
        self.max_kinds = max_kinds
        self.suppressed_total = 0
        self._windows: dict[tuple[str, int, str], _Window] = {}
        self._next_due = float("inf")
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, QUIET_ATTR, False):
            if getattr(record, FLUSH_ATTR, False):
                self.flush(force=True)
            return True
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and BROKERS.refusal_grace_s is not None and _denial(error) is not None:
            # Faust logs a denied commit with its traceback before it crashes: the exit's one
            # line comes instead, now (exit_if_denied), as it would a moment later.
            exit_if_denied(error)
            return False
        now = self.clock()
        if record.levelno < self.min_level:
            if now >= self._next_due:
                self.flush()
            return True
        kind = (record.name, record.levelno, _template(record))
        with self._lock:
            due = self._take_due(now, force=False) if now >= self._next_due else []
            window = self._windows.get(kind)
            if window is None:
                passes = True
                if len(self._windows) < self.max_kinds:
                    self._windows[kind] = _Window(started=now)
                    self._next_due = min(self._next_due, now + self.interval_s)
            else:
                passes = False
                window.suppressed += 1
                self.suppressed_total += 1
                window.last = _last(record)
        self._emit(due)
        return passes

    def flush(self, *, force: bool = False) -> None:
        """Write the summaries of windows that are over (all of them if `force`)."""
        with self._lock:
            due = self._take_due(self.clock(), force=force)
        self._emit(due)

    def _take_due(self, now: float, *, force: bool) -> list[logging.LogRecord]:
        summaries = []
        next_due = float("inf")
        for kind, window in list(self._windows.items()):
            if force or now >= window.started + self.interval_s:
                if window.suppressed:
                    summaries.append(self._summary(kind, window, now))
                    self._windows[kind] = _Window(started=now)  # repeats go on: a new window
                    next_due = min(next_due, now + self.interval_s)
                else:
                    del self._windows[kind]  # quiet for a whole interval: the next one passes
            else:
                next_due = min(next_due, window.started + self.interval_s)
        self._next_due = next_due
        return summaries

    def _summary(self, kind: tuple[str, int, str], window: _Window, now: float) -> logging.LogRecord:
        name, level, _ = kind
        status = self.status() if self.status is not None else None
        record = logging.LogRecord(
            name=__name__,
            level=level,
            pathname=__file__,
            lineno=0,
            msg="%s%s similar messages from %s suppressed in the last %.0f s; last: %s",
            args=(f"{status}: " if status else "", f"{window.suppressed:,}", name, now - window.started, window.last),
            exc_info=None,
        )
        setattr(record, QUIET_ATTR, True)
        return record

    def _emit(self, summaries: list[logging.LogRecord]) -> None:
        for summary in summaries:
            self.handler.handle(summary)


def _template(record: logging.LogRecord) -> str:
    return _NUMBERS.sub("#", str(record.msg)[:200])


def _last(record: logging.LogRecord) -> str:
    try:
        text = record.getMessage()
    except Exception:  # a record whose arguments do not fit its template
        text = str(record.msg)
    return text if len(text) <= _LAST_CHARS else text[:_LAST_CHARS] + "..."


def attach_log_throttle(logger: logging.Logger | None = None, **options: Any) -> list[LogThrottle]:
    """A `LogThrottle` on every handler of `logger` (the root logger) that has none yet;
    returns the throttles of all its handlers. Safe to call again after handlers change."""
    target = logger if logger is not None else logging.getLogger()
    throttles = []
    for handler in list(target.handlers):
        existing = [f for f in handler.filters if isinstance(f, LogThrottle)]
        if existing:
            throttles.extend(existing)
            continue
        throttle = LogThrottle(handler, **options)
        handler.addFilter(throttle)
        throttles.append(throttle)
    return throttles


def install_log_throttle(app: Any, *, interval_s: float = REPORT_INTERVAL_S) -> None:
    """Throttle a worker's log from a one-second app timer: it attaches the throttle to the
    root handlers (Faust sets them up when the worker starts, after the app is created) and
    writes the summaries that are due when nothing else is logged. Nothing is attached
    before the app runs, so an app built by a test leaves the test's log handlers alone."""

    async def quiet_log() -> None:
        for throttle in attach_log_throttle(interval_s=interval_s):
            throttle.flush()

    app.timer(1.0, name="leadpulse.quiet_log")(quiet_log)
