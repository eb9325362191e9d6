"""Every client over SASL and TLS, on a second real broker with SCRAM users and TLS listeners
(certificates made by the test): the worker scores over SASL_SSL with SCRAM-SHA-512, events
go in over SASL_PLAINTEXT with SCRAM-SHA-256, `produce` and `tail` run over mutual TLS, and
bad credentials stop a command at once with one line naming the cause."""

from dataclasses import replace

import orjson
import pytest

from leadpulse.cli.processes import LocalBroker, broker_port, low_free_ports
from tests.integration.harness import latest_by_key, produce, read_all, run_cli, wait_for
from tests.integration.pki import KEYSTORE_PASSWORD, make_pki

SCORER_PASSWORD = "scorer-secret-0123"
FAIL_FAST_S = 30  # a refused connection is reported within this; a hang would take minutes


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    """A broker with SASL_PLAINTEXT, SSL (client certificates required) and SASL_SSL
    listeners, its PKI, and the scorer's password file; stopped by pid at the end."""
    folder = tmp_path_factory.mktemp("secure-kafka")
    pki = make_pki(folder / "pki")
    sasl, tls, sasl_tls = low_free_ports(3)
    instance = LocalBroker(
        port=broker_port(),
        data_dir=folder / "data",
        extra_env={
            "KAFKA_SASL_PORT": str(sasl),
            "KAFKA_SSL_PORT": str(tls),
            "KAFKA_SASL_SSL_PORT": str(sasl_tls),
            "KAFKA_SCRAM_USERS": f"scorer={SCORER_PASSWORD}",
            "KAFKA_SSL_KEYSTORE": str(pki.server_keystore),
            "KAFKA_SSL_KEYSTORE_PASSWORD": KEYSTORE_PASSWORD,
            "KAFKA_SSL_CA": str(pki.ca),
        },
    )
    password = folder / "scorer.password"
    password.write_text(SCORER_PASSWORD + "\n")
    try:
        instance.start()
        yield {"sasl": sasl, "tls": tls, "sasl_tls": sasl_tls, "pki": pki, "password": password}
    finally:
        instance.stop()


def over(settings, port, **security):
    return replace(settings, broker=f"kafka://127.0.0.1:{port}", **security)


def sasl_ssl(secure, settings):
    return over(
        settings, secure["sasl_tls"], security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
        sasl_username="scorer", sasl_password_file=secure["password"], ssl_ca_file=secure["pki"].ca,
    )  # fmt: skip


def scram_256(secure, settings):
    return over(
        settings, secure["sasl"], security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
        sasl_username="scorer", sasl_password_file=secure["password"],
    )  # fmt: skip


def mutual_tls(secure, settings):
    pki = secure["pki"]
    return over(
        settings, secure["tls"], security_protocol="SSL", ssl_ca_file=pki.ca, ssl_cert_file=pki.client_cert,
        ssl_key_file=pki.client_key,
    )  # fmt: skip


def events(count):
    return [
        orjson.dumps({"event_id": f"e{i}", "type": "webinar_attended", "contact_id": f"c{i % 7}@acme.io",
                      "occurred_at": "2026-11-16T11:45:00Z"})
        for i in range(count)
    ]  # fmt: skip


def test_worker_scores_over_sasl_ssl_fed_over_scram_sha_256(secure, make_settings, workers):
    settings = make_settings(partitions=2)
    worker = workers(sasl_ssl(secure, settings))
    assert produce(scram_256(secure, settings), events(50)) == 50
    scores_topic = settings.topic("contact-scores")

    def scored():
        return len(latest_by_key(read_all(mutual_tls(secure, settings), scores_topic, idle_s=1.0))) == 7

    assert wait_for(scored, timeout_s=90)
    assert worker.metric("leadpulse_events_total", 'outcome="scored"') == 50
    log = worker.log_path.read_text()
    assert "over SASL_SSL SCRAM-SHA-512 as scorer" in log and SCORER_PASSWORD not in log


def test_produce_and_tail_over_mutual_tls(secure, make_settings, tmp_path):
    settings = mutual_tls(secure, make_settings(partitions=2))
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"\n".join(events(5)) + b"\n")
    produced, _ = run_cli(settings, "produce", str(source))
    assert produced.returncode == 0, produced.stderr.decode()
    tailed, _ = run_cli(settings, "tail", settings.input_topic, "--from-beginning", "--raw", "--idle-exit", "3")
    assert tailed.returncode == 0, tailed.stderr.decode()
    assert sorted(tailed.stdout.splitlines()) == sorted(events(5))


@pytest.mark.parametrize(
    ("command", "change", "expected"),
    [
        (
            ("worker",),
            {"sasl_password_file": None, "sasl_password": "wrong-password"},
            "authentication failed for user 'scorer' with SCRAM-SHA-512: wrong password or unknown user",
        ),
        (
            ("produce", "examples/journey.jsonl"),
            {"sasl_username": "nobody"},
            "authentication failed for user 'nobody' with SCRAM-SHA-512: wrong password or unknown user",
        ),
        (
            ("tail", "events"),
            {"ssl_ca_file": "other_ca"},
            "the broker's TLS certificate was not accepted (self-signed certificate in certificate chain)",
        ),
    ],
)
def test_bad_credentials_stop_at_once_with_one_line(secure, make_settings, command, change, expected):
    from leadpulse.streams.settings import Secret

    settings = sasl_ssl(secure, make_settings(partitions=2))
    change = {
        name: Secret(value) if name == "sasl_password" else secure["pki"].other_ca if value == "other_ca" else value
        for name, value in change.items()
    }
    done, took = run_cli(replace(settings, **change), *command)
    stderr = done.stderr.decode()
    assert done.returncode == 1 and took < FAIL_FAST_S
    assert expected in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
