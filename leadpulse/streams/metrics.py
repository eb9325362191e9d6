"""LeadPulse's own Prometheus metrics, next to Faust's (served together on /metrics)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        registry = registry or CollectorRegistry()
        return cls(
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
        )
