"""Size limits on what an input record may hold. One bad producer must not be able to
exhaust a worker's memory, its state store or the dead-letter topic, so every bound is
checked before the record is stored or copied anywhere."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from leadpulse.schemas.fields import InvalidEvent


@dataclass(frozen=True, slots=True)
class InputLimits:
    """Each field is set by the environment variable `LEADPULSE_<FIELD>` (see `variable`)."""

    max_record_bytes: int = 100_000
    max_properties: int = 200
    max_depth: int = 8
    max_string: int = 2_000
    dead_letter_excerpt: int = 2_000
    # Not a limit on input but on every record the worker writes (RecordLimits): here so that
    # the offline scorer, which takes the worker's input limits, refuses the same events.
    max_message_bytes: int = 1_000_000


DEFAULT_LIMITS = InputLimits()


def variable(field: str) -> str:
    """The setting that raises a limit, named in every rejection so the fix is one lookup."""
    return f"LEADPULSE_{field.upper()}"


def stored_bytes(text: str) -> int:
    """Bytes `text` takes in the JSON every state and record is written as (orjson: UTF-8,
    control characters escaped as six bytes each): what a value costs the record limit,
    whatever it cost to send."""
    return len(orjson.dumps(text)) - 2


# The size of one record on its way to Kafka. The broker refuses a record batch above the
# topic's `max.message.bytes` (1,048,588 by default) at delivery; aiokafka's `send()` refuses a
# record above the producer's `max_request_size` (Faust's default: 1,000,000) before sending.
PRODUCER_MAX_REQUEST_BYTES = 1_000_000
BATCH_OVERHEAD = 61  # a record batch's header (format v2)
RECORD_OVERHEAD = 32  # a record's own fields around its key and value, at most (length, attributes, varints)
RECOMPRESSING = ("gzip", "snappy", "lz4", "zstd")  # a topic's compression.type that makes the broker re-encode batches


def record_bytes(key: bytes | None, value: bytes | None) -> int:
    """Bytes a record adds to a record batch, at most."""
    return RECORD_OVERHEAD + len(key or b"") + len(value or b"")


def batch_limit(max_message_bytes: int, compression: str | None = None) -> int:
    """The most bytes of records one batch may carry to a topic: the smaller of the broker's
    and the producer's limits, less the batch header; a topic that recompresses batches
    checks the size again after its codec, which may grow incompressible data (snappy, the
    worst, by up to 1/6 plus 32 bytes)."""
    limit = min(max_message_bytes, PRODUCER_MAX_REQUEST_BYTES) - BATCH_OVERHEAD
    if compression in RECOMPRESSING:
        limit = (limit - 32) * 6 // 7
    return limit


class RecordTooLarge(InvalidEvent):
    """A record the broker would refuse, caught before it is sent: the event that made it is
    dead-lettered with this reason, instead of a delivery that fails on every restart."""

    def __init__(self, topic: str, size: int, limit: int, what: str = "") -> None:
        """`what` says which record, when it is not the one being sent (an account's widest)."""
        super().__init__(
            "",
            f"{topic}: a record of {size} bytes{f' ({what})' if what else ''}, over the {limit} bytes the topic "
            f"takes (its max.message.bytes, or {variable('max_message_bytes')} if lower)",
        )
        self.topic, self.size, self.limit = topic, size, limit


@dataclass(frozen=True)
class RecordLimits:
    """The largest record each topic takes (batch_limit of its configuration), read from the
    broker when the worker starts; `default` for a topic not read, and for every topic in
    the offline scorer (`for_topics`)."""

    default: int = batch_limit(PRODUCER_MAX_REQUEST_BYTES)
    topics: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def for_topics(cls, cap: int, topics: Mapping[str, tuple[int, str | None]] | None = None) -> RecordLimits:
        """Each topic's limit from its (max.message.bytes, compression.type), never above
        `cap` (LEADPULSE_MAX_MESSAGE_BYTES); `cap` alone for any other topic."""
        return cls(
            batch_limit(cap),
            {name: batch_limit(min(size, cap), compression) for name, (size, compression) in (topics or {}).items()},
        )

    def of(self, topic: str) -> int:
        return self.topics.get(topic, self.default)

    def check(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """Raise RecordTooLarge unless the record fits in a batch of its own."""
        size = record_bytes(key, value)
        limit = self.topics.get(topic, self.default)
        if size > limit:
            raise RecordTooLarge(topic, size, limit)


DEFAULT_RECORD_LIMITS = RecordLimits()
