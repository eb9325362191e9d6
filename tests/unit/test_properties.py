"""The semantics of docs/scoring.md as properties over generated event sets."""

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from leadpulse.scoring.engine import Event, HotLead, StageChange, apply, new_state, snapshot
from leadpulse.scoring.rules import STAGE_LEVEL, load_rules, parse_rules
from tests.factories import DAY_MS, DEFAULT_RULES, EXAMPLES, T0

RULES = DEFAULT_RULES
PATHS = st.sampled_from(["/pricing", "/blog/a", "/careers", "/product", "/", "/customers/x"])
PROFILE = st.fixed_dictionaries(
    {},
    optional={
        "seniority": st.sampled_from(["c_level", "vp", "director", "manager", "individual"]),
        "budget": st.sampled_from([0, 4_000, 25_000, 80_000]),
        "company_size": st.integers(1, 10_000),
        "industry": st.sampled_from(["saas", "retail", "mining"]),
        "channel": st.sampled_from(["referral", "paid"]),
        "job_title": st.sampled_from(["CEO", "Marketing intern", "Buyer"]),
    },
)
KINDS = st.one_of(
    st.tuples(st.just("page_viewed"), st.fixed_dictionaries({"path": PATHS})),
    st.tuples(st.just("email_bounced"), st.fixed_dictionaries({"hard": st.booleans()})),
    st.tuples(st.just("form_submitted"), st.fixed_dictionaries({"form": st.sampled_from(["contact", "ebook"])})),
    st.tuples(st.just("profile_updated"), PROFILE),
    st.tuples(st.just("webinar_attended"), st.fixed_dictionaries({"topic": st.sampled_from(["roi", "security", "x"])})),
    st.tuples(
        st.just("content_downloaded"),
        st.fixed_dictionaries({"tags": st.lists(st.sampled_from(["api", "gdpr", "roi", "misc"]), max_size=3)}),
    ),
    st.tuples(
        st.sampled_from(
            [
                "newsletter_subscribed",
                "newsletter_unsubscribed",
                "webinar_registered",
                "webinar_attended",
                "email_opened",
                "email_clicked",
                "email_replied",
                "quote_requested",
                "demo_requested",
                "sales_qualified",
                "opportunity_opened",
                "deal_won",
                "deal_lost",
                "disqualified",
                "chat_started",
            ]
        ),
        st.just({}),
    ),
)


@st.composite
def event_sets(draw, max_size=30, kinds_of=KINDS):
    kinds = draw(st.lists(kinds_of, min_size=1, max_size=max_size))
    events = []
    for index, (event_type, properties) in enumerate(kinds):
        events.append(
            Event(
                event_id=f"e{index}",
                type=event_type,
                contact_id=draw(st.sampled_from(["a", "b"])),
                identified=draw(st.booleans()),
                occurred_ms=T0 + draw(st.integers(0, 200 * 24 * 60)) * 60_000,
                properties=properties,
            )
        )
    return events


def score_all(events, rules=RULES):
    states, outputs = {}, []
    for item in events:
        applied = apply(states.get(item.contact_id) or new_state(item.contact_id), item, rules)
        states[item.contact_id] = applied.state
        outputs.extend(applied.outputs)
    at = max(e.occurred_ms for e in events)
    return {cid: snapshot(s, at, rules) for cid, s in states.items()}, outputs


@settings(max_examples=300)
@given(event_sets(), st.randoms(use_true_random=False))
def test_any_arrival_order_gives_identical_snapshots(events, rnd):
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert score_all(shuffled)[0] == score_all(events)[0]


@settings(max_examples=200)
@given(event_sets(), st.data())
def test_duplicated_events_change_nothing(events, data):
    repeats = data.draw(st.lists(st.sampled_from(events), min_size=1, max_size=10))
    with_duplicates = list(events)
    for repeat in repeats:
        position = data.draw(st.integers(with_duplicates.index(repeat) + 1, len(with_duplicates)))
        with_duplicates.insert(position, repeat)
    assert score_all(with_duplicates)[0] == score_all(events)[0]


