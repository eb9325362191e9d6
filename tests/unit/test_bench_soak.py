"""The pure parts of the soak run (bench/soak.py): when faults happen, how the lag's recovery
and the sizes' trend are read from samples. The run itself is a benchmark, not a test."""

from __future__ import annotations

from bench.soak import BROKER, KILL, Fault, Sample, fault_schedule, lag_recovery, process_peaks, table, trend


def test_thirty_minutes_kill_a_worker_every_five_alternately_and_restart_the_broker_once_between_two_kills():
    faults = fault_schedule(30, 5, workers=2)
    kills = [fault for fault in faults if fault.kind == KILL]
    assert [(fault.at_s, fault.worker) for fault in kills] == [(300, 0), (600, 1), (900, 0), (1200, 1), (1500, 0)]
    (broker,) = [fault for fault in faults if fault.kind == BROKER]
    assert broker.at_s == 750  # half-way between the kills at 10 and 15 minutes: no fault on top of another
    assert faults == sorted(faults, key=lambda fault: fault.at_s)


def test_a_short_run_still_gets_kills_and_a_broker_restart_and_none_at_its_very_end():
    assert [(f.at_s, f.kind) for f in fault_schedule(3, 1)] == [(60, KILL), (90, BROKER), (120, KILL)]
    assert [(f.at_s, f.kind) for f in fault_schedule(5, 5)] == [(150, BROKER)]  # a kill at the end would go unseen
    assert [(f.at_s, f.kind) for f in fault_schedule(8, 5)] == [(300, KILL), (390, BROKER)]


def samples(lags: list[int | None], every_s: float = 5.0) -> list[Sample]:
    return [Sample(i * every_s, lag, (100_000, 100_000), (10**6, 10**6), 0) for i, lag in enumerate(lags)]


def test_the_lag_recovers_when_it_is_back_at_its_level_before_the_fault_for_good():
    # 0-55 s steady at most 120; the fault at 60 s; lag climbs, dips once, climbs, then settles at 85 s
    lags = [100, 120, 90, 110, 100, 120, 100, 110, 90, 100, 110, 120, 500, 2_000, 90, 900, None, 300, 100, 110, 95]
    (recovery,) = lag_recovery(samples(lags), [Fault(60, KILL)], floor=50)
    assert recovery.baseline == 120 and recovery.peak == 2_000
    assert recovery.seconds == 90 - 60  # the dip at 70 s was not the end: the lag rose again, and was unknown at 80 s
    assert recovery.unknown_s == 0.0  # one sample unknown: no span


def test_a_fault_the_lag_never_shows_recovers_at_once_and_one_never_recovered_says_so():
    quiet, stuck = samples([10, 10, 10, 10, 10]), samples([10, 10, 500, 600, 700])
    assert lag_recovery(quiet, [Fault(10, KILL)], floor=50)[0].seconds == 0.0
    (never,) = lag_recovery(stuck, [Fault(10, BROKER)], floor=50)
    assert never.seconds is None and never.peak == 700 and never.baseline == 50  # the floor: a commit's worth
    (away,) = lag_recovery(samples([10, 10, None, None, None, 20, 10]), [Fault(10, BROKER)], floor=50)
    assert (away.seconds, away.unknown_s, away.peak) == (15.0, 10.0, 20)  # back at the first known sample


def test_each_faults_level_is_measured_after_the_previous_fault_only():
    lags = [10, 10, 5_000, 5_000, 10, 10, 10, 3_000, 10]
    first, second = lag_recovery(samples(lags), [Fault(10, KILL), Fault(30, KILL)], floor=50)
    assert second.baseline == 50, "the first fault's peak must not become the second one's level"
    assert (first.seconds, second.seconds) == (10.0, 10.0)


def test_the_trend_compares_the_sizes_just_after_the_warm_up_with_those_at_the_end():
    rss = [50_000] * 12 + [100_000] * 20 + [110_000] * 6  # every 5 s: warm-up, then a slight growth
    taken = [Sample(i * 5.0, 0, (kb, kb), (0, 0), 0) for i, kb in enumerate(rss)]
    growth = trend(taken, lambda s: sum(s.rss_kb))
    assert (growth.early, growth.late) == (200_000, 220_000)
    assert round(growth.growth, 2) == 0.10


def test_the_table_has_a_row_a_minute_and_the_last_sample():
    rows = table(samples([0] * 30, every_s=5.0))  # 0 to 145 s
    assert [row.split()[0] for row in rows[1:]] == ["0.0", "1.0", "2.0", "2.4"]


def test_each_process_of_a_worker_has_its_own_peak_so_that_a_leak_shows_across_restarts():
    rss = [10, 50, 80, 90, 5, 60, 95, 99, 7, 70]  # kills of worker-0 at 20 s and 40 s (every 5 s)
    taken = [Sample(i * 5.0, 0, (kb, 1), (0, 0), 0) for i, kb in enumerate(rss)]
    faults = [Fault(20, KILL, 0), Fault(30, BROKER), Fault(40, KILL, 0), Fault(45, KILL, 1)]
    assert process_peaks(taken, faults, 0) == [90, 99, 70]
    assert process_peaks(taken, faults, 1) == [1, 1]
