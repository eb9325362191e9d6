"""`create_app(settings)`: the Faust app with its topics, contact table, metrics and web views.
The agents (leadpulse.agents) are attached to it by `leadpulse.app`, or by a test."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.sensors.prometheus import FaustMetrics

from leadpulse.schemas.limits import DEFAULT_RECORD_LIMITS, RecordLimits
from leadpulse.scoring.cooling import CoolingSchedule
from leadpulse.scoring.rules import Rules, load_rules
from leadpulse.streams.metrics import Metrics
from leadpulse.streams.monitor import PeriodicPrometheusMonitor
from leadpulse.streams.outbox import DeliveryHealth
from leadpulse.streams.quiet import install_log_throttle
from leadpulse.streams.recovery import BulkTableManager
from leadpulse.streams.security import describe, faust_credentials
from leadpulse.streams.settings import FAUST_PREFIXES, Settings
from leadpulse.streams.startup import ACCOUNTS_TABLE, TABLE
from leadpulse.streams.tables import AccountTable, ContactTable, RocksDBMemory
from leadpulse.streams.topics import Topics, declare_topics
from leadpulse.streams.transport import App

log = logging.getLogger(__name__)
SCORING, ACCOUNTS = AGENTS = ("scoring", "accounts")  # the agents /health waits for, each in its batch loop


@dataclass
class Readiness:
    """What /health reports: every agent is consuming, and deliveries are not failing."""

    consuming: set[str] = field(default_factory=set)  # names of the agents in their batch loop
    deliveries: DeliveryHealth = field(default_factory=DeliveryHealth)


@dataclass
class Pipeline:
    settings: Settings
    rules: Rules
    app: App
    topics: Topics
    contacts: ContactTable
    metrics: Metrics
    accounts: AccountTable
    cooling: CoolingSchedule = field(default_factory=CoolingSchedule)
    readiness: Readiness = field(default_factory=Readiness)
    record_limits: RecordLimits = DEFAULT_RECORD_LIMITS  # read from the broker when the scoring agent starts


def create_app(settings: Settings) -> Pipeline:
    rules = load_rules(settings.rules)
    app = App(
        settings.app_id,
        # Faust reads WEB_PORT, WEB_BIND, PROCESSING_GUARANTEE, BROKER_CREDENTIALS... from the
        # environment over the values given here: an empty mapping leaves only LEADPULSE_*.
        env={},
        broker=settings.broker,
        broker_credentials=faust_credentials(settings),
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        processing_guarantee=settings.processing_guarantee,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        canonical_url=settings.web_url,  # where table_route sends requests for other partitions
        # Faust's defaults made each consumer-group join take ~30 s (docs/faust-notes.md).
        broker_session_timeout=settings.session_timeout_s,
        broker_rebalance_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=1.0,
        consumer_auto_offset_reset="earliest",
        # Linger 0 sent ~1.7 records per produce request (docs/faust-notes.md).
        producer_linger_ms=10,
        # Fetched records waiting for the agent: at the default 4,096 the fetcher paused and
        # resumed partitions all the time, leaving the worker idle (bench/README.md).
        stream_buffer_maxsize=16_384,
        # One record batch per partition per agent batch (streams/outbox.py): with 16 KiB
        # batches each further batch of a partition waited for the previous one.
        producer_max_batch_size=256 * 1024,
        # A standby reads the changelog of a partition another worker owns, so that taking it
        # over needs only the changelog's tail; with one partition there is nothing to spread.
        table_standby_replicas=0 if settings.partitions == 1 else settings.standby_replicas,
        TableManager=BulkTableManager,  # restores ~10x faster than Faust's recovery alone
        web_enabled=True,
        # Faust's own pages: the table dumps and cluster layout are not for the public
        # (table_route forwards requests without the /router pages).
        web_router_enabled=False,
        web_tables_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
    )
    install_log_throttle(app)  # a broker outage is logged once per interval, not per retry
    topics = declare_topics(app, settings)
    table: Any = app.Table(
        TABLE,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
        help="Per-contact scoring state (scoring.state bytes)",
    )
    accounts: Any = app.Table(
        ACCOUNTS_TABLE,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
        help="Per-account state: an aggregate and one key per member (scoring.accounts bytes)",
    )
    memory = RocksDBMemory(settings.rocksdb_memory_bytes)  # both tables' databases share it
    metrics = Metrics.create()
    metrics.rules.info({"version": rules.version})
    if settings.store == "rocksdb://":
        metrics.watch_state_volume(settings.data_dir)
    faust_metrics = FaustMetrics.create(metrics.registry, "faust")  # served on /metrics (streams/web.py)
    monitor = app.monitor = PeriodicPrometheusMonitor(metrics=faust_metrics)
    app.timer(PUBLISH_INTERVAL_S)(_publish(monitor))
    app.task(_announce(app, describe(settings)))
    pipeline = Pipeline(
        settings, rules, app, topics, ContactTable(table, memory), metrics, AccountTable(accounts, memory)
    )
    from leadpulse.streams.web import register_views

    register_views(pipeline)
    return pipeline


def faust_variables(environ: Mapping[str, str]) -> list[str]:
    """The variables of `environ` that plain Faust would take as its settings. The worker
    ignores them; naming them tells an operator why a value they set has no effect."""
    names = {param.env_name for param in faust.Settings.SETTINGS.values() if param.env_name}
    return sorted(key for key in environ if key in names or key.startswith(FAUST_PREFIXES))


PUBLISH_INTERVAL_S = 1.0  # how stale Faust's own metrics on /metrics may be


def _announce(app: faust.App, security: str) -> Callable[[], Awaitable[None]]:
    async def announce_configuration() -> None:
        """What the worker actually runs with, read back from Faust's configuration: the
        settings an operator (or a security review) would otherwise have to take on trust."""
        conf = app.conf
        log.info(
            "configured: web %s:%s, processing %s, store %s, broker %s over %s",
            conf.web_bind,
            conf.web_port,
            conf.processing_guarantee.value,
            conf.store,
            ";".join(str(url) for url in conf.broker),
            security,
        )

    return announce_configuration


def _publish(monitor: PeriodicPrometheusMonitor) -> Callable[[], Awaitable[None]]:
    async def publish_faust_metrics() -> None:
        monitor.publish()

    return publish_faust_metrics
