"""Segment-spec messages (track, identify, page, screen, group, alias) as LeadPulse events.

Web sites and apps send these through analytics.js, the Segment and RudderStack SDKs, or
RudderStack's Kafka destination; accepting them on the input topic spares every team a
translation layer. Each call becomes one native event, so scoring, de-duplication and the
offline scorer treat both shapes alike:

- `track` -> the type the rules' `[mapping]` gives its `event` name; a name it does not
  know becomes type `track` (valid, scores nothing: counted as unscored and unmapped);
- `page` and `screen` -> `page_viewed`, with `path`, `url`, `referrer`, `title` and `search`
  from the properties or `context.page`, the UTM parameters (`context.campaign`, else the
  URL's `utm_*`) as `campaign_name`, `campaign_source`, `campaign_medium`, `campaign_term`,
  `campaign_content`, and the acquisition `channel` they or the referrer give (`channel`
  is a fit attribute; see `page_channel`);
- `identify` -> `profile_updated`, traits (`traits`, else `context.traits` where RudderStack's
  browser SDK puts them) renamed to the profile attributes fit reads;
- `group` -> `account_linked`, the account id kept, company traits as profile attributes;
- `alias` -> `identity_linked` for `userId`, `previousId` kept: identity stitching links
  the previous id to the user (scoring/identity.py), as it links the `anonymousId` of any
  call that also has a `userId`.

The key is `userId`, else `anonymousId`: a message with only an anonymous id is its own
contact (a suspect), as a native event with only `anonymous_id` is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from leadpulse.schemas.fields import (
    MAX_ID,
    InvalidEvent,
    identifier,
    json_kind,
    normalized_id,
    optional_object,
    person_id,
    timestamp_ms,
)
from leadpulse.scoring.engine import Event
from leadpulse.scoring.rules import event_name_key, load_rules
from leadpulse.scoring.timeutil import MAX_MS

SEGMENT_CALLS = ("track", "identify", "page", "screen", "group", "alias")
NATIVE_FIELDS = ("event_id", "contact_id", "anonymous_id", "occurred_at")
UNMAPPED_TYPE = "track"
"""The type of a `track` whose name `[mapping]` does not know: a rule may still score it."""
CALL_TYPES = {
    "page": "page_viewed",
    "screen": "page_viewed",
    "identify": "profile_updated",
    "group": "account_linked",
    "alias": "identity_linked",
}
# Segment's reserved traits (and the usual B2B ones) -> the profile attributes fit reads.
# Names a producer already sends in LeadPulse's own spelling win over these.
_TRAIT_NAMES = {
    "title": "job_title",
    "jobTitle": "job_title",
    "employees": "company_size",
    "employee_count": "company_size",
    "companySize": "company_size",
    "company_name": "company_name",
}
_COMPANY_NAMES = {
    "name": "company_name",
    "industry": "industry",
    "employee_count": "company_size",
    "employees": "company_size",
    "size": "company_size",
}
# A group's traits describe the account, so only its company attributes reach the contact.
_GROUP_TRAITS = {**_COMPANY_NAMES, "country": "country"}
_REWRITTEN_ON_RETRY = ("sentAt", "receivedAt")
_PAGE_FIELDS = ("referrer", "title", "search")
_CAMPAIGN_FIELDS = ("name", "source", "medium", "term", "content")
# utm_medium values -> the acquisition channels of the default rules' [fit.channel]; other
# media are kept as sent (a rules file may score them).
_MEDIUM_CHANNELS = {
    "cpc": "paid",
    "ppc": "paid",
    "paid": "paid",
    "paidsearch": "paid",
    "paid_search": "paid",
    "paid_social": "paid",
    "paidsocial": "paid",
    "display": "paid",
    "cpm": "paid",
    "referral": "referral",
    "partner": "partner",
    "affiliate": "partner",
    "event": "event",
    "organic": "organic",
}
_SEARCH_ENGINES = ("google.", "bing.", "duckduckgo.", "yahoo.", "baidu.", "yandex.", "ecosia.", "qwant.")
MAX_QUERY = 2_000
"""Characters of a page URL's query read for UTM parameters."""


def is_segment(document: dict[str, Any]) -> bool:
    """A Segment message has one of the six call types and none of the native fields."""
    return document.get("type") in SEGMENT_CALLS and not any(field in document for field in NATIVE_FIELDS)


