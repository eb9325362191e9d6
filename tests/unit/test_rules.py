import tomllib
from pathlib import Path

import orjson
import pytest

from leadpulse.scoring.rules import RulesError, load_rules, parse_rules
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
    text = Path(__file__).parents[2].joinpath("leadpulse", "scoring", "default_rules.toml").read_text()
    assert tomllib.loads(text)["version"] == DEFAULT_RULES.version


NUMBER_PLACES = [
    (lambda t, x: t.replace("points = 10", f"points = {x}"), r"signals\[0\]\.points"),
    (lambda t, x: t.replace("cap = 25", f"cap = {x}"), r"categories\.web\.cap"),
    (lambda t, x: t.replace("cap = 25", f"cap = 25\nfloor = {x}"), r"categories\.web\.floor"),
    (lambda t, x: t + f"[temperature]\nbands = [0, {x}]\nlabels = ['a', 'b']\n", r"temperature\.bands\[1\]"),
    (lambda t, x: t + f"[temperature]\nrearm_gap = {x}\n", r"temperature\.rearm_gap"),
    (lambda t, x: t + f"[stages]\nprospect_fit = {x}\n", r"stages\.prospect_fit"),
    (lambda t, x: t + f"[stages]\nprospect_engagement = {x}\n", r"stages\.prospect_engagement"),
    (lambda t, x: t + f"[weights]\nfit = {x}\n", r"weights\.fit"),
    (lambda t, x: t + f"[weights]\nengagement = {x}\n", r"weights\.engagement"),
    (lambda t, x: t + f"[engagement]\ndedup_window = {x}\n", r"engagement\.dedup_window"),
    (lambda t, x: t + f"[engagement]\ntop_reasons = {x}\n", r"engagement\.top_reasons"),
    (lambda t, x: t + f"[fit.budget]\nmatch = 'ranges'\nranges = [[{x}, 1]]\n", r"fit\.budget\.ranges\[0\]\[0\]"),
    (lambda t, x: t + f"[fit.budget]\nmatch = 'ranges'\nranges = [[0, {x}]]\n", r"fit\.budget\.ranges\[0\]\[1\]"),
    (lambda t, x: t + f"[fit.seniority]\npoints = {{ vp = {x} }}\n", r"fit\.seniority\.points\.vp"),
    (lambda t, x: t.replace("points = 2", f"points = 2\nwhen = {{ size = {x} }}"), r"signals\[1\]\.when\.size"),
]


@pytest.mark.parametrize(("change", "where"), NUMBER_PLACES)
@pytest.mark.parametrize("bad", ["nan", "+nan", "-nan"])
def test_nan_is_refused_in_every_number_naming_the_key(change, where, bad):
    with pytest.raises(RulesError, match=rf"rules\.toml: {where}: nan is not a finite number$"):
        parse_rules(change(MINIMAL, bad), "rules.toml")


@pytest.mark.parametrize(("change", "where"), NUMBER_PLACES)
@pytest.mark.parametrize("bad", ["inf", "-inf"])
def test_an_infinity_is_refused_in_every_number_naming_the_key(change, where, bad):
    with pytest.raises(RulesError, match=rf"rules\.toml: {where}: {bad} is not a finite number$"):
        parse_rules(change(MINIMAL, bad), "rules.toml")


def test_an_integer_too_large_for_a_float_is_refused_in_one_line():
    with pytest.raises(
        RulesError, match=r"^rules\.toml: fit\.budget\.ranges\[0\]\[0\]: 9{60}\.\.\. \(400 characters\) is too large$"
    ):
        parse_rules(MINIMAL + f"[fit.budget]\nmatch = 'ranges'\nranges = [[{'9' * 400}, 1]]\n", "rules.toml")


def test_an_integer_too_long_for_python_is_a_toml_error_not_a_crash():
    with pytest.raises(RulesError, match=r"rules\.toml: not valid TOML: .*4300 digits"):
        parse_rules(MINIMAL.replace("points = 10", f"points = {'9' * 5000}"), "rules.toml")


def test_a_ten_megabyte_version_is_refused_before_parsing():
    huge = MINIMAL.replace('"t1"', '"' + "x" * 10_000_000 + '"')
    with pytest.raises(RulesError, match=r"^rules\.toml: over the limit of 1 MiB \(1048576 bytes\) for a rules file$"):
        parse_rules(huge, "rules.toml")


def test_a_rules_file_over_one_mebibyte_is_refused_without_reading_it_all(tmp_path: Path):
    path = tmp_path / "big.toml"
    path.write_text(MINIMAL + "#" * (1 << 20))
    with pytest.raises(RulesError, match=r"big\.toml: over the limit of 1 MiB"):
        load_rules(path)


