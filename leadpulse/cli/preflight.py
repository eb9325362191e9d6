"""What the CLI checks before it starts any Kafka work. Without these checks a newcomer's
first mistakes (no broker running, a mistyped topic) end in a long traceback or in a client
that retries forever; here each ends in one line that says what to do."""

from __future__ import annotations

import asyncio
import difflib
import errno
import fcntl
import logging
import os
import socket
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from leadpulse.streams.security import client_options, connection_problem
from leadpulse.streams.settings import Settings, env_name

PREFLIGHT_TIMEOUT_S = 5.0  # a broker that answers at all answers a metadata request in milliseconds
START_BROKER_HINT = "start the local one with `deploy/kafka/broker.sh start` (or run everything with `make demo`)"
MAX_LISTED = 20  # broker topics named in an error line


class CommandError(Exception):
    """A user error that the CLI reports as one line on stderr, exiting with `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class BrokerInfo:
    """What one metadata round trip tells about the cluster behind LEADPULSE_BROKER."""

    cluster_id: str | None
    topics: frozenset[str]


def broker_info(settings: Settings, timeout_s: float = PREFLIGHT_TIMEOUT_S) -> BrokerInfo:
    """Connect, read the cluster id and the topic names, or raise a one-line CommandError.
    Run before the real clients start: theirs is a retry loop that logs every attempt."""
    return asyncio.run(describe_broker(settings, timeout_s))


async def describe_broker(settings: Settings, timeout_s: float = PREFLIGHT_TIMEOUT_S) -> BrokerInfo:
    """`broker_info` for callers already inside an event loop."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=max(1, int(timeout_s * 1000)))
    try:
        with _quiet_kafka_client():
            async with asyncio.timeout(timeout_s):
                await admin.start()
                cluster = await admin.describe_cluster()
                topics = await admin.list_topics()
    except (KafkaError, OSError, TimeoutError):
        with _quiet_kafka_client():
            problem = await connection_problem(settings, timeout_s)
        raise CommandError(problem or no_broker_message(settings)) from None
    finally:
        with _quiet_kafka_client():
            await admin.close()
    cluster_id = cluster.get("cluster_id")
    return BrokerInfo(
        cluster_id if isinstance(cluster_id, str) and cluster_id else None,
        frozenset(name for name in topics if not name.startswith("__")),
    )


def no_broker_message(settings: Settings) -> str:
    return f"no Kafka broker answers at {settings.bootstrap_servers} ({env_name('broker')}); {START_BROKER_HINT}"


@contextmanager
def _quiet_kafka_client() -> Iterator[None]:
    """aiokafka logs every failed connection attempt at ERROR; the preflight reports it once."""
    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


# --- one worker per web port and per state folder -------------------------------------------

STATE_LOCK_NAME = "worker.lock"
_HELD: list[int] = []  # descriptors of the locks this process holds, open until it exits


def check_web_port(settings: Settings) -> None:
    """The web port is free. Found taken only once the worker had joined its consumer group,
    it cost the running workers a rebalance and ended in a traceback."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the web server binds: TIME_WAIT is no conflict
        try:
            probe.bind((settings.web_host, settings.web_port))
        except OSError as error:
            where = f"{settings.web_host}:{settings.web_port}"
            if error.errno != errno.EADDRINUSE:
                raise CommandError(f"cannot listen on {where} ({env_name('web_host')}): {error.strerror}") from None
            raise CommandError(
                f"port {where} is in use, by another worker perhaps: set {env_name('web_port')} to a free port "
                f"({_one_per_machine()})"
            ) from None


def lock_state_folder(data_dir: Path) -> None:
    """Hold the state folder for the life of this process (an exclusive lock, which the kernel
    lets go when the process ends, however it ends). Two workers on one folder otherwise met
    at RocksDB's own LOCK half a minute after joining the group, with tracebacks and a
    rebalance for the workers already running."""
    holder = hold_lock(data_dir / STATE_LOCK_NAME)
    if holder is not None:
        raise CommandError(
            f"the state folder {data_dir} is in use by another worker{_pid(holder)}: set {env_name('data_dir')} "
            f"to a folder of its own ({_one_per_machine()})"
        )


def hold_lock(path: Path) -> int | None:
    """Take the lock file `path` for the life of this process and write our pid in it; if
    another process holds it, return that process's pid (0 when it cannot be read)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise CommandError(f"cannot open {path}: {error.strerror}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
        os.close(descriptor)
        return int(text) if text.isdigit() else 0
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    _HELD.append(descriptor)
    return None


def _pid(holder: int) -> str:
    return f" (pid {holder})" if holder else ""


def _one_per_machine() -> str:
    return f"each worker of a machine needs its own {env_name('web_port')} and {env_name('data_dir')}"


def tail_topic(requested: str, settings: Settings, existing: Collection[str]) -> str:
    """The full topic name `tail` should read, or a one-line CommandError that lists the
    topics it could have meant: a consumer of a missing topic would wait forever."""
    from leadpulse.streams.topics import OUTPUT_NAMES  # imports Faust

    tailable = OUTPUT_NAMES
    topic = settings.topic(requested) if requested in tailable else requested
    if topic in existing:
        return topic
    ours = {settings.topic(name) for name in tailable} | {settings.input_topic}
    if topic in ours:
        raise CommandError(
            f"topic {topic} does not exist yet on {settings.bootstrap_servers}: "
            "a worker creates LeadPulse's topics when it starts (leadpulse worker)"
        )
    names = [*tailable, settings.input_topic]
    # the topics under the user's own prefix first: on a shared cluster those are the ones meant
    prefix = settings.topic_prefix
    others = sorted(
        (name for name in existing if name not in ours), key=lambda name: (not name.startswith(prefix), name)
    )
    guess = _closest(requested, [*names, *others])
    listed = ", ".join(others[:MAX_LISTED]) or "none"
    if len(others) > MAX_LISTED:
        listed += f" and {len(others) - MAX_LISTED} more"
    hint = f"; did you mean {guess}?" if guess else ""
    raise CommandError(
        f"no topic {requested} on {settings.bootstrap_servers}{hint} "
        f"(LeadPulse's: {', '.join(names)}; also on the broker: {listed})"
    )


def _closest(word: str, candidates: list[str]) -> str | None:
    """The likeliest intended name; '_' for '-' is the commonest slip, so it is tried first."""
    dashed = word.replace("_", "-")
    if dashed != word and dashed in candidates:
        return dashed
    matches = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return matches[0] if matches else None
