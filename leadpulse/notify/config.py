"""The notifier's configuration: destinations (where alerts go, and the secrets to sign or
reach them) and routes (which alerts go where), from a TOML file checked like a rules file.

Marketing ops edits this file, so every mistake is one line naming the file and the key path
(`destinations.crm.secret_env: environment variable CRM_SECRET is not set`) and unknown keys
are refused: a typo must not silently send nothing, or send everything. Secrets never sit in
the file (it gets committed, pasted and mailed): signing keys and Slack webhook URLs come from
files or environment variables, read here once at start-up. This module and reading those
files are the only I/O of the notifier's pure side; docs/notify-config.md is the reference.
"""

from __future__ import annotations

import base64
import binascii
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import orjson

from leadpulse.notify.alerts import DEFAULT_TOPICS, SCHEMAS, TOPICS, field_of
from leadpulse.scoring.rules import FUNNEL_STAGES, MAX_LIST, SIDE_STAGES, _Table, parse_toml, read_text_file
from leadpulse.scoring.timeutil import parse_duration_ms
from leadpulse.streams.settings import PREFIX as SETTINGS_PREFIX

REFERENCE = "docs/notify-config.md"
WHAT = "notify config file"
KINDS = ("webhook", "slack")
MAX_DESTINATIONS = 50
MAX_ROUTES = 200
MAX_WHERE = 20  # fields one route tests
MAX_URL = 2000
MAX_TEMPLATE = 500  # a link template: with an id, a Slack link stays within a field's limit
MAX_NAME = 64
NAME_CHARACTERS = frozenset(string.ascii_letters + string.digits + "_.-")  # names label metrics
# Standard Webhooks: a signing secret is `whsec_` + base64 of 24 to 64 random bytes; two are
# active while a receiver moves from the old to the new one (each signs; either verifies).
SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64
MAX_SECRETS = 2
SECRET_HELP = (
    "generate one with: python -c 'import base64,os; print(\"whsec_\" + base64.b64encode(os.urandom(32)).decode())'"
)
# Slack's incoming-webhook URLs are bearer secrets: whoever has one posts to the channel.
SLACK_WEBHOOK_HOSTS = frozenset({"hooks.slack.com", "hooks.slack-gov.com"})
MAX_TIMEOUT_MS = 300_000
MAX_RATE_PER_S = 1000.0
SLACK_RATE_PER_S = 1.0  # Slack posts about one message a second per channel (short bursts allowed)
OFF = "off"
# The placeholders a link template may use, by the key that holds it.
LINK_FIELDS: Mapping[str, str] = {"link": "contact_id", "account_link": "account_id"}
_DESTINATION_KEYS = (
    *("kind", "url", "url_env", "url_file", "secret_env", "secret_file", "secret", "secrets"),
    *("link", "account_link", "rate_per_s", "timeout", "retry_window", "cooldown"),
)
_ROUTE_KEYS = ("name", "to", "topics", "models", "segments", "stages", "accounts", "min_score", "where")
# A route's criteria on record fields (the field depends on the topic: alerts.field_of).
CRITERIA = ("models", "segments", "stages", "accounts", "min_score")
Scalar = str | int | float | bool


class NotifyConfigError(ValueError):
    """A notify config that cannot be used; str() is one line naming the file, key and problem."""


class _NotifyTable(_Table):
    """The rules file's table reader (key paths in errors, unknown keys refused), with this
    file's error class and reference."""

    error = NotifyConfigError
    reference = REFERENCE


@dataclass(frozen=True)
class Destination:
    """One place alerts go. `secrets` sign webhooks, newest first; `url` may itself be a
    secret (Slack's), so nothing here is ever printed whole."""

    name: str
    kind: Literal["webhook", "slack"]
    url: str = field(repr=False)
    secrets: tuple[bytes, ...] = field(repr=False)
    link_template: str | None  # a contact's page: "https://crm.example/contacts/{contact_id}"
    rate_per_s: float | None  # token-bucket rate (throttle.RateLimit); None: unlimited
    timeout_s: float  # one attempt's bound
    retry_window_ms: int  # how long a failing alert is retried before it is dead-lettered
    cooldown_ms: int = 0  # per (destination, key) quiet time after an alert; 0: off
    account_link_template: str | None = None  # an account's page: "https://crm.example/companies/{account_id}"

    def contact_link(self, contact_id: str) -> str | None:
        return _link(self.link_template, "contact_id", contact_id)

    def account_link(self, account_id: str) -> str | None:
        return _link(self.account_link_template, "account_id", account_id)