@settings(max_examples=200)
@given(event_sets(), st.integers(0, 400))
def test_scores_and_parts_stay_between_0_and_100(events, days_later):
    views, _ = score_all(events)
    for view in views.values():
        assert 0 <= view.score <= 100 and 0 <= view.fit <= 100 and 0 <= view.engagement <= 100
        assert 1 <= view.temperature <= 4


UNCAPPED = parse_rules(
    'version = "u"\n[categories.all]\ncap = 100\n'
    + "".join(
        f'[[signals]]\nname = "{t}"\nevent = "{t}"\ncategory = "all"\npoints = {p}\n'
        for t, p in [("email_opened", 1), ("email_clicked", 3), ("webinar_attended", 7)]
    )
)


@given(
    st.lists(
        st.tuples(st.sampled_from(["email_opened", "email_clicked", "webinar_attended"]), st.integers(0, 60)),
        min_size=1,
        max_size=10,
    )
)
def test_engagement_halves_after_one_half_life(items):
    state = new_state("a")
    for index, (event_type, day) in enumerate(items):
        state = apply(state, Event(f"e{index}", event_type, "a", True, T0 + day * DAY_MS, {}), UNCAPPED).state
    at = T0 + 60 * DAY_MS
    now = snapshot(state, at, UNCAPPED).engagement
    later = snapshot(state, at + UNCAPPED.half_life_ms, UNCAPPED).engagement
    assert abs(later - now / 2) <= 0.1


HOT_RULES = parse_rules(
    'version = "h"\n[weights]\nfit = 0.0\nengagement = 1.0\n[categories.all]\ncap = 100\n'
    '[[signals]]\nname = "up"\nevent = "up"\ncategory = "all"\npoints = 8\n'
)


@given(st.lists(st.integers(0, 30), min_size=1, max_size=60))
def test_an_oscillating_contact_gets_one_alert_per_hot_episode(gaps_in_days):
    state, at, alerts, episodes, armed = new_state("a"), T0, 0, 0, True
    for index, gap in enumerate(gaps_in_days):
        at += gap * DAY_MS
        applied = apply(state, Event(f"e{index}", "up", "a", True, at, {}), HOT_RULES)
        state = applied.state
        alerts += sum(isinstance(o, HotLead) for o in applied.outputs)
        score = snapshot(state, at, HOT_RULES).score
        if armed and score >= 75:
            episodes, armed = episodes + 1, False
        elif score < 75 - HOT_RULES.rearm_gap:
            armed = True
    assert alerts == episodes


@settings(max_examples=300)
@given(event_sets(max_size=40))
def test_stages_move_back_only_through_explicit_events(events):
    _, outputs = score_all(events)
    causes = {e.event_id: e for e in events}
    for change in outputs:
        if not isinstance(change, StageChange) or change.from_stage is None:
            continue
        if causes[change.cause_event_id].type in RULES.explicit_stages:
            continue
        assert change.from_stage in STAGE_LEVEL and change.to_stage in STAGE_LEVEL
        assert STAGE_LEVEL[change.to_stage] > STAGE_LEVEL[change.from_stage]


FRACTIONAL = parse_rules(
    'version = "f"\n[categories.all]\ncap = 100\n'
    + "".join(
        f'[[signals]]\nname = "{t}"\nevent = "{t}"\ncategory = "all"\npoints = {p}\n'
        for t, p in [("email_opened", 0.05), ("email_clicked", 0.15), ("webinar_attended", 0.35), ("up", 1.25)]
    )
)


@settings(max_examples=500)
@given(
    st.lists(
        st.tuples(st.sampled_from(["email_opened", "email_clicked", "webinar_attended", "up"]), st.integers(0, 2)),
        min_size=2,
        max_size=40,
    ),
    st.randoms(use_true_random=False),
)
def test_fractional_points_at_equal_times_sum_alike_in_any_order(items, rnd):
    """Float sums follow the order of addition; the published parts must not."""
    events = [Event(f"e{i}", kind, "a", True, T0 + slot * DAY_MS, {}) for i, (kind, slot) in enumerate(items)]
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert score_all(shuffled, FRACTIONAL)[0] == score_all(events, FRACTIONAL)[0]


