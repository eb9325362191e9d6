"""`leadpulse score` and `leadpulse rules check` as a user runs them."""

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from leadpulse.cli.main import main
from tests.factories import buyer_documents

ROOT = Path(__file__).resolve().parents[2]


def write_events(path, documents, extra_lines=()):
    lines = [orjson.dumps(d) for d in documents] + [line.encode() for line in extra_lines]
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_score_prints_one_snapshot_per_contact_sorted_by_id(tmp_path, capsysbinary):
    events = tmp_path / "events.jsonl"
    write_events(
        events, buyer_documents("c-2", "2026-10-03T09:00:00Z") + buyer_documents("c-1", "2026-10-01T09:00:00Z")
    )
    assert main(["score", str(events)]) == 0
    rows = [orjson.loads(line) for line in capsysbinary.readouterr().out.splitlines()]
    assert [r["contact_id"] for r in rows] == ["c-1", "c-2"]
    assert {r["updated_at"] for r in rows} == {"2026-10-03T09:00:00.000Z"}
    assert rows[1]["temperature_label"] == "hot"
    assert rows[0]["score"] < rows[1]["score"]  # c-1 has cooled for two days


def test_last_event_evaluates_each_contact_at_its_own_latest_event(tmp_path, capsysbinary):
    events = tmp_path / "events.jsonl"
    write_events(
        events, buyer_documents("c-2", "2026-10-03T09:00:00Z") + buyer_documents("c-1", "2026-10-01T09:00:00Z")
    )
    assert main(["score", "--at", "last-event", str(events)]) == 0
    rows = [orjson.loads(line) for line in capsysbinary.readouterr().out.splitlines()]
    assert [r["updated_at"][:10] for r in rows] == ["2026-10-01", "2026-10-03"]
    assert rows[0]["score"] == rows[1]["score"]


def test_bad_lines_are_skipped_and_reported_with_line_numbers(tmp_path, capsys):
    events = tmp_path / "events.jsonl"
    write_events(events, buyer_documents("c-1"), extra_lines=["{oops", '{"event_id": "x", "type": "page_viewed"}'])
    assert main(["score", str(events)]) == 0
    captured = capsys.readouterr()
    assert "line 4: not valid JSON" in captured.err
    assert "line 5: contact_id: one of contact_id or anonymous_id is required" in captured.err
    assert "2 bad lines skipped" in captured.err
    assert len(captured.out.splitlines()) == 1


def test_events_after_at_beyond_the_future_limit_are_refused(tmp_path, capsys):
    events = tmp_path / "events.jsonl"
    write_events(events, buyer_documents("c-1", "2026-10-05T09:00:00Z"))
    assert main(["score", "--at", "2026-10-01T00:00:00Z", str(events)]) == 0
    assert "occurred_at is" in capsys.readouterr().err


def test_events_out_lists_stage_changes_and_hot_leads_in_processing_order(tmp_path, capsys):
    events, out = tmp_path / "events.jsonl", tmp_path / "out.jsonl"
    write_events(events, buyer_documents("c-1"))
    assert main(["score", "--events-out", str(out), str(events)]) == 0
    kinds = [(r["kind"], r.get("to_stage")) for r in map(orjson.loads, out.read_bytes().splitlines())]
    assert kinds == [("stage_change", "lead"), ("stage_change", "opportunity"), ("hot_lead", None)]


def test_a_bad_rules_file_exits_non_zero_naming_the_key(tmp_path, capsys):
    rules = tmp_path / "rules.toml"
    rules.write_text('version = "x"\n[categories.web]\ncap = "lots"\n')
    events = tmp_path / "events.jsonl"
    write_events(events, buyer_documents("c-1"))
    assert main(["score", "--rules", str(rules), str(events)]) == 2
    assert "categories.web.cap: expected a number" in capsys.readouterr().err


def test_a_bad_at_value_exits_non_zero(tmp_path, capsys):
    events = tmp_path / "events.jsonl"
    write_events(events, buyer_documents("c-1"))
    assert main(["score", "--at", "tomorrow", str(events)]) == 2


def test_rules_check_prints_a_summary(capsys):
    assert main(["rules", "check", "leadpulse/scoring/default_rules.toml"]) == 0
    out = capsys.readouterr().out
    assert "OK, version default-2026.11" in out
    assert "nurture tracks: fit-but-quiet (low_engagement), cooling-off (cooled), stalled (stalled), recycle" in out
    assert "7 content entries, once per 14 d" in out
    assert "model enterprise: for enterprise; the top level's signals, fit attributes seniority, budget" in out


