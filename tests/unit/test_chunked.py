"""The agents' buffer is bounded in bytes as well as in records (streams/chunks.py: chunked)."""

from aiokafka.structs import ConsumerRecord

from leadpulse.streams.chunks import chunked


def records(*sizes):
    return [
        ConsumerRecord("t", 0, offset, 0, 0, b"k", b"v" * size, None, 1, size, []) for offset, size in enumerate(sizes)
    ]


def offsets(chunks):
    return [[record.offset for record in chunk] for chunk in chunks]


def test_small_records_are_cut_by_count():
    assert offsets(chunked(records(*[10] * 5), 2, 1_000_000)) == [[0, 1], [2, 3], [4]]


def test_large_records_are_cut_by_bytes_so_a_chunk_holds_no_more_than_its_share_of_the_buffer():
    """Collector messages of 32 KB: 1,000 of them per chunk would be 32 MB; at 100 KB a chunk,
    three go together."""
    chunks = list(chunked(records(*[32_000] * 7), 1_000, 100_000))
    assert offsets(chunks) == [[0, 1, 2], [3, 4, 5], [6]]
    assert all(sum(r.serialized_key_size + r.serialized_value_size for r in chunk) <= 100_000 for chunk in chunks)


def test_a_record_larger_than_a_chunk_goes_alone_and_order_is_kept():
    assert offsets(chunked(records(10, 500, 10, 10), 1_000, 100)) == [[0], [1], [2, 3]]
