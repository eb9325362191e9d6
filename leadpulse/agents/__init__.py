"""Faust agents: they move records between Kafka and the scoring core, nothing more."""

from __future__ import annotations

from leadpulse.agents.accounts import AccountsAgent
from leadpulse.agents.compaction import CompactionNudge
from leadpulse.agents.scoring import ScoringAgent
from leadpulse.streams.pipeline import Pipeline


def attach_agents(pipeline: Pipeline) -> ScoringAgent:
    """Register every agent and timer of the worker on `pipeline.app`."""
    scoring = ScoringAgent.attach(pipeline)
    scoring.accounts = AccountsAgent.attach(pipeline, scoring.producer)
    CompactionNudge.attach(pipeline, scoring.producer)
    return scoring
