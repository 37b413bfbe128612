"""Real servers for integration tests: the app under uvicorn on a free loopback port."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from dependency_injector import providers

from drive.container import Container
from drive.entrypoints.http.app import create_app
from drive.settings import Settings

TOKEN = "test-token-3f9a-0c1d"
READ_TOKEN = "read-token-77c1-5e2b"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def restartable_port() -> int:
    """A free loopback port below the kernel's ephemeral range, for a server a test restarts on it.

    ``free_port()`` hands out ports from that range, and the kernel takes the local end of
    every outgoing connection from it too: while a server is down, any of them can take its
    port (seen in CI: a MariaDB restarted after SIGKILL found its port in use). Below the range
    a port is only taken by asking for it by number; the pick is random among thousands.
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(max(1024, low - 16384), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port below the ephemeral range")


def start_on_its_port(start: Callable[[], None], *, known: bool, move: Callable[[], None], attempts: int = 3) -> None:
    """``start()`` a server on the port it chose; until its URL is ``known`` to anyone, a port
    another process took meanwhile ("Address already in use") is given up: ``move()`` picks
    another and it starts again. Once known, the port is kept (a restart must come back on it).
    """
    for attempt in range(attempts):
        try:
            start()
            return
        except RuntimeError as exc:
            if known or "Address already in use" not in str(exc) or attempt == attempts - 1:
                raise
            move()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def base_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {
        "AUTH_BEARER_TOKEN": TOKEN,
        "AUTH_TOKENS": f"read:{READ_TOKEN}",
        "FS_BASE_PATH": str(tmp / "blobs"),
        "DATABASE_URL": f"sqlite:///{tmp / 'metadata.db'}",
    }
    env.update(extra)
    return env


class LiveServer:
    """The app in a uvicorn thread of this process; ``container`` is open to overrides."""

    def __init__(self, env: Mapping[str, str], configure: Callable[[Container], None] | None = None) -> None:
        self.container = Container()
        self.container.settings.override(providers.Object(Settings.from_env(env)))
        if configure is not None:
            configure(self.container)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> LiveServer:
        config = uvicorn.Config(
            create_app(self.container),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            loop="asyncio",  # as drive serve runs it
            http="httptools",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)
        self._server = self._thread = None

    def client(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("timeout", 60)
        return httpx.Client(base_url=self.url, **kwargs)


class ServerProcess:
    """``drive serve`` as a real subprocess, for restarts, crashes and start-up checks."""

    def __init__(self, env: Mapping[str, str], cwd: Path, workers: int = 1) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTH_", "STORAGE", "S3_", "FTP_"))}
        self.env.update(env)
        self.cwd = cwd
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = cwd / f"server-{self.port}.log"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "drive", "serve", "--port", str(self.port), "--workers", str(self.workers)]

    def start(self, wait: bool = True) -> ServerProcess:
        first = self.process is None
        for attempt in range(3):
            with self.log.open("ab") as log:
                self.process = subprocess.Popen(self.command(), env=self.env, cwd=self.cwd, stdout=log, stderr=log)
            if not wait:
                return self
            try:
                self.wait_ready()
                return self
            except RuntimeError:
                # A free port can be taken by a parallel test between free_port() and the bind.
                # Only a first start may move: nobody has been told this URL yet.
                if not (first and attempt < 2 and "address already in use" in self.log.read_text()):
                    raise
                self.port = free_port()
                self.url = f"http://127.0.0.1:{self.port}"
                self.log = self.cwd / f"server-{self.port}.log"
        raise AssertionError("unreachable")

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> int:
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(timeout=timeout)
