"""Before a worker subscribes: every topic it reads or writes exists with the input's
partition count, and the broker's group coordinator answers.

Left to Faust, topics are created while the consumer is already subscribing; once in
seventeen fresh starts the consumer then ignored the re-keyed and cooling topics as
missing until a restart (docs/faust-notes.md), and every fresh start logged errors about
the changelog topic and the group coordinator. A topic that exists with another partition
count would send a contact's outputs, changelog or re-keyed events to other partitions
than its state: the worker refuses to start, naming it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    CoordinatorLoadInProgressError,
    GroupAuthorizationFailedError,
    GroupCoordinatorNotAvailableError,
    KafkaError,
    NotCoordinatorForGroupError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    for_code,
)

from leadpulse.schemas.limits import RecordLimits
from leadpulse.streams.authorized import group_operations, topic_operations
from leadpulse.streams.migration import check_migrated
from leadpulse.streams.security import client_options, describe
from leadpulse.streams.settings import Settings, StartupError, env_name
from leadpulse.streams.topics import (
    ACCOUNT_MEMBERS,
    ACCOUNT_SCORES,
    BY_CONTACT,
    COOLING,
    DEAD_LETTERS,
    DELIVERY_FAILURES,
    HOT_ACCOUNTS,
    HOT_LEADS,
    NURTURE,
    OUTPUT_NAMES,
    SCORES,
    STAGE_CHANGES,
)

log = logging.getLogger(__name__)
TABLE, ACCOUNTS_TABLE = "contacts", "accounts"  # the tables' names; Faust names their changelogs after them
log = logging.getLogger(__name__)
COORDINATOR_WAIT_S = 60.0
TOPIC_METADATA_WAIT_S = 60.0  # a topic just created, until every broker of a cluster knows it
AUTHORIZATION_ERRORS = (TopicAuthorizationFailedError, ClusterAuthorizationFailedError, GroupAuthorizationFailedError)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    config: dict[str, str] = field(default_factory=dict)
    partitions: int | None = None  # None: LEADPULSE_PARTITIONS

    def partition_count(self, settings: Settings) -> int:
        return settings.partitions if self.partitions is None else self.partitions


def changelog_topic(settings: Settings, table: str = TABLE) -> str:
    return f"{settings.app_id}-{table}-changelog"


def lifetimes(settings: Settings) -> tuple[dict[str, str], dict[str, str]]:
    """How long a record may stay, set explicitly on every topic the worker creates (event
    topics, compacted topics): what bounds an erased person's data in Kafka (docs/erasure.md).
    An event topic deletes a segment once its newest record is `event_retention` old, and
    rolls one every `compaction_lag`. A compacted topic rolls its active segment on the first
    append after `compaction_lag` (the worker appends one every `compaction_lag`: see
    agents.erasure), cleans it within `compaction_lag` and drops tombstones `compaction_lag`
    after that."""
    lag = str(settings.compaction_lag)
    events = {"cleanup.policy": "delete", "retention.ms": str(settings.event_retention), "segment.ms": lag}
    compacted = {
        "cleanup.policy": "compact",
        "segment.ms": lag,
        "min.compaction.lag.ms": "0",
        "max.compaction.lag.ms": lag,
        "delete.retention.ms": lag,
    }
    return events, compacted


def common_config(settings: Settings) -> dict[str, str]:
    """What every topic LeadPulse creates gets: the configured min.insync.replicas and compression."""
    common = {}
    if settings.min_insync_replicas is not None:
        common["min.insync.replicas"] = str(settings.min_insync_replicas)
    if settings.topic_compression is not None:
        common["compression.type"] = settings.topic_compression
    return common


def event_topic(settings: Settings, name: str) -> TopicSpec:
    """A topic of events or alerts (personal data): deleted `event_retention` after it was written."""
    return TopicSpec(name, {**common_config(settings), **lifetimes(settings)[0]})


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic of the worker, with the configuration it is created with (and, when the
    worker may not create topics, checked against)."""
    common = common_config(settings)
    event_lifetime, compacted_lifetime = lifetimes(settings)
    events, compacted = {**common, **event_lifetime}, {**common, **compacted_lifetime}
    ticks = {**events, "retention.ms": str(min(86_400_000, settings.event_retention))}
    return [
        TopicSpec(settings.input_topic, events),
        TopicSpec(settings.internal_topic(BY_CONTACT), events),
        TopicSpec(settings.internal_topic(COOLING), ticks),
        TopicSpec(settings.topic(SCORES), compacted),
        TopicSpec(settings.topic(STAGE_CHANGES), events),
        TopicSpec(settings.topic(HOT_LEADS), events),
        TopicSpec(settings.topic(DEAD_LETTERS), events),
        TopicSpec(changelog_topic(settings), compacted),
        TopicSpec(settings.internal_topic(ACCOUNT_MEMBERS), events),
        TopicSpec(settings.topic(ACCOUNT_SCORES), compacted),
        TopicSpec(settings.topic(HOT_ACCOUNTS), events),
        TopicSpec(settings.topic(NURTURE), events),
        TopicSpec(changelog_topic(settings, ACCOUNTS_TABLE), compacted),
        TopicSpec(settings.erasure_topic, events),
        # Faust's partition assignor's own topic: Faust creates it unless it exists
        TopicSpec(f"{settings.app_id}-__assignor-__leader", common, partitions=1),
    ]


