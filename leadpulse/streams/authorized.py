"""What the broker's authorizer lets this client do on the worker's topics and group, asked
before the worker starts.

A principal that may describe a topic but not write it, or describe its group but not read
it, passes every other start-up check; the worker then waits forever (with READ missing on its
group, Faust logged "(Re-)joining group" and nothing else for a minute, until stopped). Kafka answers the
question directly (KIP-430: Metadata v8+ and DescribeGroups v3+ return the operations the
caller is authorized for), so the worker can name the missing ACL before it subscribes.
aiokafka has neither request in a form that returns the answer (its Metadata stops at v5,
its DescribeGroups v3 parses the v2 response), hence these two small structures.
"""

from __future__ import annotations

from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import IncompatibleBrokerVersion, TopicAuthorizationFailedError, for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Bytes, Int16, Int32, Schema, String

# org.apache.kafka.common.acl.AclOperation codes: bit `code` of an authorized-operations field
OPERATION_CODES = {
    "Read": 3,
    "Write": 4,
    "Create": 5,
    "Delete": 6,
    "Alter": 7,
    "Describe": 8,
    "DescribeConfigs": 10,
    "AlterConfigs": 11,
}
NOT_ASKED = -(2**31)  # the broker's value when it was not asked (or does not know)


class _MetadataResponseV8(Response):  # type: ignore[misc]
    API_KEY = 3
    API_VERSION = 8
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("brokers", Array(("node_id", Int32), ("host", String("utf-8")), ("port", Int32), ("rack", String("utf-8")))),
        ("cluster_id", String("utf-8")),
        ("controller_id", Int32),
        (
            "topics",
            Array(
                ("error_code", Int16),
                ("topic", String("utf-8")),
                ("is_internal", Boolean),
                (
                    "partitions",
                    Array(
                        ("error_code", Int16),
                        ("partition", Int32),
                        ("leader", Int32),
                        ("leader_epoch", Int32),
                        ("replicas", Array(Int32)),
                        ("isr", Array(Int32)),
                        ("offline_replicas", Array(Int32)),
                    ),
                ),
                ("authorized_operations", Int32),
            ),
        ),
        ("cluster_authorized_operations", Int32),
    )


class _MetadataRequestV8(RequestStruct):  # type: ignore[misc]
    API_KEY = 3
    API_VERSION = 8
    RESPONSE_TYPE = _MetadataResponseV8
    SCHEMA = Schema(
        ("topics", Array(String("utf-8"))),
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
    )


class _TopicOperations(Request[_MetadataRequestV8]):  # type: ignore[misc]
    API_KEY = 3

    def __init__(self, topics: list[str]) -> None:
        self._topics = topics

    def build(self, request_struct_class: type[_MetadataRequestV8]) -> _MetadataRequestV8:
        return request_struct_class(self._topics, False, False, True)


class _DescribeGroupsResponseV3(Response):  # type: ignore[misc]
    API_KEY = 15
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "groups",
            Array(
                ("error_code", Int16),
                ("group", String("utf-8")),
                ("state", String("utf-8")),
                ("protocol_type", String("utf-8")),
                ("protocol", String("utf-8")),
                (
                    "members",
                    Array(
                        ("member_id", String("utf-8")),
                        ("client_id", String("utf-8")),
                        ("client_host", String("utf-8")),
                        ("member_metadata", Bytes),
                        ("member_assignment", Bytes),
                    ),
                ),
                ("authorized_operations", Int32),
            ),
        ),
    )


class _DescribeGroupsRequestV3(RequestStruct):  # type: ignore[misc]
    API_KEY = 15
    API_VERSION = 3
    RESPONSE_TYPE = _DescribeGroupsResponseV3
    SCHEMA = Schema(("groups", Array(String("utf-8"))), ("include_authorized_operations", Boolean))


class _GroupOperations(Request[_DescribeGroupsRequestV3]):  # type: ignore[misc]
    API_KEY = 15

    def __init__(self, group: str) -> None:
        self._group = group

    def build(self, request_struct_class: type[_DescribeGroupsRequestV3]) -> _DescribeGroupsRequestV3:
        return request_struct_class([self._group], True)


def _operations(field: int) -> set[str] | None:
    if field == NOT_ASKED:
        return None
    return {name for name, code in OPERATION_CODES.items() if field & (1 << code)}


async def topic_operations(
    admin: AIOKafkaAdminClient, topics: list[str]
) -> tuple[dict[str, set[str] | None], dict[str, str]] | None:
    """The operations this client may perform on each topic (an empty set: it may not even
    describe it; None: the broker cannot say), and the topics the broker could not answer
    for yet, with the error: a topic just created in a cluster is not known to every broker
    at once, and the broker answering may be one that has not heard of it (LEADER_NOT_AVAILABLE,
    UNKNOWN_TOPIC_OR_PARTITION). None when the broker is older than Kafka 2.3."""
    try:
        response: Any = await admin._send_request(_TopicOperations(topics))
    except (IncompatibleBrokerVersion, NotImplementedError):
        return None
    allowed: dict[str, set[str] | None] = {}
    pending: dict[str, str] = {}
    for entry in response.to_object()["topics"]:
        code = entry["error_code"]
        if code == TopicAuthorizationFailedError.errno:
            allowed[entry["topic"]] = set()
        elif code:
            pending[entry["topic"]] = for_code(code).__name__
        else:
            allowed[entry["topic"]] = _operations(entry["authorized_operations"])
    return allowed, pending


async def group_operations(admin: AIOKafkaAdminClient, group: str) -> set[str] | None:
    """The operations this client may perform on its consumer group; None when the broker
    cannot say. A group it may not even describe raises GroupAuthorizationFailedError."""
    coordinator = await admin.find_coordinator(group)
    try:
        response: Any = await admin._send_request(_GroupOperations(group), coordinator)
    except (IncompatibleBrokerVersion, NotImplementedError):
        return None
    (entry,) = response.to_object()["groups"]
    if entry["error_code"]:
        raise for_code(entry["error_code"])()
    return _operations(entry["authorized_operations"])
