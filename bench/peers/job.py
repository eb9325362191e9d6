"""The job every peer runs, per event: decode and validate, fold into the contact's state,
and the records that follow (stage changes and hot leads, then the contact's snapshot).
The peers differ only in how records move between Kafka and this function."""

from __future__ import annotations

from leadpulse.schemas.events import InvalidEvent, decode_event
from leadpulse.schemas.outputs import dumps, output_record, snapshot_record
from leadpulse.scoring.engine import HotLead, apply, new_state, snapshot
from leadpulse.scoring.rules import Rules
from leadpulse.scoring.state import ContactState

SCORES, STAGE_CHANGES, HOT_LEADS = "contact-scores", "stage-changes", "hot-leads"


def score(
    value: bytes, state: ContactState | None, rules: Rules
) -> tuple[ContactState | None, list[tuple[str, bytes]]]:
    """The new state (None: the record is not a valid event) and (topic kind, value) records."""
    try:
        event = decode_event(value)
    except InvalidEvent:
        return None, []
    applied = apply(state or new_state(event.contact_id), event, rules)
    records = [
        (HOT_LEADS if isinstance(o, HotLead) else STAGE_CHANGES, dumps(output_record(o))) for o in applied.outputs
    ]
    view = snapshot(applied.state, applied.state.last_event_ms, rules)
    records.append((SCORES, dumps(snapshot_record(view))))
    return applied.state, records