def _link(template: str | None, name: str, value: str) -> str | None:
    """The template with its one placeholder filled in, percent-encoded (an id may hold '/',
    '?', '#' or '|', which would change the URL or break a Slack link)."""
    return None if template is None else template.replace("{" + name + "}", quote(value, safe=""))


@dataclass(frozen=True)
class Route:
    """Alerts that pass every criterion given go to `destinations`. An empty criterion
    accepts everything; a criterion on a field an alert's record lacks (a model on a hot
    account) rejects it. `where` holds equality / one-of tests on record fields, as paths
    (`("committee", "covered")`) with the accepted values; a list field passes when one of
    its items (or, for objects, their `name`) is accepted."""

    name: str
    destinations: tuple[str, ...]
    topics: frozenset[str]  # resolved: the config's topics when the route names none
    models: frozenset[str] = frozenset()
    segments: frozenset[str] = frozenset()
    stages: frozenset[str] = frozenset()
    accounts: frozenset[str] = frozenset()
    min_score: float | None = None
    where: tuple[tuple[tuple[str, ...], tuple[Scalar, ...]], ...] = ()


@dataclass(frozen=True)
class NotifyConfig:
    destinations: Mapping[str, Destination]  # in file order
    routes: tuple[Route, ...]
    topics: tuple[str, ...]  # the output topics read, by role (alerts.TOPICS)
    max_alert_age_ms: int  # older alerts are not sent as news (a replay of history stays quiet)
    cooldown_ms: int  # the default of each destination's cooldown_ms; 0: off


def load_notify_config(path: Path, environ: Mapping[str, str]) -> NotifyConfig:
    """Read and check the file, and the secrets it points to (relative paths from the file's
    folder, variables from `environ`). NotifyConfigError names the first mistake."""
    return parse_notify_config(read_text_file(path, WHAT, NotifyConfigError), str(path), path.parent, environ)


def load_notify_topics(path: Path) -> tuple[str, ...]:
    """The output topics a file reads (its `topics`), by role, without reading its secrets:
    what an administrator grants notify's user (`leadpulse topics acls --service notify
    --config FILE`), on a machine that has none of them."""
    source = str(path)
    return _topics(_top(read_text_file(path, WHAT, NotifyConfigError), source))


def _top(text: str, source: str) -> _NotifyTable:
    return _NotifyTable(
        parse_toml(text, source, WHAT, NotifyConfigError),
        "",
        source,
        ("topics", "max_alert_age", "cooldown", "destinations", "routes"),
    )


def _topics(top: _NotifyTable) -> tuple[str, ...]:
    return tuple(_names_of(top, "topics", TOPICS, "topic", default=DEFAULT_TOPICS))


def parse_notify_config(text: str, source: str, folder: Path, environ: Mapping[str, str]) -> NotifyConfig:
    top = _top(text, source)
    topics = _topics(top)
    max_alert_age_ms = top.duration("max_alert_age", "1h")
    cooldown_ms = _duration_or_off(top, "cooldown", "10m")
    table = top.sub("destinations", required=True)
    if not table.data:
        table.fail("", "no destination: add a [destinations.NAME] table")
    table.check_count("", table.data, MAX_DESTINATIONS, "destinations")
    destinations = {
        name: _destination(table.sub(_name(table, name), keys=_DESTINATION_KEYS), name, folder, environ, cooldown_ms)
        for name in list(table.data)
    }
    table.done()
    entries = top.items("routes", MAX_ROUTES, _ROUTE_KEYS)
    if not entries:
        top.fail("routes", "no route: add a [[routes]] table with `to = [...]`, or nothing is sent")
    routes = tuple(_route(entry, index, destinations, topics) for index, entry in enumerate(entries))
    top.done()
    used = {name for route in routes for name in route.destinations}
    for name in destinations:
        if name not in used:
            table.fail(name, "no route sends to it (add it to a route's `to`, or remove it)")
    return NotifyConfig(destinations, routes, topics, max_alert_age_ms, cooldown_ms)


