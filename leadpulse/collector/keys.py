"""Write keys: which senders may post events. Segment sends the key as the HTTP basic-auth
user name (empty password); several keys let each source, or an old and a new key during a
rotation, be accepted at once.

A key alone on its line is a server key: a secret, with every right. A key followed by
`browser` is a browser key, public by nature (a web page carries it in the clear), so its
line also says what it may do (docs/write-keys.md):

    <key>  browser  origins=https://www.acme.io,https://acme.io  [traits=email,name]  [consent=analytics]

`origins` (required) are the pages allowed to send with it, checked on `Origin`;
`traits` limits what an identify may say about a person; `consent` names the consent
category a message must carry to be kept (else it is only counted).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from leadpulse.streams.settings import SettingsError, check_secret, env_name, file_shown, secret_lines

BROWSER = "browser"
MAX_ORIGINS = 100
"""Origins one browser key may list (an answer to a preflight names one of them)."""
MAX_TRAITS = 200


@dataclass(frozen=True)
class BrowserKey:
    """A write key a web page carries: public, so bound to the pages (`origins`, as
    `scheme://host[:port]`) that may use it; `traits`, when set, are the only identify
    traits it may send; `consent`, when set, the consent category a message must carry."""

    key: bytes
    origins: frozenset[str]
    traits: frozenset[str] | None = None
    consent: str | None = None


@dataclass(frozen=True)
class KeyRing:
    """The write keys of one collector: server keys (secrets, every right) and browser keys."""

    server: tuple[bytes, ...]
    browser: tuple[BrowserKey, ...] = ()

    def browser_key(self, candidate: bytes) -> BrowserKey | None:
        """The browser key `candidate` is, compared as `is_known` compares."""
        matches = [(hmac.compare_digest(candidate, entry.key), entry) for entry in self.browser]
        return next((entry for matched, entry in matches if matched), None)

    @property
    def origins(self) -> frozenset[str]:
        """Every origin some browser key allows: a preflight (sent without the key) is
        answered for these."""
        return frozenset().union(*(entry.origins for entry in self.browser))


def load_write_keys(path: Path | None) -> KeyRing:
    """The keys in `path`, in the tokens file's format (`read_secrets`) plus the browser
    keys' options; refused with the setting's name and line when missing, empty, holding a
    key too short to be a secret (a sender may try keys as often as it likes) or a browser
    key without its origins."""
    if path is None:
        setting = env_name("write_keys_file")
        raise SettingsError(f"{setting}: required by `leadpulse collect` (a file with one write key per line)")
    server: list[bytes] = []
    browser: list[BrowserKey] = []
    for number, line in secret_lines(path, "write_keys_file", "write key"):
        key, *options = line.split()
        where = f"{file_shown(path, 'write_keys_file')}: line {number}"
        check_secret(key, where, "write key", forbidden=":")
        if not options:
            server.append(key.encode())
        else:
            browser.append(_browser_key(key, options, where))
    return KeyRing(tuple(server), tuple(browser))


def _browser_key(key: str, options: list[str], where: str) -> BrowserKey:
    if options[0] != BROWSER:
        raise SettingsError(f"{where}: after the key, expected `{BROWSER}` then its options, got {options[0][:40]!r}")
    values: dict[str, str] = {}
    for option in options[1:]:
        name, equals, value = option.partition("=")
        if name not in ("origins", "traits", "consent") or not equals or not value:
            raise SettingsError(f"{where}: {option[:40]!r}: expected origins=..., traits=... or consent=...")
        if name in values:
            raise SettingsError(f"{where}: {name} given twice")
        values[name] = value
    if "origins" not in values:
        raise SettingsError(f"{where}: a browser key needs origins=https://your.site[,...] (the pages that send it)")
    origins = values["origins"].split(",")
    if len(origins) > MAX_ORIGINS:
        raise SettingsError(f"{where}: more than {MAX_ORIGINS} origins")
    for origin in origins:
        if canonical_origin(origin) != origin:
            raise SettingsError(
                f"{where}: origin {origin[:80]!r}: expected scheme://host[:port] in lower case, "
                "no path (as a browser sends it in Origin)"
            )
    traits = values["traits"].split(",") if "traits" in values else None
    if traits is not None and (len(traits) > MAX_TRAITS or not all(traits)):
        raise SettingsError(f"{where}: traits: up to {MAX_TRAITS} names, comma-separated")
    return BrowserKey(
        key.encode(), frozenset(origins), None if traits is None else frozenset(traits), values.get("consent")
    )


def canonical_origin(origin: str) -> str | None:
    """`origin` as browsers serialise it (http/https, host, port when not the default), or
    None when it is not one."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query or parts.fragment:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def basic_auth_user(header: str | None) -> bytes | None:
    """The user name of an `Authorization: Basic ...` header, or None for anything else."""
    if header is None:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return decoded.partition(b":")[0]


def is_known(candidate: bytes | None, keys: tuple[bytes, ...]) -> bool:
    """Constant-time against each key, and every key is compared: neither the time taken nor
    an early exit tells a sender how much of a key it got right, or which key it hit."""
    if candidate is None:
        return False
    matches = [hmac.compare_digest(candidate, key) for key in keys]
    return any(matches)
