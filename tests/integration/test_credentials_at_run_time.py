"""A credential that stops working while the worker (or the collector) runs: an administrator
rotates the SCRAM password of its user, and the broker restarts (as in a rolling restart), so
every connection has to authenticate again. The process names the refusal in one ERROR line
(never "unreachable"), the worker's /health turns 503 saying so, and it exits with code 77 once
the refusal has lasted LEADPULSE_AUTH_FAILURE_GRACE, for an orchestrator to restart it with the
new secret. An ACL revoked at run time (StandardAuthorizer) stops the worker at the first denied
operation, in one ERROR line naming it, with the same code."""

import contextlib
import os
import subprocess
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from leadpulse.cli.processes import ROOT, LocalBroker, broker_port, free_port, low_free_ports
from leadpulse.streams.quiet import REFUSED_EXIT_CODE
from tests.integration.harness import produce, wait_for
from tests.integration.test_kafka_security import ACLS_SCRIPT, grant

pytestmark = pytest.mark.integration

PASSWORD = "scorer-secret-0123"
GRACE_S = 10.0  # LEADPULSE_AUTH_FAILURE_GRACE of the worker under test
EXIT_SLACK_S = 15.0  # the exit comes within the grace period plus this, from the first refusal
SCRAM_TOOL = Path(__file__).with_name("ScramPassword.java")
JARS = (  # the broker's jars, where deploy/kafka/broker.sh keeps them
    Path(os.environ.get("LEADPULSE_CACHE", Path.home() / ".cache" / "leadpulse"))
    / f"kafka-{os.environ.get('KAFKA_VERSION', '4.4.0')}"
    / "libs"
)


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory):
    """A broker of this module's own (its tests restart it) with a SASL_PLAINTEXT listener and
    a SCRAM user per test, each with a password file; stopped by pid at the end."""
    folder = tmp_path_factory.mktemp("sasl-kafka")
    (sasl,) = low_free_ports(1)
    users = ("scorer", "collector", "worker")
    instance = LocalBroker(
        port=broker_port(),
        data_dir=folder / "data",
        extra_env={
            "KAFKA_SASL_PORT": str(sasl),
            "KAFKA_SCRAM_USERS": ",".join(f"{u}={PASSWORD}" for u in users),
            "KAFKA_AUTHORIZER": "on",  # `worker` has only the ACLs a test grants; the others are super users
            "KAFKA_SUPER_USERS": "User:ANONYMOUS;User:scorer;User:collector",
        },
    )
    (folder / "password").write_text(PASSWORD + "\n")
    try:
        instance.start()
        yield instance, sasl, folder / "password"
    finally:
        instance.stop()


def over_sasl(settings, sasl_port, user, password_file):
    return replace(
        settings,
        broker=f"kafka://127.0.0.1:{sasl_port}",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=user,
        sasl_password_file=password_file,
    )


