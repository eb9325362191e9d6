"""The collector's HTTP side: Segment's tracking API (`POST /v1/batch`, `/v1/track`,
`/v1/identify`, `/v1/page`, `/v1/screen`, `/v1/group`, `/v1/alias`), and what the browser
SDKs post to: analytics.js's short paths (`/v1/t`, `/v1/p`, `/v1/i`..., `/v1/b` for its
batches), RudderStack's `/beacon/v1/batch` (sendBeacon, the key in the query), their
`text/plain` bodies, and CORS (preflights and answers) for the origins of browser keys.

A call sent with a browser key (keys.py) goes through browser.py's decisions: its origin
must be one the key lists (else 403), it may use neither server-only endpoints (403) nor
server-only calls, each client address has a rate (429 + Retry-After past it), and bots,
calls without the key's consent category or with Do-Not-Track are answered 200 but only
counted. CORS answers name the request's exact origin, and only an origin some browser key
lists: a page elsewhere cannot read an answer, and a preflight from it is refused.

A request is answered 200 only once the broker has acknowledged every message kept from it
(acks=all), so an SDK that got its 200 can forget the events. Each message is validated with
the worker's own decoder: a message the worker would dead-letter is refused here instead,
with the field at fault, while the sender can still fix it. In a batch each message stands
alone: the valid ones are kept, the others are listed by index in the answer. Answers carry
`code` and `message` as Segment's API does, which is what its SDKs log.

Nothing a sender or the broker does makes the collector hold more than its bounds
(`CollectorBounds`, each a setting): an answer lists at most a few invalid messages and
counts the rest; connections past a cap are answered 503 and closed, idle ones closed after
a timeout; a body must arrive within a timeout; the bytes of all requests in progress are
bounded; a batch context cannot multiply one request into more than a bound of records;
and Kafka's acknowledgement is awaited for a bounded time. Every refusal for load or an
outage is a 503 with `Retry-After`, which Segment's and RudderStack's SDKs retry.
"""

from __future__ import annotations

import asyncio
import math
import re
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Protocol

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from leadpulse.collector.browser import (
    BROWSER_CALLS,
    SHORT_PATHS,
    BrowserSettings,
    ClientRates,
    bot_reason,
    browser_message,
    client_address,
    consented,
    opted_out,
)
from leadpulse.collector.keys import BrowserKey, KeyRing, basic_auth_user, is_known
from leadpulse.schemas.events import decode_event
from leadpulse.schemas.fields import InvalidEvent, json_kind
from leadpulse.schemas.limits import InputLimits
from leadpulse.schemas.segment import NATIVE_FIELDS, SEGMENT_CALLS, is_segment
from leadpulse.scoring.engine import future_reason
from leadpulse.scoring.rules import Rules
from leadpulse.scoring.timeutil import format_ms, now_ms
from leadpulse.streams.settings import Settings

MAX_MESSAGE_BYTES = 32 * 1024
"""Segment's limit for one call; a message is measured as the JSON the collector produces."""
MAX_BATCH_BYTES = 500 * 1024
"""Segment's limit for a batch request, measured after gzip is undone (a gzip bomb stops here)."""
MAX_LISTED_CHARS = 200
"""A listed field path or reason is cut here: key names come from the sender."""
Record = tuple[bytes, bytes]  # (key, value) for the input topic
PREFLIGHT_MAX_AGE_S = 600
"""How long a browser may reuse a preflight's answer."""
MAX_REQUESTED_HEADERS = 500
"""Characters of Access-Control-Request-Headers echoed in a preflight's answer."""
_HEADER_LIST = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*")


@dataclass(frozen=True)
class CollectorBounds:
    """What one collector process may hold or wait for: the `LEADPULSE_COLLECT_*` settings
    (defaults and validation live there)."""

    max_connections: int
    idle_timeout_s: float
    body_timeout_s: float
    delivery_timeout_s: float
    retry_after_s: int
    max_in_flight_bytes: int
    max_expanded_bytes: int
    rejected_listed: int


class Sink(Protocol):
    """Where accepted messages go."""

    async def send(self, records: Sequence[Record], timeout_s: float) -> None:
        """Return once every record is acknowledged; raise when any is not within `timeout_s`
        (the request is then answered 503 and the SDK retries)."""

    def problem(self) -> str | None:
        """Why records cannot be delivered now (the broker is unreachable...), or None."""


