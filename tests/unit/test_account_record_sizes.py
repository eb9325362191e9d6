"""An account's records are bounded per member (schemas/record_sizes.py, AccountGuard): an
account takes a member only if its records would fit with that member in every top place,
so whatever members it takes, in whatever order, no record it writes is over the limit; the
offline scorer leaves out the members the worker refuses (docs/guarantees.md#bounds)."""

from importlib import resources

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadpulse.cli.main import main
from leadpulse.cli.offline import member_filter, score_lines
from leadpulse.schemas.limits import (
    DEFAULT_LIMITS,
    DEFAULT_RECORD_LIMITS,
    InputLimits,
    RecordLimits,
    RecordTooLarge,
    record_bytes,
)
from leadpulse.schemas.outputs import account_record, dumps, hot_account_record
from leadpulse.schemas.record_sizes import (
    ACCOUNT_SCORES,
    ACCOUNTS_CHANGELOG,
    HOT_ACCOUNTS,
    AccountGuard,
    widest_member,
)
from leadpulse.scoring.accounts import AccountState, Member, changes, leaving, receive
from leadpulse.scoring.engine import Reason
from tests.factories import DEFAULT_RULES, T0, raw_event

RULES = DEFAULT_RULES
PADS = st.sampled_from(["x", "\x01", "é", "😀", "\U0010ffff"])
TEXT = st.builds(lambda pad, n: pad * n, PADS, st.integers(0, 330))  # within 2,000 bytes as stored
MEMBERS = st.builds(
    lambda contact, score, stage, department, seniority, reasons, leaves: Member(
        contact_id=contact,
        at_ms=T0,
        left=leaves,
        score=score,
        fit=12.5,
        temperature=1 + score // 25 if score < 100 else 4,
        stage=stage,
        attributes=(("department", department), ("seniority", seniority)),
        reasons=tuple(Reason(f"job_title: {text}", "fit", 3.0) for text in reasons),
    ),
    st.builds(lambda pad, n: (pad * n)[:256], PADS, st.integers(1, 256)),
    st.integers(0, 100),
    st.sampled_from(["lead", "opportunity", "disqualified"]),
    TEXT,
    st.sampled_from(["vp", "director", "it"]),
    st.lists(TEXT, max_size=3),
    st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(
    members=st.lists(MEMBERS, min_size=1, max_size=12),
    limit=st.integers(3_000, 40_000),
    account_id=st.builds(lambda pad, n: pad * n, PADS, st.integers(1, 60)),
)
def test_whatever_members_an_account_takes_in_any_order_every_record_it_writes_fits_its_topic(
    members, limit, account_id
):
    limits = RecordLimits(limit)
    guard = AccountGuard(RULES, limits, DEFAULT_LIMITS.max_string)
    state = AccountState(account_id, RULES)
    written = []
    for offset, sent in enumerate(members):
        try:
            guard.check(account_id, sent)
            record = sent
        except RecordTooLarge:  # as the accounts agent folds it: the contact's leave
            record = leaving(sent.contact_id, sent.at_ms, sent.version)
        _, alert = receive(state, record, offset)
        view = state.snapshot()
        published = None if view is None else dumps(account_record(view))
        written.append((ACCOUNT_SCORES, account_id.encode(), published))
        if alert is not None:
            written.append((HOT_ACCOUNTS, account_id.encode(), dumps(hot_account_record(alert))))
        written += [(ACCOUNTS_CHANGELOG, key, value) for key, value in changes(state, published)]
    assert all(record_bytes(key, value) <= limits.of(topic) for topic, key, value in written)


def test_an_account_refuses_a_member_it_could_not_list_in_all_its_top_places_naming_the_record_and_the_limit():
    padded = Member("pad@bigcorp.example", T0, score=90, attributes=(("department", "\x01" * 333),))
    limit = 5_000  # the member fits alone (2 KB), three of it in a snapshot do not
    guard = AccountGuard(RULES, RecordLimits(limit), DEFAULT_LIMITS.max_string)
    with pytest.raises(RecordTooLarge) as refused:
        guard.check("bigcorp.example", padded)
    reason = str(refused.value)
    assert reason.startswith(f"{ACCOUNT_SCORES}: a record of ")
    assert "(the account's snapshot with this contact in each of its 3 top places)" in reason
    assert f"over the {limit} bytes the topic takes" in reason
    guard.check("bigcorp.example", Member("small@bigcorp.example", T0, score=90))
    guard.check("bigcorp.example", leaving(padded.contact_id, T0))


def test_at_the_default_limits_the_widest_member_the_shipped_rules_allow_is_taken_without_a_look():
    guard = AccountGuard(RULES, DEFAULT_RECORD_LIMITS, DEFAULT_LIMITS.max_string)
    assert guard.all_fit
    guard.check("a" * 2_000, widest_member(RULES, DEFAULT_LIMITS.max_string))
    assert not AccountGuard(RULES, RecordLimits(20_000), DEFAULT_LIMITS.max_string).all_fit


ACCOUNT_LINES = [
    orjson.dumps(raw_event("demo_requested", event_id=f"{who}-demo", contact_id=f"{who}@bigcorp.example"))
    for who in ("ann", "bob", "pad")
] + [
    orjson.dumps(
        raw_event(
            "profile_updated",
            event_id="pad-profile",
            contact_id="pad@bigcorp.example",
            properties={"department": "\x01" * 333, "seniority": "vp"},
        )
    )
]


def test_the_offline_scorer_leaves_the_same_member_out_of_its_account_and_says_so():
    left_out = []
    limits = InputLimits(max_message_bytes=5_000)
    run = score_lines(ACCOUNT_LINES, RULES, limits=limits)
    run.admit = member_filter(RULES, limits, lambda *refused: left_out.append(refused))
    (account,) = run.accounts(None)
    assert account.contacts == 2 and "pad@bigcorp.example" not in {top.contact_id for top in account.top_contacts}
    ((account_id, contact_id, error),) = left_out
    assert (account_id, contact_id) == ("bigcorp.example", "pad@bigcorp.example")
    assert str(error).startswith(f"{ACCOUNT_SCORES}: a record of ")
    (everyone,) = score_lines(ACCOUNT_LINES, RULES).accounts(None)
    assert everyone.contacts == 3, "at the default limit the padded member is taken"


def test_leadpulse_score_accounts_prints_the_same_accounts_on_one_process_and_two(tmp_path, capsys, monkeypatch):
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(ACCOUNT_LINES) + b"\n")
    monkeypatch.setenv("LEADPULSE_MAX_MESSAGE_BYTES", "5000")
    printed = []
    for jobs in ("1", "2"):
        assert main(["score", str(events), "--accounts", "--at", "last-event", "--jobs", jobs]) == 0
        out, err = capsys.readouterr()
        assert "account bigcorp.example: contact pad@bigcorp.example left out: account-scores: a record of " in err
        printed.append(out)
    assert printed[0] == printed[1] and orjson.loads(printed[0])["contacts"] == 2


def test_rules_check_and_the_worker_refuse_accounts_whose_widest_member_cannot_fit_the_record_limit(
    tmp_path, capsys, monkeypatch
):
    shipped = resources.files("leadpulse.scoring").joinpath("default_rules.toml").read_text("utf-8")
    many = shipped.replace("top_reasons = 5 ", "top_reasons = 50 ")
    many = many.replace("member_reasons = 3 ", "member_reasons = 50 ")
    rules = tmp_path / "rules.toml"
    rules.write_text(many.replace("top_contacts = 3 ", "top_contacts = 50 "))
    assert main(["rules", "check", str(rules)]) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert f"{rules}: accounts.top_contacts: 50 top contacts, each with 2 attributes and 50 reasons" in err
    assert "make account-scores: a record of " in err
    assert "lower accounts.top_contacts or accounts.member_reasons" in err
    monkeypatch.setenv("LEADPULSE_RULES", str(rules))
    assert main(["worker"]) != 0, "refused before it looks for a broker"
    assert capsys.readouterr().err.strip() == err
    rules.write_text(many)  # 50 reasons for each of 3 top contacts fit
    assert main(["rules", "check", str(rules)]) == 0
