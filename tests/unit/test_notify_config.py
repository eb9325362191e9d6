"""The notifier's config file (docs/notify-config.md): what a correct file gives, and one
line naming the file and the key for each mistake, secrets never inline nor echoed."""

import base64
import os
from pathlib import Path

import pytest

from leadpulse.notify.config import NotifyConfigError, load_notify_config, parse_notify_config
from tests.factories import EXAMPLES

KEY_NEW, KEY_OLD = os.urandom(32), os.urandom(24)
SECRET_NEW = "whsec_" + base64.b64encode(KEY_NEW).decode()
SECRET_OLD = "whsec_" + base64.b64encode(KEY_OLD).decode()
ENV = {"CRM_SECRET": SECRET_NEW, "SLACK_URL": "http://127.0.0.1:9/slack"}
CRM = """
[destinations.crm]
kind = "webhook"
url = "https://crm.example.com/hooks/leadpulse"
secret_env = "CRM_SECRET"
"""
ROUTE = """
[[routes]]
to = "crm"
"""
SLACK_ROUTE = '[[routes]]\nto = "s"\n'


def parse(text, environ=ENV, folder=Path("/nonexistent")):
    return parse_notify_config(text, "notify.toml", folder, environ)


def error_of(text, environ=ENV, folder=Path("/nonexistent")):
    with pytest.raises(NotifyConfigError) as caught:
        parse(text, environ, folder)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("notify.toml: ")
    return message


def test_a_full_file_gives_destinations_routes_and_throttles_with_their_defaults():
    config = parse(
        """
topics = ["hot-leads", "stage-changes"]
max_alert_age = "30m"

[destinations.sales]
kind = "slack"
url_env = "SLACK_URL"
link = "https://crm.example.com/contacts/{contact_id}"
account_link = "https://crm.example.com/companies/{account_id}"
"""
        + CRM
        + """
cooldown = "off"
rate_per_s = 20
timeout = "5s"
retry_window = "2h"

[[routes]]
name = "enterprise"
topics = "hot-leads"
models = ["enterprise"]
segments = ["enterprise", "mid-market"]
min_score = 80
where = { interests = "pricing", rules_version = ["v1", "v2"] }
to = ["sales", "crm", "sales"]

[[routes]]
topics = "stage-changes"
stages = ["opportunity"]
to = "crm"
"""
    )
    assert config.topics == ("hot-leads", "stage-changes")
    assert (config.max_alert_age_ms, config.cooldown_ms) == (30 * 60_000, 10 * 60_000)
    sales, crm = config.destinations["sales"], config.destinations["crm"]
    assert list(config.destinations) == ["sales", "crm"]
    assert (sales.kind, sales.url, sales.secrets, sales.rate_per_s) == ("slack", ENV["SLACK_URL"], (), 1.0)
    assert (sales.timeout_s, sales.retry_window_ms, sales.cooldown_ms) == (10.0, 6 * 3_600_000, 10 * 60_000)
    assert sales.contact_link("ada@acme.io/x") == "https://crm.example.com/contacts/ada%40acme.io%2Fx"
    assert sales.account_link("acme.io") == "https://crm.example.com/companies/acme.io"
    assert (crm.kind, crm.secrets, crm.rate_per_s, crm.timeout_s) == ("webhook", (KEY_NEW,), 20.0, 5.0)
    assert (crm.retry_window_ms, crm.cooldown_ms, crm.contact_link("c-1")) == (2 * 3_600_000, 0, None)
    enterprise, stages = config.routes
    assert (enterprise.name, enterprise.destinations, enterprise.topics) == (
        "enterprise",
        ("sales", "crm"),
        frozenset({"hot-leads"}),
    )
    assert (enterprise.models, enterprise.segments, enterprise.min_score) == (
        frozenset({"enterprise"}),
        frozenset({"enterprise", "mid-market"}),
        80,
    )
    assert enterprise.where == ((("interests",), ("pricing",)), (("rules_version",), ("v1", "v2")))
    assert (stages.name, stages.stages, stages.destinations) == ("routes[1]", frozenset({"opportunity"}), ("crm",))


def test_topics_default_to_hot_leads_and_hot_accounts_and_a_route_reads_them_all():
    config = parse(CRM + ROUTE)
    assert config.topics == ("hot-leads", "hot-accounts")
    assert config.routes[0].topics == frozenset(config.topics)
    assert config.max_alert_age_ms == 3_600_000


