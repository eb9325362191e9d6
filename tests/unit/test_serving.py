"""The HTTP services start serving alike (cli/serving.py): a port already taken ends in one
line naming the two settings that chose it; SIGTERM then stops the service."""

import asyncio
import os
import signal
import socket

import pytest
from aiohttp import web

from leadpulse.cli.preflight import CommandError
from leadpulse.cli.serving import start_serving


async def test_a_taken_port_is_one_line_naming_the_services_settings():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runner = web.AppRunner(web.Application())
        await runner.setup()
        try:
            with pytest.raises(CommandError) as refused:
                await start_serving(web.TCPSite(runner, "127.0.0.1", port), "board", "127.0.0.1", port, asyncio.Event())
        finally:
            await runner.cleanup()
    named = f"cannot listen on LEADPULSE_BOARD_HOST=127.0.0.1 LEADPULSE_BOARD_PORT={port}: "
    assert str(refused.value).startswith(named)


async def test_sigterm_sets_the_services_stopping_event_once_it_serves():
    runner = web.AppRunner(web.Application())
    await runner.setup()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        await start_serving(web.TCPSite(runner, "127.0.0.1", 0), "notify", "127.0.0.1", 0, stopping)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stopping.wait(), 5)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await runner.cleanup()
    assert stopping.is_set()
