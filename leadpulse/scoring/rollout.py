"""Promoting a rules version that a shadow app has scored live (README, "Changing rules").

A shadow app is the live app's twin under the candidate rules: another app id (its own
consumer group, tables and internal topics) and another topic prefix (its own outputs),
reading the same input from its beginning. Before its outputs replace the live ones, `leadpulse
rules compare` answers two questions from the broker: has the shadow caught up (its group's
unread input), and what do its scores change (both apps' `contact-scores` as compacted: the
latest snapshot per contact). This module is the comparison; reading the topics is
cli.rollout's job. A contact's difference is the backtest's (scoring.backtest.changes_of), so
a backtest and a shadow run of the same rules on the same history report the same contacts.

Bounds: the comparison holds both topics' latest snapshots (the size of the compacted
topics, what a worker's table holds) and lists `limit` contacts of each kind; everything
else is counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from leadpulse.scoring.backtest import ContactView, changes_of

HOT = "hot"


def contact_view(record: Mapping[str, Any]) -> ContactView:
    """What the backtest compares of a snapshot, read from its record (schemas.outputs)."""
    return ContactView(record["stage"], record["temperature_label"], record["score"], tuple(record["segments"]))


@dataclass(frozen=True, slots=True)
class Move:
    contact_id: str
    live: int | None  # the score; None: no such contact on that side
    shadow: int | None
    changed: tuple[str, ...]  # of "stage", "temperature", "segments", "presence"

    @property
    def size(self) -> int:
        return abs((self.shadow or 0) - (self.live or 0))


@dataclass
class Comparison:
    live_versions: Counter[str] = field(default_factory=Counter)  # rules_version -> snapshots
    shadow_versions: Counter[str] = field(default_factory=Counter)
    in_both: int = 0
    only_live: int = 0
    only_shadow: int = 0
    changed: Counter[str] = field(default_factory=Counter)  # "stage", ... -> contacts
    hot: tuple[int, int] = (0, 0)  # contacts hot in the live snapshots, in the shadow's
    became_hot: int = 0
    no_longer_hot: int = 0
    largest: list[Move] = field(default_factory=list)  # the `limit` largest moves, largest first

    def as_json(self) -> dict[str, Any]:
        return {
            "versions": {"live": dict(self.live_versions), "shadow": dict(self.shadow_versions)},
            "contacts": {"in_both": self.in_both, "only_live": self.only_live, "only_shadow": self.only_shadow},
            "changed": dict(self.changed),
            "hot": {
                "live": self.hot[0],
                "shadow": self.hot[1],
                "became": self.became_hot,
                "no_longer": self.no_longer_hot,
            },
            "largest": [
                {"contact_id": m.contact_id, "live": m.live, "shadow": m.shadow, "changed": list(m.changed)}
                for m in self.largest
            ],
        }


def compare(live: Mapping[str, Mapping[str, Any]], shadow: Mapping[str, Mapping[str, Any]], limit: int) -> Comparison:
    """Both apps' latest snapshot per contact, compared contact by contact."""
    result = Comparison(
        live_versions=Counter(record["rules_version"] for record in live.values()),
        shadow_versions=Counter(record["rules_version"] for record in shadow.values()),
    )
    moves: list[Move] = []
    hot_live = hot_shadow = 0
    for contact_id in live.keys() | shadow.keys():
        before, after = live.get(contact_id), shadow.get(contact_id)
        was_hot = before is not None and before["temperature_label"] == HOT
        is_hot = after is not None and after["temperature_label"] == HOT
        hot_live += was_hot
        hot_shadow += is_hot
        result.became_hot += is_hot and not was_hot
        result.no_longer_hot += was_hot and not is_hot
        if before is None:
            result.only_shadow += 1
        elif after is None:
            result.only_live += 1
        else:
            result.in_both += 1
        changed = changes_of(
            None if before is None else contact_view(before), None if after is None else contact_view(after)
        )
        result.changed.update(changed)
        score_before = None if before is None else before["score"]
        score_after = None if after is None else after["score"]
        if changed or score_before != score_after:
            moves.append(Move(contact_id, score_before, score_after, changed))
    result.hot = (hot_live, hot_shadow)
    result.largest = sorted(moves, key=lambda move: (-move.size, move.contact_id))[:limit]
    return result


def not_ready(behind: int, comparison: Comparison, candidate_version: str | None) -> str | None:
    """Why the shadow's outputs may not replace the live ones yet, or None: it has read all
    of its input, and its snapshots carry one rules version (the candidate's, when it is
    given): a snapshot of another version is left from an earlier run under the same prefix."""
    if behind:
        return f"the shadow has {behind:,} input records left to read"
    versions = comparison.shadow_versions
    if not versions:
        return "the shadow has written no snapshot yet"
    expected = {candidate_version} if candidate_version is not None else set(list(versions)[:1])
    if set(versions) != expected:
        found = ", ".join(f"{version} ({count:,})" for version, count in sorted(versions.items()))
        wanted = f"only {candidate_version}" if candidate_version is not None else "one version"
        return f"the shadow's snapshots carry {found}, not {wanted}"
    return None
