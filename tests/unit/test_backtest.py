"""`leadpulse backtest`: what a rules change does to one history (scoring.backtest), and how
well each rules file predicts the outcomes in it (scoring.calibration)."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from leadpulse.cli.backtest import Options, run_backtest
from leadpulse.cli.backtest_html import render
from leadpulse.cli.main import main
from leadpulse.cli.offline import score_lines
from leadpulse.cli.traffic import DAY_MS, Traffic
from leadpulse.schemas.limits import DEFAULT_LIMITS
from leadpulse.scoring.calibration import scoring_times
from leadpulse.scoring.engine import HotLead
from leadpulse.scoring.rules import Rules, load_rules, parse_rules
from leadpulse.scoring.timeutil import format_ms, parse_rfc3339_ms

START = parse_rfc3339_ms("2026-01-01T00:00:00Z")
SPAN = 240 * DAY_MS
DEFAULT_RULES = (Path(__file__).resolve().parents[2] / "leadpulse/scoring/default_rules.toml").read_text()
EVERY, HORIZON = 14 * DAY_MS, 60 * DAY_MS


def history(events: int, contacts: int, seed: int = 4) -> list[dict[str, Any]]:
    traffic = Traffic(seed, START, SPAN, contacts, accounts=contacts // 40, identities=0.3, outcomes=True)
    return list(traffic.events(events))


def lines_of(documents: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(document) + b"\n" for document in documents)


def backtest(
    documents: list[dict[str, Any]], candidate: Rules, *, jobs: int = 1, calibrate: bool = False
) -> dict[str, Any]:
    options = Options(
        load_rules(), candidate, START + SPAN + DAY_MS, DEFAULT_LIMITS, None, 10_000, calibrate, EVERY, HORIZON
    )
    return run_backtest(lines_of(documents), options, jobs, on_bad=lambda bad: None)


def doubled(signal: str) -> Rules:
    """The shipped rules with one signal's points doubled (and a version of their own)."""
    pattern = re.compile(rf'(name = "{re.escape(signal)}"\n(?:[^\[\n]*\n)*?points = )(-?\d+)')
    text, found = pattern.subn(lambda match: f"{match.group(1)}{2 * int(match.group(2))}", DEFAULT_RULES)
    assert found == 1
    return parse_rules(text.replace('version = "default-2026.11"', 'version = "doubled"'))


@pytest.fixture(scope="module")
def small() -> list[dict[str, Any]]:
    return history(6_000, 600)


def test_identical_rules_change_nothing(small: list[dict[str, Any]]) -> None:
    report = backtest(small, parse_rules(DEFAULT_RULES.replace("default-2026.11", "same")))
    changes = report["changes"]
    assert changes["contacts"] == 0 and changes["accounts"] == 0
    for kind in ("hot_leads_added", "hot_leads_removed", "hot_accounts_added", "hot_accounts_removed"):
        assert changes[kind]["count"] == 0
    assert changes["nurture_added"]["count"] == changes["nurture_removed"]["count"] == 0
    assert changes["hot_leads_kept"] > 20  # the history has hot leads to keep
    assert report["baseline"]["funnel"] == report["candidate"]["funnel"]
    assert report["baseline"]["hot_accounts"] == report["candidate"]["hot_accounts"] > 0


def test_doubling_one_signal_changes_exactly_the_contacts_and_alerts_the_offline_scorer_says(
    small: list[dict[str, Any]],
) -> None:
    candidate = doubled("pricing page")
    lines = lines_of(small).splitlines()
    runs = [score_lines(lines, rules, now_ms=START + SPAN + DAY_MS) for rules in (load_rules(), candidate)]
    at = max(run.latest_ms or 0 for run in runs)
    views = [{view.contact_id: view for view in run.snapshots(at)} for run in runs]
    expected_contacts = {
        contact_id
        for contact_id, before in views[0].items()
        if (before.stage, before.temperature, before.segments)
        != ((after := views[1][contact_id]).stage, after.temperature, after.segments)
    }
    alerts = [{output.id for output in run.outputs if isinstance(output, HotLead)} for run in runs]

    report = backtest(small, candidate)

    changes = report["changes"]
    assert expected_contacts and alerts[1] - alerts[0]  # the change has an effect to find
    assert {example["contact_id"] for example in changes["examples"]} == expected_contacts
    assert changes["contacts"] == len(expected_contacts)
    assert {alert["id"] for alert in changes["hot_leads_added"]["examples"]} == alerts[1] - alerts[0]
    assert {alert["id"] for alert in changes["hot_leads_removed"]["examples"]} == alerts[0] - alerts[1]
    for alert in changes["hot_leads_added"]["examples"]:  # the one reason that made the difference
        assert alert["score"] > alert["other_score"]
        [row] = alert["difference"]
        assert row["signal"] == "pricing page" and row["other_points"] > 0
        assert row["points"] == pytest.approx(2 * row["other_points"], abs=0.11)  # each rounded to 0.1
    moves = {(move["baseline"], move["candidate"]) for move in changes["temperature_moves"]}
    assert moves and all(
        ["cold", "cool", "warm", "hot"].index(before) < ["cold", "cool", "warm", "hot"].index(after)
        for before, after in moves
    )  # more points only ever warm a contact up


