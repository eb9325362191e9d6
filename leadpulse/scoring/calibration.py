"""Calibration: how well a rules file's scores predict the outcomes already in a history.
Pure: no clock, no Kafka; the caller folds the events in time order (cli.backtest) and
calls `Sampler.sample` before the first event at or after each scoring time.

Strictly no look-ahead: at a scoring time t a contact is read from the events that occurred
before t only (the fold has not seen the others yet), and the outcome is whether it
converts (an event of `converting` types) in [t, t + horizon). A contact is a sample at t
when it is identified (not a suspect) and has not converted before t; a scoring time is used
only when its whole horizon lies within the history.

`Calibration` holds counts only (per score, per band, per signal and fit attribute), so
calibrations of disjoint contacts add up, and its size is bounded by the rules (101 scores,
the bands, the signals, the fit attributes' values seen) whatever the history's length,
except `hot_to_conversion_ms`: one number per contact that was hot before converting.
"""

from __future__ import annotations

import bisect
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from leadpulse.scoring.engine import score_parts
from leadpulse.scoring.replay import ScoreRun
from leadpulse.scoring.rules import Rules
from leadpulse.scoring.state import ContactState
from leadpulse.scoring.timeutil import format_ms

DAY_MS = 86_400_000


def scoring_times(first_ms: int, last_ms: int, every_ms: int, horizon_ms: int) -> list[int]:
    """Every `every_ms` from `first_ms` (after the first interval: a contact needs a history),
    while the horizon after it ends by `last_ms`."""
    times = []
    at = first_ms + every_ms
    while at + horizon_ms <= last_ms:
        times.append(at)
        at += every_ms
    return times


def converting_types(rules: Rules) -> frozenset[str]:
    """The event types that convert: the CRM events the rules map to opportunity or customer."""
    return frozenset(kind for kind, stage in rules.explicit_stages.items() if stage in ("opportunity", "customer"))


@dataclass
class Calibration:
    """Counts of samples (contact, scoring time) and of those that converted in the horizon."""

    samples: Counter[int] = field(default_factory=Counter)  # per score
    converted: Counter[int] = field(default_factory=Counter)
    band_samples: Counter[str] = field(default_factory=Counter)
    band_converted: Counter[str] = field(default_factory=Counter)
    feature_samples: Counter[str] = field(default_factory=Counter)  # "signal: NAME", "ATTRIBUTE: VALUE"
    feature_converted: Counter[str] = field(default_factory=Counter)
    hot_to_conversion_ms: list[int] = field(default_factory=list)

    def add(self, other: Calibration) -> None:
        for name in ("samples", "converted", "band_samples", "band_converted", "feature_samples", "feature_converted"):
            getattr(self, name).update(getattr(other, name))
        self.hot_to_conversion_ms.extend(other.hot_to_conversion_ms)

    def count(self, score: int, band: str, features: Iterable[str], converted: bool) -> None:
        self.samples[score] += 1
        self.band_samples[band] += 1
        self.feature_samples.update(features)
        if converted:
            self.converted[score] += 1
            self.band_converted[band] += 1
            self.feature_converted.update(features)


class Sampler:
    """Takes the samples of one run at each scoring time, and labels them once every
    conversion is known (`Sampler.calibration`)."""

    def __init__(self, run: ScoreRun, conversions: dict[str, list[int]], horizon_ms: int) -> None:
        self.run = run
        self.conversions = conversions  # contact id -> its conversion times, sorted
        self.horizon_ms = horizon_ms
        self.found = Calibration()
        self.first_hot: dict[str, int] = {}

    def sample(self, at_ms: int) -> None:
        """Read every identified contact not yet converted as of `at_ms` (the run holds the
        events before it only) and count it, converted or not in the horizon after."""
        rules = self.run.rules
        for state in self.run.published():  # merged views
            if not state.identified:
                continue
            times = self.conversions.get(state.contact_id, ())
            index = bisect.bisect_left(times, at_ms)
            if index > 0:  # converted before: no longer a lead to predict
                continue
            converted = index < len(times) and times[index] < at_ms + self.horizon_ms
            score = score_parts(state, at_ms, rules)[2]
            band = rules.band_labels[rules.temperature(score) - 1]
            self.found.count(score, band, features(state, rules), converted)

    def hot(self, contact_id: str, at_ms: int) -> None:
        """A hot-lead alert (the default model's) fired for the contact at `at_ms`."""
        if contact_id not in self.first_hot or at_ms < self.first_hot[contact_id]:
            self.first_hot[contact_id] = at_ms

    def calibration(self) -> Calibration:
        """The counts, with the time from each contact's first hot alert to its first conversion after it."""
        for contact_id, hot_ms in self.first_hot.items():
            times = self.conversions.get(contact_id, ())
            index = bisect.bisect_left(times, hot_ms)
            if index < len(times):
                self.found.hot_to_conversion_ms.append(times[index] - hot_ms)
        return self.found


