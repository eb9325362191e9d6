"""Topic names: what an app reads for itself is named by its app id, what it publishes by the
prefix. Two apps on one cluster (the live app and a replay under new rules) then never read
each other's records, and a replay given its own prefix never writes into the live outputs."""

from leadpulse.streams.migration import renamed
from leadpulse.streams.settings import Settings
from leadpulse.streams.startup import acl_bindings, topic_specs
from leadpulse.streams.topics import INTERNAL_NAMES, OUTPUT_NAMES

LIVE = Settings(app_id="leadpulse", topic_prefix="lp.", input_topic="lp.events")


def consumed(settings: Settings) -> set[str]:
    """The topics the worker reads: those its ACLs let it read."""
    return {b.name for b in acl_bindings(settings) if b.resource == "topic" and "Read" in b.operations}


def test_the_internal_topics_and_changelogs_are_named_by_the_app_id():
    names = {spec.name for spec in topic_specs(LIVE)}
    assert {f"leadpulse-{name}" for name in INTERNAL_NAMES} <= names
    assert {"leadpulse-contacts-changelog", "leadpulse-accounts-changelog", "leadpulse-__assignor-__leader"} <= names
    assert consumed(LIVE) - {LIVE.input_topic, LIVE.erasure_topic} == {
        "leadpulse-events-by-contact",
        "leadpulse-cooling-ticks",
        "leadpulse-account-members",
        "leadpulse-contacts-changelog",
        "leadpulse-accounts-changelog",
        "leadpulse-__assignor-__leader",
    }


def test_the_outputs_are_named_by_the_prefix_and_only_written():
    outputs = {f"lp.{name}" for name in OUTPUT_NAMES}
    assert outputs <= {spec.name for spec in topic_specs(LIVE)}
    assert not outputs & consumed(LIVE)


def test_a_replay_under_a_new_app_id_reads_nothing_the_live_app_writes_even_with_the_same_prefix():
    replay = Settings(app_id="leadpulse-rescore", topic_prefix="lp.", input_topic="lp.events")
    # the input and its erasure requests, which both must honour, and nothing else
    assert consumed(LIVE) & consumed(replay) == {"lp.events", "lp.events.erasure-requests"}


def test_a_replay_with_its_own_prefix_shares_only_the_input_and_its_erasures_with_the_live_app():
    replay = Settings(app_id="leadpulse-rescore", topic_prefix="lp-rescore.", input_topic="lp.events")
    live_topics, replay_topics = ({spec.name for spec in topic_specs(s)} for s in (LIVE, replay))
    assert live_topics & replay_topics == {"lp.events", "lp.events.erasure-requests"}


def test_an_upgrade_moves_each_prefix_named_internal_topic_to_its_app_id_name():
    assert renamed(LIVE) == {
        "lp.events-by-contact": "leadpulse-events-by-contact",
        "lp.cooling-ticks": "leadpulse-cooling-ticks",
        "lp.account-members": "leadpulse-account-members",
    }
    assert renamed(Settings(app_id="leadpulse", topic_prefix="leadpulse-")) == {}, "the names did not change"
