"""The notify service's Prometheus metrics, per destination (served on its own /metrics)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass(frozen=True)
class NotifyMetrics:
    registry: CollectorRegistry
    alerts: Counter
    delivered: Counter
    retried: Counter
    failed: Counter
    dead_lettered: Counter
    skipped: Counter
    latency: Histogram
    queue_depth: Gauge
    oldest_pending_age: Gauge
    pending_alerts: Gauge
    paused: Gauge

    @classmethod
    def create(cls) -> NotifyMetrics:
        registry = CollectorRegistry()
        per_destination = ["destination"]
        return cls(
            registry=registry,
            alerts=Counter(
                "leadpulse_notify_alerts",
                "Output records read, by outcome: routed (to one destination or more), unrouted (no route "
                "matches), unreadable (not an alert: logged, then passed)",
                ["outcome"],
                registry=registry,
            ),
            delivered=Counter(
                "leadpulse_notify_delivered", "Alerts a destination answered 2xx", per_destination, registry=registry
            ),
            retried=Counter(
                "leadpulse_notify_retried",
                "Attempts scheduled again after a 5xx, 429, timeout or connection error",
                per_destination,
                registry=registry,
            ),
            failed=Counter(
                "leadpulse_notify_failed_attempts",
                "Attempts that did not deliver (any answer but 2xx, or none)",
                per_destination,
                registry=registry,
            ),
            dead_lettered=Counter(
                "leadpulse_notify_dead_lettered",
                "Alerts written to the delivery-failures topic (a 'never' answer, or the retry window over)",
                per_destination,
                registry=registry,
            ),
            skipped=Counter(
                "leadpulse_notify_skipped",
                "Alerts not sent, by reason: too_old (older than max_alert_age), cooldown (the key's cool-down)",
                ["destination", "reason"],
                registry=registry,
            ),
            latency=Histogram(
                "leadpulse_notify_delivery_latency_seconds",
                "From the alert's occurred_at to the destination's 2xx",
                per_destination,
                registry=registry,
                buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400),
            ),
            queue_depth=Gauge(
                "leadpulse_notify_queue_depth",
                "Alerts waiting for or in delivery to the destination",
                per_destination,
                registry=registry,
            ),
            oldest_pending_age=Gauge(
                "leadpulse_notify_oldest_pending_age_seconds",
                "Age (from occurred_at) of the oldest alert waiting for the destination; 0 when none",
                per_destination,
                registry=registry,
            ),
            pending_alerts=Gauge(
                "leadpulse_notify_pending_alerts",
                "Alerts read and not settled for every destination (fetching pauses at LEADPULSE_NOTIFY_MAX_PENDING)",
                registry=registry,
            ),
            paused=Gauge(
                "leadpulse_notify_paused", "1 while fetching is paused at the in-flight cap", registry=registry
            ),
        )
