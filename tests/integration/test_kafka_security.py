"""Every client over SASL and TLS, on a second real broker with SCRAM users, TLS listeners
(certificates made by the test) and KRaft's StandardAuthorizer: the worker scores over SASL_SSL
with SCRAM-SHA-512, events go in over SASL_PLAINTEXT with SCRAM-SHA-256, `produce` and `tail`
run over mutual TLS, and bad credentials stop a command at once with one line naming the cause.

Those clients are super users; the user `worker` has no ACL until a test grants it the ones
`leadpulse topics acls` lists (deploy/kafka/acls.sh, as an administrator would): with exactly
those the worker scores like the offline scorer, and with one of them missing it stops at
start-up naming the topic or group and the operation."""

import os
import subprocess
from dataclasses import replace

import orjson
import pytest

from bench.notify import hot_lead_record
from leadpulse.cli.processes import ROOT, LocalBroker, broker_port, free_port, low_free_ports
from leadpulse.notify.failures import failure_from
from leadpulse.notify.service import failures_topic
from leadpulse.scoring.timeutil import now_ms
from tests.integration.harness import (
    latest_by_key,
    produce,
    read_all,
    run_cli,
    scores_reach,
    topic_configs,
    wait_for,
    write_outputs,
)
from tests.integration.oracle import Oracle, traffic_lines
from tests.integration.pki import KEYSTORE_PASSWORD, make_pki
from tests.integration.receiver import GONE, OK, new_secret

SCORER_PASSWORD = "scorer-secret-0123"
WORKER_PASSWORD = "worker-secret-4567"  # the least-privilege user: only the ACLs a test grants
ACLS_SCRIPT = ROOT / "deploy" / "kafka" / "acls.sh"
FAIL_FAST_S = 30  # a refused connection is reported within this; a hang would take minutes


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    """A broker with SASL_PLAINTEXT, SSL (client certificates required) and SASL_SSL
    listeners and the StandardAuthorizer, its PKI, and the password files; stopped by pid at
    the end. Super users: the PLAINTEXT listener (the administrator), `scorer` and the client
    certificate; `worker` gets only what a test grants."""
    folder = tmp_path_factory.mktemp("secure-kafka")
    pki = make_pki(folder / "pki")
    port = broker_port()
    # none of them the broker's port or its controller's (port + 1): both are free until it starts
    sasl, tls, sasl_tls = [free for free in low_free_ports(5) if free not in (port, port + 1)][:3]
    instance = LocalBroker(
        port=port,
        data_dir=folder / "data",
        extra_env={
            "KAFKA_SASL_PORT": str(sasl),
            "KAFKA_SSL_PORT": str(tls),
            "KAFKA_SASL_SSL_PORT": str(sasl_tls),
            "KAFKA_SCRAM_USERS": f"scorer={SCORER_PASSWORD},worker={WORKER_PASSWORD}",
            "KAFKA_AUTHORIZER": "on",
            "KAFKA_SUPER_USERS": "User:ANONYMOUS;User:scorer;User:CN=leadpulse-client",
            "KAFKA_SSL_KEYSTORE": str(pki.server_keystore),
            "KAFKA_SSL_KEYSTORE_PASSWORD": KEYSTORE_PASSWORD,
            "KAFKA_SSL_CA": str(pki.ca),
        },
    )
    password = folder / "scorer.password"
    password.write_text(SCORER_PASSWORD + "\n")
    worker_password = folder / "worker.password"
    worker_password.write_text(WORKER_PASSWORD + "\n")
    try:
        instance.start()
        yield {
            "plaintext": instance.port, "sasl": sasl, "tls": tls, "sasl_tls": sasl_tls, "pki": pki,
            "password": password, "worker_password": worker_password,
        }  # fmt: skip
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


def least_privilege(secure, settings):
    return over(
        settings, secure["sasl"], security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
        sasl_username="worker", sasl_password_file=secure["worker_password"],
    )  # fmt: skip


