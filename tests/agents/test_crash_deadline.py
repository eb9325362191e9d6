"""A crashed worker is gone within a bounded time, however its services behave while stopping."""

import subprocess
import sys

import pytest

from leadpulse.streams.deadline import CRASH_EXIT_CODE
from leadpulse.streams.pipeline import create_app
from tests.agents.conftest import SETTINGS

HUNG_PROCESS = """
import time
from leadpulse.streams.deadline import exit_after
exit_after(0.5, "a test crash")
time.sleep(120)  # blocks the main thread, as a hung stop would
"""


def test_the_exit_deadline_ends_a_process_whose_main_thread_hangs():
    done = subprocess.run([sys.executable, "-c", HUNG_PROCESS], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == CRASH_EXIT_CODE
    assert "after a test crash: exiting now" in done.stderr


@pytest.mark.asyncio
async def test_a_crash_arms_the_exit_deadline_only_where_the_worker_command_set_one():
    app = create_app(SETTINGS).app
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("mode.services.Service.crash", _no_op_crash)
        await app.crash(RuntimeError("no deadline set"))
        assert app._exit_timer is None
        app.exit_deadline_s = 3600.0
        await app.crash(RuntimeError("a failed delivery"))
        timer = app._exit_timer
        assert timer is not None and timer.is_alive()
        timer.cancel()


async def _no_op_crash(self, reason):
    """Stands in for mode's crash, which would stop the test's own services."""
