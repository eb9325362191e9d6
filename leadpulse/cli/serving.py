"""What the HTTP services (`collect`, `notify run`, `board`) do alike when they start
serving: listen where their settings say, or end in one line naming those settings, and
stop on SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web

from leadpulse.cli.preflight import CommandError
from leadpulse.streams.settings import env_name


async def start_serving(site: web.BaseSite, service: str, host: str, port: int, stopping: asyncio.Event) -> None:
    """Start `site` (made on `host`:`port`, the settings `<service>_host` and `<service>_port`);
    SIGTERM and SIGINT set `stopping` from now on."""
    try:
        await site.start()
    except OSError as error:
        where = f"{env_name(f'{service}_host')}={host} {env_name(f'{service}_port')}={port}"
        raise CommandError(f"cannot listen on {where}: {error.strerror}") from None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