def notify_topic_specs(settings: Settings) -> list[TopicSpec]:
    """The topic `leadpulse notify` writes beside the worker's: its delivery-failures topic.
    It holds alerts (personal data), so it is an event topic like the alert topics: deleted
    `event_retention` after it was written (docs/erasure.md), with the min.insync.replicas its
    acks=all writes rely on. Not among the worker's topics: the worker neither reads nor
    writes it, so its start-up does not require it, and its principal gets no ACL on it."""
    return [event_topic(settings, settings.internal_topic(DELIVERY_FAILURES))]


def admin_topic_specs(settings: Settings) -> list[TopicSpec]:
    """What `leadpulse topics create` and `topics commands` make: the worker's topics and notify's."""
    return topic_specs(settings) + notify_topic_specs(settings)


def create_commands(settings: Settings) -> list[str]:
    """kafka-topics.sh lines that create the worker's and notify's topics, for an administrator."""
    lines = []
    for spec in admin_topic_specs(settings):
        configs = "".join(f" --config {key}={value}" for key, value in sorted(spec.config.items()))
        lines.append(
            f"kafka-topics.sh --bootstrap-server {settings.bootstrap_servers} --command-config admin.properties "
            f"--create --if-not-exists --topic {spec.name} --partitions {spec.partition_count(settings)} "
            f"--replication-factor {settings.replication_factor}{configs}"
        )
    return lines


TOPIC_OPERATIONS = {
    "input": ("Read", "Describe"),
    "internal": ("Read", "Write", "Describe"),
    "output": ("Write", "Describe"),
}


@dataclass(frozen=True)
class AclBinding:
    """One resource and the operations a service's principal is allowed on it: what both
    the printed kafka-acls.sh lines and deploy/kafka/acls.sh are made from, so they cannot
    drift apart, and what the start-up check compares the broker's answer with."""

    resource: str  # "topic" or "group"
    name: str
    operations: tuple[str, ...]

    def line(self, principal: str) -> str:
        """deploy/kafka/acls.sh's input format."""
        return f"{principal} {self.resource} {self.name} {','.join(self.operations)}"


def acl_bindings(settings: Settings) -> list[AclBinding]:
    """What the worker needs and no more: its own topics (read what it consumes, write what it
    produces), its consumer group, DescribeConfigs (the start-up check, and the record limits
    the agents read), and Create on them when it creates its topics itself."""
    outputs = {settings.topic(name) for name in OUTPUT_NAMES}
    extra = ("DescribeConfigs",) if not settings.create_topics else ("Create", "DescribeConfigs")
    bindings = []
    for spec in topic_specs(settings):
        kind = (
            "input"
            if spec.name in (settings.input_topic, settings.erasure_topic)
            else "output"
            if spec.name in outputs
            else "internal"
        )
        bindings.append(AclBinding("topic", spec.name, TOPIC_OPERATIONS[kind] + extra))
    bindings.append(AclBinding("group", settings.app_id, ("Read", "Describe")))
    return bindings


def notify_groups(settings: Settings) -> tuple[str, str]:
    """`leadpulse notify run`'s consumer group, and `notify redrive`'s."""
    return f"{settings.app_id}-notify", f"{settings.app_id}-notify-redrive"


