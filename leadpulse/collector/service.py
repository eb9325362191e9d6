"""The collector's HTTP side: Segment's tracking API (`POST /v1/batch`, `/v1/track`,
`/v1/identify`, `/v1/page`, `/v1/screen`, `/v1/group`, `/v1/alias`).

A request is answered 200 only once the broker has acknowledged every message kept from it
(acks=all), so an SDK that got its 200 can forget the events. Each message is validated with
the worker's own decoder: a message the worker would dead-letter is refused here instead,
with the field at fault, while the sender can still fix it. In a batch each message stands
alone: the valid ones are kept, the others are listed by index in the answer. Answers carry
`code` and `message` as Segment's API does, which is what its SDKs log.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Protocol

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from leadpulse.collector.keys import basic_auth_user, is_known
from leadpulse.schemas.events import decode_event
from leadpulse.schemas.fields import InvalidEvent, json_kind
from leadpulse.schemas.limits import InputLimits
from leadpulse.schemas.segment import NATIVE_FIELDS, SEGMENT_CALLS, is_segment
from leadpulse.scoring.engine import future_reason
from leadpulse.scoring.rules import Rules
from leadpulse.scoring.timeutil import format_ms, now_ms

MAX_MESSAGE_BYTES = 32 * 1024
"""Segment's limit for one call; a message is measured as the JSON the collector produces."""
MAX_BATCH_BYTES = 500 * 1024
"""Segment's limit for a batch request, measured after gzip is undone (a gzip bomb stops here)."""
Record = tuple[bytes, bytes]  # (key, value) for the input topic


class Sink(Protocol):
    """Where accepted messages go; `send` returns once every record is acknowledged and
    raises when any is not (the request is then answered 503 and the SDK retries)."""

    async def send(self, records: Sequence[Record]) -> None: ...


