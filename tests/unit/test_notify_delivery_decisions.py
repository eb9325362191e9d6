"""The notify engine's pure decisions: what an answer means, when to try again, and which
offset may be committed while alerts settle out of order."""

from __future__ import annotations

import random

import pytest

from leadpulse.notify.failures import Failure, failure_bytes, failure_from
from leadpulse.notify.outcome import (
    MAX_RETRY_AFTER_MS,
    Delivered,
    Never,
    Retry,
    backoff_ms,
    next_attempt_ms,
    of_error,
    of_status,
    retry_after_ms,
)
from leadpulse.notify.watermark import Watermarks

NOW = 1_700_000_000_000


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_any_2xx_is_delivered(status):
    assert of_status(status, None, NOW) == Delivered(status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_a_status_that_means_never_stops_at_once(status):
    assert of_status(status, "5", NOW) == Never(f"HTTP {status}")


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 408, 409, 302])
def test_other_statuses_are_retried(status):
    assert isinstance(of_status(status, None, NOW), Retry)


def test_retry_after_in_seconds_or_as_a_date_replaces_the_backoff():
    assert of_status(429, "30", NOW) == Retry("HTTP 429", 30_000)
    assert retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", 1_445_412_470_000) == 10_000
    assert retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", 1_445_412_490_000) == 0  # past: at once


def test_an_unreadable_or_huge_retry_after_is_ignored_or_bounded():
    assert retry_after_ms("soon", NOW) is None
    assert retry_after_ms(None, NOW) is None
    assert retry_after_ms("999999999", NOW) == MAX_RETRY_AFTER_MS


def test_no_answer_is_retried_naming_what_happened():
    assert of_error(TimeoutError(), 2.5) == Retry("timeout after 2.5 s")
    assert of_error(ConnectionRefusedError("Connect call failed"), 2.5).reason.startswith("ConnectionRefusedError")


def test_backoff_grows_exponentially_within_its_jitter_and_stops_at_the_cap():
    for attempt, step in [(1, 1_000), (2, 2_000), (3, 4_000), (6, 32_000), (30, 300_000)]:
        waits = [backoff_ms(attempt, random.random()) for _ in range(200)]
        assert all(step // 2 <= wait <= step for wait in waits), (attempt, min(waits), max(waits))
    assert backoff_ms(1, 0.0) == 500 and backoff_ms(1, 0.999) == 999


def test_no_retry_is_scheduled_past_the_retry_window():
    outcome = Retry("HTTP 503")
    assert next_attempt_ms(outcome, 1, 0.0, now_ms=NOW, deadline_ms=NOW + 10_000, cap_ms=300_000) == NOW + 500
    assert (
        next_attempt_ms(outcome, 5, 0.0, now_ms=NOW, deadline_ms=NOW + 5_000, cap_ms=300_000) is None
    )  # 8 s > 5 s left
    assert (
        next_attempt_ms(Retry("HTTP 429", 20_000), 1, 0.0, now_ms=NOW, deadline_ms=NOW + 10_000, cap_ms=300_000) is None
    )


def test_the_watermark_is_the_lowest_unsettled_offset_of_each_partition():
    marks: Watermarks[str] = Watermarks()
    for offset in range(10, 15):
        marks.read("p0", offset)
    marks.skip("p1", 3)
    assert marks.committable() == {"p0": 10, "p1": 4}
    for offset in (11, 12, 14):  # settled out of order: 10 still owed
        marks.settle("p0", offset)
    assert marks.committable() == {}  # nothing moved
    assert len(marks) == 2
    marks.settle("p0", 10)
    assert marks.committable() == {"p0": 13}
    marks.settle("p0", 13)
    assert marks.committable() == {"p0": 15} and len(marks) == 0


def test_a_revoked_partition_is_forgotten_with_its_unsettled_alerts():
    marks: Watermarks[str] = Watermarks()
    marks.read("p0", 0)
    marks.read("p0", 1)
    marks.settle("p0", 1)
    marks.drop("p0")
    marks.settle("p0", 0)  # its delivery ended after the revocation: nothing to do
    assert len(marks) == 0 and marks.committable() == {}


def test_a_failure_record_reads_back_as_written():
    failure = Failure(
        "hot-leads", "ada@acme.io", {"id": "h1", "kind": "hot_lead"}, "web", "HTTP 410", 1, NOW, NOW, NOW + 5
    )
    assert failure_from(failure_bytes(failure)) == failure
    with pytest.raises(ValueError, match="not a delivery-failures record"):
        failure_from(b'{"alert": 1}')
