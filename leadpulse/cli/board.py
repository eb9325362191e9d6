"""`leadpulse board`: put the lead board (leadpulse/board/) together with its topics, its read
model and its HTTP server, and run it until SIGTERM or Ctrl-C. Everything a user can get
wrong (no tokens file, a database that does not open, a port in use) ends in one line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import sys
from urllib.parse import urlsplit

from aiohttp import web

from leadpulse.board.ingest import Ingest
from leadpulse.board.model import ROLES
from leadpulse.board.store import POSTGRES_SCHEMES, Store, database_url
from leadpulse.board.web import Live, board_app
from leadpulse.cli.kafka_clients import ensure_topic
from leadpulse.cli.preflight import CommandError, broker_info
from leadpulse.cli.serving import start_serving
from leadpulse.scoring.rules import load_rules
from leadpulse.streams.quiet import BROKERS, attach_log_throttle
from leadpulse.streams.settings import Settings, env_name, read_tokens

USAGE_ERROR = 2


def shown_database(url: str) -> str:
    """The database as printed: a PostgreSQL URL without its password."""
    if not url.startswith(POSTGRES_SCHEMES):
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def board_command() -> int:
    settings = Settings.from_env()
    if settings.api_tokens_file is None:
        raise CommandError(
            f"{env_name('api_tokens_file')} is not set: the board shows personal data and lets in only "
            "holders of a token from that file (one a line, 16+ characters)",
            USAGE_ERROR,
        )
    tokens = read_tokens(settings.api_tokens_file)
    rules = load_rules(settings.rules)
    broker_info(settings)
    url = database_url(settings.board_database, settings.data_dir)
    try:
        store = Store(url, settings.board_retention_days, hot_temperature=len(rules.band_labels))
    except (sqlite3.Error, OSError) as error:
        raise CommandError(f"cannot open the board's database {shown_database(url)}: {error}") from None
    except Exception as error:  # psycopg's errors, when PostgreSQL is configured
        if error.__class__.__module__.startswith("psycopg"):
            first = str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__
            raise CommandError(f"cannot open the board's database {shown_database(url)}: {first}") from None
        raise
    try:
        asyncio.run(run_board(settings, store, tokens))
    finally:
        store.close()
    return 0


async def run_board(settings: Settings, store: Store, tokens: tuple[str, ...]) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    attach_log_throttle()
    BROKERS.exit_on_refusal(settings.auth_failure_grace_s)
    for role in ROLES:  # a consumer cannot be assigned a topic that does not exist yet
        await ensure_topic(settings, settings.topic(role))
    live = Live()
    ingest = Ingest(settings, store, live.publish)
    runner = web.AppRunner(board_app(store, tokens, ingest.progress, live), access_log=None)
    await runner.setup()
    stopping = asyncio.Event()
    try:
        host, port = settings.board_host, settings.board_port
        await start_serving(web.TCPSite(runner, host, port), "board", host, port, stopping)
        print(
            f"board: http://{settings.board_host}:{settings.board_port}/ (read model {shown_database(store.url)}); "
            "Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        reading = asyncio.create_task(ingest.run(stopping))
        await asyncio.wait([reading, asyncio.create_task(stopping.wait())], return_when=asyncio.FIRST_COMPLETED)
        stopping.set()
        failure = reading.exception() if reading.done() else None
        if failure is not None:
            raise CommandError(f"the board stopped reading: {failure.__class__.__name__}: {failure}")
        with contextlib.suppress(asyncio.CancelledError):
            await reading
    finally:
        await runner.cleanup()