def notify_acl_bindings(settings: Settings, roles: Iterable[str]) -> list[AclBinding]:
    """What `leadpulse notify` (run and redrive, one principal) needs and no more: READ on
    the output topics its file reads (`roles`: hot-leads, hot-accounts...), WRITE on the
    delivery-failures topic (and READ: redrive reads it), DESCRIBE on each (metadata, and
    its start-up check), its two consumer groups, and CREATE on those topics when it may
    create them itself (LEADPULSE_CREATE_TOPICS=on: it creates the ones still missing). No
    DescribeConfigs: it reads no topic configuration."""
    create = ("Create",) if settings.create_topics else ()
    (failures,) = notify_topic_specs(settings)
    return [
        *(AclBinding("topic", settings.topic(role), ("Read", "Describe", *create)) for role in roles),
        AclBinding("topic", failures.name, ("Read", "Write", "Describe", *create)),
        *(AclBinding("group", group, ("Read", "Describe")) for group in notify_groups(settings)),
    ]


def acl_commands(settings: Settings, principal: str, bindings: Sequence[AclBinding] | None = None) -> list[str]:
    """kafka-acls.sh lines granting `principal` `bindings` (the worker's, acl_bindings, by default)."""
    base = f"kafka-acls.sh --bootstrap-server {settings.bootstrap_servers} --command-config admin.properties --add"
    return [
        f"{base} --allow-principal {principal}{''.join(f' --operation {op}' for op in binding.operations)} "
        f"--{binding.resource} {binding.name}"
        for binding in (acl_bindings(settings) if bindings is None else bindings)
    ]


async def prepare_topics(settings: Settings, *, create: bool | None = None, migrating: bool = False) -> list[str]:
    """Create the missing topics (unless `create` is False, or LEADPULSE_CREATE_TOPICS=off),
    check the partition count and configuration of all of them, wait for the group
    coordinator, and (unless `migrating` them) check that no internal topic of an older
    version holds records the app has not read; raise StartupError naming what is wrong.
    Returns the topics created."""
    create = settings.create_topics if create is None else create
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        specs = topic_specs(settings)
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if missing and not create:
            names = ", ".join(spec.name for spec in missing)
            raise StartupError(
                f"topics missing: {names}; {env_name('create_topics')}=off, so an administrator creates them "
                "(leadpulse topics create, or the commands printed by leadpulse topics commands)"
            )
        if missing:
            await create_topics(admin, settings, missing)
        await _check_partitions(admin, settings, specs)
        if not create:
            await _check_configs(admin, specs)
        else:
            await _warn_lifetimes(admin, [spec for spec in specs if spec.name in existing])
        await _check_topic_acls(admin, settings)
        await _wait_for_coordinator(admin, settings)
        if not migrating:
            await check_migrated(settings)
        return [spec.name for spec in missing]
    finally:
        await admin.close()


