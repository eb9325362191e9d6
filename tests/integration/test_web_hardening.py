"""The worker's web port and configuration as a security review sees them, on a real worker:
Faust's own environment variables change nothing, /contacts needs a bearer token, Faust's
table and router pages are gone, and contact ids stay out of the log."""

import contextlib
import urllib.error
import urllib.request
from pathlib import Path

from leadpulse.cli.processes import free_port
from tests.integration.harness import produce, wait_for

TOKEN = "s3cret-token-for-tests-0123456789"


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port` (from /proc, IPv4 and IPv6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def get(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_faust_environment_is_ignored_and_the_api_is_closed(make_settings, workers, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# the tests' token\n{TOKEN}\n")
    settings = make_settings(api_tokens_file=tokens, partitions=2)
    decoy = free_port()
    faust_env = {
        "WEB_PORT": str(decoy),
        "WEB_BIND": "0.0.0.0",
        "PROCESSING_GUARANTEE": "exactly_once",
        "F_WEB_PORT": str(decoy),
        "FAUST_WEB_BIND": "0.0.0.0",
        "BROKER_URL": "kafka://127.0.0.1:1",
        "APP_STORE": "memory://",
        "APP_WEB_TABLES_ENABLED": "true",
    }
    worker = workers(settings, env=faust_env)  # ready: it answered /health on LEADPULSE_WEB_PORT
    assert listening_addresses(settings.web_port) == {"0100007F"}  # 127.0.0.1 only
    assert listening_addresses(decoy) == set()
    log = Path(worker.log_path)
    configured = f"configured: web 127.0.0.1:{settings.web_port}, processing at_least_once, store rocksdb:"
    assert wait_for(lambda: configured in log.read_text(), timeout_s=30, interval_s=0.5)
    ignored = "APP_STORE, APP_WEB_TABLES_ENABLED, BROKER_URL, FAUST_WEB_BIND, F_WEB_PORT, PROCESSING_GUARANTEE"
    assert f"ignoring {ignored}, WEB_BIND, WEB_PORT: the worker reads LEADPULSE_* only" in log.read_text()

    produce(
        settings,
        [b'{"event_id":"e1","type":"demo_requested","contact_id":"ada@acme.io","occurred_at":"2026-11-16T11:45:00Z"}'],
    )
    base = f"http://127.0.0.1:{settings.web_port}"
    contact = f"{base}/contacts/ada@acme.io"
    assert wait_for(lambda: get(contact, TOKEN) == 200, timeout_s=60, interval_s=0.5)
    assert get(contact) == 401
    assert get(contact, "wrong-token-wrong-token-wrong") == 401
    assert get(f"{base}/contacts/nobody@acme.io", TOKEN) == 404
    for faust_page in ("/router/", "/router/nope/", "/table/contacts/ada@acme.io", "/table/contacts/", "/graph/"):
        assert get(base + faust_page, TOKEN) == 404, faust_page
    assert get(f"{base}/health") == 200 and get(f"{base}/metrics") == 200  # no token: no contact data

    too_long = urllib.request.Request(f"{base}/contacts/{'x' * 20_000}@acme.io")
    with contextlib.suppress(OSError):  # answered 400 (HTTPError is an OSError)
        urllib.request.urlopen(too_long, timeout=10)
    worker.stop()
    text = log.read_text()
    assert "ada@acme.io" not in text and "acme.io" not in text
    assert "Traceback" not in text
