import os

import pytest


@pytest.fixture
def clean_env(monkeypatch):
    """No LEADPULSE_* variable of the machine leaks into a test."""
    for name in list(os.environ):
        if name.startswith("LEADPULSE_"):
            monkeypatch.delenv(name)
    return monkeypatch
