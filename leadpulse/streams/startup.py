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
import time
from contextlib import suppress
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import GroupCoordinatorNotAvailableError, KafkaError, TopicAlreadyExistsError

from leadpulse.streams.settings import Settings
from leadpulse.streams.topics import (
    ACCOUNT_MEMBERS,
    ACCOUNT_SCORES,
    BY_CONTACT,
    COOLING,
    DEAD_LETTERS,
    HOT_ACCOUNTS,
    HOT_LEADS,
    SCORES,
    STAGE_CHANGES,
)

TABLE, ACCOUNTS_TABLE = "contacts", "accounts"  # the tables' names; Faust names their changelogs after them
COORDINATOR_WAIT_S = 60.0


class StartupError(RuntimeError):
    """The cluster is not in a state the worker can run against; the message says why."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    config: dict[str, str] = field(default_factory=dict)


def changelog_topic(settings: Settings, table: str = TABLE) -> str:
    return f"{settings.app_id}-{table}-changelog"


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic of the worker, with the configuration it is created with."""
    compacted = {"cleanup.policy": "compact"}
    return [
        TopicSpec(settings.input_topic),
        TopicSpec(settings.topic(BY_CONTACT)),
        TopicSpec(settings.topic(COOLING), {"retention.ms": str(86_400_000)}),
        TopicSpec(settings.topic(SCORES), compacted),
        TopicSpec(settings.topic(STAGE_CHANGES)),
        TopicSpec(settings.topic(HOT_LEADS)),
        TopicSpec(settings.topic(DEAD_LETTERS)),
        TopicSpec(changelog_topic(settings), compacted),
        TopicSpec(settings.topic(ACCOUNT_MEMBERS)),
        TopicSpec(settings.topic(ACCOUNT_SCORES), compacted),
        TopicSpec(settings.topic(HOT_ACCOUNTS)),
        TopicSpec(changelog_topic(settings, ACCOUNTS_TABLE), compacted),
    ]


async def prepare_topics(settings: Settings) -> None:
    """Create the missing topics, check the partition count of all of them, and wait for the
    group coordinator; raise StartupError naming what is wrong."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        specs = topic_specs(settings)
        missing = [spec for spec in specs if spec.name not in set(await admin.list_topics())]
        if missing:
            with suppress(TopicAlreadyExistsError):  # another worker of the group created it meanwhile
                await admin.create_topics(
                    [
                        NewTopic(spec.name, settings.partitions, settings.replication_factor, topic_configs=spec.config)
                        for spec in missing
                    ]
                )
        await _check_partitions(admin, settings, [spec.name for spec in specs])
        await _wait_for_coordinator(admin, settings)
    finally:
        await admin.close()


async def _check_partitions(admin: AIOKafkaAdminClient, settings: Settings, names: list[str]) -> None:
    deadline = time.monotonic() + COORDINATOR_WAIT_S
    while True:
        described = await admin.describe_topics(names)
        counts = {entry["topic"]: len(entry["partitions"]) for entry in described if not entry["error_code"]}
        if len(counts) == len(names) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)  # just created: metadata is on its way
    for name in names:
        found = counts.get(name)
        if found is None:
            raise StartupError(f"topic {name} does not exist and could not be created")
        if found != settings.partitions:
            raise StartupError(
                f"topic {name} has {found} partitions, LEADPULSE_PARTITIONS is {settings.partitions}: every topic "
                "the worker reads or writes needs the same count (use the topic's count, or other topic names)"
            )


async def _wait_for_coordinator(admin: AIOKafkaAdminClient, settings: Settings) -> None:
    """A fresh broker creates its offsets topic on the first group request; answer that here
    instead of in the worker's log."""
    deadline = time.monotonic() + COORDINATOR_WAIT_S
    while True:
        try:
            await admin.list_consumer_group_offsets(settings.app_id)
            return
        except GroupCoordinatorNotAvailableError:
            if time.monotonic() > deadline:
                raise StartupError(
                    f"the broker's group coordinator did not answer within {COORDINATOR_WAIT_S:.0f} s"
                ) from None
            await asyncio.sleep(0.2)
        except KafkaError as error:
            raise StartupError(f"the broker refused the consumer group {settings.app_id!r}: {error!r}") from None
