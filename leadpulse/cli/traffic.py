"""Synthetic but realistic marketing traffic, by persona, for the demo and the benchmarks.

Deterministic for a seed, so a benchmark or a demo run can be scored offline and compared.
With `outcomes`, every identified journey ends in CRM outcomes drawn from a ground-truth
model of its behaviour and fit plus noise (`conversion_logit`, docs/backtest.md), so that a
calibration (`leadpulse backtest --calibrate`) has something true to find.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from leadpulse.scoring.timeutil import format_ms

DAY_MS = 86_400_000
PERSONAS = ("browser", "newsletter_reader", "webinar_attendee", "buyer", "churner")
_WEIGHTS = (45, 25, 15, 8, 7)
_BLOG = ("/blog/lead-vs-prospect", "/blog/lead-scoring-101", "/blog/b2b-funnel", "/blog/nurturing")
_PRODUCT = ("/product", "/product/integrations", "/customers/acme", "/pricing", "/pricing/enterprise")

# The ground truth of `outcomes` (docs/backtest.md): log-odds that a journey converts (a sales
# qualification, then an opportunity) from what it did and who it is, plus Gaussian noise.
BASE_LOGIT = -4.0
BEHAVIOUR_LOGIT = {  # per event of the type, the count capped at 3
    "demo_requested": 1.8,
    "quote_requested": 1.8,
    "webinar_attended": 0.9,
    "email_replied": 0.8,
    "pricing": 0.5,  # a page under /pricing
    "newsletter_unsubscribed": -1.5,
    "email_bounced": -1.5,
    "careers": -1.0,  # a page under /careers
}
SENIOR_LOGIT = 1.2  # seniority c_level, vp or director
BUDGET_LOGIT = 0.8  # a declared budget of 20,000 or more
INDUSTRY_LOGIT = 0.4  # software or saas
NOISE_SD = 0.8  # of the Gaussian noise added to the log-odds
WIN_RATE = 0.55  # of opportunities, won (the rest lost)
DISQUALIFIED_RATE = 0.06  # of identified journeys that do not convert: disqualified by sales


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
        outcomes: bool = False,
    ) -> None:
        self.random = random.Random(seed)
        # True: identified journeys end in CRM outcomes drawn from the ground truth (an
        # outcome that would fall after the span is not sent: it has not happened yet)
        self.outcomes = outcomes
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
        done: list[tuple[str, dict[str, Any]]] = []  # the journey's steps, for its outcomes
        for event_type, properties in steps():
            done.append((event_type, properties))
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
        if self.outcomes and identified:
            for event_type, outcome_at in self._outcomes(done, at):
                if outcome_at > end:
                    return
                yield self._event(contact, True, event_type, outcome_at, {})

    def _outcomes(self, done: Sequence[tuple[str, dict[str, Any]]], at: int) -> Iterator[tuple[str, int]]:
        """The CRM events that follow a journey's last step at `at`, drawn from the ground truth."""
        logit = conversion_logit(done) + self.random.gauss(0.0, NOISE_SD)
        if self.random.random() < 1 / (1 + math.exp(-logit)):
            at += self.random.randrange(DAY_MS, 10 * DAY_MS)
            yield "sales_qualified", at
            at += self.random.randrange(DAY_MS, 14 * DAY_MS)
            yield "opportunity_opened", at
            at += self.random.randrange(7 * DAY_MS, 45 * DAY_MS)
            yield ("deal_won" if self.random.random() < WIN_RATE else "deal_lost"), at
        elif self.random.random() < DISQUALIFIED_RATE:
            yield "disqualified", at + self.random.randrange(DAY_MS, 30 * DAY_MS)

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
        if not self.outcomes and self.random.random() < 0.5:  # else the ground truth decides
            yield "sales_qualified", {}
            yield "opportunity_opened", {}
            yield self.random.choice(("deal_won", "deal_lost")), {}

    def _churner(self) -> Iterator[tuple[str, dict[str, Any]]]:
        yield "newsletter_subscribed", {}
        yield "email_opened", {}
        yield self._page(("/careers", "/careers/jobs"))
        yield self.random.choice((("newsletter_unsubscribed", {}), ("email_bounced", {"hard": True})))


def conversion_logit(journey: Sequence[tuple[str, dict[str, Any]]]) -> float:
    """The ground truth's log-odds that a journey converts, before noise: what it did (each
    kind counted up to 3 times) and its latest profile's seniority, budget and industry."""
    counts: dict[str, int] = {}
    profile: dict[str, Any] = {}
    for event_type, properties in journey:
        kind = event_type
        if event_type == "page_viewed":
            path = str(properties.get("path", ""))
            kind = "pricing" if path.startswith("/pricing") else "careers" if path.startswith("/careers") else ""
        if kind in BEHAVIOUR_LOGIT:
            counts[kind] = counts.get(kind, 0) + 1
        if event_type == "profile_updated":
            profile.update(properties)
    logit = BASE_LOGIT + sum(BEHAVIOUR_LOGIT[kind] * min(count, 3) for kind, count in counts.items())
    if profile.get("seniority") in ("c_level", "vp", "director"):
        logit += SENIOR_LOGIT
    if isinstance(budget := profile.get("budget"), int) and budget >= 20_000:
        logit += BUDGET_LOGIT
    if profile.get("industry") in ("software", "saas"):
        logit += INDUSTRY_LOGIT
    return logit
