"""The query API on the worker's web port: GET /contacts/{id} and GET /accounts/{id} (routed
by Faust to the worker that owns the key's partition, with the caller's headers), and GET
/health and /metrics. /contacts and /accounts serve personal data: with a tokens file they
need a bearer token, and without one the settings keep the port on loopback (Settings.check)."""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from faust.exceptions import ConsumerNotStarted
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from leadpulse.schemas.fields import normalized_id
from leadpulse.schemas.outputs import account_record, dumps, snapshot_record
from leadpulse.scoring.accounts import account_snapshot
from leadpulse.scoring.engine import snapshot, view_of
from leadpulse.scoring.identity import is_published, winner
from leadpulse.scoring.replay import LAST_EVENT
from leadpulse.scoring.timeutil import now_ms, parse_rfc3339_ms
from leadpulse.streams.pipeline import AGENTS
from leadpulse.streams.quiet import BROKERS
from leadpulse.streams.settings import read_tokens

if TYPE_CHECKING:
    from leadpulse.streams.pipeline import Pipeline


View = Callable[..., Awaitable[Any]]


def register_views(pipeline: Pipeline) -> None:
    settings = pipeline.settings
    if settings.query_api:
        tokens = read_tokens(settings.api_tokens_file) if settings.api_tokens_file else None
        _register_contacts(pipeline, tokens)
    if settings.health_metrics:
        _register_health(pipeline)


