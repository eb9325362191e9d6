"""`leadpulse notify run` and `leadpulse notify redrive`: put the notify service
(leadpulse/notify/) together with its topics and its HTTP server (/health, /metrics), and run
it until SIGTERM or Ctrl-C; re-send the delivery-failures topic. The parsers are in
cli/notify.py with the group's other commands."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

from aiohttp import web

from leadpulse.cli.kafka_clients import ensure_topic
from leadpulse.cli.preflight import CommandError, broker_info
from leadpulse.cli.serving import start_serving
from leadpulse.notify.config import NotifyConfig, load_notify_config
from leadpulse.notify.redrive import Redriven, redrive
from leadpulse.notify.service import Notifier, NotifyOptions, failures_topic, group_id, web_app
from leadpulse.scoring.timeutil import parse_duration_ms
from leadpulse.streams.quiet import BROKERS, attach_log_throttle
from leadpulse.streams.settings import Settings, env_name
from leadpulse.streams.startup import AclBinding, check_acls, notify_acl_bindings, notify_groups, notify_topic_specs

USAGE_ERROR = 2  # as cli.main's: a bad argument


def run_command(file: Path) -> int:
    config = load_notify_config(file, os.environ)
    settings = Settings.from_env()
    require_topics(settings, [*(settings.topic(role) for role in config.topics), failures_topic(settings)])
    asyncio.run(run_notify(settings, config))
    return 0


def require_topics(settings: Settings, names: list[str]) -> None:
    """Connect; with LEADPULSE_CREATE_TOPICS=off, every topic of `names` must exist: else one
    line naming them. Unchecked, a missing delivery-failures topic showed only at the first
    refused alert, as a producer waiting for the topic and trying again for ever (and
    `redrive` found nothing to send)."""
    existing = broker_info(settings).topics
    missing = [name for name in names if name not in existing]
    if missing and not settings.create_topics:
        raise CommandError(
            f"topics missing: {', '.join(missing)}; {env_name('create_topics')}=off, so an administrator creates "
            "them (leadpulse topics create, or the commands printed by leadpulse topics commands), unless they "
            "exist and this user may not DESCRIBE them (leadpulse topics acls --service notify)"
        )


def redrive_command(file: Path, retry_for: str) -> int:
    try:
        window_ms = parse_duration_ms(retry_for)
    except ValueError as error:
        raise CommandError(f"--retry-for: {error}", USAGE_ERROR) from None
    config = load_notify_config(file, os.environ)
    settings = Settings.from_env()
    require_topics(settings, [failures_topic(settings)])
    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    done = asyncio.run(_redrive_all(settings, config, window_ms))
    unreadable = f", {done.unreadable} unreadable records passed" if done.unreadable else ""
    print(
        f"re-drove {done.delivered + done.failed_again} alerts: {done.delivered} delivered, "
        f"{done.failed_again} failed again (written back to {failures_topic(settings)}){unreadable}",
        file=sys.stderr,
    )
    return 0 if done.failed_again == 0 else 1


async def ensure_topics(settings: Settings, config: NotifyConfig) -> None:
    """The output topics read, created as the worker creates them when it has not yet (a
    consumer cannot subscribe to a topic that does not exist), and the failures topic."""
    for role in config.topics:
        await ensure_topic(settings, settings.topic(role))
    await ensure_failures_topic(settings)


async def ensure_failures_topic(settings: Settings) -> None:
    """The delivery-failures topic, as `leadpulse topics create` makes it (notify_topic_specs:
    an event topic, since it holds alerts)."""
    (spec,) = notify_topic_specs(settings)
    await ensure_topic(settings, spec.name, spec)


def needed_acls(settings: Settings, config: NotifyConfig, *, redrive: bool) -> list[AclBinding]:
    """Of the ACLs `leadpulse topics acls --service notify` grants, those `notify run` uses
    (the file's topics, the failures topic, its group) or `notify redrive` does (the failures
    topic and its own group)."""
    redrive_group = notify_groups(settings)[1]
    bindings = notify_acl_bindings(settings, config.topics)
    if redrive:
        return [binding for binding in bindings if binding.name in (failures_topic(settings), redrive_group)]
    return [binding for binding in bindings if binding.name != redrive_group]


async def run_notify(settings: Settings, config: NotifyConfig) -> None:
    """Serve /health and /metrics and deliver until stopped; deliveries in progress at the
    stop are abandoned uncommitted, so the next start sends them again (same webhook-id)."""
    await ensure_topics(settings, config)
    await check_acls(settings, needed_acls(settings, config, redrive=False), "notify")  # a refusal: one line
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    attach_log_throttle()  # a broker outage is a few lines, not one per reconnect
    BROKERS.exit_on_refusal(settings.auth_failure_grace_s)
    options = NotifyOptions.of(settings)
    notifier = Notifier(settings, config, options)
    runner = web.AppRunner(web_app(notifier), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, options.host, options.port)
        await start_serving(site, "notify", options.host, options.port, notifier.stopping)
        topics = ", ".join(settings.topic(role) for role in config.topics)
        print(
            f"notify: delivering {topics} to {len(config.destinations)} destinations (group {group_id(settings)}); "
            f"health on http://{options.host}:{options.port}/health; Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        await notifier.run()
    finally:
        await runner.cleanup()


async def _redrive_all(settings: Settings, config: NotifyConfig, retry_window_ms: int) -> Redriven:
    await ensure_failures_topic(settings)
    await check_acls(settings, needed_acls(settings, config, redrive=True), "notify")
    return await redrive(settings, config, NotifyOptions.of(settings), retry_window_ms)