async def create_missing(settings: Settings, specs: Sequence[TopicSpec]) -> list[str]:
    """Create those of `specs` that do not exist yet (whatever LEADPULSE_CREATE_TOPICS says:
    the caller decides); returns their names."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if missing:
            await create_topics(admin, settings, missing)
        return [spec.name for spec in missing]
    finally:
        await admin.close()


async def create_topics(admin: AIOKafkaAdminClient, settings: Settings, specs: list[TopicSpec]) -> None:
    """aiokafka returns the broker's per-topic errors instead of raising them: a refusal
    (no ACL, a replication factor above the broker count, a bad config) is named here
    rather than found missing a minute later."""
    try:
        response = await admin.create_topics(
            [
                NewTopic(spec.name, settings.partitions, settings.replication_factor, topic_configs=spec.config)
                for spec in specs
            ]
        )
    except TopicAlreadyExistsError:  # another worker of the group created it meanwhile
        return
    for topic, code, *rest in response.topic_errors:
        error = for_code(code)
        if code == 0 or error is TopicAlreadyExistsError:
            continue
        message = rest[0] if rest and rest[0] else error.description
        if error in AUTHORIZATION_ERRORS:
            raise StartupError(
                f"the broker refused to create topic {topic} for {describe(settings)} ({error.__name__}): grant "
                f"CREATE on it, or have an administrator create the topics and set {env_name('create_topics')}=off"
            )
        raise StartupError(f"the broker refused to create topic {topic}: {message} ({error.__name__})")


async def _check_partitions(admin: AIOKafkaAdminClient, settings: Settings, specs: list[TopicSpec]) -> None:
    names = [spec.name for spec in specs]
    deadline = time.monotonic() + COORDINATOR_WAIT_S
    while True:
        described = await admin.describe_topics(names)
        denied = [entry["topic"] for entry in described if for_code(entry["error_code"]) in AUTHORIZATION_ERRORS]
        if denied:
            (binding,) = (binding for binding in acl_bindings(settings) if binding.name == denied[0])
            raise StartupError(
                f"{describe(settings)} may not DESCRIBE topic {denied[0]} (TopicAuthorizationFailedError): "
                f"grant {_grant(binding)} on it ({_hint('worker')})"
            )
        counts = {entry["topic"]: len(entry["partitions"]) for entry in described if not entry["error_code"]}
        replicas = {
            entry["topic"]: min(len(p["replicas"]) for p in entry["partitions"])
            for entry in described
            if not entry["error_code"] and entry["partitions"]
        }
        if len(counts) == len(names) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)  # just created: metadata is on its way
    for spec in specs:
        name = spec.name
        found = counts.get(name)
        if found is None:
            raise StartupError(f"topic {name} does not exist and could not be created")
        if found != spec.partition_count(settings) and spec.partitions is None:
            raise StartupError(
                f"topic {name} has {found} partitions, LEADPULSE_PARTITIONS is {settings.partitions}: every topic "
                "the worker reads or writes needs the same count (use the topic's count, or other topic names)"
            )
        if replicas.get(name, settings.replication_factor) < settings.replication_factor:
            raise StartupError(
                f"topic {name} has {replicas[name]} replicas, {env_name('replication_factor')} is "
                f"{settings.replication_factor}"
            )


async def _warn_lifetimes(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> None:
    """Topics that existed before the worker set lifetimes on the topics it creates (an
    upgrade) keep the broker's defaults, and the erasure delay does not hold for them: say so
    in one line, with where the fix is. Without DESCRIBE_CONFIGS nothing can be told (the
    record limits then fall back to LEADPULSE_MAX_MESSAGE_BYTES, with their own warning)."""
    lifetime_keys = {key for config in lifetimes(Settings()) for key in config}
    try:
        actual = await _topic_configs(admin, [spec.name for spec in specs])
    except (StartupError, KafkaError):
        return
    late = [
        spec.name
        for spec in specs
        if any(
            actual.get(spec.name, {}).get(key) != value for key, value in spec.config.items() if key in lifetime_keys
        )
    ]
    if late:
        log.warning(
            "leadpulse: topics made without the retention and compaction settings of the erasure delay: %s%s; "
            "apply them with kafka-configs.sh --alter (docs/erasure.md, leadpulse topics commands)",
            ", ".join(late[:3]),
            f" and {len(late) - 3} more" if len(late) > 3 else "",
        )


async def _topic_configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    """The configuration of each topic, defaults included, as the broker describes it."""
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
    actual: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.resources:
            error_code, _message, _type, name, entries = resource[:5]
            if for_code(error_code) in AUTHORIZATION_ERRORS:
                raise StartupError(f"not allowed to read the configuration of topic {name}: grant DESCRIBE_CONFIGS")
            actual[name] = {entry[0]: entry[1] for entry in entries}
    return actual


async def read_record_limits(settings: Settings, names: list[str]) -> RecordLimits:
    """The largest record each topic of `names` takes (its max.message.bytes, and its
    compression.type when the broker recompresses; LEADPULSE_MAX_MESSAGE_BYTES at most): the
    worker never sends a larger one (streams/outbox.py). Read when the agents start, so a
    limit an administrator lowered applies from the next start. A worker not allowed to read
    topic configurations takes LEADPULSE_MAX_MESSAGE_BYTES for every topic, and says so."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        configs = await _topic_configs(admin, names)
    except StartupError as error:
        log.warning("%s; assuming every topic takes records of %d bytes", error, settings.max_message_bytes)
        return RecordLimits.for_topics(settings.max_message_bytes)
    finally:
        await admin.close()
    return RecordLimits.for_topics(
        settings.max_message_bytes,
        {
            name: (int(config["max.message.bytes"]), config.get("compression.type"))
            for name, config in configs.items()
            if config.get("max.message.bytes", "").isdigit()
        },
    )


