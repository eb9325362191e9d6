"""Slack messages: what a rep reads (who, company, score, why, segment, model, a link; the
buying committee for an account), and Slack's documented Block Kit limits for any record."""

import re

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadpulse.notify.alerts import alert_from
from leadpulse.notify.requests import request_for
from leadpulse.notify.slack import slack_message
from tests.factories import notify_records
from tests.unit.test_notify_config import parse

RECORDS = notify_records()
SLACK = """
topics = ["hot-leads", "hot-accounts", "stage-changes", "nurture"]
[destinations.sales]
kind = "slack"
url_env = "SLACK_URL"
link = "https://crm.example.com/contacts/{contact_id}"
account_link = "https://crm.example.com/companies/{account_id}"
[[routes]]
to = "sales"
"""
DESTINATION = parse(SLACK).destinations["sales"]
LINK = re.compile(r"<https?://[^\s<>|]+\|[^<>]*>")


def message(topic, record=None):
    return slack_message(DESTINATION, alert_from(topic, orjson.dumps(record or RECORDS[topic])))


def texts(message):
    """Every mrkdwn text of the message."""
    for block in message["blocks"]:
        for item in [block.get("text"), *block.get("fields", []), *block.get("elements", [])]:
            if item is not None and item["type"] == "mrkdwn":
                yield item["text"]


def test_a_hot_lead_says_who_where_how_hot_why_and_links_to_the_contact():
    record = RECORDS["hot-leads"]
    shown = "\n".join(texts(message("hot-leads")))
    assert "<https://crm.example.com/contacts/ada%40acme.io|ada@acme.io>" in shown
    assert "<https://crm.example.com/companies/acme.io|acme.io>" in shown
    assert f"*{record['score']}* · hot" in shown
    assert f"*Model*\n{record['model']}" in shown
    assert ", ".join(record["segments"][:3]) in shown
    why = next(text for text in texts(message("hot-leads")) if text.startswith("*Why now*"))
    assert why.splitlines()[1:] == [
        f"• {reason['signal']} {reason['points']:+g} ({reason['part']})" for reason in record["reasons"][:3]
    ]
    assert len(record["reasons"]) > 3
    assert message("hot-leads")["text"] == f"🔥 Hot lead: ada@acme.io, score {record['score']}"


def test_a_hot_account_lists_its_buying_committee_with_links():
    record = RECORDS["hot-accounts"]
    shown = "\n".join(texts(message("hot-accounts")))
    assert "<https://crm.example.com/companies/acme.io|acme.io>" in shown
    committee = next(text for text in texts(message("hot-accounts")) if text.startswith("*Buying committee*"))
    members = committee.splitlines()[1:]
    assert len(members) == len(record["top_contacts"]) >= 2
    for line, member in zip(members, record["top_contacts"], strict=True):
        link = f"<https://crm.example.com/contacts/{member['contact_id'].replace('@', '%40')}|{member['contact_id']}>"
        assert line.startswith(f"• {link} *{member['score']}*") and f"department: {member['department']}" in line
    assert "missing: economic buyer" in shown


def test_a_stage_change_and_a_nurture_record_read_as_such():
    change = message("stage-changes")
    assert change["blocks"][0]["text"]["text"] == "📈 Stage change: ada@acme.io → lead"
    nurture = "\n".join(texts(message("nurture")))
    assert "<https://example.com/pricing-guide|Pricing guide>" in nurture and "low-engagement" in nurture


def test_data_cannot_mention_a_channel_or_break_a_link():
    record = {**RECORDS["hot-leads"], "contact_id": "<!channel>|x&y", "segments": ["<@U123>"]}
    shown = "\n".join(texts(message("hot-leads", record)))
    assert "<!channel>" not in shown and "<@U123>" not in shown
    assert "<https://crm.example.com/contacts/%3C%21channel%3E%7Cx%26y|&lt;!channel&gt;|x&amp;y>" in shown


