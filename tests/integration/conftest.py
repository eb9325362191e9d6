import hashlib
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from leadpulse.cli.processes import CollectorProcess, LocalBroker, NotifyProcess, WorkerProcess, broker_port
from leadpulse.streams.settings import Settings
from tests.integration.harness import isolated_settings, wait_for
from tests.integration.postgres import PostgresServer, Unavailable
from tests.integration.receiver import Receivers

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
        return isolated_settings(broker.port, name, tmp_path, **overrides)

    return build


@pytest.fixture
def workers(tmp_path, request):
    """Start workers through this fixture: every one is stopped by pid at teardown."""
    started: list[WorkerProcess] = []

    def start(settings: Settings, env: dict[str, str] | None = None, *, wait_ready: bool = True) -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / f"worker-{len(started)}.log", env=env)
        started.append(worker)
        worker.start(wait_ready=wait_ready)
        return worker

    yield start
    failed = getattr(request.node, "call_report", None) is not None and request.node.call_report.failed
    for worker in started:  # shown by pytest when the test failed: what each worker said it was doing
        if worker.running():
            counts = {
                o: worker.metric("leadpulse_events_total", f'outcome="{o}"')
                for o in (
                    "scored",
                    "dead_letter",
                    "replayed",
                    "forgotten",
                    "duplicate",
                    "unscored",
                    "rekeyed",
                    "linked",
                    "merged",
                )
            }
            print(f"worker {worker.pid}: health {worker.health()}, events {counts}")
            if failed:
                tail = Path(worker.log_path).read_text(errors="replace")[-4000:]
                print(f"worker {worker.pid}: still running; its log ends:\n{tail}")
                _print_task_stacks(worker)
        elif worker.process is not None:
            tail = Path(worker.log_path).read_text(errors="replace")[-6000:]
            print(f"worker {worker.pid}: exited with {worker.process.returncode}; its log ends:\n{tail}")
        worker.kill()
    if os.environ.get("SHOW_WORKER_LOGS"):
        for worker in started:
            print(Path(worker.log_path).read_text(errors="replace")[-5000:])


@pytest.fixture
def collectors(tmp_path):
    """Start `leadpulse collect` processes through this fixture: each is stopped by pid at teardown."""
    started: list[CollectorProcess] = []

    def start(settings: Settings) -> CollectorProcess:
        collector = CollectorProcess(settings, tmp_path / f"collector-{len(started)}.log")
        started.append(collector)
        collector.start()
        return collector

    yield start
    for collector in started:
        if not collector.running() and collector.process is not None:
            tail = Path(collector.log_path).read_text(errors="replace")[-3000:]
            print(f"collector {collector.pid}: exited with {collector.process.returncode}; its log ends:\n{tail}")
        collector.stop(timeout_s=10)


@pytest.fixture(scope="module")
def receivers():
    """Real HTTP receivers on 127.0.0.1 (receiver.py), one set per module: tests add their own names."""
    with Receivers() as started:
        yield started


@pytest.fixture
def notifiers(tmp_path, request):
    """Start `leadpulse notify run` through this: every process is killed by pid at teardown."""
    started: list[NotifyProcess] = []

    def start(settings: Settings, config: Path) -> NotifyProcess:
        process = NotifyProcess(settings, config, tmp_path / f"notify-{len(started)}.log")
        started.append(process)
        process.start(timeout_s=60)
        return process

    yield start
    for process in started:
        if getattr(request.node, "call_report", None) is not None and request.node.call_report.failed:
            print(f"notify {process.pid}: its log ends:\n{process.log_path.read_text(errors='replace')[-4000:]}")
        process.kill()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep the call phase's report on the test item, so fixtures can tell a failed test."""
    report = yield
    if report.when == "call":
        item.call_report = report
    return report


def _print_task_stacks(worker: WorkerProcess) -> None:
    """mode's worker dumps every thread's and task's stack to its log on SIGUSR1: what a
    stalled worker was waiting for."""
    log = Path(worker.log_path)
    before = log.stat().st_size
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGUSR1)
    wait_for(
        lambda: log.stat().st_size > before and b"TASKS" in log.read_bytes()[before:], timeout_s=15, interval_s=0.2
    )
    print(log.read_bytes()[before:][:100_000].decode(errors="replace"))


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the whole run (Debian's package), stopped by pid; tests
    that need it are skipped, saying why in one line, where it cannot start. Its folder is
    made in /tmp (not pytest's root-only folder): the server may run as the postgres user."""
    folder = Path(tempfile.mkdtemp(prefix="leadpulse-postgres-"))
    server = PostgresServer(folder)
    try:
        server.start()
    except Unavailable as error:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"PostgreSQL cannot start here: {error}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
