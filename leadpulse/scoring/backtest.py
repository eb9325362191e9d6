"""Backtest: what scoring one history under a candidate rules file changes against a
baseline, computed from two offline runs (scoring.replay) folded over the same events in
lockstep. Pure: no clock, no Kafka; decoding the input is the caller's job (cli.backtest).

`Lockstep` folds both runs line by line. After each line it keeps the hot-lead alerts each
run fired with the other run's view of the same contact at the same moment (so an alert
added or removed comes with the signals that made the difference), and re-publishes the
event's contact to its account under each rules file, as the stream does after every
event (`AccountReplay` folds those member records into accounts in input order and fires
the hot-account alerts the stream would). At the end, `Lockstep.partial` compares the
contacts' final snapshots, nurture records and account members; partials of disjoint
contacts add up (cli.backtest runs one per process of --jobs), and `report` turns the sum
into the JSON report.

Bounds: a run holds what the offline scorer holds (the contacts' states); the lockstep adds
per contact the last member record it sent (one small record each), per alert a summary,
and of the changed contacts only the first `limit` by contact id (every change is counted).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from leadpulse.scoring.accounts import (
    AccountSnapshot,
    AccountState,
    HotAccount,
    Member,
    account_members,
    accounts_from,
    fold,
    leaving,
    settle,
)
from leadpulse.scoring.domains import account_of_state
from leadpulse.scoring.engine import HotLead, Reason, Snapshot, score_parts, snapshot, stage_of, view_of
from leadpulse.scoring.identity import is_published, winner
from leadpulse.scoring.replay import ScoreRun
from leadpulse.scoring.rules import DEFAULT_MODEL, MAX_ENTRIES, MAX_SIGNALS, Rules
from leadpulse.scoring.timeutil import format_ms

DAY_MS = 86_400_000
EVERY_REASON = MAX_SIGNALS + MAX_ENTRIES  # every signal and fit attribute a rules file may define
SIDES = ("baseline", "candidate")
MemberUpdate = tuple[int, str, Member]  # (input line, account id, member record)


def week_of(at_ms: int) -> str:
    """The Monday (UTC) of the week `at_ms` falls in, as YYYY-MM-DD (1970-01-01 was a Thursday)."""
    day = at_ms // DAY_MS
    return format_ms((day - (day + 3) % 7) * DAY_MS)[:10]


@dataclass(frozen=True, slots=True)
class View:
    """A score as one rules file gives it: a contact's (or a named model's) at one moment."""

    score: int
    reasons: tuple[Reason, ...]

    @classmethod
    def of(cls, view: Snapshot, model: str = DEFAULT_MODEL) -> View | None:
        """The snapshot's score for `model` (None: that model does not apply to the contact)."""
        if model == DEFAULT_MODEL:
            return cls(view.score, view.reasons)
        found = next((score for score in view.models if score.model == model), None)
        return None if found is None else cls(found.score, found.reasons)

    def points(self) -> dict[str, float]:
        return {reason.signal: reason.points for reason in self.reasons}


@dataclass(frozen=True, slots=True)
class Alert:
    """A hot-lead alert one rules file fired, with the other file's view of the contact at
    the alert's moment (None: the contact or model has no score there)."""

    id: str
    contact_id: str
    occurred_ms: int
    model: str
    own: View
    other: View | None


@dataclass(frozen=True, slots=True)
class ContactView:
    """What the backtest compares of a contact's final snapshot."""

    stage: str
    temperature: str
    score: int
    segments: tuple[str, ...]

    @classmethod
    def of(cls, view: Snapshot) -> ContactView:
        return cls(view.stage, view.temperature_label, view.score, view.segments)


@dataclass(frozen=True, slots=True)
class ContactChange:
    contact_id: str
    baseline: ContactView | None  # None: no such contact under these rules
    candidate: ContactView | None
    changed: tuple[str, ...]  # of "stage", "temperature", "segments", "presence"


def changes_of(baseline: ContactView | None, candidate: ContactView | None) -> tuple[str, ...]:
    if baseline is None or candidate is None:
        return ("presence",)
    found = []
    if baseline.stage != candidate.stage:
        found.append("stage")
    if baseline.temperature != candidate.temperature:
        found.append("temperature")
    if baseline.segments != candidate.segments:
        found.append("segments")
    return tuple(found)