class RequestError(Exception):
    """A request refused as a whole: `status`, Segment-style `code`, and a message naming the
    field; `retry` adds `Retry-After` (a 503: the same request may succeed later)."""

    def __init__(self, status: int, code: str, message: str, *, retry: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry = retry
        self.retry_after_s: int | None = None  # a Retry-After of its own (a client's rate), not the setting


def unavailable(message: str) -> RequestError:
    return RequestError(503, "unavailable", message, retry=True)


@dataclass(frozen=True)
class CollectorMetrics:
    registry: CollectorRegistry
    requests: Counter
    messages: Counter
    request_seconds: Histogram
    connections: Gauge
    refused_connections: Counter
    in_flight_bytes: Gauge
    ready: Gauge
    anonymous_calls: Counter

    @classmethod
    def create(cls) -> CollectorMetrics:
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            requests=Counter(
                "leadpulse_collector_requests", "HTTP requests by status code", ["status"], registry=registry
            ),
            messages=Counter(
                "leadpulse_collector_messages",
                "Messages by outcome: accepted (acknowledged by Kafka), rejected (invalid, answered with the field)",
                ["outcome"],
                registry=registry,
            ),
            request_seconds=Histogram(
                "leadpulse_collector_request_seconds",
                "Time from a request's arrival to its answer, Kafka's acknowledgement included",
                registry=registry,
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            ),
            connections=Gauge("leadpulse_collector_connections", "Open HTTP connections", registry=registry),
            refused_connections=Counter(
                "leadpulse_collector_refused_connections",
                "Connections answered 503 and closed because LEADPULSE_COLLECT_MAX_CONNECTIONS were open",
                registry=registry,
            ),
            in_flight_bytes=Gauge(
                "leadpulse_collector_in_flight_bytes",
                "Bytes of bodies and records held by requests in progress",
                registry=registry,
            ),
            ready=Gauge(
                "leadpulse_collector_ready",
                "1 when /health answers 200 (the broker takes records), else 0",
                registry=registry,
            ),
            anonymous_calls=Counter(
                "leadpulse_collector_anonymous_calls",
                "Browser calls counted but not kept: no consent for the key's category, or Do-Not-Track",
                ["call", "reason"],
                registry=registry,
            ),
        )


class InFlight:
    """The bytes held by requests in progress, against one bound for the process: a request
    that would pass it is answered 503 + Retry-After instead of waiting in memory."""

    def __init__(self, limit: int, gauge: Gauge) -> None:
        self.limit = limit
        self.used = 0
        self.gauge = gauge

    def take(self, size: int) -> None:
        if self.used + size > self.limit:
            raise unavailable(f"busy: {self.limit} bytes of requests in progress already, retry")
        self.used += size
        self.gauge.set(self.used)

    def give(self, size: int) -> None:
        self.used -= size
        self.gauge.set(self.used)

    def hold(self) -> Holding:
        return Holding(self)


class Holding:
    """One request's share of `InFlight`, given back in full when the request ends."""

    def __init__(self, budget: InFlight) -> None:
        self.budget = budget
        self.bytes = 0

    def take(self, size: int) -> None:
        self.budget.take(size)
        self.bytes += size

    def give(self, size: int) -> None:
        size = min(size, self.bytes)
        self.budget.give(size)
        self.bytes -= size

    def __enter__(self) -> Holding:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.give(self.bytes)


@dataclass
class Built:
    """What a request body became: the records to produce, and the invalid messages (all
    counted, the first few listed)."""

    records: list[Record] = field(default_factory=list)
    rejected: int = 0
    listed: list[dict[str, Any]] = field(default_factory=list)
    first: str = ""  # the first invalid message's field and reason, for the 400's message
    size: int = 0  # bytes of the records' values
    dropped: int = 0  # messages counted but not kept (a bot's, no consent, Do-Not-Track)

    def describes(self, listed: int) -> bool:
        """Whether the next invalid message is described (the first, or one of `listed`);
        the others only count, so a batch of 200,000 costs no 200,000 descriptions."""
        return self.rejected == 0 or len(self.listed) < listed

    def reject(self, path: str, index: int, where: str, reason: str, listed: int) -> None:
        if self.describes(listed):
            rejection = _rejection(path, index, where, reason)
            if self.rejected == 0:
                self.first = f"{rejection['field']}: {reason}" if rejection["field"] else reason
            if len(self.listed) < listed:
                self.listed.append(rejection)
        self.rejected += 1


