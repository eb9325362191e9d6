from leadpulse.scoring.cooling import CoolingSchedule


def test_only_due_contacts_are_popped_earliest_first():
    schedule = CoolingSchedule()
    schedule.set("late", 300)
    schedule.set("early", 100)
    schedule.set("middle", 200)
    assert schedule.pop_due(250, limit=10) == ["early", "middle"]
    assert len(schedule) == 1


def test_rescheduling_replaces_the_earlier_due_time():
    schedule = CoolingSchedule()
    schedule.set("a", 100)
    schedule.set("a", 500)
    assert schedule.pop_due(200, limit=10) == []
    assert schedule.pop_due(500, limit=10) == ["a"]


def test_a_cold_contact_is_removed_from_the_schedule():
    schedule = CoolingSchedule()
    schedule.set("a", 100)
    schedule.set("a", None)
    assert schedule.pop_due(1_000, limit=10) == [] and len(schedule) == 0


def test_pop_respects_the_limit_and_keeps_the_rest():
    schedule = CoolingSchedule()
    for index in range(5):
        schedule.set(f"c{index}", index)
    assert schedule.pop_due(10, limit=2) == ["c0", "c1"]
    assert schedule.pop_due(10, limit=10) == ["c2", "c3", "c4"]


def test_stale_entries_are_compacted_away():
    schedule = CoolingSchedule()
    for due in range(10_000):
        schedule.set("a", due)
    assert len(schedule._heap) <= 4 + 1024 + 1
    assert schedule.pop_due(10_000, limit=10) == ["a"]
