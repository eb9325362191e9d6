"""The backtest's HTML report in a real headless Chromium (Debian's): it renders every plot
without a console message or a page error, and asks the network for nothing."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from leadpulse.cli.backtest import Options, run_backtest
from leadpulse.cli.backtest_html import render
from leadpulse.cli.traffic import DAY_MS, Traffic
from leadpulse.schemas.limits import DEFAULT_LIMITS
from leadpulse.scoring.rules import load_rules
from leadpulse.scoring.timeutil import parse_rfc3339_ms
from tests.integration.chromium import chromium_missing, launched

if (_why := chromium_missing()) is not None:
    pytest.skip(f"browser tests skipped: {_why}", allow_module_level=True)

BAD_RULES = Path(__file__).resolve().parents[2] / "examples" / "bad-rules.toml"
START = parse_rfc3339_ms("2026-01-01T00:00:00Z")


def test_the_html_report_renders_every_plot_offline_without_console_errors(tmp_path: Path) -> None:
    traffic = Traffic(5, START, 200 * DAY_MS, 600, accounts=15, outcomes=True)
    history = b"".join(orjson.dumps(event) + b"\n" for event in traffic.events(6_000))
    end = START + 201 * DAY_MS
    options = Options(load_rules(), load_rules(BAD_RULES), end, DEFAULT_LIMITS, None, 50, True, 7 * DAY_MS, 60 * DAY_MS)
    page_file = tmp_path / "report.html"
    page_file.write_text(render(run_backtest(history, options, 1, on_bad=lambda bad: None)), encoding="utf-8")

    said: list[str] = []
    requested: list[str] = []
    with launched() as chromium:
        page = chromium.new_page()
        page.on("console", lambda message: said.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: said.append(f"page error: {error}"))
        page.on("request", lambda request: requested.append(request.url))
        page.goto(page_file.as_uri(), wait_until="load")
        drawn = page.evaluate(
            """() => [...document.querySelectorAll("svg")].map(svg => {
                const box = svg.getBoundingClientRect()
                const marks = svg.querySelectorAll("rect, polyline").length
                return [svg.getAttribute("aria-label"), box.width, box.height, marks]
            })"""
        )
        title = page.title()
    assert said == []
    assert requested == [page_file.as_uri()]  # the page itself, nothing else
    assert title.startswith("LeadPulse backtest")
    labels = {label for label, *_ in drawn}
    for plot in (
        "contacts per final score (bins of 5)",
        "contacts per final stage",
        "hot-lead alerts per week",
        "conversion rate per band",
        "conversion rate per decile",
    ):
        assert plot in labels
    for label, width, height, marks in drawn:
        assert width > 100 and height > 100 and marks > 0, label
