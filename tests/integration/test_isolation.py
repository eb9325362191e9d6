"""Two apps on one cluster: the live app and a replay of the same input under new rules
(README, "Re-scoring history"), running side by side. Each keeps to its own internal topics
(re-keyed input and identity records, account members, cooling ticks, changelogs), so each
ends equal to its own offline oracle: erasures, identity hand-overs and member records of one
never reach the other."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import orjson
import pytest

from leadpulse.cli.processes import WorkerProcess, free_port
from leadpulse.scoring.rules import load_rules
from leadpulse.scoring.timeutil import format_ms, now_ms
from tests.integration.harness import produce, wait_for
from tests.integration.oracle import Oracle, traffic_lines

pytestmark = pytest.mark.integration


def new_rules(folder: Path) -> Path:
    """The shipped rules with another version and weights: what a re-scoring is for."""
    text = resources.files("leadpulse.scoring").joinpath("default_rules.toml").read_text("utf-8")
    changed = text.replace('version = "default-2026.11"', 'version = "rescore-1"')
    changed = changed.replace("fit = 0.4\nengagement = 0.6", "fit = 0.7\nengagement = 0.3")
    assert changed.count("rescore-1") == 1 and "fit = 0.7" in changed
    path = folder / "rescore.toml"
    path.write_text(changed, encoding="utf-8")
    return path


def differences(worker: WorkerProcess, oracle: Oracle, erased: str) -> list[str]:
    """Where the worker's own tables (read through its query API) differ from its oracle."""
    wrong = []
    for contact_id, snapshot in oracle.snapshots.items():
        status, body = worker.get(f"/contacts/{contact_id}?at=last-event")
        if (status, body) != (200, snapshot):
            wrong.append(f"contact {contact_id}: {status} {body if status != 200 else 'differs'}")
    for account_id, view in oracle.accounts.items():
        status, body = worker.get(f"/accounts/{account_id}")
        if (status, body) != (200, view):
            wrong.append(f"account {account_id}: {status} {body if status != 200 else 'differs'}")
    for gone in (erased, *oracle.merged_into):
        status, _ = worker.get(f"/contacts/{gone}?at=last-event")
        if status != 404:
            wrong.append(f"contact {gone}: {status}, erased or merged")
    return wrong


def test_a_replay_under_new_rules_beside_the_live_app_leaves_each_equal_to_its_own_oracle(
    make_settings, workers, tmp_path
):
    lines = traffic_lines(4_500, 450, seed=83, accounts=25, identities=0.5)
    first, later = lines[:3_000], lines[3_000:]
    before = Oracle(first)
    # the erased contact had a cookie handed over and belongs to an account
    victim = next(
        contact
        for contact in sorted(set(before.merged_into.values()))
        if any(contact in {top["contact_id"] for top in view["top_contacts"]} for view in before.accounts.values())
    )
    erasure = orjson.dumps(
        {"event_id": "erase-victim", "type": "contact_erased", "contact_id": victim, "occurred_at": format_ms(now_ms())}
    )
    everything = [*first, erasure, *later]
    rescore_rules = new_rules(tmp_path)
    live_oracle = Oracle([*first, erasure])
    assert live_oracle.merged_into and live_oracle.accounts and victim not in live_oracle.snapshots

    live = make_settings()
    produce(live, [*first, erasure])
    live_worker = workers(live)
    settles(live_worker, live_oracle, victim, "live app")

    # The README's procedure: the same input and prefix, a new app id, the new rules.
    replay = make_settings(
        app_id=f"{live.app_id}-rescore", rules=rescore_rules, data_dir=tmp_path / "replay", web_port=free_port()
    )
    replay_worker = workers(replay)
    produce(live, later)  # the live app goes on meanwhile: more stitching and account moves
    live_oracle, replay_oracle = Oracle(everything), Oracle(everything, load_rules(rescore_rules))
    assert replay_oracle.snapshots != live_oracle.snapshots and replay_oracle.accounts != live_oracle.accounts

    settles(replay_worker, replay_oracle, victim, "replay")
    settles(live_worker, live_oracle, victim, "live app")
    assert live_worker.running() and replay_worker.running()


def settles(worker: WorkerProcess, oracle: Oracle, erased: str, name: str, timeout_s: float = 150) -> None:
    if not wait_for(lambda: not differences(worker, oracle, erased), timeout_s, 2.0):
        wrong = differences(worker, oracle, erased)
        raise AssertionError(f"the {name} differs from its oracle in {len(wrong)} places:\n" + "\n".join(wrong[:10]))
