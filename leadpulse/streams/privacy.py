"""Contact ids are e-mail addresses: they stay out of the worker's log unless asked for.

Redaction happens when a log record is created (a record factory), not in a handler:
Faust replaces the root handlers when the worker starts, and a record created by any
library (aiohttp's request errors quote the request line, an exception may quote a key)
passes through the factory whatever handlers exist. Tracebacks are formatted and redacted
there too, because a formatter would otherwise render them later from the raw exception.
A malformed HTTP request (an over-long request line, say) is the client's error: it is
logged as one line, without aiohttp's traceback.
"""

from __future__ import annotations

import hashlib
import logging
import re
import traceback
from collections.abc import Callable
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
CONTACT_PATH = re.compile(r"(/contacts/)([^\s?#\"'<>]+)")
PSEUDONYM_CHARS = 12


def pseudonym(contact_id: str) -> str:
    """Stable across workers and restarts, so that lines about one contact can be matched
    without the id itself; a hash, so not anonymous for someone who can guess the id."""
    return "contact:" + hashlib.sha256(contact_id.encode("utf-8", "replace")).hexdigest()[:PSEUDONYM_CHARS]


def redactor(mode: str) -> Callable[[str], str]:
    """hidden: ids become <contact>; pseudonymised: a stable hash; plain: unchanged."""
    if mode == "plain":
        return lambda text: text
    if mode == "pseudonymised":

        def replace(text: str) -> str:
            text = CONTACT_PATH.sub(lambda m: m.group(1) + pseudonym(m.group(2)), text)
            return EMAIL.sub(lambda m: pseudonym(m.group(0)), text)

        return replace

    def hide(text: str) -> str:
        return EMAIL.sub("<contact>", CONTACT_PATH.sub(r"\1<contact>", text))

    return hide


def install_log_redaction(mode: str) -> None:
    """Redact every log record of the process from now on (once: a second call replaces the first)."""
    if mode == "plain":
        return
    redact = redactor(mode)
    base = getattr(logging, "_leadpulse_base_factory", None) or logging.getLogRecordFactory()
    logging._leadpulse_base_factory = base  # type: ignore[attr-defined]

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = base(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not fit its template: leave it to logging
            return record
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            message = f"{message}: {type(error).__name__} ({error.code}), answered {error.code}"
            record.exc_info, record.levelno, record.levelname = None, logging.WARNING, "WARNING"
        elif record.exc_info and error is not None:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        record.msg, record.args = redact(message), ()
        return record

    logging.setLogRecordFactory(factory)
