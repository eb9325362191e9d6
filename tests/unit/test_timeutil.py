import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadpulse.scoring import timeutil
from leadpulse.scoring.timeutil import MAX_MS, format_ms, parse_duration_ms, parse_rfc3339_ms


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


_USUAL = ("2026-11-26T09:30:00.123Z", "2026-11-26T09:30:00Z", "2024-02-29T23:59:59.999Z", "9999-12-31T23:59:59Z")


@settings(max_examples=500, deadline=None)
@given(
    usual=st.sampled_from(_USUAL),
    edits=st.lists(st.tuples(st.integers(0, 23), st.sampled_from("0123456789-T:.Z+ ٢x\n")), max_size=3),
)
def test_the_usual_forms_read_by_table_give_what_the_general_reading_gives(usual, edits):
    """The look-up path for 'YYYY-MM-DDTHH:MM:SS[.fff]Z' accepts a text only with the value
    the general reading gives it; anything else, it leaves to that reading and its message."""
    chars = list(usual)
    for index, char in edits:
        chars[index % len(chars)] = char
    text = "".join(chars)
    try:
        expected: int | str = timeutil._parsed_ms(text)
    except ValueError as error:
        expected = str(error)
    try:
        got: int | str = parse_rfc3339_ms(text)
    except ValueError as error:
        got = str(error)
    assert got == expected


@settings(max_examples=300, deadline=None)
@given(st.integers(0, MAX_MS))
def test_every_formatted_instant_is_read_back_by_the_usual_path(ms):
    assert timeutil._usual_ms(format_ms(ms)) == ms
