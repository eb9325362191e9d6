"""`leadpulse collect`: puts the collector (leadpulse/collector/) together with the CLI's
Kafka producer and runs it until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import resource
import sys

from leadpulse.cli.kafka_clients import ensure_topic, input_producer
from leadpulse.cli.serving import start_serving
from leadpulse.collector.browser import BrowserSettings
from leadpulse.collector.keys import KeyRing
from leadpulse.collector.service import MAX_LINGERING, Collector, CollectorBounds, CollectorSite, runner
from leadpulse.collector.sink import KafkaSink
from leadpulse.scoring.rules import Rules
from leadpulse.streams.quiet import BROKERS, LogThrottle, attach_log_throttle, install_reconnect_backoff
from leadpulse.streams.settings import Settings, SettingsError, env_name

RESERVED_DESCRIPTORS = 64
"""Descriptors besides the HTTP connections: Kafka connections, the listening socket, stdio."""


async def run_collector(settings: Settings, keys: KeyRing, rules: Rules) -> None:
    """Serve until stopped; in-flight requests are answered before the producer stops, so
    no sender is left without an answer for events that were acknowledged."""
    bounds = settings.section(CollectorBounds, "collect_")
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    throttles = attach_log_throttle()  # a broker outage is a few lines, not one per reconnect
    await ensure_topic(settings, settings.input_topic)
    producer = input_producer(settings)
    # Quiet reconnects, and credentials refused at run time end the process (streams/quiet.py).
    install_reconnect_backoff(producer.client)
    BROKERS.exit_on_refusal(settings.auth_failure_grace_s)
    await producer.start()
    sink = KafkaSink(producer, settings.input_topic, probe_timeout_s=bounds.delivery_timeout_s)
    background = [asyncio.ensure_future(sink.watch()), asyncio.ensure_future(_flush_summaries(throttles))]
    try:
        browser = settings.section(BrowserSettings, "collect_")
        collector = Collector(keys, sink, rules, settings.input_limits, bounds, browser=browser)
        app_runner = runner(collector)
        await app_runner.setup()
        try:
            host, port = settings.collect_host, settings.collect_port
            site = CollectorSite(app_runner, collector, host, port, backlog=1024)
            stopping = asyncio.Event()
            await start_serving(site, "collect", host, port, stopping)
            url = f"http://{settings.collect_host}:{settings.collect_port}"
            print(
                f"collecting Segment calls on {url}/v1/batch (and /v1/track, /v1/identify, ...) into topic "
                f"{settings.input_topic}, {len(keys.server)} server and {len(keys.browser)} browser write keys; "
                "Ctrl-C stops",
                file=sys.stderr,
                flush=True,
            )
            await stopping.wait()
        finally:
            await app_runner.cleanup()
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await producer.stop()


async def _flush_summaries(throttles: list[LogThrottle]) -> None:
    """The log throttle's summaries, written when due even if nothing else is logged."""
    while True:
        await asyncio.sleep(1.0)
        for throttle in throttles:
            throttle.flush()


def allow_descriptors(max_connections: int) -> None:
    """Raise the soft limit of open files to what the connection cap needs, up to the hard
    limit; stop start-up naming the setting when even that is too low."""
    needed = max_connections + MAX_LINGERING + RESERVED_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SettingsError(
            f"{env_name('collect_max_connections')}={max_connections}: needs {needed} open files with its reserve, "
            f"over this process's hard limit of {hard} (ulimit -Hn); lower it or raise the limit"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
