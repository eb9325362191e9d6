"""`[nurture]` in a rules file: a bad track or catalogue entry stops `rules check` and the
worker before anything runs, naming the key that is wrong."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from leadpulse.cli.main import main
from leadpulse.cli.processes import ROOT, free_port
from leadpulse.scoring.rules import SHIPPED_RULES, RulesError, parse_rules
from tests.factories import DEFAULT_RULES

SHIPPED = (ROOT / SHIPPED_RULES).read_text()


def with_nurture(old: str, new: str) -> str:
    assert old in SHIPPED, old
    return SHIPPED.replace(old, new, 1)


def test_the_shipped_rules_define_four_tracks_and_a_catalogue():
    nurture = DEFAULT_RULES.nurture
    assert [(t.name, t.trigger) for t in nurture.tracks] == [
        ("fit-but-quiet", "low_engagement"),
        ("cooling-off", "cooled"),
        ("stalled", "stalled"),
        ("recycle", "recycled"),
    ]
    assert {"opportunity", "customer"} <= nurture.skip_stages
    assert nurture.period_ms == 14 * 86_400_000
    assert nurture.dormant_after_ms == 180 * 86_400_000
    assert any(item.interest == "pricing" and "white paper" in item.title.lower() for item in nurture.catalogue)


def test_a_file_without_nurture_nurtures_nobody_and_cannot_unprotect_customers():
    minimal = parse_rules(
        'version = "t"\n[categories.web]\n[[signals]]\nname = "v"\nevent = "x"\ncategory = "web"\npoints = 1\n'
    )
    assert minimal.nurture.tracks == ()
    skipping_none = parse_rules(with_nurture('skip_stages = ["suspect", "disqualified"]', "skip_stages = []"))
    assert {"opportunity", "customer"} <= skipping_none.nurture.skip_stages


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('trigger = "cooled"', 'trigger = "chilled"', r"nurture\.tracks\[1\]\.trigger: unknown trigger 'chilled'"),
        ("max_engagement = 15", 'max_engagement = "low"', r"nurture\.tracks\[0\]\.max_engagement: expected a number"),
        ("min_fit = 50", "min_fit = 50\nafter = '3d'", r"nurture\.tracks\[0\]\.after: unknown key"),
        ('to = "cool"', 'to = "tepid"', r"nurture\.tracks\[1\]\.to: unknown band 'tepid'"),
        ('to = "cool"', 'to = "hot"', r"nurture\.tracks\[1\]\.to: a contact cools to a lower band"),
        ('after = "21d"', 'after = "three weeks"', r"nurture\.tracks\[2\]\.after: 'three weeks' is not a duration"),
        (
            'stages = ["lead", "prospect"]',
            'stages = ["lead", "prospects"]',
            r"nurture\.tracks\[2\]\.stages\[1\]: unknown stage 'prospects'",
        ),
        ('name = "recycle"', 'name = "stalled"', r"nurture\.tracks\[3\]\.name: duplicate track name 'stalled'"),
        ('period = "14d"', 'period = "0d"', r"nurture\.period: must be longer than zero"),
        (
            'dormant_after = "180d"',
            'dormant_after = "60d"',
            r"nurture\.tracks\[3\]\.after: track 'recycle' starts after the contact is dormant",
        ),
        ("skip_stages = [", "skip_stage = [", r"nurture\.skip_stage: unknown key; did you mean 'skip_stages'\?"),
        ('interest = "pricing"', 'interest = "prices"', r"nurture\.content\[0\]\.interest: unknown interest"),
        ('segment = "decision makers"', 'segment = "deciders"', r"nurture\.content\[3\]\.segment: unknown segment"),
        ('track = "recycle"', 'track = "recycling"', r"nurture\.content\[5\]\.track: unknown track"),
        (
            'url = "https://example.com/resources/whats-new"',
            'url = "example.com/new"',
            r"nurture\.content\[5\]\.url: expected an http\(s\) URL",
        ),
        ('title = "Security and GDPR white paper"', 'title = ""', r"nurture\.content\[1\]\.title: expected a non-"),
        ('title = "Security and GDPR white paper"', 'titel = "x"', r"nurture\.content\[1\]\.titel: unknown key"),
        (
            "[[nurture.content]]                       # the fallback of every track\n"
            'title = "Customer stories: how B2B teams qualify faster"',
            '[[nurture.content]]\nstage = "lead"\ntitle = "Customer stories: how B2B teams qualify faster"',
            r"nurture\.tracks\[1\]: no \[\[nurture\.content\]\] entry for track 'cooling-off' without stage",
        ),
    ],
)
def test_a_bad_track_or_catalogue_entry_is_refused_naming_the_key(old, new, message):
    with pytest.raises(RulesError, match=r"^my-rules\.toml: " + message):
        parse_rules(with_nurture(old, new), "my-rules.toml")


def bad_rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "my-rules.toml"
    path.write_text(with_nurture('interest = "pricing"', 'interest = "prices"'))
    return path


def test_rules_check_stops_on_a_bad_catalogue_entry(tmp_path, capsys):
    assert main(["rules", "check", str(bad_rules_file(tmp_path))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"leadpulse: bad rules: {tmp_path / 'my-rules.toml'}: nurture.content[0].interest:")


def test_the_worker_refuses_to_start_on_a_bad_catalogue_entry_before_contacting_kafka(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPULSE_")}
    env |= {
        "LEADPULSE_BROKER": f"127.0.0.1:{free_port()}",  # nothing listens there: never reached
        "LEADPULSE_DATA_DIR": str(tmp_path / "data"),
        "LEADPULSE_RULES": str(bad_rules_file(tmp_path)),
    }
    done = subprocess.run(
        [sys.executable, "-m", "leadpulse", "worker"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"leadpulse: bad rules: {tmp_path / 'my-rules.toml'}: nurture.content[0].interest: unknown interest (an "
        "[interests] name) 'prices'; defined: customer-stories, integrations, lead-scoring, nurturing, pricing, "
        "security"
    ]