@dataclass
class SideTotals:
    """One rules file's aggregates over a set of contacts; totals of disjoint sets add up."""

    contacts: int = 0
    funnel: Counter[str] = field(default_factory=Counter)  # contacts per final stage
    temperatures: Counter[str] = field(default_factory=Counter)
    scores: Counter[int] = field(default_factory=Counter)  # contacts per final score
    signals: dict[str, float] = field(default_factory=dict)  # points of each signal among final reasons
    hot_leads_per_week: Counter[str] = field(default_factory=Counter)
    nurture_per_track: Counter[str] = field(default_factory=Counter)

    def add(self, other: SideTotals) -> None:
        self.contacts += other.contacts
        for name in ("funnel", "temperatures", "scores", "hot_leads_per_week", "nurture_per_track"):
            getattr(self, name).update(getattr(other, name))
        for signal, points in other.signals.items():
            self.signals[signal] = self.signals.get(signal, 0.0) + points

    def count(self, view: Snapshot) -> None:
        self.contacts += 1
        self.funnel[view.stage] += 1
        self.temperatures[view.temperature_label] += 1
        self.scores[view.score] += 1
        for reason in view.reasons:
            self.signals[reason.signal] = self.signals.get(reason.signal, 0.0) + reason.points


@dataclass
class Partial:
    """What a backtest found among a set of contacts (one process's, or all); `limit` bounds
    the examples kept, never the counts."""

    limit: int
    sides: tuple[SideTotals, SideTotals] = field(default_factory=lambda: (SideTotals(), SideTotals()))
    changed: Counter[str] = field(default_factory=Counter)  # contacts per kind of change
    changed_contacts: int = 0
    changes: list[ContactChange] = field(default_factory=list)  # the first `limit` by contact id
    moves: Counter[tuple[str, str]] = field(default_factory=Counter)  # (baseline, candidate) temperature
    alerts_kept: int = 0
    alerts_added: list[Alert] = field(default_factory=list)
    alerts_removed: list[Alert] = field(default_factory=list)
    nurture_added: list[tuple[str, str]] = field(default_factory=list)  # (contact id, track)
    nurture_removed: list[tuple[str, str]] = field(default_factory=list)
    members: tuple[list[tuple[str, Member]], list[tuple[str, Member]]] = field(default_factory=lambda: ([], []))

    def add(self, other: Partial) -> None:
        for mine, theirs in zip(self.sides, other.sides, strict=True):
            mine.add(theirs)
        self.changed.update(other.changed)
        self.changed_contacts += other.changed_contacts
        self.changes = list(heapq.merge(self.changes, other.changes, key=lambda c: c.contact_id))[: self.limit]
        self.moves.update(other.moves)
        self.alerts_kept += other.alerts_kept
        self.alerts_added.extend(other.alerts_added)
        self.alerts_removed.extend(other.alerts_removed)
        self.nurture_added.extend(other.nurture_added)
        self.nurture_removed.extend(other.nurture_removed)
        for mine_members, their_members in zip(self.members, other.members, strict=True):
            mine_members.extend(their_members)