def is_unmapped(event: Event) -> bool:
    """A Segment track whose name `[mapping]` does not know: counted apart from other
    unscored events, since it usually means a mapping is missing rather than a dull event."""
    return event.call == "track" and event.type == UNMAPPED_TYPE


def segment_key(document: dict[str, Any]) -> str | None:
    """The partitioning key of a raw Segment message: userId, else anonymousId."""
    for field in ("userId", "anonymousId"):
        value = document.get(field)
        if isinstance(value, str) and value:
            return normalized_id(value)
    return None


@cache
def shipped_mapping() -> Mapping[str, str]:
    """The `[mapping]` of the shipped rules, for callers that decode without rules at hand."""
    return load_rules().mapping


def segment_event(document: dict[str, Any], mapping: Mapping[str, str]) -> Event:
    """One Segment message (its `type` already known to be a call) -> Event."""
    call: str = document["type"]
    # RudderStack's browser SDK sends `userId: ""` until identify: no user yet
    user_id = None if document.get("userId") == "" else person_id(document, "userId")
    anonymous_id = person_id(document, "anonymousId")
    previous_id = person_id(document, "previousId")
    if call == "alias":
        if previous_id is None:
            raise InvalidEvent("previousId", "required in an alias call (the id the user had before)")
        if user_id is None:
            raise InvalidEvent("userId", "required in an alias call")
    if user_id is None and anonymous_id is None:
        raise InvalidEvent("userId", "one of userId or anonymousId is required")
    occurred_ms = _occurred_ms(document)
    context = optional_object(document, "context")
    properties = optional_object(document, "properties")
    traits = optional_object(document, "traits")
    account_id = identifier(document, "groupId") if call == "group" else identifier(context, "groupId", "context")
    if call == "group" and account_id is None:
        raise InvalidEvent("groupId", "required in a group call (the account's id)")

    if call == "track":
        name = document.get("event")
        if not isinstance(name, str) or not name.strip():
            raise InvalidEvent("event", f"required in a track call: the event name, got {json_kind(name)}")
        if len(name) > MAX_ID:
            raise InvalidEvent("event", f"longer than {MAX_ID} characters")
        event_type = mapping.get(event_name_key(name), UNMAPPED_TYPE)
        attributes = properties
    elif call in ("page", "screen"):
        event_type, attributes = CALL_TYPES[call], _page_properties(document, properties, context)
    elif call == "identify":
        event_type, attributes = CALL_TYPES[call], _profile(traits or optional_object(context, "traits", "context"))
    elif call == "group":
        event_type, attributes = CALL_TYPES[call], _renamed(traits, _GROUP_TRAITS)
    else:
        event_type, attributes = CALL_TYPES[call], {}

    library = context.get("library")
    source = library.get("name") if isinstance(library, dict) else None
    return Event(
        event_id=identifier(document, "messageId") or _derived_id(document),
        type=event_type,
        contact_id=user_id if user_id is not None else str(anonymous_id),
        identified=user_id is not None or isinstance(attributes.get("email"), str),
        occurred_ms=occurred_ms,
        properties=attributes,
        source=source if isinstance(source, str) else None,
        anonymous_id=anonymous_id,
        account_id=account_id,
        previous_id=previous_id,
        call=call,
        received_ms=timestamp_ms(document, "receivedAt"),
    )


def _occurred_ms(document: dict[str, Any]) -> int:
    """Segment's event time: `timestamp` when the sender set it; else `originalTimestamp`
    moved by the sender's clock skew (`receivedAt - sentAt`, both on the message when the
    collector or RudderStack stamped it), as Segment itself computes it; else the arrival."""
    timestamp = timestamp_ms(document, "timestamp")
    if timestamp is not None:
        return timestamp
    original = timestamp_ms(document, "originalTimestamp")
    sent, received = timestamp_ms(document, "sentAt"), timestamp_ms(document, "receivedAt")
    if original is not None:
        if sent is None or received is None:
            return original
        corrected = original + (received - sent)
        if not 0 <= corrected <= MAX_MS:
            raise InvalidEvent("originalTimestamp", "moved by receivedAt - sentAt, it falls outside 1970..9999")
        return corrected
    if received is not None:
        return received
    raise InvalidEvent("timestamp", "required: RFC 3339 with an offset (or originalTimestamp, or receivedAt)")


