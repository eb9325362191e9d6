"""Comparing a shadow app's snapshots with the live app's before promoting its rules
(scoring.rollout; the broker's side is tested in tests/integration/test_isolation.py)."""

from collections import Counter

import pytest

from leadpulse.cli.main import main
from leadpulse.scoring.rollout import compare, not_ready


def snapshot(score: int, temperature: str = "warm", stage: str = "lead", segments=(), version="v2") -> dict:
    return {
        "score": score,
        "temperature_label": temperature,
        "stage": stage,
        "segments": list(segments),
        "rules_version": version,
    }


def test_contacts_are_compared_by_stage_temperature_segments_and_presence_and_hot_moves_are_counted():
    live = {
        "ada": snapshot(40, version="v1"),
        "bob": snapshot(80, "hot", "mql", version="v1"),
        "cy": snapshot(10, "cold", version="v1"),
        "dee": snapshot(50, version="v1"),
    }
    shadow = {
        "ada": snapshot(85, "hot", "mql"),  # +45: stage and temperature
        "bob": snapshot(60, "warm", "mql"),  # no longer hot
        "cy": snapshot(10, "cold", segments=["enterprise"]),  # segments only
        "eve": snapshot(20, "cold"),  # only in the shadow
    }
    result = compare(live, shadow, limit=2)
    assert (result.in_both, result.only_live, result.only_shadow) == (3, 1, 1)
    assert result.changed == Counter(stage=1, temperature=2, segments=1, presence=2)
    assert (result.hot, result.became_hot, result.no_longer_hot) == ((1, 1), 1, 1)
    assert result.live_versions == Counter(v1=4) and result.shadow_versions == Counter(v2=4)
    assert [(m.contact_id, m.live, m.shadow) for m in result.largest] == [("dee", 50, None), ("ada", 40, 85)]


def test_identical_snapshots_compare_as_no_change():
    snapshots = {"ada": snapshot(40), "bob": snapshot(90, "hot")}
    result = compare(snapshots, dict(snapshots), limit=10)
    assert not result.changed and not result.largest and result.in_both == 2


def test_a_shadow_is_ready_only_caught_up_with_every_snapshot_of_the_candidate_version():
    ready = compare({}, {"ada": snapshot(40)}, 1)
    mixed = compare({}, {"ada": snapshot(40), "bob": snapshot(50, version="v1")}, 1)
    assert not_ready(0, ready, "v2") is None and not_ready(0, ready, None) is None
    assert not_ready(3, ready, "v2") == "the shadow has 3 input records left to read"
    assert not_ready(0, compare({}, {}, 1), None) == "the shadow has written no snapshot yet"
    assert not_ready(0, mixed, "v2") == "the shadow's snapshots carry v1 (1), v2 (1), not only v2"
    assert not_ready(0, mixed, None) == "the shadow's snapshots carry v1 (1), v2 (1), not one version"
    assert not_ready(0, ready, "v3") == "the shadow's snapshots carry v2 (1), not only v3"


@pytest.mark.parametrize("app, prefix", [("live", "shadow."), ("shadow", "live.")])
def test_a_shadow_sharing_the_live_apps_id_or_prefix_is_refused_in_one_line(app, prefix, monkeypatch, capsys):
    monkeypatch.setenv("LEADPULSE_APP_ID", "live")
    monkeypatch.setenv("LEADPULSE_TOPIC_PREFIX", "live.")
    code = main(["rules", "compare", "--shadow-app", app, "--shadow-prefix", prefix])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "an app id and a topic prefix of its own" in error