# -- named models (docs/scoring.md#models) -----------------------------------------------------

TWO_LINES = load_rules(EXAMPLES / "two-product-lines.toml")
PRODUCTS = st.sampled_from(["payments", "analytics", "other"])
MODEL_KINDS = st.one_of(
    KINDS,
    st.tuples(st.just("page_viewed"), st.fixed_dictionaries({"path": st.sampled_from(["/payments/a", "/analytics"])})),
    st.tuples(
        st.just("demo_requested"), st.fixed_dictionaries({"product": st.sampled_from(["payments", "analytics"])})
    ),
    st.tuples(
        st.just("profile_updated"),
        st.fixed_dictionaries(
            {},
            optional={
                "industry": st.sampled_from(["retail", "software", "mining"]),
                "department": st.sampled_from(["data", "it", "sales"]),
                "seniority": st.sampled_from(["vp", "manager"]),
            },
        ),
    ),
)


@settings(max_examples=300)
@given(event_sets(kinds_of=MODEL_KINDS), st.randoms(use_true_random=False))
def test_every_model_scores_alike_in_any_arrival_order(events, rnd):
    """Models, the segments they apply to and their own signals' sums: one state, any order."""
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert score_all(shuffled, TWO_LINES)[0] == score_all(events, TWO_LINES)[0]


@settings(max_examples=200)
@given(event_sets(kinds_of=MODEL_KINDS))
def test_models_leave_the_default_model_unchanged(events):
    """Adding models adds `models` to snapshots and their own hot leads, nothing else."""
    plain = parse_rules(
        (EXAMPLES / "two-product-lines.toml").read_text().split("[models.payments]")[0].replace("two-product", "x")
    )
    with_models, outputs = score_all(events, TWO_LINES)
    without, plain_outputs = score_all(events, plain)
    for contact, view in with_models.items():
        assert replace(view, models=(), rules_version="x") == replace(without[contact], rules_version="x")
    default_alerts = [o.id for o in outputs if isinstance(o, HotLead) and o.model == "default"]
    assert default_alerts == [o.id for o in plain_outputs if isinstance(o, HotLead)]


MODEL_HOT_RULES = parse_rules(
    'version = "h"\n[weights]\nfit = 0.0\nengagement = 1.0\n[categories.all]\ncap = 100\n'
    '[[signals]]\nname = "up"\nevent = "up"\ncategory = "all"\npoints = 8\n'
    '[models.twice]\n[[models.twice.signals]]\nname = "up"\nevent = "up"\ncategory = "all"\npoints = 16\n'
    "[models.twice.temperature]\nbands = [0, 50, 90]\nlabels = ['cold', 'warm', 'hot']\nrearm_gap = 20\n"
)


@given(st.lists(st.integers(0, 30), min_size=1, max_size=60))
def test_an_oscillating_contact_gets_one_alert_per_hot_episode_of_each_model(gaps_in_days):
    state, at = new_state("a"), T0
    alerts = {"default": 0, "twice": 0}
    episodes = {"default": 0, "twice": 0}
    armed = {"default": True, "twice": True}
    for index, gap in enumerate(gaps_in_days):
        at += gap * DAY_MS
        applied = apply(state, Event(f"e{index}", "up", "a", True, at, {}), MODEL_HOT_RULES)
        state = applied.state
        for output in applied.outputs:
            if isinstance(output, HotLead):
                alerts[output.model] += 1
        view = snapshot(state, at, MODEL_HOT_RULES)
        for model, score, floor, gap_ in (("default", view.score, 75, 10), ("twice", view.models[0].score, 90, 20)):
            if armed[model] and score >= floor:
                episodes[model], armed[model] = episodes[model] + 1, False
            elif score < floor - gap_:
                armed[model] = True
    assert alerts == episodes
