"""The read model's database: SQLite (stdlib, one file in the data folder) by default,
PostgreSQL (psycopg 3) behind the same SQL. `Store.apply` writes a batch of records' rows and
their partitions' next offsets in one transaction: a crash before the commit leaves neither,
so a restart re-reads exactly what was not applied (ingest.py seeks to `offsets()`).

One writer (the ingest loop) and readers (the pages) use separate connections: SQLite in WAL
mode lets them read while it writes; every call is blocking and runs in a thread (web.py,
ingest.py). One board process writes a database: two would each apply every record."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from leadpulse.board.model import (
    DAY_MS,
    MAX_EVENTS_PER_CONTACT,
    MONDAY_SHIFT_MS,
    WEEK_MS,
    AccountRow,
    BadRecord,
    ContactRow,
    Erase,
    Funnel,
    HotAccountRow,
    HotLeadRow,
    NurtureRow,
    Point,
    StageChangeRow,
    Step,
    change_of,
    erased_digest,
    funnel,
    hidden_by_erasure,
    history_step,
    point_of,
)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS offsets (
        topic TEXT NOT NULL, part INTEGER NOT NULL, next_offset BIGINT NOT NULL, PRIMARY KEY (topic, part))""",
    """CREATE TABLE IF NOT EXISTS contacts (
        contact_id TEXT PRIMARY KEY, score INTEGER NOT NULL, fit DOUBLE PRECISION NOT NULL,
        engagement DOUBLE PRECISION NOT NULL, temperature INTEGER NOT NULL, temperature_label TEXT NOT NULL,
        stage TEXT NOT NULL, account_id TEXT, updated_ms BIGINT NOT NULL, segments TEXT NOT NULL,
        reasons TEXT NOT NULL, interests TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS contacts_hot ON contacts (temperature, score)",
    "CREATE INDEX IF NOT EXISTS contacts_account ON contacts (account_id)",
    """CREATE TABLE IF NOT EXISTS contact_models (
        contact_id TEXT NOT NULL, model TEXT NOT NULL, score INTEGER NOT NULL, temperature INTEGER NOT NULL,
        reasons TEXT NOT NULL, PRIMARY KEY (contact_id, model))""",
    "CREATE INDEX IF NOT EXISTS contact_models_hot ON contact_models (model, temperature, score)",
    """CREATE TABLE IF NOT EXISTS contact_history (
        contact_id TEXT NOT NULL, at_ms BIGINT NOT NULL, score INTEGER NOT NULL, temperature INTEGER NOT NULL,
        stage TEXT NOT NULL, change INTEGER NOT NULL, PRIMARY KEY (contact_id, at_ms))""",
    """CREATE TABLE IF NOT EXISTS accounts (
        account_id TEXT PRIMARY KEY, score INTEGER NOT NULL, temperature INTEGER NOT NULL,
        temperature_label TEXT NOT NULL, contacts INTEGER NOT NULL, engaged_contacts INTEGER NOT NULL,
        coverage DOUBLE PRECISION NOT NULL, covered TEXT NOT NULL, missing TEXT NOT NULL,
        updated_ms BIGINT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS accounts_hot ON accounts (temperature, score)",
    """CREATE TABLE IF NOT EXISTS account_history (
        account_id TEXT NOT NULL, at_ms BIGINT NOT NULL, score INTEGER NOT NULL, temperature INTEGER NOT NULL,
        stage TEXT NOT NULL, change INTEGER NOT NULL, PRIMARY KEY (account_id, at_ms))""",
    """CREATE TABLE IF NOT EXISTS hot_leads (
        id TEXT PRIMARY KEY, contact_id TEXT NOT NULL, model TEXT NOT NULL, occurred_ms BIGINT NOT NULL,
        score INTEGER NOT NULL, stage TEXT NOT NULL, reasons TEXT NOT NULL, record_ms BIGINT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS hot_leads_contact ON hot_leads (contact_id, occurred_ms)",
    """CREATE TABLE IF NOT EXISTS hot_accounts (
        id TEXT PRIMARY KEY, account_id TEXT NOT NULL, occurred_ms BIGINT NOT NULL, score INTEGER NOT NULL,
        coverage DOUBLE PRECISION NOT NULL, record_ms BIGINT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS hot_accounts_account ON hot_accounts (account_id, occurred_ms)",
    """CREATE TABLE IF NOT EXISTS stage_changes (
        id TEXT PRIMARY KEY, contact_id TEXT NOT NULL, from_stage TEXT, to_stage TEXT NOT NULL,
        occurred_ms BIGINT NOT NULL, record_ms BIGINT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS stage_changes_contact ON stage_changes (contact_id, occurred_ms)",
    """CREATE TABLE IF NOT EXISTS nurture (
        id TEXT PRIMARY KEY, contact_id TEXT NOT NULL, track TEXT NOT NULL, title TEXT NOT NULL,
        occurred_ms BIGINT NOT NULL, record_ms BIGINT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS nurture_contact ON nurture (contact_id, occurred_ms)",
    "CREATE TABLE IF NOT EXISTS erased (digest TEXT PRIMARY KEY, erased_ms BIGINT NOT NULL)",
)
TABLES = (
    "offsets",
    "contacts",
    "contact_models",
    "contact_history",
    "accounts",
    "account_history",
    "hot_leads",
    "hot_accounts",
    "stage_changes",
    "nurture",
    "erased",
)
CONTACT_TABLES = ("contacts", "contact_models", "contact_history", "hot_leads", "stage_changes", "nurture")
EVENT_TABLES = ("hot_leads", "stage_changes", "nurture")  # per-contact, capped at MAX_EVENTS_PER_CONTACT
HISTORY_KEYS = {"contact_history": "contact_id", "account_history": "account_id"}
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


@dataclass(frozen=True)
class Incoming:
    """One record as the consumer read it, with the role of its topic."""

    role: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


@dataclass
class Applied:
    """What a batch did: the hot leads it stored for the first time (for the live pages),
    and the records it passed as unreadable (role, topic:partition@offset, why)."""

    hot_leads: list[HotLeadRow]
    bad: list[tuple[str, str, str]]
    records: int = 0


class Connection:
    """A DB-API connection and its dialect: SQL is written with `?` and turned into `%s`
    for PostgreSQL; everything else is the SQL both understand."""

    def __init__(self, url: str) -> None:
        self.postgres = url.startswith(POSTGRES_SCHEMES)
        self.raw: Any
        if self.postgres:
            import psycopg  # the optional dependency, only when configured

            self.raw = psycopg.connect(url, autocommit=True)
        else:
            path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            self.raw.execute("PRAGMA journal_mode=WAL")
            self.raw.execute("PRAGMA synchronous=NORMAL")  # durable at each checkpoint; WAL keeps it consistent
        self.lock = threading.Lock()

    def sql(self, text: str) -> str:
        return text.replace("?", "%s") if self.postgres else text

    def execute(self, text: str, params: Sequence[Any] = ()) -> Any:
        return self.raw.execute(self.sql(text), tuple(params))

    def rows(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.execute(text, params).fetchall())

    def one(self, text: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row = self.execute(text, params).fetchone()
        return None if row is None else tuple(row)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.lock:
            self.execute("BEGIN")
            try:
                yield
            except BaseException:
                self.execute("ROLLBACK")
                raise
            self.execute("COMMIT")

    def close(self) -> None:
        self.raw.close()


def database_url(setting: str | None, data_dir: Path) -> str:
    """LEADPULSE_BOARD_DATABASE, else `board.sqlite3` in the data folder."""
    return setting or str(data_dir / "board.sqlite3")


class Store:
    """The read model: `apply` from the ingest loop, the queries from the pages."""

    def __init__(self, url: str, retention_days: int, hot_temperature: int = 4) -> None:
        """`hot_temperature`: the top band's temperature (the rules' number of bands)."""
        self.url = url
        self.retention_ms = retention_days * DAY_MS
        self.hot = hot_temperature
        self.writer = Connection(url)
        with self.writer.transaction():
            for statement in SCHEMA:
                self.writer.execute(statement)
        self.reader = Connection(url)
        self._offsets = {(t, p): o for t, p, o in self.writer.rows("SELECT topic, part, next_offset FROM offsets")}

    def close(self) -> None:
        self.writer.close()
        self.reader.close()

    # -- writing ----------------------------------------------------------------------------

    def offsets(self) -> dict[tuple[str, int], int]:
        """The next offset to read per (topic, partition), as committed."""
        return dict(self._offsets)

    def apply(self, records: Iterable[Incoming]) -> Applied:
        """Apply records and store their partitions' next offsets in one transaction. A
        record below its partition's stored offset was applied already and is skipped."""
        applied = Applied([], [])
        moved: dict[tuple[str, int], int] = {}
        db = self.writer
        with db.transaction():
            for record in records:
                where = (record.topic, record.partition)
                if record.offset < moved.get(where, self._offsets.get(where, 0)):
                    continue
                moved[where] = record.offset + 1
                applied.records += 1
                try:
                    change = change_of(record.role, record.key, record.value)
                except BadRecord as error:
                    applied.bad.append((record.role, f"{record.topic}:{record.partition}@{record.offset}", str(error)))
                    continue
                if change is not None:
                    self._apply_one(db, change, record.timestamp_ms, applied)
            for (topic, partition), offset in moved.items():
                db.execute(
                    "INSERT INTO offsets (topic, part, next_offset) VALUES (?, ?, ?) "
                    "ON CONFLICT (topic, part) DO UPDATE SET next_offset = excluded.next_offset",
                    (topic, partition, offset),
                )
        self._offsets.update(moved)
        return applied

    def _apply_one(self, db: Connection, change: Any, record_ms: int, applied: Applied) -> None:
        if isinstance(change, Erase):
            if change.contact:
                self._erase_contact(db, change.key, record_ms)
            else:
                db.execute("DELETE FROM accounts WHERE account_id = ?", (change.key,))
                db.execute("DELETE FROM account_history WHERE account_id = ?", (change.key,))
                db.execute("DELETE FROM hot_accounts WHERE account_id = ?", (change.key,))
        elif isinstance(change, ContactRow):
            self._put_contact(db, change)
        elif isinstance(change, AccountRow):
            self._put_account(db, change)
        elif isinstance(change, HotAccountRow):
            db.execute(
                "INSERT INTO hot_accounts (id, account_id, occurred_ms, score, coverage, record_ms) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (change.id, change.account_id, change.occurred_ms, change.score, change.coverage, record_ms),
            )
            self._cap(db, "hot_accounts", "account_id", change.account_id, change.occurred_ms)
        else:
            self._put_event(db, change, record_ms, applied)

    def _put_event(
        self, db: Connection, row: HotLeadRow | StageChangeRow | NurtureRow, record_ms: int, applied: Applied
    ) -> None:
        marker = db.one("SELECT erased_ms FROM erased WHERE digest = ?", (erased_digest(row.contact_id),))
        if hidden_by_erasure(None if marker is None else int(marker[0]), record_ms):
            return
        if isinstance(row, HotLeadRow):
            done = db.execute(
                "INSERT INTO hot_leads (id, contact_id, model, occurred_ms, score, stage, reasons, record_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (row.id, row.contact_id, row.model, row.occurred_ms, row.score, row.stage, row.reasons, record_ms),
            )
            if done.rowcount == 1:
                applied.hot_leads.append(row)
            table, at_ms = "hot_leads", row.occurred_ms
        elif isinstance(row, StageChangeRow):
            db.execute(
                "INSERT INTO stage_changes (id, contact_id, from_stage, to_stage, occurred_ms, record_ms) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (row.id, row.contact_id, row.from_stage, row.to_stage, row.occurred_ms, record_ms),
            )
            table, at_ms = "stage_changes", row.occurred_ms
        else:
            db.execute(
                "INSERT INTO nurture (id, contact_id, track, title, occurred_ms, record_ms) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (row.id, row.contact_id, row.track, row.title, row.period_start_ms, record_ms),
            )
            table, at_ms = "nurture", row.period_start_ms
        self._cap(db, table, "contact_id", row.contact_id, at_ms)

    def _cap(self, db: Connection, table: str, column: str, key: str, at_ms: int) -> None:
        """At most MAX_EVENTS_PER_CONTACT rows per key, none older than the retention."""
        db.execute(
            f"DELETE FROM {table} WHERE {column} = ? AND (occurred_ms < ? OR occurred_ms < "
            f"(SELECT occurred_ms FROM {table} WHERE {column} = ? ORDER BY occurred_ms DESC LIMIT 1 OFFSET ?))",
            (key, at_ms - self.retention_ms, key, MAX_EVENTS_PER_CONTACT - 1),
        )

    def _erase_contact(self, db: Connection, contact_id: str, record_ms: int) -> None:
        for table in CONTACT_TABLES:
            db.execute(f"DELETE FROM {table} WHERE contact_id = ?", (contact_id,))
        db.execute(
            "INSERT INTO erased (digest, erased_ms) VALUES (?, ?) "
            "ON CONFLICT (digest) DO UPDATE SET erased_ms = excluded.erased_ms",
            (erased_digest(contact_id), record_ms),
        )

    def _put_contact(self, db: Connection, row: ContactRow) -> None:
        segments = "".join(f"|{s}" for s in row.segments) + "|"
        db.execute(
            "INSERT INTO contacts (contact_id, score, fit, engagement, temperature, temperature_label, stage, "
            "account_id, updated_ms, segments, reasons, interests) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (contact_id) DO UPDATE SET score = excluded.score, fit = excluded.fit, "
            "engagement = excluded.engagement, temperature = excluded.temperature, "
            "temperature_label = excluded.temperature_label, stage = excluded.stage, "
            "account_id = excluded.account_id, updated_ms = excluded.updated_ms, segments = excluded.segments, "
            "reasons = excluded.reasons, interests = excluded.interests",
            (
                row.contact_id,
                row.score,
                row.fit,
                row.engagement,
                row.temperature,
                row.temperature_label,
                row.stage,
                row.account_id,
                row.updated_ms,
                segments,
                row.reasons,
                row.interests,
            ),
        )
        db.execute("DELETE FROM contact_models WHERE contact_id = ?", (row.contact_id,))
        for model in row.models:
            db.execute(
                "INSERT INTO contact_models (contact_id, model, score, temperature, reasons) VALUES (?, ?, ?, ?, ?)",
                (row.contact_id, model.model, model.score, model.temperature, model.reasons),
            )
        self._add_point(
            db,
            "contact_history",
            row.contact_id,
            at_ms=row.updated_ms,
            score=row.score,
            temperature=row.temperature,
            stage=row.stage,
        )

    def _put_account(self, db: Connection, row: AccountRow) -> None:
        db.execute(
            "INSERT INTO accounts (account_id, score, temperature, temperature_label, contacts, engaged_contacts, "
            "coverage, covered, missing, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (account_id) DO UPDATE SET score = excluded.score, temperature = excluded.temperature, "
            "temperature_label = excluded.temperature_label, contacts = excluded.contacts, "
            "engaged_contacts = excluded.engaged_contacts, coverage = excluded.coverage, "
            "covered = excluded.covered, missing = excluded.missing, updated_ms = excluded.updated_ms",
            (
                row.account_id,
                row.score,
                row.temperature,
                row.temperature_label,
                row.contacts,
                row.engaged_contacts,
                row.coverage,
                row.covered,
                row.missing,
                row.updated_ms,
            ),
        )
        self._add_point(
            db, "account_history", row.account_id, at_ms=row.updated_ms, score=row.score, temperature=row.temperature
        )

    def _add_point(
        self, db: Connection, table: str, key: str, *, at_ms: int, score: int, temperature: int, stage: str = ""
    ) -> None:
        """One snapshot into `table` (contact_history, account_history), downsampled."""
        column = HISTORY_KEYS[table]
        found = db.one(
            f"SELECT at_ms, score, temperature, stage, change FROM {table} WHERE {column} = ? "
            "ORDER BY at_ms DESC LIMIT 1",
            (key,),
        )
        last = None if found is None else Point(int(found[0]), int(found[1]), int(found[2]), found[3], bool(found[4]))
        day_start = at_ms - at_ms % DAY_MS
        that_day = 0
        if last is not None and last.at_ms >= day_start:
            counted = db.one(
                f"SELECT COUNT(*) FROM {table} WHERE {column} = ? AND at_ms >= ?",
                (key, day_start),
            )
            that_day = int(counted[0]) if counted else 0
        step = history_step(last, at_ms, temperature, stage, that_day)
        if step is Step.SKIP:
            return
        point = point_of(last, at_ms, score, temperature, stage)
        if step is Step.REPLACE:
            assert last is not None
            db.execute(f"DELETE FROM {table} WHERE {column} = ? AND at_ms = ?", (key, last.at_ms))
            point = Point(at_ms, score, temperature, stage, point.change or last.change)
        db.execute(
            f"INSERT INTO {table} ({column}, at_ms, score, temperature, stage, change) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (key, point.at_ms, point.score, point.temperature, point.stage, int(point.change)),
        )
        if last is None or last.at_ms < day_start:  # a new day: what fell out of the retention goes
            db.execute(
                f"DELETE FROM {table} WHERE {column} = ? AND at_ms < ?",
                (key, at_ms - self.retention_ms),
            )

    def expire(self, now_ms: int, marker_ttl_ms: int) -> int:
        """Erasure markers older than `marker_ttl_ms` (when no record they hide can still be
        in a topic) go, and so do events of contacts with no snapshot written more than a
        day ago (the worker writes a snapshot in the batch of each of its alerts: such
        rows are left from a person whose tombstone was compacted away before a rebuild)."""
        removed: int = 0
        with self.writer.transaction():
            removed += self.writer.execute("DELETE FROM erased WHERE erased_ms < ?", (now_ms - marker_ttl_ms,)).rowcount
            for table in EVENT_TABLES:
                removed += self.writer.execute(
                    f"DELETE FROM {table} WHERE record_ms < ? AND NOT EXISTS "
                    f"(SELECT 1 FROM contacts c WHERE c.contact_id = {table}.contact_id)",
                    (now_ms - DAY_MS,),
                ).rowcount
        return removed

    # -- reading ----------------------------------------------------------------------------

    def _read(self, text: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.reader.lock:
            cursor = self.reader.execute(text, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def hot_contacts(
        self, *, segment: str | None = None, model: str | None = None, stage: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Hot contacts (the top temperature band), by score, best first; with `model`, by
        that model's temperature and score and with its reasons."""
        where, params = ["1 = 1"], []
        if model:
            source = (
                "contacts c JOIN contact_models m ON m.contact_id = c.contact_id AND m.model = ? AND m.temperature = ?"
            )
            columns = "c.contact_id, m.score, c.stage, c.account_id, c.segments, m.reasons, c.updated_ms, c.temperature"
            params.extend([model, self.hot])
            order = "m.score DESC, c.contact_id"
        else:
            source = "contacts c"
            columns = "c.contact_id, c.score, c.stage, c.account_id, c.segments, c.reasons, c.updated_ms, c.temperature"
            where.append("c.temperature = ?")
            params.append(self.hot)
            order = "c.score DESC, c.contact_id"
        if segment:
            where.append("c.segments LIKE ? ESCAPE '!'")
            params.append("%|" + _like(segment) + "|%")
        if stage:
            where.append("c.stage = ?")
            params.append(stage)
        rows = self._read(
            f"SELECT {columns} FROM {source} WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?",
            [*params, limit],
        )
        return [_decoded(row) for row in rows]

    def hot_accounts(self, limit: int = 50) -> list[dict[str, Any]]:
        return [
            _decoded(row)
            for row in self._read(
                "SELECT account_id, score, temperature_label, contacts, engaged_contacts, coverage, covered, missing, "
                "updated_ms FROM accounts WHERE temperature = ? ORDER BY score DESC, account_id LIMIT ?",
                (self.hot, limit),
            )
        ]

    def facets(self) -> dict[str, list[str]]:
        """The values the Hot now filters offer: models and stages present, segments of the
        contacts at the top band (a bounded sample: the 1,000 best)."""
        models = [r["model"] for r in self._read("SELECT DISTINCT model FROM contact_models ORDER BY model")]
        stages = [r["stage"] for r in self._read("SELECT DISTINCT stage FROM contacts ORDER BY stage")]
        sample = self._read(
            "SELECT segments FROM contacts WHERE temperature >= ? ORDER BY score DESC LIMIT 1000",
            (max(1, self.hot - 1),),
        )
        segments = sorted({s for row in sample for s in row["segments"].strip("|").split("|") if s})
        return {"models": models, "stages": stages, "segments": segments}

    def contact(self, contact_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT * FROM contacts WHERE contact_id = ?", (contact_id,))
        if not rows:
            return None
        contact = _decoded(rows[0])
        contact["models"] = [
            _decoded(r)
            for r in self._read(
                "SELECT model, score, temperature, reasons FROM contact_models WHERE contact_id = ? ORDER BY model",
                (contact_id,),
            )
        ]
        contact["history"] = self._read(
            "SELECT at_ms, score, temperature, stage, change FROM contact_history WHERE contact_id = ? ORDER BY at_ms",
            (contact_id,),
        )
        contact["hot_leads"] = [
            _decoded(r)
            for r in self._read(
                "SELECT id, model, occurred_ms, score, stage, reasons FROM hot_leads WHERE contact_id = ? "
                "ORDER BY occurred_ms DESC",
                (contact_id,),
            )
        ]
        contact["stage_changes"] = self._read(
            "SELECT from_stage, to_stage, occurred_ms FROM stage_changes WHERE contact_id = ? "
            "ORDER BY occurred_ms DESC",
            (contact_id,),
        )
        contact["nurture"] = self._read(
            "SELECT track, title, occurred_ms FROM nurture WHERE contact_id = ? ORDER BY occurred_ms DESC",
            (contact_id,),
        )
        return contact

    def account(self, account_id: str, members: int = 50) -> dict[str, Any] | None:
        rows = self._read("SELECT * FROM accounts WHERE account_id = ?", (account_id,))
        if not rows:
            return None
        account = _decoded(rows[0])
        account["members"] = [
            _decoded(r)
            for r in self._read(
                "SELECT contact_id, score, temperature_label, stage, reasons FROM contacts WHERE account_id = ? "
                "ORDER BY score DESC, contact_id LIMIT ?",
                (account_id, members),
            )
        ]
        account["history"] = self._read(
            "SELECT at_ms, score, temperature, stage, change FROM account_history WHERE account_id = ? ORDER BY at_ms",
            (account_id,),
        )
        account["hot_accounts"] = self._read(
            "SELECT occurred_ms, score, coverage FROM hot_accounts WHERE account_id = ? ORDER BY occurred_ms DESC",
            (account_id,),
        )
        return account

    def funnel(self) -> Funnel:
        now = {r["stage"]: int(r["n"]) for r in self._read("SELECT stage, COUNT(*) AS n FROM contacts GROUP BY stage")}
        reached = {
            r["to_stage"]: int(r["n"])
            for r in self._read("SELECT to_stage, COUNT(DISTINCT contact_id) AS n FROM stage_changes GROUP BY to_stage")
        }
        weekly = [
            (int(r["week"]), r["to_stage"], int(r["n"]))
            for r in self._read(
                f"SELECT (occurred_ms + {MONDAY_SHIFT_MS}) / {WEEK_MS} AS week, to_stage, COUNT(*) AS n "
                "FROM stage_changes GROUP BY 1, 2"
            )
        ]
        return funnel(now, reached, weekly)

    def search(self, query: str, limit: int = 50) -> dict[str, list[dict[str, Any]]]:
        """By id or e-mail (exact, else as a prefix), or a domain (contacts whose e-mail is at
        it, and the account of that id); ids of e-mail shape are stored lower-cased."""
        text = query.strip()
        lowered = text.lower()
        domain = lowered.lstrip("@")
        contacts = self._read(
            "SELECT contact_id, score, temperature_label, stage, account_id FROM contacts "
            "WHERE contact_id = ? OR contact_id = ? OR contact_id LIKE ? ESCAPE '!' OR contact_id LIKE ? ESCAPE '!' "
            "OR account_id = ? ORDER BY score DESC, contact_id LIMIT ?",
            (text, lowered, _like(lowered) + "%", "%@" + _like(domain), domain, limit),
        )
        accounts = self._read(
            "SELECT account_id, score, temperature_label, contacts FROM accounts "
            "WHERE account_id = ? OR account_id LIKE ? ESCAPE '!' ORDER BY score DESC, account_id LIMIT ?",
            (domain, _like(domain) + "%", limit),
        )
        return {"contacts": contacts, "accounts": accounts}

    def counts(self) -> dict[str, int]:
        return {
            table: int(self._read(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"])
            for table in ("contacts", "contact_history", "accounts", "hot_leads", "stage_changes", "nurture")
        }


def _like(text: str) -> str:
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    """JSON columns back to lists; segments back to a list."""
    for name in ("reasons", "interests", "covered", "missing"):
        if isinstance(row.get(name), str):
            row[name] = orjson.loads(row[name])
    if isinstance(row.get("segments"), str):
        row["segments"] = [s for s in row["segments"].strip("|").split("|") if s]
    return row