def test_the_report_is_the_same_on_several_processes(small: list[dict[str, Any]]) -> None:
    candidate = doubled("webinar attended")
    assert backtest(small, candidate, jobs=3) == backtest(small, candidate, jobs=1)


@pytest.fixture(scope="module")
def larger() -> list[dict[str, Any]]:
    return history(9_000, 1_200, seed=9)


@pytest.fixture(scope="module")
def calibrated(larger: list[dict[str, Any]]) -> dict[str, Any]:
    return backtest(larger, load_rules(), calibrate=True)["calibration"]["baseline"]


def test_calibration_recovers_the_planted_effect_of_the_ground_truth(calibrated: dict[str, Any]) -> None:
    """The ground truth (docs/backtest.md) converts demo requests, webinars and senior
    buyers; the shipped rules score the same behaviours, so they rank converters first."""
    assert calibrated["samples"] > 3_000 and calibrated["converted"] > 100
    assert 0.65 <= calibrated["roc_auc"] <= 0.9
    assert calibrated["hot_lift"] >= 4
    rates = [band["conversion_rate"] for band in calibrated["bands"]]
    assert rates[3] > rates[2] > max(rates[:2])  # hot converts best, then warm
    assert calibrated["deciles"][0]["conversion_rate"] > 3 * calibrated["conversion_rate"]
    lifts = {row["feature"]: row["lift"] for row in calibrated["features"]}
    assert lifts["signal: demo request"] > 2 > lifts["signal: newsletter unsubscribe"]
    assert calibrated["hot_to_conversion_days"]["median"] > 0


def test_calibration_finds_nothing_in_shuffled_outcomes(larger: list[dict[str, Any]]) -> None:
    """Every outcome event given to an identified contact drawn at random: AUC ≈ 0.5."""
    shuffler = random.Random(17)
    contacts = sorted({str(d["contact_id"]) for d in larger if "contact_id" in d})
    outcomes = ("sales_qualified", "opportunity_opened", "deal_won", "deal_lost", "disqualified")
    shuffled = [
        {**document, "contact_id": shuffler.choice(contacts)} if document["type"] in outcomes else document
        for document in larger
    ]
    found = backtest(shuffled, load_rules(), calibrate=True)["calibration"]["baseline"]
    assert found["converted"] > 100
    assert 0.44 <= found["roc_auc"] <= 0.56


def test_no_look_ahead_an_outcome_correlated_event_after_the_scoring_time_changes_nothing(
    larger: list[dict[str, Any]], calibrated: dict[str, Any]
) -> None:
    """Demo requests sent just after the last scoring time by the contacts about to convert
    change none of the samples; the same requests one day earlier do."""
    times = [parse_rfc3339_ms(document["occurred_at"]) for document in larger]
    last = scoring_times(min(times), max(times), EVERY, HORIZON)[-1]
    converting = sorted(
        {
            str(d["contact_id"])
            for d, at in zip(larger, times, strict=True)
            if d["type"] == "opportunity_opened" and last < at < last + HORIZON
        }
    )
    assert len(converting) > 10

    def with_demos(at_ms: int) -> dict[str, Any]:
        demos = [
            {"event_id": f"planted-{n}", "type": "demo_requested", "contact_id": who, "occurred_at": format_ms(at_ms)}
            for n, who in enumerate(converting)
        ]
        return backtest([*larger, *demos], load_rules(), calibrate=True)["calibration"]["baseline"]

    after = with_demos(last)  # at the scoring time itself: not before it
    sampled = ("samples", "converted", "bands", "deciles", "roc_auc", "features")
    assert {key: after[key] for key in sampled} == {key: calibrated[key] for key in sampled}
    before = with_demos(last - DAY_MS)
    assert before["roc_auc"] > calibrated["roc_auc"]


def test_the_html_report_is_self_contained(small: list[dict[str, Any]]) -> None:
    page = render(backtest(small[:3_000], doubled("e-mail reply"), calibrate=True))
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") >= 7
    assert not re.search(r"<script|<link|<img|<iframe|\bsrc=|url\(|@import", page)
    assert re.findall(r"https?://[^\"' <]+", page) == ["http://www.w3.org/2000/svg"] * len(
        re.findall("xmlns=", page)
    )  # the SVG namespace is a name, never fetched


def test_a_bad_candidate_rules_file_ends_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events, rules = tmp_path / "events.jsonl", tmp_path / "bad.toml"
    events.write_bytes(lines_of(history(50, 10)))
    rules.write_text('version = "x"\n[weights]\nfit = "heavy"\n')
    assert main(["backtest", str(events), "--candidate", str(rules)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "weights" in error and "fit" in error
