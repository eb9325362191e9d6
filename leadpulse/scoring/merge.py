"""A contact's merged view: its own state plus the states its linked anonymous ids handed
over (identity stitching, docs/scoring.md#identity).

Every part of a state already merges commutatively (decayed sums, last-writer-wins values,
maxima, flags), so merging two states gives what folding both histories into one state
would have given: the anonymous history counts as if it had always been the contact's.
The parts are folded in the order of their anonymous ids, then merged into the contact's
own state, so that the stream and the offline scorer add the same floats in the same order
and publish the same numbers.

The fold of a contact's parts changes only when a hand-over replaces one of them, while the
contact's own events need the view several times each (settling, snapshot, account, cooling):
it is kept on the contact (`ContactState.folded`) with the parts dict it folded (by identity:
a state never changes the dict it holds), so a contact's own event costs one merge however
many ids it has linked, and a hand-over one fold of at most `max_linked_ids` parts. Parts that
hold no profile (anonymous visits, nearly all) leave the contact's profile dicts in the view,
so the profile read from them (engine.Derived) stays valid too.
"""

from __future__ import annotations

from leadpulse.scoring.state import ContactState, CrmStage, FoldedParts, ProfileValue, SignalSum


def merged_view(state: ContactState, half_life_ms: int) -> ContactState:
    """`state` itself when nothing is attached; else a new state whose history is the union
    of the contact's and its parts'. Transition fields (stage, hot hysteresis of every model, temperature),
    stream positions and identity bookkeeping stay the contact's own; the view holds no
    parts, so it is never merged twice."""
    folded = _folded_parts(state, half_life_ms) if state.parts else None
    if folded is None:
        return state
    view = _partless(state)
    _merge_into(view, folded, half_life_ms)
    return view


def _folded_parts(state: ContactState, half_life_ms: int) -> ContactState | None:
    """The attached parts' states merged into one, in the order of their ids (None: all
    detached); kept on `state` for its parts dict."""
    known = state.folded
    if known is not None and known.parts is state.parts and known.half_life_ms == half_life_ms:
        return known.state
    attached = [part.state for _, part in sorted(state.parts.items()) if part.state is not None]
    folded = None
    if attached:
        folded = _partless(attached[0])  # a copy: merging replaces its fields
        for other in attached[1:]:
            _merge_into(folded, other, half_life_ms)
    state.folded = FoldedParts(state.parts, half_life_ms, folded)
    return folded


def _partless(state: ContactState) -> ContactState:
    """A copy of `state` that holds no parts (nor their fold), for merging into."""
    copied = state.copy()
    copied.parts, copied.folded = {}, None
    return copied


def _merge_into(view: ContactState, other: ContactState, half_life_ms: int) -> None:
    view.identified = view.identified or other.identified
    view.intent = view.intent or other.intent
    view.last_event_ms = max(view.last_event_ms, other.last_event_ms)
    view.crm_level = max(view.crm_level, other.crm_level)
    view.crm_last = _later_crm(view.crm_last, other.crm_last)
    view.signals = _merge_sums(view.signals, other.signals, half_life_ms)
    view.interests = _merge_sums(view.interests, other.interests, half_life_ms)
    if other.model_signals:
        view.model_signals = {
            model: _merge_sums(view.model_signals.get(model, {}), other.model_signals.get(model, {}), half_life_ms)
            for model in sorted({*view.model_signals, *other.model_signals})
        }
    if other.profile:  # else the view keeps the very dicts it has, and with them what was read of them
        profile = dict(view.profile)
        for attribute, value in other.profile.items():
            profile[attribute] = _later(profile.get(attribute), value)  # type: ignore[assignment]
        view.profile = profile
    if other.best_fit:
        best_fit = dict(view.best_fit)
        for attribute, points in other.best_fit.items():
            best_fit[attribute] = max(points, best_fit.get(attribute, points))
        view.best_fit = best_fit
    view.account = _later(view.account, other.account)
    view.email = _later(view.email, other.email)


def _merge_sums(mine: dict[str, SignalSum], theirs: dict[str, SignalSum], half_life_ms: int) -> dict[str, SignalSum]:
    """Two decayed sums of one signal as one, kept at the newer reference: the same sum as
    folding both histories' events into one (decay is linear)."""
    if not theirs:
        return mine
    merged = dict(mine)
    for name, other in theirs.items():
        own = merged.get(name)
        if own is None:
            merged[name] = other
            continue
        ref = max(own.ref_ms, other.ref_ms)
        value = own.value * 2.0 ** ((own.ref_ms - ref) / half_life_ms) + other.value * 2.0 ** (
            (other.ref_ms - ref) / half_life_ms
        )
        merged[name] = SignalSum(value, ref, own.lifetime + other.lifetime)
    return merged


def _later(mine: ProfileValue | None, theirs: ProfileValue | None) -> ProfileValue | None:
    """Last writer wins by (event time, event-id hash), as within one state."""
    if mine is None:
        return theirs
    if theirs is None or (theirs.occurred_ms, theirs.tie) <= (mine.occurred_ms, mine.tie):
        return mine
    return theirs


def _later_crm(mine: CrmStage | None, theirs: CrmStage | None) -> CrmStage | None:
    if mine is None:
        return theirs
    if theirs is None or (theirs.occurred_ms, theirs.tie) <= (mine.occurred_ms, mine.tie):
        return mine
    return theirs
