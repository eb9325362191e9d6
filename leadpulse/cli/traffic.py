"""Synthetic but realistic marketing traffic, by persona, for the demo and the benchmarks.

Deterministic for a seed, so a benchmark or a demo run can be scored offline and compared.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

from leadpulse.scoring.timeutil import format_ms

DAY_MS = 86_400_000
PERSONAS = ("browser", "newsletter_reader", "webinar_attendee", "buyer", "churner")
_WEIGHTS = (45, 25, 15, 8, 7)
_BLOG = ("/blog/lead-vs-prospect", "/blog/lead-scoring-101", "/blog/b2b-funnel", "/blog/nurturing")
_PRODUCT = ("/product", "/product/integrations", "/customers/acme", "/pricing", "/pricing/enterprise")


class Traffic:
    """Yields event dicts in time order; each contact follows one persona's journey."""

    def __init__(
        self,
        seed: int,
        start_ms: int,
        span_ms: int,
        contacts: int,
        id_prefix: str = "",
        *,
        accounts: int = 0,
        identities: float = 0.0,
    ) -> None:
        self.random = random.Random(seed)
        self.accounts = accounts  # > 0: profiles and forms name one of this many companies
        # > 0: this share of identified journeys starts as an anonymous cookie, linked at the
        # first identified event; some cookies are shared by several contacts (conflicts)
        self.identities = identities
        self.id_prefix = id_prefix
        self.start_ms = start_ms
        self.span_ms = span_ms
        self.contacts = contacts
        self.serial = 0

    def events(self, count: int) -> Iterator[dict[str, Any]]:
        """`count` events over `contacts` contacts, interleaved as a site would see them."""
        journeys: dict[int, Iterator[dict[str, Any]]] = {}
        produced = 0
        while produced < count:
            index = self.random.randrange(self.contacts)
            journey = journeys.get(index)
            if journey is None:
                journey = journeys[index] = self._journey(index)
            event = next(journey, None)
            if event is None:
                journeys[index] = self._journey(index)
                continue
            produced += 1
            yield event

    def _journey(self, index: int) -> Iterator[dict[str, Any]]:
        persona = self.random.choices(PERSONAS, _WEIGHTS)[0] if index % 50 else "buyer"
        steps: Callable[[], Iterator[tuple[str, dict[str, Any]]]] = getattr(self, f"_{persona}")
        identified = persona != "browser"
        contact = f"c-{index:07d}" if identified else f"anon-{index:07d}"
        at = self.start_ms + self.random.randrange(self.span_ms)
        end = self.start_ms + self.span_ms
        cookie = self._cookie(index) if identified and self.identities else None
        if cookie is not None:  # an anonymous history first: pricing and product pages
            for _ in range(self.random.randint(1, 4)):
                at += self.random.randrange(10 * 60_000, 2 * DAY_MS)
                page, properties = self._page(_PRODUCT)
                yield self._event(cookie, False, page, min(at, end), properties)
        linked = False
        for event_type, properties in steps():
            at += self.random.randrange(10 * 60_000, 3 * DAY_MS)
            if cookie is not None and linked and event_type == "page_viewed" and self.random.random() < 0.5:
                # a later visit from the same device, not logged in: counts for the contact too
                yield self._event(cookie, False, event_type, min(at, end), properties)
                continue
            event = self._event(contact, identified, event_type, min(at, end), properties)
            if cookie is not None and not linked:  # the first identified event carries the cookie
                event["anonymous_id"] = cookie
                linked = True
            yield event

    def _cookie(self, index: int) -> str | None:
        """This journey's device cookie, if it has one; one in ten is a shared computer's."""
        if self.random.random() >= self.identities:
            return None
        if self.random.random() < 0.1:
            return f"{self.id_prefix}ck-shared-{self.random.randrange(max(1, self.contacts // 100)):04d}"
        return f"{self.id_prefix}ck-{index:07d}-{self.random.randrange(1000):03d}"

    def _event(self, contact: str, identified: bool, event_type: str, at: int, props: dict[str, Any]) -> dict[str, Any]:
        self.serial += 1
        event: dict[str, Any] = {
            "event_id": f"{self.id_prefix}ev-{self.serial:09d}",
            "type": event_type,
            "occurred_at": format_ms(at),
        }
        event["contact_id" if identified else "anonymous_id"] = contact
        event["source"] = "web" if event_type == "page_viewed" else "marketing"
        if self.accounts and identified and event_type in ("profile_updated", "form_submitted"):
            props = {**props, **self._company()}
        if props:
            event["properties"] = props
        return event

    def _company(self) -> dict[str, Any]:
        """An explicit account now and then, else a business address; a contact with several
        profile or form events may change company on the way (and leave an account)."""
        company = self.random.randrange(self.accounts)
        if self.random.random() < 0.15:
            return {"account_id": f"acct-{company:03d}"}
        return {"email": f"someone@company-{company:03d}.io"}

    def _page(self, pool: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
        return "page_viewed", {"path": self.random.choice(pool)}

    def _profile(self, senior: bool) -> tuple[str, dict[str, Any]]:
        pick = self.random.choice
        return "profile_updated", {
            "seniority": pick(("c_level", "vp", "director")) if senior else pick(("manager", "individual")),
            "budget": pick((25_000, 60_000, 120_000)) if senior else pick((0, 2_000, 8_000)),
            "company_size": pick((60, 250, 1200)),
            "industry": pick(("software", "saas", "financial_services", "retail")),
            "channel": pick(("referral", "organic", "event", "paid")),
            "department": pick(("executive", "marketing", "sales", "it")),
            "country": pick(("fr", "be", "de", "us")),
        }

    def _browser(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for _ in range(self.random.randint(1, 6)):
            yield self._page(_BLOG)

    def _newsletter_reader(self) -> Iterator[tuple[str, dict[str, Any]]]:
        yield self._page(_BLOG)
        yield "newsletter_subscribed", {"email": "reader@example.com"}
        for _ in range(self.random.randint(2, 8)):
            yield self.random.choice((("email_opened", {}), ("email_clicked", {}), self._page(_BLOG)))

    def _webinar_attendee(self) -> Iterator[tuple[str, dict[str, Any]]]:
        yield self._page(_PRODUCT)
        yield "webinar_registered", {"webinar": "scoring-live", "topic": "lead-scoring"}
        yield self._profile(senior=self.random.random() < 0.4)
        yield "webinar_attended", {"webinar": "scoring-live", "topic": "lead-scoring"}
        yield self._page(_PRODUCT)

    def _buyer(self) -> Iterator[tuple[str, dict[str, Any]]]:
        yield self._page(_PRODUCT)
        yield "form_submitted", {"form": "whitepaper", "email": "buyer@example.com", "tags": ["security", "gdpr"]}
        yield self._profile(senior=True)
        yield self._page(("/pricing", "/pricing/enterprise"))
        yield "webinar_attended", {"webinar": "roi", "topic": "roi"}
        yield "email_replied", {}
        yield self.random.choice(("demo_requested", "quote_requested")), {}
        if self.random.random() < 0.5:
            yield "sales_qualified", {}
            yield "opportunity_opened", {}
            yield self.random.choice(("deal_won", "deal_lost")), {}

    def _churner(self) -> Iterator[tuple[str, dict[str, Any]]]:
        yield "newsletter_subscribed", {}
        yield "email_opened", {}
        yield self._page(("/careers", "/careers/jobs"))
        yield self.random.choice((("newsletter_unsubscribed", {}), ("email_bounced", {"hard": True})))
