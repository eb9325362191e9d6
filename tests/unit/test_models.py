"""Named scoring models (`[models.<name>]`, docs/scoring.md#models): several models in one
pass over the events, one state per contact, the default model's fields unchanged."""

from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from leadpulse.schemas.outputs import output_record, snapshot_record
from leadpulse.scoring.engine import Event, HotLead, apply, attach, new_state, snapshot
from leadpulse.scoring.rules import RulesError, load_rules, parse_rules
from leadpulse.scoring.state import Part, from_bytes, to_bytes
from tests.factories import DAY_MS, DEFAULT_RULES, EXAMPLES, T0, event

EXAMPLE = EXAMPLES / "two-product-lines.toml"
LINES = load_rules(EXAMPLE)
WITHOUT_MODELS = parse_rules(EXAMPLE.read_text().split("[models.payments]")[0], "no-models.toml")


def fold(*events: Event, rules=LINES, state=None):
    state = state or new_state(events[0].contact_id)
    outputs = []
    for item in events:
        applied = apply(state, item, rules)
        state = applied.state
        outputs.extend(applied.outputs)
    return state, outputs


def retailer(contact="rita", at=T0):
    """README's worked example: a retail VP reading the payments pages who asks for a payments demo."""
    return (
        event("profile_updated", at, contact, seniority="vp", industry="retail"),
        event("page_viewed", at + 60_000, contact, path="/payments/checkout"),
        event("page_viewed", at + 120_000, contact, path="/payments/fees"),
        event("demo_requested", at + 180_000, contact, product="payments"),
    )


def hot_models(outputs):
    return [output.model for output in outputs if isinstance(output, HotLead)]


# -- rules ------------------------------------------------------------------------------------


def test_a_model_takes_every_key_it_leaves_out_from_the_top_level():
    payments, analytics = LINES.models
    assert (payments.name, analytics.name) == ("payments", "analytics")
    assert payments.fit is LINES.fit and payments.band_floors == LINES.band_floors
    assert analytics.weight_fit == LINES.weight_fit and list(analytics.fit) == ["department"]
    assert (analytics.band_floors, analytics.rearm_gap) == ((0, 30, 60, 80), 15)
    assert payments.signal_for("demo_requested", {"product": "payments"}).name == "payments demo"
    assert payments.signal_for("demo_requested", {}) is None  # its own signals replace the top level's


def test_the_shipped_rules_define_an_enterprise_model_on_the_enterprise_segment():
    (enterprise,) = DEFAULT_RULES.models
    assert enterprise.name == "enterprise" and enterprise.applies_to == {"enterprise"}
    assert not enterprise.own_signals and enterprise.weight_fit == 0.5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t: t.replace('applies_to = ["retail"]', 'applies_to = ["retial"]'),
            r"models\.payments\.applies_to\[0\]: unknown segment 'retial'; defined: retail, software",
        ),
        (lambda t: t.replace('applies_to = ["retail"]', 'applies_to = "retail"'), r"payments\.applies_to: expected"),
        (
            lambda t: t.replace('category = "web"\npoints = 20', 'category = "webb"\npoints = 20'),
            r"models\.payments\.signals\[0\]\.category: unknown category 'webb'",
        ),
        (lambda t: t.replace("fit = 0.2", "fit = 0.3"), r"models\.payments\.weights: fit \+ engagement must add up"),
        (lambda t: t.replace("bands = [0, 30, 60, 80]", "bands = [0, 60, 30]"), r"analytics\.temperature\.bands"),
        (
            lambda t: t.replace("[models.payments]", "[models.payments]\nweight = 1"),
            r"models\.payments\.weight: unknown",
        ),
        (lambda t: t.replace("[models.analytics]", "[models.default]"), r"models\.default: 'default' is the model"),
        (lambda t: t.replace("data = 40", "data = 400"), r"models\.analytics\.fit\.department\.points\.data: 400"),
        (
            lambda t: t + "[models.empty]\nsignals = []\n",
            r"models\.empty\.signals: expected one or more \[\[models\.empty\.signals\]\] tables",
        ),
    ],
)
def test_a_bad_model_is_refused_naming_the_model_and_the_key(change, message):
    with pytest.raises(RulesError, match=message):
        parse_rules(change(EXAMPLE.read_text()), "rules.toml")


# -- scoring ----------------------------------------------------------------------------------


