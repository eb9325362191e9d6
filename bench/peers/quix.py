"""The Quix Streams peer: the same job as an idiomatic StreamingDataFrame, state in Quix's
RocksDB store (changelogged by Quix), Quix's default 5 s commit, at-least-once. States are
stored as the core's bytes (identity dumps/loads), outputs routed to their topic by kind.

    LEADPULSE_... python -m bench.peers.quix
"""

from __future__ import annotations

from typing import Any

from quixstreams import Application, State
from quixstreams.models import TopicConfig
from quixstreams.models.serializers import SerializationContext, Serializer
from quixstreams.state.rocksdb import RocksDBOptions

from bench.peers.job import score
from leadpulse.scoring.rules import load_rules
from leadpulse.scoring.state import from_bytes, to_bytes
from leadpulse.streams.settings import Settings

STATE_KEY = b"contact"


class RecordValue(Serializer):
    """Rows are (topic kind, value bytes): the value goes out as it is."""

    def __call__(self, value: tuple[str, bytes], ctx: SerializationContext) -> bytes:
        return value[1]


def build(settings: Settings) -> Application:
    rules = load_rules(settings.rules)
    app = Application(
        broker_address=settings.bootstrap_servers,
        consumer_group=settings.app_id,
        auto_offset_reset="earliest",
        state_dir=str(settings.data_dir / "quix-state"),
        rocksdb_options=RocksDBOptions(dumps=lambda value: value, loads=lambda value: value),
        processing_guarantee="at-least-once",
    )
    config = TopicConfig(num_partitions=settings.partitions, replication_factor=1)
    events = app.topic(settings.input_topic, value_deserializer="bytes", config=config)
    outputs = {
        kind: app.topic(settings.topic(kind), value_serializer=RecordValue(), config=config)
        for kind in ("contact-scores", "stage-changes", "hot-leads")
    }

    def scored(value: bytes, key: Any, timestamp: int, headers: Any, state: State[Any, Any]) -> list[tuple[str, bytes]]:
        stored = state.get(STATE_KEY)
        new, records = score(value, None if stored is None else from_bytes(stored), rules)
        if new is not None:
            state.set(STATE_KEY, to_bytes(new))
        return records

    rows = app.dataframe(events).apply(scored, stateful=True, metadata=True, expand=True)
    rows.to_topic(lambda row, key, timestamp, headers: outputs[row[0]])
    return app


def main() -> None:
    build(Settings.from_env()).run()


if __name__ == "__main__":
    main()
