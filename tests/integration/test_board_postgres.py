"""The board's read model on a real PostgreSQL server: the same specification as on SQLite
(tests/unit/test_board_model.py), each test in a database of its own."""

from __future__ import annotations

import itertools

import pytest

from leadpulse.board.store import Store
from tests.unit import test_board_model as spec

pytestmark = pytest.mark.integration
_databases = itertools.count()


@pytest.fixture
def make_store(postgres):
    opened: list[Store] = []

    def make(name: str) -> Store:
        url = postgres.create_database(f"board_{name}_{next(_databases)}")
        opened.append(Store(url, retention_days=30))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store):
    return make_store("board")


test_every_output_topic_lands_in_the_read_model = spec.test_every_output_topic_lands_in_the_read_model
test_a_replay_of_applied_records_changes_nothing = spec.test_a_replay_of_applied_records_changes_nothing
test_a_replay_from_offset_zero_on_a_rebuilt_database_gives_the_same_rows = (
    spec.test_a_replay_from_offset_zero_on_a_rebuilt_database_gives_the_same_rows
)
test_a_restart_resumes_from_the_offsets_stored_with_the_rows = (
    spec.test_a_restart_resumes_from_the_offsets_stored_with_the_rows
)
test_a_tombstone_deletes_the_person_everywhere = spec.test_a_tombstone_deletes_the_person_everywhere
test_alerts_written_before_an_erasure_are_not_stored_again_those_after_it_are = (
    spec.test_alerts_written_before_an_erasure_are_not_stored_again_those_after_it_are
)
test_a_record_its_topic_does_not_carry_is_passed_and_its_offset_moves_on = (
    spec.test_a_record_its_topic_does_not_carry_is_passed_and_its_offset_moves_on
)
test_history_keeps_changes_and_one_point_a_day = spec.test_history_keeps_changes_and_one_point_a_day
test_history_is_bounded_by_the_retention_and_a_cap_per_day = (
    spec.test_history_is_bounded_by_the_retention_and_a_cap_per_day
)
test_alerts_per_contact_are_capped = spec.test_alerts_per_contact_are_capped
test_search_finds_by_id_email_prefix_and_domain = spec.test_search_finds_by_id_email_prefix_and_domain
test_hot_now_filters_by_segment_model_and_stage = spec.test_hot_now_filters_by_segment_model_and_stage


def test_the_funnel_counts_on_postgresql_as_on_sqlite(make_store, tmp_path):
    """Weekly buckets are integer division in SQL: the same numbers from both databases."""
    feed = spec.Feed()
    records = spec.everything(feed)
    on_postgres = make_store("funnel")
    on_sqlite = Store(str(tmp_path / "funnel.sqlite3"), retention_days=30)
    on_postgres.apply(records)
    on_sqlite.apply(records)
    assert on_postgres.funnel() == on_sqlite.funnel()
    assert on_postgres.funnel().weeks
    on_sqlite.close()
