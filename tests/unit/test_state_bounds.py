"""The records a contact makes the worker write are bounded by construction: with the shipped
rules and the default input limits, the largest state any input can build, its snapshot, hot
lead and member record stay far below the 1,000,000 bytes a topic takes by default
(docs/guarantees.md#bounds gives the figures this test measures)."""

from leadpulse.schemas.fields import MAX_ID
from leadpulse.schemas.limits import DEFAULT_LIMITS, DEFAULT_RECORD_LIMITS
from leadpulse.schemas.outputs import dumps, output_record, snapshot_record
from leadpulse.scoring.accounts import member_of, member_to_bytes
from leadpulse.scoring.engine import HotLead, snapshot
from leadpulse.scoring.rules import STAGE_LEVEL, load_rules
from leadpulse.scoring.state import Claim, ContactState, CrmStage, Part, ProfileValue, SignalSum, to_bytes
from leadpulse.scoring.timeutil import MAX_MS

RULES = load_rules()
WIDEST_ID = "\x01" * MAX_ID  # 256 characters, each 6 bytes as stored
WIDEST_VALUE = "\x01" * (DEFAULT_LIMITS.max_string // 6)  # the longest string the input limits let through
TIE = 2**64 - 1
LARGEST = SignalSum(-1.2345678901234567e300, MAX_MS, 1.2345678901234567e300)


def widest(name: str, linked: int = 0, *, own: bool = True) -> ContactState:
    """A contact holding the most of everything a state can hold: every profile attribute the
    rules keep at the longest value, every signal, interest, model sum and nurture track, a
    full de-duplication window, the widest ids, and `linked` anonymous ids each merged with
    a state as wide as this one (without links of its own: an anonymous id links nothing)."""
    kept = sorted({*RULES.fit, *RULES.model_attributes})
    ids = [f"{i:03}" + WIDEST_ID[3:] for i in range(linked)]
    return ContactState(
        contact_id=name,
        identified=True,
        last_event_ms=MAX_MS,
        crm_level=max(STAGE_LEVEL.values()),
        crm_last=CrmStage("disqualified", MAX_MS, TIE),
        stage="disqualified",
        temperature=4,
        signals=dict.fromkeys(RULES.signal_categories, LARGEST),
        profile={attribute: ProfileValue(WIDEST_VALUE, MAX_MS, TIE) for attribute in kept},
        best_fit=dict.fromkeys(RULES.fit, -1.2345678901234567e300),
        seen=TIE.to_bytes(8, "little") * RULES.dedup_window,
        positions={"e": 2**63 - 1, "r": 2**63 - 1},
        published_ms=MAX_MS,
        cooling_due_ms=MAX_MS,
        interests={interest.name: LARGEST for interest in RULES.interests},
        account=ProfileValue(WIDEST_VALUE, MAX_MS, TIE),
        email=ProfileValue(WIDEST_VALUE, MAX_MS, TIE),
        account_sent=WIDEST_VALUE,
        nurtured={track.name: 2**63 - 1 for track in RULES.nurture.tracks},
        claims=dict.fromkeys(ids, (MAX_MS, TIE)),
        parts={i: Part(2**63 - 1, widest(i, own=False)) for i in ids},
        claim=None if own else Claim(WIDEST_ID, MAX_MS, TIE),
        sent_to=None if own else WIDEST_ID,
        model_signals={
            model.name: dict.fromkeys(model.signal_categories, LARGEST) for model in RULES.own_signal_models
        },
        model_armed={model.name: False for model in RULES.models},
    )


OWN = len(to_bytes(widest(WIDEST_ID)))
PER_LINKED_ID = len(to_bytes(widest(WIDEST_ID, 1))) - OWN


def test_the_widest_state_of_a_contact_is_under_30_kb_and_each_linked_id_adds_under_35_kb():
    assert OWN < 30_000, OWN
    assert PER_LINKED_ID < 35_000, PER_LINKED_ID
    assert abs(len(to_bytes(widest(WIDEST_ID, 10))) - (OWN + 10 * PER_LINKED_ID)) < 100  # linear in the linked ids


def test_25_linked_ids_of_the_widest_kind_fit_the_default_record_limit_with_5_percent_margin():
    """The most linked ids a contact may keep merged in its state (a cap the identity
    resolution holds to) at the default limit: (limit - own) / per linked id."""
    fitting = int((0.95 * DEFAULT_RECORD_LIMITS.default - OWN) // PER_LINKED_ID)
    assert fitting >= 25, fitting
    assert len(to_bytes(widest(WIDEST_ID, 25))) < 0.95 * DEFAULT_RECORD_LIMITS.default


def test_the_widest_snapshot_hot_lead_and_member_record_are_under_20_kb():
    state = widest(WIDEST_ID)
    view = snapshot(state, MAX_MS, RULES)
    hot = HotLead("x" * 32, state.contact_id, MAX_MS, WIDEST_ID, view, WIDEST_ID)
    sizes = {
        "snapshot": len(dumps(snapshot_record(view))),
        "hot lead": len(dumps(output_record(hot))),
        "member": len(member_to_bytes(member_of(view, state, RULES))),
    }
    assert max(sizes.values()) < 20_000, sizes
    print(f"widest state {OWN} B, per linked id {PER_LINKED_ID} B, {sizes}")  # shown with -s
