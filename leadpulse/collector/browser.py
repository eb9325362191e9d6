"""What the collector decides about calls sent from web pages with a browser key (pure: no
I/O, no clock of its own). A browser key is public, so everything a page may do with it is
checked here, message by message:

- only `page`, `track` and `identify` (what a page needs; `group`, `alias`, `screen` and the
  batch import stay with server keys), and an identify only with the key's allowed traits;
- `context.traits` (the SDKs copy the user's traits into every call) is dropped from other
  calls: scoring reads a page view's properties, never those copies;
- the client address is not stored (`context.ip` removed) unless the collector is told to
  keep it, then set from the connection as Segment does;
- bots (crawlers' user agents; headless browsers unless allowed) and calls without the
  key's consent category or with Do-Not-Track (when honoured) are not kept, only counted;
- each client address has a token bucket of messages (`ClientRates`), its memory bounded.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from leadpulse.collector.keys import BrowserKey
from leadpulse.schemas.fields import InvalidEvent


@dataclass(frozen=True)
class BrowserSettings:
    """The `LEADPULSE_COLLECT_*` settings of browser calls (defaults and validation live there):
    `Settings.section(BrowserSettings, "collect_")`."""

    browser_rate: float
    browser_burst: int
    browser_clients: int
    forwarded_for: bool
    headless_bots: bool
    do_not_track: bool
    keep_ip: bool


BROWSER_CALLS = ("page", "track", "identify")
SHORT_PATHS = {"t": "track", "p": "page", "i": "identify", "s": "screen", "g": "group", "a": "alias"}
"""analytics.js posts each call to the first letter of its type (`/v1/t`...)."""

_CRAWLERS = re.compile(
    r"\bbot\b|bot[/;-]|crawl|spider|slurp|facebookexternalhit|embedly|quora link preview|bingpreview|"
    r"google-inspectiontool|lighthouse|pingdom|uptimerobot|python-requests|curl/|wget/|go-http-client|"
    r"java/|okhttp|axios/|node-fetch",
    re.IGNORECASE,
)
_HEADLESS = re.compile(r"headless|phantomjs|electron/|puppeteer|playwright", re.IGNORECASE)


def bot_reason(user_agent: str | None, headless_bots: bool) -> str | None:
    """Why a page's calls are a bot's: a crawler's or an HTTP library's user agent, none at
    all, or (when `headless_bots`) a headless browser's (`HeadlessChrome/...`). None for a
    person's browser."""
    if not user_agent:
        return "no user agent"
    if _CRAWLERS.search(user_agent) is not None:
        return "crawler"
    if headless_bots and _HEADLESS.search(user_agent) is not None:
        return "headless browser"
    return None


def opted_out(dnt: str | None, gpc: str | None) -> bool:
    """Do-Not-Track (`DNT: 1`) or Global Privacy Control (`Sec-GPC: 1`) sent by the browser."""
    return (dnt or "").strip() == "1" or (gpc or "").strip() == "1"


def client_address(peer: str | None, forwarded_for: str | None, trust_forwarded: bool) -> str:
    """The client's address: the last `X-Forwarded-For` entry (the one your proxy added)
    when trusted, else the connection's peer."""
    if trust_forwarded and forwarded_for:
        last = forwarded_for.rsplit(",", 1)[-1].strip()
        if last:
            return last[:64]
    return peer or "unknown"


def consented(message: dict[str, Any], category: str) -> bool:
    """Whether the message carries consent for `category`: Segment's consent field
    (`context.consent.categoryPreferences.<category>: true`) or RudderStack's
    (`context.consentManagement.allowedConsentIds` listing it, not denied)."""
    context = message.get("context")
    if not isinstance(context, dict):
        return False
    consent = context.get("consent")
    if isinstance(consent, dict):
        preferences = consent.get("categoryPreferences")
        if isinstance(preferences, dict) and preferences.get(category) is True:
            return True
    management = context.get("consentManagement")
    if isinstance(management, dict):
        allowed, denied = management.get("allowedConsentIds"), management.get("deniedConsentIds")
        refused = isinstance(denied, list) and category in denied
        return isinstance(allowed, list) and category in allowed and not refused
    return False


def browser_message(message: dict[str, Any], key: BrowserKey, client_ip: str | None) -> dict[str, Any]:
    """The message as kept from a page: its call allowed, its identify traits allowed,
    `context.traits` dropped outside identify, `context.ip` replaced by `client_ip` (None:
    no address kept). Raises InvalidEvent naming the field a page may not send."""
    call = message.get("type")
    if call not in BROWSER_CALLS:
        raise InvalidEvent("type", f"{call!r} is for server keys; a browser key sends {', '.join(BROWSER_CALLS)}")
    message = dict(message)
    context = message.get("context")
    context = dict(context) if isinstance(context, dict) else {}
    if call == "identify" and key.traits is not None:
        for where, traits in (("traits", message.get("traits")), ("context.traits", context.get("traits"))):
            if isinstance(traits, dict):
                refused = sorted(name for name in traits if name not in key.traits)
                if refused:
                    allowed = ", ".join(sorted(key.traits))
                    raise InvalidEvent(f"{where}.{refused[0]}", f"not a trait this browser key may send ({allowed})")
    if call != "identify":
        context.pop("traits", None)
    context.pop("ip", None)
    if client_ip is not None:
        context["ip"] = client_ip
    message["context"] = context
    return message


class ClientRates:
    """A token bucket of messages per client address: `burst` at once, refilled at `rate`
    per second. At most `clients` addresses are remembered; past that the one quiet the
    longest is forgotten (it starts again with a full bucket), so memory stays bounded
    whatever the number of addresses."""

    def __init__(self, rate: float, burst: int, clients: int) -> None:
        self.rate = rate
        self.burst = burst
        self.clients = clients
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # address -> (tokens, at_s)

    def waiting(self, address: str, at_s: float) -> float:
        """The seconds until `address` may send one message (0.0: now); nothing is taken."""
        tokens, last = self.buckets.get(address, (float(self.burst), at_s))
        tokens = min(float(self.burst), tokens + max(0.0, at_s - last) * self.rate)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def take(self, address: str, count: int, at_s: float) -> float:
        """Take `count` tokens: 0.0 when granted, else the seconds until they would be
        (nothing is taken then; a count over the burst is never granted: `inf`)."""
        tokens, last = self.buckets.pop(address, (float(self.burst), at_s))
        tokens = min(float(self.burst), tokens + max(0.0, at_s - last) * self.rate)
        wait = 0.0
        if count > self.burst:
            wait = math.inf
        elif count > tokens:
            wait = (count - tokens) / self.rate
        else:
            tokens -= count
        self.buckets[address] = (tokens, at_s)
        while len(self.buckets) > self.clients:
            self.buckets.popitem(last=False)
        return wait
