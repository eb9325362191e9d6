"""The board's pages and access rules (leadpulse/board/web.py), served by aiohttp over a real
socket from a read model fed the worker's records; the browser tests drive the same pages."""

from __future__ import annotations

import re

import pytest
from aiohttp import ClientSession, ClientTimeout, CookieJar
from aiohttp.test_utils import TestServer

from leadpulse.board.auth import LOGIN_BURST
from leadpulse.board.ingest import Progress
from leadpulse.board.store import Store
from leadpulse.board.web import SECURITY_HEADERS, Live, board_app
from tests.unit.test_board_model import CONTACT, Feed, everything

TOKEN = "board-token-0123456789"
pytestmark = pytest.mark.asyncio(loop_scope="session")  # the loop the fixture's server runs on
# unsafe: keep cookies of an IP address host (127.0.0.1), as browsers do


@pytest.fixture
async def board(tmp_path):
    store = Store(str(tmp_path / "board.sqlite3"), retention_days=30)
    store.apply(everything(Feed()))
    server = TestServer(board_app(store, (TOKEN,), Progress(partitions=1, lag=0), Live()), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()
    store.close()


async def login(session: ClientSession, base: str, token: str = TOKEN) -> int:
    form = await (await session.get(f"{base}/login")).text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    answer = await session.post(f"{base}/login", data={"csrf": csrf, "token": token}, allow_redirects=False)
    return answer.status


def base_of(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


@pytest.mark.parametrize("path", ["/", f"/contacts/{CONTACT}", "/accounts/acme.io", "/funnel", "/search?q=acme.io"])
async def test_no_page_without_authentication(board, path):
    async with ClientSession(timeout=ClientTimeout(total=5), cookie_jar=CookieJar(unsafe=True)) as session:
        answer = await session.get(f"{base_of(board)}{path}", allow_redirects=False)
        assert answer.status == 303 and answer.headers["Location"] == "/login"
        api = await session.get(f"{base_of(board)}/api/hot")
        assert api.status == 401 and CONTACT not in await api.text()
        live = await session.get(f"{base_of(board)}/live")
        assert live.status == 401


async def test_a_bearer_token_reads_the_json_list_and_a_wrong_one_does_not(board):
    async with ClientSession(timeout=ClientTimeout(total=5), cookie_jar=CookieJar(unsafe=True)) as session:
        ok = await session.get(f"{base_of(board)}/api/hot", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status == 200 and [c["contact_id"] for c in (await ok.json())["contacts"]] == [CONTACT]
        wrong = await session.get(f"{base_of(board)}/api/hot", headers={"Authorization": "Bearer x" * 3})
        assert wrong.status == 401


async def test_logging_in_opens_every_page_with_the_security_headers(board):
    base = base_of(board)
    async with ClientSession(timeout=ClientTimeout(total=5), cookie_jar=CookieJar(unsafe=True)) as session:
        assert await login(session, base) == 303
        cookie = next(c for c in session.cookie_jar if c.key == "lp_session")
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and TOKEN not in cookie.value
        for path, expected in [
            ("/", CONTACT),
            (f"/contacts/{CONTACT.upper()}", "<svg"),
            ("/accounts/acme.io", CONTACT),
            ("/funnel", "Entries per week"),
            ("/search?q=acme.io", CONTACT),
        ]:
            answer = await session.get(f"{base}{path}")
            assert answer.status == 200, path
            assert expected in await answer.text(), path
            for name, value in SECURITY_HEADERS.items():
                assert answer.headers[name] == value
            assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
            assert "<script>" not in await answer.text() and " style=" not in await answer.text()


async def test_a_wrong_token_or_a_missing_csrf_token_opens_no_session(board):
    base = base_of(board)
    async with ClientSession(timeout=ClientTimeout(total=5), cookie_jar=CookieJar(unsafe=True)) as session:
        assert await login(session, base, token="not-the-token-at-all") == 200  # the form again, with the error
        forged = await session.post(f"{base}/login", data={"csrf": "guess", "token": TOKEN}, allow_redirects=False)
        assert forged.status == 403
        other_site = await session.post(
            f"{base}/login", data={"token": TOKEN}, headers={"Origin": "https://evil.example"}, allow_redirects=False
        )
        assert other_site.status == 403
        assert (await session.get(f"{base}/", allow_redirects=False)).status == 303


async def test_logins_are_rate_limited_per_client(board):
    base = base_of(board)
    async with ClientSession(timeout=ClientTimeout(total=5), cookie_jar=CookieJar(unsafe=True)) as session:
        statuses = [await login(session, base, token="wrong-token-wrong-token") for _ in range(LOGIN_BURST + 1)]
        assert statuses == [200] * LOGIN_BURST + [429]
        assert await login(session, base) == 429  # the right token too, until the bucket refills


async def test_logging_out_needs_the_sessions_csrf_token_and_ends_the_session(board):
    base = base_of(board)
    async with ClientSession(timeout=ClientTimeout(total=5), cookie_jar=CookieJar(unsafe=True)) as session:
        await login(session, base)
        page = await (await session.get(f"{base}/")).text()
        csrf = re.search(r'action="/logout".*?name="csrf" value="([^"]+)"', page).group(1)
        assert (await session.post(f"{base}/logout", data={"csrf": "forged"})).status == 403
        assert (await session.get(f"{base}/", allow_redirects=False)).status == 200
        out = await session.post(f"{base}/logout", data={"csrf": csrf}, allow_redirects=False)
        assert out.status == 303
        assert (await session.get(f"{base}/", allow_redirects=False)).status == 303


async def test_health_and_static_files_need_no_login_and_show_no_contact(board):
    async with ClientSession(timeout=ClientTimeout(total=5), cookie_jar=CookieJar(unsafe=True)) as session:
        health = await session.get(f"{base_of(board)}/health")
        assert health.status == 200 and CONTACT not in await health.text()
        script = await session.get(f"{base_of(board)}/static/board.js")
        assert script.status == 200 and "EventSource" in await script.text()
        assert (await session.get(f"{base_of(board)}/static/store.py")).status == 404
