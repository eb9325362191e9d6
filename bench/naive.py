"""The reference for bench.pipeline: the Faust agent a first implementation would write.
One event at a time, a table read and write per event, every send awaited, Faust's default
producer settings; only the group timeouts are lowered so that joins do not dominate.

    LEADPULSE_... python -m bench.naive worker -l info
"""

from __future__ import annotations

from typing import Any

import faust

from leadpulse.schemas.events import InvalidEvent, decode_event
from leadpulse.schemas.outputs import dumps, output_record, snapshot_record
from leadpulse.scoring.engine import HotLead, apply, new_state, snapshot
from leadpulse.scoring.rules import load_rules
from leadpulse.scoring.state import from_bytes, to_bytes
from leadpulse.streams.settings import Settings

settings = Settings.from_env()
rules = load_rules(settings.rules)
app = faust.App(
    settings.app_id,
    broker=settings.broker,
    store=settings.store,
    datadir=str(settings.data_dir),
    topic_partitions=settings.partitions,
    web_port=settings.web_port,
    web_host=settings.web_host,
    broker_session_timeout=settings.session_timeout_s,
    broker_rebalance_timeout=settings.session_timeout_s,
    consumer_auto_offset_reset="earliest",
)
events = app.topic(settings.input_topic, key_serializer="raw", value_serializer="raw")
scores = app.topic(settings.topic("contact-scores"), key_serializer="raw", value_serializer="raw")
stage_changes = app.topic(settings.topic("stage-changes"), key_serializer="raw", value_serializer="raw")
hot_leads = app.topic(settings.topic("hot-leads"), key_serializer="raw", value_serializer="raw")


@app.task
async def declare_outputs() -> None:
    """The local broker does not auto-create topics."""
    for topic in (scores, stage_changes, hot_leads):
        await topic.maybe_declare()


contacts: Any = app.Table("contacts", key_type=bytes, value_type=bytes, partitions=settings.partitions)


@app.agent(events)
async def score(stream: Any) -> None:
    async for value in stream:
        try:
            event = decode_event(value)
        except InvalidEvent:
            continue
        key = event.contact_id.encode()
        stored = contacts.get(key)
        state = from_bytes(stored) if stored is not None else new_state(event.contact_id)
        applied = apply(state, event, rules)
        contacts[key] = to_bytes(applied.state)
        for output in applied.outputs:
            topic = hot_leads if isinstance(output, HotLead) else stage_changes
            await topic.send(key=key, value=dumps(output_record(output)))
        view = snapshot(applied.state, applied.state.last_event_ms, rules)
        await scores.send(key=key, value=dumps(snapshot_record(view)))


if __name__ == "__main__":
    app.main()
