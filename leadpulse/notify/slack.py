"""Slack incoming-webhook messages (Block Kit) a sales rep can act on without opening
anything: who, which company, how hot and why (the top reasons), which segment and model,
and a link to the contact's (or account's) page from the destination's link template.
Account alerts list the buying committee.

Every value comes from a record, so every text is cut and escaped here: Slack refuses a
message whose section text passes 3,000 characters, a field 2,000, a header 150, or that
has more than 50 blocks (the whole message is then lost, not cut), and reads `<...>` as a
link or a mention (a contact id `<!channel>` would page everyone). The structure is fixed
(at most 6 blocks), so only lengths need bounds, enforced by construction. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from leadpulse.notify.alerts import Alert
from leadpulse.notify.config import MAX_TEMPLATE, Destination
from leadpulse.schemas.fields import MAX_ID
from leadpulse.scoring.domains import account_of
from leadpulse.scoring.timeutil import format_ms

# Slack's documented limits (Block Kit reference: section, header, context; message: blocks).
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_FALLBACK_TEXT = 3000  # the notification text; Slack cuts `text` at 40,000
# Ours: what one value of a record may take (ids are at most 256 characters, profile values
# up to 2,000), so that any field stays under its limit after escaping (x5 at worst) and a link.
MAX_VALUE = 120
# A link: a template (config.MAX_TEMPLATE) and a 256-character id percent-encoded (x3).
MAX_LINK = MAX_TEMPLATE + 3 * MAX_ID
TOP_REASONS = 3
MAX_COMMITTEE = 10  # members of a hot account listed (the record holds [accounts] top_contacts)
MAX_LIST_ITEMS = 8  # segments, interests, roles shown
MAX_ATTRIBUTES = 3  # profile attributes shown per committee member
ELLIPSIS = "…"
HEADINGS: Mapping[str, str] = {
    "hot_lead": "🔥 Hot lead",
    "hot_account": "🔥 Hot account",
    "stage_change": "📈 Stage change",
    "nurture": "🌱 Needs nurturing",
}


def slack_body(destination: Destination, alert: Alert) -> bytes:
    return orjson.dumps(slack_message(destination, alert))


def slack_message(destination: Destination, alert: Alert) -> dict[str, Any]:
    """`text` is what notifications and screen readers show; `blocks` what the channel shows."""
    record = alert.record
    if alert.kind == "hot_account":
        who = _plain(record.get("account_id"))
        blocks = _account_blocks(destination, record)
    else:
        who = _plain(record.get("contact_id"))
        blocks = _contact_blocks(destination, alert.kind, record)
    heading = f"{HEADINGS[alert.kind]}: {who}"
    if alert.kind == "stage_change":
        heading += f" → {_plain(record.get('to_stage'))}"
    context = [
        f"{format_ms(alert.occurred_ms)[:16].replace('T', ' ')} UTC",
        f"rules {_md(record.get('rules_version'))}",
        f"alert {_md(alert.id)}",
    ]
    blocks = [_header(heading), *blocks, {"type": "context", "elements": [_mrkdwn(" · ".join(context))]}]
    return {"text": _escape(_cut(heading + _summary(alert.kind, record), MAX_FALLBACK_TEXT)), "blocks": blocks}


def _contact_blocks(destination: Destination, kind: str, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    contact_id = str(record.get("contact_id", ""))
    company = account_of(contact_id, _str_or_none(record.get("account_id")))
    fields = [
        ("Contact", _linked(destination.contact_link(contact_id), contact_id)),
        ("Company", _linked(destination.account_link(company), company) if company else "-"),
    ]
    if "score" in record:
        fields.append(("Score", _score_line(kind, record)))
    fields.append(("Stage", _stage_line(kind, record)))
    if "model" in record:
        fields.append(("Model", _md(record.get("model"))))
    if kind == "nurture":
        fields.append(("Track", f"{_md(record.get('track'))} ({_md(record.get('trigger'))})"))
    if "segments" in record:
        fields.append(("Segments", _names(record.get("segments"))))
    blocks = [_fields(fields)]
    if kind == "nurture":
        content = record.get("content")
        if isinstance(content, Mapping):
            url = content.get("url")
            title = _md(content.get("title"))
            shown = _linked(url if isinstance(url, str) and url.startswith(("https://", "http://")) else None, title)
            blocks.append(_section(f"*Content to send*\n{shown}"))
    reasons = _reason_lines(record.get("reasons"))
    if reasons:
        blocks.append(_section(_lines("*Why now*", [f"• {reason}" for reason in reasons])))
    interests = record.get("interests")
    if isinstance(interests, list) and interests:
        blocks.append(_section(f"*Interested in* {_names(interests)}"))
    return blocks


def _account_blocks(destination: Destination, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    account_id = str(record.get("account_id", ""))
    committee, best = _mapping(record.get("committee")), _mapping(record.get("best_fit"))
    fields = [
        ("Account", _linked(destination.account_link(account_id), account_id)),
        ("Score", f"*{_md(record.get('score'))}* · {_md(record.get('temperature_label'))}"),
        ("Contacts", f"{_md(record.get('engaged_contacts'))} engaged of {_md(record.get('contacts'))}"),
        ("Committee", f"{_names(committee.get('covered'))} (missing: {_names(committee.get('missing'))})"),
        ("Best fit", f"{_md(best.get('contact_id'))} (fit {_md(best.get('fit'))})"),
    ]
    blocks = [_fields(fields)]
    members = record.get("top_contacts")
    lines = [
        _member_line(destination, member) for member in _first(members, MAX_COMMITTEE) if isinstance(member, Mapping)
    ]
    if isinstance(members, list) and len(members) > MAX_COMMITTEE:
        lines.append(f"{ELLIPSIS} and {len(members) - MAX_COMMITTEE} more")
    if lines:
        blocks.append(_section(_lines("*Buying committee*", lines)))
    return blocks


def _member_line(destination: Destination, member: Mapping[str, Any]) -> str:
    """`• <link|c-1> 82 · prospect · title: CTO · top reason` on one line: the attributes are
    the ones the rules' [accounts] member_attributes put on the record."""
    contact_id = str(member.get("contact_id", ""))
    known = {"contact_id", "score", "temperature", "stage", "reasons"}
    attributes = [f"{_md(key, 40)}: {_md(value, 60)}" for key, value in member.items() if key not in known]
    reasons = _reason_lines(member.get("reasons"), 1)
    parts = [f"*{_md(member.get('score'))}*", _md(member.get("stage")), *attributes[:MAX_ATTRIBUTES], *reasons]
    return f"• {_linked(destination.contact_link(contact_id), contact_id)} " + " · ".join(parts)


