"""Write keys: which senders may post events. Segment sends the key as the HTTP basic-auth
user name (empty password); several keys let each source, or an old and a new key during a
rotation, be accepted at once."""

from __future__ import annotations

import base64
import binascii
import hmac
from pathlib import Path

from leadpulse.streams.settings import SettingsError, env_name, read_secrets


def load_write_keys(path: Path | None) -> tuple[bytes, ...]:
    """The keys in `path`, in the tokens file's format (`read_secrets`); refused with the
    setting's name when missing, empty or holding a key too short to be a secret (a sender
    may try keys as often as it likes)."""
    if path is None:
        setting = env_name("write_keys_file")
        raise SettingsError(f"{setting}: required by `leadpulse collect` (a file with one write key per line)")
    return tuple(key.encode() for key in read_secrets(path, "write_keys_file", "write key", forbidden=":"))


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
