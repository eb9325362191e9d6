import hashlib
import os
import re
from pathlib import Path

import pytest

from leadpulse.cli.processes import LocalBroker, WorkerProcess, broker_port, free_port
from leadpulse.streams.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """One real Kafka broker (KRaft) for the whole run, stopped by pid at the end."""
    instance = LocalBroker(port=broker_port(), data_dir=tmp_path_factory.mktemp("kafka"))
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def make_settings(broker, tmp_path, request):
    """Settings isolated per test: own topics, consumer group, data folder and web port."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    name = f"{slug[:50]}-{hashlib.sha1(slug.encode()).hexdigest()[:8]}"  # unique per parametrized case

    def build(**overrides) -> Settings:
        values = {
            "broker": f"kafka://127.0.0.1:{broker.port}",
            "app_id": f"lp-{name}",
            "topic_prefix": f"{name}.",
            "input_topic": f"{name}.events",
            "partitions": 8,
            "store": os.environ.get("TEST_STORE", "rocksdb://"),  # TEST_STORE=memory:// runs the suite in memory
            "data_dir": tmp_path / "data",
            "web_port": free_port(),
            "cooling_interval_s": 0.0,
            "session_timeout_s": 10.0,
            "batch_within_s": 0.05,
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def workers(tmp_path):
    """Start workers through this fixture: every one is stopped by pid at teardown."""
    started: list[WorkerProcess] = []

    def start(settings: Settings) -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        worker.start()
        return worker

    yield start
    for worker in started:  # shown by pytest when the test failed: what each worker said it was doing
        if worker.running():
            counts = {o: worker.metric("leadpulse_events_total", f'outcome="{o}"') for o in ("scored", "dead_letter")}
            print(f"worker {worker.pid}: health {worker.health()}, events {counts}")
        worker.kill()
    if os.environ.get("SHOW_WORKER_LOGS"):
        for worker in started:
            print(Path(worker.log_path).read_text(errors="replace")[-5000:])