def _score_line(kind: str, record: Mapping[str, Any]) -> str:
    score = f"*{_md(record.get('score'))}*"
    if kind == "hot_lead":
        return f"{score} · hot (fit {_md(record.get('fit'))}, engagement {_md(record.get('engagement'))})"
    return score


def _stage_line(kind: str, record: Mapping[str, Any]) -> str:
    if kind == "stage_change":
        return f"{_md(record.get('from_stage') or 'new')} → *{_md(record.get('to_stage'))}*"
    return _md(record.get("stage"))


def _summary(kind: str, record: Mapping[str, Any]) -> str:
    if kind == "stage_change":
        return f" moved to {_plain(record.get('to_stage'))}"
    if kind == "nurture":
        return f" ({_plain(record.get('track'))})"
    return f", score {_plain(record.get('score'))}"


def _reason_lines(reasons: object, count: int = TOP_REASONS) -> list[str]:
    """The strongest reasons (records list them strongest first): `pricing page +12.5 (engagement)`."""
    lines = []
    for reason in _first(reasons, count):
        if isinstance(reason, Mapping):
            points = reason.get("points")
            shown = f"{points:+g}" if isinstance(points, int | float) and not isinstance(points, bool) else _md(points)
            lines.append(f"{_md(reason.get('signal'))} {shown} ({_md(reason.get('part'))})")
    return lines


def _names(values: object) -> str:
    """A list of names (or of {name} objects) on one line: `pricing, security (+2 more)`."""
    if not isinstance(values, list) or not values:
        return "-"
    names = [_md(item.get("name") if isinstance(item, Mapping) else item, 60) for item in values[:MAX_LIST_ITEMS]]
    more = f" (+{len(values) - MAX_LIST_ITEMS} more)" if len(values) > MAX_LIST_ITEMS else ""
    return ", ".join(names) + more


def _first(values: object, count: int) -> list[Any]:
    return values[:count] if isinstance(values, list) else []


def _lines(title: str, lines: list[str]) -> str:
    """A title and bullet lines within a section's limit: lines that do not fit are counted,
    never cut in the middle (a cut link would show its markup)."""
    text = title
    for index, line in enumerate(lines):
        rest = f"\n{ELLIPSIS} and {len(lines) - index} more"
        if len(text) + 1 + len(line) + len(rest) > MAX_SECTION_TEXT:
            return text + rest
        text += "\n" + line
    return text


def _fields(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    return {"type": "section", "fields": [_mrkdwn(f"*{label}*\n{value}") for label, value in pairs][:MAX_FIELDS]}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": _cut(text, MAX_HEADER_TEXT), "emoji": True}}


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _linked(url: str | None, label: str | None) -> str:
    """`<url|label>`: the URL comes from a checked template with percent-encoded ids, so it
    holds no '|' or '>'; the label is escaped. A URL longer than MAX_LINK (an id far over
    the input limits) is left out rather than let the field pass Slack's limit."""
    shown = _md(label)
    return f"<{url}|{shown}>" if url and len(url) <= MAX_LINK else shown


def _md(value: object, limit: int = MAX_VALUE) -> str:
    return _escape(_plain(value, limit))


def _plain(value: object, limit: int = MAX_VALUE) -> str:
    text = "-" if value is None or value == "" else f"{value:g}" if isinstance(value, float) else str(value)
    return _cut(" ".join(text.split()), limit)  # no line breaks from data: one value, one line


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def _escape(text: str) -> str:
    """Slack's three control characters in mrkdwn (https://api.slack.com/reference/surfaces/formatting)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
