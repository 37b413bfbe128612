"""A real FTP / explicit-FTPS server (pyftpdlib) in a background thread, for adapter tests.

The server listens on 127.0.0.1, keeps its port across ``stop()`` / ``start()`` so a test can
take the backend away and bring it back with every file intact, and records what happened
on the wire (logins, and whether each file transfer's data connection was TLS) so tests can
check behaviour the client cannot see. For TLS, a throwaway CA and a server certificate for
127.0.0.1 / localhost are generated; clients trust them through ``ca_file``.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import secrets
import shutil
import socket
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from drive.adapters.ftp import FtpBlobRepository
from drive.settings import FtpSettings
from tests.integration.live import restartable_port

with warnings.catch_warnings():
    # pyftpdlib is built on asyncore/asynchat, deprecated since Python 3.6: not our concern here.
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import DTPHandler, FTPHandler, TLS_DTPHandler, TLS_FTPHandler
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.servers import FTPServer

# A handler of its own stops pyftpdlib's first loop from configuring logging to stderr at INFO.
_log = logging.getLogger("pyftpdlib")
_log.setLevel(logging.WARNING)
_log.addHandler(logging.NullHandler())


@dataclass(frozen=True)
class Transfer:
    """One file transfer as the server saw it."""

    command: str  # "STOR" or "RETR"
    path: str
    tls: bool  # the data connection completed a TLS handshake
    completed: bool


@dataclass(frozen=True)
class Certificates:
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_certificates(directory: Path) -> Certificates:
    """A private CA and a server certificate for 127.0.0.1 and localhost signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Drive test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    certs = Certificates(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    certs.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    certs.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    certs.key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return certs


class FtpServer:
    """pyftpdlib on 127.0.0.1, plain or explicit TLS (control and data TLS both required)."""

    host = "127.0.0.1"

    def __init__(self, *, tls: bool = False, user: str = "drive", password: str | None = None) -> None:
        self.tls = tls
        self.user = user
        self.password = password if password is not None else secrets.token_urlsafe(16)
        self._workdir = Path(tempfile.mkdtemp(prefix="drive-ftp-"))
        self.root = self._workdir / "root"  # what the FTP user sees as "/"
        self.root.mkdir()
        self.certificates = make_certificates(self._workdir) if tls else None
        self.port = 0
        self._lock = threading.Lock()
        self._logins = 0
        self._transfers: list[Transfer] = []
        self._server: FTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._paused = threading.Event()
        self._holding = threading.Event()  # set by the serving thread once it is really paused
        self.handler_class = self._make_handler_class()  # pyftpdlib settings live on the class

    @property
    def ca_file(self) -> Path | None:
        return self.certificates.ca_file if self.certificates else None

    @property
    def logins(self) -> int:
        """Successful logins since the server object was made (one per client connection)."""
        with self._lock:
            return self._logins

    @property
    def transfers(self) -> list[Transfer]:
        with self._lock:
            return list(self._transfers)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _record_login(self) -> None:
        with self._lock:
            self._logins += 1

    def _record_transfer(self, transfer: Transfer) -> None:
        with self._lock:
            self._transfers.append(transfer)

    def _make_handler_class(self) -> type[FTPHandler]:
        authorizer = DummyAuthorizer()
        authorizer.add_user(self.user, self.password, str(self.root), perm="elradfmwMT")
        owner = self

        class Recording:
            """Mixin for the data channel: note each file transfer and whether it was TLS."""

            def close(self) -> None:
                this: Any = self
                if not this._closed and this.file_obj is not None:
                    owner._record_transfer(
                        Transfer(
                            command="STOR" if this.receive else "RETR",
                            path=str(this.file_obj.name),
                            tls=bool(getattr(this, "_ssl_established", False)),
                            completed=bool(this.transfer_finished),
                        )
                    )
                super().close()  # type: ignore[misc]

        class PlainData(Recording, DTPHandler):  # type: ignore[misc]
            pass

        class TlsData(Recording, TLS_DTPHandler):  # type: ignore[misc]
            pass

        attrs: dict[str, Any] = {
            "authorizer": authorizer,
            "banner": "drive test ftp",
            "auth_failed_timeout": 0.05,  # pyftpdlib's default 3 s delay only slows tests down
            "on_login": lambda handler, username: owner._record_login(),
        }
        if self.tls:
            assert self.certificates is not None
            attrs.update(
                certfile=str(self.certificates.cert_file),
                keyfile=str(self.certificates.key_file),
                tls_control_required=True,
                tls_data_required=True,
                dtp_handler=TlsData,
                ssl_context=None,  # built per server class from certfile
            )
            return type("TestTlsHandler", (TLS_FTPHandler,), attrs)
        attrs["dtp_handler"] = PlainData
        return type("TestHandler", (FTPHandler,), attrs)

    def start(self) -> None:
        """Listen (on the same port as before, after a ``stop()``) and serve in a thread."""
        if self._thread is not None:
            return
        if not self.port:
            self.port = restartable_port()  # kept across restarts: never one the kernel hands out
        ioloop = IOLoop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # SO_REUSEADDR: rebind the old port even with connections from the last run in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(100)
        self.port = sock.getsockname()[1]
        self._server = FTPServer(sock, self.handler_class, ioloop=ioloop)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, name=f"ftp-server-{self.port}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        server = self._server
        assert server is not None
        try:
            while not self._stopping.is_set():
                if self._paused.is_set():
                    self._holding.set()
                    time.sleep(0.02)
                    continue
                server.ioloop.loop(timeout=0.02, blocking=False)  # one poll, so stop() is noticed
        finally:
            # Closing in the serving thread: pyftpdlib's loop is not thread-safe.
            server.close_all()

    def stop(self) -> None:
        """Stop listening and drop every client connection; files stay."""
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join(timeout=10)
        self._thread = None
        self._server = None

    def pause(self) -> None:
        """Hang: connections stay open and the kernel still accepts new ones, but nothing answers."""
        self._holding.clear()
        self._paused.set()
        if self._thread is not None:
            # Wait out the poll in progress, or it could still answer one last command.
            self._holding.wait(timeout=5)

    def resume(self) -> None:
        self._paused.clear()

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> FtpServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def make_ftp_repository(server: FtpServer, **overrides: Any) -> FtpBlobRepository:
    """An unopened repository pointed at ``server`` (trusting its CA when it is TLS)."""
    options: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "password": server.password,
        "tls": server.tls,
        "ca_file": str(server.ca_file) if server.ca_file else None,
        "base_dir": "/",
        "timeout": 5.0,
    }
    options.update(overrides)
    return FtpBlobRepository(FtpSettings(**options))


@pytest.fixture(scope="session")
def ftp_server() -> Iterator[FtpServer]:
    with FtpServer(tls=False) as server:
        yield server


@pytest.fixture(scope="session")
def ftps_server() -> Iterator[FtpServer]:
    with FtpServer(tls=True) as server:
        yield server