class AccountReplay:
    """The accounts agent's fold of member records, in the order given: the hot-account
    alerts one rules file fires over the history (scoring.accounts: fold, settle)."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.states: dict[str, AccountState] = {}
        self.alerts: list[HotAccount] = []

    def add(self, account_id: str, member: Member) -> None:
        state = self.states.get(account_id)
        if state is None:
            state = self.states[account_id] = AccountState(account_id, self.rules)
        if fold(state, member):
            alert = settle(state, member)[1]
            if alert is not None:
                self.alerts.append(alert)


class Lockstep:
    """Two runs (baseline, candidate) folded over the same input; the caller adds each line
    to both runs, then calls `after` with the key of the event each run took from it."""

    def __init__(self, baseline: ScoreRun, candidate: ScoreRun, on_member: Callable[[int, MemberUpdate], None]) -> None:
        self.runs = (baseline, candidate)
        self.on_member = on_member  # (side, update): a member record a contact sent its account
        self.alerts: tuple[dict[str, Alert], dict[str, Alert]] = ({}, {})
        # each rules file listing every contribution among a snapshot's reasons, not the top
        # few: an alert's difference is told signal by signal
        self.explaining = tuple(replace(run.rules, top_reasons=EVERY_REASON) for run in self.runs)
        self.sent: tuple[dict[str, tuple[Any, ...]], dict[str, tuple[Any, ...]]] = ({}, {})

    def after(self, number: int, keys: tuple[str | None, str | None]) -> None:
        """Line `number` was added to both runs; `keys` are the keys of the event each took
        from it (None: that run refused the line)."""
        for side, run in enumerate(self.runs):
            if run.outputs:
                for output in run.outputs:
                    if isinstance(output, HotLead):
                        self.alerts[side][output.id] = self._alert(side, output)
                run.outputs.clear()
            key = keys[side]
            if key is not None:
                self._publish(side, number, key)

    def _alert(self, side: int, alert: HotLead) -> Alert:
        """The alert with both rules files' views of its contact as it fired (the line that
        fired it has been folded into both runs: the same moment in each)."""
        views = [self._view(index, alert) for index in (side, 1 - side)]
        own = views[0] or View.of(alert.snapshot, alert.model)
        assert own is not None  # a model fires only where it applies
        return Alert(alert.id, alert.contact_id, alert.occurred_ms, alert.model, own, views[1])

    def _view(self, side: int, alert: HotLead) -> View | None:
        state = self.runs[side].contacts.get(alert.contact_id)
        if state is None or not is_published(state):
            return None
        return View.of(snapshot(state, alert.snapshot.updated_ms, self.explaining[side]), alert.model)

    def _publish(self, side: int, number: int, key: str) -> None:
        """The member record the event's contact sends its account, if it changed since the
        last. Without the contact's reasons: an account's score, temperature and alerts do
        not read them (scoring.accounts), and a snapshot per event would cost a second fold."""
        run = self.runs[side]
        state = run.contacts.get(key)
        if state is None:
            return
        if not is_published(state):
            into = winner(state)
            state = None if into is None else run.contacts.get(into)
            if state is None or not is_published(state):
                return
        rules = run.rules
        view = view_of(state, rules)
        fit, _, score = score_parts(view, view.last_event_ms, rules)
        wanted = rules.accounts.member_attributes
        attributes = tuple((name, view.profile[name].value) for name in wanted if name in view.profile)
        account = account_of_state(view)
        now = (account, score, fit, stage_of(view, rules), attributes)
        sent = self.sent[side]
        known = sent.get(view.contact_id)
        if known == now:
            return
        sent[view.contact_id] = now
        at_ms = view.last_event_ms
        if known is not None and known[0] is not None and known[0] != account:
            self.on_member(side, (number, known[0], leaving(view.contact_id, at_ms, number)))
        if account is not None:
            member = Member(
                view.contact_id,
                at_ms,
                score=score,
                fit=fit,
                temperature=rules.temperature(score),
                stage=now[3],
                attributes=attributes,
                version=number,
            )
            self.on_member(side, (number, account, member))

    def partial(self, at_ms: int, limit: int) -> Partial:
        """The comparison of the contacts folded so far, evaluated at `at_ms`."""
        found = Partial(limit)
        states = tuple(run.published() for run in self.runs)
        views = tuple(
            [snapshot(state, at_ms, run.rules) for state in published]
            for run, published in zip(self.runs, states, strict=True)
        )
        nurtures = [{(record.contact_id, record.track) for record in run.nurtures(at_ms)} for run in self.runs]
        for side, run in enumerate(self.runs):
            totals = found.sides[side]
            for view in views[side]:
                totals.count(view)
            for alert in self.alerts[side].values():
                totals.hot_leads_per_week[week_of(alert.occurred_ms)] += 1
            for _, track in nurtures[side]:
                totals.nurture_per_track[track] += 1
            found.members[side].extend(account_members(zip(states[side], views[side], strict=True), run.rules))
        for contact_id, before, after in _paired(*views):
            kinds = changes_of(before, after)
            if before is not None and after is not None:
                found.moves[(before.temperature, after.temperature)] += 1
            if kinds:
                found.changed.update(kinds)
                found.changed_contacts += 1
                if len(found.changes) < limit:
                    found.changes.append(ContactChange(contact_id, before, after, kinds))
        kept, added = self.alerts
        found.alerts_kept = sum(1 for alert_id in kept if alert_id in added)
        found.alerts_removed = [alert for alert_id, alert in kept.items() if alert_id not in added]
        found.alerts_added = [alert for alert_id, alert in added.items() if alert_id not in kept]
        found.nurture_removed = sorted(nurtures[0] - nurtures[1])
        found.nurture_added = sorted(nurtures[1] - nurtures[0])
        return found


def _paired(
    baseline: list[Snapshot], candidate: list[Snapshot]
) -> Iterator[tuple[str, ContactView | None, ContactView | None]]:
    """Both runs' snapshots (each sorted by contact id) side by side, by contact id."""
    before = {view.contact_id: view for view in baseline}
    after = {view.contact_id: view for view in candidate}
    for contact_id in sorted(before.keys() | after.keys()):
        one, two = before.get(contact_id), after.get(contact_id)
        yield contact_id, None if one is None else ContactView.of(one), None if two is None else ContactView.of(two)


