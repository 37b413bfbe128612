"""An in-process moto S3 server that can be stopped and restarted on the same port.

moto keeps its backends in process-global state, so a server restarted in the same
process still serves every bucket and object it had. ``stop()`` behaves like a killed
process: the listening socket is closed (new connections are refused) and every open
keep-alive connection is reset, so clients cannot keep talking to a "stopped" server.

Never touches real AWS: every client made here has an explicit endpoint and fake
credentials.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import ThreadedWSGIServer

from drive.adapters.s3 import S3BlobRepository
from drive.settings import S3Settings
from tests.integration.live import restartable_port

FAKE_KEY = "testing"
FAKE_SECRET = "testing"  # moto accepts any credentials
REGION = "us-east-1"


class _QuietHandler(MotoRequestHandler):
    server: _TrackingServer

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        self.server.hosts_seen.add(str(environ.get("HTTP_HOST", "")))
        return environ

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class _TrackingServer(ThreadedWSGIServer):
    """Remembers accepted connections so ``stop`` can reset them like a dead process would."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.connections: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self.hosts_seen: set[str] = set()
        super().__init__(*args, **kwargs)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        self.connections.add(conn)
        return conn, address


class MotoServer:
    """moto's S3 (and every other service) on ``127.0.0.1``; restartable on the same port."""

    host = "127.0.0.1"

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._server: _TrackingServer | None = None
        self._thread: threading.Thread | None = None
        # One dispatcher across restarts; the data lives in moto's global backends anyway.
        self._app = DomainDispatcherApplication(create_backend_app)

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("server was never started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def localhost_url(self) -> str:
        """Same server by name: ``<bucket>.localhost`` works for virtual-host addressing."""
        return f"http://localhost:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def hosts_seen(self) -> set[str]:
        """``Host`` headers received since the last start (shows which addressing was used)."""
        return set(self._server.hosts_seen) if self._server is not None else set()

    def start(self) -> None:
        if self._server is not None:
            return
        if not self._port:
            self._port = restartable_port()  # kept across restarts: never one the kernel hands out
        server = _TrackingServer(self.host, self._port, self._app, handler=_QuietHandler)
        self._port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, name=f"moto-{self._port}", daemon=True)
        thread.start()
        self._server, self._thread = server, thread

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.server_close()  # stop listening: new connections are refused
        thread.join()
        for conn in list(server.connections):
            with contextlib.suppress(OSError):  # already closed by its handler
                conn.shutdown(socket.SHUT_RDWR)


class SilentProxy:
    """TCP relay to a server that can go silent: ``freeze()`` stops reading and relaying.

    Models a dropped network path rather than a dead process: connections stay open and
    accepted, nothing is answered, and once the socket buffers fill the client's writes
    block. Clients must give up on their own timeouts.
    """

    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._closed.set()
        self._flowing.set()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            self._flowing.wait()  # frozen: accepted, never answered
            if self._closed.is_set():
                return
            upstream = socket.create_connection(self._target)
            self._sockets.append(upstream)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._relay, args=(source, sink), daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                self._flowing.wait()
                data = source.recv(65536)
                if not data or self._closed.is_set():
                    break
                self._flowing.wait()
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


_clients: dict[str, Any] = {}


def s3_client(server: MotoServer) -> Any:
    """A plain boto3 client for set-up and inspection; never the code under test."""
    if server.url not in _clients:
        _clients[server.url] = _new_client(server)
    return _clients[server.url]


def _new_client(server: MotoServer) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=FAKE_KEY,
        aws_secret_access_key=FAKE_SECRET,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 0}),
    )


def make_s3_repository(
    server: MotoServer, *, force_path_style: bool, bucket: str, part_size: int | None = None, **settings: Any
) -> S3BlobRepository:
    """Create ``bucket`` (if missing) and return an unopened repository for it.

    Path style talks to ``127.0.0.1``; virtual-host style to ``localhost`` so requests go
    to ``<bucket>.localhost`` (which needs ``*.localhost`` to resolve to loopback; see
    ``resolve_localhost_subdomains``).
    """
    client = s3_client(server)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=bucket)
    s3 = S3Settings(
        bucket=bucket,
        region=REGION,
        endpoint=server.url if force_path_style else server.localhost_url,
        access_key=FAKE_KEY,
        secret_key=FAKE_SECRET,
        force_path_style=force_path_style,
        **settings,
    )
    return S3BlobRepository(s3) if part_size is None else S3BlobRepository(s3, part_size=part_size)


def scrub_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the machine's AWS settings (profiles, endpoints, credentials) out of a test."""
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def resolve_localhost_subdomains(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``<bucket>.localhost`` resolve to 127.0.0.1, as RFC 6761 intends.

    glibc here resolves only ``localhost`` itself (systemd-resolved, browsers and macOS
    resolve every ``*.localhost``). aiohttp's default resolver calls
    ``socket.getaddrinfo`` in a thread, so patching it is enough for virtual-host
    requests to reach the loopback server.
    """
    original = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith(".localhost"):
            host = "127.0.0.1"
        return original(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