class RequestError(Exception):
    """A request refused as a whole: `status`, Segment-style `code`, and a message naming the field."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class CollectorMetrics:
    registry: CollectorRegistry
    requests: Counter
    messages: Counter
    request_seconds: Histogram

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
        )


@dataclass
class Collector:
    keys: tuple[bytes, ...]
    sink: Sink
    rules: Rules
    limits: InputLimits
    metrics: CollectorMetrics = field(default_factory=CollectorMetrics.create)
    clock: Callable[[], int] = now_ms

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/batch", self.batch)
        app.router.add_post("/v1/import", self.batch)  # Segment's older name for the batch call
        for call in SEGMENT_CALLS:
            app.router.add_post(f"/v1/{call}", self._single(call))
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.prometheus)
        return app

    async def batch(self, request: web.Request) -> web.Response:
        return await self._answer(request, None)

    def _single(self, call: str) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.Response:
            return await self._answer(request, call)

        return handle

    async def health(self, _request: web.Request) -> web.Response:
        """The server listens only once its producer has started: answering is being ready."""
        return web.json_response({"status": "ok"})

    async def prometheus(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry), content_type="text/plain")

    async def _answer(self, request: web.Request, call: str | None) -> web.Response:
        started = perf_counter()
        try:
            status, answer = await self._collect(request, call)
        except RequestError as error:
            status, answer = error.status, {"success": False, "code": error.code, "message": error.message}
        self.metrics.requests.labels(str(status)).inc()
        self.metrics.request_seconds.observe(perf_counter() - started)
        return web.Response(body=orjson.dumps(answer), status=status, content_type="application/json")

    async def _collect(self, request: web.Request, call: str | None) -> tuple[int, dict[str, Any]]:
        header_key = basic_auth_user(request.headers.get("Authorization"))
        if header_key is not None and not is_known(header_key, self.keys):
            raise RequestError(401, "unauthorized", "unknown write key (HTTP basic auth user name)")
        body = _json_object(await read_body(request, MAX_BATCH_BYTES))
        if header_key is None and not is_known(_body_key(body), self.keys):
            raise RequestError(401, "unauthorized", "a write key is required as the HTTP basic auth user name")
        received = format_ms(self.clock())
        if call is None:
            messages = body.get("batch")
            if not isinstance(messages, list) or not messages:
                raise RequestError(
                    400, "invalid_request", f"batch: expected a list of messages, got {json_kind(messages)}"
                )
            shared = {"sentAt": body.get("sentAt"), "context": body.get("context")}
            paths = [f"batch[{index}]" for index in range(len(messages))]
        else:
            messages, shared, paths = [{**body, "type": call}], {}, [""]
        records: list[Record] = []
        rejected: list[dict[str, Any]] = []
        for index, (path, message) in enumerate(zip(paths, messages, strict=True)):
            try:
                records.append(self._record(message, shared, received))
            except InvalidEvent as error:
                where = ".".join(part for part in (path, error.field) if part)
                rejected.append({"index": index, "field": where, "reason": error.reason})
        self.metrics.messages.labels("rejected").inc(len(rejected))
        if not records:
            first = rejected[0]
            message = f"{first['field']}: {first['reason']}" if first["field"] else first["reason"]
            more = f" (and {len(rejected) - 1} more messages refused)" if len(rejected) > 1 else ""
            answer = {"success": False, "code": "invalid_request", "message": message + more}
            return 400, answer | ({"rejected": rejected} if call is None else {})
        try:
            await self.sink.send(records)
        except Exception as error:  # whatever the producer raised, the sender must retry
            raise RequestError(503, "unavailable", f"Kafka did not take the events, retry: {error}") from None
        self.metrics.messages.labels("accepted").inc(len(records))
        answer = {"success": True, "accepted": len(records)}
        return 200, answer | ({"rejected": rejected} if rejected else {})

    def _record(self, message: Any, shared: dict[str, Any], received: str) -> Record:
        """One message as the input topic gets it: batch-level sentAt and context filled in
        (the message's own win), `receivedAt` stamped (for Segment's clock-skew correction),
        then checked exactly as the worker will check it."""
        if not isinstance(message, dict):
            raise InvalidEvent("", f"expected a JSON object, got {json_kind(message)}")
        message = dict(message)
        message.pop("writeKey", None)  # a secret: not for the topic
        if message.get("sentAt") is None and shared.get("sentAt") is not None:
            message["sentAt"] = shared["sentAt"]
        if isinstance(shared.get("context"), dict) and isinstance(message.get("context", {}), dict):
            message["context"] = {**shared["context"], **message.get("context", {})}
        message["receivedAt"] = received
        _check_shape(message)
        value = orjson.dumps(message)
        if len(value) > MAX_MESSAGE_BYTES:
            raise InvalidEvent("", f"message is {len(value)} bytes, over the limit of {MAX_MESSAGE_BYTES} (32 KB)")
        event = decode_event(value, self.limits, self.rules.mapping)
        reason = future_reason(event, self.clock(), self.rules)
        if reason is not None:
            raise InvalidEvent("timestamp", "the event time " + reason.removeprefix("occurred_at "))
        return event.contact_id.encode(), value


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


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, gzip undone, refused past `limit` bytes either way: it is read in
    chunks and inflated a bounded step at a time, so an oversized or bomb-like body costs
    the collector at most `limit` bytes of memory."""
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
        if inflater is None:
            body += chunk
            continue
        pending = chunk
        try:
            while pending:
                body += inflater.decompress(pending, limit + 1 - len(body))
                if len(body) > limit:
                    raise _too_large(limit)
                pending = inflater.unconsumed_tail
        except zlib.error:
            raise RequestError(400, "invalid_request", "body: Content-Encoding is gzip but the body is not") from None
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
    """The collector's runner: aiohttp must not inflate bodies itself (read_body does, bounded)."""
    return web.AppRunner(collector.app(), auto_decompress=False, access_log=None)