def difference(alert: Alert) -> list[dict[str, Any]]:
    """The signals whose points differ between the alert's rules file and the other one's
    at the alert's moment, largest difference first: the reasons that made the difference."""
    own = alert.own.points()
    other = {} if alert.other is None else alert.other.points()
    rows = [(name, own.get(name, 0.0), other.get(name, 0.0)) for name in sorted(own.keys() | other.keys())]
    rows.sort(key=lambda row: -abs(row[1] - row[2]))
    return [
        {"signal": name, "points": mine, "other_points": theirs}
        for name, mine, theirs in rows
        if round(mine - theirs, 1)
    ]


def account_changes(
    baseline: Iterable[AccountSnapshot], candidate: Iterable[AccountSnapshot]
) -> list[tuple[str, AccountSnapshot | None, AccountSnapshot | None]]:
    """Accounts whose final temperature differs (or that exist under one rules file only)."""
    before = {view.account_id: view for view in baseline}
    after = {view.account_id: view for view in candidate}
    found = []
    for account_id in sorted(before.keys() | after.keys()):
        one, two = before.get(account_id), after.get(account_id)
        if one is None or two is None or one.temperature != two.temperature:
            found.append((account_id, one, two))
    return found


def final_accounts(partial: Partial, rules: tuple[Rules, Rules]) -> tuple[list[AccountSnapshot], list[AccountSnapshot]]:
    """Each rules file's final account snapshots from the members the partial holds."""
    views = []
    for side, members in enumerate(partial.members):
        members.sort(key=lambda pair: pair[1].contact_id)
        views.append(accounts_from(members, rules[side]))
    return views[0], views[1]


