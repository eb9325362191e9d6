"""LeadPulse's own Prometheus metrics, next to Faust's (served together on /metrics)."""

from __future__ import annotations

import shutil
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector

CGROUP = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    events: Counter
    dead_letters: Counter
    outputs: Counter
    batch_seconds: Histogram
    batch_events: Histogram
    event_age_seconds: Histogram
    cooling_scheduled: Gauge
    unmapped_events: Counter
    nurtures: Counter
    records_too_large: Counter
    expired: Counter
    ready: Gauge
    restoring: Gauge
    deliveries_failing: Gauge
    rules: Info

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None, cgroup: Path = CGROUP) -> Metrics:
        registry = registry or CollectorRegistry()
        ProcessCollector(registry=registry)  # process_resident_memory_bytes: RocksDB's memory is the process's
        metrics = cls(
            registry=registry,
            events=Counter(
                "leadpulse_events",
                "Input records by outcome: scored, unscored, duplicate, rekeyed, replayed, forgotten, erased, "
                "dead_letter; identity stitching: linked (a link kept), merged (a hand-over applied)",
                ["outcome"],
                registry=registry,
            ),
            dead_letters=Counter(
                "leadpulse_dead_letters",
                "Inputs sent to the dead-letter topic, by the field at fault",
                ["field"],
                registry=registry,
            ),
            outputs=Counter(
                "leadpulse_outputs",
                "Records produced, by kind: snapshot, stage_change, hot_lead, nurture, account_leave, identity "
                "(links and hand-overs), erasure_forwarded (to an erased contact's linked ids)",
                ["kind"],
                registry=registry,
            ),
            batch_seconds=Histogram(
                "leadpulse_batch_seconds",
                "Time to score one batch",
                registry=registry,
                buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            ),
            batch_events=Histogram(
                "leadpulse_batch_events",
                "Events per batch",
                registry=registry,
                buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
            ),
            event_age_seconds=Histogram(
                "leadpulse_event_age_seconds",
                "Wall-clock time from occurred_at to scoring",
                registry=registry,
                buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600, 3600, 86400),
            ),
            cooling_scheduled=Gauge(
                "leadpulse_cooling_scheduled_contacts",
                "Warm contacts waiting for their next cooling check",
                registry=registry,
            ),
            unmapped_events=Counter(
                "leadpulse_unmapped_events",
                "Segment track events whose name the rules' [mapping] does not know (outcome unscored)",
                registry=registry,
            ),
            nurtures=Counter(
                "leadpulse_nurture_records",
                "Records sent to the nurture topic, by track ([[nurture.tracks]] name)",
                ["track"],
                registry=registry,
            ),
            records_too_large=Counter(
                "leadpulse_records_too_large",
                "Inputs dead-lettered because a record they made would be over its topic's limit, by that topic",
                ["topic"],
                registry=registry,
            ),
            expired=Counter(
                "leadpulse_expired",
                "What aged out and was deleted (scoring/expiry.py), by kind: contact (anonymous, nobody "
                "identified, [retention] anonymous_after after its latest event), departure (an account's "
                "marker of a contact that left)",
                ["kind"],
                registry=registry,
            ),
            ready=Gauge(
                "leadpulse_ready", "1 when /health answers 200, else 0 (its reason is on /health)", registry=registry
            ),
            restoring=Gauge(
                "leadpulse_restoring",
                "1 while the worker restores the tables of its partitions from their changelogs (/health is 503)",
                registry=registry,
            ),
            deliveries_failing=Gauge(
                "leadpulse_deliveries_failing",
                "1 while records the worker produces are not acknowledged by the broker (/health is 503)",
                registry=registry,
            ),
            rules=Info(
                "leadpulse_rules",
                "The rules file this worker scores with: its version, as on every output (a rollout shows "
                "as workers moving from one version to the next)",
                registry=registry,
            ),
        )
        limit = cgroup_memory_limit(cgroup)
        if limit is not None:  # no series without a limit (a 0 would divide the memory alert by zero)
            Gauge(
                "leadpulse_memory_limit_bytes",
                "The container's memory limit (cgroup): RSS near it means an OOM kill",
                registry=registry,
            ).set(limit)
        return metrics

    def watch_state_volume(self, data_dir: Path) -> None:
        """Free and total bytes of the tables' volume (rocksdb:// only), one statvfs when Prometheus scrapes."""
        free = Gauge(
            "leadpulse_state_volume_free_bytes",
            "Bytes free on the volume of LEADPULSE_DATA_DIR, where RocksDB keeps the tables",
            registry=self.registry,
        )
        size = Gauge("leadpulse_state_volume_size_bytes", "Size of that volume", registry=self.registry)
        free.set_function(lambda: shutil.disk_usage(_existing(data_dir)).free)
        size.set_function(lambda: shutil.disk_usage(_existing(data_dir)).total)


def observe_all(histogram: Histogram, amounts: Sequence[float]) -> None:
    """`histogram.observe(amount)` for each of `amounts`, each bucket and the sum added to
    once: a batch's event ages observed one at a time (a lock and a scan of the buckets each)
    were ~1.3% of the worker's CPU (bench/README.md). Reads the buckets as prometheus_client
    keeps them (pinned in constraints.txt; tests/unit/test_metrics_observe_all.py compares the
    exposition with `observe`'s)."""
    if not amounts:
        return
    histogram._raise_if_not_observable()  # type: ignore[no-untyped-call]
    buckets, bounds = histogram._buckets, histogram._upper_bounds
    for index, count in Tally(bisect_left(bounds, amount) for amount in amounts).items():
        buckets[index].inc(count)  # the first bucket whose bound is >= the amount, as observe() picks
    total = 0.0
    for amount in amounts:
        total += amount
    histogram._sum.inc(total)


def cgroup_memory_limit(root: Path) -> int | None:
    """The memory limit the kernel enforces on this container (cgroup v2, else v1), None
    without one ('max', or v1's huge page-rounded 'unlimited')."""
    for name in ("memory.max", "memory/memory.limit_in_bytes"):
        try:
            text = (root / name).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            return int(text)
        return None
    return None


def _existing(path: Path) -> Path:
    """The folder, or its nearest existing parent: the data folder is made when a table opens."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
