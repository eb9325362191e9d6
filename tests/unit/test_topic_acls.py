"""The start-up ACL check reads what the broker says of each topic; a topic a broker of a
cluster has not heard of yet (just created) is asked again, not taken for a missing ACL.
The answers are the broker's DescribeTopics (KIP-430) fields, replayed without a broker."""

from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka.errors import LeaderNotAvailableError, TopicAuthorizationFailedError

from leadpulse.streams import startup
from leadpulse.streams.authorized import OPERATION_CODES
from leadpulse.streams.settings import Settings, StartupError

SETTINGS = Settings()
TOPICS = [binding.name for binding in startup.acl_bindings(SETTINGS) if binding.resource == "topic"]
EVERYTHING = sum(1 << code for code in OPERATION_CODES.values())


class Answer:
    def __init__(self, topics: list[dict[str, Any]]) -> None:
        self.topics = topics

    def to_object(self) -> dict[str, Any]:
        return {"topics": self.topics}


class Broker:
    """Answers each DescribeTopics with the next of `answers` (each: topic -> error code, 0 = known)."""

    def __init__(self, answers: list[dict[str, int]]) -> None:
        self.answers: Iterator[dict[str, int]] = iter(answers)
        self.asked = 0

    async def _send_request(self, request: Any) -> Answer:
        self.asked += 1
        errors = next(self.answers)
        return Answer(
            [
                {"topic": topic, "error_code": errors.get(topic, 0), "authorized_operations": EVERYTHING}
                for topic in TOPICS
            ]
        )


async def test_a_topic_not_yet_known_to_the_broker_answering_is_asked_again():
    broker = Broker([{TOPICS[1]: LeaderNotAvailableError.errno}, {}])
    await startup._check_topic_acls(broker, SETTINGS)  # type: ignore[arg-type]
    assert broker.asked == 2


async def test_a_topic_still_unknown_at_the_deadline_is_named_with_the_error(monkeypatch):
    monkeypatch.setattr(startup, "TOPIC_METADATA_WAIT_S", 0.0)
    broker = Broker([{TOPICS[1]: LeaderNotAvailableError.errno}] * 2)
    with pytest.raises(StartupError, match=rf"did not describe topic {TOPICS[1]} .*LeaderNotAvailableError"):
        await startup._check_topic_acls(broker, SETTINGS)  # type: ignore[arg-type]


async def test_a_topic_the_client_may_not_describe_is_a_missing_acl():
    broker = Broker([{TOPICS[0]: TopicAuthorizationFailedError.errno}])
    with pytest.raises(StartupError, match=rf"may not READ or DESCRIBE topic {TOPICS[0]} "):
        await startup._check_topic_acls(broker, SETTINGS)  # type: ignore[arg-type]
