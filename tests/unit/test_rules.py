import tomllib
from pathlib import Path

import pytest

from scoring.rules import RulesError, load_rules, parse_rules
from tests.factories import DEFAULT_RULES

MINIMAL = """
version = "t1"
[categories.web]
cap = 25
[[signals]]
name = "pricing page"
event = "page_viewed"
path_prefix = "/pricing"
category = "web"
points = 10
[[signals]]
name = "page view"
event = "page_viewed"
category = "web"
points = 2
"""


def test_the_shipped_rules_load_with_practice_ranges():
    rules = DEFAULT_RULES
    assert (
        rules.signal_for("page_viewed", {"path": "/pricing"}).points
        > 3 * rules.signal_for("page_viewed", {"path": "/blog/x"}).points
    )
    assert 20 <= rules.signal_for("form_submitted", {"form": "whitepaper"}).points <= 50
    assert 15 <= rules.signal_for("webinar_attended", {}).points <= 30
    assert rules.signal_for("newsletter_unsubscribed", {}).points < 0
    assert rules.signal_for("email_bounced", {"hard": True}).points < 0
    assert rules.signal_for("demo_requested", {}).points >= 40
    assert rules.half_life_ms == 30 * 86_400_000
    assert (rules.weight_fit, rules.weight_engagement) == (0.4, 0.6)


def test_the_first_matching_signal_in_file_order_wins():
    rules = parse_rules(MINIMAL)
    assert rules.signal_for("page_viewed", {"path": "/pricing/enterprise"}).name == "pricing page"
    assert rules.signal_for("page_viewed", {"path": "/about"}).name == "page view"
    assert rules.signal_for("page_viewed", {}).name == "page view"


def test_property_conditions_match_a_value_or_any_of_a_list():
    rules = DEFAULT_RULES
    assert rules.signal_for("email_bounced", {"hard": True}).name == "hard bounce"
    assert rules.signal_for("email_bounced", {"hard": False}) is None
    assert rules.signal_for("form_submitted", {"form": "talk_to_sales"}).name == "contact form"
    assert rules.signal_for("form_submitted", {"form": "newsletter"}).name == "form fill"


def test_an_unknown_event_type_has_no_signal():
    assert DEFAULT_RULES.signal_for("chat_started", {}) is None


def test_fit_criteria_match_values_ranges_and_keywords():
    fit = DEFAULT_RULES.fit
    assert fit["seniority"].points("VP ") == 25
    assert fit["budget"].points(60_000) == 25
    assert fit["budget"].points(19_999) == 8
    assert fit["budget"].points("a lot") == 0
    assert fit["job_title"].points("Marketing Intern") == -10


def test_temperature_bands_use_lower_bounds():
    assert [DEFAULT_RULES.temperature(s) for s in (0, 24, 25, 50, 74, 75, 100)] == [1, 1, 2, 3, 3, 4, 4]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace('version = "t1"', ""), r"version: missing"),
        (lambda t: t.replace("points = 10", 'points = "ten"'), r"signals\[0\]\.points: expected a number"),
        (
            lambda t: t.replace('category = "web"\npoints = 2', 'category = "webb"\npoints = 2'),
            r"signals\[1\]\.category: unknown category 'webb'",
        ),
        (lambda t: t.replace("points = 2", "points = 2\npoints_typo = 3"), r"signals\[1\]\.points_typo: unknown key"),
        (lambda t: t + "[engagement]\nhalf_life = 'forever'\n", r"engagement\.half_life: 'forever' is not a duration"),
        (lambda t: t + "[weights]\nfit = 0.5\n", r"weights: fit \+ engagement must add up to 1"),
        (lambda t: t + "[temperature]\nbands = [0, 50, 40]\n", r"temperature\.bands: must start at 0 and increase"),
        (lambda t: t + "[stages.explicit]\ndeal_won = 'won'\n", r"stages\.explicit\.deal_won: unknown stage 'won'"),
        (
            lambda t: t + "[fit.budget]\nmatch = 'ranges'\nranges = [[10, 1], [5, 2]]\n",
            r"fit\.budget\.ranges\[1\]: lower bounds",
        ),
    ],
)
def test_a_bad_rules_file_is_refused_naming_the_key(change, message):
    with pytest.raises(RulesError, match=message):
        parse_rules(change(MINIMAL), "rules.toml")


def test_a_toml_syntax_error_names_the_line():
    with pytest.raises(RulesError, match=r"rules.toml: not valid TOML: .*line 3"):
        parse_rules('version = "x"\n\npoints = = 3\n', "rules.toml")


def test_a_missing_file_is_reported_with_its_path(tmp_path: Path):
    with pytest.raises(RulesError, match=r"nope\.toml: cannot read"):
        load_rules(tmp_path / "nope.toml")


def test_the_default_file_is_plain_toml_with_a_version():
    text = Path(__file__).parents[2].joinpath("scoring", "default_rules.toml").read_text()
    assert tomllib.loads(text)["version"] == DEFAULT_RULES.version