def bearer_guard(tokens: tuple[str, ...] | None) -> Callable[[View], View]:
    """401 unless the request carries one of `tokens` (None: no authentication). Checked
    before Faust routes the request, so an unauthenticated caller never reaches another
    worker; every token is compared, in constant time, so timing tells nothing about them."""
    expected = [token.encode() for token in tokens or ()]

    def decorate(view: View) -> View:
        if tokens is None:
            return view

        async def guarded(web: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            if not known_token(bearer_of(request.headers.get("Authorization", "")), expected):
                return web.json(
                    {"error": "a bearer token is required (Authorization: Bearer <token>)"},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="leadpulse"'},
                )
            return await view(web, request, *args, **kwargs)

        return guarded

    return decorate


def bearer_of(header: str) -> bytes:
    """The token of an `Authorization: Bearer <token>` header (empty if it is none)."""
    scheme, _, offered = header.partition(" ")
    return offered.strip().encode() if scheme.lower() == "bearer" else b""


def known_token(given: bytes, expected: list[bytes]) -> bool:
    """Whether `given` is one of `expected`: every token compared, in constant time."""
    matched = False
    for token in expected:
        matched |= hmac.compare_digest(given, token)
    return matched and bool(given)


def normalized_contact_id(view: View) -> View:
    """`/contacts/Eve@VictimCorp.com` is the contact the worker keys `eve@victimcorp.com`, as
    every id is normalized where it enters (schemas.fields.normalized_id): rewritten before
    Faust routes the request to the worker that owns it."""

    async def normalized(web: Any, request: Any, *args: Any, contact_id: str, **kwargs: Any) -> Any:
        contact_id = normalized_id(contact_id)
        request.match_info["contact_id"] = contact_id
        return await view(web, request, *args, contact_id=contact_id, **kwargs)

    return normalized


def _register_contacts(pipeline: Pipeline, tokens: tuple[str, ...] | None) -> None:
    app, contacts = pipeline.app, pipeline.contacts

    @app.page("/contacts/{contact_id}")
    @bearer_guard(tokens)
    @normalized_contact_id
    @app.table_route(table=contacts.table, match_info="contact_id")
    async def contact(web: Any, request: Any, contact_id: str) -> Any:
        """The snapshot now (`?at=` an RFC 3339 time, or `last-event` as the stream published it).
        A merged anonymous id has no snapshot of its own: 404 naming the contact it counts for
        (not a redirect: that contact may live on another worker, and the caller decides)."""
        state = contacts.get(contact_id)
        merged_into = None if state is None else winner(state)
        if state is None or (merged_into is None and not is_published(state)):  # unknown, or only a refused link
            return web.json({"error": f"unknown contact {contact_id!r}"}, status=404)
        if merged_into is not None:
            error = f"{contact_id!r} is an anonymous id merged into contact {merged_into!r}"
            return web.json({"error": error, "merged_into": merged_into}, status=404)
        at = request.query.get("at")
        if at == LAST_EVENT:
            at_ms = view_of(state, pipeline.rules).last_event_ms
        elif at:
            try:
                at_ms = parse_rfc3339_ms(at)
            except ValueError as error:
                return web.json({"error": f"at: {error}"}, status=400)
        else:
            at_ms = max(now_ms(), view_of(state, pipeline.rules).last_event_ms)
        return web.bytes(
            dumps(snapshot_record(snapshot(state, at_ms, pipeline.rules))), content_type="application/json"
        )

    @app.page("/accounts/{account_id}")
    @bearer_guard(tokens)
    @app.table_route(table=pipeline.accounts.table, match_info="account_id")
    async def account(web: Any, request: Any, account_id: str) -> Any:
        """The account as last published: a function of its members' latest records, at the
        newest member's time (a member's score is the one its own snapshot published)."""
        aggregate = pipeline.accounts.aggregate(account_id)
        if aggregate is not None and aggregate.legacy:  # stored by an older version, not yet migrated
            view = account_snapshot(account_id, aggregate.legacy, pipeline.rules)
            published = None if view is None else account_record(view)
        else:
            published = None if aggregate is None else aggregate.published
        if published is None:
            return web.json({"error": f"unknown account {account_id!r}"}, status=404)
        return web.bytes(dumps(published), content_type="application/json")


def _register_health(pipeline: Pipeline) -> None:
    app = pipeline.app
    _bind_health_gauges(pipeline)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        """Ours and Faust's (streams/monitor.py), one registry."""
        return web.bytes(generate_latest(pipeline.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        """200 once the agent consumes every input of the partitions it owns and deliveries
        succeed; 503 before that (starting, rebalancing), while a broker is unreachable or
        refuses the credentials, or while deliveries fail. `pid` tells a process that started
        the worker whether this answer is its worker's (cli/processes.py)."""
        assigned = _assignment(app)
        problem = _problem(pipeline, assigned)
        assigned = assigned or set()
        readiness = pipeline.readiness
        return web.json(
            {
                "status": "ok" if problem is None else "unavailable",
                "reason": problem,
                "pid": os.getpid(),
                "rules_version": pipeline.rules.version,
                "assigned_partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in assigned),
                "cooling_scheduled": len(pipeline.cooling),
                "delivery_error": readiness.deliveries.last_error,
            },
            status=200 if problem is None else 503,
        )


def _bind_health_gauges(pipeline: Pipeline) -> None:
    """The /health answer as gauges, computed when Prometheus scrapes (nothing runs between
    scrapes): alerts can then tell a worker that is down (`up == 0`) from one that answers
    but is not ready, and a restore that lasts from one that fails (deploy/prometheus/alerts.yml)."""
    metrics, app = pipeline.metrics, pipeline.app
    metrics.ready.set_function(lambda: float(_problem(pipeline, _assignment(app)) is None))
    metrics.restoring.set_function(lambda: float(bool(app.rebalancing) and bool(_assignment(app))))
    metrics.deliveries_failing.set_function(lambda: float(pipeline.readiness.deliveries.failing_since is not None))


def _problem(pipeline: Pipeline, assigned: set[Any] | None) -> str | None:
    """Why the worker is not ready (None: ready), the reason /health gives."""
    problem = BROKERS.problem()
    if problem is None:
        problem = _not_ready(pipeline, assigned) if assigned is not None else "the consumer is starting"
    return problem


def _assignment(app: Any) -> set[Any] | None:
    """The consumer's partitions, or None while its thread is not started: the web server
    answers before the consumer exists, and a probe then must get 503, not an error."""
    try:
        return set(app.consumer.assignment())
    except ConsumerNotStarted:
        return None


def _not_ready(pipeline: Pipeline, assigned: set[Any]) -> str | None:
    idle = [agent for agent in AGENTS if agent not in pipeline.readiness.consuming]
    if idle:
        return f"the {' and '.join(idle)} agent{'s are' if len(idle) > 1 else ' is'} not consuming yet"
    topics = pipeline.topics
    inputs = [
        topic.get_topic_name() for topic in (topics.events, topics.by_contact, topics.cooling, topics.account_members)
    ]
    owned = {tp.partition for tp in assigned if tp.topic == inputs[0]}
    if not owned:
        return "no partition assigned yet"
    missing = sorted(
        f"{topic}:{p}"
        for topic in inputs
        for p in owned
        if not any(tp.topic == topic and tp.partition == p for tp in assigned)
    )
    if missing:
        return f"inputs not assigned: {', '.join(missing)}"
    if pipeline.app.rebalancing:  # from an assignment until its tables are recovered
        return "restoring the tables of its partitions from their changelogs"
    if pipeline.readiness.deliveries.failing_since is not None:
        return f"deliveries failing: {pipeline.readiness.deliveries.last_error}"
    return None
