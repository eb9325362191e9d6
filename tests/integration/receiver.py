"""Real HTTP receivers for the notify tests: aiohttp servers on 127.0.0.1, one port per
destination, run by one event loop in a thread of the test process, each scripted to answer
what a real receiver does on a bad day: 200, 500, 429 with Retry-After, 410, no answer
before the sender's timeout, a connection closed mid-answer, or no server at all (down).

Every request to a webhook receiver is verified with the `standardwebhooks` package, as a
receiver would, with each secret it is given separately (during a rotation a receiver may
hold either); a request that does not verify is recorded and answered 401."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from leadpulse.cli.processes import free_port

OK, FAIL, GONE, TIMEOUT, CLOSE = "200", "500", "410", "timeout", "close"
TIMEOUT_HOLD_S = 30.0  # a TIMEOUT answer comes this late: longer than any destination's timeout in the tests


def retry_after(seconds: int) -> str:
    """A 429 asking the sender to wait `seconds` (Slack's rate limit answers so)."""
    return f"429:{seconds}"


@dataclass(frozen=True)
class Request:
    webhook_id: str | None  # None for a Slack message (Slack's webhooks are not signed)
    body: Any
    answer: str
    at: float  # time.time() when it arrived
    verified: bool  # every secret given verified it (always True without secrets)


@dataclass
class Endpoint:
    name: str
    port: int
    secrets: tuple[str, ...]  # whsec_ secrets to verify with, each on its own; () for Slack
    script: deque[str] = field(default_factory=deque)  # answers to give next, in order; then `default`
    default: str = OK
    requests: list[Request] = field(default_factory=list)
    site: web.TCPSite | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def delivered(self) -> list[Request]:
        """The requests answered 200 in full, in arrival order (duplicates included)."""
        return [request for request in self.requests if request.answer == OK]

    def delivered_ids(self) -> list[str]:
        return [str(request.webhook_id) for request in self.delivered()]


class Receivers:
    """The endpoints, up or down on demand. Use as a context manager: the thread and every
    server stop at its end."""

    def __init__(self) -> None:
        self.endpoints: dict[str, Endpoint] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="receivers", daemon=True)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> Receivers:
        self._thread.start()
        self._runner = web.AppRunner(self._app(), handler_cancellation=True)
        self._call(self._runner.setup())
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._runner is not None
        self._call(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def add(self, name: str, *, secrets: tuple[str, ...] = (), up: bool = True) -> Endpoint:
        endpoint = Endpoint(name, free_port(), secrets)
        self.endpoints[name] = endpoint
        if up:
            self.up(name)
        return endpoint

    def up(self, name: str) -> None:
        endpoint = self.endpoints[name]
        assert self._runner is not None
        endpoint.site = web.TCPSite(self._runner, "127.0.0.1", endpoint.port, reuse_address=True)
        self._call(endpoint.site.start())

    def down(self, name: str) -> None:
        """No server on the port: connections are refused."""
        site = self.endpoints[name].site
        if site is not None:
            self._call(site.stop())
            self.endpoints[name].site = None

    def script(self, name: str, *answers: str, default: str | None = None) -> None:
        endpoint = self.endpoints[name]
        self._loop.call_soon_threadsafe(endpoint.script.extend, answers)
        if default is not None:
            endpoint.default = default

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self._answer)
        return app

    def _endpoint_of(self, request: web.Request) -> Endpoint:
        port = request.transport.get_extra_info("sockname")[1] if request.transport else None
        return next(endpoint for endpoint in self.endpoints.values() if endpoint.port == port)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        endpoint = self._endpoint_of(request)
        body = await request.read()
        verified = all(_verifies(secret, body, request.headers) for secret in endpoint.secrets)
        answer = endpoint.script.popleft() if endpoint.script else endpoint.default
        if not verified:
            answer = "401"
        endpoint.requests.append(
            Request(request.headers.get("webhook-id"), orjson.loads(body), answer, time.time(), verified)
        )
        if answer == TIMEOUT:
            await asyncio.sleep(TIMEOUT_HOLD_S)
            return web.Response(status=200)
        if answer == CLOSE:  # a 200 whose body never arrives in full
            response = web.StreamResponse(status=200)
            response.content_length = 1_000
            await response.prepare(request)
            await response.write(b"ok" * 10)
            assert request.transport is not None
            request.transport.close()
            return response
        status, _, wait = answer.partition(":")
        return web.Response(status=int(status), headers={"Retry-After": wait} if wait else None, text="answer")


def _verifies(secret: str, body: bytes, headers: Any) -> bool:
    try:
        Webhook(secret).verify(body, {key.lower(): value for key, value in headers.items()})
    except WebhookVerificationError:
        return False
    return True


def new_secret() -> str:
    """A Standard Webhooks signing secret, as `whsec_` + base64 of 32 random bytes."""
    import os

    return "whsec_" + base64.b64encode(os.urandom(32)).decode()