async def _check_configs(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> None:
    """Topics an administrator created must have the configuration the worker relies on (a
    changelog that is not compacted loses state; one that deletes old records loses it too)."""
    actual = await _topic_configs(admin, [spec.name for spec in specs])
    for spec in specs:
        for key, wanted in spec.config.items():
            found = actual.get(spec.name, {}).get(key)
            if found != wanted:
                raise StartupError(
                    f"topic {spec.name} has {key}={found}, the worker needs {key}={wanted} "
                    "(kafka-configs.sh --alter, or see leadpulse topics commands)"
                )


# Checked after the fact: Create and DescribeConfigs are only needed by the steps before.
USED_WHILE_RUNNING = ("Read", "Write", "Describe")


def _missing(binding: AclBinding, allowed: set[str]) -> list[str]:
    return [op.upper() for op in binding.operations if op in USED_WHILE_RUNNING and op not in allowed]


def _grant(binding: AclBinding) -> str:
    return " and ".join(", ".join(op.upper() for op in binding.operations if op in USED_WHILE_RUNNING).rsplit(", ", 1))


def _hint(service: str) -> str:
    return "leadpulse topics commands" + ("" if service == "worker" else f" --service {service}")


async def check_acls(settings: Settings, bindings: Sequence[AclBinding], service: str) -> None:
    """For a service beside the worker (notify): ask the broker what this principal may do
    on each topic and group of `bindings` (KIP-430), and raise StartupError naming the first
    ACL missing, as the worker's start-up does. Without it a consumer without READ waits
    forever to join its group, and a producer without WRITE retries its failure records."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        await _check_topic_acls(admin, settings, [b for b in bindings if b.resource == "topic"], service)
        for group in (b for b in bindings if b.resource == "group"):
            await _wait_for_coordinator(admin, settings, group)
    finally:
        await admin.close()


async def _check_topic_acls(
    admin: AIOKafkaAdminClient, settings: Settings, topics: list[AclBinding] | None = None, service: str = "worker"
) -> None:
    """A topic the worker may describe but not read or write passes every check above, and
    the worker would then wait forever (authorized.py); name the missing ACL instead. A
    topic the broker cannot answer for yet (just created, in a cluster) is asked again.
    `topics`: the worker's unless given."""
    if topics is None:
        topics = [binding for binding in acl_bindings(settings) if binding.resource == "topic"]
    deadline = time.monotonic() + TOPIC_METADATA_WAIT_S
    while True:
        answer = await topic_operations(admin, [binding.name for binding in topics])
        if answer is None:
            return
        allowed, pending = answer
        if not pending:
            break
        if time.monotonic() > deadline:
            name, error = next(iter(pending.items()))
            raise StartupError(
                f"the broker did not describe topic {name} within {TOPIC_METADATA_WAIT_S:.0f} s ({error})"
            )
        await asyncio.sleep(0.2)
    for binding in topics:
        operations = allowed.get(binding.name)
        missing = [] if operations is None else _missing(binding, operations)
        if missing:
            raise StartupError(
                f"{describe(settings)} may not {' or '.join(missing)} topic {binding.name} "
                f"(TopicAuthorizationFailedError): grant {_grant(binding)} on it ({_hint(service)})"
            )


def _check_group_acls(settings: Settings, allowed: set[str] | None, binding: AclBinding) -> None:
    """A group the worker may describe but not read passes the coordinator check, and the
    worker would then wait forever for its JoinGroup (authorized.py)."""
    missing = [] if allowed is None else _missing(binding, allowed)
    if missing:
        raise StartupError(
            f"{describe(settings)} may not {' or '.join(missing)} consumer group {binding.name!r} "
            f"(GroupAuthorizationFailedError): grant {_grant(binding)} on it"
        )


async def _wait_for_coordinator(
    admin: AIOKafkaAdminClient, settings: Settings, group: AclBinding | None = None
) -> None:
    """A fresh broker creates its offsets topic on the first group request, and loads its
    partitions a moment later; answer that here instead of in the worker's log. `group`: the
    worker's unless given."""
    if group is None:
        (group,) = (binding for binding in acl_bindings(settings) if binding.resource == "group")
    deadline = time.monotonic() + COORDINATOR_WAIT_S
    while True:
        try:
            await admin.list_consumer_group_offsets(group.name)
            allowed = await group_operations(admin, group.name)
            break
        except GroupAuthorizationFailedError:
            raise StartupError(
                f"{describe(settings)} may not use consumer group {group.name!r} (GroupAuthorizationFailedError): "
                f"grant {_grant(group)} on it"
            ) from None
        except (GroupCoordinatorNotAvailableError, NotCoordinatorForGroupError, CoordinatorLoadInProgressError):
            if time.monotonic() > deadline:
                raise StartupError(
                    f"the broker's group coordinator did not answer within {COORDINATOR_WAIT_S:.0f} s"
                ) from None
            await asyncio.sleep(0.2)
        except KafkaError as error:
            raise StartupError(f"the broker refused the consumer group {group.name!r}: {error!r}") from None
    _check_group_acls(settings, allowed, group)