@dataclass
class Page:
    """A request sent with a browser key: the key, and what browser.py decides with."""

    key: BrowserKey
    client: str  # the client's address (rate, and context.ip when kept)
    dropped: str | None  # why its calls are only counted (a bot, Do-Not-Track), or None


@dataclass
class Collector:
    keys: KeyRing
    sink: Sink
    rules: Rules
    limits: InputLimits
    bounds: CollectorBounds = field(default_factory=lambda: Settings().section(CollectorBounds, "collect_"))
    metrics: CollectorMetrics = field(default_factory=CollectorMetrics.create)
    clock: Callable[[], int] = now_ms
    browser: BrowserSettings = field(default_factory=lambda: Settings().section(BrowserSettings, "collect_"))
    in_flight: InFlight = field(init=False)
    rates: ClientRates = field(init=False)

    def __post_init__(self) -> None:
        self.in_flight = InFlight(self.bounds.max_in_flight_bytes, self.metrics.in_flight_bytes)
        self.metrics.ready.set_function(lambda: float(self.sink.problem() is None))  # /health's answer, at scrape
        self.rates = ClientRates(self.browser.browser_rate, self.browser.browser_burst, self.browser.browser_clients)

    def app(self) -> web.Application:
        app = web.Application()
        for path in ("/v1/batch", "/v1/b", "/beacon/v1/batch"):  # analytics.js batches; RudderStack's beacon
            self._route(app, path, None, server_only=False)
        self._route(app, "/v1/import", None, server_only=True)  # Segment's older name for the batch call
        for call in SEGMENT_CALLS:
            self._route(app, f"/v1/{call}", call, server_only=call not in BROWSER_CALLS)
        for letter, call in SHORT_PATHS.items():
            self._route(app, f"/v1/{letter}", call, server_only=call not in BROWSER_CALLS)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.prometheus)
        return app

    def _route(self, app: web.Application, path: str, call: str | None, *, server_only: bool) -> None:
        async def handle(request: web.Request) -> web.Response:
            return await self._answer(request, call, server_only)

        app.router.add_post(path, handle)
        app.router.add_route("OPTIONS", path, self.preflight)

    async def preflight(self, request: web.Request) -> web.Response:
        """A browser asks whether a page may post here: yes for an origin some browser key
        lists (the key itself is not sent with a preflight), with that exact origin named;
        otherwise 403 without CORS headers, so the browser never sends the call."""
        origin = request.headers.get("Origin")
        if origin is None or origin not in self.keys.origins:
            self.metrics.requests.labels("403").inc()
            return web.Response(status=403, text="origin not allowed by any browser write key\n")
        requested = request.headers.get("Access-Control-Request-Headers", "")[:MAX_REQUESTED_HEADERS]
        allowed = requested if _HEADER_LIST.fullmatch(requested) else "Content-Type, Authorization"
        headers = {
            **_cors(origin),
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": allowed,
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
        }
        self.metrics.requests.labels("204").inc()
        return web.Response(status=204, headers=headers)

    async def health(self, _request: web.Request) -> web.Response:
        """Ready means able to deliver: 503 with the reason while the broker cannot take records."""
        problem = self.sink.problem()
        if problem is not None:
            return web.json_response({"status": "unavailable", "reason": problem}, status=503)
        return web.json_response({"status": "ok"})

    async def prometheus(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry), content_type="text/plain")

    async def _answer(self, request: web.Request, call: str | None, server_only: bool) -> web.Response:
        started = perf_counter()
        origin = request.headers.get("Origin")
        headers = _cors(origin) if origin is not None and origin in self.keys.origins else {}
        if origin is not None:
            headers["Vary"] = "Origin"
        try:
            status, answer = await self._collect(request, call, server_only)
        except RequestError as error:
            status, answer = error.status, {"success": False, "code": error.code, "message": error.message}
            if error.retry_after_s is not None:
                headers["Retry-After"] = str(error.retry_after_s)
            elif error.retry:
                headers["Retry-After"] = str(self.bounds.retry_after_s)
        self.metrics.requests.labels(str(status)).inc()
        self.metrics.request_seconds.observe(perf_counter() - started)
        response = web.Response(body=orjson.dumps(answer), status=status, content_type="application/json")
        response.headers.update(headers)
        if status == 408:  # the rest of the body may still come: not worth waiting for on this connection
            response.force_close()
        return response

    async def _collect(self, request: web.Request, call: str | None, server_only: bool) -> tuple[int, dict[str, Any]]:
        header_key = basic_auth_user(request.headers.get("Authorization"))
        if header_key is None and "writeKey" in request.query:  # RudderStack's beacon: sendBeacon sends no header
            header_key = request.query["writeKey"].encode()
        page = None
        if header_key is not None:
            page = self._page(request, header_key, server_only)
            if page is None and not is_known(header_key, self.keys.server):
                raise RequestError(401, "unauthorized", "unknown write key (HTTP basic auth user name)")
            if page is not None:  # an exhausted client is refused before its body is read
                wait = self.rates.waiting(page.client, self.clock() / 1000)
                if wait > 0:
                    raise self._limited(page, 1, wait)
        problem = self.sink.problem()
        if problem is not None:  # answered at once: the SDK retries later, nothing is held meanwhile
            raise unavailable(f"Kafka cannot take events now ({problem}), retry")
        with self.in_flight.hold() as holding:
            try:
                async with asyncio.timeout(self.bounds.body_timeout_s):
                    body = await read_body(request, MAX_BATCH_BYTES, holding.take)
            except TimeoutError:
                raise RequestError(
                    408, "timeout", f"body: not received within {self.bounds.body_timeout_s:g} s"
                ) from None
            built = self._build(body, header_key, call, page=page, request=request, server_only=server_only)
            holding.give(len(body))  # parsed and copied into records: only those are held from here
            del body
            holding.take(built.size)
            self.metrics.messages.labels("rejected").inc(built.rejected)
            if not built.records and built.dropped and not built.rejected:  # nothing to keep, nothing wrong
                return 200, {"success": True, "accepted": 0, "dropped": built.dropped}
            if not built.records:
                more = f" (and {built.rejected - 1} more messages refused)" if built.rejected > 1 else ""
                answer = {"success": False, "code": "invalid_request", "message": built.first + more}
                return 400, answer | (self._rejections(built) if call is None else {})
            try:
                await self.sink.send(built.records, self.bounds.delivery_timeout_s)
            except Exception as error:  # whatever the producer raised, the sender must retry
                raise unavailable(f"Kafka did not take the events, retry: {error}") from None
        self.metrics.messages.labels("accepted").inc(len(built.records))
        answer = {"success": True, "accepted": len(built.records)}
        if built.dropped:
            answer["dropped"] = built.dropped
        return 200, answer | (self._rejections(built) if built.rejected else {})

    def _page(self, request: web.Request, key: bytes, server_only: bool) -> Page | None:
        """The browser key `key` is, with what its request may do; None for any other key.
        Refused (403) from an origin the key does not list (a browser always sends Origin
        with a POST) or at an endpoint that only server keys may use."""
        browser_key = self.keys.browser_key(key)
        if browser_key is None:
            return None
        origin = request.headers.get("Origin")
        if origin is None or origin not in browser_key.origins:
            raise RequestError(
                403, "forbidden", f"Origin {str(origin)[:100]!r}: not an origin of this browser write key"
            )
        if server_only:
            raise RequestError(403, "forbidden", f"{request.path}: for server write keys only")
        headers = request.headers
        dropped = bot_reason(headers.get("User-Agent"), self.browser.headless_bots)
        if dropped is None and self.browser.do_not_track and opted_out(headers.get("DNT"), headers.get("Sec-GPC")):
            dropped = "do_not_track"
        client = client_address(request.remote, headers.get("X-Forwarded-For"), self.browser.forwarded_for)
        return Page(browser_key, client, dropped)

    def _limited(self, page: Page, count: int, wait: float) -> RequestError:
        """429 asking to wait until the client's bucket holds `count` messages; a request
        of more messages than a burst could ever be is a 400 instead (retrying cannot help)."""
        if math.isinf(wait):
            return RequestError(
                400,
                "payload_too_large",
                f"{count} messages in one request: over {self.browser.browser_burst} for a browser",
            )
        error = RequestError(
            429, "rate_limited", f"over {self.browser.browser_rate:g} messages/s from {page.client}, retry"
        )
        error.retry_after_s = max(1, math.ceil(wait))
        return error

    @staticmethod
    def _rejections(built: Built) -> dict[str, Any]:
        return {"rejected_count": built.rejected, "rejected": built.listed}

    def _build(
        self,
        raw: bytes,
        header_key: bytes | None,
        call: str | None,
        *,
        page: Page | None,
        request: web.Request,
        server_only: bool,
    ) -> Built:
        """The request's records, built without awaiting anything: the parsed body (which
        may take many times its size in memory) lives only while this runs."""
        body = _json_object(raw)
        if header_key is None:
            body_key = _body_key(body)
            page = None if body_key is None else self._page(request, body_key, server_only)
            if page is None and not is_known(body_key, self.keys.server):
                raise RequestError(401, "unauthorized", "a write key is required as the HTTP basic auth user name")
        received = format_ms(self.clock())
        if call is not None:
            messages: Any = [{**body, "type": call}]
        else:
            messages = body.get("batch")
            if not isinstance(messages, list) or not messages:
                raise RequestError(
                    400, "invalid_request", f"batch: expected a list of messages, got {json_kind(messages)}"
                )
        if page is not None:
            wait = self.rates.take(page.client, len(messages), self.clock() / 1000)
            if wait > 0:
                raise self._limited(page, len(messages), wait)
            if page.dropped is not None:
                return self._dropped(messages, page.dropped)
        if call is not None:
            return self._messages(messages, {}, received, "", page)
        shared: dict[str, Any] = {"sentAt": body.get("sentAt")}
        context = body.get("context")
        if isinstance(context, dict) and context:
            self._check_shared_context(context, len(messages))
            shared["context"] = context
        return self._messages(messages, shared, received, "batch", page)

    def _dropped(self, messages: list[Any], reason: str) -> Built:
        """A bot's calls, or a browser's that asked not to be tracked: counted, not kept."""
        if reason == "do_not_track":
            for message in messages:
                self.metrics.anonymous_calls.labels(_call_label(message), reason).inc()
        else:
            self.metrics.messages.labels("bot").inc(len(messages))
        return Built(dropped=len(messages))

    def _check_shared_context(self, context: dict[str, Any], count: int) -> None:
        """A batch-level context is copied into each message: refused whole when it alone
        passes a message's limit (every message would) or when the copies would pass the
        request's bound, before any copy is made."""
        size = len(orjson.dumps(context))
        if size > MAX_MESSAGE_BYTES:
            raise RequestError(
                400,
                "payload_too_large",
                f"context: {size} bytes, over the limit of one message ({MAX_MESSAGE_BYTES} bytes, 32 KB): "
                "it is copied into each message",
            )
        if size * count > self.bounds.max_expanded_bytes:
            raise RequestError(
                400,
                "payload_too_large",
                f"context: {size} bytes copied into each of {count} messages makes more than "
                f"{self.bounds.max_expanded_bytes} bytes; send smaller batches, or the context in the messages",
            )

    def _messages(
        self, messages: list[Any], shared: dict[str, Any], received: str, path: str, page: Page | None
    ) -> Built:
        built = Built()
        listed, bound = self.bounds.rejected_listed, self.bounds.max_expanded_bytes
        for index, message in enumerate(messages):
            if not isinstance(message, dict):  # no exception, no text: a batch may hold 200,000 of them
                if built.describes(listed):
                    built.reject(path, index, "", f"expected a JSON object, got {json_kind(message)}", listed)
                else:
                    built.rejected += 1
                continue
            try:
                record = self._record(message, shared, received, page)
            except InvalidEvent as error:
                built.reject(path, index, error.field, error.reason, listed)
                continue
            if record is None:
                self.metrics.anonymous_calls.labels(_call_label(message), "no_consent").inc()
                built.dropped += 1
                continue
            built.records.append(record)
            built.size += len(record[1])
            if built.size > bound:
                raise RequestError(
                    400,
                    "payload_too_large",
                    f"{path or 'body'}: the messages make more than {bound} bytes once the batch's "
                    "sentAt and context are filled in; send smaller batches",
                )
        return built

    def _record(
        self, message: dict[str, Any], shared: dict[str, Any], received: str, page: Page | None
    ) -> Record | None:
        """One message as the input topic gets it: batch-level sentAt and context filled in
        (the message's own win), `receivedAt` stamped (for Segment's clock-skew correction),
        a `messageId` given to a message without one, then checked exactly as the worker
        will check it. A page's message is first limited to what its browser key may send
        (browser.py); None when it lacks the key's consent category (only counted then).

        The id is random, so two calls alike in every field are two events, as Segment
        counts them (the worker would otherwise derive one id from their content and drop
        the second as a duplicate); a message with its own id keeps it, so an SDK's retry
        is still a duplicate."""
        _check_shape(message)
        message = dict(message)
        message.pop("writeKey", None)  # a secret: not for the topic
        if message.get("sentAt") is None and shared.get("sentAt") is not None:
            message["sentAt"] = shared["sentAt"]
        context = shared.get("context")
        if context is not None:
            own = message.get("context")
            if own is None:
                message["context"] = context  # shared, not copied: only serialised below
            elif isinstance(own, dict):
                message["context"] = {**context, **own}
        if page is not None:
            message = browser_message(message, page.key, page.client if self.browser.keep_ip else None)
            if page.key.consent is not None and not consented(message, page.key.consent):
                return None
        if message.get("messageId") is None:
            message["messageId"] = str(uuid.uuid4())
        message["receivedAt"] = received
        value = orjson.dumps(message)
        if len(value) > MAX_MESSAGE_BYTES:
            raise InvalidEvent("", f"message is {len(value)} bytes, over the limit of {MAX_MESSAGE_BYTES} (32 KB)")
        event = decode_event(value, self.limits, self.rules.mapping)
        reason = future_reason(event, self.clock(), self.rules)
        if reason is not None:
            raise InvalidEvent("timestamp", "the event time " + reason.removeprefix("occurred_at "))
        return event.contact_id.encode(), value