def _name(table: _NotifyTable, name: str) -> str:
    if len(name) > MAX_NAME or not set(name) <= NAME_CHARACTERS:
        table.fail(name, f"a destination name is 1 to {MAX_NAME} letters, digits, '_', '.' or '-'")
    return name


def _destination(
    entry: _NotifyTable, name: str, folder: Path, environ: Mapping[str, str], cooldown_ms: int
) -> Destination:
    kind = entry.text("kind")
    if kind not in KINDS:
        entry.fail("kind", f"unknown kind {kind[:60]!r}; one of {', '.join(KINDS)}")
    for key in ("secret", "secrets"):
        if key in entry.data:
            entry.fail(
                key,
                "secrets are never written in this file: put the whsec_ secret in a file "
                '(secret_file = "/run/secrets/NAME") or an environment variable (secret_env = "NAME")',
            )
    url = _url(entry, folder, environ)
    if kind == "webhook":
        secrets = _secrets(entry, folder, environ)
        if not secrets:
            entry.fail("secret_env", "a webhook is signed: give secret_env or secret_file (a whsec_ secret)")
    else:
        for key in ("secret_env", "secret_file"):
            if key in entry.data:
                entry.fail(key, "a Slack webhook is not signed (its URL is the secret: url_env or url_file)")
        secrets = ()
    rate = entry.get("rate_per_s")
    if rate is not None:
        rate = entry.check_number("rate_per_s", rate, lo=0.001, hi=MAX_RATE_PER_S)
    elif kind == "slack":
        rate = SLACK_RATE_PER_S
    timeout_ms = entry.duration("timeout", "10s")
    if timeout_ms > MAX_TIMEOUT_MS:
        entry.fail("timeout", f"longer than the limit of {MAX_TIMEOUT_MS // 1000} s for one attempt")
    destination = Destination(
        name=name,
        kind="webhook" if kind == "webhook" else "slack",
        url=url,
        secrets=secrets,
        link_template=_template(entry, "link"),
        rate_per_s=rate,
        timeout_s=timeout_ms / 1000,
        retry_window_ms=entry.duration("retry_window", "6h"),
        cooldown_ms=_duration_or_off(entry, "cooldown", OFF) if "cooldown" in entry.data else cooldown_ms,
        account_link_template=_template(entry, "account_link"),
    )
    entry.done()
    return destination


def _url(entry: _NotifyTable, folder: Path, environ: Mapping[str, str]) -> str:
    """Exactly one of `url` (in the file), `url_env`, `url_file`. A URL from a variable or a
    file is not quoted in errors: it may be a secret."""
    given = [key for key in ("url", "url_env", "url_file") if key in entry.data]
    if len(given) != 1:
        entry.fail("url", f"give exactly one of url, url_env, url_file (got {', '.join(given) or 'none'})")
    key = given[0]
    if key == "url":
        url = entry.text("url", limit=MAX_URL)
        host = urlsplit(url).hostname if url.isascii() else None
        if host in SLACK_WEBHOOK_HOSTS:
            entry.fail(
                "url",
                "a Slack webhook URL is a secret: put it in a file (url_file = ...) "
                "or an environment variable (url_env = ...), not in this file",
            )
        problem = _url_problem(url)
        if problem:
            entry.fail("url", f"{problem}, got {url[:60]!r}")
        return url
    url = _secret_text(entry, key, entry.text(key, limit=MAX_URL), index=0, folder=folder, environ=environ)
    problem = _url_problem(url)
    if problem:
        entry.fail(key, f"{_where_secret(entry, key)}: {problem}")
    return url


def _url_problem(url: str) -> str | None:
    if len(url) > MAX_URL:
        return f"longer than {MAX_URL} characters"
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        return "expected an http(s) URL (ASCII, no spaces)"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "expected an http(s) URL with a host"
    return None


