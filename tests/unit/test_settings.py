"""LEADPULSE_* variables: every bad value stops the worker with one line naming the variable."""

from dataclasses import fields
from pathlib import Path

import pytest

from leadpulse.schemas.limits import DEFAULT_LIMITS, InputLimits, variable
from leadpulse.streams.settings import HELP, Settings, SettingsError, env_name


def test_no_variable_gives_the_defaults():
    assert Settings.from_env({}) == Settings()


def test_the_readme_states_the_batch_defaults_the_worker_has():
    """The batch window's default was chosen from bench.latency's figures (bench/README.md):
    an operator reads it in the README's settings table."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    row = next(
        line for line in readme.splitlines() if line.startswith("| `LEADPULSE_BATCH_SIZE` / `LEADPULSE_BATCH_WITHIN`")
    )
    assert row.split("|")[2].strip() == f"{Settings.batch_size} / {Settings.batch_within_s:g}"


def test_values_are_read_and_typed():
    settings = Settings.from_env(
        {
            "LEADPULSE_PARTITIONS": "12",
            "LEADPULSE_BATCH_WITHIN": "250ms",
            "LEADPULSE_COOLING_INTERVAL": "0.5",
            "LEADPULSE_BROKER": "a:9092;b:9092",
            "LEADPULSE_DATA_DIR": "/tmp/x",
        }
    )
    assert (settings.partitions, settings.batch_within_s, settings.cooling_interval_s) == (12, 0.25, 0.5)
    assert settings.broker == "kafka://a:9092;kafka://b:9092"
    assert settings.data_dir == Path("/tmp/x")


@pytest.mark.parametrize(
    ("name", "lo", "hi"),
    [
        ("LEADPULSE_PARTITIONS", 1, 10_000),
        ("LEADPULSE_REPLICATION_FACTOR", 1, 32),
        ("LEADPULSE_WEB_PORT", 1, 65_535),
        ("LEADPULSE_BATCH_SIZE", 1, 100_000),
        ("LEADPULSE_MAX_RECORD_BYTES", 1_000, 900_000),
        ("LEADPULSE_MAX_PROPERTIES", 1, 10_000),
        ("LEADPULSE_MAX_DEPTH", 1, 100),
        ("LEADPULSE_MAX_STRING", 256, 900_000),
        ("LEADPULSE_DEAD_LETTER_EXCERPT", 0, 50_000),
    ],
)
def test_whole_numbers_are_accepted_at_their_bounds_and_refused_past_them(name, lo, hi):
    field = next(f.name for f in fields(Settings) if env_name(f.name) == name)
    assert getattr(Settings.from_env({name: str(lo)}), field) == lo
    assert getattr(Settings.from_env({name: str(hi)}), field) == hi
    for past in (lo - 1, hi + 1):
        with pytest.raises(SettingsError, match=rf"^{name}='{past}': must be from {lo} to {hi}"):
            Settings.from_env({name: str(past)})


@pytest.mark.parametrize("raw", [str(2**31), "100000", str(2**63), "1" + "0" * 30])
def test_a_huge_partition_count_is_a_one_line_error(raw):
    with pytest.raises(SettingsError, match=r"^LEADPULSE_PARTITIONS='.*': must be from 1 to 10000$"):
        Settings.from_env({"LEADPULSE_PARTITIONS": raw})


@pytest.mark.parametrize("raw", ["eight", "8.5", "1e3", "9" * 5000])
def test_a_whole_number_setting_refuses_anything_else_naming_the_range(raw):
    with pytest.raises(SettingsError, match=r"^LEADPULSE_BATCH_SIZE=.*: expected a whole number from 1 to 100000$"):
        Settings.from_env({"LEADPULSE_BATCH_SIZE": raw})


def test_a_pasted_megabyte_is_quoted_cut_in_the_error():
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"LEADPULSE_WEB_PORT": "x" * 1_000_000})
    message = str(caught.value)
    assert len(message) < 200 and "\n" not in message
    assert "(1000000 characters)" in message


def test_the_record_size_limit_explains_its_ceiling():
    with pytest.raises(SettingsError, match=r"re-keyed record must fit in the producer's 1000000-byte request"):
        Settings.from_env({"LEADPULSE_MAX_RECORD_BYTES": "1000000"})


SECONDS = ["LEADPULSE_COOLING_INTERVAL", "LEADPULSE_BATCH_WITHIN", "LEADPULSE_SESSION_TIMEOUT"]


@pytest.mark.parametrize("name", SECONDS)
@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "infinity", "1e400"])
def test_seconds_must_be_finite(name, raw):
    with pytest.raises(SettingsError, match=rf"^{name}='{raw}': not a finite number of seconds$"):
        Settings.from_env({name: raw})


@pytest.mark.parametrize("name", SECONDS)
@pytest.mark.parametrize("raw", ["-1", "-0.001", "86400.5", "2d", "25h"])
def test_seconds_must_be_within_a_day(name, raw):
    with pytest.raises(SettingsError, match=rf"^{name}='{raw}': must be from 0 to 86400 seconds \(24h\)$"):
        Settings.from_env({name: raw})


@pytest.mark.parametrize(("raw", "seconds"), [("0", 0.0), ("86400", 86_400.0), ("24h", 86_400.0), ("1m", 60.0)])
def test_seconds_at_the_bounds_and_durations_are_accepted(raw, seconds):
    assert Settings.from_env({"LEADPULSE_COOLING_INTERVAL": raw}).cooling_interval_s == seconds


@pytest.mark.parametrize("raw", ["0", "5.9", "1801", "1h"])
def test_the_session_timeout_stays_within_what_brokers_accept(raw):
    with pytest.raises(SettingsError, match=r"must be from 6 to 1800 seconds"):
        Settings.from_env({"LEADPULSE_SESSION_TIMEOUT": raw})


@pytest.mark.parametrize(("raw", "seconds"), [("6", 6.0), ("30m", 1_800.0), ("10s", 10.0)])
def test_a_session_timeout_brokers_accept_is_taken(raw, seconds):
    assert Settings.from_env({"LEADPULSE_SESSION_TIMEOUT": raw}).session_timeout_s == seconds


def test_a_duration_too_long_to_represent_is_an_error_not_an_overflow():
    with pytest.raises(SettingsError, match=r"^LEADPULSE_COOLING_INTERVAL=.*longer than 1000 years$"):
        Settings.from_env({"LEADPULSE_COOLING_INTERVAL": "9" * 400 + "d"})


@pytest.mark.parametrize(
    ("ours", "fausts"),
    [
        ("debug", "debug"),
        ("info", "info"),
        ("warning", "warn"),
        ("warn", "warn"),
        ("error", "error"),
        ("critical", "crit"),
        ("WARNING", "warn"),
    ],
)
def test_log_levels_are_mapped_to_fausts_spelling(ours, fausts):
    assert Settings.from_env({"LEADPULSE_LOG_LEVEL": ours}).faust_log_level == fausts


def test_every_faust_log_level_is_one_faust_accepts():
    faust_levels = {"crit", "error", "warn", "info", "debug"}  # faust.cli.base.LOGLEVELS, lower-cased
    for level in ("debug", "info", "warning", "warn", "error", "critical"):
        assert Settings(log_level=level).faust_log_level in faust_levels


def test_an_unknown_log_level_lists_the_accepted_ones():
    with pytest.raises(
        SettingsError, match=r"^LEADPULSE_LOG_LEVEL='verbose': one of debug, info, warning, warn, error, critical$"
    ):
        Settings.from_env({"LEADPULSE_LOG_LEVEL": "verbose"})


def test_the_input_limits_default_to_those_of_the_decoder():
    assert Settings().input_limits == DEFAULT_LIMITS


def test_the_input_limits_are_read_from_their_variables():
    settings = Settings.from_env(
        {
            "LEADPULSE_MAX_RECORD_BYTES": "5000",
            "LEADPULSE_MAX_PROPERTIES": "7",
            "LEADPULSE_MAX_DEPTH": "3",
            "LEADPULSE_MAX_STRING": "300",
            "LEADPULSE_DEAD_LETTER_EXCERPT": "0",
        }
    )
    assert settings.input_limits == InputLimits(
        max_record_bytes=5000, max_properties=7, max_depth=3, max_string=300, dead_letter_excerpt=0
    )


def test_the_variables_named_in_rejections_are_the_settings_of_the_limits():
    for limit in fields(InputLimits):
        assert variable(limit.name) == env_name(limit.name)
        assert hasattr(Settings(), limit.name)


def test_a_misspelled_variable_suggests_the_known_one():
    with pytest.raises(
        SettingsError, match=r"^LEADPULSE_PARTITION: unknown setting \(did you mean LEADPULSE_PARTITIONS\?\)$"
    ):
        Settings.from_env({"LEADPULSE_PARTITION": "3"})


def test_an_unknown_variable_like_no_setting_lists_the_known_ones():
    with pytest.raises(SettingsError, match=r"^LEADPULSE_ZZZ: unknown setting \(known: LEADPULSE_BROKER, .*\)$"):
        Settings.from_env({"LEADPULSE_ZZZ": "3"})


def test_exactly_once_is_refused_with_the_reason():
    with pytest.raises(SettingsError, match=r"LEADPULSE_PROCESSING_GUARANTEE=exactly_once: not supported yet"):
        Settings.from_env({"LEADPULSE_PROCESSING_GUARANTEE": "exactly_once"})


@pytest.mark.parametrize(
    ("name", "raw", "reason"),
    [
        ("LEADPULSE_INPUT_TOPIC", "my topic", "only ASCII letters"),
        ("LEADPULSE_BROKER", "localhost", "expected host:port"),
        ("LEADPULSE_STORE", "redis://", "one of rocksdb://, memory://"),
        ("LEADPULSE_RULES", "/nonexistent/rules.toml", "no such rules file"),
    ],
)
def test_other_bad_values_name_the_variable(name, raw, reason):
    with pytest.raises(SettingsError, match=rf"^{name}='{raw}': {reason}"):
        Settings.from_env({name: raw})


def test_every_setting_has_a_one_line_help():
    assert set(HELP) == {f.name for f in fields(Settings)}
    for text in HELP.values():
        assert text and "\n" not in text and len(text) <= 100


def test_settings_survive_a_round_trip_through_the_environment():
    settings = Settings(partitions=3, log_level="warning", batch_within_s=0.25, max_depth=4, dead_letter_excerpt=0)
    assert Settings.from_env(settings.as_env()) == settings


def test_standby_replicas_set_how_many_other_workers_keep_a_warm_copy_of_each_table_partition(tmp_path):
    from leadpulse.streams.pipeline import create_app

    assert Settings().standby_replicas == 1
    settings = Settings.from_env({"LEADPULSE_STANDBY_REPLICAS": "2", "LEADPULSE_DATA_DIR": str(tmp_path)})
    assert create_app(settings).app.conf.table_standby_replicas == 2
    with pytest.raises(SettingsError, match="LEADPULSE_STANDBY_REPLICAS='11': must be from 0 to 10"):
        Settings.from_env({"LEADPULSE_STANDBY_REPLICAS": "11"})
