"""`leadpulse board` on the real broker, its read model in SQLite: it holds what the offline
scorer computes after a kill -9 in the middle of its reading (resumed from the offsets it
stored, nothing applied twice), an erasure deletes the person from every table, and an empty
database is rebuilt from the topics without bringing the erased person back. One worker and
one board for the module."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from leadpulse.board.model import erased_digest
from leadpulse.cli.processes import BoardProcess, WorkerProcess, free_port
from leadpulse.streams.settings import Settings
from tests.integration.harness import isolated_settings, produce, run_cli, scores_reach, wait_for
from tests.integration.oracle import Oracle, traffic_lines

pytestmark = pytest.mark.integration

TOKEN = "integration-board-token-0123"


@pytest.fixture(scope="module")
def settings(broker, tmp_path_factory) -> Settings:
    folder = tmp_path_factory.mktemp("board")
    tokens = folder / "tokens"
    tokens.write_text(f"{TOKEN}\n")
    return isolated_settings(
        broker.port,
        "board",
        folder,
        partitions=4,
        board_port=free_port(),
        api_tokens_file=tokens,
        session_timeout_s=10.0,
    )


@pytest.fixture(scope="module")
def worker(settings, tmp_path_factory):
    process = WorkerProcess(settings, tmp_path_factory.mktemp("logs") / "worker.log")
    try:
        process.start()
        yield process
    finally:
        process.kill()


@pytest.fixture(scope="module")
def oracle(settings, worker) -> Oracle:
    """3,000 events of 300 contacts through the worker, and what the offline scorer makes of them."""
    lines = traffic_lines(3_000, 300, seed=23, accounts=12)
    produce(settings, lines)
    expected = Oracle(lines)
    scores_reach(settings, expected.snapshots, timeout_s=90, alive=worker.running)
    return expected


class Boards:
    """Boards started by this module's tests, each stopped by its pid."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings, self.logs, self.started = settings, logs, list[BoardProcess]()

    def __call__(self) -> BoardProcess:
        board = BoardProcess(self.settings, self.logs / f"board-{len(self.started)}.log")
        self.started.append(board)
        board.start(timeout_s=60, wait_ready=False)
        return board

    def stop_all(self) -> None:
        for board in self.started:
            board.stop()


@pytest.fixture(scope="module")
def boards(settings, tmp_path_factory):
    started = Boards(settings, tmp_path_factory.mktemp("board-logs"))
    yield started
    for board in started.started:
        board.kill()
        print(f"board {board.pid}: its log ends:\n{board.log_path.read_text(errors='replace')[-3000:]}")


def database(settings: Settings) -> Path:
    return settings.data_dir / "board.sqlite3"


def rows(settings: Settings, query: str) -> list[tuple]:
    """The board's database as it stands (a reader beside the board: SQLite's WAL allows it)."""
    if not database(settings).exists():
        return []
    con = sqlite3.connect(f"file:{database(settings)}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(query).fetchall()
    except sqlite3.OperationalError:  # the board has not created its tables yet
        return []
    finally:
        con.close()


def contacts_of(settings: Settings) -> dict[str, tuple]:
    return {cid: rest for cid, *rest in rows(settings, "SELECT contact_id, score, temperature, stage FROM contacts")}


def expected_contacts(oracle: Oracle) -> dict[str, tuple]:
    return {cid: [s["score"], s["temperature"], s["stage"]] for cid, s in oracle.snapshots.items()}


def all_text(settings: Settings) -> str:
    tables = [name for (name,) in rows(settings, "SELECT name FROM sqlite_master WHERE type = 'table'")]
    return repr([rows(settings, f"SELECT * FROM {table}") for table in tables if table != "offsets"])


def test_after_a_kill_9_the_board_resumes_and_holds_the_offline_scorers_contacts(settings, oracle, boards):
    first = boards()
    applied = wait_for(lambda: (first.health() or {}).get("applied", 0), timeout_s=60, interval_s=0.05)
    assert applied, "the board applied nothing"
    first.kill()  # between two transactions or inside one: either way nothing half-written stays
    stored = sum(offset for (offset,) in rows(settings, "SELECT next_offset FROM offsets"))
    second = boards()
    expected = {cid: list(v) for cid, v in expected_contacts(oracle).items()}
    matched = wait_for(
        lambda: {cid: list(v) for cid, v in contacts_of(settings).items()} == expected, timeout_s=60, interval_s=0.5
    )
    assert matched, f"{len(contacts_of(settings))} contacts in the board, {len(expected)} expected"
    hot_ids = {hid for (hid,) in rows(settings, "SELECT id FROM hot_leads")}
    assert hot_ids == oracle.hot_lead_ids
    assert {sid for (sid,) in rows(settings, "SELECT id FROM stage_changes")} == oracle.stage_change_ids
    health = wait_for(lambda: (h := second.health() or {}).get("lag") == 0 and h, timeout_s=30, interval_s=0.2)
    total = sum(offset for (offset,) in rows(settings, "SELECT next_offset FROM offsets"))
    assert health["applied"] == total - stored, "the second board re-read records the first had stored"


def test_an_erased_contact_leaves_every_table_of_the_board(settings, oracle, boards):
    victim = sorted({lead["contact_id"] for lead in oracle.hot_leads.values()} & oracle.snapshots.keys())[0]
    quoted = repr(victim)  # as the id shows in a row's repr: never a longer id that contains it
    wait_for(lambda: victim in contacts_of(settings), timeout_s=60, interval_s=0.5)
    assert quoted in all_text(settings) and rows(settings, f"SELECT 1 FROM hot_leads WHERE contact_id = {quoted}")
    done, _ = run_cli(settings, "erase", victim)
    assert done.returncode == 0, done.stderr
    assert wait_for(lambda: quoted not in all_text(settings), timeout_s=60, interval_s=0.5), "still in the board"
    assert rows(settings, f"SELECT 1 FROM erased WHERE digest = '{erased_digest(victim)}'")


def test_an_empty_database_is_rebuilt_from_the_topics_without_the_erased(settings, oracle, boards):
    erased = {digest for (digest,) in rows(settings, "SELECT digest FROM erased")}
    assert erased, "runs after the erasure test"
    before = contacts_of(settings)
    hot_before = {hid for (hid,) in rows(settings, "SELECT id FROM hot_leads")}
    boards.stop_all()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database(settings)}{suffix}").unlink(missing_ok=True)
    board = boards()
    assert wait_for(lambda: (board.health() or {}).get("lag") == 0, timeout_s=60, interval_s=0.2)
    assert contacts_of(settings) == before
    assert {hid for (hid,) in rows(settings, "SELECT id FROM hot_leads")} == hot_before
