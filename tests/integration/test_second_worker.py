"""A second `leadpulse worker` on one machine, started with the first one's web port or state
folder, stops before it joins the consumer group, in one line that names the setting to
change; the running worker is not made to rebalance."""

import dataclasses
import time

import pytest

from leadpulse.cli.processes import free_port

pytestmark = pytest.mark.integration

EXIT_WITHIN_S = 30  # the checks are local: no broker round trip, no group join
GROUP_JOINS = "Joined group"  # aiokafka's line for every (re)join of the consumer group


@pytest.mark.parametrize(
    ("shared", "expected"),
    [
        ("web_port", "is in use, by another worker perhaps: set LEADPULSE_WEB_PORT to a free port"),
        ("data_dir", "is in use by another worker (pid {pid}): set LEADPULSE_DATA_DIR to a folder of its own"),
    ],
)
def test_a_second_worker_on_the_first_ones_port_or_folder_stops_in_one_line_before_joining_the_group(
    make_settings, workers, tmp_path, shared, expected
):
    settings = make_settings(partitions=2)
    first = workers(settings)
    joins = first.log_path.read_text().count(GROUP_JOINS)
    assert joins == 1
    assigned = first.get("/health")[1]["assigned_partitions"]

    own = {"web_port": free_port(), "data_dir": tmp_path / "second"}
    own.pop(shared)
    started = time.monotonic()
    second = workers(dataclasses.replace(settings, **own), wait_ready=False)
    assert second.process is not None
    code = second.process.wait(EXIT_WITHIN_S)
    print(f"\nsecond worker (shared {shared}) exited with {code} after {time.monotonic() - started:.1f} s")

    said = second.log_path.read_text()
    assert code == 1, said
    assert said.count("\n") == 1 and "Traceback" not in said, said
    assert expected.format(pid=first.pid) in said, said
    assert "each worker of a machine needs its own LEADPULSE_WEB_PORT and LEADPULSE_DATA_DIR" in said
    status, health = first.get("/health")
    assert status == 200 and health["assigned_partitions"] == assigned
    assert first.log_path.read_text().count(GROUP_JOINS) == joins, "the running worker rebalanced"
