"""Builders for events and rules used across the test packages."""

from __future__ import annotations

import struct
from itertools import count
from pathlib import Path
from typing import Any

import orjson

from leadpulse.scoring.engine import Event
from leadpulse.scoring.rules import Rules, load_rules
from leadpulse.scoring.state import SEEN_BYTES, ContactState
from leadpulse.scoring.timeutil import parse_rfc3339_ms

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DAY_MS = 86_400_000
T0 = parse_rfc3339_ms("2026-10-01T09:00:00Z")
DEFAULT_RULES: Rules = load_rules()
_serial = count(1)


def event(
    event_type: str,
    at_ms: int = T0,
    contact: str = "c-1",
    *,
    event_id: str | None = None,
    identified: bool = True,
    **properties: Any,
) -> Event:
    return Event(
        event_id=event_id or f"e-{next(_serial)}",
        type=event_type,
        contact_id=contact,
        identified=identified,
        occurred_ms=at_ms,
        properties=properties,
    )


def raw_event(event_type: str = "page_viewed", **fields: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "event_id": "e-1",
        "type": event_type,
        "contact_id": "c-1",
        "occurred_at": "2026-10-01T09:00:00Z",
    }
    document.update(fields)
    return document


def buyer_documents(contact: str, at: str = "2026-10-01T09:00:00Z") -> list[dict[str, Any]]:
    """A decision maker with budget who asks for a demo and attends a webinar: hot at once."""
    return [
        raw_event(
            "profile_updated",
            event_id=f"{contact}-p",
            contact_id=contact,
            occurred_at=at,
            properties={"seniority": "c_level", "budget": 60000, "company_size": 300, "industry": "saas"},
        ),
        raw_event("demo_requested", event_id=f"{contact}-d", contact_id=contact, occurred_at=at),
        raw_event("webinar_attended", event_id=f"{contact}-w", contact_id=contact, occurred_at=at),
    ]


PAD = "\x01" * 333  # 333 characters as sent, 1,998 bytes as stored: within LEADPULSE_MAX_STRING


def padded(contact: str, number: int, attribute: str) -> bytes:
    """A profile value that takes six times its length as stored (control characters)."""
    return orjson.dumps(
        raw_event(
            "profile_updated",
            event_id=f"{contact}-pad-{number}",
            contact_id=contact,
            occurred_at=f"2026-10-01T09:0{number}:00Z",
            properties={attribute: PAD},
        )
    )


def notify_records(contact: str = "ada@acme.io") -> dict[str, dict[str, Any]]:
    """One record of each output the notifier reads (by topic role), as the worker publishes
    it: the hot lead and stage change of a buyer, the hot account of a three-person committee
    from the scoring core, and a nurture record."""
    from dataclasses import replace

    from leadpulse.schemas.outputs import hot_account_record, nurture_record, output_record
    from leadpulse.scoring.accounts import AccountState, Member, fold, settle
    from leadpulse.scoring.engine import HotLead, Reason, StageChange, apply, new_state, output_id
    from leadpulse.scoring.nurture import Nurture
    from leadpulse.scoring.nurture_rules import CatalogueItem

    state, outputs = new_state(contact), []
    for item in [
        event("profile_updated", T0, contact, seniority="c_level", budget=60_000, company_size=300, industry="saas"),
        event("demo_requested", T0, contact),
        event("webinar_attended", T0, contact),
    ]:
        state, produced, *_ = apply(state, item, DEFAULT_RULES)
        outputs.extend(produced)
    hot = next(output for output in outputs if isinstance(output, HotLead))
    change = next(output for output in outputs if isinstance(output, StageChange))
    account, fired = AccountState("acme.io", DEFAULT_RULES), []
    for name, score, role in (("ada@acme.io", 90, "executive"), ("bob@acme.io", 85, "it"), ("cy@acme.io", 80, "sales")):
        band = DEFAULT_RULES.temperature(score)
        member = Member(name, T0, False, score, 70.0, band, "prospect", (("department", role),), (), 0)
        fold(account, replace(member, reasons=(Reason("pricing_page", "engagement", 12.5),)))
        fired.append(settle(account, member)[1])
    hot_account = next(alert for alert in fired if alert is not None)
    nurture = Nurture(
        output_id(contact, "nurture", "low-engagement", "0"),
        contact,
        "low-engagement",
        "low_engagement",
        T0,
        T0 + 7 * DAY_MS,
        "lead",
        ("enterprise",),
        "pricing",
        CatalogueItem("Pricing guide", "https://example.com/pricing-guide"),
        DEFAULT_RULES.version,
    )
    return {
        "hot-leads": output_record(hot),
        "stage-changes": output_record(change),
        "hot-accounts": hot_account_record(hot_account),
        "nurture": nurture_record(nurture),
    }


def seen_hashes(state: ContactState) -> tuple[int, ...]:
    """The event hashes (engine.event_hash) a state's de-duplication window holds, oldest first."""
    return struct.unpack(f"<{len(state.seen) // SEEN_BYTES}Q", state.seen)
