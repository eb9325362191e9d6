"""The offline scorer on several processes (cli.parallel) prints what one process prints:
records, --events-out lines, the summary and the bad lines, whatever links, erasures,
accounts and bad lines the input holds."""

import hashlib
import io
import random
import tracemalloc

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadpulse.cli import parallel
from leadpulse.cli.offline import Kind, Scored, future_reference, score_lines, scored
from leadpulse.cli.parallel import BUCKETS, Misrouted, Options, Router, deal, groups, ids_of, score_parallel
from leadpulse.cli.traffic import Traffic
from leadpulse.schemas.limits import DEFAULT_LIMITS
from leadpulse.scoring.engine import Event
from leadpulse.scoring.timeutil import format_ms, parse_rfc3339_ms
from tests.factories import DEFAULT_RULES

START = parse_rfc3339_ms("2026-06-01T00:00:00Z")
DAY_MS = 86_400_000


def mixed_lines(seed: int, count: int) -> bytes:
    """Synthetic traffic with cookies linked to contacts (some shared), accounts, Segment
    identify and alias calls, erasures of contacts and cookies, duplicates, escaped ids,
    blank and bad lines, in a random order of arrival."""
    rng = random.Random(seed)
    traffic = Traffic(seed, START, 60 * DAY_MS, contacts=40, accounts=4, identities=0.6)
    documents = list(traffic.events(count))
    ids = sorted({d.get("contact_id") or d["anonymous_id"] for d in documents})
    cookies = sorted({d["anonymous_id"] for d in documents if "anonymous_id" in d})
    lines = [orjson.dumps(d) for d in documents]
    for n in range(count // 20):
        at = format_ms(START + rng.randrange(60 * DAY_MS))
        lines.append(orjson.dumps({"event_id": f"erase-{n}", "type": "contact_erased", "occurred_at": at,
                                   "contact_id": rng.choice(ids)}))  # fmt: skip
        lines.append(orjson.dumps({"type": "identify", "messageId": f"seg-{n}", "userId": rng.choice(ids),
                                   "anonymousId": rng.choice(cookies), "timestamp": at,
                                   "traits": {"email": "x@company-001.io"}}))  # fmt: skip
        lines.append(orjson.dumps({"type": "alias", "messageId": f"alias-{n}", "userId": rng.choice(ids),
                                   "previousId": rng.choice(cookies), "timestamp": at}))  # fmt: skip
        lines.append(rng.choice(lines))  # a duplicate
    escaped = (
        orjson.dumps(documents[0])
        .replace(b'"contact_id":"', b'"contact_id":"\\u0063')
        .replace(b'"anonymous_id":"', b'"anonymous_id":"\\u0063')
    )
    lines += [b"", b"{oops", b'{"event_id": "x", "type": "page_viewed"}', b"[1, 2]", escaped]
    rng.shuffle(lines)
    return b"\n".join(lines) + b"\n"


def printed(result: Scored, bad: list[tuple[int, str]]) -> dict:
    """Everything `leadpulse score` would print of a result."""
    return {"records": list(result.records), "outputs": list(result.outputs), "totals": result.totals, "bad": bad}


def one_process(data: bytes, kind: Kind, at_ms: int | None = None, last_event: bool = False) -> dict:
    bad: list[tuple[int, str]] = []
    run = score_lines(io.BytesIO(data), DEFAULT_RULES, now_ms=at_ms, on_bad=lambda n, e: bad.append((n, str(e))))
    return printed(scored(run, kind, at_ms, last_event), bad)


def processes(data: bytes, kind: Kind, jobs: int, at_ms: int | None = None, last_event: bool = False) -> dict:
    bad: list[tuple[int, str]] = []
    options = Options(
        DEFAULT_RULES, future_reference(at_ms), DEFAULT_LIMITS, kind, at_ms, last_event, with_outputs=True
    )
    return printed(score_parallel(data, options, jobs, on_bad=lambda n, e: bad.append((n, str(e)))), bad)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("kind", ["contacts", "accounts", "nurture"])
def test_several_processes_print_what_one_prints(seed, kind):
    data = mixed_lines(seed, 600)
    expected = one_process(data, kind)
    totals = expected["totals"]
    assert totals.merged and totals.erased and totals.forgotten and expected["bad"] and expected["outputs"]
    assert processes(data, kind, jobs=2) == expected
    assert processes(data, kind, jobs=3) == expected


def test_the_same_at_an_evaluation_time_with_a_future_limit_and_at_each_contacts_last_event():
    data = mixed_lines(4, 400)
    at_ms = START + 30 * DAY_MS  # the later half of the events is refused as in the future
    assert processes(data, "contacts", 2, at_ms) == one_process(data, "contacts", at_ms)
    assert processes(data, "contacts", 2, last_event=True) == one_process(data, "contacts", last_event=True)


def test_more_processes_than_lines_print_the_same():
    data = mixed_lines(5, 10)
    assert processes(data, "contacts", jobs=8) == one_process(data, "contacts")


def test_the_routes_stay_in_step_with_the_lines_without_a_final_newline_and_over_blank_lines(monkeypatch):
    """Each process writes the route of every line of its slice; every process reads them
    beside the lines of the whole input (cli.parallel._marks). A line lost or counted twice
    at a slice's edge would fold the wrong lines (the routing check would find it)."""
    fallbacks = []
    one = parallel._one_process
    monkeypatch.setattr(parallel, "_one_process", lambda *args: fallbacks.append(args) or one(*args))
    monkeypatch.setattr(parallel, "_ROUTES_CHUNK", 7)  # chunks end inside slices: theirs too (forked from here)
    data = mixed_lines(8, 300)
    for variant in (data.rstrip(b"\n"), b"\n\n" + data.replace(b"\n", b"\n\n", 40) + b"  \n"):
        expected = one_process(variant, "contacts")
        assert processes(variant, "contacts", jobs=2) == expected
        assert processes(variant, "contacts", jobs=5) == expected
    assert fallbacks == []


def test_an_event_routed_without_its_link_makes_the_run_fall_back_to_one_process(monkeypatch):
    data = mixed_lines(6, 300)
    expected = one_process(data, "contacts")
    # The processes are forked from here: they read no anonymous id, so links are not grouped.
    monkeypatch.setattr(parallel, "ids_of", lambda line: ids_of(line.replace(b"nonymous", b"")))
    fallbacks = []
    one = parallel._one_process
    monkeypatch.setattr(parallel, "_one_process", lambda *args: fallbacks.append(args) or one(*args))
    assert processes(data, "contacts", jobs=2) == expected
    assert len(fallbacks) == 1


def test_ids_are_found_in_native_and_segment_lines_and_through_escapes():
    assert ids_of(b'{"contact_id" : "c-1", "anonymous_id":"ck-1", "properties": {"path": "/x"}}') == [b"c-1", b"ck-1"]
    assert ids_of(b'{"type":"alias","userId":"u","previousId":"p"}') == [b"u", b"p"]
    assert ids_of(b'{"contact_id":"c\\u002d1","note":"a \\"quote\\""}') == [b"c-1"]
    assert ids_of(b"{oops \\") == []


def test_ids_named_together_share_a_group_across_lines():
    roots = groups([[b"a", b"x"], [b"b", b"y"], [b"c", b"x"]])
    assert roots[b"a"] == roots[b"c"] == roots[b"x"]
    assert roots[b"b"] == roots[b"y"] != roots[b"a"]


@given(st.lists(st.integers(0, 10**7), min_size=1, max_size=300), st.integers(1, 8))
def test_buckets_are_dealt_so_that_no_process_holds_more_lines_than_another_by_over_one_bucket(loads, jobs):
    owners = deal(loads, jobs)
    held = [sum(load for load, owner in zip(loads, owners, strict=True) if owner == process) for process in range(jobs)]
    assert set(owners) <= set(range(jobs))
    assert max(held) - min(held) <= max(loads)


def test_a_group_holding_a_fifth_of_the_lines_is_balanced_by_the_other_groups():
    """The 10M-event history of bench.replay: cookies shared between people chained 94,246
    ids into one group of 1.95M lines, and hashing groups to 2 processes gave them 5.98M
    and 4.02M lines."""
    rng = random.Random(3)
    loads = [rng.randrange(4_000) for _ in range(BUCKETS)]
    loads[17] = 1_950_000
    held = [0, 0]
    for load, owner in zip(loads, deal(loads, 2), strict=True):
        held[owner] += load
    assert abs(held[0] - held[1]) < 4_000  # a bucket's lines, but for the one group


def test_the_routing_check_refuses_an_event_whose_linked_id_is_in_another_group():
    router = Router(roots={}, owners=(0,) * BUCKETS)
    event = Event("e-1", "form_submitted", "c-1", True, START, {}, None, anonymous_id="ck-1")
    with pytest.raises(Misrouted):
        router.check(0)(event)
    Router(roots={b"c-1": b"c-1", b"ck-1": b"c-1"}, owners=(0,) * BUCKETS).check(0)(event)  # grouped: accepted


def test_the_parent_holds_a_chunk_of_each_processs_records_and_outputs_not_all_of_them(monkeypatch):
    """The processes write what they print to files, in chunks, merged as it is printed: what
    this process holds does not grow with the records (bench/peak_rss.py measures it)."""
    monkeypatch.setattr(parallel, "_CHUNK", 40)  # the processes are forked from here: theirs too
    work = parallel._work
    monkeypatch.setattr(parallel, "_work", lambda *args: (tracemalloc.stop(), work(*args)))  # this process's only
    traffic = Traffic(7, START, 60 * DAY_MS, contacts=3_000, accounts=0, identities=0.0)
    data = b"".join(orjson.dumps(document) + b"\n" for document in traffic.events(6_000))
    expected = one_process(data, "contacts")
    options = Options(DEFAULT_RULES, future_reference(None), DEFAULT_LIMITS, "contacts", None, False, with_outputs=True)
    warm_up = score_parallel(data[: data.index(b"\n") + 1], options, 2, on_bad=lambda number, error: None)
    assert [*warm_up.records, *warm_up.outputs], "the modules a run imports are imported before counting"
    tracemalloc.start()
    try:
        result = score_parallel(data, options, 2, on_bad=lambda number, error: None)
        records = outputs = 0
        digest = hashlib.sha256()
        for line in result.records:
            records += len(line)
            digest.update(line + b"\n")
        for line in result.outputs:
            outputs += len(line)
            digest.update(line + b"\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (
        digest.hexdigest()
        == hashlib.sha256(b"".join(line + b"\n" for line in [*expected["records"], *expected["outputs"]])).hexdigest()
    ), "printed the same, byte for byte, through many chunks"
    assert records > 1_000_000 and outputs > 200_000
    assert peak < (records + outputs) / 5, f"{peak} bytes held at most for {records + outputs} bytes printed"
