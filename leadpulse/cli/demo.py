"""`leadpulse demo`: a local broker (started if none answers), a worker, `leadpulse notify`
sending the alerts as signed webhooks to a receiver of the demo's own, `leadpulse board`
(the lead board, its URL printed), and live synthetic
marketing traffic; the terminal shows running counts (the webhooks received among them),
every hot lead with its reasons (and the scoring model that fired), the hot accounts with
their buying committee, and the nurture records as the cooling timer sends them.
Everything it started is stopped on Ctrl-C or when --duration runs out."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from leadpulse.cli import local_state
from leadpulse.cli.console import describe
from leadpulse.cli.kafka_clients import ensure_topic, read_topic
from leadpulse.cli.preflight import CommandError, broker_info, check_web_port, hold_lock
from leadpulse.cli.processes import BoardProcess, LocalBroker, NotifyProcess, WorkerProcess, free_port
from leadpulse.cli.traffic import DAY_MS, Traffic
from leadpulse.scoring.timeutil import now_ms
from leadpulse.streams.security import client_options
from leadpulse.streams.settings import Settings, env_name
from leadpulse.streams.topics import DEAD_LETTERS, HOT_ACCOUNTS, HOT_LEADS, NURTURE, SCORES, STAGE_CHANGES

STATE_DIR = Path(".leadpulse")
BROKER_DIR = STATE_DIR / "kafka"  # the demo's own broker, when it starts one
DEMO_DATA_DIR = STATE_DIR / "demo" / "data"  # the demo worker's tables: never shared with `leadpulse worker`
WORKER_LOG = STATE_DIR / "demo-worker.log"
NOTIFY_LOG = STATE_DIR / "demo-notify.log"
NOTIFY_CONFIG = STATE_DIR / "demo-notify.toml"  # its signing secret beside it, made afresh by each demo
NOTIFY_SECRET = STATE_DIR / "demo-notify.secret"
BOARD_LOG = STATE_DIR / "demo-board.log"
BOARD_TOKEN = STATE_DIR / "demo-board.token"  # the board's login token, made afresh by each demo
DEMO_LOCK = STATE_DIR / "demo.lock"  # one demo per folder: it owns the log, state and worker above
MALFORMED_EVERY = 2_000  # one broken record now and then, to show the dead-letter path
DEMO_COOLING_S = 2.0  # the worker's cooling timer: nurture records show within seconds, not a minute
# Records printed per status line: a timer tick may send hundreds of nurture records, and the
# history at start-up makes dozens of accounts hot at once.
SHOWN_PER_LINE = {NURTURE: 5, HOT_ACCOUNTS: 5}
CONTACTS_PER_ACCOUNT = 40  # the synthetic audience works for one of contacts / 40 companies


@dataclass
class DemoOptions:
    rate: float
    duration_s: float | None
    contacts: int
    history_days: int
    traffic_only: bool = False  # only send traffic and show outputs (docker compose runs the worker)


def demo_settings(settings: Settings, environ: Mapping[str, str]) -> Settings:
    """The demo's worker keeps its tables in its own folder unless LEADPULSE_DATA_DIR says
    otherwise, so that a later `leadpulse worker` (often against another broker) never
    opens them. Absolute, because the worker process may run in another folder."""
    data_dir = settings.data_dir if environ.get(env_name("data_dir")) else DEMO_DATA_DIR
    cooling = settings.cooling_interval_s if environ.get(env_name("cooling_interval_s")) else DEMO_COOLING_S
    notify_port = settings.notify_port if environ.get(env_name("notify_port")) else free_port()
    board_port = settings.board_port if environ.get(env_name("board_port")) else free_port()
    return dataclasses.replace(
        settings,
        data_dir=data_dir.resolve(),
        cooling_interval_s=cooling,
        notify_port=notify_port,
        board_port=board_port,
    )


def run_demo(settings: Settings, options: DemoOptions, *, own_data_dir: bool = True) -> int:
    """`own_data_dir`: the state folder is the demo's own, so it may be emptied when it
    belongs to another cluster (a user's LEADPULSE_DATA_DIR never is)."""
    broker: LocalBroker | None = None
    notify: NotifyProcess | None = None
    board: BoardProcess | None = None
    worker = None if options.traffic_only else WorkerProcess(settings, WORKER_LOG)
    if worker is not None:
        _own_folder_and_port(settings)
    try:
        if worker is not None and not _reachable(settings):
            broker = _local_broker(settings)
            print(f"no broker at {settings.broker}: starting a local one (deploy/kafka/broker.sh)...", file=sys.stderr)
            try:
                broker.start()
            except RuntimeError as error:  # broker.sh has said why on stderr already
                raise CommandError(str(error)) from None
        info = broker_info(settings)
        asyncio.run(ensure_topic(settings, settings.input_topic))
        if worker is not None:
            asyncio.run(_refuse_a_running_pipeline(settings))
            if info.cluster_id is not None and settings.store.startswith("rocksdb"):
                _claim_state_folder(settings, info.cluster_id, own_data_dir)
            print(f"starting a worker (log: {worker.log_path}, {settings.web_url}/health)...", file=sys.stderr)
            try:
                worker.start()
            except (RuntimeError, TimeoutError) as error:
                raise CommandError(f"{error}{_last_line(worker.log_path)}") from None
        receiver_port = free_port()
        if worker is not None:
            notify = NotifyProcess(settings, _notify_config(receiver_port), NOTIFY_LOG)
            print(
                f"starting notify (log: {notify.log_path}), its webhooks to http://127.0.0.1:{receiver_port}/webhooks",
                file=sys.stderr,
            )
            notify.start(wait_ready=False)  # it delivers as soon as it has joined its group
            board = BoardProcess(dataclasses.replace(settings, api_tokens_file=_board_token()), BOARD_LOG)
            board.start(wait_ready=False)  # it reads the topics from their start and serves pages meanwhile
            print(
                f"the lead board on {board.base_url}/ (log in with the token in {BOARD_TOKEN}; log: {board.log_path})",
                file=sys.stderr,
            )
        print("sending traffic (Ctrl-C stops everything)", file=sys.stderr)
        asyncio.run(_live(settings, options, worker, receiver_port))
    except KeyboardInterrupt:
        print("\nstopping...", file=sys.stderr)
    finally:
        if board is not None:
            board.stop()
        if notify is not None:
            notify.stop()
        if worker is not None:
            worker.stop()
        if broker is not None:
            broker.stop()
    return 0


def _own_folder_and_port(settings: Settings) -> None:
    """A second demo would take the first one's worker for its own (its /health answers on
    the same port), send its traffic into that pipeline and share its log: refuse it here.
    The lock is held until this process ends; the worker checks the port again itself."""
    holder = hold_lock(DEMO_LOCK.resolve())
    if holder is not None:
        running = f" (pid {holder})" if holder else ""
        raise CommandError(
            f"another demo{running} is running from this folder (its worker, state and log are in {STATE_DIR}): "
            "stop it first (Ctrl-C)"
        )
    check_web_port(settings)


async def _refuse_a_running_pipeline(settings: Settings) -> None:
    """A demo started from another folder (with another web port) on the same broker and app
    id would have its worker join the running one's group: two demos' traffic in one pipeline.
    The group's members say whether one runs; a broker that cannot say yet (a fresh one has
    no group coordinator before the first group request) has none."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([settings.app_id])
        members = sum(len(group["members"]) for group in response.to_object()["groups"])
    except KafkaError:
        members = 0
    finally:
        await admin.close()
    if members:
        raise CommandError(
            f"consumer group {settings.app_id!r} on {settings.bootstrap_servers} already has {members} "
            f"member{'s' if members > 1 else ''} (another demo or worker): this demo's traffic would go into that "
            f"pipeline; stop it, or give this demo its own {env_name('app_id')} and {env_name('topic_prefix')}"
        )


def _claim_state_folder(settings: Settings, cluster_id: str, own: bool) -> None:
    """Checked here as well as in the worker, so that a mismatch reaches the terminal
    rather than the worker's log; the demo's own state is disposable and starts afresh."""
    try:
        local_state.claim(settings.data_dir, cluster_id, settings.bootstrap_servers)
    except CommandError:
        if not own:
            raise
        print(
            f"the demo's state folder {settings.data_dir} belonged to another Kafka cluster: starting it afresh",
            file=sys.stderr,
        )
        local_state.reset(settings.data_dir)
        local_state.claim(settings.data_dir, cluster_id, settings.bootstrap_servers)


def _first_broker(settings: Settings) -> tuple[str, int]:
    host, _, port = settings.bootstrap_servers.split(",")[0].rpartition(":")
    return host, int(port)


def _reachable(settings: Settings) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(_first_broker(settings), timeout=1):
        return True
    return False


def _local_broker(settings: Settings) -> LocalBroker:
    host, port = _first_broker(settings)
    if host not in ("127.0.0.1", "localhost"):
        raise CommandError(
            f"no Kafka broker answers at {settings.bootstrap_servers}; the demo starts one only on 127.0.0.1"
        )
    return LocalBroker(port, BROKER_DIR.resolve())


def _board_token() -> Path:
    """A login token for the demo's board, made for this run, readable by the user only."""
    BOARD_TOKEN.write_text(base64.urlsafe_b64encode(os.urandom(24)).decode() + "\n")
    BOARD_TOKEN.chmod(0o600)
    return BOARD_TOKEN.resolve()


def _notify_config(receiver_port: int) -> Path:
    """A notify file sending every hot lead and hot account to the demo's receiver, signed
    with a secret made for this run."""
    NOTIFY_SECRET.write_text("whsec_" + base64.b64encode(os.urandom(32)).decode() + "\n")
    NOTIFY_SECRET.chmod(0o600)
    NOTIFY_CONFIG.write_text(
        "# Written by `leadpulse demo` (docs/notify-config.md): its alerts to its own receiver.\n"
        'max_alert_age = "30d"  # the demo\'s traffic spans weeks of history: send it too\n'
        'cooldown = "off"\n'
        "[destinations.demo]\n"
        'kind = "webhook"\n'
        f'url = "http://127.0.0.1:{receiver_port}/webhooks"\n'
        f'secret_file = "{NOTIFY_SECRET.name}"\n'
        "[[routes]]\n"
        'to = ["demo"]\n'
    )
    return NOTIFY_CONFIG.resolve()


async def _receive_webhooks(port: int, counts: Counter[str]) -> web.AppRunner:
    """The demo's webhook receiver: counts the alerts it takes, each `webhook-id` once (a
    receiver deduplicates on it: a retry or a replay sends the same id again)."""
    seen: set[str] = set()

    async def take(request: web.Request) -> web.Response:
        await request.read()
        webhook_id = request.headers.get("webhook-id", "")
        if webhook_id not in seen:
            seen.add(webhook_id)
            counts["webhooks"] += 1
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/webhooks", take)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def _live(settings: Settings, options: DemoOptions, worker: WorkerProcess | None, receiver_port: int) -> None:
    counts: Counter[str] = Counter()
    receiver = await _receive_webhooks(receiver_port, counts)
    watchers = [
        asyncio.create_task(_watch(settings, name, counts))
        for name in (SCORES, STAGE_CHANGES, HOT_LEADS, HOT_ACCOUNTS, NURTURE, DEAD_LETTERS)
    ]
    producer = asyncio.create_task(_produce(settings, options, counts))
    deadline = None if options.duration_s is None else time.monotonic() + options.duration_s
    try:
        while deadline is None or time.monotonic() < deadline:
            await asyncio.sleep(2)
            if worker is not None and not worker.running():
                raise CommandError(f"the worker stopped; see {worker.log_path}{_last_line(worker.log_path)}")
            print(
                f"[{time.strftime('%H:%M:%S')}] events sent {counts['sent']:,} | snapshots {counts[SCORES]:,}"
                f" | stage changes {counts[STAGE_CHANGES]:,} | hot leads {counts[HOT_LEADS]:,}"
                f" | hot accounts {counts[HOT_ACCOUNTS]:,} | nurture {counts[NURTURE]:,}"
                f" | dead letters {counts[DEAD_LETTERS]:,} | webhooks {counts['webhooks']:,}",
                flush=True,
            )
            for name in SHOWN_PER_LINE:
                counts[f"{name} shown"] = 0
    finally:
        for task in (producer, *watchers):
            task.cancel()
        await asyncio.gather(producer, *watchers, return_exceptions=True)
        await receiver.cleanup()


def _last_line(log: Path) -> str:
    """The worker's own one-line error, usually; saves opening the log for the common cases."""
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return f" (its last line: {lines[-1].strip()})" if lines else ""


async def _watch(settings: Settings, name: str, counts: Counter[str]) -> None:
    async for _key, value in read_topic(settings, settings.topic(name), from_beginning=False, idle_timeout_s=None):
        counts[name] += 1
        if value is None:
            continue
        if name in (HOT_LEADS, DEAD_LETTERS):
            print(describe(value), flush=True)
        elif name in SHOWN_PER_LINE and counts[f"{name} shown"] < SHOWN_PER_LINE[name]:
            counts[f"{name} shown"] += 1
            print(describe(value), flush=True)


async def _produce(settings: Settings, options: DemoOptions, counts: Counter[str]) -> None:
    """Journeys spread over the last `history_days` days, sent at `rate` events/s: the
    engine does not care about arrival order, so history and live traffic mix freely."""
    from aiokafka import AIOKafkaProducer

    from leadpulse.schemas.events import contact_key

    producer = AIOKafkaProducer(**client_options(settings), linger_ms=10)
    await producer.start()
    try:
        interval = 1 / options.rate
        next_at = time.monotonic()
        for document in _traffic(options):
            key = contact_key(document)
            value = orjson.dumps(document)
            if counts["sent"] % MALFORMED_EVERY == MALFORMED_EVERY - 1:
                value = value[: len(value) // 2]
            await producer.send(settings.input_topic, value, key=key.encode() if key else None)
            counts["sent"] += 1
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
    finally:
        await producer.stop()


def _traffic(options: DemoOptions) -> Iterator[dict[str, Any]]:
    seed = int(time.time())
    while True:
        end = now_ms()
        span = options.history_days * DAY_MS
        accounts = max(1, options.contacts // CONTACTS_PER_ACCOUNT)
        traffic = Traffic(seed, end - span, span, options.contacts, id_prefix=f"demo{seed}-", accounts=accounts)
        yield from traffic.events(10_000)
        seed += 1
