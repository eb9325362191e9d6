"""The broker a benchmark runs against: the one named with `--broker`, else a local broker
started for the run and stopped after it, also when the run fails."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from leadpulse.cli.processes import LocalBroker, broker_port


@contextmanager
def broker_url(given: str | None, work: Path) -> Iterator[str]:
    """Yield the broker's kafka:// URL; a local broker keeps its data under `work`."""
    if given is not None:
        yield given
        return
    broker = LocalBroker(broker_port(), work / "kafka")
    broker.start()
    try:
        yield f"kafka://127.0.0.1:{broker.port}"
    finally:
        broker.stop()
