"""The dead-letter metric's `field` label takes a fixed set of values, whatever keys a
producer writing straight to Kafka invents."""

import json
from pathlib import Path

import orjson

from leadpulse.schemas.outputs import KNOWN_FIELDS, dead_letter_label
from tests.agents.test_scoring_agent import settled
from tests.factories import raw_event

SCHEMAS = Path(__file__).resolve().parents[2] / "leadpulse" / "schemas" / "json"


def test_the_known_fields_are_the_input_schemas_top_level_fields_plus_key_and_tick_time():
    documented = {
        name
        for schema in ("event.schema.json", "segment-message.schema.json")
        for name in json.loads((SCHEMAS / schema).read_text())["properties"]
    }
    assert documented | {"key", "at_ms"} == KNOWN_FIELDS


def test_a_label_is_a_known_top_level_field_the_record_or_other():
    assert dead_letter_label("properties.plan[3].name") == "properties"
    assert dead_letter_label("occurred_at") == "occurred_at"
    assert dead_letter_label("") == "(record)"
    assert dead_letter_label("x" * 2_000) == "(other)"
    assert dead_letter_label("eventId.deep") == "(other)"


def dead_letter_series(scorer) -> dict[str, float]:
    return {
        sample.labels["field"]: sample.value
        for metric in scorer.metrics.registry.collect()
        if metric.name == "leadpulse_dead_letters"
        for sample in metric.samples
        if sample.name == "leadpulse_dead_letters_total"
    }


async def test_invented_top_level_keys_share_one_series(scorer, sent):
    before = dead_letter_series(scorer)
    deep: object = "x"
    for _ in range(12):
        deep = [deep]
    async with scorer.agent.test_context() as agent:
        for n in range(20):  # twenty producers' own keys, each nested past max_depth
            document = raw_event(event_id=f"invented-{n}", contact_id="agent-labels", **{f"k{n}-" + "y" * 500: deep})
            await agent.put(orjson.dumps(document), key=b"agent-labels")
        assert await settled(lambda: len(sent("dead_letters")) == 20)
    after = dead_letter_series(scorer)
    assert set(after) - set(before) <= {"(other)"}
    assert after["(other)"] - before.get("(other)", 0.0) == 20
    assert all(letter["field"].startswith("k") for _, letter in sent("dead_letters"))  # named in full there
