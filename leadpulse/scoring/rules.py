"""Scoring rules as data: a TOML file, validated once at start-up into frozen objects.

Marketers edit the file, so every mistake is reported with the key path that holds it
(`signals[3].points: ...`) and unknown keys are refused: a typo must not silently turn a
criterion off.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar, NoReturn, Protocol, Self

from mypy_extensions import mypyc_attr

from leadpulse.scoring.erasure import ERASE_EVENT
from leadpulse.scoring.nurture_rules import NurtureRules, parse_nurture
from leadpulse.scoring.timeutil import parse_duration_ms

FUNNEL_STAGES: tuple[str, ...] = ("suspect", "lead", "prospect", "opportunity", "customer")
SIDE_STAGES: tuple[str, ...] = ("nurturing", "disqualified")
STAGE_LEVEL: dict[str, int] = {name: level for level, name in enumerate(FUNNEL_STAGES)}
FIT_MATCHES = ("values", "ranges", "keywords")
PropertyValue = str | int | float | bool
SHIPPED_RULES = "leadpulse/scoring/default_rules.toml"

# Bounds far above any real rules file: they turn a pasted log or a generated file into a
# one-line error at start-up instead of a slow or memory-hungry worker.
MAX_FILE_BYTES = 1 << 20
MAX_VERSION = 100  # characters; every output record carries the version
MAX_TEXT = 200  # characters of a name, label, event type, path prefix, keyword or condition value
MAX_SIGNALS = 1000
MAX_LIST = 1000  # values of a fit attribute, values of a condition, event types
MAX_ENTRIES = 100  # categories, fit attributes, conditions of a signal
MAX_BANDS = 100
# Anonymous ids merged into one contact (identity products cap them too: Adobe's identity
# graph keeps 50 identities, Segment a limit per identifier type). 25 keeps the largest state
# the default rules allow, ids and values at the input limits, under Kafka's 1 MB record
# limit (the arithmetic is in docs/scoring.md#identity); a raised cap is the rules' owner's
# arithmetic to redo.
DEFAULT_MAX_LINKED_IDS = 25
MAX_LINKED_IDS = 1_000
_TOP_KEYS = (
    "version",
    "engagement",
    "weights",
    "temperature",
    "categories",
    "signals",
    "fit",
    "stages",
    "segments",
    "interests",
    "accounts",
    "mapping",
    "erasure",
    "nurture",
    "models",
    "identity",
    "retention",
)
EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
"""What a LeadPulse event type looks like (the input contract's `type`)."""
_NAME_SEPARATORS = re.compile(r"[\s_-]+")


def event_name_key(name: str) -> str:
    """How a Segment `track` name is looked up in `[mapping]`: case and the choice between
    spaces, underscores and hyphens vary between SDKs, tag managers and teams ('Demo
    Requested', 'demo_requested', 'demo-requested'), and none of them should decide whether
    an event scores."""
    return _NAME_SEPARATORS.sub(" ", name.strip()).lower()


_SIGNAL_KEYS = ("name", "event", "category", "points", "path_prefix", "when")
_INTEREST_KEYS = ("path_prefix", "tags", "topics", "weight")
_ACCOUNT_KEYS = (
    "top_weights",
    "engaged_score",
    "committee_points",
    "top_contacts",
    "member_reasons",
    "temperature",
    "committee",
)
MAX_SEGMENTS = 100
MAX_MODELS = 20
DEFAULT_MODEL = "default"  # the name of the model the top level of a rules file defines
_MODEL_KEYS = ("applies_to", "weights", "temperature", "signals", "fit")
FIT_SCORE = "fit"  # a segment condition on the contact's fit score rather than a profile attribute


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Signal:
    """One scoring rule: an event type (plus conditions) earns points in a category."""

    name: str
    event_type: str
    category: str
    points: float
    path_prefix: str | None = None
    when: tuple[tuple[str, tuple[PropertyValue, ...]], ...] = ()

    def matches(self, properties: dict[str, Any]) -> bool:
        if self.path_prefix is not None:
            path = properties.get("path")
            if not isinstance(path, str) or not path.startswith(self.path_prefix):
                return False
        return all(properties.get(key) in accepted for key, accepted in self.when)


@dataclass(frozen=True, slots=True)
class Category:
    """Caps are applied when the score is read, so the final score is order-independent."""

    name: str
    cap: float
    floor: float


@dataclass(frozen=True, slots=True)
class FitCriterion:
    """Points for one profile attribute: exact values, numeric ranges or title keywords."""

    attribute: str
    match: str
    values: dict[str, float] = field(default_factory=dict)
    ranges: tuple[tuple[float, float], ...] = ()
    # `derive_from`/`derive`: the value a contact gets from another attribute's words when it
    # does not send this one (a seniority named by a job title), first match in file order.
    derive_from: str | None = None
    derive: tuple[tuple[str, str], ...] = ()

    def derived(self, text: str) -> str | None:
        """The value the first `derive` words found in `text` (whole words, any case) name."""
        lowered = text.lower()
        return next((value for words, value in self.derive if has_words(lowered, words)), None)

    def points(self, value: PropertyValue) -> float:
        if self.match == "ranges":
            if isinstance(value, bool) or not isinstance(value, int | float):
                return 0.0
            earned = 0.0
            for lower, points in self.ranges:
                if value >= lower:
                    earned = points
            return earned
        text = str(value).strip().lower()
        if self.match == "values":
            return self.values.get(text, 0.0)
        matched = [points for keyword, points in self.values.items() if has_words(text, keyword)]
        return max(matched, default=0.0)


@cache
def _whole_words(words: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(words)}(?!\w)")


def has_words(text: str, words: str) -> bool:
    """`words` in `text` as whole words: 'intern' is not in 'international', nor 'cto' in
    'director'. Both are lower case."""
    return words in text and _whole_words(words).search(text) is not None


@dataclass(frozen=True, slots=True)
class SegmentCondition:
    """One test of a segment: a profile attribute (or the fit score) among `values`
    (compared as fit values are: trimmed, lower case) or within [minimum, maximum]."""

    attribute: str
    values: frozenset[str] = frozenset()
    minimum: float | None = None
    maximum: float | None = None

    def holds(self, value: PropertyValue | None) -> bool:
        if value is None:
            return False
        if self.values:
            return str(value).strip().lower() in self.values
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)


