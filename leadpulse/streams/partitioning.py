"""Which partition owns a contact: the contact table, the changelog and the re-keyed topic
all follow Kafka's default partitioner, so the agent can tell a record that sits on the
wrong partition (unkeyed, keyed otherwise, or produced with another partitioner)."""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2


@lru_cache(maxsize=200_000)
def home_partition(key: bytes, partitions: int) -> int:
    """murmur2, as the Java client, aiokafka and Faust use; cached because aiokafka's is
    pure Python and contacts repeat."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions
