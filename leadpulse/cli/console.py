"""One-line, human-readable renderings of output records for `tail` and the demo."""

from __future__ import annotations

from typing import Any

import orjson


def describe(value: bytes) -> str:
    try:
        record = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value.decode("utf-8", "replace")
    if not isinstance(record, dict):
        return str(record)
    kind = record.get("kind")
    if kind == "hot_lead":
        return hot_lead_line(record)
    if kind == "hot_account":
        return hot_account_line(record)
    if kind == "nurture":
        return nurture_line(record)
    if kind == "stage_change":
        return (
            f"STAGE {record['contact_id']}: {record['from_stage'] or '(new)'} -> {record['to_stage']}  "
            f"(score {record['score']}, {record['occurred_at']})"
        )
    if "origin" in record:
        origin = record["origin"]
        return f"DEAD  {origin['topic']}[{origin['partition']}]@{origin['offset']}: {record['reason']}"
    if "temperature_label" in record:
        return (
            f"SCORE {record['contact_id']}: {record['score']:>3} {record['temperature_label']:<4} "
            f"{record['stage']:<11} fit {record['fit']:>5} engagement {record['engagement']:>5}  "
            f"{reasons_text(record['reasons'])}"
        )
    return orjson.dumps(record).decode()


def hot_lead_line(record: dict[str, Any]) -> str:
    """The model is named unless it is the default one (rules without models: as before)."""
    model = record.get("model", "default")
    return (
        f"HOT   {record['contact_id']}: score {record['score']} ({record['stage']})"
        f"{'' if model == 'default' else f' for model {model}'} because {reasons_text(record['reasons'])}"
    )


def hot_account_line(record: dict[str, Any]) -> str:
    """Who to call at a hot account: its best contacts, and the buying-committee roles held."""
    committee = record["committee"]
    best = ", ".join(f"{top['contact_id']} ({top['score']})" for top in record["top_contacts"])
    return (
        f"HOT ACCOUNT {record['account_id']}: score {record['score']}, {record['engaged_contacts']} of "
        f"{record['contacts']} contacts engaged, committee {', '.join(committee['covered']) or 'none'}; best: {best}"
    )


def nurture_line(record: dict[str, Any]) -> str:
    interest = f", interest {record['interest']}" if record.get("interest") else ""
    return (
        f"NURTURE {record['contact_id']}: {record['track']} ({record['stage']}{interest}) "
        f"-> {record['content']['title']} {record['content']['url']}"
    )


def reasons_text(reasons: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['signal']} {r['points']:+g}" for r in reasons)
