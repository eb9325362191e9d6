"""Kafka security and topic settings, without a broker: what fits together, what is never
printed, what an administrator is told to run."""

import pytest

from leadpulse.streams.security import client_options, describe, faust_credentials
from leadpulse.streams.settings import Secret, Settings, SettingsError
from leadpulse.streams.startup import acl_bindings, acl_commands, create_commands, notify_topic_specs, topic_specs


def test_the_password_never_shows_in_the_settings_or_errors():
    settings = Settings.from_env(
        {
            "LEADPULSE_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "LEADPULSE_SASL_USERNAME": "scorer",
            "LEADPULSE_SASL_PASSWORD": "hunter2-secret",
        }
    )
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)
    assert settings.sasl_password == Secret("hunter2-secret")
    assert settings.as_env()["LEADPULSE_SASL_PASSWORD"] == "hunter2-secret"  # for a worker process it starts
    assert Settings.from_env(settings.as_env()) == settings
    assert client_options(settings)["sasl_plain_password"] == "hunter2-secret"
    assert "hunter2" not in describe(settings)


def test_the_password_file_is_read_first_line(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("from-a-file\nignored\n")
    settings = Settings.from_env(
        {
            "LEADPULSE_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "LEADPULSE_SASL_MECHANISM": "SCRAM-SHA-256",
            "LEADPULSE_SASL_USERNAME": "scorer",
            "LEADPULSE_SASL_PASSWORD_FILE": str(secret),
        }
    )
    options = client_options(settings)
    assert (options["sasl_mechanism"], options["sasl_plain_password"]) == ("SCRAM-SHA-256", "from-a-file")
    credentials = faust_credentials(settings)
    assert (credentials.protocol.value, credentials.mechanism.value) == ("SASL_PLAINTEXT", "SCRAM-SHA-256")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"LEADPULSE_SECURITY_PROTOCOL": "SASL_SSL"},
            "LEADPULSE_SECURITY_PROTOCOL=SASL_SSL needs LEADPULSE_SASL_USERNAME",
        ),
        ({"LEADPULSE_SECURITY_PROTOCOL": "SASL_SSL", "LEADPULSE_SASL_USERNAME": "u"}, "needs one of"),
        ({"LEADPULSE_SASL_USERNAME": "u"}, "LEADPULSE_SASL_USERNAME is set but LEADPULSE_SECURITY_PROTOCOL=PLAINTEXT"),
        ({"LEADPULSE_SECURITY_PROTOCOL": "TLS"}, "LEADPULSE_SECURITY_PROTOCOL='TLS': one of PLAINTEXT, SSL"),
        ({"LEADPULSE_SASL_MECHANISM": "GSSAPI"}, "one of SCRAM-SHA-512, SCRAM-SHA-256, PLAIN"),
        ({"LEADPULSE_SSL_CA_FILE": "/nope"}, "LEADPULSE_SSL_CA_FILE='/nope': no such file"),
        ({"LEADPULSE_MIN_INSYNC_REPLICAS": "2"}, "more than LEADPULSE_REPLICATION_FACTOR=1"),
        ({"LEADPULSE_TOPIC_COMPRESSION": "brotli"}, "one of zstd"),
    ],
)
def test_security_and_topic_settings_that_do_not_fit_are_one_line(env, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(env)


def test_tls_files_that_are_not_pem_name_the_setting(tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    env = {"LEADPULSE_SECURITY_PROTOCOL": "SSL", "LEADPULSE_SSL_CA_FILE": str(junk)}
    with pytest.raises(SettingsError, match=r"^LEADPULSE_SSL_CA_FILE=.*not a PEM CA certificate"):
        Settings.from_env(env)
    env = {"LEADPULSE_SECURITY_PROTOCOL": "SSL", "LEADPULSE_SSL_CERT_FILE": str(junk)}
    with pytest.raises(SettingsError, match="LEADPULSE_SSL_CERT_FILE and LEADPULSE_SSL_KEY_FILE go together"):
        Settings.from_env(env)


def test_plaintext_gives_no_credentials():
    assert faust_credentials(Settings()) is None
    assert client_options(Settings()) == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}


def test_topics_carry_the_configured_replication_and_config():
    settings = Settings(topic_prefix="lp.", min_insync_replicas=2, replication_factor=3, topic_compression="zstd")
    specs = {spec.name: spec for spec in topic_specs(settings)}
    assert specs["lp.contact-scores"].config == {
        "min.insync.replicas": "2",
        "compression.type": "zstd",
        "cleanup.policy": "compact",
        "segment.ms": "86400000",
        "min.compaction.lag.ms": "0",
        "max.compaction.lag.ms": "86400000",
        "delete.retention.ms": "86400000",
    }
    assert specs["leadpulse-__assignor-__leader"].partition_count(settings) == 1
    commands = create_commands(settings)
    assert len(commands) == len(specs) + len(notify_topic_specs(settings))  # and notify's delivery-failures topic
    assert any("--topic lp.contact-scores --partitions 8 --replication-factor 3" in line for line in commands)


def test_the_acls_are_the_least_the_worker_needs():
    settings = Settings(topic_prefix="lp.", input_topic="lp.events", create_topics=False)
    lines = acl_commands(settings, "User:scorer")
    by_target = {line.rsplit(" ", 1)[1]: line for line in lines}
    assert "--operation Read --operation Describe --operation DescribeConfigs" in by_target["lp.events"]
    assert "Write" not in by_target["lp.events"]
    assert "Read" not in by_target["lp.hot-leads"] and "--operation Write" in by_target["lp.hot-leads"]
    assert "Read" not in by_target["lp.nurture"] and "--operation Write" in by_target["lp.nurture"]
    assert "--group leadpulse" in lines[-1] and "Create" not in " ".join(lines)
    assert all("--allow-principal User:scorer" in line and "--cluster" not in line for line in lines)


def test_acls_sh_input_and_the_kafka_acls_lines_are_the_same_acls():
    settings = Settings(topic_prefix="lp.", input_topic="lp.events")
    commands = acl_commands(settings, "User:scorer")
    lines = [binding.line("User:scorer") for binding in acl_bindings(settings)]
    assert len(lines) == len(commands)
    for line, command in zip(lines, commands, strict=True):
        principal, resource, name, operations = line.split()
        assert command.endswith(f" --{resource} {name}") and f"--allow-principal {principal} " in command
        assert [part.split()[0] for part in command.split("--operation ")[1:]] == operations.split(",")
    assert lines[0] == "User:scorer topic lp.events Read,Describe,Create,DescribeConfigs"
