"""The rules compiled once for the per-event path: what an event of a given type, with given
properties, can touch, found by table look-ups instead of a scan of every rule.

`plan_of(rules)` builds it on first use and keeps it for those rules (a worker and the
offline scorer hold one Rules for their lifetime; a test that builds rules with `replace`
gets a plan of its own, since plans are kept by the identity of the rules object). Every
answer here is the same as the rules' own reading (`Rules.signal_for`, `Rules.interests_of`,
`Model.signal_for`), which tests/unit/test_plan.py checks on generated events; only its cost
differs: it does not grow with the rules an event cannot match.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from leadpulse.scoring.rules import Interest, Model, Rules, Signal
from leadpulse.scoring.state import Derived

_PLANS_KEPT = 8  # rules objects a process scores with at once: the live rules, a test's few variants
_PLANS: dict[int, Plan] = {}
_MEMO_SIZE = 4_096  # distinct (event type, path) pairs or paths remembered; a site has far fewer


@dataclass(frozen=True, slots=True)
class _SignalTable:
    """The signals of one event type, in file order; `by_path`: the first match per page path,
    remembered when no signal of the type has `when` conditions (the path decides alone)."""

    signals: tuple[Signal, ...]
    path_only: bool
    by_path: dict[Any, Signal | None] = field(default_factory=dict)

    def first(self, properties: dict[str, Any]) -> Signal | None:
        if not self.path_only:
            return _first(self.signals, properties)
        path = properties.get("path")
        try:
            return self.by_path[path]
        except KeyError:
            pass
        except TypeError:  # an unhashable path (a list): no prefix matches it
            return _first(self.signals, properties)
        found = _first(self.signals, properties)
        if len(self.by_path) >= _MEMO_SIZE:
            self.by_path.clear()
        self.by_path[path] = found
        return found


@dataclass(frozen=True, slots=True)
class _ModelTables:
    """The own-signal models with signals for one event type, in file order, and their
    matches per page path, remembered as `_SignalTable` does: one look-up for all of them."""

    tables: tuple[tuple[Model, _SignalTable], ...]
    path_only: bool
    by_path: dict[Any, tuple[tuple[Model, Signal], ...]] = field(default_factory=dict)

    def matched(self, properties: dict[str, Any]) -> tuple[tuple[Model, Signal], ...]:
        if not self.path_only:
            return self._match(properties)
        path = properties.get("path")
        try:
            return self.by_path[path]
        except KeyError:
            pass
        except TypeError:  # an unhashable path
            return self._match(properties)
        found = self._match(properties)
        if len(self.by_path) >= _MEMO_SIZE:
            self.by_path.clear()
        self.by_path[path] = found
        return found

    def _match(self, properties: dict[str, Any]) -> tuple[tuple[Model, Signal], ...]:
        matches = ((model, _first(table.signals, properties)) for model, table in self.tables)
        return tuple((model, signal) for model, signal in matches if signal is not None)


def _first(signals: tuple[Signal, ...], properties: dict[str, Any]) -> Signal | None:
    for signal in signals:
        if signal.matches(properties):
            return signal
    return None


class Plan:
    """Dispatch tables of one Rules object (see the module docstring)."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.signals = _tables(rules.signals)
        # Own-signal models by the event types their signals name: an event of another type
        # touches none of their sums.
        by_type: dict[str, list[tuple[Model, _SignalTable]]] = {}
        for model in rules.own_signal_models:
            for event_type, table in _tables(model.signals).items():
                by_type.setdefault(event_type, []).append((model, table))
        self.own_models = {
            event_type: _ModelTables(tuple(tables), all(table.path_only for _, table in tables))
            for event_type, tables in by_type.items()
        }
        # The properties that can change a profile: an event carrying none of them leaves it as it is.
        self.profile_keys = frozenset(
            [*rules.fit, *rules.model_attributes, *(c.derive_from for c in rules.derived_fit if c.derive_from)]
        )
        # Named models whose engagement is the default model's: the top level's signals and categories.
        self.shares_engagement = frozenset(
            model.name
            for model in rules.models
            if not model.own_signals
            and model.signal_categories == rules.signal_categories
            and model.categories == rules.categories
        )
        # What a state with no profile value derives (scoring.engine._derive): no fit, the models for everyone.
        self.nothing_known = Derived(
            rules,
            {},
            {},
            0.0,
            0.0,
            tuple(
                (model, 0.0, model.name in self.shares_engagement)
                for model in rules.models
                if model.applies_to_profile({}, 0.0)
            ),
        )
        # Temperatures of the scores 0..100 (a score is a whole number), looked up, not searched.
        self._temperatures = tuple(rules.temperature(score) for score in range(101))
        self.interest_keys = frozenset(("path", "tags", "tag", "topic")) if rules.interests else frozenset()
        self.interest_names = frozenset(interest.name for interest in rules.interests)  # a snapshot shows these
        self._interests_by_path: dict[str, tuple[Interest, ...]] = {}

    def temperature(self, score: int) -> int:
        """`Rules.temperature`."""
        return self._temperatures[score] if 0 <= score <= 100 else self.rules.temperature(score)

    def signal_for(self, event_type: str, properties: dict[str, Any]) -> Signal | None:
        table = self.signals.get(event_type)
        return None if table is None else table.first(properties)

    def own_signals_for(self, event_type: str, properties: dict[str, Any]) -> tuple[tuple[Model, Signal], ...]:
        """(model, its signal) for each own-signal model an event earns points in, in file order."""
        tables = self.own_models.get(event_type)
        return () if tables is None else tables.matched(properties)

    def interests_of(self, properties: dict[str, Any]) -> tuple[Interest, ...] | list[Interest]:
        """`Rules.interests_of`; an event with a path alone is answered from the path."""
        if self.interest_keys.isdisjoint(properties):
            return ()
        path = properties.get("path")
        if "tags" in properties or "tag" in properties or "topic" in properties or not isinstance(path, str):
            return self.rules.interests_of(properties)
        known = self._interests_by_path.get(path)
        if known is None:
            empty: set[str] = set()
            known = tuple(interest for interest in self.rules.interests if interest.matches(path, empty, empty))
            if len(self._interests_by_path) >= _MEMO_SIZE:
                self._interests_by_path.clear()
            self._interests_by_path[path] = known
        return known


def _tables(signals: dict[str, tuple[Signal, ...]]) -> dict[str, _SignalTable]:
    return {
        event_type: _SignalTable(group, all(not signal.when for signal in group))
        for event_type, group in signals.items()
    }


def plan_of(rules: Rules) -> Plan:
    """The plan of `rules`, built on first use."""
    plan = _PLANS.get(id(rules))
    if plan is not None and plan.rules is rules:
        return plan
    plan = Plan(rules)
    if len(_PLANS) >= _PLANS_KEPT:
        del _PLANS[next(iter(_PLANS))]
    _PLANS[id(rules)] = plan
    return plan
