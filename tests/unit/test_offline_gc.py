"""The offline scorer folds with CPython's cyclic garbage collector off (cli.offline.score_numbered,
and the processes of --jobs: cli.parallel._work): what a fold drops must be freed by
reference counting alone, or memory would grow with the events instead of the contacts."""

import gc
from collections import Counter

from bench.golden import history
from leadpulse.cli.offline import account_lines, contact_records, score_lines
from leadpulse.schemas.outputs import dumps, output_record
from tests.factories import DEFAULT_RULES

BAD_LINES = [b"{oops", b'{"event_id": "x", "type": "page_viewed"}', b"[1, 2]", b'{"contact_id": "c-1"}']


def fold_and_print(lines: list[bytes]) -> int:
    """Everything `leadpulse score` makes of `lines`, printed and dropped; returns how many lines were bad."""
    bad: list[str] = []
    run = score_lines(lines, DEFAULT_RULES, on_bad=lambda number, error: bad.append(str(error)))
    printed = [line for _, line in contact_records(run, "contacts", None)]
    printed += [line for _, line in contact_records(run, "nurture", run.latest_ms)]
    printed += account_lines(run.accounts(None))
    printed += [dumps(output_record(output)) for output in run.outputs]
    assert printed
    return len(bad)


def test_a_fold_with_merges_accounts_erasures_and_bad_lines_leaves_no_reference_cycles():
    lines = history(3_000, 300) + BAD_LINES
    fold_and_print(lines)  # once before counting: what a first run sets up (imports, caches) stays
    collecting = gc.isenabled()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds stays in gc.garbage, to be named below
    try:
        assert fold_and_print(lines) >= len(BAD_LINES)
        found = gc.collect()
        left = Counter(type(thing).__name__ for thing in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if collecting:
            gc.enable()
    assert found == 0, f"objects in reference cycles, freed only by the collector: {left.most_common(8)}"