def _cors(origin: str) -> dict[str, str]:
    """CORS headers naming `origin` exactly (never `*`: the SDKs may send credentials)."""
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Expose-Headers": "Retry-After",
        "Vary": "Origin",
    }


def _call_label(message: Any) -> str:
    """A metric label for a message's call, from a closed set (the type is the sender's)."""
    call = message.get("type") if isinstance(message, dict) else None
    return call if call in BROWSER_CALLS else "other"


def _rejection(path: str, index: int, where: str, reason: str) -> dict[str, Any]:
    prefix = f"{path}[{index}]" if path else ""
    name = ".".join(part for part in (prefix, where) if part)
    return {"index": index, "field": _cut(name), "reason": _cut(reason)}


def _cut(text: str) -> str:
    return text if len(text) <= MAX_LISTED_CHARS else text[:MAX_LISTED_CHARS] + "..."


def _check_shape(message: dict[str, Any]) -> None:
    """Only Segment messages come through here: a native event would be accepted by the
    decoder, but a sender of native events should write to the topic (`leadpulse produce`)."""
    if is_segment(message):
        return
    call = message.get("type")
    if call not in SEGMENT_CALLS:
        raise InvalidEvent("type", f"expected one of {', '.join(SEGMENT_CALLS)}, got {json_kind(call)}")
    native = next(name for name in NATIVE_FIELDS if name in message)
    raise InvalidEvent(native, "a field of LeadPulse's native events; Segment messages use userId/anonymousId")