def set_password(broker: LocalBroker, user: str, password: str) -> None:
    """What `kafka-configs.sh --alter --add-config 'SCRAM-SHA-512=[password=...]'` does."""
    logging = f"-Dlog4j2.configurationFile={ROOT}/deploy/kafka/log4j2.properties"
    done = subprocess.run(
        ["java", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", logging, "-cp", f"{JARS}/*", str(SCRAM_TOOL),
         f"127.0.0.1:{broker.port}", user, "SCRAM-SHA-512", password],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()


def revoke(broker: LocalBroker, binding: str) -> None:
    """deploy/kafka/acls.sh remove, over the PLAINTEXT listener (a super user)."""
    done = subprocess.run(
        [str(ACLS_SCRIPT), "remove"], input=binding.encode(), capture_output=True, timeout=120, check=False,
        env={**os.environ, "KAFKA_BOOTSTRAP": f"127.0.0.1:{broker.port}"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()


def test_a_password_rotated_at_run_time_is_named_turns_health_503_and_stops_the_worker(
    sasl_broker, make_settings, workers
):
    broker, sasl_port, password_file = sasl_broker
    settings = over_sasl(make_settings(partitions=2, auth_failure_grace_s=GRACE_S), sasl_port, "scorer", password_file)
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


def test_a_password_rotated_at_run_time_stops_the_collector(sasl_broker, make_settings, collectors, tmp_path):
    broker, sasl_port, password_file = sasl_broker
    keys = tmp_path / "write-keys"
    keys.write_text("collector-write-key-1\n")
    settings = make_settings(write_keys_file=keys, collect_port=free_port(), auth_failure_grace_s=GRACE_S)
    collector = collectors(over_sasl(settings, sasl_port, "collector", password_file))
    set_password(broker, "collector", "rotated-secret-8902")
    broker.stop()
    broker.start()

    def track() -> None:  # the producer's next connection: refused; the answer does not matter here
        request = urllib.request.Request(
            f"{collector.base_url}/v1/track",
            data=b'{"userId": "ada@acme.io", "event": "Demo Requested"}',
            headers={"Content-Type": "application/json", "Authorization": "Basic Y29sbGVjdG9yLXdyaXRlLWtleS0xOg=="},
        )
        with contextlib.suppress(OSError):
            urllib.request.urlopen(request, timeout=GRACE_S + EXIT_SLACK_S).read()

    threading.Thread(target=track, daemon=True).start()
    assert collector.process is not None
    code = collector.process.wait(GRACE_S + EXIT_SLACK_S)  # from the first request after the restart
    log = collector.log_path.read_text(errors="replace")
    assert code == REFUSED_EXIT_CODE, log
    named = [line for line in log.splitlines() if f"broker 127.0.0.1:{sasl_port} refused the credentials: " in line]
    assert len(named) == 1 and "SaslAuthenticationFailed" in named[0], log
    assert "unreachable" not in log[log.index(named[0]) :] and "Traceback" not in log
    assert f"exiting with code {REFUSED_EXIT_CODE}: broker 127.0.0.1:{sasl_port} has refused" in log


@pytest.mark.parametrize(
    ("revoked", "expected"),
    [(("topic", "{prefix}contact-scores", "Write"), "TopicAuthorizationFailedError"),
     (("group", "{group}", "Read"), "GroupAuthorizationFailedError")],
    ids=["output-write", "group-read"],
)  # fmt: skip
def test_an_acl_revoked_at_run_time_is_named_in_one_line_and_stops_the_worker(
    sasl_broker, make_settings, workers, revoked, expected
):
    broker, sasl_port, password_file = sasl_broker
    plain = replace(
        make_settings(partitions=2, auth_failure_grace_s=GRACE_S), broker=f"kafka://127.0.0.1:{broker.port}"
    )
    settings = over_sasl(plain, sasl_port, "worker", password_file)
    grant({"plaintext": broker.port}, settings)  # exactly what `leadpulse topics acls` lists
    worker = workers(settings)
    kind, name, operation = revoked
    names = {"prefix": settings.topic_prefix, "group": settings.app_id}
    revoke(broker, f"User:worker {kind} {name.format(**names)} {operation}")
    event = b'{"event_id": "e1", "type": "webinar_attended", "contact_id": "a", "occurred_at": "2026-11-16T11:45:00Z"}'
    produce(plain, [event])  # over the PLAINTEXT listener: a super user
    assert worker.process is not None
    code = worker.process.wait(60)  # the next commit or delivery is denied: seconds

    log = worker.log_path.read_text(errors="replace")
    assert code == REFUSED_EXIT_CODE, log[-3000:]
    named = [line for line in log.splitlines() if "the broker denied an operation" in line]
    assert len(named) == 1 and "[ERROR] exiting with code 77" in named[0] and expected in named[0], log[-3000:]
    assert "leadpulse topics commands" in named[0]
    assert "Traceback" not in log, log[-3000:]
