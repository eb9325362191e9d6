"""The query API on the worker's web port: GET /contacts/{id} (routed by Faust to the worker
that owns the contact's partition) and GET /health."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from schemas.outputs import dumps, snapshot_record
from scoring.engine import snapshot
from scoring.timeutil import now_ms, parse_rfc3339_ms
from streams.offline import LAST_EVENT

if TYPE_CHECKING:
    from streams.pipeline import Pipeline


def register_views(pipeline: Pipeline) -> None:
    app, contacts = pipeline.app, pipeline.contacts

    @app.page("/contacts/{contact_id}")
    @app.table_route(table=contacts.table, match_info="contact_id")
    async def contact(web: Any, request: Any, contact_id: str) -> Any:
        """The snapshot now (`?at=` an RFC 3339 time, or `last-event` as the stream published it)."""
        state = contacts.get(contact_id)
        if state is None:
            return web.json({"error": f"unknown contact {contact_id!r}"}, status=404)
        at = request.query.get("at")
        if at == LAST_EVENT:
            at_ms = state.last_event_ms
        elif at:
            try:
                at_ms = parse_rfc3339_ms(at)
            except ValueError as error:
                return web.json({"error": f"at: {error}"}, status=400)
        else:
            at_ms = max(now_ms(), state.last_event_ms)
        return web.bytes(
            dumps(snapshot_record(snapshot(state, at_ms, pipeline.rules))), content_type="application/json"
        )

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        assigned = app.consumer.assignment() if app.consumer else set()
        return web.json(
            {
                "status": "ok",
                "rules_version": pipeline.rules.version,
                "assigned_partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in assigned),
                "cooling_scheduled": len(pipeline.cooling),
            }
        )