def test_the_installed_console_script_runs():
    done = subprocess.run([sys.executable, "-m", "leadpulse", "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "score" in done.stdout


def test_events_out_in_a_missing_folder_stops_before_any_score_is_printed(tmp_path, capsys):
    events = tmp_path / "events.jsonl"
    write_events(events, buyer_documents("c-1"))
    out = tmp_path / "missing-dir" / "x.jsonl"
    assert main(["score", "--events-out", str(out), str(events)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [f"leadpulse score: --events-out {out}: folder {out.parent} does not exist"]


def test_events_out_that_is_a_folder_is_refused(tmp_path, capsys):
    events = tmp_path / "events.jsonl"
    write_events(events, buyer_documents("c-1"))
    assert main(["score", "--events-out", str(tmp_path), str(events)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"leadpulse score: --events-out {tmp_path}: is a folder, not a file"
    ]


def test_a_missing_input_file_is_one_line(tmp_path, capsys):
    assert main(["score", str(tmp_path / "nope.jsonl")]) == 2
    assert capsys.readouterr().err.splitlines() == [f"leadpulse score: {tmp_path / 'nope.jsonl'}: no such file"]


def test_the_shipped_example_scores_as_the_readme_shows(capsys):
    assert main(["score", str(ROOT / "examples" / "journey.jsonl")]) == 0
    captured = capsys.readouterr()
    rows = [orjson.loads(line) for line in captured.out.splitlines()]
    assert [(r["contact_id"], r["score"], r["temperature"], r["temperature_label"]) for r in rows] == [
        ("ada@acme.io", 87, 4, "hot"),
        ("anon-42", 0, 1, "cold"),
        ("bob@shop.fr", 1, 1, "cold"),
    ]
    assert "line 9: contact_id: one of contact_id or anonymous_id is required" in captured.err


def test_score_accounts_prints_the_readme_committee_example(capsysbinary):
    """README's worked example: five people of globex.eu, none hot, make a hot account."""
    assert main(["score", str(ROOT / "examples" / "committee.jsonl"), "--accounts", "--at", "last-event"]) == 0
    rows = [orjson.loads(line) for line in capsysbinary.readouterr().out.splitlines()]
    assert [(r["account_id"], r["score"], r["temperature_label"]) for r in rows] == [("globex.eu", 79, "hot")]
    assert rows[0]["contacts"] == 5 and rows[0]["committee"]["coverage"] == 1.0
    assert [c["contact_id"] for c in rows[0]["top_contacts"]] == ["marie@globex.eu", "tom@globex.eu", "ana@globex.eu"]
    assert all(c["score"] < 75 for c in rows[0]["top_contacts"])


def test_score_prints_the_readme_models_example(capsysbinary, tmp_path):
    """README's worked example: Rita is cool for the default model and hot for payments only."""
    examples, alerts = ROOT / "examples", tmp_path / "alerts.jsonl"
    rules, events = str(examples / "two-product-lines.toml"), str(examples / "two-product-lines.jsonl")
    assert main(["score", "--rules", rules, "--events-out", str(alerts), events]) == 0
    rita, sam = (orjson.loads(line) for line in capsysbinary.readouterr().out.splitlines())
    assert (rita["score"], rita["temperature_label"], list(rita["models"])) == (44, "cool", ["payments"])
    assert (rita["models"]["payments"]["score"], rita["models"]["payments"]["temperature_label"]) == (87, "hot")
    assert list(sam["models"]) == ["analytics"]
    hot = [r for r in map(orjson.loads, alerts.read_bytes().splitlines()) if r["kind"] == "hot_lead"]
    assert [(r["model"], r["contact_id"], r["score"], r["cause_event_id"]) for r in hot] == [
        ("payments", "rita@shop.example", 87, "m-4")
    ]


def nurture_rows(capsysbinary, *args):
    assert main(["score", str(ROOT / "examples" / "nurture.jsonl"), "--nurture", *args]) == 0
    return [orjson.loads(line) for line in capsysbinary.readouterr().out.splitlines()]


def test_score_nurture_prints_the_readme_example(capsysbinary):
    """README's worked example: Lea, warm after reading about pricing, has cooled by Oct 1 and
    gets the pricing white paper; Ada asked for a demo (an opportunity) and gets nothing."""
    before = nurture_rows(capsysbinary, "--at", "2026-09-25T12:00:00Z")
    assert [(r["contact_id"], r["track"]) for r in before] == [("max@globex.eu", "fit-but-quiet")]
    rows = nurture_rows(capsysbinary, "--at", "2026-10-01T12:00:00Z")
    assert [(r["contact_id"], r["track"], r["content"]["title"]) for r in rows] == [
        ("ben@initech.com", "recycle", "What is new since we last spoke"),
        ("lea@acme.io", "cooling-off", "Pricing white paper: what real-time lead scoring costs and returns"),
        ("max@globex.eu", "fit-but-quiet", "Executive brief: pipeline you are not seeing"),
        ("max@globex.eu", "stalled", "Customer stories: how B2B teams qualify faster"),
    ]
    lea = rows[1]
    assert (lea["interest"], lea["stage"], lea["period_start"]) == ("pricing", "prospect", "2026-09-24T00:00:00.000Z")
    assert nurture_rows(capsysbinary, "--at", "2026-10-05T12:00:00Z") == rows  # same period: same records


def test_score_nurture_and_accounts_together_are_refused(capsys):
    assert main(["score", str(ROOT / "examples" / "nurture.jsonl"), "--nurture", "--accounts"]) == 2
    assert "--accounts and --nurture: choose one" in capsys.readouterr().err


@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "examples").glob("*.jsonl")))
@pytest.mark.parametrize("options", [[], ["--accounts"], ["--nurture", "--at", "2026-12-01T00:00:00Z"]])
def test_two_jobs_print_byte_for_byte_what_one_job_prints(tmp_path, capsysbinary, example, options):
    printed = []
    for jobs in ("1", "2"):
        out = tmp_path / f"outputs-{jobs}.jsonl"
        args = ["score", str(ROOT / "examples" / example), "--jobs", jobs, "--events-out", str(out), *options]
        assert main(args) == 0
        captured = capsysbinary.readouterr()
        printed.append((captured.out, captured.err, out.read_bytes()))
    assert printed[1] == printed[0]
    assert b"scored " in printed[0][1]


def test_bad_lines_are_reported_in_line_order_by_several_jobs(tmp_path, capsys):
    events = tmp_path / "events.jsonl"
    write_events(
        events,
        buyer_documents("c-1") + buyer_documents("c-2"),
        extra_lines=["{oops", '{"event_id": "x", "type": "page_viewed"}', "[1]"],
    )
    assert main(["score", "--jobs", "3", str(events)]) == 0
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("line ")]
    assert [error.split(":")[0] for error in errors] == ["line 7", "line 8", "line 9"]


def test_jobs_must_be_a_positive_number(tmp_path, capsys):
    events = tmp_path / "events.jsonl"
    write_events(events, buyer_documents("c-1"))
    with pytest.raises(SystemExit) as exit_:
        main(["score", "--jobs", "0", str(events)])
    assert exit_.value.code == 2
    assert "--jobs: expected a number of processes (1 or more), got '0'" in capsys.readouterr().err


def test_an_event_from_the_future_is_refused_as_the_worker_refuses_it_and_moves_no_one_forward(tmp_path, capsys):
    journey = (ROOT / "examples" / "journey.jsonl").read_bytes()
    future = orjson.dumps(
        {
            "event_id": "e-2099",
            "type": "page_viewed",
            "contact_id": "bob@shop.fr",
            "occurred_at": "2099-01-01T00:00:00Z",
        }
    )
    plain, with_future = tmp_path / "plain.jsonl", tmp_path / "future.jsonl"
    plain.write_bytes(journey)
    with_future.write_bytes(journey + future + b"\n")
    assert main(["score", "--jobs", "1", str(plain)]) == 0
    expected = capsys.readouterr().out
    assert main(["score", "--jobs", "1", str(with_future)]) == 0
    captured = capsys.readouterr()
    assert captured.out == expected  # ada still hot, everyone evaluated at the latest accepted event
    number = len(journey.splitlines()) + 1
    assert f"line {number}: occurred_at: occurred_at is " in captured.err and "in the future" in captured.err
    assert "2 bad lines skipped" in captured.err


def test_a_segment_message_ahead_of_its_own_received_at_is_refused_whatever_the_clock_says(tmp_path, capsys):
    events = tmp_path / "segment.jsonl"
    message = {"type": "page", "messageId": "m-1", "userId": "ada@acme.io", "properties": {"path": "/pricing"}}
    ahead = {**message, "timestamp": "2026-01-02T00:00:00Z", "receivedAt": "2026-01-01T00:00:00Z"}
    within = {**message, "messageId": "m-2", "timestamp": "2026-01-01T00:10:00Z", "receivedAt": "2026-01-01T00:00:00Z"}
    events.write_bytes(orjson.dumps(ahead) + b"\n" + orjson.dumps(within) + b"\n")
    assert main(["score", str(events)]) == 0
    err = capsys.readouterr().err
    assert "line 1: occurred_at: occurred_at is 86400s in the future (limit 900s)" in err
    assert "scored 1 events" in err