async def read_body(request: web.Request, limit: int, reserve: Callable[[int], None] | None = None) -> bytes:
    """The request body, gzip undone, refused past `limit` bytes either way: it is read in
    chunks and inflated a bounded step at a time, so an oversized or bomb-like body costs
    the collector at most `limit` bytes of memory; `reserve(n)` is told of each n bytes
    the body grows by (and may refuse them)."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise RequestError(400, "invalid_request", f"Content-Encoding: {encoding!r} is not supported (gzip is)")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
    body = bytearray()
    received = 0
    async for chunk in request.content.iter_any():
        received += len(chunk)
        if received > limit:
            raise _too_large(limit)
        before = len(body)
        if inflater is None:
            body += chunk
        else:
            pending = chunk
            try:
                while pending:
                    body += inflater.decompress(pending, limit + 1 - len(body))
                    if len(body) > limit:
                        raise _too_large(limit)
                    pending = inflater.unconsumed_tail
            except zlib.error:
                raise RequestError(
                    400, "invalid_request", "body: Content-Encoding is gzip but the body is not"
                ) from None
        if reserve is not None:
            reserve(len(body) - before)
    if inflater is not None and not inflater.eof:
        raise RequestError(400, "invalid_request", "body: the gzip data ends before its end")
    return bytes(body)


def _too_large(limit: int) -> RequestError:
    return RequestError(400, "payload_too_large", f"body: over the limit of {limit} bytes ({limit // 1024} KB)")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise RequestError(400, "invalid_request", f"body: not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise RequestError(400, "invalid_request", f"body: expected a JSON object, got {json_kind(document)}")
    return document


def _body_key(body: dict[str, Any]) -> bytes | None:
    """Segment's API also takes the write key as `writeKey` in the body."""
    key = body.get("writeKey")
    return key.encode() if isinstance(key, str) else None