def test_a_rules_file_that_is_not_utf8_names_the_byte(tmp_path: Path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(MINIMAL.encode() + b"# caf\xe9\n")
    with pytest.raises(RulesError, match=r"latin1\.toml: not UTF-8 text \(byte \d+\)"):
        load_rules(path)


def test_a_version_over_100_characters_is_refused():
    parse_rules(MINIMAL.replace('"t1"', '"' + "v" * 100 + '"'))
    with pytest.raises(RulesError, match=r"^rules\.toml: version: 101 characters, over the limit of 100$"):
        parse_rules(MINIMAL.replace('"t1"', '"' + "v" * 101 + '"'), "rules.toml")


LONG = "x" * 201


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda t: t.replace('name = "page view"', f'name = "{LONG}"'), r"signals\[1\]\.name: 201 characters"),
        (lambda t: t.replace('event = "page_viewed"', f'event = "{LONG}"', 1), r"signals\[0\]\.event: 201 characters"),
        (lambda t: t.replace('"/pricing"', f'"/{LONG}"'), r"signals\[0\]\.path_prefix: 202 characters"),
        (
            lambda t: t.replace("points = 2", f"points = 2\nwhen = {{ form = '{LONG}' }}"),
            r"signals\[1\]\.when\.form: 201",
        ),
        (
            lambda t: t.replace("points = 2", f"points = 2\nwhen = {{ f = ['a', '{LONG}'] }}"),
            r"signals\[1\]\.when\.f\[1\]",
        ),
        (lambda t: t + f"[temperature]\nlabels = ['a', 'b', 'c', '{LONG}']\n", r"temperature\.labels\[3\]: 201"),
        (lambda t: t + f"[fit.title]\nmatch = 'keywords'\npoints = {{ {LONG} = 1 }}\n", r"fit\.title\.points\.x{60}"),
        (
            lambda t: t + f"[fit.{LONG}]\npoints = {{ a = 1 }}\n",
            r"fit\.x{60}\.\.\. \(201 characters\): the name is 201",
        ),
        (lambda t: t + f"[categories.{LONG}]\ncap = 1\n", r"categories\.x{60}\.\.\. \(201 characters\): the name"),
        (lambda t: t + f"[stages]\nopportunity_events = ['{LONG}']\n", r"stages\.opportunity_events\[0\]: 201"),
        (lambda t: t + f"[stages.explicit]\n{LONG} = 'lead'\n", r"stages\.explicit\.x{60}\.\.\. \(201 characters\)"),
    ],
)
def test_a_string_over_200_characters_is_refused_naming_the_key(change, where):
    with pytest.raises(RulesError, match=rf"rules\.toml: {where}.*over the limit of 200$"):
        parse_rules(change(MINIMAL), "rules.toml")


def signal(index: int) -> str:
    return f'[[signals]]\nname = "s{index}"\nevent = "e"\ncategory = "web"\npoints = 1\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'version = "t"\n[categories.web]\n' + "".join(signal(i) for i in range(1001)),
            r"signals: 1001 signals, over the limit of 1000",
        ),
        (
            MINIMAL + "[fit.size]\nmatch = 'ranges'\nranges = [" + ", ".join(f"[{i}, 1]" for i in range(1001)) + "]\n",
            r"fit\.size\.ranges: 1001 ranges, over the limit of 1000",
        ),
        (
            MINIMAL + "[fit.industry]\npoints = { " + ", ".join(f"i{i} = 1" for i in range(1001)) + " }\n",
            r"fit\.industry\.points: 1001 values, over the limit of 1000",
        ),
        (
            MINIMAL + "".join(f"[categories.c{i}]\n" for i in range(100)),
            r"categories: 101 categories, over the limit of 100",
        ),
        (
            MINIMAL + "".join(f"[fit.a{i}]\npoints = {{ x = 1 }}\n" for i in range(101)),
            r"fit: 101 fit attributes, over the limit of 100",
        ),
        (
            MINIMAL.replace("points = 2", "points = 2\nwhen = { f = [" + ", ".join(["1"] * 1001) + "] }"),
            r"signals\[1\]\.when\.f: 1001 values, over the limit of 1000",
        ),
    ],
)
def test_absurd_sizes_are_refused_naming_the_key_and_the_limit(text, message):
    with pytest.raises(RulesError, match=rf"^rules\.toml: {message}$"):
        parse_rules(text, "rules.toml")


