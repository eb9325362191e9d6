"""The broker stops for 30 s in the middle of a stream and comes back: the worker waits
quietly (bounded reconnects, a few log lines), resumes by itself, and its result equals the
offline scorer's. A broker of its own, on a port below the ephemeral range: a client that
keeps reconnecting to an ephemeral port can connect to itself (TCP simultaneous open) and
hold the port the broker needs to come back on."""

import re
import time
from pathlib import Path

import pytest

from leadpulse.cli.processes import LocalBroker, broker_port, free_port
from leadpulse.streams.settings import Settings
from tests.integration.harness import produce, scores_reach, wait_for
from tests.integration.oracle import Oracle, traffic_lines

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_S = 30.0  # the injected fault
MAX_OUTAGE_LINES = 200
MAX_OUTAGE_BYTES = 100_000


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory):
    """One broker for this module's tests (each stops it and starts it again)."""
    instance = LocalBroker(port=broker_port(), data_dir=tmp_path_factory.mktemp("kafka-outage"))
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()  # by the pid in its data folder, whichever start it is from


@pytest.fixture
def own_broker(module_broker):
    """The module's broker, running: started again if a test before failed while it was down."""
    module_broker.start()  # at once when it runs (broker.sh says so and returns)
    return module_broker


def own_settings(broker, tmp_path: Path, name: str, partitions: int) -> Settings:
    """A worker's settings on this module's own broker (the suite's is never stopped)."""
    return Settings(
        broker=f"kafka://127.0.0.1:{broker.port}",
        app_id=f"lp-{name}",
        topic_prefix=f"{name}.",
        input_topic=f"{name}.events",
        partitions=partitions,
        data_dir=tmp_path / "data",
        web_port=free_port(),
        cooling_interval_s=0.0,
        session_timeout_s=10.0,
    )


def log_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    return data.count(b"\n"), len(data)


def test_a_30s_broker_outage_is_quiet_and_the_worker_resumes_by_itself(own_broker, workers, tmp_path):
    settings = own_settings(own_broker, tmp_path, "outage", partitions=8)
    lines = traffic_lines(20_000, 2_000, seed=31)
    oracle = Oracle(lines)
    produce(settings, lines)
    worker = workers(settings)
    assert wait_for(lambda: worker.metric("leadpulse_events_total", 'outcome="scored"') >= 1_000, 120, 0.05)

    lines_before, bytes_before = log_size(worker.log_path)  # the outage begins with the stop
    own_broker.stop()
    time.sleep(OUTAGE_S)
    assert worker.running(), "the worker exited while the broker was down"
    lines_after, bytes_after = log_size(worker.log_path)
    outage_lines, outage_bytes = lines_after - lines_before, bytes_after - bytes_before
    snapshots = worker.metric("leadpulse_outputs_total", 'kind="snapshot"')

    own_broker.start()
    back = time.monotonic()
    assert wait_for(lambda: worker.metric("leadpulse_outputs_total", 'kind="snapshot"') > snapshots, 120, 0.1)
    resumed_s = time.monotonic() - back
    scores_reach(settings, oracle.snapshots, timeout_s=300)
    complete_s = time.monotonic() - back
    assert worker.running()

    print(
        f"\noutage {OUTAGE_S:.0f} s: {outage_lines} log lines, {outage_bytes:,} bytes; first new snapshot "
        f"{resumed_s:.1f} s after the broker was back, result equal to the oracle after {complete_s:.1f} s"
    )
    assert outage_lines < MAX_OUTAGE_LINES and outage_bytes < MAX_OUTAGE_BYTES, (
        f"{outage_lines} lines, {outage_bytes} bytes logged during a {OUTAGE_S:.0f} s outage"
    )
    log = worker.log_path.read_text(errors="replace")
    address = f"127.0.0.1:{own_broker.port}"
    assert f"broker {address} unreachable: reconnecting with exponential backoff" in log
    down = re.search(rf"broker {re.escape(address)} reachable again after (\d+) s \((\d+) connection attempts\)", log)
    assert down, "the log does not say that the broker was back"
    assert int(down[1]) >= OUTAGE_S
    assert int(down[2]) < 10 * int(down[1]), "reconnects did not back off"  # ~2,500/s without backoff


HEALTH_WITHIN_S = 10.0  # an idle worker's /health names a stopped broker within this


def test_an_idle_workers_health_names_a_stopped_broker_and_recovers_when_it_is_back(own_broker, workers, tmp_path):
    settings = own_settings(own_broker, tmp_path, "idle-health", partitions=2)
    worker = workers(settings)  # ready: /health says ok; no event is ever sent
    own_broker.stop()
    stopped = time.monotonic()
    answer = wait_for(lambda: _unhealthy(worker), timeout_s=60, interval_s=0.1)
    took = time.monotonic() - stopped
    assert answer is not None, f"/health still said ok {took:.0f} s after the broker stopped"
    status, health = answer
    print(f"\n/health 503 {took:.1f} s after the broker stopped: {health['reason']}")
    assert took < HEALTH_WITHIN_S
    assert status == 503
    assert re.fullmatch(rf"broker 127\.0\.0\.1:{own_broker.port} unreachable for \d+ s", health["reason"])
    assert worker.running()

    own_broker.start()
    assert wait_for(lambda: worker.get("/health")[0] == 200, timeout_s=120, interval_s=0.2)


def _unhealthy(worker):
    status, health = worker.get("/health")
    return (status, health) if status != 200 else None
