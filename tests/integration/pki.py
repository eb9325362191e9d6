"""Certificates for the TLS tests, made with openssl for each run: a CA, the broker's
certificate (127.0.0.1 and localhost) in a PKCS12 keystore, and a client certificate."""

import subprocess
from dataclasses import dataclass
from pathlib import Path

KEYSTORE_PASSWORD = "broker-keystore-pass"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_keystore: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA the broker's certificate is not signed by


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(folder: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", f"{name}.key", "-out",
        f"{name}.pem", "-subj", f"/CN=LeadPulse test {name}", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder,
    )  # fmt: skip


def _signed(folder: Path, name: str, subject: str, extensions: str) -> None:
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject,
             cwd=folder)  # fmt: skip
    (folder / f"{name}.ext").write_text(extensions)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-out", f"{name}.pem", "-extfile", f"{name}.ext", cwd=folder,
    )  # fmt: skip


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    _ca(folder, "ca")
    _ca(folder, "other-ca")
    _signed(
        folder, "server", "/CN=localhost",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    )  # fmt: skip
    _signed(folder, "client", "/CN=leadpulse-client", "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n")
    _openssl(
        "pkcs12", "-export", "-in", "server.pem", "-inkey", "server.key", "-certfile", "ca.pem", "-out", "server.p12",
        "-passout", f"pass:{KEYSTORE_PASSWORD}", cwd=folder,
    )  # fmt: skip
    return Pki(folder / "ca.pem", folder / "server.p12", folder / "client.pem", folder / "client.key",
               folder / "other-ca.pem")  # fmt: skip
