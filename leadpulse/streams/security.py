"""Kafka connection security, one place for every client LeadPulse ships: the worker (Faust's
`broker_credentials`), its start-up admin client, and the plain aiokafka clients of
`produce`, `tail`, the demo and the benchmarks (`client_options`). A secret is read from
its file when a client is built, so a rotated file is picked up at the next start.

A wrong setting is a one-line SettingsError before any connection; a broker that refuses
the connection is explained by `connection_problem`, which repeats the first connection
step by step and names the step that failed (TLS, SASL, network): aiokafka itself only
logs the cause and reports "Unable to bootstrap".
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from leadpulse.streams.settings import Settings, SettingsError, env_name

SASL_FIELDS = ("sasl_username", "sasl_password", "sasl_password_file")
SSL_FIELDS = ("ssl_ca_file", "ssl_cert_file", "ssl_key_file")


def uses_sasl(settings: Settings) -> bool:
    return settings.security_protocol.startswith("SASL_")


def uses_tls(settings: Settings) -> bool:
    return settings.security_protocol in ("SSL", "SASL_SSL")


def check_security(settings: Settings) -> None:
    """The security settings fit together; the TLS files load. Raises SettingsError."""
    protocol = f"{env_name('security_protocol')}={settings.security_protocol}"
    if uses_sasl(settings):
        if not settings.sasl_username:
            raise SettingsError(f"{protocol} needs {env_name('sasl_username')}")
        if (settings.sasl_password is None) == (settings.sasl_password_file is None):
            raise SettingsError(
                f"{protocol} needs one of {env_name('sasl_password_file')} or {env_name('sasl_password')}"
            )
        sasl_password(settings)
    else:
        for name in SASL_FIELDS:
            if getattr(settings, name) is not None:
                raise SettingsError(f"{env_name(name)} is set but {protocol}: use SASL_SSL or SASL_PLAINTEXT")
    if not uses_tls(settings):
        for name in SSL_FIELDS:
            if getattr(settings, name) is not None:
                raise SettingsError(f"{env_name(name)} is set but {protocol}: use SSL or SASL_SSL")
    elif (settings.ssl_cert_file is None) != (settings.ssl_key_file is None):
        raise SettingsError(f"{env_name('ssl_cert_file')} and {env_name('ssl_key_file')} go together (mutual TLS)")
    ssl_context(settings)


def sasl_password(settings: Settings) -> str | None:
    if settings.sasl_password is not None:
        return settings.sasl_password.reveal()
    if settings.sasl_password_file is None:
        return None
    name = env_name("sasl_password_file")
    try:
        lines = settings.sasl_password_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(f"{name}={str(settings.sasl_password_file)!r}: cannot read it ({error})") from None
    if not lines or not lines[0].strip():
        raise SettingsError(f"{name}={str(settings.sasl_password_file)!r}: the file is empty")
    return lines[0].strip()


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS 1.2+, the brokers verified against the CA file (or the system's CAs), with the
    client certificate for mutual TLS. None without TLS."""
    if not uses_tls(settings):
        return None
    ca = settings.ssl_ca_file
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
    except (ssl.SSLError, OSError) as error:
        raise SettingsError(f"{env_name('ssl_ca_file')}={str(ca)!r}: not a PEM CA certificate ({error})") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = settings.ssl_check_hostname
    if settings.ssl_cert_file is not None and settings.ssl_key_file is not None:
        try:
            context.load_cert_chain(str(settings.ssl_cert_file), str(settings.ssl_key_file))
        except (ssl.SSLError, OSError) as error:
            raise SettingsError(
                f"{env_name('ssl_cert_file')}={str(settings.ssl_cert_file)!r} with {env_name('ssl_key_file')}="
                f"{str(settings.ssl_key_file)!r}: not a PEM certificate and its unencrypted key ({error})"
            ) from None
    return context


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if uses_sasl(settings):
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = sasl_password(settings)
    return options


def faust_credentials(settings: Settings) -> Any:
    """The same, as Faust's `broker_credentials` (None for PLAINTEXT)."""
    import faust  # not at the top: settings import this module, and Faust reads its environment on import

    context = ssl_context(settings)
    if uses_sasl(settings):
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=sasl_password(settings),
            ssl_context=context,
            mechanism=settings.sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def describe(settings: Settings) -> str:
    """How the clients connect, for logs and messages (never the password)."""
    text = settings.security_protocol
    if uses_sasl(settings):
        text += f" {settings.sasl_mechanism} as {settings.sasl_username}"
    if settings.ssl_cert_file is not None and uses_tls(settings):
        text += f", client certificate {settings.ssl_cert_file}"
    return text


async def connection_problem(settings: Settings, timeout_s: float) -> str | None:
    """Why the first bootstrap server refuses us, in one line: connect once, as the clients
    do, and name the step that failed. None when it connects, or when the reason is not a
    security one (the caller's own message then applies)."""
    from aiokafka import errors as kafka_errors
    from aiokafka.conn import create_conn

    host, _, port = settings.bootstrap_servers.split(",")[0].rpartition(":")
    options = client_options(settings)
    options.pop("bootstrap_servers")
    where = f"{host}:{port} ({env_name('security_protocol')}={settings.security_protocol})"
    try:
        async with asyncio.timeout(timeout_s):
            conn = await create_conn(host, int(port), request_timeout_ms=int(timeout_s * 1000), **options)
        conn.close()
    except kafka_errors.UnsupportedSaslMechanismError as error:
        return f"{where}: the broker does not offer {env_name('sasl_mechanism')}={settings.sasl_mechanism} ({error})"
    except (kafka_errors.SaslAuthenticationFailed, kafka_errors.AuthenticationFailedError):
        return (
            f"{where}: authentication failed for user {settings.sasl_username!r} with {settings.sasl_mechanism}: "
            "wrong password or unknown user (the broker does not tell which)"
        )
    except ssl.SSLCertVerificationError as error:
        return (
            f"{where}: the broker's TLS certificate was not accepted ({error.verify_message}); "
            f"check {env_name('ssl_ca_file')} and the broker's host name"
        )
    except ssl.SSLError as error:
        return f"{where}: TLS handshake failed ({error.reason or error}); a client certificate may be required"
    except (ConnectionError, TimeoutError, OSError, kafka_errors.KafkaError) as error:
        return _protocol_mismatch(settings, where, error)
    if not uses_sasl(settings) and not uses_tls(settings):
        return f"{where}: connected, but no Kafka answer: is this a TLS or SASL listener?"
    return None


def _protocol_mismatch(settings: Settings, where: str, error: BaseException) -> str | None:
    """A TLS client on a plaintext port sees the connection drop during the handshake, and a
    plaintext client on a TLS port sees its request go unanswered: say so."""
    if isinstance(error, ConnectionRefusedError):
        return None  # nothing listens: the no-broker message says it better
    if uses_tls(settings):
        hint = "is this a TLS listener?"
        if settings.ssl_cert_file is None:
            hint = f"is this a TLS listener, and one without client certificates ({env_name('ssl_cert_file')})?"
        return f"{where}: the connection closed during the TLS handshake: {hint} ({_reason(error)})"
    return f"{where}: no Kafka answer on this connection: is this a TLS listener? ({_reason(error)})"


def _reason(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text if len(text) <= 200 else text[:200] + "..."
