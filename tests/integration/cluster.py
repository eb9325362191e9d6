"""An N-node KRaft cluster on 127.0.0.1 run by deploy/kafka/broker.sh (cluster mode): every
node is broker and controller, with static voters. Nodes are started together (each waits for
a quorum), stopped by pid through broker.sh, and one can be killed (SIGKILL) by its pid."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from leadpulse.cli.processes import BROKER_SCRIPT, low_free_ports


def alive(pid: int) -> bool:
    """The process runs (a zombie waiting for its parent counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@dataclass
class Node:
    node_id: int
    port: int
    controller_port: int
    data_dir: Path
    pid: int | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"


class LocalCluster:
    """`size` nodes, data under `base_dir`/node-<id>. Use as a context manager or call
    start() and stop(); stop() is safe to call after a failed or partial start."""

    def __init__(self, base_dir: Path, size: int = 3, *, start_timeout_s: float = 240) -> None:
        ports = low_free_ports(2 * size)
        self.nodes = [Node(i + 1, ports[2 * i], ports[2 * i + 1], base_dir / f"node-{i + 1}") for i in range(size)]
        self.start_timeout_s = start_timeout_s
        self.cluster_id = ""
        self.voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)

    @property
    def broker(self) -> str:
        """LEADPULSE_BROKER for the whole cluster."""
        return ";".join(f"kafka://{node.address}" for node in self.nodes)

    @property
    def bootstrap(self) -> str:
        return ",".join(node.address for node in self.nodes)

    def node(self, node_id: int) -> Node:
        return next(node for node in self.nodes if node.node_id == node_id)

    def env(self, node: Node) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_CLUSTER_VOTERS": self.voters,
            "KAFKA_CLUSTER_ID": self.cluster_id,
            "KAFKA_NODE_ID": str(node.node_id),
            "KAFKA_PORT": str(node.port),
            "KAFKA_CONTROLLER_PORT": str(node.controller_port),
            "KAFKA_DATA_DIR": str(node.data_dir),
            "KAFKA_START_TIMEOUT": str(int(self.start_timeout_s)),
        }

    def start(self) -> None:
        """Start every node at once; return when all serve, or stop them all and raise with what
        broker.sh said (its message names the log and quotes its tail when a node exited)."""
        if not self.cluster_id:
            made = subprocess.run(
                [str(BROKER_SCRIPT), "cluster-id"], capture_output=True, text=True, check=False, timeout=300
            )
            if made.returncode != 0 or not made.stdout.strip():
                raise RuntimeError(f"broker.sh cluster-id failed: {made.stderr.strip()}")
            self.cluster_id = made.stdout.strip().splitlines()[-1]
        failed: list[str] = []
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            for done in as_completed([pool.submit(self._start_node, node) for node in self.nodes]):
                message = done.result()
                if message:
                    if not failed:  # the other nodes would wait for a quorum until their timeout
                        self.stop()
                    failed.append(message)
        if failed:
            raise RuntimeError("the Kafka cluster did not start:\n" + "\n".join(failed))

    def start_node(self, node_id: int) -> None:
        """Start one node again (the others must be running: it waits for a quorum)."""
        message = self._start_node(self.node(node_id))
        if message:
            raise RuntimeError(message)

    def _start_node(self, node: Node) -> str:
        node.data_dir.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [str(BROKER_SCRIPT), "start"],
            env=self.env(node),
            capture_output=True,
            text=True,
            check=False,
            timeout=self.start_timeout_s + 120,
        )
        pid_file = node.data_dir / "broker.pid"
        if pid_file.exists():
            node.pid = int(pid_file.read_text().strip())
        if done.returncode != 0:
            return f"node {node.node_id}: {done.stderr.strip()}"
        return ""

    def kill(self, node_id: int, timeout_s: float = 30) -> float:
        """SIGKILL the node's process by its pid, as a crash would; wait until it is gone.
        Returns the time.monotonic() of the kill."""
        node = self.node(node_id)
        assert node.pid is not None, f"node {node_id} was not started"
        at = time.monotonic()
        os.kill(node.pid, signal.SIGKILL)
        deadline = at + timeout_s
        while alive(node.pid):
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {node_id} (pid {node.pid}) still runs {timeout_s:.0f}s after SIGKILL")
            time.sleep(0.05)
        return at

    def stop(self) -> None:
        """Stop every node, all at once, by pid through `broker.sh stop` (TERM, then KILL after
        20 s: a node left without a quorum cannot finish its controlled shutdown). Nodes that
        do not run (killed, never started) are skipped by broker.sh."""
        started = [node for node in self.nodes if (node.data_dir / "broker.pid").exists()]
        if started:
            with ThreadPoolExecutor(len(started)) as pool:
                list(pool.map(self._stop_node, started))
        for node in self.nodes:  # broker.sh gave up on it only if something is badly wrong
            if node.pid is not None and alive(node.pid):
                os.kill(node.pid, signal.SIGKILL)

    def _stop_node(self, node: Node) -> None:
        subprocess.run(
            [str(BROKER_SCRIPT), "stop"],
            env=self.env(node),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            timeout=120,
        )

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