def test_a_destination_without_link_templates_shows_plain_names():
    plain = parse(re.sub(r"\n\w*link = .*", "", SLACK)).destinations["sales"]
    assert (plain.link_template, plain.account_link_template) == (None, None)
    assert "<" not in "".join(
        texts(slack_message(plain, alert_from("hot-accounts", orjson.dumps(RECORDS["hot-accounts"]))))
    )


def test_the_request_posts_the_message_as_json_to_the_slack_url():
    alert = alert_from("hot-leads", orjson.dumps(RECORDS["hot-leads"]))
    request = request_for(DESTINATION, alert, 0)
    assert request.url == "http://127.0.0.1:9/slack" and request.headers["content-type"] == "application/json"
    assert orjson.loads(request.body) == slack_message(DESTINATION, alert)
    assert "127.0.0.1" not in repr(request)  # a Slack URL is a secret


# Anything a record may carry, and more: ids up to 2,000 characters (the schemas allow 256),
# Slack's control characters, line breaks, astral characters, and long lists of everything.
LONG_TEXT = st.text(st.sampled_from("a<>&|*_~`@!#\n é😀"), max_size=2000) | st.just("<!channel>" * 200)
REASON = st.fixed_dictionaries(
    {"signal": LONG_TEXT, "part": st.sampled_from(["fit", "engagement"]), "points": st.floats(-1e6, 1e6)}
)
MEMBER = st.fixed_dictionaries(
    {"contact_id": LONG_TEXT, "score": st.integers(0, 100), "temperature": st.integers(0, 4), "stage": LONG_TEXT},
    optional={"title": LONG_TEXT, "department": LONG_TEXT, "reasons": st.lists(REASON, max_size=5)},
)
NAMES = st.lists(LONG_TEXT, max_size=60)


@st.composite
def long_records(draw):
    topic = draw(st.sampled_from(sorted(RECORDS)))
    record = dict(RECORDS[topic])
    for field in ("contact_id", "account_id", "model", "stage", "to_stage", "from_stage", "track", "rules_version"):
        if field in record:
            record[field] = draw(LONG_TEXT) or "x"
    for field in ("segments", "covered"):
        if field in record:
            record[field] = draw(NAMES)
    if "reasons" in record:
        record["reasons"] = draw(st.lists(REASON, max_size=60))
    if "interests" in record:
        record["interests"] = [{"name": name, "weight": 1.0} for name in draw(NAMES)]
    if "top_contacts" in record:
        record["top_contacts"] = draw(st.lists(MEMBER, max_size=120))
        record["committee"] = {"covered": draw(NAMES), "missing": draw(NAMES), "coverage": 0.5}
        record["best_fit"] = {"contact_id": draw(LONG_TEXT), "fit": 1.0}
    if "content" in record:
        record["content"] = {"title": draw(LONG_TEXT) or "t", "url": "https://example.com/" + "a" * 1900}
    record["id"] = draw(st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=256))
    return topic, record


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(long_records())
def test_every_message_is_within_slack_s_block_kit_limits(drawn):
    topic, record = drawn
    shown = message(topic, record)
    blocks = shown["blocks"]
    assert len(blocks) <= 50
    assert len(shown["text"]) <= 3000
    header = blocks[0]
    assert header["type"] == "header" and 0 < len(header["text"]["text"]) <= 150
    for block in blocks[1:]:
        if block["type"] == "section":
            assert ("text" in block) != ("fields" in block)
            assert "text" not in block or 0 < len(block["text"]["text"]) <= 3000
            assert len(block.get("fields", [])) <= 10
            assert all(0 < len(item["text"]) <= 2000 for item in block.get("fields", []))
        else:
            assert block["type"] == "context"
            assert 0 < len(block["elements"]) <= 10
            assert all(0 < len(item["text"]) <= 3000 for item in block["elements"])
    for text in texts(shown):
        assert "<" not in LINK.sub("", text) and ">" not in LINK.sub("", text)
