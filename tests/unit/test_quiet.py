"""A broker outage is quiet and bounded: the log throttle and the reconnect backoff, on a
fake clock (no sleeps, no broker)."""

import asyncio
import logging
import sys
import threading
from types import SimpleNamespace

import aiokafka.client
import pytest
from aiokafka.errors import SaslAuthenticationFailed, TopicAuthorizationFailedError

from leadpulse.streams import quiet
from leadpulse.streams.quiet import BrokerBackoff, LogThrottle, attach_log_throttle, install_reconnect_backoff

INTERVAL = 30.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def setup(clock, request):
    """A logger of its own with one collecting handler and a throttle on it."""
    logger = logging.getLogger(f"test_quiet.{request.node.name}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = Collect()
    logger.addHandler(handler)
    status = SimpleNamespace(text=None)
    throttle = LogThrottle(handler, interval_s=INTERVAL, clock=clock, status=lambda: status.text)
    handler.addFilter(throttle)
    yield logger, handler, throttle, status
    logger.removeHandler(handler)


def test_the_first_message_passes_and_its_repeats_are_suppressed(setup, clock):
    logger, handler, _, _ = setup
    for attempt in range(500):
        logger.error("Unable connect to node with id %s: %s", 1, f"refused #{attempt}")
        clock.advance(0.01)
    assert handler.lines == [f"ERROR {logger.name}: Unable connect to node with id 1: refused #0"]


def test_one_summary_per_interval_with_the_count_and_the_last_message(setup, clock):
    logger, handler, throttle, _ = setup
    for attempt in range(800):  # 100 s of 8 messages a second
        logger.error("Unable connect to node with id %s: %s", 1, f"refused #{attempt}")
        clock.advance(0.125)
    summaries = handler.lines[1:]
    assert len(summaries) == 3, handler.lines  # at 30, 60 and 90 s; the last 10 s are still pending
    assert summaries[0] == (
        f"ERROR leadpulse.streams.quiet: 239 similar messages from {logger.name} suppressed in the last 30 s; "
        "last: Unable connect to node with id 1: refused #239"
    )
    assert all(" 240 similar messages" in line for line in summaries[1:])
    throttle.flush()
    assert len(handler.lines) == 4  # not due yet
    clock.advance(20)
    throttle.flush()
    assert handler.lines[-1].startswith("ERROR leadpulse.streams.quiet: 80 similar messages")
    assert throttle.suppressed_total == 799


def test_different_templates_loggers_and_levels_are_throttled_independently(setup, clock):
    logger, handler, _, _ = setup
    other = logging.getLogger(f"{logger.name}.fetcher")
    for _ in range(10):
        logger.error("Unable connect to node with id %s", 1)
        logger.error("Unable to update metadata from %s", [1])
        logger.warning("Unable connect to node with id %s", 1)
        other.error("Unable connect to node with id %s", 1)
        clock.advance(1)
    assert handler.lines == [
        f"ERROR {logger.name}: Unable connect to node with id 1",
        f"ERROR {logger.name}: Unable to update metadata from [1]",
        f"WARNING {logger.name}: Unable connect to node with id 1",
        f"ERROR {other.name}: Unable connect to node with id 1",
    ]
    clock.advance(INTERVAL)
    logger.info("something else")
    assert len(handler.lines) == 9
    assert all(" 9 similar messages" in line for line in handler.lines[4:8])
    assert handler.lines[8] == f"INFO {logger.name}: something else"


def test_digits_in_a_preformatted_message_do_not_make_it_new(setup, clock):
    logger, handler, _, _ = setup
    for offset in range(100):
        logger.warning(f"Timer commit is overlapping (interval=2.8 runtime={offset}.5)")
    assert len(handler.lines) == 1


def test_a_kind_that_stayed_quiet_for_an_interval_passes_again(setup, clock):
    logger, handler, _, _ = setup
    logger.error("Heartbeat failed")
    clock.advance(INTERVAL + 1)
    logger.error("Heartbeat failed")
    assert handler.lines == [f"ERROR {logger.name}: Heartbeat failed"] * 2


def test_info_and_debug_pass_untouched(setup, clock):
    logger, handler, _, _ = setup
    for _ in range(5):
        logger.info("Discovered coordinator %s", 1)
        logger.debug("Sending metadata request")
    assert len(handler.lines) == 10


def test_summaries_name_the_outage_and_are_flushed_when_the_broker_is_back(setup, clock):
    logger, handler, _, status = setup
    status.text = "broker 127.0.0.1:9092 unreachable for 12 s"
    for _ in range(50):
        logger.error("Failed fetch messages from %s", 1)
        clock.advance(0.1)
    assert len(handler.lines) == 1
    logger.info("broker back", extra={quiet.QUIET_ATTR: True, quiet.FLUSH_ATTR: True})
    assert handler.lines[1:] == [
        f"ERROR leadpulse.streams.quiet: broker 127.0.0.1:9092 unreachable for 12 s: 49 similar messages from "
        f"{logger.name} suppressed in the last 5 s; last: Failed fetch messages from 1",
        f"INFO {logger.name}: broker back",
    ]


def test_our_own_rate_limited_lines_are_never_throttled(setup, clock):
    logger, handler, _, _ = setup
    for _ in range(3):
        logger.warning("broker %s unreachable for %d s", "b:1", 30, extra={quiet.QUIET_ATTR: True})
    assert len(handler.lines) == 3


def test_attach_log_throttle_is_idempotent_and_finds_replaced_handlers(clock):
    logger = logging.getLogger("test_quiet.attach")
    logger.propagate = False
    first = Collect()
    logger.addHandler(first)
    try:
        assert len(attach_log_throttle(logger, clock=clock)) == 1
        assert len(attach_log_throttle(logger, clock=clock)) == 1
        assert len([f for f in first.filters if isinstance(f, LogThrottle)]) == 1
        logger.removeHandler(first)  # as Faust's logging set-up replaces the root handlers
        second = Collect()
        logger.addHandler(second)
        (throttle,) = attach_log_throttle(logger, clock=clock)
        assert throttle.handler is second
        for _ in range(3):
            logger.error("again")
        assert len(second.lines) == 1
    finally:
        logger.handlers.clear()


# --- reconnect backoff ---------------------------------------------------------------------


@pytest.fixture
def backoff_log(request):
    logger = logging.getLogger(f"test_quiet.backoff.{request.node.name}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = Collect()
    logger.addHandler(handler)
    yield logger, handler
    logger.removeHandler(handler)


def make_backoff(clock, logger, **options) -> BrokerBackoff:
    return BrokerBackoff(clock=clock, rand=lambda: 0.5, logger=logger, **options)  # rand 0.5: no jitter


def test_waits_double_up_to_the_cap_and_reset_on_success(clock, backoff_log):
    logger, _ = backoff_log
    backoff = make_backoff(clock, logger, initial_s=0.1, max_s=2.0)
    assert backoff.wait_s("b:1") == 0
    waits = []
    for _ in range(8):
        backoff.failed("b:1", clock())
        waits.append(round(backoff.wait_s("b:1"), 3))
        clock.advance(backoff.wait_s("b:1"))
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]
    backoff.succeeded("b:1")
    assert backoff.wait_s("b:1") == 0
    backoff.failed("b:1", clock())
    assert backoff.wait_s("b:1") == pytest.approx(0.1)


def test_an_outage_of_days_stays_at_the_cap(clock, backoff_log):
    logger, _ = backoff_log
    backoff = make_backoff(clock, logger, initial_s=0.1, max_s=2.0)
    for _ in range(100_000):  # more than 1,024 doublings: 2.0**1024 would overflow a float
        backoff.failed("b:1", clock())
        clock.advance(backoff.wait_s("b:1"))
    backoff.failed("b:1", clock())
    assert backoff.wait_s("b:1") == pytest.approx(2.0)


def test_jitter_spreads_the_wait(clock, backoff_log):
    logger, _ = backoff_log
    low = BrokerBackoff(clock=clock, rand=lambda: 0.0, logger=logger, initial_s=1.0, jitter=0.2)
    high = BrokerBackoff(clock=clock, rand=lambda: 0.999999, logger=logger, initial_s=1.0, jitter=0.2)
    low.failed("b:1", clock())
    high.failed("b:1", clock())
    assert low.wait_s("b:1") == pytest.approx(0.8)
    assert high.wait_s("b:1") == pytest.approx(1.2, abs=1e-5)


def test_attempts_under_way_together_share_one_wait(clock, backoff_log):
    logger, _ = backoff_log
    backoff = make_backoff(clock, logger, initial_s=0.1)
    started = clock()
    clock.advance(0.001)
    for _ in range(5):  # fetcher, coordinator, metadata, sender, ...: all began before the first failed
        backoff.failed("b:1", started)
    assert backoff.wait_s("b:1") == pytest.approx(0.1)


def test_the_outage_is_logged_once_then_once_per_interval_then_once_when_over(clock, backoff_log):
    logger, handler = backoff_log
    backoff = make_backoff(clock, logger, initial_s=0.1, max_s=2.0, report_interval_s=30)
    for _ in range(60):  # 2 minutes at the cap
        backoff.failed("127.0.0.1:9092", clock())
        clock.advance(2.0)
    assert backoff.status() == "broker 127.0.0.1:9092 unreachable for 120 s"
    backoff.succeeded("127.0.0.1:9092")
    assert backoff.status() is None
    assert handler.lines[0].startswith("WARNING " + logger.name + ": broker 127.0.0.1:9092 unreachable: reconnecting")
    assert handler.lines[1:4] == [
        f"WARNING {logger.name}: broker 127.0.0.1:9092 unreachable for {s} s ({n} connection attempts, next in 2.0 s)"
        for s, n in ((30, 16), (60, 31), (90, 46))
    ]
    assert handler.lines[4:] == [
        f"INFO {logger.name}: broker 127.0.0.1:9092 reachable again after 120 s (61 connection attempts)"
    ]
    assert backoff.attempts_total == 61


class FakeClient:
    """What install_reconnect_backoff uses of aiokafka's AIOKafkaClient."""

    def __init__(self, up_after: int) -> None:
        self._conns: dict = {}
        self.cluster = SimpleNamespace(broker_metadata=lambda node_id: SimpleNamespace(host="127.0.0.1", port=9092))
        self.calls = 0
        self.up_after = up_after

    async def _get_conn(self, node_id, *, group=0, no_hint=False):
        self.calls += 1
        if self.calls <= self.up_after:
            return None  # aiokafka has logged "Unable connect to node ..." and returns None
        conn = SimpleNamespace(connected=lambda: True)
        self._conns[(node_id, group)] = conn
        return conn


async def test_the_client_waits_before_each_new_connection(clock, backoff_log, monkeypatch):
    logger, _ = backoff_log
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(round(seconds, 3))
        clock.advance(seconds)

    monkeypatch.setattr(quiet.asyncio, "sleep", fake_sleep)
    backoff = make_backoff(clock, logger, initial_s=0.1, max_s=1.0)
    client = FakeClient(up_after=6)
    install_reconnect_backoff(client, backoff)
    install_reconnect_backoff(client, backoff)  # once only
    results = [await client._get_conn(1) for _ in range(7)]
    assert results[:6] == [None] * 6 and results[6] is not None
    assert slept == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert client.calls == 7
    assert await client._get_conn(1) is results[6]  # an open connection: no wait, no new attempt
    assert client.calls == 7 and backoff.status() is None


def test_clients_in_other_threads_share_the_backoff(clock, backoff_log):
    logger, _ = backoff_log
    backoff = make_backoff(clock, logger)
    consumer, producer = FakeClient(up_after=100), FakeClient(up_after=100)
    install_reconnect_backoff(consumer, backoff)
    install_reconnect_backoff(producer, backoff)
    assert asyncio.run(consumer._get_conn(1)) is None
    assert backoff.wait_s("127.0.0.1:9092") > 0  # the producer's next attempt waits too


# --- a broker that refuses the credentials ----------------------------------------------------


def refused() -> SaslAuthenticationFailed:
    return SaslAuthenticationFailed("Authentication failed during authentication due to invalid credentials")


def test_a_refusal_is_one_error_line_naming_it_never_unreachable(clock, backoff_log):
    logger, handler = backoff_log
    backoff = make_backoff(clock, logger, report_interval_s=30)
    for _ in range(20):
        backoff.failed("127.0.0.1:9094", clock(), refused())
        assert backoff.wait_s("127.0.0.1:9094") > 0  # refusals back off like outages
        clock.advance(1.0)
    assert handler.lines == [
        f"ERROR {logger.name}: broker 127.0.0.1:9094 refused the credentials: [Error 58] SaslAuthenticationFailed: "
        "Authentication failed during authentication due to invalid credentials; they are read at start, so restart "
        "with valid ones (retrying with backoff)"
    ]
    assert backoff.problem() == (
        "broker 127.0.0.1:9094 refuses the credentials ([Error 58] SaslAuthenticationFailed: Authentication failed "
        "during authentication due to invalid credentials) for 20 s"
    )
    backoff.succeeded("127.0.0.1:9094")
    assert handler.lines[-1] == (
        f"INFO {logger.name}: broker 127.0.0.1:9094 accepts the credentials again after 20 s (21 connection attempts)"
    )
    assert backoff.problem() is None


def test_a_refusal_is_named_before_an_unreachable_broker_and_a_network_error_ends_it(clock, backoff_log):
    logger, _ = backoff_log
    backoff = make_backoff(clock, logger)
    backoff.failed("b:1", clock())
    clock.advance(1.0)
    backoff.failed("b:2", clock(), refused())
    assert backoff.problem() is not None and backoff.problem().startswith("broker b:2 refuses the credentials")
    backoff.failed("b:2", clock())  # the broker went away: a network problem, not a refusal
    assert backoff.problem() == "broker b:1 unreachable for 1 s"


def test_an_outage_no_client_asks_about_any_more_is_not_a_current_problem(clock, backoff_log):
    logger, _ = backoff_log
    backoff = make_backoff(clock, logger)
    backoff.failed("b:1", clock())
    clock.advance(quiet.CURRENT_S)
    assert backoff.problem() == f"broker b:1 unreachable for {quiet.CURRENT_S:.0f} s"
    clock.advance(0.1)
    assert backoff.problem() is None  # its partitions moved to other brokers: nobody connects to it


def test_a_refusal_that_lasts_the_grace_period_exits_with_code_77(clock, backoff_log):
    logger, handler = backoff_log
    backoff = make_backoff(clock, logger)
    exited = threading.Event()
    codes: list[int] = []
    backoff.exit = lambda code: (codes.append(code), exited.set())
    backoff.exit_on_refusal(0.0)
    backoff.failed("b:1", clock(), refused())
    assert exited.wait(10)
    assert codes == [quiet.REFUSED_EXIT_CODE]
    assert "(exiting with code 77 in 0 s unless it accepts them again)" in handler.lines[0]
    assert handler.lines[-1].startswith(f"ERROR {logger.name}: exiting with code 77: broker b:1 has refused")


def test_credentials_accepted_again_within_the_grace_period_keep_the_process(clock, backoff_log):
    logger, _ = backoff_log
    backoff = make_backoff(clock, logger)
    codes: list[int] = []
    backoff.exit = codes.append
    backoff.exit_on_refusal(0.2)
    backoff.failed("b:1", clock(), refused())
    timer = backoff._exit_timer
    assert timer is not None
    backoff.succeeded("b:1")
    timer.join(10)
    assert codes == [] and backoff._exit_timer is None


async def test_the_client_tells_a_refusal_from_an_unreachable_broker(clock, backoff_log, monkeypatch):
    logger, _ = backoff_log
    answers = [ConnectionRefusedError(111, "Connect call failed"), refused()]

    async def create_conn(host, port, **options):
        raise answers.pop(0)

    monkeypatch.setattr(aiokafka.client, "create_conn", create_conn)
    backoff = make_backoff(clock, logger, initial_s=0.0)

    class Client(FakeClient):
        async def _get_conn(self, node_id, *, group=0, no_hint=False):
            try:  # what aiokafka's _get_conn does: log the error and answer None
                return await aiokafka.client.create_conn("127.0.0.1", 9092)
            except (OSError, SaslAuthenticationFailed):
                return None

    client = Client(up_after=0)
    install_reconnect_backoff(client, backoff)
    assert await client._get_conn(1) is None
    assert backoff.problem() == "broker 127.0.0.1:9092 unreachable for 0 s"
    assert await client._get_conn(1) is None
    assert backoff.problem().startswith("broker 127.0.0.1:9092 refuses the credentials ([Error 58]")


def test_a_denied_operation_exits_at_once_in_one_line_where_refusals_exit(clock, backoff_log):
    from aiokafka.errors import GroupAuthorizationFailedError

    from leadpulse.streams.outbox import DeliveryFailed

    logger, handler = backoff_log
    backoff = make_backoff(clock, logger)
    codes: list[int] = []
    backoff.exit = codes.append
    try:
        raise DeliveryFailed("scores[0]: denied") from TopicAuthorizationFailedError("scores")
    except DeliveryFailed as error:
        delivery = error
    quiet.exit_if_denied(delivery, backoff)
    assert codes == []  # an app a test runs in its own process: never exits
    backoff.exit_on_refusal(30.0)
    quiet.exit_if_denied(RuntimeError("not a denial"), backoff)
    assert codes == []
    quiet.exit_if_denied(delivery, backoff)
    quiet.exit_if_denied(GroupAuthorizationFailedError("leadpulse"), backoff)
    assert codes == [quiet.REFUSED_EXIT_CODE] * 2
    assert handler.lines[0] == (
        f"ERROR {logger.name}: exiting with code 77: the broker denied an operation: [Error 29] "
        "TopicAuthorizationFailedError: scores (was an ACL of this user revoked? `leadpulse topics commands` lists "
        "the ones the worker needs)"
    )


async def test_a_denial_crashing_the_consumer_thread_exits_as_the_apps_crash_does(monkeypatch):
    """The worker's group commit runs in Faust's consumer thread: a revoked group ACL can crash
    that thread before the app sees it; it must end in the same one line and exit code."""
    from aiokafka.errors import GroupAuthorizationFailedError
    from faust.transport.drivers import aiokafka as aiokafka_driver

    steps: list[str] = []

    async def faust_crash(self, exc):
        steps.append(f"faust crash {type(exc).__name__}")

    monkeypatch.setattr(aiokafka_driver.AIOKafkaConsumerThread, "crash", faust_crash)
    monkeypatch.setattr(quiet, "exit_if_denied", lambda exc: steps.append(f"checked {type(exc).__name__}"))
    thread = object.__new__(quiet.QuietConsumerThread)
    await thread.crash(GroupAuthorizationFailedError("leadpulse"))
    assert steps == ["checked GroupAuthorizationFailedError", "faust crash GroupAuthorizationFailedError"]


def test_a_denial_logged_with_its_traceback_is_the_exits_one_line_instead(monkeypatch):
    """Faust logs a denied offset commit with a traceback before crashing: in a process that
    exits on refusals, that record is dropped and the exit's one line written at once."""
    from aiokafka.errors import GroupAuthorizationFailedError

    exits: list[str] = []
    monkeypatch.setattr(quiet.BROKERS, "refusal_grace_s", 30.0)
    monkeypatch.setattr(quiet, "exit_if_denied", lambda error: exits.append(type(error).__name__))
    throttle = LogThrottle(logging.StreamHandler(), status=lambda: None)

    def record(error: Exception) -> logging.LogRecord:
        try:
            raise error
        except Exception:
            return logging.getLogger("faust").makeRecord(
                "faust", logging.ERROR, __file__, 1, "Got exception: %r", (error,), sys.exc_info()
            )

    assert throttle.filter(record(GroupAuthorizationFailedError("leadpulse"))) is False
    assert throttle.filter(record(RuntimeError("not a denial"))) is True
    assert exits == ["GroupAuthorizationFailedError"]
    monkeypatch.setattr(quiet.BROKERS, "refusal_grace_s", None)  # a test's own app: never exits
    fresh = LogThrottle(logging.StreamHandler(), status=lambda: None)
    assert fresh.filter(record(GroupAuthorizationFailedError("leadpulse"))) is True
