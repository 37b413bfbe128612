"""The compose file's FTP server: pyftpdlib, one user, explicit TLS required on every channel.

On first start it makes a private CA and a server certificate for the names in
``FTP_TLS_NAMES``; the server key stays in ``FTP_TLS_DIR`` (its own volume), only the CA
certificate is published at ``FTP_CA_EXPORT`` (a volume the app mounts read-only as
``FTP_CA_FILE``), and the CA key is never written anywhere. Later starts reuse them, so
the app's trust survives restarts.

``python server.py`` serves; ``python server.py check`` is the container's health check.
Settings (environment): ``FTP_USER``, ``FTP_PASSWORD`` (required), ``FTP_ROOT``,
``FTP_LISTEN_PORT``, ``FTP_TLS_DIR``, ``FTP_CA_EXPORT``, ``FTP_TLS_NAMES``.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(os.environ.get("FTP_ROOT", "/srv/ftp"))
PORT = int(os.environ.get("FTP_LISTEN_PORT", "2121"))
TLS_DIR = Path(os.environ.get("FTP_TLS_DIR", "/var/lib/ftp-tls"))
CA_EXPORT = Path(os.environ.get("FTP_CA_EXPORT", "/run/ftp-ca/ca.pem"))
NAMES = [n.strip() for n in os.environ.get("FTP_TLS_NAMES", "ftp,localhost,127.0.0.1").split(",") if n.strip()]
CERT_FILE = TLS_DIR / "server.pem"
KEY_FILE = TLS_DIR / "server.key"
VALID_FOR = datetime.timedelta(days=825)


def _subject_names() -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for name in NAMES:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    return names


def ensure_certificates() -> None:
    if CERT_FILE.exists() and KEY_FILE.exists() and CA_EXPORT.exists():
        return
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Drive local FTP CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAMES[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.SubjectAlternativeName(_subject_names()), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    TLS_DIR.mkdir(parents=True, exist_ok=True)
    KEY_FILE.touch(mode=0o600)
    KEY_FILE.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    CERT_FILE.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    CA_EXPORT.parent.mkdir(parents=True, exist_ok=True)
    # Written last, atomically: its presence is what the health check (and the app) wait for.
    staging = CA_EXPORT.with_suffix(".tmp")
    staging.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    staging.chmod(0o644)
    staging.replace(CA_EXPORT)


def serve() -> None:
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import TLS_FTPHandler
    from pyftpdlib.servers import FTPServer

    user, password = os.environ.get("FTP_USER"), os.environ.get("FTP_PASSWORD")
    if not user or not password:
        sys.exit("FTP_USER and FTP_PASSWORD must be set")
    ensure_certificates()
    ROOT.mkdir(parents=True, exist_ok=True)
    authorizer = DummyAuthorizer()
    authorizer.add_user(user, password, str(ROOT), perm="elradfmwMT")

    class Handler(TLS_FTPHandler):  # type: ignore[misc]  # pyftpdlib is untyped
        pass

    Handler.authorizer = authorizer
    Handler.certfile = str(CERT_FILE)
    Handler.keyfile = str(KEY_FILE)
    Handler.tls_control_required = True  # AUTH TLS before USER
    Handler.tls_data_required = True  # PROT P before any transfer
    Handler.banner = "drive compose ftp ready"

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # serve_forever cleans up on SystemExit
    FTPServer(("0.0.0.0", PORT), Handler).serve_forever()  # noqa: S104 - a container's own interface


def check() -> int:
    """Healthy once the CA is published and the server greets with 220."""
    if not CA_EXPORT.exists():
        return 1
    try:
        with socket.create_connection(("127.0.0.1", PORT), timeout=3) as conn:
            return 0 if conn.recv(64).startswith(b"220") else 1
    except OSError:
        return 1


if __name__ == "__main__":
    if sys.argv[1:] == ["check"]:
        sys.exit(check())
    serve()