@dataclass(frozen=True, slots=True)
class Segment:
    """A named part of the market: a contact is in it when every condition holds. Read
    from the latest profile values at snapshot time, so membership is order-independent."""

    name: str
    conditions: tuple[SegmentCondition, ...]

    def contains(self, profile: dict[str, PropertyValue], fit: float) -> bool:
        return all(
            condition.holds(fit if condition.attribute == FIT_SCORE else profile.get(condition.attribute))
            for condition in self.conditions
        )


@dataclass(frozen=True, slots=True)
class Interest:
    """A topic a contact shows interest in: pages under a path prefix, content tagged with
    one of `tags` (the event's `tags` or `tag` property), webinars on one of `topics` (its
    `topic` property). Each matching event adds `weight`, decayed like engagement."""

    name: str
    path_prefixes: tuple[str, ...]
    tags: frozenset[str]
    topics: frozenset[str]
    weight: float

    def matches(self, path: str | None, tags: set[str], topics: set[str]) -> bool:
        """`tags` and `topics` are the event's words (`_words`), read once for all interests."""
        if path is not None and path.startswith(self.path_prefixes):
            return True
        return not self.tags.isdisjoint(tags) or not self.topics.isdisjoint(topics)


def _words(*values: Any) -> set[str]:
    """Tag-like property values, normalised: a string, or a list of strings."""
    words: set[str] = set()
    for value in values:
        for item in value if isinstance(value, list) else (value,):
            if isinstance(item, str):
                words.add(item.strip().lower())
    return words


def band_of(score: float, floors: tuple[float, ...]) -> int:
    """1-based index of the band `score` falls in: 1 cold ... len(floors) hot."""
    level = 1
    for index, floor in enumerate(floors):
        if score >= floor:
            level = index + 1
    return level


def hot_hysteresis(armed: bool, score: float, hot_floor: float, rearm_gap: float) -> tuple[bool, bool]:
    """(armed afterwards, alert now): one alert per hot episode for contacts and accounts
    alike; an episode ends only once the score is clearly below the hot band, so a score
    wavering around the floor does not alert at every change."""
    if armed and score >= hot_floor:
        return False, True
    if not armed and score < hot_floor - rearm_gap:
        return True, False
    return armed, False


def first_signal(signals: dict[str, tuple[Signal, ...]], event_type: str, properties: dict[str, Any]) -> Signal | None:
    """The first signal in file order that matches: specific rules go above general ones."""
    for signal in signals.get(event_type, ()):
        if signal.matches(properties):
            return signal
    return None


