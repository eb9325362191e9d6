"""A credential that stops working while the worker runs: an administrator rotates the SCRAM
password of the worker's user, and the broker restarts (as in a rolling restart), so every
connection has to authenticate again. The worker names the refusal in one ERROR line (never
"unreachable"), its /health turns 503 saying so, and it exits with code 77 once the refusal
has lasted LEADPULSE_AUTH_FAILURE_GRACE, for an orchestrator to restart it with the new secret."""

import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from leadpulse.cli.processes import ROOT, LocalBroker, broker_port, low_free_ports
from leadpulse.streams.quiet import REFUSED_EXIT_CODE
from tests.integration.harness import wait_for

pytestmark = pytest.mark.integration

PASSWORD = "scorer-secret-0123"
GRACE_S = 10.0  # LEADPULSE_AUTH_FAILURE_GRACE of the worker under test
EXIT_SLACK_S = 15.0  # the exit comes within the grace period plus this, from the first refusal
SCRAM_TOOL = Path(__file__).with_name("ScramPassword.java")
JARS = Path(os.environ.get("LEADPULSE_CACHE", Path.home() / ".cache" / "leadpulse")) / "kafka-4.4.0" / "libs"


@pytest.fixture
def sasl_broker(tmp_path_factory):
    """A broker of its own (the test restarts it) with a SASL_PLAINTEXT listener and the SCRAM
    user `scorer`; stopped by pid at the end."""
    folder = tmp_path_factory.mktemp("sasl-kafka")
    (sasl,) = low_free_ports(1)
    instance = LocalBroker(
        port=broker_port(),
        data_dir=folder / "data",
        extra_env={"KAFKA_SASL_PORT": str(sasl), "KAFKA_SCRAM_USERS": f"scorer={PASSWORD}"},
    )
    password = folder / "scorer.password"
    password.write_text(PASSWORD + "\n")
    try:
        instance.start()
        yield instance, sasl, password
    finally:
        instance.stop()


def set_password(broker: LocalBroker, user: str, password: str) -> None:
    """What `kafka-configs.sh --alter --add-config 'SCRAM-SHA-512=[password=...]'` does."""
    logging = f"-Dlog4j2.configurationFile={ROOT}/deploy/kafka/log4j2.properties"
    done = subprocess.run(
        ["java", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", logging, "-cp", f"{JARS}/*", str(SCRAM_TOOL),
         f"127.0.0.1:{broker.port}", user, "SCRAM-SHA-512", password],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()


def test_a_password_rotated_at_run_time_is_named_turns_health_503_and_stops_the_worker(
    sasl_broker, make_settings, workers
):
    broker, sasl_port, password_file = sasl_broker
    settings = replace(
        make_settings(partitions=2, auth_failure_grace_s=GRACE_S),
        broker=f"kafka://127.0.0.1:{sasl_port}",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="scorer",
        sasl_password_file=password_file,
    )
    worker = workers(settings)
    set_password(broker, "scorer", "rotated-secret-8901")
    broker.stop()
    broker.start()

    def refused():
        status, health = worker.get("/health") if worker.running() else (None, None)
        return (status, health) if health and "refuses the credentials" in (health["reason"] or "") else None

    status, health = wait_for(refused, timeout_s=120, interval_s=0.1)
    first_refusal = time.monotonic()
    assert status == 503
    assert health["reason"].startswith(f"broker 127.0.0.1:{sasl_port} refuses the credentials (")
    assert "SaslAuthenticationFailed" in health["reason"]
    assert worker.process is not None
    code = worker.process.wait(GRACE_S + EXIT_SLACK_S)
    took = time.monotonic() - first_refusal
    print(f"\n/health: {health['reason']}\nexit code {code} {took:.1f} s after /health first said so")
    assert code == REFUSED_EXIT_CODE

    log = worker.log_path.read_text(errors="replace")
    named = [line for line in log.splitlines() if f"broker 127.0.0.1:{sasl_port} refused the credentials: " in line]
    assert len(named) == 1 and "[ERROR]" in named[0] and "SaslAuthenticationFailed" in named[0], named
    assert f"exiting with code {REFUSED_EXIT_CODE} in {GRACE_S:.0f} s unless it accepts them again" in named[0]
    after = log[log.index(named[0]) :]
    assert "unreachable" not in after, "a refusal was reported as an unreachable broker"
    assert "Traceback" not in after
    assert f"[ERROR] exiting with code {REFUSED_EXIT_CODE}: broker 127.0.0.1:{sasl_port} has refused" in after