def runner(collector: Collector) -> web.AppRunner:
    """The collector's runner: aiohttp must not inflate bodies itself (read_body does,
    bounded), and closes a connection without a complete request head after the idle
    timeout, counted from its opening or its previous answer (a half-open or idle
    connection, or one that sends its head a byte at a time)."""
    return web.AppRunner(
        collector.app(),
        auto_decompress=False,
        access_log=None,
        keepalive_timeout=collector.bounds.idle_timeout_s,
    )


REFUSAL_LINGER_S = 1.0
"""A refused connection is kept this long (its 503 sent, its input discarded) so that the
client reads the 503 rather than a reset; at most MAX_LINGERING such connections at once."""
MAX_LINGERING = 100


class ConnectionCap:
    """The collector's protocol factory: aiohttp's request handler for each connection while
    fewer than `limit` are open; past that a connection is answered 503 + Retry-After and
    closed, so the process never runs out of file descriptors (an accept that fails for
    want of one is logged with a traceback by asyncio, once per attempt)."""

    def __init__(self, collector: Collector, server: web.Server) -> None:
        self.limit = collector.bounds.max_connections
        self.metrics = collector.metrics
        self.server = server
        self.open = 0
        self.lingering = 0
        answer = orjson.dumps(
            {"success": False, "code": "unavailable", "message": f"busy: {self.limit} connections open, retry"}
        )
        self.busy = (
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            + f"Retry-After: {collector.bounds.retry_after_s}\r\nContent-Length: {len(answer)}\r\n".encode()
            + b"Connection: close\r\n\r\n"
            + answer
        )

    def __call__(self) -> asyncio.Protocol:
        return _Connection(self)


