"""Ageing out on the real broker (scoring/expiry.py, docs/scoring.md#ageing-out): anonymous
contacts nobody identified are deleted from the table, its changelog and `contact-scores`
once the worker's record clock passes `[retention] anonymous_after` after their latest event;
identified ones stay; an event after expiry scores as the offline scorer says; an account's
departure markers go after the event retention, and an account without members leaves
nothing behind.

On a clock of seconds instead of months: `anonymous_after` of one hour, events dated just
under an hour ago, a cooling tick every second (ticks move idle partitions' clocks), and
an event retention of 3 s (the departure markers' horizon with a 2 s compaction lag)."""

from importlib import resources

import orjson
import pytest

from leadpulse.scoring.accounts import aggregate_key, departed, departed_key
from leadpulse.scoring.expiry import DEPARTURES_PREFIX, aging_key, departure_of, rounded_due
from leadpulse.scoring.rules import load_rules
from leadpulse.scoring.timeutil import format_ms, now_ms
from leadpulse.streams.partitioning import home_partition
from leadpulse.streams.startup import ACCOUNTS_TABLE, changelog_topic
from tests.factories import raw_event, seen_hashes
from tests.integration.harness import produce, read_all, scores_reach, wait_for
from tests.integration.oracle import Oracle

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000
DUE_IN_MS = 25_000  # the first events' contact is due this long after they are sent
SOON, OLD, ADA, ACCOUNT = "cookie-soon", "cookie-old", "ada@acme.io", "anon-co.example"


def line(event_id: str, at_ms: int, *, cookie: str | None = None, contact: str | None = None, **fields) -> bytes:
    document = raw_event(
        "pricing_viewed", event_id=event_id, occurred_at=format_ms(at_ms), contact_id=contact, **fields
    )
    if cookie is not None:
        document["anonymous_id"] = cookie
    return orjson.dumps({k: v for k, v in document.items() if v is not None})


def written(settings, topic: str, key: bytes) -> list[bytes | None]:
    return [value for k, value in read_all(settings, topic, idle_s=0.5) if k == key]


def test_anonymous_contacts_and_departure_markers_age_out_as_the_offline_scorer_says(make_settings, workers, tmp_path):
    rules_file = tmp_path / "rules.toml"
    shipped = (resources.files("leadpulse.scoring") / "default_rules.toml").read_text()
    rules_file.write_text(shipped.replace('anonymous_after = "90d"', 'anonymous_after = "1h"'))
    rules = load_rules(rules_file)
    settings = make_settings(
        partitions=2, rules=rules_file, cooling_interval_s=1.0, event_retention=3_000, compaction_lag=2_000
    )
    worker = workers(settings)
    start = now_ms()
    soon_last = start - HOUR_MS + DUE_IN_MS  # due soon, not before a busy machine's worker scored it
    lines = [
        line("s-1", soon_last - 1_000, cookie=SOON, properties={"account_id": ACCOUNT, "path": "/pricing"}),
        line("s-2", soon_last, cookie=SOON),
        line("o-1", start - 2 * HOUR_MS, cookie=OLD),  # due before it arrives: never stored
        line("a-1", start - 2 * HOUR_MS, contact=ADA, anonymous_id="ada-laptop"),  # identified: stays
    ]
    produce(settings, lines)
    stored = scores_reach(settings, Oracle(lines, rules, aged_at=start).snapshots, timeout_s=60)
    assert SOON in stored and OLD not in stored and ADA in stored
    assert wait_for(lambda: worker.get(f"/accounts/{ACCOUNT}")[0] == 200, timeout_s=30, interval_s=0.3)

    assert wait_for(lambda: worker.get(f"/contacts/{SOON}")[0] == 404, timeout_s=60, interval_s=0.3)
    gone = wait_for(lambda: worker.get(f"/accounts/{ACCOUNT}")[0] == 404, timeout_s=30, interval_s=0.3)
    assert gone, "its last member expired: the account is deleted"
    changelog = changelog_topic(settings)
    assert written(settings, changelog, SOON.encode())[-1] is None, "a tombstone in the contacts' changelog"
    entry = aging_key(home_partition(SOON.encode(), settings.partitions), rounded_due(soon_last + HOUR_MS, rules), SOON)
    assert written(settings, changelog, entry) == [b"", None], "its expiry index entry, written then deleted"
    assert worker.metric("leadpulse_expired_total", 'kind="contact"') >= 2

    # After expiry: an event that happened before the due time (late) and one after it (back).
    late = line("s-late", soon_last - 30_000, cookie=SOON)  # the new contact it starts is due at once
    back = line("s-back", now_ms(), cookie=SOON)
    produce(settings, [late, back])
    everything = [*lines, late, back]
    oracle = Oracle(everything, rules, aged_at=now_ms())
    assert len(seen_hashes(oracle.run.contacts[SOON])) == 1, "offline too, only the event after the due time counts"
    scores_reach(settings, oracle.snapshots, timeout_s=60)
    scores_reach(settings, oracle.accounts, timeout_s=60, topic="account-scores")

    # The account's marker of the expired member goes after the event retention, then nothing is left.
    accounts = changelog_topic(settings, ACCOUNTS_TABLE)
    marker_key = departed_key(ACCOUNT, departed(SOON))

    def marker_gone() -> bool:
        values = written(settings, accounts, marker_key)
        return len(values) >= 2 and values[0] is not None and values[-1] is None

    assert wait_for(marker_gone, timeout_s=30, interval_s=0.5), "the departure marker was not deleted"
    assert written(settings, accounts, aggregate_key(ACCOUNT))[-1] is None
    index = [
        key
        for key, _ in read_all(settings, accounts, idle_s=0.5)
        if key is not None and key.startswith(DEPARTURES_PREFIX) and departure_of(key)[1] == marker_key
    ]
    # written, then deleted: the key is in the changelog, its last record a tombstone (compaction
    # may already have removed the entry it deletes: the suite's compaction lag is seconds)
    assert index and written(settings, accounts, index[0]) in ([b"", None], [None]), "its index entry, not deleted"
    assert worker.metric("leadpulse_expired_total", 'kind="departure"') >= 1
    assert worker.running()
