"""The local broker and worker processes that the demo, the tests and the benchmarks start.
Each is stopped by its pid; a worker counts as ready when its own /health (the pid it names
is the one started) says ok: it consumes all its inputs."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from leadpulse.streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]  # the checkout (site-packages when installed from a wheel)
BROKER_SCRIPT = ROOT / "deploy" / "kafka" / "broker.sh"
IN_CHECKOUT = (ROOT / "pyproject.toml").is_file()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


LOWEST_PORT = 10_000


def ephemeral_range() -> tuple[int, int]:
    """The source ports the kernel hands out (Linux's default when it cannot be read)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default


def low_free_ports(count: int) -> list[int]:
    """`count` distinct ports below the ephemeral range that nothing uses now. A client that
    keeps reconnecting to a dead broker's ephemeral port can be given that very port as its
    own source port and connect to itself (TCP simultaneous open), holding the port that the
    restarted broker needs; ports outside the range are never handed out as source ports."""
    low, _ = ephemeral_range()
    ports: list[int] = []
    candidates = list(range(LOWEST_PORT, max(LOWEST_PORT + 1_000, low)))
    random.shuffle(candidates)
    for port in candidates:
        if port in ports:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"no {count} free ports below {low}")


def broker_port() -> int:
    """A port for a local broker below the ephemeral range, whose next port (the broker's
    controller) is free too."""
    for _ in range(100):
        (port,) = low_free_ports(1)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports below the ephemeral range")


@dataclass
class LocalBroker:
    """deploy/kafka/broker.sh for one port and data folder."""

    port: int
    data_dir: Path
    extra_env: Mapping[str, str] = field(default_factory=dict)  # broker.sh's security listeners, say

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **self.extra_env, "KAFKA_PORT": str(self.port), "KAFKA_DATA_DIR": str(self.data_dir)}

    def start(self) -> None:
        if not BROKER_SCRIPT.exists():
            raise RuntimeError(f"{BROKER_SCRIPT} is missing: run from a LeadPulse checkout, or use docker compose")
        done = subprocess.run([str(BROKER_SCRIPT), "start"], env=self.env, stdout=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            raise RuntimeError("the local Kafka broker did not start (see the message above)")

    def stop(self) -> None:
        subprocess.run([str(BROKER_SCRIPT), "stop"], env=self.env, check=False)


class WorkerProcess:
    """A worker in its own process, configured by LEADPULSE_* variables from `settings`.

    It runs in the checkout (where `python -m bench.naive` finds the benchmarks) unless
    `cwd` says otherwise; `env` adds variables (a wheel's test points PYTHONPATH at the
    dependencies). The checkout is never put on PYTHONPATH: an installed package must
    run as installed."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        command: Sequence[str] | None = None,
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.log_path = log_path
        self.command = list(command or [sys.executable, "-m", "leadpulse", "worker"])
        self.cwd = cwd if cwd is not None else ROOT if IN_CHECKOUT else None
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self, timeout_s: float = 120, *, wait_ready: bool = True) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPULSE_")}
        env.update(self.settings.as_env())
        env.update(self.extra_env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd)
        if not wait_ready:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}; see {self.log_path}")
            # ok: consuming every input of its partitions (a web server still starting answers text)
            if self.owns(health := self.health()) and health.get("status") == "ok":
                return
            time.sleep(0.2)
        self.kill()
        raise TimeoutError(f"worker not ready after {timeout_s:.0f}s; see {self.log_path}")

    def owns(self, health: Any) -> bool:
        """`health` is this process's answer: another worker on the same port (a second demo's
        start, say) answers too, and its ok would be taken for ours."""
        return isinstance(health, dict) and self.process is not None and health.get("pid") == self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.web_host}:{self.settings.web_port}"

    def get(self, path: str) -> tuple[int, Any]:
        url = f"{self.base_url}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            body, status = error.read(), error.code
        content = orjson.loads(body) if body[:1] in (b"{", b"[") else body.decode()
        return status, content

    def health(self) -> Any:
        try:
            return self.get("/health")[1]
        except (OSError, ValueError):
            return None

    def metric(self, name: str, labels: str = "") -> float:
        """One sample from /metrics, e.g. metric("leadpulse_events_total", 'outcome="scored"'); 0 if absent."""
        try:
            text = self.get("/metrics")[1]
        except OSError:
            return 0.0
        prefix = f"{name}{{{labels}}} " if labels else f"{name} "
        for line in str(text).splitlines():
            if line.startswith(prefix):
                return float(line.split()[-1])
        return 0.0

    def stop(self, timeout_s: float = 30) -> None:
        """Graceful: SIGTERM, as an operator or an orchestrator would; SIGKILL after `timeout_s`."""
        if not self.running():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed or committed."""
        if self.running():
            assert self.process is not None
            self.process.kill()
            self.process.wait(10)


class CollectorProcess(WorkerProcess):
    """`leadpulse collect` in its own process, ready when its /health answers; stopped by pid
    like a worker (SIGTERM lets it answer the requests in flight)."""

    def __init__(self, settings: Settings, log_path: Path, *, cwd: Path | None = None) -> None:
        super().__init__(settings, log_path, [sys.executable, "-m", "leadpulse", "collect"], cwd=cwd)

    def owns(self, health: Any) -> bool:
        """The collector's /health may name no pid: then any answer while ours runs counts
        (a port in use stops it at once)."""
        pid = self.pid
        return isinstance(health, dict) and self.running() and health.get("pid", pid) == pid

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.collect_host}:{self.settings.collect_port}"


class NotifyProcess(WorkerProcess):
    """`leadpulse notify run CONFIG` in its own process, ready when its /health (naming its
    pid) says ok: it has joined its group and owns partitions."""

    def __init__(self, settings: Settings, config: Path, log_path: Path, *, cwd: Path | None = None) -> None:
        super().__init__(settings, log_path, [sys.executable, "-m", "leadpulse", "notify", "run", str(config)], cwd=cwd)

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.notify_host}:{self.settings.notify_port}"


class BoardProcess(WorkerProcess):
    """`leadpulse board` in its own process, ready when its /health (naming its pid) says ok:
    it reads every partition of its topics and has caught up with what it saw at start."""

    def __init__(self, settings: Settings, log_path: Path, *, cwd: Path | None = None) -> None:
        super().__init__(settings, log_path, [sys.executable, "-m", "leadpulse", "board"], cwd=cwd)

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.board_host}:{self.settings.board_port}"