def features(view: ContactState, rules: Rules) -> list[str]:
    """A contact's (merged view's) signals seen so far, those the rules define, and its fit
    attributes' values: what calibration measures the lift of among converters."""
    found = [f"signal: {name}" for name in view.signals if name in rules.signal_categories]
    found.extend(f"{attribute}: {known.value}" for attribute, known in view.profile.items() if attribute in rules.fit)
    return found


def report(found: Calibration, rules: Rules, times: Sequence[int], horizon_ms: int) -> dict[str, Any]:
    """The calibration report: conversion per band and decile, lift, AUC, the hot threshold's
    precision and recall, time from first hot alert to conversion, and per-feature lift."""
    total = sum(found.samples.values())
    positives = sum(found.converted.values())
    base = positives / total if total else 0.0
    hot = rules.band_labels[-1]
    hot_n, hot_p = found.band_samples[hot], found.band_converted[hot]

    def rate(converted: int, samples: int) -> float | None:
        return round(converted / samples, 4) if samples else None

    days = sorted(ms / DAY_MS for ms in found.hot_to_conversion_ms)
    return {
        "rules_version": rules.version,
        "scoring_times": len(times),
        "first_scoring_time": format_ms(times[0]) if times else None,
        "last_scoring_time": format_ms(times[-1]) if times else None,
        "horizon_days": horizon_ms / DAY_MS,
        "samples": total,
        "converted": positives,
        "conversion_rate": rate(positives, total),
        "bands": [
            {
                "band": label,
                "samples": found.band_samples[label],
                "converted": found.band_converted[label],
                "conversion_rate": rate(found.band_converted[label], found.band_samples[label]),
                "lift": _lift(found.band_converted[label], found.band_samples[label], base),
            }
            for label in rules.band_labels
        ],
        "deciles": deciles(found.samples, found.converted),
        "hot_lift": _lift(hot_p, hot_n, base),
        "roc_auc": roc_auc(found.samples, found.converted),
        "hot_precision": rate(hot_p, hot_n),
        "hot_recall": rate(hot_p, positives),
        "hot_to_conversion_days": {
            "contacts": len(days),
            "median": round(statistics.median(days), 1) if days else None,
        },
        "features": [
            {
                "feature": name,
                "samples": samples,
                "converted": found.feature_converted[name],
                "conversion_rate": rate(found.feature_converted[name], samples),
                "lift": _lift(found.feature_converted[name], samples, base),
            }
            for name, samples in sorted(
                found.feature_samples.items(),
                key=lambda item: (-(_lift(found.feature_converted[item[0]], item[1], base) or 0.0), item[0]),
            )
            if samples >= 20  # too few to say anything
        ],
    }


def _lift(converted: int, samples: int, base: float) -> float | None:
    return round(converted / samples / base, 2) if samples and base else None


def roc_auc(samples: Counter[int], converted: Counter[int]) -> float | None:
    """The probability that a converting sample scores above a non-converting one (ties count
    half), from the counts per score: exact, as on the samples themselves."""
    positives = sum(converted.values())
    negatives = sum(samples.values()) - positives
    if not positives or not negatives:
        return None
    below = 0  # negatives scored below the current score
    wins = 0.0
    for score in sorted(samples):
        negative = samples[score] - converted[score]
        wins += converted[score] * (below + negative / 2)
        below += negative
    return round(wins / (positives * negatives), 4)


def deciles(samples: Counter[int], converted: Counter[int]) -> list[dict[str, Any]]:
    """Samples ranked by score, best first, cut in ten: a score's samples all go to the tenth
    its middle falls in (ties are not split), so a tenth may be empty or larger than others."""
    total = sum(samples.values())
    rows: list[dict[str, Any]] = [
        {"decile": tenth + 1, "samples": 0, "converted": 0, "min_score": None, "max_score": None} for tenth in range(10)
    ]
    seen = 0
    for score in sorted(samples, reverse=True):
        count = samples[score]
        row = rows[min(9, int((seen + count / 2) * 10 / total))]
        row["samples"] += count
        row["converted"] += converted[score]
        row["min_score"] = score
        row["max_score"] = score if row["max_score"] is None else row["max_score"]
        seen += count
    for row in rows:
        row["conversion_rate"] = round(row["converted"] / row["samples"], 4) if row["samples"] else None
    return rows
