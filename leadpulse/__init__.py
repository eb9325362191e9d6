"""LeadPulse: real-time, explainable, replayable lead scoring on Kafka.

Sub-packages, by job: `scoring` (the pure core), `schemas` (input and output contracts),
`streams` (the worker's runtime: Faust app, topics, table, transport), `agents` (the Faust
agents that move records between Kafka and the core), `cli` (the `leadpulse` command and
its tools: offline scorer, producer, tail, demo, local processes). `app` is the worker's
module-level Faust app.
"""

__version__ = "0.1.0"
