"""`leadpulse collect`: puts the collector (leadpulse/collector/) together with the CLI's
Kafka producer and runs it until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
import sys

from aiohttp import web

from leadpulse.cli.kafka_clients import ensure_topic, input_producer
from leadpulse.cli.preflight import CommandError
from leadpulse.collector.service import Collector, runner
from leadpulse.collector.sink import KafkaSink
from leadpulse.scoring.rules import Rules
from leadpulse.streams.quiet import BROKERS, install_reconnect_backoff
from leadpulse.streams.settings import Settings, env_name


async def run_collector(settings: Settings, keys: tuple[bytes, ...], rules: Rules) -> None:
    """Serve until stopped; in-flight requests are answered before the producer stops, so
    no sender is left without an answer for events that were acknowledged."""
    await ensure_topic(settings, settings.input_topic)
    producer = input_producer(settings)
    # Quiet reconnects, and credentials refused at run time end the process (streams/quiet.py).
    install_reconnect_backoff(producer.client)
    BROKERS.exit_on_refusal(settings.auth_failure_grace_s)
    await producer.start()
    try:
        collector = Collector(keys, KafkaSink(producer, settings.input_topic), rules, settings.input_limits)
        app_runner = runner(collector)
        await app_runner.setup()
        try:
            site = web.TCPSite(app_runner, settings.collect_host, settings.collect_port, backlog=1024)
            try:
                await site.start()
            except OSError as error:
                where = f"{env_name('collect_host')}={settings.collect_host} {env_name('collect_port')}"
                raise CommandError(f"cannot listen on {where}={settings.collect_port}: {error.strerror}") from None
            url = f"http://{settings.collect_host}:{settings.collect_port}"
            print(
                f"collecting Segment calls on {url}/v1/batch (and /v1/track, /v1/identify, ...) into topic "
                f"{settings.input_topic}, {len(keys)} write keys; Ctrl-C stops",
                file=sys.stderr,
                flush=True,
            )
            await _until_stopped()
        finally:
            await app_runner.cleanup()
    finally:
        await producer.stop()


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
