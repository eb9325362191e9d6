"""The board's HTTP edge (aiohttp): the pages, the live feed (server-sent events), a JSON list
for scripts, login and logout, /health, and the static files. Every answer carries the
security headers; every path but /login, /health and /static/ needs a session or a bearer
token (auth.py). Database calls run in threads (store.py is blocking)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from html import escape
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from leadpulse.board import pages
from leadpulse.board.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_TTL_MS,
    LoginLimit,
    Sessions,
    new_secret,
    same,
)
from leadpulse.board.ingest import Progress
from leadpulse.board.model import HotLeadRow
from leadpulse.board.store import Store
from leadpulse.schemas.fields import normalized_id
from leadpulse.scoring.timeutil import format_ms, now_ms
from leadpulse.streams.web import bearer_of, known_token

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make browsers send `Origin: null` on the forms
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
OPEN_PATHS = ("/login", "/health", "/favicon.ico")
STATIC = {"board.css": "text/css", "board.js": "text/javascript", "favicon.svg": "image/svg+xml"}
MAX_FILTER = 200  # characters of a filter or search value; longer ones are refused (400)
MAX_LIVE_CLIENTS = 200
LIVE_QUEUE = 100  # batches waiting per live client; a client that far behind is dropped
KEEPALIVE_S = 15.0
HOT_ROWS = 100

CSRF = web.RequestKey("csrf", str)  # the session's CSRF token ("" for a bearer token's request)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Live:
    """Hot leads to the pages listening (server-sent events): one bounded queue per client."""

    def __init__(self) -> None:
        self.clients: set[asyncio.Queue[list[dict[str, Any]] | None]] = set()

    def subscribe(self) -> asyncio.Queue[list[dict[str, Any]] | None] | None:
        if len(self.clients) >= MAX_LIVE_CLIENTS:
            return None
        queue: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue(LIVE_QUEUE)
        self.clients.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[list[dict[str, Any]] | None]) -> None:
        self.clients.discard(queue)

    def publish(self, leads: list[HotLeadRow]) -> None:
        batch = [live_record(lead) for lead in leads]
        for queue in list(self.clients):
            try:
                queue.put_nowait(batch)
            except asyncio.QueueFull:  # a client that stopped reading: its feed ends, the page reconnects
                self.clients.discard(queue)
                _end(queue)

    def close(self) -> None:
        for queue in list(self.clients):
            _end(queue)
        self.clients.clear()


def _end(queue: asyncio.Queue[list[dict[str, Any]] | None]) -> None:
    """What is queued is dropped and the feed told to end (None)."""
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(None)


def live_record(lead: HotLeadRow) -> dict[str, Any]:
    return {
        "contact_id": lead.contact_id,
        "score": lead.score,
        "model": lead.model,
        "stage": lead.stage,
        "occurred_at": format_ms(lead.occurred_ms),
        "reasons": [pages.reason_text(r) for r in orjson.loads(lead.reasons)[:3]],
    }


def board_app(store: Store, tokens: tuple[str, ...], progress: Progress, live: Live) -> web.Application:
    expected = [token.encode() for token in tokens]
    sessions = Sessions()
    limit = LoginLimit()

    def session_of(request: web.Request) -> Any:
        return sessions.get(request.cookies.get(SESSION_COOKIE), now_ms())

    @web.middleware
    async def authenticated(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS or request.path.startswith("/static/"):
            return await handler(request)
        session = session_of(request)
        if session is None and not known_token(bearer_of(request.headers.get("Authorization", "")), expected):
            if request.method == "GET" and not request.path.startswith(("/api/", "/live")):
                raise web.HTTPSeeOther("/login")
            return web.json_response(
                {"error": "authentication required: log in, or send Authorization: Bearer <token>"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="leadpulse"'},
            )
        request[CSRF] = "" if session is None else session.csrf
        return await handler(request)

    async def secure_headers(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(SECURITY_HEADERS)
        response.headers.setdefault("Cache-Control", "no-store")

    def page(request: web.Request, title: str, body: str, current: str = "", status: int = 200) -> web.Response:
        html = pages.layout(title, body, csrf=request[CSRF], current=current, query=request.query.get("q", ""))
        return web.Response(text=html, content_type="text/html", status=status)

    def text_param(request: web.Request, name: str) -> str:
        value = request.query.get(name, "").strip()
        if len(value) > MAX_FILTER:
            raise web.HTTPBadRequest(text=f"{name}: at most {MAX_FILTER} characters")
        return value

    async def hot(request: web.Request) -> web.Response:
        filters = {name: text_param(request, name) for name in ("segment", "model", "stage")}
        contacts = await asyncio.to_thread(
            store.hot_contacts,
            segment=filters["segment"] or None,
            model=filters["model"] or None,
            stage=filters["stage"] or None,
            limit=HOT_ROWS,
        )
        accounts = await asyncio.to_thread(store.hot_accounts)
        facets = await asyncio.to_thread(store.facets)
        return page(request, "Hot now", pages.hot_page(contacts, accounts, facets, filters), "hot")

    async def hot_json(request: web.Request) -> web.Response:
        filters = {name: text_param(request, name) or None for name in ("segment", "model", "stage")}
        contacts = await asyncio.to_thread(store.hot_contacts, **filters, limit=HOT_ROWS)
        return web.json_response({"contacts": contacts}, dumps=lambda v: orjson.dumps(v).decode())

    async def contact(request: web.Request) -> web.Response:
        contact_id = normalized_id(request.match_info["contact_id"])
        found = await asyncio.to_thread(store.contact, contact_id)
        if found is None:
            return page(request, "Unknown contact", f"<p>No contact {escape(contact_id)}.</p>", status=404)
        return page(request, contact_id, pages.contact_page(found))

    async def account(request: web.Request) -> web.Response:
        account_id = request.match_info["account_id"]
        found = await asyncio.to_thread(store.account, account_id)
        if found is None:
            return page(request, "Unknown account", f"<p>No account {escape(account_id)}.</p>", status=404)
        return page(request, account_id, pages.account_page(found))

    async def funnel(request: web.Request) -> web.Response:
        return page(request, "Funnel", pages.funnel_page(await asyncio.to_thread(store.funnel)), "funnel")

    async def search(request: web.Request) -> web.Response:
        query = text_param(request, "q")
        if not query:
            raise web.HTTPSeeOther("/")
        found = await asyncio.to_thread(store.search, query)
        return page(request, "Search", pages.search_page(query, found))

    async def feed(request: web.Request) -> web.StreamResponse:
        queue = live.subscribe()
        if queue is None:
            return web.json_response({"error": "too many live pages open"}, status=503, headers={"Retry-After": "30"})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        try:
            await response.prepare(request)
            await response.write(b"retry: 3000\n\n")
            while True:
                try:
                    batch = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if batch is None:
                    break
                for lead in batch:
                    await response.write(b"event: hot\ndata: " + orjson.dumps(lead) + b"\n\n")
        except ConnectionResetError:  # the page went away
            pass
        finally:
            live.unsubscribe(queue)
        return response

    def login_form(error: str | None = None, status: int = 200) -> web.Response:
        csrf = new_secret()
        response = web.Response(text=pages.login_page(csrf, error), content_type="text/html", status=status)
        response.set_cookie(LOGIN_CSRF_COOKIE, csrf, httponly=True, samesite="Strict", path="/login", max_age=3600)
        return response

    async def login_get(request: web.Request) -> web.Response:
        if session_of(request) is not None:
            raise web.HTTPSeeOther("/")
        return login_form()

    async def login_post(request: web.Request) -> web.Response:
        wait_ms = limit.wait_ms(request.remote or "?", now_ms())
        if wait_ms:
            retry = str(max(1, wait_ms // 1000))
            return web.Response(
                text=pages.login_page(new_secret(), f"Too many attempts: try again in {retry} s."),
                content_type="text/html",
                status=429,
                headers={"Retry-After": retry},
            )
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            return login_form("This form was sent from another site.", 403)
        form = await request.post()
        if not same(str(form.get("csrf", "")), request.cookies.get(LOGIN_CSRF_COOKIE)):
            return login_form("The form had expired: log in again.", 403)
        if not known_token(str(form.get("token", "")).encode(), expected):
            return login_form("That token is not one of the board's.")  # the form again, as a page (200)
        session_id, _session = sessions.open(now_ms())
        response = web.HTTPSeeOther("/")
        response.set_cookie(
            SESSION_COOKIE,
            session_id,
            httponly=True,
            samesite="Strict",
            secure=request.secure,
            path="/",
            max_age=SESSION_TTL_MS // 1000,
        )
        response.del_cookie(LOGIN_CSRF_COOKIE, path="/login")
        raise response

    async def logout(request: web.Request) -> web.Response:
        form = await request.post()
        if not same(str(form.get("csrf", "")), request[CSRF]):
            raise web.HTTPForbidden(text="missing or wrong CSRF token")
        sessions.close(request.cookies.get(SESSION_COOKIE))
        response = web.HTTPSeeOther("/login")
        response.del_cookie(SESSION_COOKIE, path="/")
        raise response

    async def health(_request: web.Request) -> web.Response:
        """No contact data: ready once every partition is read up to the end it has seen."""
        ready = progress.partitions > 0 and progress.lag is not None
        return web.json_response(
            {
                "status": "ok" if ready else "starting",
                "pid": os.getpid(),
                "partitions": progress.partitions,
                "applied": progress.applied,
                "unreadable": progress.unreadable,
                "lag": progress.lag,
                "live_pages": len(live.clients),
                "error": progress.last_error,
            },
            status=200 if ready else 503,
        )

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        body = resources.files("leadpulse.board").joinpath("static", name).read_bytes()
        return web.Response(body=body, content_type=STATIC[name], headers={"Cache-Control": "public, max-age=300"})

    async def favicon(_request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("/static/favicon.svg")

    async def closing(_app: web.Application) -> None:
        live.close()

    app = web.Application(middlewares=[authenticated], client_max_size=64 * 1024)
    app.on_response_prepare.append(secure_headers)
    app.on_shutdown.append(closing)
    app.router.add_get("/", hot)
    app.router.add_get("/api/hot", hot_json)
    app.router.add_get("/contacts/{contact_id}", contact)
    app.router.add_get("/accounts/{account_id}", account)
    app.router.add_get("/funnel", funnel)
    app.router.add_get("/search", search)
    app.router.add_get("/live", feed)
    app.router.add_get("/login", login_get)
    app.router.add_post("/login", login_post)
    app.router.add_post("/logout", logout)
    app.router.add_get("/health", health)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/favicon.ico", favicon)
    return app
