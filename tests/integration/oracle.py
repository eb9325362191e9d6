"""The determinism oracle: what the offline scorer computes for the same events."""

from __future__ import annotations

import orjson

from leadpulse.cli.offline import score_lines
from leadpulse.cli.traffic import DAY_MS, Traffic
from leadpulse.schemas.outputs import output_record, snapshot_record
from leadpulse.scoring.engine import HotLead, StageChange
from leadpulse.scoring.rules import load_rules
from leadpulse.scoring.timeutil import now_ms


def traffic_lines(count: int, contacts: int, seed: int = 11) -> list[bytes]:
    """Realistic events from the last 60 days (so none is in the future for the worker)."""
    traffic = Traffic(seed=seed, start_ms=now_ms() - 60 * DAY_MS, span_ms=50 * DAY_MS, contacts=contacts)
    return [orjson.dumps(event) for event in traffic.events(count)]


class Oracle:
    def __init__(self, lines: list[bytes]) -> None:
        rules = load_rules()
        run = score_lines(lines, rules)
        self.snapshots = {view.contact_id: snapshot_record(view) for view in run.snapshots(None)}
        self.stage_change_ids = {o.id for o in run.outputs if isinstance(o, StageChange)}
        self.hot_lead_ids = {o.id for o in run.outputs if isinstance(o, HotLead)}
        self.hot_leads = {o.id: output_record(o) for o in run.outputs if isinstance(o, HotLead)}
        self.bad_lines = run.bad