def test_a_contact_hot_for_one_model_only_gets_one_hot_lead_naming_that_model():
    state, outputs = fold(*retailer())
    view = snapshot(state, T0 + 180_000, LINES)
    assert (view.score, view.temperature_label) == (44, "cool")  # the default model: not hot
    (payments,) = view.models  # analytics does not apply to a retailer
    assert (payments.model, payments.score, payments.temperature_label) == ("payments", 87, "hot")
    assert [r.signal for r in payments.reasons[:2]] == ["payments demo", "payments pages"]
    assert hot_models(outputs) == ["payments"]
    record = output_record(next(o for o in outputs if isinstance(o, HotLead)))
    assert (record["model"], record["score"], record["engagement"]) == ("payments", 87, 100.0)


def test_the_default_model_alerts_as_before_and_names_itself():
    pages = [event("page_viewed", T0 + i, "dan", path="/pricing") for i in range(4)]
    state, outputs = fold(
        event("profile_updated", T0, "dan", seniority="c_level", industry="software"),
        event("demo_requested", T0, "dan"),
        event("demo_requested", T0 + 1, "dan"),
        *pages,
    )
    assert snapshot(state, T0 + 3, LINES).score >= 75
    assert hot_models(outputs) == ["default"]


def test_models_add_their_scores_to_a_snapshot_and_change_none_of_its_fields():
    state, _ = fold(*retailer(), event("page_viewed", T0, "rita", path="/pricing"), rules=WITHOUT_MODELS)
    record = snapshot_record(snapshot(state, T0 + 180_000, WITHOUT_MODELS))
    assert "models" not in record and snapshot(state, T0, WITHOUT_MODELS).models == ()
    modelled, _ = fold(*retailer(), event("page_viewed", T0, "rita", path="/pricing"))
    with_models = snapshot_record(snapshot(modelled, T0 + 180_000, LINES))
    assert {k: v for k, v in with_models.items() if k != "models"} == {**record, "rules_version": LINES.version}


def test_each_model_alerts_once_per_hot_episode():
    state, outputs = fold(*retailer())
    again, more = fold(event("demo_requested", T0 + DAY_MS, "rita", product="payments"), state=state)
    assert hot_models(outputs) == ["payments"] and hot_models(more) == []  # still the same episode
    cooled = T0 + 120 * DAY_MS  # 4 half-lives later: well below 75 - 10
    back, after = fold(
        event("page_viewed", cooled, "rita", path="/blog"),  # re-arms at event time
        *retailer(at=cooled + 1),
        state=again,
    )
    assert hot_models(after) == ["payments"]
    assert back.model_armed == {"payments": False}


def test_a_model_signal_the_top_level_does_not_know_scores_the_event():
    applied = apply(new_state("rita"), event("page_viewed", T0, "rita", path="/payments"), LINES)
    assert applied.outcome == "scored" and applied.state.signals == {}
    assert applied.state.model_signals["payments"]["payments pages"].value == 20


def test_a_profile_attribute_only_a_model_reads_is_kept():
    state, _ = fold(event("profile_updated", T0, "sam", industry="software", department="data", hobby="golf"))
    assert set(state.profile) == {"industry", "department"} and "department" not in state.best_fit
    (analytics,) = snapshot(state, T0, LINES).models
    assert analytics.fit == 40.0


def test_an_anonymous_history_counts_for_the_models_once_merged():
    cookie, _ = fold(event("page_viewed", T0, "ck", path="/payments", identified=False))
    rita, _ = fold(replace(event("profile_updated", T0, "rita", industry="retail"), anonymous_id="ck"))
    merged = attach(rita, "ck", Part(1, cookie), LINES).state
    (payments,) = snapshot(merged, T0, LINES).models
    assert ("payments pages", 20.0) in [(r.signal, r.points) for r in payments.reasons]


# -- state and records ------------------------------------------------------------------------


def test_the_models_state_round_trips_and_format_7_still_loads():
    state, _ = fold(*retailer())
    assert from_bytes(to_bytes(state)) == state
    stored = orjson.loads(to_bytes(state))
    assert stored[0] == 8 and stored[24:] == [{"payments": stored[24]["payments"]}, {"payments": False}]
    plain, _ = fold(*retailer(), rules=WITHOUT_MODELS)
    fields = orjson.loads(to_bytes(plain))
    assert from_bytes(orjson.dumps([7, *fields[1:24]])) == plain


def test_snapshots_and_hot_leads_with_models_match_their_schemas():
    state, outputs = fold(*retailer())
    schemas = Path(__file__).resolve().parents[2] / "leadpulse" / "schemas" / "json"

    def validator(name):
        document = orjson.loads((schemas / f"{name}.schema.json").read_bytes())
        return Draft202012Validator(document, format_checker=FormatChecker())

    validator("contact-score").validate(snapshot_record(snapshot(state, T0, LINES)))
    for output in outputs:
        if isinstance(output, HotLead):
            validator("hot-lead").validate(output_record(output))