def report(
    partial: Partial,
    rules: tuple[Rules, Rules],
    hot_accounts: tuple[list[HotAccount], list[HotAccount]],
    at_ms: int,
    events: int,
) -> dict[str, Any]:
    """The JSON report of a backtest: both rules files' totals and what differs between them."""
    accounts = final_accounts(partial, rules)
    account_ids = [{alert.id: alert for alert in alerts} for alerts in hot_accounts]
    sides: dict[str, Any] = {}
    for side, name in enumerate(SIDES):
        totals = partial.sides[side]
        per_week = Counter(week_of(alert.occurred_ms) for alert in hot_accounts[side])
        sides[name] = {
            "rules_version": rules[side].version,
            "contacts": totals.contacts,
            "funnel": {stage: totals.funnel[stage] for stage in sorted(totals.funnel)},
            "temperatures": {label: totals.temperatures[label] for label in rules[side].band_labels},
            "scores": [totals.scores[score] for score in range(101)],
            "hot_leads": sum(totals.hot_leads_per_week.values()),
            "hot_leads_per_week": dict(sorted(totals.hot_leads_per_week.items())),
            "hot_accounts": len(hot_accounts[side]),
            "hot_accounts_per_week": dict(sorted(per_week.items())),
            "accounts": len(accounts[side]),
            "account_temperatures": dict(sorted(Counter(view.temperature_label for view in accounts[side]).items())),
            "nurture": dict(sorted(totals.nurture_per_track.items())),
            "top_signals": [
                {"signal": name, "points": round(points, 1)}
                for name, points in sorted(totals.signals.items(), key=lambda item: (-item[1], item[0]))[:15]
            ],
        }
    moved = account_changes(*accounts)
    return {
        "evaluated_at": format_ms(at_ms),
        "events": events,
        "baseline": sides["baseline"],
        "candidate": sides["candidate"],
        "changes": {
            "contacts": partial.changed_contacts,
            "by_kind": dict(sorted(partial.changed.items())),
            "temperature_moves": [
                {"baseline": before, "candidate": after, "contacts": count}
                for (before, after), count in sorted(partial.moves.items())
                if before != after
            ],
            "examples": [_change_record(change) for change in partial.changes],
            "hot_leads_added": _alert_records(partial.alerts_added, partial.limit),
            "hot_leads_removed": _alert_records(partial.alerts_removed, partial.limit),
            "hot_leads_kept": partial.alerts_kept,
            "hot_accounts_added": _account_alerts(account_ids[1], account_ids[0], partial.limit),
            "hot_accounts_removed": _account_alerts(account_ids[0], account_ids[1], partial.limit),
            "accounts": len(moved),
            "account_examples": [
                {
                    "account_id": account_id,
                    "baseline": None if one is None else {"score": one.score, "temperature": one.temperature_label},
                    "candidate": None if two is None else {"score": two.score, "temperature": two.temperature_label},
                }
                for account_id, one, two in moved[: partial.limit]
            ],
            "nurture_added": _nurture_records(partial.nurture_added, partial.limit),
            "nurture_removed": _nurture_records(partial.nurture_removed, partial.limit),
        },
    }


def _change_record(change: ContactChange) -> dict[str, Any]:
    def side(view: ContactView | None) -> dict[str, Any] | None:
        if view is None:
            return None
        return {
            "stage": view.stage,
            "temperature": view.temperature,
            "score": view.score,
            "segments": list(view.segments),
        }

    return {
        "contact_id": change.contact_id,
        "changed": list(change.changed),
        "baseline": side(change.baseline),
        "candidate": side(change.candidate),
    }


def _alert_records(alerts: list[Alert], limit: int) -> dict[str, Any]:
    ordered = sorted(alerts, key=lambda alert: (alert.occurred_ms, alert.contact_id, alert.id))
    return {
        "count": len(alerts),
        "examples": [
            {
                "id": alert.id,
                "contact_id": alert.contact_id,
                "occurred_at": format_ms(alert.occurred_ms),
                "model": alert.model,
                "score": alert.own.score,
                "other_score": None if alert.other is None else alert.other.score,
                "difference": difference(alert),
            }
            for alert in ordered[:limit]
        ],
    }


def _account_alerts(mine: dict[str, HotAccount], theirs: dict[str, HotAccount], limit: int) -> dict[str, Any]:
    only = sorted(
        (alert for alert_id, alert in mine.items() if alert_id not in theirs), key=lambda a: (a.occurred_ms, a.id)
    )
    return {
        "count": len(only),
        "examples": [
            {
                "id": alert.id,
                "account_id": alert.account_id,
                "occurred_at": format_ms(alert.occurred_ms),
                "cause_contact_id": alert.cause_contact_id,
                "score": alert.snapshot.score,
                "top_contacts": [
                    {"contact_id": top.contact_id, "score": top.score, "stage": top.stage}
                    for top in alert.snapshot.top_contacts
                ],
            }
            for alert in only[:limit]
        ],
    }


def _nurture_records(pairs: list[tuple[str, str]], limit: int) -> dict[str, Any]:
    ordered = sorted(pairs)
    return {
        "count": len(pairs),
        "by_track": dict(sorted(Counter(track for _, track in pairs).items())),
        "examples": [{"contact_id": contact, "track": track} for contact, track in ordered[:limit]],
    }