def test_two_secrets_sign_during_a_rotation_newest_first_files_relative_to_the_config(tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "old").write_text(SECRET_OLD + "\n")
    text = CRM.replace('secret_env = "CRM_SECRET"', 'secret_env = ["CRM_SECRET"]\nsecret_file = "secrets/old"') + ROUTE
    (tmp_path / "notify.toml").write_text(text)
    config = load_notify_config(tmp_path / "notify.toml", ENV)
    assert config.destinations["crm"].secrets == (KEY_NEW, KEY_OLD)


def test_the_shipped_example_is_valid():
    environ = {"CRM_WEBHOOK_SECRET": SECRET_NEW, "SALES_SLACK_WEBHOOK_URL": "http://127.0.0.1:9/slack"}
    config = load_notify_config(EXAMPLES / "notify.toml", environ)
    assert set(config.destinations) == {"sales-slack", "crm"}
    assert config.destinations["crm"].cooldown_ms == 0


def test_a_secret_is_never_printed_in_an_error():
    message = error_of(CRM + ROUTE, {"CRM_SECRET": "hunter2-is-my-password"})
    assert "hunter2" not in message
    assert "destinations.crm.secret_env: environment variable CRM_SECRET: expected whsec_" in message
    message = error_of(
        CRM.replace("url = ", "url_env = ").replace('"https://crm.example.com/hooks/leadpulse"', '"U"') + ROUTE,
        {**ENV, "U": "ftp://secret-host/x"},
    )
    assert (
        "secret-host" not in message
        and "destinations.crm.url_env: environment variable U: expected an http(s)" in message
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nonsense = [", "not valid TOML"),
        (CRM + ROUTE + "max_alert_ages = '1h'\n", "notify.toml: routes[0].max_alert_ages: unknown key"),
        ("topic = 'hot-leads'\n" + CRM + ROUTE, "notify.toml: topic: unknown key; did you mean 'topics'?"),
        (
            "topics = ['hot-lead']\n" + CRM + ROUTE,
            "topics[0]: unknown topic 'hot-lead'; defined: hot-leads, hot-accounts",
        ),
        ("max_alert_age = '1 hour'\n" + CRM + ROUTE, "max_alert_age: '1 hour' is not a duration"),
        ("max_alert_age = 'off'\n" + CRM + ROUTE, "max_alert_age: 'off' is not a duration"),
        (ROUTE, "destinations: missing (required)"),
        ("[destinations]\n" + ROUTE, "destinations: no destination"),
        (CRM, "routes: no route"),
        (
            CRM.replace("secret_env", "secert_env") + ROUTE,
            "destinations.crm.secert_env: unknown key; did you mean 'secret_env'?",
        ),
        (
            CRM.replace('"webhook"', '"email"') + ROUTE,
            "destinations.crm.kind: unknown kind 'email'; one of webhook, slack",
        ),
        (
            CRM + "secret = 'whsec_abc'\n" + ROUTE,
            "destinations.crm.secret: secrets are never written in this file: put the whsec_ secret in a file",
        ),
        (CRM.replace('secret_env = "CRM_SECRET"', "") + ROUTE, "destinations.crm.secret_env: a webhook is signed"),
        (
            CRM.replace("CRM_SECRET", "CRM_SECRET_2") + ROUTE,
            "destinations.crm.secret_env: environment variable CRM_SECRET_2 is not set",
        ),
        (
            CRM.replace("CRM_SECRET", "LEADPULSE_SECRET") + ROUTE,
            "destinations.crm.secret_env: LEADPULSE_SECRET: LEADPULSE_* variables are settings",
        ),
        (
            CRM.replace('secret_env = "CRM_SECRET"', 'secret_file = "crm.secret"') + ROUTE,
            "destinations.crm.secret_file: /nonexistent/crm.secret: cannot read secret file: No such file or directory",
        ),
        (
            CRM.replace('secret_env = "CRM_SECRET"', 'secret_env = ["CRM_SECRET", "CRM_SECRET", "CRM_SECRET"]') + ROUTE,
            "destinations.crm.secret_env: 3 secrets, over the limit of 2",
        ),
        (CRM.replace("https://crm", "ftp://crm") + ROUTE, "destinations.crm.url: expected an http(s) URL with a host"),
        (
            CRM + "url_env = 'X'\n" + ROUTE,
            "destinations.crm.url: give exactly one of url, url_env, url_file (got url, url_env)",
        ),
        (
            '[destinations.s]\nkind = "slack"\nurl = "https://hooks.slack.com/services/T0/B0/XYZ"\n' + SLACK_ROUTE,
            "destinations.s.url: a Slack webhook URL is a secret: put it in a file (url_file",
        ),
        (
            '[destinations.s]\nkind = "slack"\nurl_env = "SLACK_URL"\nsecret_env = "CRM_SECRET"\n' + SLACK_ROUTE,
            "destinations.s.secret_env: a Slack webhook is not signed",
        ),
        (
            CRM + "link = 'https://crm.example.com/{email}'\n" + ROUTE,
            "destinations.crm.link: unknown placeholder {email}: the only one is {contact_id}",
        ),
        (
            CRM + "link = 'https://crm.example.com/contacts'\n" + ROUTE,
            "destinations.crm.link: no {contact_id} in the template",
        ),
        (
            CRM + "account_link = 'https://crm.example.com/{account_id!r}'\n" + ROUTE,
            "destinations.crm.account_link: a placeholder takes no conversion nor format: write {account_id}",
        ),
        (CRM + "rate_per_s = 0\n" + ROUTE, "destinations.crm.rate_per_s: 0 is outside [0.001, 1000.0]"),
        (CRM + "timeout = '10m'\n" + ROUTE, "destinations.crm.timeout: longer than the limit of 300 s"),
        (
            CRM + "cooldown = 'never'\n" + ROUTE,
            "destinations.crm.cooldown: 'never' is not a duration like '30d', '12h', '10m', '45s', or 'off'",
        ),
        ('[destinations."a b"]\nkind = "webhook"\n' + ROUTE, "destinations.a b: a destination name is 1 to 64 letters"),
        (CRM + "[[routes]]\nto = 'sales'\n", "routes[0].to[0]: unknown destination 'sales'; defined: crm"),
        (CRM + "[[routes]]\nto = []\n", "routes[0].to: no destination: name at least one of crm"),
        (
            CRM + ROUTE + "topics = 'nurture'\n",
            "routes[0].topics: 'nurture' is not read: add it to the top-level topics (now hot-leads, hot-accounts)",
        ),
        (CRM + ROUTE + "stages = ['hot']\n", "routes[0].stages[0]: unknown stage 'hot'; defined: suspect, lead"),
        (CRM + ROUTE + "min_score = 101\n", "routes[0].min_score: 101 is outside [0, 100]"),
        (
            CRM + ROUTE + "topics = 'hot-accounts'\nmodels = 'enterprise'\n",
            "routes[0].models: no hot-accounts record has a field 'model' (hot-leads records have it)",
        ),
        (
            CRM + ROUTE + "topics = 'hot-leads'\naccounts = 'acme.io'\n",
            "routes[0].accounts: no hot-leads record has a field 'account_id' (hot-accounts records have it)",
        ),
        (
            CRM + ROUTE + "where = { segmnts = 'enterprise' }\n",
            "routes[0].where.segmnts: no hot-leads or hot-accounts record has a field 'segmnts'",
        ),
        (CRM + ROUTE + "where = { segments = [] }\n", "routes[0].where.segments: expected a value"),
        (CRM + ROUTE + "where = { segments = { x = [1, [2]] } }\n", "routes[0].where.segments.x: expected a value"),
        (
            CRM
            + '[destinations.spare]\nkind = "webhook"\nurl = "http://127.0.0.1:9/"\nsecret_env = "CRM_SECRET"\n'
            + ROUTE,
            "destinations.spare: no route sends to it",
        ),
    ],
)
def test_each_mistake_is_one_line_naming_the_key(text, expected):
    assert expected in error_of(text)


def test_an_unreadable_file_is_one_line(tmp_path):
    with pytest.raises(NotifyConfigError, match=r"^.*missing\.toml: cannot read notify config file: No such file"):
        load_notify_config(tmp_path / "missing.toml", ENV)
    (tmp_path / "big.toml").write_bytes(b"#" * (1 << 20 | 1))
    with pytest.raises(NotifyConfigError, match=r"over the limit of 1 MiB .* for a notify config file"):
        load_notify_config(tmp_path / "big.toml", ENV)


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        ("whsec_!!!", "not base64 after whsec_"),
        (
            "whsec_" + base64.b64encode(b"short").decode(),
            "5 bytes; expected whsec_ followed by the base64 of 24 to 64 bytes",
        ),
        ("   ", "environment variable CRM_SECRET is empty"),
    ],
)
def test_a_malformed_secret_names_where_it_came_from(secret, expected):
    assert expected in error_of(CRM + ROUTE, {"CRM_SECRET": secret})
