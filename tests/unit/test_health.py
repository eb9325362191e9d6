"""What /health calls ready: consuming every input of the partitions it owns, deliveries ok."""

from types import SimpleNamespace

from faust.types import TP

from leadpulse.streams.metrics import Metrics, cgroup_memory_limit
from leadpulse.streams.outbox import DeliveryHealth
from leadpulse.streams.pipeline import Readiness, create_app
from leadpulse.streams.settings import Settings
from leadpulse.streams.web import _assignment, _bind_health_gauges, _not_ready


def topic(name):
    return SimpleNamespace(get_topic_name=lambda: name)


def pipeline(consuming=("scoring", "accounts"), failing=False, rebalancing=False):
    deliveries = DeliveryHealth()
    if failing:
        deliveries.failed(TimeoutError("broker away"), "scores[0]")
    topics = SimpleNamespace(
        events=topic("events"),
        by_contact=topic("by-contact"),
        cooling=topic("cooling"),
        account_members=topic("members"),
    )
    return SimpleNamespace(
        readiness=Readiness(consuming=set(consuming), deliveries=deliveries),
        topics=topics,
        app=SimpleNamespace(rebalancing=rebalancing),
    )


def owned(*partitions, topics=("events", "by-contact", "cooling", "members")):
    return {TP(name, p) for name in topics for p in partitions}


def test_a_worker_consuming_all_inputs_of_its_partitions_is_ready():
    assert _not_ready(pipeline(), owned(0, 3)) is None


def test_a_worker_whose_agent_has_not_started_is_not_ready():
    assert _not_ready(pipeline(consuming=()), owned(0)) == "the scoring and accounts agents are not consuming yet"
    assert _not_ready(pipeline(consuming=["scoring"]), owned(0)) == "the accounts agent is not consuming yet"


def test_a_worker_missing_the_account_members_of_a_partition_it_owns_is_not_ready():
    assigned = owned(0, 1) - {TP("members", 0)}
    assert _not_ready(pipeline(), assigned) == "inputs not assigned: members:0"


def test_a_worker_without_partitions_is_not_ready():
    assert _not_ready(pipeline(), set()) == "no partition assigned yet"


def test_a_worker_missing_one_input_of_a_partition_it_owns_is_not_ready():
    assigned = owned(0, 1) - {TP("cooling", 1)}
    assert _not_ready(pipeline(), assigned) == "inputs not assigned: cooling:1"


def test_a_worker_restoring_its_tables_after_an_assignment_is_not_ready():
    """Its agents wait in their batch loops meanwhile; queries would read a partial table."""
    assert _not_ready(pipeline(rebalancing=True), owned(0)) == (
        "restoring the tables of its partitions from their changelogs"
    )


def test_a_worker_whose_deliveries_fail_is_not_ready():
    assert "deliveries failing: scores[0]" in _not_ready(pipeline(failing=True), owned(0))


def test_a_worker_whose_consumer_thread_has_not_started_has_no_assignment_yet():
    app = create_app(Settings(store="memory://")).app
    assert _assignment(app) is None  # /health answers 503 "the consumer is starting", not a 500


def scraped(pipeline_, assigned):
    """The health gauges as Prometheus would read them from this worker."""
    pipeline_.metrics = Metrics.create()
    pipeline_.app.consumer = SimpleNamespace(assignment=lambda: assigned)
    _bind_health_gauges(pipeline_)
    registry = pipeline_.metrics.registry
    return {name: registry.get_sample_value(name) for name in ("leadpulse_ready", "leadpulse_restoring")} | {
        "leadpulse_deliveries_failing": registry.get_sample_value("leadpulse_deliveries_failing")
    }


def test_the_gauges_on_metrics_say_what_health_says_for_a_ready_worker():
    assert scraped(pipeline(), owned(0)) == {
        "leadpulse_ready": 1.0,
        "leadpulse_restoring": 0.0,
        "leadpulse_deliveries_failing": 0.0,
    }


def test_a_restoring_worker_is_not_ready_and_says_it_restores():
    assert scraped(pipeline(rebalancing=True), owned(0)) == {
        "leadpulse_ready": 0.0,
        "leadpulse_restoring": 1.0,
        "leadpulse_deliveries_failing": 0.0,
    }


def test_a_worker_whose_deliveries_fail_is_not_ready_and_says_so():
    assert scraped(pipeline(failing=True), owned(0)) == {
        "leadpulse_ready": 0.0,
        "leadpulse_restoring": 0.0,
        "leadpulse_deliveries_failing": 1.0,
    }


def test_the_memory_limit_is_the_cgroups_and_absent_without_one(tmp_path):
    (tmp_path / "memory.max").write_text("1073741824\n")
    assert cgroup_memory_limit(tmp_path) == 1073741824
    (tmp_path / "memory.max").write_text("max\n")
    assert cgroup_memory_limit(tmp_path) is None
    assert Metrics.create(cgroup=tmp_path).registry.get_sample_value("leadpulse_memory_limit_bytes") is None
    (tmp_path / "memory.max").unlink()
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory/memory.limit_in_bytes").write_text("536870912\n")
    assert Metrics.create(cgroup=tmp_path).registry.get_sample_value("leadpulse_memory_limit_bytes") == 536870912
    (tmp_path / "memory/memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "unlimited"
    assert cgroup_memory_limit(tmp_path) is None


def test_the_state_volume_gauges_read_the_data_folders_volume_even_before_it_exists(tmp_path):
    metrics = Metrics.create()
    metrics.watch_state_volume(tmp_path / "not-yet" / "data")
    free = metrics.registry.get_sample_value("leadpulse_state_volume_free_bytes")
    size = metrics.registry.get_sample_value("leadpulse_state_volume_size_bytes")
    assert 0 < free <= size