def grant(secure, settings, without=(), *service):
    """The ACLs `leadpulse topics acls [*service]` lists for the user of `settings` (the
    worker's unless `service` says `--service notify ...`), granted by deploy/kafka/acls.sh over
    the PLAINTEXT listener (a super user), less `without`: (resource name, operation) pairs."""
    listed, _ = run_cli(settings, "topics", "acls", *service)
    assert listed.returncode == 0, listed.stderr.decode()
    lines = []
    for line in listed.stdout.decode().splitlines():
        principal, resource, name, operations = line.split()
        kept = [op for op in operations.split(",") if (name, op) not in without]
        if kept:
            lines.append(f"{principal} {resource} {name} {','.join(kept)}")
    assert lines[0].startswith("User:worker topic ") and len(lines) >= (5 if service else 9)
    acls_sh(secure, "add", lines)


def acls_sh(secure, action, lines):
    done = subprocess.run(
        [str(ACLS_SCRIPT), action],
        input="\n".join(lines).encode(),
        env={**os.environ, "KAFKA_BOOTSTRAP": f"127.0.0.1:{secure['plaintext']}"},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()


def test_worker_scores_with_only_its_least_privilege_acls(secure, make_settings, workers):
    settings = least_privilege(secure, make_settings(partitions=2))
    grant(secure, settings)
    lines = traffic_lines(1_000, 100)
    workers(settings)  # creates its topics itself: the Create ACLs
    assert produce(scram_256(secure, settings), lines) == len(lines)  # a producer's user, not the worker's

    oracle = Oracle(lines)
    scores_reach(mutual_tls(secure, settings), oracle.snapshots, timeout_s=120)
    scores_reach(mutual_tls(secure, settings), oracle.accounts, timeout_s=60, topic="account-scores")


@pytest.mark.parametrize(
    ("create_topics", "without", "expected"),
    [
        (
            True,
            [("{group}", "Read"), ("{group}", "Describe")],
            "may not use consumer group '{group}' (GroupAuthorizationFailedError): grant READ and DESCRIBE on it",
        ),
        (
            True,
            [("{group}", "Read")],
            "may not READ consumer group '{group}' (GroupAuthorizationFailedError): grant READ and DESCRIBE on it",
        ),
        (
            False,  # topics made by an administrator: the DescribeConfigs ACLs of the no-create mode suffice
            [("{group}-contacts-changelog", "Write")],
            "may not WRITE topic {group}-contacts-changelog (TopicAuthorizationFailedError): grant READ, WRITE and "
            "DESCRIBE on it",
        ),
        (
            True,
            [("{prefix}contact-scores", "Write"), ("{prefix}contact-scores", "Describe")],
            "may not DESCRIBE topic {prefix}contact-scores (TopicAuthorizationFailedError): grant WRITE and DESCRIBE "
            "on it",
        ),
    ],
    ids=["no-group-acl", "group-without-read", "changelog-without-write", "no-output-topic-acl"],
)
def test_a_missing_acl_stops_start_up_naming_it(secure, make_settings, create_topics, without, expected):
    settings = least_privilege(secure, make_settings(partitions=2, create_topics=create_topics))
    names = {"group": settings.app_id, "prefix": settings.topic_prefix}
    if not create_topics:
        created, _ = run_cli(scram_256(secure, settings), "topics", "create")
        assert created.returncode == 0, created.stderr.decode()
    grant(secure, settings, without=[(name.format(**names), op) for name, op in without])

    done, took = run_cli(settings, "worker")
    stderr = done.stderr.decode()
    assert done.returncode == 1 and took < FAIL_FAST_S, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert f"leadpulse worker: SASL_PLAINTEXT SCRAM-SHA-512 as worker {expected.format(**names)}" in stderr


def test_notify_runs_on_topics_an_administrator_made_with_only_the_acls_listed_for_it(
    secure, make_settings, receivers, notifiers, tmp_path
):
    """Managed Kafka, as the README's Security section sets it up for `leadpulse notify`:
    LEADPULSE_CREATE_TOPICS=off, an administrator runs `topics create` (which makes the
    delivery-failures topic too) and grants notify's user exactly what `topics acls --service
    notify --config FILE` lists. notify then delivers hot leads to a receiver that takes them
    and writes those a receiver refuses (410) to the failures topic, which `notify redrive`
    reads back as the same user. Before the topics exist it stops in one line naming them; without
    WRITE on the failures topic, in one line naming the ACL."""
    settings = least_privilege(
        secure,
        make_settings(
            partitions=2, create_topics=False, notify_port=free_port(), notify_max_backoff_s=2.0,
            event_retention=2 * 86_400_000,
        ),
    )  # fmt: skip
    admin = scram_256(secure, settings)  # a super user: the administrator, and the worker writing alerts
    failures = failures_topic(settings)
    secret = new_secret()
    (tmp_path / "signing.key").write_text(secret + "\n")
    crm, legacy = receivers.add("crm", secrets=(secret,)), receivers.add("legacy", secrets=(secret,))
    receivers.script("legacy", default=GONE)
    config = tmp_path / "notify.toml"
    config.write_text(
        f"""
max_alert_age = "1h"
cooldown = "off"
[destinations.crm]
kind = "webhook"
url = "{crm.url}"
secret_file = "signing.key"
[destinations.legacy]
kind = "webhook"
url = "{legacy.url}"
secret_file = "signing.key"
[[routes]]
to = ["crm", "legacy"]
"""
    )
    done, took = run_cli(settings, "notify", "run", str(config), timeout_s=FAIL_FAST_S + 30)
    stderr = done.stderr.decode()
    assert done.returncode == 1 and took < FAIL_FAST_S, stderr
    assert stderr.startswith(
        f"leadpulse notify: topics missing: {settings.topic('hot-leads')}, {settings.topic('hot-accounts')}, "
        f"{failures}; LEADPULSE_CREATE_TOPICS=off, so an administrator creates them (leadpulse topics create"
    ), stderr
    assert len(stderr.strip().splitlines()) == 1, stderr

    created, _ = run_cli(admin, "topics", "create")
    assert created.returncode == 0 and failures in created.stderr.decode(), created.stderr.decode()
    (made,) = topic_configs(admin, [failures]).values()
    assert (made["cleanup.policy"], made["retention.ms"]) == ("delete", str(settings.event_retention))
    grant(secure, settings, (), "--service", "notify", "--config", str(config))

    now = now_ms()
    records = [hot_lead_record(f"c{n}@acme.io", 0, now - 5_000 + n) for n in range(4)]
    expected = sorted(record["id"] for record in records)
    write_outputs(admin, "hot-leads", records)
    notify = notifiers(settings, config)
    assert wait_for(lambda: sorted(crm.delivered_ids()) == expected, 30, 0.2), crm.delivered_ids()

    def written() -> list[str]:
        return sorted(failure_from(value).record["id"] for _, value in read_all(admin, failures, idle_s=0.5) if value)

    assert wait_for(lambda: written() == expected, 30, 0.3), written()
    assert all(request.verified for request in crm.requests + legacy.requests)
    notify.kill()

    receivers.script("legacy", default=OK)
    redriven, _ = run_cli(settings, "notify", "redrive", str(config))
    assert redriven.returncode == 0, redriven.stderr.decode()
    assert f"re-drove {len(expected)} alerts: {len(expected)} delivered" in redriven.stderr.decode()
    assert sorted(legacy.delivered_ids()) == expected

    acls_sh(secure, "remove", [f"User:worker topic {failures} Write"])
    done, took = run_cli(settings, "notify", "run", str(config), timeout_s=FAIL_FAST_S + 30)
    stderr = done.stderr.decode()
    assert done.returncode == 1 and took < FAIL_FAST_S, stderr
    assert stderr == (
        f"leadpulse notify: SASL_PLAINTEXT SCRAM-SHA-512 as worker may not WRITE topic {failures} "
        "(TopicAuthorizationFailedError): grant READ, WRITE and DESCRIBE on it (leadpulse topics commands "
        "--service notify)\n"
    )
