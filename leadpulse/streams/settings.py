"""Worker settings from `LEADPULSE_*` environment variables, validated at start-up: a bad
value stops the worker with a one-line message that names the variable, rather than a
traceback from Faust or Kafka minutes later."""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from leadpulse.core import CHOICES as CORE_CHOICES
from leadpulse.schemas.limits import DEFAULT_LIMITS, InputLimits
from leadpulse.scoring.timeutil import parse_duration_ms

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Section = TypeVar("Section", bound="DataclassInstance")

PREFIX = "LEADPULSE_"
_KAFKA_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
GUARANTEES = ("at_least_once", "exactly_once")
STORES = ("rocksdb://", "memory://")
FAUST_LOG_LEVELS = {
    "debug": "debug",
    "info": "info",
    "warning": "warn",
    "warn": "warn",
    "error": "error",
    "critical": "crit",
}
"""Our names (Python's, plus 'warn') -> the only ones Faust's `-l` accepts."""
MAX_SECONDS = 86_400.0
FAUST_PREFIXES = ("FAUST_", "F_")
LOG_CONTACTS = ("hidden", "pseudonymised", "plain")
COMPRESSIONS = ("zstd", "lz4", "gzip", "snappy", "producer", "uncompressed")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
SWITCHES = {"on": True, "off": False, "true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
MIN_TOKEN_CHARS = 16


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the environment variable."""


class StartupError(RuntimeError):
    """The cluster is not in a state the worker can run against; the message says why."""


class Secret:
    """A password: shown as *** by repr() and str(), so that printing the settings (an error,
    a debug line, a test failure) never reveals it; `reveal()` is the one way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


ERASURE_REQUESTS = "erasure-requests"  # the erasure topic's name after its input's (Settings.erasure_topic)


@dataclass(frozen=True)
class Settings:
    broker: str = "kafka://127.0.0.1:9092"
    app_id: str = "leadpulse"
    topic_prefix: str = ""
    input_topic: str = "events"
    partitions: int = 8
    replication_factor: int = 1
    min_insync_replicas: int | None = None
    topic_compression: str | None = None
    create_topics: bool = True
    event_retention: int = 7 * 86_400_000  # ms: retention.ms of the event topics (docs/erasure.md)
    compaction_lag: int = 86_400_000  # ms: segment.ms, max.compaction.lag.ms, delete.retention.ms
    store: str = "rocksdb://"
    data_dir: Path = Path(".leadpulse/data")
    rules: Path | None = None
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    advertised_url: str | None = None  # how other workers reach this one (default http://web_host:web_port)
    processing_guarantee: str = "at_least_once"
    cooling_interval_s: float = 60.0
    # A cap that only a backlog reaches (at a steady rate the window cuts batches first): a
    # contact a batch touches is stored and published once per batch, so bigger batches are
    # cheaper per event: 112 -> 75 µs of CPU and 8,874 -> 13,937 events/s against 1,000
    # (bench/README.md, "The batch size"). Bounded by buffer_bytes (streams/chunks.py).
    batch_size: int = 5000
    buffer_bytes: int = 64_000_000
    rocksdb_memory_bytes: int = 256 * 1024 * 1024  # all of the worker's RocksDB databases together
    # From a batch's first event. 10 ms: p50 29 ms, p99 65 ms at 1,000 events/s (50 ms: 87 and
    # 228 ms); the CPU per event of 10-50 ms differed by less than the noise between runs, 5 ms
    # cost 12-36% more at 200 events/s (bench/README.md, the latency section).
    batch_within_s: float = 0.01
    session_timeout_s: float = 10.0
    standby_replicas: int = 1
    log_level: str = "info"
    core: str = "auto"  # read by the `leadpulse` command before anything else (leadpulse/core.py)
    max_record_bytes: int = DEFAULT_LIMITS.max_record_bytes
    max_properties: int = DEFAULT_LIMITS.max_properties
    max_depth: int = DEFAULT_LIMITS.max_depth
    max_string: int = DEFAULT_LIMITS.max_string
    dead_letter_excerpt: int = DEFAULT_LIMITS.dead_letter_excerpt
    max_message_bytes: int = DEFAULT_LIMITS.max_message_bytes
    query_api: bool = True
    api_tokens_file: Path | None = None
    health_metrics: bool = True
    log_contacts: str = "hidden"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    sasl_password_file: Path | None = None
    ssl_ca_file: Path | None = None
    ssl_cert_file: Path | None = None
    ssl_key_file: Path | None = None
    ssl_check_hostname: bool = True
    auth_failure_grace_s: float = 30.0
    collect_host: str = "127.0.0.1"
    collect_port: int = 8088
    write_keys_file: Path | None = None
    collect_max_connections: int = 1_000
    collect_idle_timeout_s: float = 10.0
    collect_body_timeout_s: float = 10.0
    collect_delivery_timeout_s: float = 5.0
    collect_retry_after_s: int = 5
    collect_max_in_flight_bytes: int = 64 * 1024 * 1024
    collect_max_expanded_bytes: int = 4 * 1024 * 1024
    collect_rejected_listed: int = 20
    notify_host: str = "127.0.0.1"
    notify_port: int = 6068
    notify_max_pending: int = 10_000
    notify_max_backoff_s: float = 300.0
    collect_browser_rate: float = 20.0
    collect_browser_burst: int = 200
    collect_browser_clients: int = 100_000
    collect_forwarded_for: bool = False
    collect_headless_bots: bool = True
    collect_do_not_track: bool = False
    collect_keep_ip: bool = False
    board_host: str = "127.0.0.1"
    board_port: int = 6070
    board_database: str | None = None  # unset: DATA_DIR/board.sqlite3; postgresql://... for PostgreSQL
    board_retention_days: int = 90

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in fields(cls):
            name = env_name(setting.name)
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            parse = _PARSERS.get(setting.name, _text)
            values[setting.name] = parse(name, raw.strip())
        _refuse_unknown(env, [env_name(f.name) for f in fields(cls)])
        if values.get("processing_guarantee") == "exactly_once":
            raise SettingsError(
                f"{env_name('processing_guarantee')}=exactly_once: not supported yet; at_least_once with "
                "event-id de-duplication and deterministic output ids gives effectively-once results"
            )
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Rules between settings (each value alone was checked when it was read)."""
        from leadpulse.streams.security import check_security

        check_security(self)
        if self.min_insync_replicas is not None and self.min_insync_replicas > self.replication_factor:
            raise SettingsError(
                f"{env_name('min_insync_replicas')}={self.min_insync_replicas}: more than "
                f"{env_name('replication_factor')}={self.replication_factor}; every write would be refused"
            )
        if self.query_api and self.api_tokens_file is None and not is_loopback(self.web_host):
            raise SettingsError(
                f"{env_name('web_host')}={_shown(self.web_host)}: the query API (/contacts) would serve every "
                f"contact's score without authentication; set {env_name('api_tokens_file')}, or "
                f"{env_name('query_api')}=off, or bind to 127.0.0.1"
            )
        if self.collect_max_expanded_bytes > self.collect_max_in_flight_bytes:
            raise SettingsError(
                f"{env_name('collect_max_expanded_bytes')}={self.collect_max_expanded_bytes}: more than "
                f"{env_name('collect_max_in_flight_bytes')}={self.collect_max_in_flight_bytes}; such a request "
                "could never be taken in"
            )

    @property
    def bootstrap_servers(self) -> str:
        """host:port[,host:port] for Kafka clients: the broker setting without its kafka:// scheme."""
        return ",".join(url.removeprefix("kafka://") for url in self.broker.split(";"))

    @property
    def web_url(self) -> str:
        return self.advertised_url or f"http://{self.web_host}:{self.web_port}"

    @property
    def faust_log_level(self) -> str:
        """What to pass to Faust's `-l`: it refuses 'warning' and 'critical'."""
        return FAUST_LOG_LEVELS.get(self.log_level, self.log_level)

    @property
    def input_limits(self) -> InputLimits:
        return self.section(InputLimits)

    def section(self, of: type[Section], prefix: str = "") -> Section:
        """The settings one part of the program reads, as its own dataclass `of`: each field
        is the setting named `prefix` + the field's name (validated here, once, at start)."""
        return of(**{field.name: getattr(self, prefix + field.name) for field in fields(of)})

    def topic(self, name: str) -> str:
        """An output topic's name (contact-scores, hot-leads...): the prefix names the outputs,
        the product's contract that consumers subscribe to."""
        return f"{self.topic_prefix}{name}"

    def internal_topic(self, name: str) -> str:
        """A topic only this app reads (re-keyed input, account members, cooling ticks): named
        by the app id, as Faust names the tables' changelogs, so that two apps on one cluster (a
        replay under new rules beside the live app) never read each other's records, whatever
        their prefixes."""
        return f"{self.app_id}-{name}"

    @property
    def erasure_topic(self) -> str:
        """Where erasure requests for this input come from (`leadpulse erase`, a CRM or admin
        tool): named after the input topic, so that every app reading the input, a replay
        under new rules with its own app id and prefix too, honours the same erasures."""
        return f"{self.input_topic}.{ERASURE_REQUESTS}"

    def as_env(self) -> dict[str, str]:
        """The settings as environment variables, to start a worker process with them."""
        env = {}
        for setting in fields(self):
            value = getattr(self, setting.name)
            if isinstance(value, Secret):
                env[env_name(setting.name)] = value.reveal()
            elif value is not None:
                env[env_name(setting.name)] = str(value)
        return env


HELP: dict[str, str] = {
    "broker": "Kafka bootstrap servers: host:port or kafka://host:port, ';' between several.",
    "app_id": "Faust application id: names the consumer group, the tables and the internal topics (APP_ID-...).",
    "topic_prefix": "Put before the output topics' names (contact-scores...); LEADPULSE_INPUT_TOPIC is named in full.",
    "input_topic": "Topic the events are read from, named in full: LEADPULSE_TOPIC_PREFIX is not added.",
    "partitions": "Partitions of the topics LeadPulse creates, 1..10000; fixed once they exist.",
    "replication_factor": "Replicas of each topic LeadPulse creates, 1..32 (at most the number of brokers).",
    "min_insync_replicas": "min.insync.replicas of the topics LeadPulse creates, 1..REPLICATION_FACTOR.",
    "topic_compression": "compression.type of the topics LeadPulse creates: zstd, lz4, gzip, snappy, producer...",
    "create_topics": "on/off: off, the worker only checks that an administrator created its topics.",
    "event_retention": "Retention of event topics ('7d' or ms): bounds an erasure (docs/erasure.md).",
    "compaction_lag": "Segment roll, compaction lag, tombstone retention ('1d' or ms): docs/erasure.md.",
    "store": "Table store: rocksdb:// (on disk, quick restarts) or memory:// (rebuilt from the changelog).",
    "data_dir": "Directory of the worker's local state.",
    "rules": "Scoring rules file (TOML); unset uses leadpulse/scoring/default_rules.toml.",
    "web_host": "Address the HTTP server (/metrics, GET /contacts/{id}, /accounts/{id}) listens on.",
    "web_port": "Port of that HTTP server, 1..65535.",
    "advertised_url": "URL other workers use to reach this one; unset means http://WEB_HOST:WEB_PORT.",
    "processing_guarantee": "at_least_once (exactly_once is not supported yet).",
    "cooling_interval_s": "Re-evaluate cooling scores this often: seconds or a duration ('1m'), 0..86400; 0 is off.",
    "batch_size": "Most events scored in one batch, 1..100000.",
    "buffer_bytes": "Bytes of fetched records waiting for an agent, about, 1000000..4000000000.",
    "rocksdb_memory_bytes": "RocksDB cache and write buffers of all table partitions, 33554432..1099511627776.",
    "batch_within_s": "Longest wait to fill a batch, from its first record: seconds or a duration, 0..86400.",
    "session_timeout_s": "Kafka consumer session and rebalance timeout: seconds or a duration, 6..1800.",
    "standby_replicas": "Other workers keeping a warm copy of each table partition, 0..10 (a quicker takeover).",
    "log_level": "debug, info, warning (or warn), error or critical.",
    "core": "Scoring core: auto (compiled where built for these sources, else pure), compiled (or stop), pure.",
    "max_record_bytes": "Largest input record scored, in bytes, 1000..900000; larger ones are dead-lettered.",
    "max_properties": "Most keys in an event's properties object, 1..10000.",
    "max_depth": "Deepest nesting of a value inside properties, 1..100.",
    "max_string": "Longest string (key or value) in an input record, in bytes as stored (JSON), 256..900000.",
    "dead_letter_excerpt": "Bytes of the raw value (and key) kept in a dead letter, 0..50000, besides size and hash.",
    "max_message_bytes": "Largest record written to a topic, 4096..1000000 (or its max.message.bytes if lower).",
    "query_api": "on/off: serve GET /contacts/{id}, /accounts/{id}; off a loopback WEB_HOST it needs API_TOKENS_FILE.",
    "api_tokens_file": "Bearer tokens for /contacts, /accounts, one a line (16+ characters); unset: no authentication.",
    "health_metrics": "on/off: serve GET /health and GET /metrics (no contact data, no token).",
    "log_contacts": "Contact ids and e-mails in logs: hidden, pseudonymised (a stable hash) or plain.",
    "security_protocol": "Kafka connection: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (every client).",
    "sasl_mechanism": "SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN (PLAIN only over SASL_SSL in production).",
    "sasl_username": "SASL user name.",
    "sasl_password": "SASL password (never printed); prefer SASL_PASSWORD_FILE.",
    "sasl_password_file": "File holding the SASL password (first line), e.g. a mounted secret.",
    "ssl_ca_file": "CA certificate(s), PEM, to verify the brokers; unset: the system's CAs.",
    "ssl_cert_file": "Client certificate, PEM, for mutual TLS (with SSL_KEY_FILE).",
    "ssl_key_file": "Private key of the client certificate, PEM, unencrypted (keep the file private).",
    "ssl_check_hostname": "on/off: check that a broker's certificate names the host connected to.",
    "auth_failure_grace_s": "Worker exits (77) once the broker refused its credentials this long: seconds, 0..3600.",
    "collect_host": "Address `leadpulse collect` (the Segment-compatible collector) listens on.",
    "collect_port": "Port of the collector, 1..65535.",
    "write_keys_file": "Write keys `leadpulse collect` accepts (required there): a file, one key per line.",
    "collect_max_connections": "Most connections the collector holds open, 1..100000; past it: 503 and close.",
    "collect_idle_timeout_s": "Collector: close a connection with no complete request head for this long, 0.1..3600 s.",
    "collect_body_timeout_s": "Collector: most time to receive a request body, 0.1..3600 s; past it: 408.",
    "collect_delivery_timeout_s": "Collector: most wait for Kafka's acknowledgement, 0.1..300 s; past it: 503.",
    "collect_retry_after_s": "Collector: seconds its 503 answers ask senders to wait (Retry-After), 1..3600.",
    "collect_max_in_flight_bytes": "Collector: bytes held by requests at once (bodies, records); past it: 503.",
    "collect_max_expanded_bytes": "Collector: most bytes of a request's messages with its batch context copied in.",
    "collect_rejected_listed": "Collector: invalid messages listed in an answer (the rest are counted), 0..1000.",
    "notify_host": "Address `leadpulse notify run` serves /health and /metrics on.",
    "notify_port": "Port of that server, 1..65535.",
    "notify_max_pending": "Notify: alerts read, not yet delivered or dead-lettered, 1..1000000; fetching pauses at it.",
    "notify_max_backoff_s": "Notify: longest wait between two attempts to a destination, 0.1..3600 s or '5m'.",
    "collect_browser_rate": "Collector: messages per second one client address may send with browser keys; past: 429.",
    "collect_browser_burst": "Collector: messages one client address may send at once with browser keys, 1..100000.",
    "collect_browser_clients": "Collector: client addresses whose rate is kept; the longest quiet is forgotten first.",
    "collect_forwarded_for": "on/off: the client address is the last X-Forwarded-For entry (behind your TLS proxy).",
    "collect_headless_bots": "on/off: headless browsers (HeadlessChrome...) count as bots: their calls are dropped.",
    "collect_do_not_track": "on/off: browser calls sent with DNT: 1 or Sec-GPC: 1 are only counted, not kept.",
    "collect_keep_ip": "on/off: browser calls keep the client address in context.ip (off: no address is stored).",
    "board_host": "Address `leadpulse board` (the lead board's pages) listens on.",
    "board_port": "Port of the lead board, 1..65535.",
    "board_database": "The board's read model: a SQLite file, or a postgresql:// URL; unset: DATA_DIR/board.sqlite3.",
    "board_retention_days": "Days of score history, alerts and stage changes the board keeps per contact, 1..3650.",
}


def drop_faust_variables(environ: MutableMapping[str, str]) -> list[str]:
    """Remove FAUST_*/F_* variables before Faust is imported: its command line reads them at
    import time (F_WEB_PORT; F_WORKDIR changes directory; F_DEBUG opens a console port).
    The unprefixed ones (WEB_BIND, BROKER...) are ignored by `create_app` and stay, for
    other programs of the same environment."""
    dropped = sorted(key for key in environ if key.startswith(FAUST_PREFIXES))
    for key in dropped:
        del environ[key]
    return dropped


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_tokens(path: Path) -> tuple[str, ...]:
    """Bearer tokens for the query API."""
    return read_secrets(path, "api_tokens_file", "token")


def read_secrets(path: Path, setting: str, what: str, forbidden: str = "") -> tuple[str, ...]:
    """Secrets, one a line, `#` starting a comment on a line of its own or after the secret
    (`<key>  # web site`): the one format of the tokens and the write-keys files. A short
    secret is refused as guessable, and so are spaces and the `forbidden` characters (':'
    in a write key, the basic-auth separator)."""
    secrets = []
    for number, line in secret_lines(path, setting, what):
        check_secret(line, f"{file_shown(path, setting)}: line {number}", what, forbidden)
        secrets.append(line)
    return tuple(secrets)


def secret_lines(path: Path, setting: str, what: str) -> list[tuple[int, str]]:
    """The numbered lines of a secrets file, comments and blanks left out; refused when
    unreadable or without any line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(f"{file_shown(path, setting)}: cannot read it ({error.__class__.__name__})") from None
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if content:
            lines.append((number, content))
    if not lines:
        raise SettingsError(f"{file_shown(path, setting)}: no {what} in the file")
    return lines


def check_secret(secret: str, where: str, what: str, forbidden: str = "") -> None:
    """A secret is long enough not to be guessed, without spaces or `forbidden` characters;
    `where` (file and line) starts the error."""
    if len(secret) < MIN_TOKEN_CHARS or any(c.isspace() or c in forbidden for c in secret):
        refused = " or ".join(["spaces", *(repr(c) for c in forbidden)])
        raise SettingsError(f"{where}: a {what} is {MIN_TOKEN_CHARS}+ characters without {refused}")


def file_shown(path: Path, setting: str) -> str:
    return f"{env_name(setting)}={str(path)!r}"  # in full: the file to go and fix


def env_name(field_name: str) -> str:
    return PREFIX + field_name.removesuffix("_s").upper()


def _refuse_unknown(env: Mapping[str, str], known: list[str]) -> None:
    """A misspelled variable would otherwise be ignored and its default used silently."""
    unknown = sorted(k for k in env if k.startswith(PREFIX) and k not in known)
    if unknown:
        suffixes = [name.removeprefix(PREFIX) for name in known]  # the shared prefix would make all alike
        close = difflib.get_close_matches(unknown[0].removeprefix(PREFIX), suffixes, n=1)
        hint = f"did you mean {PREFIX}{close[0]}?" if close else f"known: {', '.join(known)}"
        name = unknown[0] if len(unknown[0]) <= 80 else f"{unknown[0][:80]}..."
        raise SettingsError(f"{name}: unknown setting ({hint})")


def _text(_name: str, raw: str) -> str:
    return raw


def _kafka_name(name: str, raw: str) -> str:
    """Topic and group names: Kafka accepts only these characters, and says so late."""
    if not _KAFKA_NAME.match(raw):
        raise SettingsError(f"{name}={_shown(raw)}: only ASCII letters, digits, '.', '_' and '-' are allowed")
    return raw


def _whole(lo: int, hi: int, why: str = "") -> Callable[[str, str], int]:
    """A whole number within bounds: past them Kafka, Faust or the producer fails later with
    a traceback (2**31 partitions, a record larger than a request)."""

    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name}={_shown(raw)}: expected a whole number from {lo} to {hi}") from None
        if not lo <= value <= hi:
            raise SettingsError(f"{name}={_shown(raw)}: must be from {lo} to {hi}{why}")
        return value

    return parse


def _seconds(name: str, raw: str) -> float:
    """Plain seconds ('0.05') or a duration ('10s', '1m'); 0 turns a timer off."""
    try:
        value = float(raw)
    except ValueError:
        try:
            value = parse_duration_ms(raw) / 1000
        except ValueError as error:
            raise SettingsError(f"{name}={_shown(raw)}: {error}") from None
    if not math.isfinite(value):
        raise SettingsError(f"{name}={_shown(raw)}: not a finite number of seconds")
    if not 0 <= value <= MAX_SECONDS:
        raise SettingsError(f"{name}={_shown(raw)}: must be from 0 to {MAX_SECONDS:.0f} seconds (24h)")
    return value


def _positive_seconds(lo: float, hi: float, why: str = "") -> Callable[[str, str], float]:
    """A duration that cannot be off: 0 would drop every connection or request at once."""

    def parse(name: str, raw: str) -> float:
        value = _seconds(name, raw)
        if not lo <= value <= hi:
            raise SettingsError(f"{name}={_shown(raw)}: must be from {lo:g} to {hi:g} seconds{why}")
        return value

    return parse


def _milliseconds(lo: int, hi: int) -> Callable[[str, str], int]:
    """Whole milliseconds ('3600000') or a duration ('1h', '7d'), from lo to hi."""

    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw) if raw.isdigit() else parse_duration_ms(raw)
        except ValueError as error:
            raise SettingsError(f"{name}={_shown(raw)}: {error}") from None
        if not lo <= value <= hi:
            raise SettingsError(f"{name}={_shown(raw)}: must be from {lo} to {hi} ms")
        return value

    return parse


def _session_timeout(name: str, raw: str) -> float:
    """Brokers accept 6 s to 30 min by default (group.min/max.session.timeout.ms); outside
    that the worker would only fail later, when it joins its group."""
    value = _seconds(name, raw)
    if not 6 <= value <= 1_800:
        raise SettingsError(f"{name}={_shown(raw)}: must be from 6 to 1800 seconds (the broker's default limits)")
    return value


def _auth_failure_grace(name: str, raw: str) -> float:
    """An hour at most: the credentials are read at start, so a refusal outlasting a broker's
    credential propagation only ends with a restart."""
    value = _seconds(name, raw)
    if value > 3_600:
        raise SettingsError(f"{name}={_shown(raw)}: must be from 0 to 3600 seconds")
    return value


def _log_level(name: str, raw: str) -> str:
    level = raw.lower()
    if level not in FAUST_LOG_LEVELS:
        raise SettingsError(f"{name}={_shown(raw)}: one of {', '.join(FAUST_LOG_LEVELS)}")
    return level


def _existing_file(what: str) -> Callable[[str, str], Path]:
    def parse(name: str, raw: str) -> Path:
        path = Path(raw)
        if not path.is_file():
            raise SettingsError(f"{name}={_shown(raw)}: no such {what}")
        return path

    return parse


def _broker(name: str, raw: str) -> str:
    urls = [url.strip() if "://" in url else f"kafka://{url.strip()}" for url in raw.split(";")]
    for url in urls:
        if not url.startswith("kafka://") or ":" not in url.removeprefix("kafka://"):
            raise SettingsError(f"{name}={_shown(raw)}: expected host:port or kafka://host:port (';' between brokers)")
    return ";".join(urls)


def _switch(name: str, raw: str) -> bool:
    value = raw.lower()
    if value not in SWITCHES:
        raise SettingsError(f"{name}={_shown(raw)}: on or off")
    return SWITCHES[value]


def _rate(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={_shown(raw)}: a number of messages per second") from None
    if not 0.01 <= value <= 1_000_000:
        raise SettingsError(f"{name}={_shown(raw)}: between 0.01 and 1000000 messages per second")
    return value


def _readable_file(name: str, raw: str) -> Path:
    path = Path(raw)
    if not path.is_file():
        raise SettingsError(f"{name}={_shown(raw)}: no such file")
    try:
        with path.open("rb"):
            pass
    except OSError as error:
        raise SettingsError(f"{name}={_shown(raw)}: cannot read it ({error.strerror})") from None
    return path


def _tokens_file(name: str, raw: str) -> Path:
    path = Path(raw)
    read_tokens(path)
    return path


def _board_database(name: str, raw: str) -> str:
    """A SQLite file path or a PostgreSQL URL: any other scheme would be taken for a file name."""
    if "://" in raw and not raw.startswith(("postgresql://", "postgres://")):
        scheme = raw.split("://", 1)[0]
        raise SettingsError(f"{name}: scheme {_shown(scheme)}: a SQLite file path or a postgresql:// URL")
    return raw


def _choice(options: tuple[str, ...]) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        if raw not in options:
            raise SettingsError(f"{name}={_shown(raw)}: one of {', '.join(options)}")
        return raw

    return parse


def _shown(raw: str, limit: int = 60) -> str:
    """A value as quoted in an error: cut, so that the message stays one readable line."""
    return repr(raw) if len(raw) <= limit else f"{raw[:limit]!r}... ({len(raw)} characters)"


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "partitions": _whole(1, 10_000),
    "replication_factor": _whole(1, 32),
    "min_insync_replicas": _whole(1, 32),
    "topic_compression": _choice(COMPRESSIONS),
    "create_topics": _switch,
    "event_retention": _milliseconds(1_000, 100 * 365 * 86_400_000),
    "compaction_lag": _milliseconds(100, 365 * 86_400_000),
    "web_port": _whole(1, 65_535),
    "batch_size": _whole(1, 100_000),
    "buffer_bytes": _whole(1_000_000, 4_000_000_000),
    "rocksdb_memory_bytes": _whole(32 * 1024**2, 1024**4),
    "data_dir": lambda _name, raw: Path(raw),
    "rules": _existing_file("rules file"),
    "write_keys_file": _existing_file("write keys file"),
    "collect_port": _whole(1, 65_535),
    "collect_max_connections": _whole(1, 100_000),
    "collect_idle_timeout_s": _positive_seconds(0.1, 3_600),
    "collect_body_timeout_s": _positive_seconds(0.1, 3_600),
    "collect_delivery_timeout_s": _positive_seconds(0.1, 300, " (SDKs give up after 10-15 s: keep it shorter)"),
    "collect_retry_after_s": _whole(1, 3_600),
    "collect_max_in_flight_bytes": _whole(1024 * 1024, 16 * 1024**3),
    "collect_max_expanded_bytes": _whole(512_000, 1024**3, " (at least the 500 KB a request may hold)"),
    "collect_rejected_listed": _whole(0, 1_000),
    "notify_port": _whole(1, 65_535),
    "notify_max_pending": _whole(1, 1_000_000),
    "notify_max_backoff_s": _positive_seconds(0.1, 3_600),
    "collect_browser_rate": _rate,
    "collect_browser_burst": _whole(1, 100_000),
    "collect_browser_clients": _whole(1, 10_000_000),
    "collect_forwarded_for": _switch,
    "collect_headless_bots": _switch,
    "collect_do_not_track": _switch,
    "collect_keep_ip": _switch,
    "board_port": _whole(1, 65_535),
    "board_retention_days": _whole(1, 3_650),
    "board_database": _board_database,
    "store": _choice(STORES),
    "processing_guarantee": _choice(GUARANTEES),
    "cooling_interval_s": _seconds,
    "batch_within_s": _seconds,
    "session_timeout_s": _session_timeout,
    "standby_replicas": _whole(0, 10),
    "log_level": _log_level,
    "broker": _broker,
    "app_id": _kafka_name,
    "input_topic": _kafka_name,
    "topic_prefix": _kafka_name,
    "max_record_bytes": _whole(1_000, 900_000, " (a re-keyed record must fit in the producer's 1000000-byte request)"),
    "max_properties": _whole(1, 10_000),
    "max_depth": _whole(1, 100),
    "max_string": _whole(256, 900_000, " (identifiers alone may be 256 characters)"),
    "dead_letter_excerpt": _whole(0, 50_000, " (a dead letter must fit in one producer request)"),
    "max_message_bytes": _whole(4_096, 1_000_000, " (the producer's largest request)"),
    "query_api": _switch,
    "api_tokens_file": _tokens_file,
    "health_metrics": _switch,
    "log_contacts": _choice(LOG_CONTACTS),
    "core": _choice(CORE_CHOICES),
    "security_protocol": _choice(SECURITY_PROTOCOLS),
    "sasl_mechanism": _choice(SASL_MECHANISMS),
    "sasl_password": lambda _name, raw: Secret(raw),
    "sasl_password_file": _readable_file,
    "ssl_ca_file": _readable_file,
    "ssl_cert_file": _readable_file,
    "ssl_key_file": _readable_file,
    "ssl_check_hostname": _switch,
    "auth_failure_grace_s": _auth_failure_grace,
}
