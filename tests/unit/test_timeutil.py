import pytest

from leadpulse.scoring.timeutil import format_ms, parse_duration_ms, parse_rfc3339_ms


@pytest.mark.parametrize(
    ("text", "ms"), [("30d", 30 * 86_400_000), ("10m", 600_000), ("1.5h", 5_400_000), ("250ms", 250)]
)
def test_durations_are_read_in_their_unit(text, ms):
    assert parse_duration_ms(text) == ms


def test_a_duration_without_unit_is_refused_with_an_example():
    with pytest.raises(ValueError, match="'30d'"):
        parse_duration_ms("30")


def test_rfc3339_with_z_and_with_offset_denote_the_same_instant():
    assert parse_rfc3339_ms("2026-10-01T09:00:00Z") == parse_rfc3339_ms("2026-10-01T11:00:00+02:00")


def test_milliseconds_are_kept_exactly():
    assert parse_rfc3339_ms("2026-10-01T09:00:00.123Z") % 1000 == 123


def test_a_timestamp_without_offset_is_refused():
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_rfc3339_ms("2026-10-01T09:00:00")


def test_formatting_round_trips_through_parsing():
    ms = parse_rfc3339_ms("2026-10-01T09:00:00.450+00:00")
    assert format_ms(ms) == "2026-10-01T09:00:00.450Z"
    assert parse_rfc3339_ms(format_ms(ms)) == ms


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59.999Z",
        "1970-01-01T00:30:00+01:00",  # 1969 in UTC
        "9999-12-31T23:59:59-05:00",  # year 10000 in UTC
    ],
)
def test_an_instant_outside_1970_to_9999_in_utc_is_refused_with_the_range(text):
    with pytest.raises(ValueError, match=r"outside 1970-01-01\.\.9999-12-31"):
        parse_rfc3339_ms(text)


@pytest.mark.parametrize("text", ["1970-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59+05:00"])
def test_the_first_and_last_representable_instants_are_accepted_and_formatted_back(text):
    ms = parse_rfc3339_ms(text)
    assert parse_rfc3339_ms(format_ms(ms)) == ms
    assert len(format_ms(ms)) == len("1970-01-01T00:00:00.000Z")


def test_a_duration_too_long_to_represent_is_refused_not_overflowed():
    with pytest.raises(ValueError, match="longer than 1000 years"):
        parse_duration_ms("9" * 400 + "d")
