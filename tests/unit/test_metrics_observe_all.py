"""A batch's amounts added to a histogram at once expose what observing them one at a time does."""

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from leadpulse.streams.metrics import observe_all

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600, 3600, 86400)
# On a bound, between bounds, below the first, above the last, zero, and repeated.
AMOUNTS = [0.0, 0.05, 0.0625, 0.1, 0.125, 1.0, 3.0, 60.0, 61.5, 86400.0, 90000.0, 0.0625, 2.5, 2.5]


def histogram() -> tuple[CollectorRegistry, Histogram]:
    registry = CollectorRegistry()
    return registry, Histogram("ages_seconds", "ages", registry=registry, buckets=BUCKETS)


def exposed(registry: CollectorRegistry) -> list[str]:
    """The samples, but the histogram's creation time."""
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


def test_observing_a_batch_at_once_exposes_the_buckets_count_and_sum_of_observing_each_amount():
    one_by_one, each = histogram()
    for amount in AMOUNTS:
        each.observe(amount)
    batched, at_once = histogram()
    observe_all(at_once, AMOUNTS[:5])
    observe_all(at_once, [])
    observe_all(at_once, AMOUNTS[5:])
    assert exposed(batched) == exposed(one_by_one)
    assert 'ages_seconds_bucket{le="0.05"} 2.0' in exposed(batched)  # 0.0 and 0.05: a bound is in its bucket
