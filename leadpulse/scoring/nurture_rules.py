"""`[nurture]` of a rules file: the tracks that decide when a contact needs nurturing, and the
content catalogue that decides what it receives. Parsed by scoring.rules (which passes its
table reader in, so errors name the key path like every other rules error); the decisions
themselves are scoring.nurture's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from leadpulse.scoring.rules import _Table

TRIGGERS = ("low_engagement", "cooled", "stalled", "recycled")
NEVER_NURTURED = ("opportunity", "customer")  # sales' contacts, whatever the rules say (and hot ones)
RECYCLED_STAGE = "nurturing"  # the side stage deal_lost puts a contact in
_TRIGGER_KEYS: dict[str, tuple[str, ...]] = {
    "low_engagement": ("min_fit", "max_engagement"),
    "cooled": ("from", "to"),
    "stalled": ("after", "stages"),
    "recycled": ("after",),
}
_CONTENT_KEYS = ("track", "stage", "interest", "segment", "title", "url")
MAX_TRACKS = 100
MAX_CONTENT = 1000
MAX_URL = 2000


@dataclass(frozen=True, slots=True)
class NurtureTrack:
    """One reason to nurture a contact; only the parameters of its `trigger` are used."""

    name: str
    trigger: str
    min_fit: float = 0.0  # low_engagement
    max_engagement: float = 0.0  # low_engagement
    from_band: int = 0  # cooled: band index (1-based) at the latest event, at least
    to_band: int = 0  # cooled: band index now
    after_ms: int = 0  # stalled: without an event; recycled: since deal_lost
    stages: frozenset[str] = frozenset()  # stalled


@dataclass(frozen=True, slots=True)
class CatalogueItem:
    """Content to send; an entry applies to a contact when each condition it names holds
    (None: any track, stage, interest or segment)."""

    title: str
    url: str
    track: str | None = None
    stage: str | None = None
    interest: str | None = None
    segment: str | None = None

    @property
    def unconditional(self) -> bool:
        """For any contact of its track(s): what a track falls back on."""
        return self.stage is None and self.interest is None and self.segment is None

    def fits(self, track: str, stage: str, segments: tuple[str, ...]) -> bool:
        return (
            (self.track is None or self.track == track)
            and (self.stage is None or self.stage == stage)
            and (self.segment is None or self.segment in segments)
        )


@dataclass(frozen=True, slots=True)
class NurtureRules:
    """No tracks (the default of a file without `[nurture]`): nothing is ever nurtured.

    `dormant_after_ms`: a contact without any event for this long is nurtured no more (a
    dormant address is a list-hygiene matter). It is what ends every track: without it a
    stalled lead holds its track forever, so half of all contacts would stay on the stream's
    schedule for good (docs/scoring.md#nurturing)."""

    period_ms: int = 30 * 86_400_000
    skip_stages: frozenset[str] = frozenset(NEVER_NURTURED)
    tracks: tuple[NurtureTrack, ...] = ()
    catalogue: tuple[CatalogueItem, ...] = ()
    dormant_after_ms: int = 180 * 86_400_000


def parse_nurture(
    table: _Table, stages: tuple[str, ...], interests: set[str], segments: set[str], bands: tuple[str, ...]
) -> NurtureRules:
    """Every name the section uses must exist in the rest of the file (stages, interests,
    segments, band labels, its own tracks), and every track needs a catalogue entry without
    conditions, so that no contact it selects goes without content."""
    period_ms = table.duration("period", "30d")
    dormant_after_ms = table.duration("dormant_after", "180d")
    skip = table.get("skip_stages", ["suspect", "disqualified"])
    skip_stages = frozenset(table.names("skip_stages", skip, stages, "stage")) | frozenset(NEVER_NURTURED)
    tracks: list[NurtureTrack] = []
    for entry in table.items("tracks", MAX_TRACKS):
        tracks.append(_parse_track(entry, tracks, stages, bands))
    names = {track.name for track in tracks}
    catalogue: list[CatalogueItem] = []
    for entry in table.items("content", MAX_CONTENT, _CONTENT_KEYS):
        catalogue.append(
            CatalogueItem(
                title=entry.text("title"),
                url=_url(entry),
                track=_one_of(entry, "track", names, "track (a [[nurture.tracks]] name)"),
                stage=_one_of(entry, "stage", set(stages), "stage"),
                interest=_one_of(entry, "interest", interests, "interest (an [interests] name)"),
                segment=_one_of(entry, "segment", segments, "segment (a [[segments]] name)"),
            )
        )
        entry.done()
    for index, track in enumerate(tracks):
        if not any(item.track in (None, track.name) and item.unconditional for item in catalogue):
            table.fail(
                f"tracks[{index}]",
                f"no [[nurture.content]] entry for track {track.name!r} without stage, interest and segment:"
                " add one, so that every contact the track selects gets content",
            )
    for index, track in enumerate(tracks):
        if track.after_ms >= dormant_after_ms:
            table.fail(
                f"tracks[{index}].after",
                f"track {track.name!r} starts after the contact is dormant (dormant_after): it would never send",
            )
    table.done()
    return NurtureRules(period_ms, skip_stages, tuple(tracks), tuple(catalogue), dormant_after_ms)


def _parse_track(
    entry: _Table, before: list[NurtureTrack], stages: tuple[str, ...], bands: tuple[str, ...]
) -> NurtureTrack:
    name = entry.text("name")
    if any(track.name == name for track in before):
        entry.fail("name", f"duplicate track name {name!r}")
    trigger = entry.text("trigger")
    if trigger not in TRIGGERS:
        entry.fail("trigger", f"unknown trigger {trigger!r}; one of {', '.join(TRIGGERS)}")
    entry.refuse_unknown({"name", "trigger", *_TRIGGER_KEYS[trigger]})
    track = NurtureTrack(name, trigger)
    if trigger == "low_engagement":
        track = NurtureTrack(
            name,
            trigger,
            min_fit=entry.number("min_fit", lo=0, hi=100),
            max_engagement=entry.number("max_engagement", lo=0, hi=100),
        )
    elif trigger == "cooled":
        from_band = _band(entry, "from", bands)
        to_band = _band(entry, "to", bands)
        if to_band >= from_band:
            entry.fail("to", f"a contact cools to a lower band than {bands[from_band - 1]!r}")
        track = NurtureTrack(name, trigger, from_band=from_band, to_band=to_band)
    elif trigger == "stalled":
        after_ms = entry.duration("after", "21d")
        listed = entry.get("stages", ["lead", "prospect"])
        track = NurtureTrack(
            name, trigger, after_ms=after_ms, stages=frozenset(entry.names("stages", listed, stages, "stage"))
        )
    else:
        track = NurtureTrack(name, trigger, after_ms=entry.duration("after", "90d"))
    entry.done()
    return track


def _band(entry: _Table, key: str, bands: tuple[str, ...]) -> int:
    label = entry.text(key)
    if label not in bands:
        entry.fail(key, f"unknown band {label!r}; one of {', '.join(bands)} ([temperature] labels)")
    return bands.index(label) + 1


def _one_of(entry: _Table, key: str, known: set[str], what: str) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    name = entry.check_text(key, value)
    if name not in known:
        entry.fail(key, f"unknown {what} {name!r}; defined: {', '.join(sorted(known)) or '(none)'}")
    return name


def _url(entry: _Table) -> str:
    url = entry.text("url", limit=MAX_URL)
    if not url.startswith(("https://", "http://", "/")) or any(c.isspace() for c in url):
        entry.fail("url", f"expected an http(s) URL or a path starting with '/', got {url[:60]!r}")
    return url