def _page_properties(document: dict[str, Any], properties: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Signals match page views on `path`: take it from the properties, else from
    `context.page` (analytics.js puts it in both), else from the URL."""
    page = optional_object(context, "page", "context")
    attributes = dict(properties)
    url = next((u for u in (properties.get("url"), page.get("url")) if isinstance(u, str) and u), None)
    path = next((p for p in (properties.get("path"), page.get("path")) if isinstance(p, str) and p), None)
    if path is None and url is not None:
        try:
            path = urlsplit(url).path or "/"
        except ValueError:  # not a URL after all: the page still counts as a view
            path = None
    if path is not None:
        attributes["path"] = path
    if url is not None:
        attributes["url"] = url
    name = document.get("name")
    if isinstance(name, str) and "name" not in attributes:
        attributes["name"] = name
    for field in _PAGE_FIELDS:
        value = next((v for v in (properties.get(field), page.get(field)) if isinstance(v, str) and v), None)
        if value is not None:
            attributes[field] = value
    campaign = _campaign(optional_object(context, "campaign", "context"), url)
    attributes.update((f"campaign_{field}", value) for field, value in campaign.items())
    channel = page_channel(campaign.get("medium"), attributes.get("referrer"), url)
    if channel is not None:
        attributes.setdefault("channel", channel)
    return attributes


def _campaign(campaign: dict[str, Any], url: str | None) -> dict[str, str]:
    """The UTM parameters: `context.campaign` as the browser SDKs send it, else the page
    URL's `utm_*` query parameters (`utm_campaign` is the campaign's `name`)."""
    found = {field: value for field in _CAMPAIGN_FIELDS if isinstance(value := campaign.get(field), str) and value}
    if found or url is None:
        return found
    try:
        query = urlsplit(url).query[:MAX_QUERY]
    except ValueError:
        return found
    for key, value in parse_qsl(query):
        field = key.removeprefix("utm_")
        field = "name" if field == "campaign" else field
        if key.startswith("utm_") and field in _CAMPAIGN_FIELDS and value:
            found.setdefault(field, value)
    return found


def page_channel(medium: str | None, referrer: str | None, url: str | None) -> str | None:
    """The acquisition channel of a page view: from `utm_medium` (`cpc` is `paid`...), else
    from a referrer on another site (a search engine's is `organic`, any other `referral`);
    None for a visit from the site itself or typed in, which says nothing of the channel
    (the contact's channel stays what it was)."""
    if medium:
        return _MEDIUM_CHANNELS.get(medium.strip().lower(), medium.strip().lower())
    if not referrer:
        return None
    try:
        source = (urlsplit(referrer).hostname or "").lower()
        own = (urlsplit(url).hostname or "").lower() if url else ""
    except ValueError:
        return None
    if not source or source == own:
        return None
    return "organic" if any(engine in f".{source}" for engine in (f".{e}" for e in _SEARCH_ENGINES)) else "referral"


def _profile(traits: dict[str, Any]) -> dict[str, Any]:
    """Identify traits as profile attributes: every plain trait as sent (a rules file may
    score any of them), plus Segment's names for what fit reads by default (`title`, the
    `company` object, `address.country`) in LeadPulse's spelling."""
    attributes = {key: value for key, value in traits.items() if not isinstance(value, dict | list)}
    for attribute, value in _renamed(traits, _TRAIT_NAMES).items():
        attributes.setdefault(attribute, value)
    company = traits.get("company")
    if isinstance(company, dict):
        for attribute, value in _renamed(company, _COMPANY_NAMES).items():
            attributes.setdefault(attribute, value)
    elif isinstance(company, str):
        attributes.setdefault("company_name", company)
    address = traits.get("address")
    if isinstance(address, dict) and isinstance(address.get("country"), str):
        attributes.setdefault("country", address["country"])
    attributes.pop("company", None)
    return attributes


def _renamed(values: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """The plain values among `values` whose names are in `names`, under their new names."""
    renamed: dict[str, Any] = {}
    for name, attribute in names.items():
        value = values.get(name)
        if value is not None and not isinstance(value, dict | list):
            renamed.setdefault(attribute, value)
    return renamed


def _derived_id(document: dict[str, Any]) -> str:
    """An id for a message sent without `messageId` (the HTTP API allows it), derived from
    its content without the fields a retry rewrites, so a resent message is still a duplicate."""
    stable = {key: value for key, value in document.items() if key not in _REWRITTEN_ON_RETRY}
    try:
        content = orjson.dumps(stable, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # only a document built in code can hold what JSON cannot
        raise InvalidEvent("messageId", "required for this message (its content has no JSON form)") from None
    return "derived-" + hashlib.blake2b(content, digest_size=16).hexdigest()
