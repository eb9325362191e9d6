"""The determinism oracle: what the offline scorer (`leadpulse score`) computes for the same
events, in the shapes the stream writes them. The fault tests (tests/integration) and the
soak run (bench/soak.py) compare the stream's outputs with it."""

from __future__ import annotations

from typing import Any

from leadpulse.cli.offline import score_lines
from leadpulse.schemas.outputs import account_record, nurture_record, output_record, snapshot_record
from leadpulse.scoring.engine import HotLead, StageChange
from leadpulse.scoring.identity import winner
from leadpulse.scoring.rules import Rules, load_rules


class Oracle:
    def __init__(self, lines: list[bytes], rules: Rules | None = None, aged_at: int | None = None) -> None:
        """`aged_at`: the time anonymous contacts are expired at (scoring.expiry), the worker's
        clock when it is compared; default the latest event time, as `leadpulse score`."""
        rules = rules or load_rules()
        run = score_lines(lines, rules)
        run.age(aged_at)
        self.snapshots = {view.contact_id: snapshot_record(view) for view in run.snapshots(None)}
        self.accounts = {view.account_id: account_record(view) for view in run.accounts(None)}
        self.stage_change_ids = {o.id for o in run.outputs if isinstance(o, StageChange)}
        self.hot_lead_ids = {o.id for o in run.outputs if isinstance(o, HotLead)}
        self.hot_leads = {o.id: output_record(o) for o in run.outputs if isinstance(o, HotLead)}
        self.bad_lines = run.bad
        self.run = run
        # anonymous id -> the contact it is merged into (not in `snapshots`: a tombstone in the stream)
        self.merged_into = {key: into for key, state in run.contacts.items() if (into := winner(state)) is not None}

    def nurture(self, at_ms: int) -> dict[str, dict[str, Any]]:
        """The records `leadpulse score --nurture --at` prints for `at_ms`, by id."""
        return {record.id: nurture_record(record) for record in self.run.nurtures(at_ms)}
