"""The module-level app for `leadpulse worker` (and `faust -A streams.app`), configured from
LEADPULSE_* variables; the agents in `agents/` attach themselves to it when discovered."""

from __future__ import annotations

from streams.pipeline import create_app
from streams.settings import Settings

pipeline = create_app(Settings.from_env(), autodiscover=("agents",))
app = pipeline.app
