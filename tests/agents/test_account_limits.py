"""The accounts agent writes no record larger than its topic takes (docs/guarantees.md#bounds):
a member record the account could not hold in every top place is dead-lettered with its
cause, the contact counts as gone from the account, and the agent goes on."""

import hashlib

import pytest

from leadpulse.agents.accounts import AccountsAgent
from leadpulse.schemas.limits import RecordLimits, record_bytes
from leadpulse.scoring.accounts import Member, member_to_bytes
from tests.agents.test_record_limits import written
from tests.agents.test_scoring_agent import settled
from tests.factories import T0

ACCOUNT = "limits-agent.example"
PADDED = (("department", "\x01" * 333),)  # 2 KB as stored: one fits 5,000 bytes, three do not


@pytest.fixture(scope="module")
def accounts(scorer, capture):
    return AccountsAgent.attach(scorer.pipeline, lambda: capture)


@pytest.fixture
def small_account_scores(scorer, accounts, monkeypatch):
    topic = scorer.topics.account_scores.get_topic_name()
    limits = RecordLimits(topics={topic: 5_000})
    monkeypatch.setattr(scorer.pipeline, "record_limits", limits)
    return topic, limits


def member(name: str, version: int, attributes=(), account: str = ACCOUNT, score: int = 60) -> bytes:
    contact = f"{name}@{account}"
    return member_to_bytes(Member(contact, T0 + version, score=score, attributes=attributes, version=version))


def published(scorer, account: str = ACCOUNT):
    aggregate = scorer.pipeline.accounts.aggregate(account)
    return None if aggregate is None else aggregate.published


async def test_a_member_record_too_large_for_the_accounts_top_places_is_dead_lettered_and_the_contact_leaves(
    scorer, accounts, capture, sent, small_account_scores
):
    topic, limits = small_account_scores
    key = ACCOUNT.encode()
    async with accounts.agent.test_context() as agent:
        for record in (member("ann", 1), member("pad", 1), member("pad", 2, PADDED), member("bob", 1)):
            await agent.put(record, key=key)

        def top_contacts() -> set[str]:
            return {contact["contact_id"] for contact in (published(scorer) or {}).get("top_contacts", ())}

        # bob's record is the last: once he is in, all four were taken (two contacts already
        # were after ann's and pad's first records)
        assert await settled(lambda: f"bob@{ACCOUNT}" in top_contacts())
        assert published(scorer)["contacts"] == 2
        top = top_contacts()
        assert top == {f"ann@{ACCOUNT}", f"bob@{ACCOUNT}"}, "the padded record replaced pad's first by a leave"
        (letter,) = [record for _, record in sent("dead_letters") if record["origin"]["key"]["text"] == ACCOUNT]
        assert letter["sha256"] == hashlib.sha256(member("pad", 2, PADDED)).hexdigest()
        assert letter["reason"].startswith(f"{topic}: a record of ")
        assert "with this contact in each of its 3 top places), over the 5000 bytes the topic takes" in letter["reason"]
        metric = scorer.metrics.registry.get_sample_value("leadpulse_records_too_large_total", {"topic": topic})
        assert metric == 1

        await agent.put(member("pad", 3), key=key)  # a newer record that fits brings the contact back
        assert await settled(lambda: published(scorer)["contacts"] == 3)
    assert all(record_bytes(key, value) <= limits.of(topic) for topic, key, value in written(capture))


async def test_members_taken_before_the_topics_limit_was_lowered_leave_once_it_no_longer_fits_them(
    scorer, accounts, capture, monkeypatch
):
    account, topic = "lowered-limit.example", scorer.topics.account_scores.get_topic_name()
    padded = [member(name, 1, PADDED, account, score=90) for name in ("pad", "ped", "pid")]
    async with accounts.agent.test_context() as agent:
        for record in (member("ann", 1, account=account), *padded):
            await agent.put(record, key=account.encode())
        assert await settled(lambda: (published(scorer, account) or {}).get("contacts") == 4), "all taken at 1 MB"

        limits = RecordLimits(topics={topic: 5_000})
        monkeypatch.setattr(scorer.pipeline, "record_limits", limits)
        capture.batches.clear()
        await agent.put(member("bob", 1, account=account), key=account.encode())

        def top():
            return {contact["contact_id"] for contact in published(scorer, account)["top_contacts"]}

        assert await settled(lambda: f"bob@{account}" in top()), "the agent goes on"
        assert top() == {f"ann@{account}", f"bob@{account}"}, "the padded members left (their snapshot: 6.5 KB)"
        assert published(scorer, account)["contacts"] == 2
    assert all(record_bytes(key, value) <= limits.of(topic) for topic, key, value in written(capture))
