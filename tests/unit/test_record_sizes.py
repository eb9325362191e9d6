"""The offline scorer refuses the events whose records the worker would refuse for their size
(schemas/record_sizes.py), so that the stream and the offline scorer keep the same events."""

from dataclasses import replace

import orjson
from hypothesis import given
from hypothesis import strategies as st

from leadpulse.cli.main import main
from leadpulse.cli.offline import score_lines
from leadpulse.schemas.limits import InputLimits, batch_limit, record_bytes
from leadpulse.schemas.outputs import dumps, output_record
from leadpulse.schemas.record_sizes import stage_change_bound
from leadpulse.scoring.engine import StageChange
from leadpulse.scoring.rules import load_rules
from tests.factories import buyer_documents, padded, raw_event

LINES = [
    padded("big", 1, "job_title"),
    padded("big", 2, "department"),
    padded("big", 3, "industry"),
    orjson.dumps(raw_event("demo_requested", event_id="big-after", contact_id="big")),
    *(orjson.dumps(document) for document in buyer_documents("small")),
]


def test_an_event_that_would_make_a_state_over_the_record_limit_is_refused_and_the_others_are_kept():
    refused = []
    run = score_lines(
        LINES,
        load_rules(),
        limits=InputLimits(max_message_bytes=5_000),
        on_bad=lambda line, error: refused.append((line, str(error))),
    )
    assert [line for line, _ in refused] == [3]
    assert refused[0][1].startswith("contacts-changelog: a record of ")
    assert f"over the {batch_limit(5_000)} bytes the topic takes" in refused[0][1]
    assert set(run.contacts["big"].profile) == {"job_title", "department"}
    assert "demo request" in run.contacts["big"].signals
    assert run.bad == 1 and run.events == len(LINES) - 1
    assert run.contacts["small"].stage == "opportunity"


def test_at_the_default_limit_padded_values_are_kept():
    run = score_lines(LINES, load_rules())
    assert run.bad == 0 and set(run.contacts["big"].profile) == {"job_title", "department", "industry"}


def test_leadpulse_score_takes_the_workers_limit_from_the_same_setting(tmp_path, capsys, monkeypatch):
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(LINES) + b"\n")
    monkeypatch.setenv("LEADPULSE_MAX_MESSAGE_BYTES", "5000")
    assert main(["score", str(events), "--jobs", "1"]) == 0
    err = capsys.readouterr().err
    assert "line 3: contacts-changelog: a record of " in err
    assert "1 bad lines skipped" in err


@given(
    st.text(min_size=1, max_size=256),
    st.text(min_size=1, max_size=256),
    st.text(min_size=1, max_size=100),
    st.none() | st.text(min_size=1, max_size=256),
    st.sampled_from([None, "lead", "nurturing", "disqualified"]),
    st.integers(0, 100),
)
def test_a_stage_change_record_is_never_larger_than_the_bound_that_spares_encoding_it(
    contact_id, cause, version, merged_from, from_stage, score
):
    change = StageChange("0" * 32, contact_id, from_stage, "opportunity", 253_402_300_799_999, cause, score, version)
    change = replace(change, merged_from=merged_from)
    size = record_bytes(contact_id.encode("utf-8", "surrogatepass"), dumps(output_record(change)))
    assert size <= stage_change_bound(change)
