"""Segments (who a contact is) and interests (what they read about) in every snapshot."""

import pytest

from leadpulse.scoring.engine import apply, new_state, snapshot
from leadpulse.scoring.rules import RulesError, parse_rules
from tests.factories import DAY_MS, DEFAULT_RULES, T0, event

RULES = DEFAULT_RULES
BASE = """
version = "t"
[categories.web]
[[signals]]
name = "page view"
event = "page_viewed"
category = "web"
points = 1
[fit.company_size]
match = "ranges"
ranges = [[1, 1]]
[fit.industry]
points = { saas = 10 }
"""


def fold(*events, rules=RULES):
    state = new_state(events[0].contact_id)
    for item in events:
        state = apply(state, item, rules).state
    return state


def test_a_contact_is_in_every_segment_its_latest_profile_and_fit_satisfy():
    state = fold(
        event("profile_updated", T0, seniority="vp", industry="SaaS", company_size=250, country="fr", budget=60_000),
        event("webinar_attended", T0 + 1),
    )
    view = snapshot(state, T0 + 1, RULES)
    assert view.fit >= 60
    assert view.segments == ("decision makers", "mid-market software", "europe", "ideal prospect")


def test_the_latest_profile_value_decides_membership_whatever_the_arrival_order():
    small = event("profile_updated", T0, company_size=80, industry="saas")
    grown = event("profile_updated", T0 + DAY_MS, company_size=4_000)
    for ordered in ((small, grown), (grown, small)):
        view = snapshot(fold(*ordered), T0 + DAY_MS, RULES)
        assert "enterprise" in view.segments and "mid-market software" not in view.segments


def test_interests_are_ranked_by_decayed_weight_and_halve_with_the_engagement_half_life():
    state = fold(
        event("page_viewed", T0, path="/pricing"),
        event("page_viewed", T0 + 1, path="/pricing/enterprise"),
        event("webinar_attended", T0 + 2, topic="ROI"),
        event("content_downloaded", T0 + 3, tags=["GDPR", "misc"]),
        event("page_viewed", T0 + 4, path="/blog/unrelated"),
    )
    assert snapshot(state, T0 + 4, RULES).interests == (("pricing", 3.0), ("security", 1.0))
    assert snapshot(state, T0 + 4 + 30 * DAY_MS, RULES).interests == (("pricing", 1.5), ("security", 0.5))


def test_only_the_strongest_interests_are_listed():
    rules = parse_rules(
        BASE
        + """
[engagement]
top_interests = 1
[interests.a]
path_prefix = "/a"
[interests.b]
path_prefix = "/b"
weight = 5
"""
    )
    state = fold(event("page_viewed", T0, path="/a"), event("page_viewed", T0, path="/b"), rules=rules)
    assert snapshot(state, T0, rules).interests == (("b", 5.0),)


def test_an_event_that_only_shows_an_interest_is_scored():
    rules = parse_rules(BASE + '[interests.docs]\ntags = ["api"]\n')
    applied = apply(new_state("c-1"), event("content_downloaded", T0, tags="api"), rules)
    assert applied.outcome == "scored"
    assert snapshot(applied.state, T0, rules).interests == (("docs", 1.0),)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[[segments]]\nname = "x"\ncountry = ["fr"]\n', "segments[0].country: segments test the fit score or a [fit]"),
        ('[[segments]]\nname = "x"\n', "segments[0]: a segment needs at least one condition"),
        ('[[segments]]\nname = "x"\ncompany_size = { min = 10, max = 1 }\n', "segments[0].company_size.min: min 10"),
        ('[[segments]]\nname = "x"\nfit = { mni = 10 }\n', "segments[0].fit.mni: unknown key; did you mean 'min'?"),
        ('[[segments]]\nname = "x"\nfit = { min = nan }\n', "segments[0].fit.min: nan is not a finite number"),
        (
            '[[segments]]\nname = "x"\nfit = { min = 1 }\n[[segments]]\nname = "x"\nfit = { min = 2 }\n',
            "segments[1].name: duplicate segment name 'x'",
        ),
        ("[interests.a]\nweight = 2\n", "interests.a: an interest needs path_prefix, tags or topics"),
        ('[interests.a]\npath_prefix = "/a"\nweigth = 2\n', "interests.a.weigth: unknown key; did you mean 'weight'?"),
        ("[interests.a]\ntags = [1]\n", "interests.a.tags[0]: expected a non-empty string"),
        ("[engagement]\ntop_interests = 0\n", "engagement.top_interests: 0 is outside [1, 50]"),
    ],
)
def test_a_mistake_in_segments_or_interests_names_its_key(extra, message):
    with pytest.raises(RulesError) as raised:
        parse_rules(BASE + extra, "rules.toml")
    assert message in str(raised.value)
