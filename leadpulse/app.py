"""The worker's module-level Faust app (`leadpulse worker`, or `faust -A leadpulse.app worker`):
the pipeline built from LEADPULSE_* variables with every agent attached. Importing this
module reads the environment; everything else builds its app from explicit settings."""

from __future__ import annotations

from leadpulse.agents import attach_agents
from leadpulse.streams.pipeline import create_app
from leadpulse.streams.privacy import install_log_redaction
from leadpulse.streams.settings import Settings

settings = Settings.from_env()
install_log_redaction(settings.log_contacts)  # before Faust logs anything
pipeline = create_app(settings)
agents = attach_agents(pipeline)
app = pipeline.app
