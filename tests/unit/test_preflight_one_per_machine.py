"""One worker per web port and per state folder, checked before a worker joins its group."""

import os
import socket

import pytest

from leadpulse.cli.preflight import CommandError, check_web_port, hold_lock, lock_state_folder
from leadpulse.streams.settings import Settings


def test_a_web_port_in_use_is_one_line_naming_the_setting():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError) as raised:
            check_web_port(Settings(web_port=port))
    assert str(raised.value) == (
        f"port 127.0.0.1:{port} is in use, by another worker perhaps: set LEADPULSE_WEB_PORT to a free port "
        "(each worker of a machine needs its own LEADPULSE_WEB_PORT and LEADPULSE_DATA_DIR)"
    )
    check_web_port(Settings(web_port=port))  # free again


def test_a_state_folder_held_by_another_process_is_one_line_naming_its_pid(tmp_path):
    folder = tmp_path / "data"
    lock_state_folder(folder)  # this process holds it now
    assert (folder / "worker.lock").read_text() == f"{os.getpid()}\n"
    with pytest.raises(CommandError) as raised:
        lock_state_folder(folder)  # another open file description: as another process would
    assert str(raised.value) == (
        f"the state folder {folder} is in use by another worker (pid {os.getpid()}): set LEADPULSE_DATA_DIR to a "
        "folder of its own (each worker of a machine needs its own LEADPULSE_WEB_PORT and LEADPULSE_DATA_DIR)"
    )


def test_a_lock_left_by_a_process_that_ended_is_taken_over(tmp_path):
    path = tmp_path / "demo.lock"
    path.write_text("999999\n")  # written by a process that is gone: nobody holds the lock
    assert hold_lock(path) is None
    assert path.read_text() == f"{os.getpid()}\n"
