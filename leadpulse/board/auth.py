"""Who may see the board: sessions made by logging in with a bearer token (the query API's
tokens, LEADPULSE_API_TOKENS_FILE), login attempts limited per client address, and CSRF
tokens for the forms that change something (log in, log out). Pure: the clock is passed in.

- A session id is 256 random bits in an HttpOnly, SameSite=Strict cookie; the server keeps
  at most MAX_SESSIONS (the oldest go first) for SESSION_TTL_MS each. The token itself is
  never stored in a cookie, a URL or a log.
- Logging in needs the login form's CSRF token (a double-submit cookie: a page of another
  site can neither read the cookie nor set it) besides the token; logging out needs the
  session's own CSRF token.
- Each client address may try LOGIN_BURST logins, then one every 60/LOGIN_PER_MINUTE
  seconds (a token bucket); at most MAX_CLIENTS addresses are remembered (the least recently
  seen go first)."""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass

SESSION_COOKIE = "lp_session"
LOGIN_CSRF_COOKIE = "lp_login"
SESSION_TTL_MS = 12 * 3_600_000
MAX_SESSIONS = 10_000
LOGIN_BURST = 5
LOGIN_PER_MINUTE = 5.0
MAX_CLIENTS = 10_000


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def same(given: str | None, expected: str | None) -> bool:
    """Constant-time equality of two secrets, False when either is missing."""
    return bool(given) and bool(expected) and hmac.compare_digest(str(given).encode(), str(expected).encode())


@dataclass(frozen=True)
class Session:
    csrf: str
    expires_ms: int


class Sessions:
    def __init__(self) -> None:
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def open(self, now_ms: int) -> tuple[str, Session]:
        session_id = new_secret()
        session = Session(new_secret(), now_ms + SESSION_TTL_MS)
        self._sessions[session_id] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session_id, session

    def get(self, session_id: str | None, now_ms: int) -> Session | None:
        session = self._sessions.get(session_id or "")
        if session is None:
            return None
        if session.expires_ms <= now_ms:
            del self._sessions[session_id or ""]
            return None
        return session

    def close(self, session_id: str | None) -> None:
        self._sessions.pop(session_id or "", None)

    def __len__(self) -> int:
        return len(self._sessions)


class LoginLimit:
    """A token bucket per client address: LOGIN_BURST attempts, refilled at LOGIN_PER_MINUTE."""

    def __init__(self, burst: int = LOGIN_BURST, per_minute: float = LOGIN_PER_MINUTE) -> None:
        self.burst = burst
        self.rate_per_ms = per_minute / 60_000
        self._clients: OrderedDict[str, tuple[float, int]] = OrderedDict()  # address -> (tokens, at_ms)

    def wait_ms(self, client: str, now_ms: int) -> int:
        """0 when `client` may try now (the attempt is counted), else how long to wait."""
        tokens, at_ms = self._clients.pop(client, (float(self.burst), now_ms))
        tokens = min(float(self.burst), tokens + (now_ms - at_ms) * self.rate_per_ms)
        wait = 0 if tokens >= 1.0 else int((1.0 - tokens) / self.rate_per_ms) + 1
        self._clients[client] = (tokens - 1.0 if wait == 0 else tokens, now_ms)
        while len(self._clients) > MAX_CLIENTS:
            self._clients.popitem(last=False)
        return wait