class Scorer(Protocol):
    """What a score is computed with: the top level of the rules (the default model) or a
    named model; the engine reads both alike."""

    @property
    def categories(self) -> dict[str, Category]: ...
    @property
    def signal_categories(self) -> dict[str, str]: ...
    @property
    def fit(self) -> dict[str, FitCriterion]: ...
    @property
    def weight_fit(self) -> float: ...
    @property
    def weight_engagement(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Model:
    """A named scoring model (`[models.<name>]`): its own signals (or the top level's), fit,
    weights and bands, for the contacts of its `applies_to` segments (empty: every contact).
    Categories, half-life, stages and segments are the rules' own."""

    name: str
    signals: dict[str, tuple[Signal, ...]]
    signal_categories: dict[str, str]
    own_signals: bool  # False: the top level's signals, whose sums the contact state already keeps
    categories: dict[str, Category]
    fit: dict[str, FitCriterion]
    weight_fit: float
    weight_engagement: float
    band_floors: tuple[float, ...]
    band_labels: tuple[str, ...]
    rearm_gap: float
    applies_to: frozenset[str] = frozenset()
    applies_to_segments: tuple[Segment, ...] = ()  # the segments `applies_to` names

    @property
    def hot_floor(self) -> float:
        return self.band_floors[-1]

    def temperature(self, score: float) -> int:
        return band_of(score, self.band_floors)

    def signal_for(self, event_type: str, properties: dict[str, Any]) -> Signal | None:
        return first_signal(self.signals, event_type, properties)

    def applies(self, segments: tuple[str, ...]) -> bool:
        """A model applies to a contact in any of its segments (all contacts without `applies_to`)."""
        return not self.applies_to or not self.applies_to.isdisjoint(segments)

    def applies_to_profile(self, profile: dict[str, PropertyValue], fit: float) -> bool:
        """`applies` without computing every segment of the rules."""
        return not self.applies_to or any(segment.contains(profile, fit) for segment in self.applies_to_segments)


@dataclass(frozen=True, slots=True)
class AccountRules:
    """How an account is read from its members' latest snapshots (`[accounts]`)."""

    top_weights: tuple[float, ...] = (0.5, 0.3, 0.2, 0.15, 0.1)
    engaged_score: float = 40.0
    committee_points: float = 20.0
    top_contacts: int = 3
    member_reasons: int = 3
    band_floors: tuple[float, ...] = (0.0, 25.0, 50.0, 75.0)
    band_labels: tuple[str, ...] = ("cold", "cool", "warm", "hot")
    rearm_gap: float = 10.0
    committee: tuple[Segment, ...] = ()

    @property
    def hot_floor(self) -> float:
        return self.band_floors[-1]

    @property
    def member_attributes(self) -> tuple[str, ...]:
        """Profile attributes a member record carries: what the committee roles test, and
        department and seniority, which the top contacts show."""
        tested = [c.attribute for role in self.committee for c in role.conditions if c.attribute != FIT_SCORE]
        return tuple(dict.fromkeys(["department", "seniority", *tested]))


_ACCOUNT_DEFAULTS = AccountRules()


@dataclass(frozen=True, slots=True)
class Rules:
    version: str
    half_life_ms: int
    max_future_ms: int
    dedup_window: int
    weight_fit: float
    weight_engagement: float
    band_floors: tuple[float, ...]
    band_labels: tuple[str, ...]
    rearm_gap: float
    top_reasons: int
    prospect_fit: float
    prospect_engagement: float
    opportunity_events: frozenset[str]
    explicit_stages: dict[str, str]
    categories: dict[str, Category]
    signals: dict[str, tuple[Signal, ...]]
    signal_categories: dict[str, str]
    fit: dict[str, FitCriterion]
    segments: tuple[Segment, ...] = ()
    interests: tuple[Interest, ...] = ()
    top_interests: int = 3
    accounts: AccountRules = field(default_factory=AccountRules)
    mapping: dict[str, str] = field(default_factory=dict)
    """Segment `track` names (as `event_name_key` spells them) -> LeadPulse event types."""
    erasure_grace_ms: int = 30 * 86_400_000
    # The most anonymous ids a contact merges: the earliest links win, any later one is
    # refused and stands on its own (scoring/identity.py, docs/scoring.md#identity).
    max_linked_ids: int = DEFAULT_MAX_LINKED_IDS
    # An anonymous contact nobody identified expires this long after its latest event
    # (scoring/expiry.py, docs/scoring.md#ageing-out).
    anonymous_after_ms: int = 90 * 86_400_000
    nurture: NurtureRules = field(default_factory=NurtureRules)
    models: tuple[Model, ...] = ()  # the named models, in file order (the default one is the top level)
    # Derived from `models` once, for the hot path: the models whose signal sums the state keeps,
    # and the profile attributes only a named model's fit reads (the state keeps them too).
    own_signal_models: tuple[Model, ...] = ()
    model_attributes: frozenset[str] = frozenset()
    derived_fit: tuple[FitCriterion, ...] = ()  # the [fit] criteria with a `derive_from`

    def mapped_type(self, name: str) -> str | None:
        """The event type a Segment `track` name stands for, or None when `[mapping]` does not know it."""
        return self.mapping.get(event_name_key(name))

    @property
    def hot_floor(self) -> float:
        return self.band_floors[-1]

    def signal_for(self, event_type: str, properties: dict[str, Any]) -> Signal | None:
        return first_signal(self.signals, event_type, properties)

    def interests_of(self, properties: dict[str, Any]) -> list[Interest]:
        if not self.interests:
            return []
        path = properties.get("path")
        tags = _words(properties.get("tags"), properties.get("tag"))
        topics = _words(properties.get("topic"))
        where = path if isinstance(path, str) else None
        return [interest for interest in self.interests if interest.matches(where, tags, topics)]

    def temperature(self, score: float) -> int:
        """1-based band index: 1 cold ... len(bands) hot."""
        return band_of(score, self.band_floors)


@mypyc_attr(allow_interpreted_subclasses=True)  # notify.config's reader subclasses it, uncompiled
class _Table:
    """Reads one TOML table, remembering the key path for errors and the keys it consumed.

    A table that names its `keys` refuses any other key at once, before a misspelling can
    surface as a confusing consequence ('name: missing', 'labels: expected 4 names').
    Another checked TOML file (notify.config) subclasses it with its own `error` and the
    `reference` its messages point to."""

    # Class attributes (ClassVar): compiled, a plain annotation would make them per-instance
    # defaults, which the subclass's class attributes would not override.
    error: ClassVar[type[ValueError]] = RulesError
    reference: ClassVar[str] = SHIPPED_RULES

    def __init__(self, data: Any, path: str, source: str, keys: tuple[str, ...] = ()) -> None:
        self.source = source
        self.path = path
        if not isinstance(data, dict):
            self.fail("", f"expected a table, got {_kind(data)}")
        self.data: dict[str, Any] = data
        self.accepted: set[str] = set(keys)
        self.seen: set[str] = set()
        if keys:
            self.refuse_unknown(self.accepted)

    def fail(self, key: str, reason: str) -> NoReturn:
        where = ".".join(part for part in (self.path, _cut(key)) if part) or "(top level)"
        raise self.error(f"{self.source}: {where}: {reason}")

    def get(self, key: str, default: Any = None) -> Any:
        self.seen.add(key)
        return self.data.get(key, default)

    def require(self, key: str) -> Any:
        if key not in self.data:
            self.fail(key, "missing (required)")
        return self.get(key)

    def number(self, key: str, default: float | None = None, lo: float | None = None, hi: float | None = None) -> float:
        value = self.require(key) if default is None else self.get(key, default)
        return self.check_number(key, value, lo, hi)

    def check_number(self, key: str, value: Any, lo: float | None = None, hi: float | None = None) -> float:
        """Every number of the file passes here: NaN would compare false with every bound
        and then poison each score it touches, and TOML spells it `nan`."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, f"expected a number, got {_kind(value)}")
        try:
            number = float(value)
        except OverflowError:
            self.fail(key, f"{_cut(str(value))} is too large")
        if not math.isfinite(number):
            self.fail(key, f"{value} is not a finite number")
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            self.fail(key, f"{_cut(str(value))} is outside [{lo}, {hi}]")
        return number

    def text(self, key: str, default: str | None = None, limit: int = MAX_TEXT) -> str:
        value = self.require(key) if default is None else self.get(key, default)
        return self.check_text(key, value, limit)

    def check_text(self, key: str, value: Any, limit: int = MAX_TEXT) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"expected a non-empty string, got {_kind(value)}")
        if len(value) > limit:
            self.fail(key, f"{len(value)} characters, over the limit of {limit}")
        return value

    def check_name(self, key: str) -> str:
        """Table keys are names too (categories, attributes, keywords, event types)."""
        if len(key) > MAX_TEXT:
            self.fail(key, f"the name is {len(key)} characters, over the limit of {MAX_TEXT}")
        return key

    def check_count(self, key: str, items: list[Any] | dict[str, Any], limit: int, what: str) -> None:
        if len(items) > limit:
            self.fail(key, f"{len(items)} {what}, over the limit of {limit}")

    def names(self, key: str, value: object, known: Collection[str], what: str) -> list[str]:
        """`value`: a list of names each of which the file defines elsewhere (in `known`)."""
        if not isinstance(value, list):
            self.fail(key, f"expected a list of {what} names")
        self.check_count(key, value, MAX_LIST, "names")
        for i, item in enumerate(value):
            if self.check_text(f"{key}[{i}]", item) not in known:
                self.fail(f"{key}[{i}]", f"unknown {what} {_cut(item)!r}; defined: {', '.join(known) or '(none)'}")
        return list(value)

    def duration(self, key: str, default: str) -> int:
        value = self.text(key, default)
        try:
            millis = parse_duration_ms(value)
        except ValueError as error:
            self.fail(key, str(error))
        if millis <= 0:
            self.fail(key, "must be longer than zero")
        return millis

    def items(self, key: str, limit: int, keys: tuple[str, ...] = ()) -> list[Self]:
        """The tables of an array of tables (`[[path.key]]`, none when absent), each naming
        itself `key[i]` in errors."""
        raw = self.get(key, [])
        where = f"{self.path}.{key}" if self.path else key
        if not isinstance(raw, list):
            self.fail(key, f"expected [[{where}]] tables")
        self.check_count(key, raw, limit, key)
        return [type(self)(item, f"{where}[{index}]", self.source, keys) for index, item in enumerate(raw)]

    def sub(self, key: str, required: bool = False, keys: tuple[str, ...] = ()) -> Self:
        value = self.require(key) if required else self.get(key, {})
        return type(self)(value, f"{self.path}.{key}" if self.path else key, self.source, keys)

    def refuse_unknown(self, known: set[str]) -> None:
        for key in self.data:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1) if len(key) <= MAX_TEXT else []
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.fail(key, f"unknown key{hint} (see {self.reference} for every key)")

    def done(self) -> None:
        """Called once the table is read: a key nothing asked for would be silently ignored."""
        self.refuse_unknown(self.accepted | self.seen)
        for key in self.data:
            if key not in self.seen:
                self.fail(key, f"has no effect with the other settings of this table (remove it; see {self.reference})")


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {_cut(repr(value))}" if not isinstance(value, dict | list) else type(value).__name__


def _cut(text: str, limit: int = 60) -> str:
    """Keeps an error message one readable line when the file holds a pasted megabyte."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def load_rules(path: str | Path | None = None) -> Rules:
    """Load and validate a rules file; None loads the rules shipped with LeadPulse."""
    if path is None:
        text = resources.files("leadpulse.scoring").joinpath("default_rules.toml").read_text("utf-8")
        return parse_rules(text, "default_rules.toml")
    return parse_rules(read_text_file(path), str(path))


def read_text_file(path: str | Path, what: str = "rules file", error: type[ValueError] = RulesError) -> str:
    """A file a user names, as text: errors are one line naming the path (`what` says what
    it should have been), and no more than MAX_FILE_BYTES are read."""
    try:
        with Path(path).open("rb") as handle:
            content = handle.read(MAX_FILE_BYTES + 1)  # not more: the path may be a device or a huge file
    except OSError as error_:
        raise error(f"{path}: cannot read {what}: {error_.strerror}") from None
    if len(content) > MAX_FILE_BYTES:
        raise error(f"{path}: {_size_reason(what)}")
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as error_:
        raise error(f"{path}: not UTF-8 text (byte {error_.start})") from None


def parse_toml(text: str, source: str, what: str = "rules file", error: type[ValueError] = RulesError) -> Any:
    """The TOML document in `text`, or one line saying why not (with the line and column)."""
    if len(text) > MAX_FILE_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise error(f"{source}: {_size_reason(what)}")
    try:
        return tomllib.loads(text)
    except ValueError as error_:  # TOMLDecodeError, or an integer of more than 4300 digits
        raise error(f"{source}: not valid TOML: {_cut(str(error_), 200)}") from None


def _size_reason(what: str) -> str:
    return f"over the limit of 1 MiB ({MAX_FILE_BYTES} bytes) for a {what}"


def parse_rules(text: str, source: str = "rules") -> Rules:
    data = parse_toml(text, source)
    top = _Table(data, "", source, _TOP_KEYS)
    version = top.text("version", limit=MAX_VERSION)

    engagement = top.sub("engagement", keys=("half_life", "max_future", "dedup_window", "top_reasons", "top_interests"))
    half_life_ms = engagement.duration("half_life", "30d")
    max_future_ms = engagement.duration("max_future", "15m")
    dedup_window = int(engagement.number("dedup_window", 64, lo=1, hi=4096))
    top_reasons = int(engagement.number("top_reasons", 5, lo=1, hi=50))
    top_interests = int(engagement.number("top_interests", 3, lo=1, hi=50))
    engagement.done()

    weight_fit, weight_engagement = _parse_weights(top.sub("weights", keys=("fit", "engagement")), (0.4, 0.6))

    bands, labels, rearm_gap = _parse_temperature(top.sub("temperature", keys=("bands", "labels", "rearm_gap")))
    categories = _parse_categories(top.sub("categories", required=True))
    signals = _parse_signals(top, categories)
    fit = _parse_fit(top.sub("fit"), derivable=True)
    segments = _parse_segments(top, "segments", fit)
    interests = _parse_interests(top.sub("interests"))
    accounts = _parse_accounts(top.sub("accounts", keys=_ACCOUNT_KEYS), fit, (bands, labels, rearm_gap))
    erasure = top.sub("erasure", keys=("grace",))
    erasure_grace_ms = erasure.duration("grace", "30d")
    erasure.done()
    identity = top.sub("identity", keys=("max_linked_ids",))
    max_linked_ids = int(identity.number("max_linked_ids", DEFAULT_MAX_LINKED_IDS, lo=1, hi=MAX_LINKED_IDS))
    identity.done()
    retention = top.sub("retention", keys=("anonymous_after",))
    anonymous_after_ms = retention.duration("anonymous_after", "90d")
    retention.done()
    prospect_fit, prospect_engagement, opportunity_events, explicit_stages = _parse_stages(
        top.sub("stages", keys=("prospect_fit", "prospect_engagement", "opportunity_events", "explicit"))
    )
    mapping = _parse_mapping(top.sub("mapping"))
    nurture = parse_nurture(
        top.sub("nurture", keys=("period", "dormant_after", "skip_stages", "tracks", "content")),
        FUNNEL_STAGES + SIDE_STAGES,
        {interest.name for interest in interests},
        {segment.name for segment in segments},
        labels,
    )
    signal_categories = {s.name: s.category for group in signals.values() for s in group}
    top_level = Model(
        name=DEFAULT_MODEL,
        signals=signals,
        signal_categories=signal_categories,
        own_signals=False,
        categories=categories,
        fit=fit,
        weight_fit=weight_fit,
        weight_engagement=weight_engagement,
        band_floors=bands,
        band_labels=labels,
        rearm_gap=rearm_gap,
    )
    models = _parse_models(top.sub("models"), top_level, segments)
    top.done()

    return Rules(
        version=version,
        half_life_ms=half_life_ms,
        max_future_ms=max_future_ms,
        dedup_window=dedup_window,
        weight_fit=weight_fit,
        weight_engagement=weight_engagement,
        band_floors=bands,
        band_labels=labels,
        rearm_gap=rearm_gap,
        top_reasons=top_reasons,
        prospect_fit=prospect_fit,
        prospect_engagement=prospect_engagement,
        opportunity_events=opportunity_events,
        explicit_stages=explicit_stages,
        categories=categories,
        signals=signals,
        signal_categories=signal_categories,
        fit=fit,
        segments=segments,
        interests=interests,
        top_interests=top_interests,
        accounts=accounts,
        mapping=mapping,
        erasure_grace_ms=erasure_grace_ms,
        max_linked_ids=max_linked_ids,
        anonymous_after_ms=anonymous_after_ms,
        nurture=nurture,
        models=models,
        own_signal_models=tuple(model for model in models if model.own_signals),
        model_attributes=frozenset().union(*(model.fit for model in models)) - frozenset(fit),
        derived_fit=tuple(criterion for criterion in fit.values() if criterion.derive_from is not None),
    )


def _parse_weights(weights: _Table, defaults: tuple[float, float]) -> tuple[float, float]:
    weight_fit = weights.number("fit", defaults[0], lo=0, hi=1)
    weight_engagement = weights.number("engagement", defaults[1], lo=0, hi=1)
    if abs(weight_fit + weight_engagement - 1.0) > 1e-9:
        weights.fail("", f"fit + engagement must add up to 1 (got {weight_fit} + {weight_engagement})")
    weights.done()
    return weight_fit, weight_engagement


def _parse_models(table: _Table, top_level: Model, segments: tuple[Segment, ...]) -> tuple[Model, ...]:
    """`[models.<name>]`: each key left out is the top level's (signals, fit, weights, bands),
    so a model states only what makes it different."""
    table.check_count("", table.data, MAX_MODELS, "models")
    known_segments = [segment.name for segment in segments]
    models: list[Model] = []
    for name in table.data:
        entry = table.sub(table.check_name(name), keys=_MODEL_KEYS)
        if name == DEFAULT_MODEL:
            entry.fail("", f"{DEFAULT_MODEL!r} is the model of the top level of the file; name this one otherwise")
        own_signals = "signals" in entry.data
        model_signals = _parse_signals(entry, top_level.categories) if own_signals else top_level.signals
        model_fit = _parse_fit(entry.sub("fit")) if "fit" in entry.data else top_level.fit
        weight_fit, weight_engagement = _parse_weights(
            entry.sub("weights", keys=("fit", "engagement")), (top_level.weight_fit, top_level.weight_engagement)
        )
        floors, labels, rearm_gap = _parse_temperature(
            entry.sub("temperature", keys=("bands", "labels", "rearm_gap")),
            (top_level.band_floors, top_level.band_labels, top_level.rearm_gap),
        )
        applies_to = entry.names("applies_to", entry.get("applies_to", []), known_segments, "segment")
        entry.done()
        models.append(
            Model(
                name=name,
                signals=model_signals,
                signal_categories={s.name: s.category for group in model_signals.values() for s in group},
                own_signals=own_signals,
                categories=top_level.categories,
                fit=model_fit,
                weight_fit=weight_fit,
                weight_engagement=weight_engagement,
                band_floors=floors,
                band_labels=labels,
                rearm_gap=rearm_gap,
                applies_to=frozenset(applies_to),
                applies_to_segments=tuple(segment for segment in segments if segment.name in applies_to),
            )
        )
    return tuple(models)


def _parse_mapping(table: _Table) -> dict[str, str]:
    """Two names that only differ in case or separators are one name to the lookup, so they
    must not point at two types: the file would then depend on which one TOML read last."""
    table.check_count("", table.data, MAX_LIST, "names")
    mapping: dict[str, str] = {}
    spelled: dict[str, str] = {}
    for name in table.data:
        event_type = table.text(table.check_name(name))
        if not EVENT_TYPE.match(event_type):
            table.fail(name, f"{_cut(event_type)!r} is not an event type (lower case, digits, '_' or '.')")
        if event_type == ERASE_EVENT:
            table.fail(
                name, f"may not map to {ERASE_EVENT}: erasure comes only from `leadpulse erase` (docs/erasure.md)"
            )
        key = event_name_key(name)
        if not key:
            table.fail(name, "expected a non-empty event name")
        if key in mapping and mapping[key] != event_type:
            table.fail(name, f"the same name as {spelled[key]!r} (case and separators aside), mapped otherwise")
        mapping[key], spelled[key] = event_type, name
    table.done()
    return mapping


Bands = tuple[tuple[float, ...], tuple[str, ...], float]  # floors, labels, re-arm gap


def _parse_temperature(
    table: _Table, defaults: Bands = ((0, 25, 50, 75), ("cold", "cool", "warm", "hot"), 10)
) -> Bands:
    floors = table.get("bands", list(defaults[0]))
    labels = table.get("labels", list(defaults[1]))
    if not isinstance(floors, list) or len(floors) < 2:
        table.fail("bands", "expected a list of at least two band lower bounds, e.g. [0, 25, 50, 75]")
    table.check_count("bands", floors, MAX_BANDS, "bands")
    numbers = tuple(table.check_number(f"bands[{i}]", value, 0, 100) for i, value in enumerate(floors))
    if numbers[0] != 0 or any(b <= a for a, b in pairwise(numbers)):
        table.fail("bands", "must start at 0 and increase strictly")
    if not isinstance(labels, list) or len(labels) != len(numbers):
        table.fail("labels", f"expected {len(numbers)} names, one per band")
    names = tuple(table.check_text(f"labels[{i}]", label) for i, label in enumerate(labels))
    rearm_gap = table.number("rearm_gap", defaults[2], lo=0, hi=100)
    table.done()
    return numbers, names, rearm_gap


def _parse_categories(table: _Table) -> dict[str, Category]:
    table.check_count("", table.data, MAX_ENTRIES, "categories")
    categories: dict[str, Category] = {}
    for name in table.data:
        entry = table.sub(table.check_name(name), keys=("cap", "floor"))
        cap = entry.number("cap", 100, lo=-100, hi=100)
        floor = entry.number("floor", -100, lo=-100, hi=100)
        if floor > cap:
            entry.fail("floor", f"floor {floor} is above cap {cap}")
        entry.done()
        categories[name] = Category(name, cap, floor)
    if not categories:
        table.fail("", "define at least one category")
    return categories


def _parse_signals(top: _Table, categories: dict[str, Category]) -> dict[str, tuple[Signal, ...]]:
    raw = top.require("signals")
    if not isinstance(raw, list) or not raw:
        top.fail("signals", f"expected one or more [[{top.path + '.' if top.path else ''}signals]] tables")
    top.check_count("signals", raw, MAX_SIGNALS, "signals")
    by_type: dict[str, list[Signal]] = {}
    names: set[str] = set()
    for index, item in enumerate(raw):
        entry = _Table(item, f"{top.path + '.' if top.path else ''}signals[{index}]", top.source, _SIGNAL_KEYS)
        name = entry.text("name")
        if name in names:
            entry.fail("name", f"duplicate signal name {name!r}")
        names.add(name)
        category = entry.text("category")
        if category not in categories:
            entry.fail("category", f"unknown category {category!r}; defined: {', '.join(categories)}")
        path_prefix = entry.get("path_prefix")
        if path_prefix is not None:
            if not isinstance(path_prefix, str):
                entry.fail("path_prefix", f"expected a string, got {_kind(path_prefix)}")
            entry.check_text("path_prefix", path_prefix)
        signal = Signal(
            name=name,
            event_type=entry.text("event"),
            category=category,
            points=entry.number("points", lo=-100, hi=100),
            path_prefix=path_prefix,
            when=_parse_conditions(entry.sub("when")),
        )
        entry.done()
        by_type.setdefault(signal.event_type, []).append(signal)
    return {event_type: tuple(signals) for event_type, signals in by_type.items()}


def _parse_conditions(when: _Table) -> tuple[tuple[str, tuple[PropertyValue, ...]], ...]:
    when.check_count("", when.data, MAX_ENTRIES, "conditions")
    conditions: list[tuple[str, tuple[PropertyValue, ...]]] = []
    for key, accepted in when.data.items():
        when.check_name(key)
        options = accepted if isinstance(accepted, list) else [accepted]
        if not options or not all(isinstance(o, str | int | float | bool) for o in options):
            when.fail(key, "expected a string, number, boolean or a list of them")
        when.check_count(key, options, MAX_LIST, "values")
        for i, option in enumerate(options):
            at = f"{key}[{i}]" if isinstance(accepted, list) else key
            if isinstance(option, str):
                when.check_text(at, option)
            elif not isinstance(option, bool):
                when.check_number(at, option)
        conditions.append((key, tuple(options)))
    when.seen.update(when.data)
    when.done()
    return tuple(conditions)


def _parse_fit(table: _Table, derivable: bool = False) -> dict[str, FitCriterion]:
    """`derivable`: the top level's [fit], whose derived values every model reads too."""
    table.check_count("", table.data, MAX_ENTRIES, "fit attributes")
    criteria: dict[str, FitCriterion] = {}
    keys = ("match", "points", "ranges", *(("derive_from", "derive") if derivable else ()))
    for attribute in table.data:
        entry = table.sub(table.check_name(attribute), keys=keys)
        match = entry.text("match", "values")
        if match not in FIT_MATCHES:
            entry.fail("match", f"unknown match {match!r}; one of {', '.join(FIT_MATCHES)}")
        values: dict[str, float] = {}
        ranges: tuple[tuple[float, float], ...] = ()
        if match == "ranges":
            ranges = _parse_ranges(entry)
        else:
            points = entry.sub("points", required=True)
            points.check_count("", points.data, MAX_LIST, "values")
            for value in points.data:
                values[points.check_name(value).strip().lower()] = points.number(value, lo=-100, hi=100)
            points.done()
        derive_from, derive = _parse_derive(entry, attribute, values) if "derive_from" in entry.data else (None, ())
        entry.done()
        criteria[attribute] = FitCriterion(attribute, match, values, ranges, derive_from, derive)
    return criteria


def _parse_derive(entry: _Table, attribute: str, values: dict[str, float]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """`derive_from = "job_title"` and `derive = { words = value }`, each value one this
    table gives points to (a derived value that scores nothing would be a typo)."""
    source = entry.check_name(entry.text("derive_from"))
    if source == attribute:
        entry.fail("derive_from", "names the attribute itself")
    table = entry.sub("derive", required=True)
    table.check_count("", table.data, MAX_LIST, "words")
    derive = []
    for words in table.data:
        value = table.text(table.check_name(words)).strip().lower()
        if value not in values:
            table.fail(words, f"{value!r} is not one of the values of [fit.{attribute}] ({', '.join(values)})")
        derive.append((words.strip().lower(), value))
    table.done()
    return source, tuple(derive)


def _parse_ranges(entry: _Table) -> tuple[tuple[float, float], ...]:
    raw_ranges = entry.require("ranges")
    if not isinstance(raw_ranges, list) or not raw_ranges:
        entry.fail("ranges", "expected a list of [lower_bound, points] pairs")
    entry.check_count("ranges", raw_ranges, MAX_LIST, "ranges")
    ranges: list[tuple[float, float]] = []
    for i, pair in enumerate(raw_ranges):
        if not isinstance(pair, list) or len(pair) != 2:
            entry.fail(f"ranges[{i}]", "expected [lower_bound, points]")
        lower = entry.check_number(f"ranges[{i}][0]", pair[0])
        if ranges and lower <= ranges[-1][0]:
            entry.fail(f"ranges[{i}]", "lower bounds must increase")
        ranges.append((lower, entry.check_number(f"ranges[{i}][1]", pair[1], -100, 100)))
    return tuple(ranges)


def _parse_stages(stages: _Table) -> tuple[float, float, frozenset[str], dict[str, str]]:
    prospect_fit = stages.number("prospect_fit", 40, lo=0, hi=100)
    prospect_engagement = stages.number("prospect_engagement", 30, lo=0, hi=100)
    opportunity_events = stages.get("opportunity_events", ["quote_requested", "demo_requested"])
    if not isinstance(opportunity_events, list) or not all(isinstance(e, str) for e in opportunity_events):
        stages.fail("opportunity_events", "expected a list of event types")
    stages.check_count("opportunity_events", opportunity_events, MAX_LIST, "event types")
    for i, event_type in enumerate(opportunity_events):
        stages.check_text(f"opportunity_events[{i}]", event_type)
    explicit = stages.sub("explicit")
    explicit.check_count("", explicit.data, MAX_LIST, "event types")
    explicit_stages: dict[str, str] = {}
    for event_type in explicit.data:
        stage = explicit.text(explicit.check_name(event_type))
        if stage not in STAGE_LEVEL and stage not in SIDE_STAGES:
            explicit.fail(event_type, f"unknown stage {stage!r}; one of {', '.join(FUNNEL_STAGES + SIDE_STAGES)}")
        explicit_stages[event_type] = stage
    explicit.done()
    stages.done()
    return prospect_fit, prospect_engagement, frozenset(opportunity_events), explicit_stages


def _parse_segments(owner: _Table, key: str, fit: dict[str, FitCriterion]) -> tuple[Segment, ...]:
    """`[[segments]]` (and `[[accounts.committee]]` roles): a name and conditions on `[fit]`
    attributes (the only profile values a contact's state keeps) or on `fit` itself."""
    raw = owner.get(key, [])
    if not isinstance(raw, list):
        owner.fail(key, f"expected [[{owner.path + '.' if owner.path else ''}{key}]] tables")
    owner.check_count(key, raw, MAX_SEGMENTS, key)
    segments: list[Segment] = []
    for index, item in enumerate(raw):
        entry = _Table(item, f"{owner.path + '.' if owner.path else ''}{key}[{index}]", owner.source)
        name = entry.text("name")
        if any(segment.name == name for segment in segments):
            entry.fail("name", f"duplicate {'segment' if key == 'segments' else 'role'} name {name!r}")
        conditions = []
        for attribute in entry.data:
            if attribute == "name":
                continue
            if attribute != FIT_SCORE and attribute not in fit:
                known = ", ".join([FIT_SCORE, *fit])
                entry.fail(attribute, f"segments test the fit score or a [fit] attribute; one of {known}")
            conditions.append(_parse_condition(entry, attribute))
        if not conditions:
            entry.fail("", "a segment needs at least one condition besides its name")
        entry.done()
        segments.append(Segment(name, tuple(conditions)))
    return tuple(segments)


def _parse_condition(entry: _Table, attribute: str) -> SegmentCondition:
    """`attribute = ["a", "b"]` (one of these values) or `attribute = { min = 50, max = 999 }`."""
    value = entry.get(attribute)
    if isinstance(value, list):
        if not value:
            entry.fail(attribute, "expected at least one value")
        entry.check_count(attribute, value, MAX_LIST, "values")
        words = frozenset(entry.check_text(f"{attribute}[{i}]", str(v)).strip().lower() for i, v in enumerate(value))
        return SegmentCondition(attribute, values=words)
    bounds = entry.sub(attribute, keys=("min", "max"))
    minimum = bounds.get("min")
    maximum = bounds.get("max")
    if minimum is None and maximum is None:
        bounds.fail("", "expected a list of values, or { min = ..., max = ... }")
    low = None if minimum is None else bounds.check_number("min", minimum)
    high = None if maximum is None else bounds.check_number("max", maximum)
    if low is not None and high is not None and low > high:
        bounds.fail("min", f"min {low} is above max {high}")
    bounds.done()
    return SegmentCondition(attribute, minimum=low, maximum=high)


def _parse_interests(table: _Table) -> tuple[Interest, ...]:
    table.check_count("", table.data, MAX_ENTRIES, "interests")
    interests: list[Interest] = []
    for name in table.data:
        entry = table.sub(table.check_name(name), keys=_INTEREST_KEYS)
        prefixes = tuple(_text_list(entry, "path_prefix"))
        tags = frozenset(word.strip().lower() for word in _text_list(entry, "tags"))
        topics = frozenset(word.strip().lower() for word in _text_list(entry, "topics"))
        if not (prefixes or tags or topics):
            entry.fail("", "an interest needs path_prefix, tags or topics to match events")
        weight = entry.number("weight", 1, lo=0, hi=100)
        entry.done()
        interests.append(Interest(name, prefixes, tags, topics, weight))
    return tuple(interests)


def _text_list(entry: _Table, key: str) -> list[str]:
    """A string or a list of strings (path prefixes, tags, topics)."""
    value = entry.get(key, [])
    items = value if isinstance(value, list) else [value]
    entry.check_count(key, items, MAX_LIST, "values")
    return [entry.check_text(f"{key}[{i}]" if isinstance(value, list) else key, item) for i, item in enumerate(items)]


def _parse_accounts(table: _Table, fit: dict[str, FitCriterion], contact_bands: Bands) -> AccountRules:
    """`[accounts]`: every key has a default, and the temperature bands default to the
    contacts' so that "hot" means the same number unless the file says otherwise."""
    weights = table.get("top_weights", list(_ACCOUNT_DEFAULTS.top_weights))
    if not isinstance(weights, list) or not weights:
        table.fail("top_weights", "expected a list of weights, best member first, e.g. [0.5, 0.3, 0.2]")
    table.check_count("top_weights", weights, MAX_BANDS, "weights")
    top_weights = tuple(table.check_number(f"top_weights[{i}]", w, 0, 10) for i, w in enumerate(weights))
    engaged_score = table.number("engaged_score", _ACCOUNT_DEFAULTS.engaged_score, lo=0, hi=100)
    committee_points = table.number("committee_points", _ACCOUNT_DEFAULTS.committee_points, lo=0, hi=100)
    top_contacts = int(table.number("top_contacts", _ACCOUNT_DEFAULTS.top_contacts, lo=1, hi=50))
    member_reasons = int(table.number("member_reasons", _ACCOUNT_DEFAULTS.member_reasons, lo=0, hi=50))
    floors, labels, rearm_gap = _parse_temperature(
        table.sub("temperature", keys=("bands", "labels", "rearm_gap")), contact_bands
    )
    committee = _parse_segments(table, "committee", fit)
    table.done()
    return AccountRules(
        top_weights=top_weights,
        engaged_score=engaged_score,
        committee_points=committee_points,
        top_contacts=top_contacts,
        member_reasons=member_reasons,
        band_floors=floors,
        band_labels=labels,
        rearm_gap=rearm_gap,
        committee=committee,
    )
