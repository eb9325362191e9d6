"""Agent tests run Faust's test_context(): no broker; the module-level app is configured
for an in-memory table before it is imported."""

import os
import tempfile

os.environ.update(
    {
        "LEADPULSE_STORE": "memory://",
        "LEADPULSE_COOLING_INTERVAL": "0",
        "LEADPULSE_DATA_DIR": tempfile.mkdtemp(prefix="leadpulse-agent-tests-"),
        "LEADPULSE_BATCH_WITHIN": "0.01",
    }
)