def _secrets(entry: _NotifyTable, folder: Path, environ: Mapping[str, str]) -> tuple[bytes, ...]:
    """The signing keys, `secret_env` ones first then `secret_file` ones, each in list order
    (put the newest first: receivers accept any one that verifies)."""
    keys: list[bytes] = []
    for key in ("secret_env", "secret_file"):
        value = entry.get(key)
        if value is None:
            continue
        names = value if isinstance(value, list) else [value]
        for index, name in enumerate(names):
            where = f"{key}[{index}]" if isinstance(value, list) else key
            text = _secret_text(entry, key, entry.check_text(where, name), index=index, folder=folder, environ=environ)
            keys.append(_signing_key(entry, where, _where_secret(entry, key, index), text))
    if len(keys) > MAX_SECRETS:
        entry.fail("secret_env", f"{len(keys)} secrets, over the limit of {MAX_SECRETS} (the new one and the old one)")
    return tuple(keys)


def _secret_text(
    entry: _NotifyTable, key: str, name: str, *, index: int, folder: Path, environ: Mapping[str, str]
) -> str:
    """The value of the variable (`*_env`) or the content of the file (`*_file`) `name`,
    stripped of surrounding white space (editors add a final newline)."""
    where = f"{key}[{index}]" if isinstance(entry.data.get(key), list) else key
    if key.endswith("_env"):
        if name.startswith(SETTINGS_PREFIX):
            entry.fail(where, f"{name}: {SETTINGS_PREFIX}* variables are settings, and an unknown one stops the worker")
        value = environ.get(name)
        if value is None:
            entry.fail(where, f"environment variable {name} is not set")
        if not value.strip():
            entry.fail(where, f"environment variable {name} is empty")
        return value.strip()
    path = folder / name
    try:
        text = read_text_file(path, "secret file", NotifyConfigError)
    except NotifyConfigError as error:
        entry.fail(where, str(error))
    if not text.strip():
        entry.fail(where, f"{path}: the file is empty")
    return text.strip()


def _where_secret(entry: _NotifyTable, key: str, index: int = 0) -> str:
    """Where a secret came from, in words, for an error that must not show it."""
    value = entry.data[key]
    name = value[index] if isinstance(value, list) else value
    return f"environment variable {name}" if key.endswith("_env") else f"file {name}"