class _Connection(asyncio.Protocol):
    """One connection: handed to aiohttp's handler if the cap allows, else refused."""

    def __init__(self, cap: ConnectionCap) -> None:
        self.cap = cap
        self.handler: asyncio.Protocol | None = None
        self.refusal: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cap = self.cap
        if cap.open < cap.limit:
            cap.open += 1
            cap.metrics.connections.set(cap.open)
            self.handler = cap.server()
            self.handler.connection_made(transport)
            return
        cap.metrics.refused_connections.inc()
        assert isinstance(transport, asyncio.Transport)
        transport.write(cap.busy)
        if cap.lingering >= MAX_LINGERING or not transport.can_write_eof():
            transport.close()
            return
        cap.lingering += 1
        transport.write_eof()
        self.refusal = asyncio.get_running_loop().call_later(REFUSAL_LINGER_S, transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.handler is not None:
            self.cap.open -= 1
            self.cap.metrics.connections.set(self.cap.open)
            self.handler.connection_lost(exc)
        elif self.refusal is not None:
            self.cap.lingering -= 1
            self.refusal.cancel()

    def data_received(self, data: bytes) -> None:
        if self.handler is not None:
            self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self.handler.eof_received() if self.handler is not None else None

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.resume_writing()


class CollectorSite(web.BaseSite):
    """A TCP site whose connections go through `ConnectionCap`."""

    def __init__(self, app_runner: web.AppRunner, collector: Collector, host: str, port: int, backlog: int) -> None:
        super().__init__(app_runner, backlog=backlog)
        self.collector = collector
        self.host = host
        self.port = port

    @property
    def name(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        cap = ConnectionCap(self.collector, server)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(cap, self.host, self.port, backlog=self._backlog)
