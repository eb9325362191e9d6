"""Worker settings from `LEADPULSE_*` environment variables, validated at start-up: a bad
value stops the worker with a message that names the variable."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from scoring.timeutil import parse_duration_ms

PREFIX = "LEADPULSE_"
_KAFKA_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
GUARANTEES = ("at_least_once", "exactly_once")
STORES = ("rocksdb://", "memory://")


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the environment variable."""


@dataclass(frozen=True)
class Settings:
    broker: str = "kafka://127.0.0.1:9092"
    app_id: str = "leadpulse"
    topic_prefix: str = ""
    input_topic: str = "events"
    partitions: int = 8
    replication_factor: int = 1
    store: str = "rocksdb://"
    data_dir: Path = Path(".leadpulse/data")
    rules: Path | None = None
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    advertised_url: str | None = None  # how other workers reach this one (default http://web_host:web_port)
    processing_guarantee: str = "at_least_once"
    cooling_interval_s: float = 60.0
    batch_size: int = 1000
    batch_within_s: float = 0.05
    session_timeout_s: float = 10.0
    log_level: str = "info"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        parsers: dict[str, Callable[[str, str], Any]] = {
            "partitions": _positive_int,
            "replication_factor": _positive_int,
            "web_port": _port,
            "batch_size": _positive_int,
            "data_dir": lambda _name, raw: Path(raw),
            "rules": _existing_file,
            "store": _choice(STORES),
            "processing_guarantee": _choice(GUARANTEES),
            "cooling_interval_s": _seconds,
            "batch_within_s": _seconds,
            "session_timeout_s": _seconds,
            "log_level": _choice(("debug", "info", "warning", "error")),
            "broker": _broker,
            "app_id": _kafka_name,
            "input_topic": _kafka_name,
            "topic_prefix": _kafka_name,
        }
        for setting in fields(cls):
            name = env_name(setting.name)
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            parse = parsers.get(setting.name, _text)
            values[setting.name] = parse(name, raw.strip())
        unknown = sorted(k for k in env if k.startswith(PREFIX) and k not in {env_name(f.name) for f in fields(cls)})
        if unknown:
            raise SettingsError(
                f"{unknown[0]}: unknown setting (known: {', '.join(env_name(f.name) for f in fields(cls))})"
            )
        if values.get("processing_guarantee") == "exactly_once":
            raise SettingsError(
                f"{env_name('processing_guarantee')}=exactly_once: not supported yet; at_least_once with "
                "event-id de-duplication and deterministic output ids gives effectively-once results"
            )
        return cls(**values)

    @property
    def web_url(self) -> str:
        return self.advertised_url or f"http://{self.web_host}:{self.web_port}"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def as_env(self) -> dict[str, str]:
        """The settings as environment variables, to start a worker process with them."""
        env = {}
        for setting in fields(self):
            value = getattr(self, setting.name)
            if value is not None:
                env[env_name(setting.name)] = str(value)
        return env


def env_name(field_name: str) -> str:
    return PREFIX + field_name.removesuffix("_s").upper()


def _text(_name: str, raw: str) -> str:
    return raw


def _kafka_name(name: str, raw: str) -> str:
    """Topic and group names: Kafka accepts only these characters, and says so late."""
    if not _KAFKA_NAME.match(raw):
        raise SettingsError(f"{name}={raw!r}: only ASCII letters, digits, '.', '_' and '-' are allowed")
    return raw


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a whole number") from None
    if value < 1:
        raise SettingsError(f"{name}={raw!r}: must be at least 1")
    return value


def _port(name: str, raw: str) -> int:
    value = _positive_int(name, raw)
    if value > 65535:
        raise SettingsError(f"{name}={raw!r}: not a TCP port")
    return value


def _seconds(name: str, raw: str) -> float:
    """Plain seconds ('0.05') or a duration ('10s', '1m'); 0 turns a timer off."""
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        return parse_duration_ms(raw) / 1000
    except ValueError as error:
        raise SettingsError(f"{name}={raw!r}: {error}") from None


def _existing_file(name: str, raw: str) -> Path:
    path = Path(raw)
    if not path.is_file():
        raise SettingsError(f"{name}={raw!r}: no such rules file")
    return path


def _broker(name: str, raw: str) -> str:
    urls = [url.strip() if "://" in url else f"kafka://{url.strip()}" for url in raw.split(";")]
    for url in urls:
        if not url.startswith("kafka://") or ":" not in url.removeprefix("kafka://"):
            raise SettingsError(f"{name}={raw!r}: expected host:port or kafka://host:port (';' between brokers)")
    return ";".join(urls)


def _choice(options: tuple[str, ...]) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        if raw not in options:
            raise SettingsError(f"{name}={raw!r}: one of {', '.join(options)}")
        return raw

    return parse