def _signing_key(entry: _NotifyTable, where: str, origin: str, text: str) -> bytes:
    expected = f"expected {SECRET_PREFIX} followed by the base64 of {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes"
    if not text.startswith(SECRET_PREFIX):
        entry.fail(where, f"{origin}: {expected} ({SECRET_HELP})")
    try:
        key = base64.b64decode(text[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        entry.fail(where, f"{origin}: not base64 after {SECRET_PREFIX}; {expected}")
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        entry.fail(where, f"{origin}: {len(key)} bytes; {expected} ({SECRET_HELP})")
    return key


def _template(entry: _NotifyTable, key: str) -> str | None:
    """A link template: an http(s) URL whose only placeholder is LINK_FIELDS[key]."""
    template = entry.get(key)
    if template is None:
        return None
    template = entry.check_text(key, template, limit=MAX_TEMPLATE)
    allowed = LINK_FIELDS[key]
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        entry.fail(key, f"not a link template ({error}); write {{{allowed}}} where the id goes")
    for _, name, spec, conversion in parsed:
        if name is not None and name != allowed:
            entry.fail(key, f"unknown placeholder {{{name[:60]}}}: the only one is {{{allowed}}}")
        if spec or conversion:
            entry.fail(key, f"a placeholder takes no conversion nor format: write {{{allowed}}}")
    if "{" + allowed + "}" not in template:
        entry.fail(key, f"no {{{allowed}}} in the template: every alert would link to the same page")
    problem = _url_problem(template)
    if problem or any(c in template for c in "<>|"):
        entry.fail(key, f"{problem or 'expected a URL without <, > or |'}, got {template[:60]!r}")
    return template


def _duration_or_off(table: _NotifyTable, key: str, default: str) -> int:
    """A duration, or "off" (0): a cool-down can be switched off, unlike the other durations."""
    value = table.text(key, default)
    if value == OFF:
        return 0
    try:
        millis = parse_duration_ms(value)
    except ValueError as error:
        table.fail(key, f"{error}, or {OFF!r}")
    if millis <= 0:
        table.fail(key, f"must be longer than zero (or {OFF!r})")
    return millis


def _route(entry: _NotifyTable, index: int, destinations: Mapping[str, Destination], topics: tuple[str, ...]) -> Route:
    name = entry.text("name", f"routes[{index}]")
    to = entry.require("to")
    targets = entry.names("to", [to] if isinstance(to, str) else to, list(destinations), "destination")
    if not targets:
        entry.fail("to", "no destination: name at least one of " + ", ".join(destinations))
    route_topics = frozenset(_names_of(entry, "topics", TOPICS, "topic", default=topics))
    for topic in route_topics - set(topics):
        entry.fail("topics", f"{topic!r} is not read: add it to the top-level topics (now {', '.join(topics)})")
    stages = _names_of(entry, "stages", FUNNEL_STAGES + SIDE_STAGES, "stage", default=())
    min_score = entry.get("min_score")
    route = Route(
        name=name,
        destinations=tuple(dict.fromkeys(targets)),
        topics=route_topics,
        models=frozenset(_texts(entry, "models")),
        segments=frozenset(_texts(entry, "segments")),
        stages=frozenset(stages),
        accounts=frozenset(_texts(entry, "accounts")),
        min_score=None if min_score is None else entry.check_number("min_score", min_score, lo=0, hi=100),
        where=_where(entry.sub("where"), route_topics),
    )
    for criterion in CRITERIA:
        if criterion in entry.data:
            _check_field(entry, criterion, route_topics, {topic: field_of(criterion, topic) for topic in route_topics})
    entry.done()
    return route


def _names_of(
    table: _NotifyTable, key: str, known: tuple[str, ...], what: str, default: tuple[str, ...]
) -> tuple[str, ...]:
    """A list of names from `known` (a single name is a list of one), without repeats."""
    value = table.get(key)
    if value is None:
        return default
    names = table.names(key, [value] if isinstance(value, str) else value, known, what)
    if not names:
        table.fail(key, f"empty: name at least one {what}, or leave the key out")
    return tuple(dict.fromkeys(names))


def _texts(table: _NotifyTable, key: str) -> list[str]:
    value = table.get(key, [])
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list):
        table.fail(key, "expected a string or a list of strings")
    table.check_count(key, values, MAX_LIST, "values")
    return [table.check_text(f"{key}[{i}]", item) for i, item in enumerate(values)]


def _where(table: _NotifyTable, topics: frozenset[str]) -> tuple[tuple[tuple[str, ...], tuple[Scalar, ...]], ...]:
    """`where = { country = "fr", committee.covered = ["cto", "cfo"] }`: TOML's dotted keys
    make nested tables, which are paths into the record."""
    tests: list[tuple[tuple[str, ...], tuple[Scalar, ...]]] = []

    def walk(data: Mapping[str, Any], path: tuple[str, ...]) -> None:
        for key, value in data.items():
            here = (*path, table.check_name(key))
            if isinstance(value, dict):
                walk(value, here)
                continue
            label = ".".join(here)
            values = value if isinstance(value, list) else [value]
            if not values or not all(isinstance(item, Scalar) for item in values):
                table.fail(label, "expected a value (string, number, true/false) or a list of them")
            table.check_count(label, values, MAX_LIST, "values")
            tests.append((here, tuple(values)))

    walk(table.data, ())
    table.check_count("", tests, MAX_WHERE, "fields")
    for path, _ in tests:
        table.get(path[0])
        _check_field(table, ".".join(path), topics, dict.fromkeys(topics, path[0]))
    table.done()
    return tuple(tests)


def _check_field(table: _NotifyTable, key: str, topics: frozenset[str], fields: Mapping[str, str]) -> None:
    """A criterion on a field that no record of the route's topics has would never match:
    said now rather than found out when sales hears nothing."""
    if any(fields[topic] in record_fields(topic) for topic in topics):
        return
    name = next(iter(fields.values()))
    having = [topic for topic in TOPICS if name in record_fields(topic)]
    hint = f" ({', '.join(having)} records have it)" if having else ""
    read = " or ".join(topic for topic in TOPICS if topic in topics)
    table.fail(key, f"no {read} record has a field {name!r}{hint}")


@cache
def record_fields(topic: str) -> frozenset[str]:
    """The top-level fields of a topic's records, from its published JSON Schema."""
    schema = resources.files("leadpulse.schemas").joinpath("json", f"{SCHEMAS[topic]}.schema.json")
    return frozenset(orjson.loads(schema.read_bytes())["properties"])
