"""Clusters where applications may not create topics: with LEADPULSE_CREATE_TOPICS=off the
worker only checks its topics, refusing to start while one is missing; `leadpulse topics
create` makes them (and notify's delivery-failures topic), with the configured replication,
min.insync.replicas and compression."""

from leadpulse.streams.startup import admin_topic_specs
from tests.integration.harness import run_cli, topic_configs


def test_no_create_mode_checks_and_an_administrator_creates(make_settings, workers):
    settings = make_settings(partitions=2, create_topics=False, min_insync_replicas=1, topic_compression="zstd")
    refused, took = run_cli(settings, "worker")
    stderr = refused.stderr.decode()
    assert refused.returncode == 1 and took < 60, stderr
    assert f"topics missing: {settings.input_topic}, " in stderr and "LEADPULSE_CREATE_TOPICS=off" in stderr
    assert "leadpulse topics create" in stderr and len(stderr.strip().splitlines()) == 1, stderr

    created, _ = run_cli(settings, "topics", "create")
    assert created.returncode == 0, created.stderr.decode()
    names = [spec.name for spec in admin_topic_specs(settings)]  # the worker's, and notify's failures topic
    assert f"created {len(names)} topics" in created.stderr.decode()
    configs = topic_configs(settings, names)
    assert all(configs[n]["compression.type"] == "zstd" and configs[n]["min.insync.replicas"] == "1" for n in names)
    assert configs[settings.topic("contact-scores")]["cleanup.policy"] == "compact"

    worker = workers(settings)  # starts: every topic is there, as configured
    assert worker.running()
