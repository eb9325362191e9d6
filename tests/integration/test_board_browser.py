"""The lead board in real headless Chromium (Debian's, driven by Playwright), on the real
broker: log in, see a hot lead arrive live after its events are produced, open its contact
page (chart and reasons), search, the funnel, at laptop and phone widths; no console error
on any page; nothing without logging in. The screenshots of the README come from here
(docs/img/board-*.png). One worker, one board and one browser page for the module."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest

from leadpulse.cli.processes import ROOT, BoardProcess, WorkerProcess, free_port
from leadpulse.scoring.timeutil import format_ms, now_ms
from leadpulse.streams.settings import Settings
from tests.factories import buyer_documents
from tests.integration.chromium import chromium_missing, launched
from tests.integration.harness import isolated_settings, produce, wait_for

pytestmark = pytest.mark.integration

if (_why := chromium_missing()) is not None:
    pytest.skip(f"browser tests skipped: {_why}", allow_module_level=True)

TOKEN = "browser-board-token-0123456789"
SHOTS = ROOT / "docs" / "img"
LAPTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
BUYER = "dana@northwind.example"


@pytest.fixture(scope="module")
def settings(broker, tmp_path_factory) -> Settings:
    folder = tmp_path_factory.mktemp("board-browser")
    (folder / "tokens").write_text(f"{TOKEN}\n")
    return isolated_settings(
        broker.port,
        "board-browser",
        folder,
        partitions=2,
        board_port=free_port(),
        api_tokens_file=folder / "tokens",
        session_timeout_s=10.0,
    )


@pytest.fixture(scope="module")
def board(settings, tmp_path_factory):
    """A worker and a board, each stopped by its pid at the module's end."""
    logs = tmp_path_factory.mktemp("board-browser-logs")
    worker = WorkerProcess(settings, logs / "worker.log")
    process = BoardProcess(settings, logs / "board.log")
    try:
        worker.start()
        process.start(timeout_s=60)
        yield process
    finally:
        process.kill()
        worker.kill()
        print(f"board log ends:\n{(logs / 'board.log').read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="module")
def page(board):
    """One page for the module, its console errors and page errors kept in `page.errors`."""
    with launched() as chromium:
        context = chromium.new_context(viewport=LAPTOP)
        opened = context.new_page()
        errors: list[str] = []
        opened.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        opened.on("pageerror", lambda error: errors.append(str(error)))
        opened.errors = errors
        yield opened
        context.close()


@pytest.fixture(autouse=True)
def no_console_errors(request):
    yield
    if "page" in request.fixturenames:
        errors = request.getfixturevalue("page").errors
        assert errors == [], f"console errors: {errors}"
        errors.clear()


def test_nothing_is_served_without_logging_in(board, page):
    page.goto(f"{board.base_url}/contacts/{BUYER}")
    assert page.url == f"{board.base_url}/login"
    assert page.get_by_label("Access token").is_visible()
    answer = page.request.get(f"{board.base_url}/api/hot")
    assert answer.status == 401 and BUYER not in answer.text()
    answer = page.request.get(f"{board.base_url}/live")
    assert answer.status == 401


def test_a_wrong_token_is_refused_and_the_right_one_logs_in(board, page):
    page.get_by_label("Access token").fill("not-a-token-of-the-board")
    page.get_by_role("button", name="Log in").click()
    assert page.get_by_role("alert").inner_text() == "That token is not one of the board's."
    page.get_by_label("Access token").fill(TOKEN)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{board.base_url}/")
    assert page.get_by_role("heading", name="Hot now").is_visible()
    assert TOKEN not in page.content() and TOKEN not in page.url


def test_a_hot_lead_appears_live_after_its_events_are_produced(settings, board, page):
    page.wait_for_function("document.getElementById('live').dataset.connected === 'yes'")
    lines = [orjson.dumps(line) for line in buyer_documents(BUYER, at=format_ms(now_ms() - 60_000))]
    with ThreadPoolExecutor(1) as thread:  # Playwright's loop runs in this thread: asyncio.run goes in another
        thread.submit(produce, settings, lines).result()
    arrived = page.locator("#live li", has_text=BUYER)
    arrived.wait_for(timeout=60_000)
    assert "score" in arrived.inner_text()
    row = page.locator("#hot-table tbody tr", has_text=BUYER)

    def listed_with_reasons() -> bool:
        """The table of hot contacts has it too, with its reasons, once the board has read
        its snapshot (contact-scores, read apart from the alerts: it may come a moment later)."""
        page.reload()
        return row.locator(".reasons li").count() >= 1

    assert wait_for(listed_with_reasons, timeout_s=30, interval_s=0.5), "the hot table lists it with its reasons"
    page.wait_for_function("document.getElementById('live').dataset.connected === 'yes'")
    page.screenshot(path=str(SHOTS / "board-hot-now.png"), full_page=True)


def test_the_contact_page_shows_the_score_chart_and_the_reasons(board, page):
    page.goto(f"{board.base_url}/")
    page.locator("#hot-table").get_by_role("link", name=BUYER).click()
    page.wait_for_url("**/contacts/*")
    assert page.get_by_role("heading", name=BUYER).is_visible()
    chart = page.locator("svg.chart")
    assert chart.is_visible() and chart.locator("circle.point").count() >= 1
    assert page.locator("svg.chart title").first.text_content().startswith(f"Score of {BUYER}")
    why = page.locator("section[aria-labelledby='why'] li")
    assert why.count() >= 1
    texts = why.all_inner_texts()
    assert all(re.fullmatch(r".+ [+-][\d.]+ \((fit|engagement)\)", text) for text in texts), texts
    assert page.locator("section[aria-labelledby='alerts'] ol > li").count() == 1
    page.screenshot(path=str(SHOTS / "board-contact.png"), full_page=True)
    page.set_viewport_size(PHONE)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width}px wide on a {PHONE['width']}px phone"
    page.screenshot(path=str(SHOTS / "board-contact-phone.png"), full_page=True)
    page.set_viewport_size(LAPTOP)


def test_search_finds_the_contact_by_domain(board, page):
    page.goto(f"{board.base_url}/funnel")
    page.get_by_label("Search by e-mail, domain or id").fill("northwind.example")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**/search?q=northwind.example")
    assert page.locator("#results").get_by_role("link", name=BUYER).is_visible()


def test_the_funnel_counts_the_contact_at_its_stage(board, page):
    page.goto(f"{board.base_url}/funnel")
    rows = page.locator("#funnel tbody tr")
    assert rows.count() == 5
    counts = {r.locator("th").inner_text(): int(r.locator("td").first.inner_text()) for r in rows.all()}
    assert sum(counts.values()) >= 1
    page.screenshot(path=str(SHOTS / "board-funnel.png"), full_page=True)
