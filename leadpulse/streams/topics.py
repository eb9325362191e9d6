"""Every topic LeadPulse reads or writes, declared in one place. Keys are contact ids;
values are raw bytes (JSON encoded with orjson by schemas.outputs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faust

from leadpulse.streams.settings import Settings

RAW: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
# Internal: written and read by one app only, so named by its app id (APP_ID-events-by-contact,
# settings.internal_topic), like the tables' changelogs (APP_ID-contacts-changelog): apps on one
# cluster, a replay beside the live app, never read each other's records.
BY_CONTACT, COOLING, ACCOUNT_MEMBERS = INTERNAL_NAMES = (
    "events-by-contact",  # re-keyed inputs, and identity stitching's links and hand-overs
    "cooling-ticks",
    "account-members",  # keyed by account id: contacts' member and leave records
)
# Written by `leadpulse notify` (not the worker): alerts a destination could not take, for
# `leadpulse notify redrive`; named by the app id, so a replay app's failures never mix with
# the live app's (settings.internal_topic).
DELIVERY_FAILURES = "delivery-failures"
# Outputs: the product's contract, named by LEADPULSE_TOPIC_PREFIX (settings.topic).
SCORES, STAGE_CHANGES, HOT_LEADS, DEAD_LETTERS, ACCOUNT_SCORES, HOT_ACCOUNTS, NURTURE = OUTPUT_NAMES = (
    "contact-scores",
    "stage-changes",
    "hot-leads",
    "dead-letters",
    "account-scores",
    "hot-accounts",
    "nurture",  # contacts that need content rather than a salesperson (scoring.nurture)
)


@dataclass(frozen=True)
class Topics:
    events: Any  # input: engagement, profile and CRM events, from producers
    # internal: inputs that arrived unkeyed or on the wrong partition, re-keyed; and identity
    # stitching's records (links, hand-overs: JSON arrays, where re-keyed inputs are objects)
    by_contact: Any
    cooling: Any  # internal: "re-read this contact now" ticks from the cooling timer
    scores: Any  # compacted: the latest snapshot per contact
    stage_changes: Any
    hot_leads: Any
    dead_letters: Any
    account_members: Any  # internal: contacts' member records, re-keyed by account id
    account_scores: Any  # compacted: the latest snapshot per account
    hot_accounts: Any
    nurture: Any
    erasures: Any  # input: contact_erased requests, written only by the erase command's principal

    @property
    def outputs(self) -> tuple[Any, ...]:
        return (
            self.scores,
            self.stage_changes,
            self.hot_leads,
            self.dead_letters,
            self.account_members,
            self.account_scores,
            self.hot_accounts,
            self.nurture,
        )

    @property
    def all(self) -> tuple[Any, ...]:
        """Inputs and outputs: each is read or written by partition number, so all of them
        (and the tables' changelogs) need the same partition count."""
        return (self.events, self.by_contact, self.cooling, self.erasures, *self.outputs)

    def scoring_sources(self, app: faust.App) -> Any:
        """The scoring agent reads all four co-partitioned inputs, so one table serves them.
        Declared (created if missing, with the table's partition count) before subscribing."""
        return app.topic(
            self.events.get_topic_name(),
            self.by_contact.get_topic_name(),
            self.cooling.get_topic_name(),
            self.erasures.get_topic_name(),
            partitions=self.events.partitions,
            replicas=self.events.replicas,
            internal=True,
            **RAW,
        )


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    partitions, replicas = settings.partitions, settings.replication_factor

    def topic(name: str, **options: Any) -> Any:
        return app.topic(name, partitions=partitions, replicas=replicas, **RAW, **options)

    internal, output = settings.internal_topic, settings.topic
    return Topics(
        events=topic(settings.input_topic),
        by_contact=topic(internal(BY_CONTACT), internal=True),
        cooling=topic(internal(COOLING), internal=True, retention=86_400.0),
        scores=topic(output(SCORES), internal=True, compacting=True),
        stage_changes=topic(output(STAGE_CHANGES), internal=True),
        hot_leads=topic(output(HOT_LEADS), internal=True),
        dead_letters=topic(output(DEAD_LETTERS), internal=True),
        account_members=topic(internal(ACCOUNT_MEMBERS), internal=True),
        account_scores=topic(output(ACCOUNT_SCORES), internal=True, compacting=True),
        hot_accounts=topic(output(HOT_ACCOUNTS), internal=True),
        nurture=topic(output(NURTURE), internal=True),
        erasures=topic(settings.erasure_topic, internal=True),
    )


async def partition_mismatch(producer: Any, topics: Sequence[Any], partitions: int) -> str | None:
    """The agent writes a contact's outputs and changelog to the partition number its input
    came from: a topic created elsewhere with another count would scatter them."""
    for topic in topics:
        name = topic.get_topic_name()
        found = len(await producer.partitions_for(name))
        if found != partitions:
            return (
                f"topic {name} has {found} partitions, LEADPULSE_PARTITIONS is {partitions}: "
                "every output topic and the table changelog need the input's partition count"
            )
    return None