def test_sizes_at_the_limits_are_accepted():
    text = 'version = "t"\n[categories.web]\n' + "".join(signal(i) for i in range(1000))
    text += "[fit.size]\nmatch = 'ranges'\nranges = [" + ", ".join(f"[{i}, 1]" for i in range(1000)) + "]\n"
    rules = parse_rules(text)
    assert len(rules.signals["e"]) == 1000
    assert len(rules.fit["size"].ranges) == 1000


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t: t.replace("points = 2", "points = 2\npoints_typo = 3"),
            r"signals\[1\]\.points_typo: unknown key; did you mean 'points'\? "
            r"\(see leadpulse/scoring/default_rules\.toml for every key\)$",
        ),
        (
            lambda t: t.replace("points = 2", "points = 2\npath_prefx = '/a'"),
            r"path_prefx: unknown key; did you mean 'path_prefix'",
        ),
        (
            lambda t: t + "[engagement]\nhalflife = '7d'\n",
            r"engagement\.halflife: unknown key; did you mean 'half_life'",
        ),
        (lambda t: t + "[stage]\nprospect_fit = 10\n", r"^rules\.toml: stage: unknown key; did you mean 'stages'"),
        (lambda t: t + "[temperature]\nbands = [0, 50]\nlabel = ['a', 'b']\n", r"temperature\.label: .*'labels'"),
    ],
)
def test_an_unknown_key_suggests_the_closest_accepted_key(change, message):
    with pytest.raises(RulesError, match=message):
        parse_rules(change(MINIMAL), "rules.toml")


def test_an_unknown_key_like_no_accepted_key_gets_no_suggestion():
    with pytest.raises(RulesError, match=r"signals\[1\]\.zzz: unknown key \(see leadpulse/scoring/default_rules\.toml"):
        parse_rules(MINIMAL.replace("points = 2", "points = 2\nzzz = 3"), "rules.toml")


def test_a_misspelled_required_key_is_reported_as_the_misspelling_not_as_missing():
    with pytest.raises(RulesError, match=r"signals\[1\]\.nmae: unknown key; did you mean 'name'\?"):
        parse_rules(MINIMAL.replace('name = "page view"', 'nmae = "page view"'), "rules.toml")


def test_a_key_that_does_nothing_with_the_chosen_match_is_refused():
    text = MINIMAL + "[fit.budget]\nmatch = 'values'\npoints = { a = 1 }\nranges = [[0, 1]]\n"
    with pytest.raises(RulesError, match=r"fit\.budget\.ranges: has no effect"):
        parse_rules(text, "rules.toml")


def test_an_error_quoting_a_huge_value_stays_short():
    with pytest.raises(RulesError) as caught:
        parse_rules(MINIMAL.replace("points = 10", f"points = '{'q' * 100_000}'"), "rules.toml")
    assert len(str(caught.value)) < 200
    assert "(100002 characters)" in str(caught.value)


def test_a_job_title_names_the_seniority_of_a_contact_that_sends_none():
    from leadpulse.cli.offline import score_lines

    def fit_of(properties: dict) -> tuple[float, tuple[str, ...]]:
        line = orjson.dumps(
            {"event_id": "p", "type": "profile_updated", "contact_id": "c", "occurred_at": "2026-11-01T00:00:00Z"}
            | {"properties": properties}
        )
        (view,) = score_lines([line], DEFAULT_RULES).snapshots(None)
        return view.fit, view.segments

    assert fit_of({"job_title": "VP Engineering"}) == (25.0, ("decision makers",))
    assert fit_of({"job_title": "Vice President, Sales"}) == fit_of({"seniority": "vp"})
    assert fit_of({"job_title": "Head of Sales"}) == fit_of({"seniority": "director"})
    assert fit_of({"job_title": "VP Sales", "seniority": "manager"}) == fit_of({"seniority": "manager"})  # as sent
    assert fit_of({"job_title": "Marketing Intern"})[0] == 0.0  # student: 0, and -10 for the title, clamped


def test_title_keywords_match_whole_words_only():
    title = DEFAULT_RULES.fit["job_title"]
    assert title.points("Marketing Intern") == -10
    assert title.points("International Sales Director") == 0.0
    assert DEFAULT_RULES.fit["seniority"].derived("International Sales Director") == "director"
    assert DEFAULT_RULES.fit["seniority"].derived("Director of ctos") == "director"


def test_a_derived_value_must_be_one_the_table_scores(tmp_path):
    shipped = Path(__file__).parents[2].joinpath("leadpulse", "scoring", "default_rules.toml").read_text()
    assert 'derive = { "vice president" = "vp",' in shipped
    rules = tmp_path / "rules.toml"
    rules.write_text(shipped.replace('derive = { "vice president" = "vp",', 'derive = { "vice president" = "v_p",'))
    with pytest.raises(RulesError, match=r"fit\.seniority\.derive\.vice president: 'v_p' is not one of the values"):
        load_rules(rules)
