"""Which destinations an alert goes to: every route whose criteria it passes contributes its
destinations, each destination once, in the order the file first names it. Pure."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from leadpulse.notify.alerts import Alert, field_of
from leadpulse.notify.config import NotifyConfig, Route, Scalar

_MISSING = object()


def destinations_for(config: NotifyConfig, alert: Alert) -> tuple[str, ...]:
    """The destinations `alert` goes to; none when no route matches (the alert is done)."""
    chosen: dict[str, None] = {}
    for route in config.routes:
        if matches(route, alert):
            chosen.update(dict.fromkeys(route.destinations))
    return tuple(chosen)


def matches(route: Route, alert: Alert) -> bool:
    if alert.topic not in route.topics:
        return False
    record = alert.record
    for criterion, accepted in (
        ("models", route.models),
        ("segments", route.segments),
        ("stages", route.stages),
        ("accounts", route.accounts),
    ):
        if accepted and not _accepts(accepted, record.get(field_of(criterion, alert.topic), _MISSING)):
            return False
    if route.min_score is not None:
        score = record.get("score")
        if isinstance(score, bool) or not isinstance(score, int | float) or score < route.min_score:
            return False
    return all(_accepts(values, _at(record, path)) for path, values in route.where)


def _at(record: Mapping[str, Any], path: tuple[str, ...]) -> object:
    value: object = record
    for part in path:
        if not isinstance(value, Mapping):
            return _MISSING
        value = value.get(part, _MISSING)
    return value


def _accepts(accepted: Collection[Scalar], value: object) -> bool:
    """`value` is accepted, or is a list with an accepted item; an object item stands for
    its `name` (interests are {name, weight})."""
    if isinstance(value, list):
        return any(_accepts(accepted, item.get("name", _MISSING) if isinstance(item, dict) else item) for item in value)
    return any(_same(value, candidate) for candidate in accepted)


def _same(value: object, candidate: Scalar) -> bool:
    """Equality as a user means it: 3 and 3.0 are the same number, true is not 1."""
    if isinstance(value, bool) or isinstance(candidate, bool):
        return value is candidate
    return value == candidate
