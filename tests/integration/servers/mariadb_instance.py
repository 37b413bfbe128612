"""A MariaDB server of a test's own, to stop and restart without touching the shared one on 3306.

``mariadb-install-db`` makes it in a fresh directory (root with an empty password over
TCP, no test database); ``mariadbd`` runs it as a child process on a free loopback port,
its socket, pid file and error log in that directory. As root the server runs as the
``mysql`` user (the directory is handed to it). ``stop()`` ends it cleanly (SIGTERM) or
as a crash (SIGKILL); ``start()`` brings it back on the same data and port.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.integration.live import restartable_port, start_on_its_port

_TIMEOUT = 60.0
DATABASE = "drive"


def _tool(*names: str) -> str | None:
    for name in names:
        if found := shutil.which(name):
            return found
    return None


def mariadb_binaries() -> dict[str, str] | None:
    """``install``, ``server``, ``admin`` and ``client`` paths, or None if any is missing."""
    found = {
        "install": _tool("mariadb-install-db", "mysql_install_db"),
        "server": _tool("mariadbd", "mysqld") or next((p for p in ("/usr/sbin/mariadbd",) if Path(p).exists()), None),
        "admin": _tool("mariadb-admin", "mysqladmin"),
        "client": _tool("mariadb", "mysql"),
    }
    if any(path is None for path in found.values()):
        return None
    return {name: str(path) for name, path in found.items()}


class MariadbInstance:
    """``start()``, ``stop(crash=...)`` and ``cleanup()``; ``url`` for ``DATABASE_URL`` (database ``drive``)."""

    def __init__(self) -> None:
        binaries = mariadb_binaries()
        if binaries is None:
            raise RuntimeError(
                "no MariaDB binaries (mariadb-install-db, mariadbd, mariadb-admin, mariadb): "
                "install mariadb-server and mariadb-client"
            )
        self._bin = binaries
        # Not under pytest's tmp_path: as root that is private to root, and mysql must enter it.
        self.root = Path(tempfile.mkdtemp(prefix="drive-mariadb-"))
        self.data = self.root / "data"
        self.log = self.root / "err.log"
        self.port = restartable_port()
        self._as_root = os.geteuid() == 0
        if self._as_root:
            owner = pwd.getpwnam("mysql")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self._process: subprocess.Popen[bytes] | None = None
        self._created = False
        install = [
            self._bin["install"],
            "--no-defaults",
            "--auth-root-authentication-method=normal",  # root@127.0.0.1 with an empty password
            "--skip-test-db",
            "--skip-name-resolve",
            f"--datadir={self.data}",
            *self._user(),
        ]
        done = subprocess.run(install, capture_output=True, text=True, timeout=_TIMEOUT, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{DATABASE}"

    def _user(self) -> list[str]:
        return ["--user=mysql"] if self._as_root else []

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        # The port was free when chosen, before mariadb-install-db ran: another process may have
        # taken it since. Before the first start nobody has the URL yet, so another port will do.
        start_on_its_port(self._start, known=self._created, move=self._move)

    def _move(self) -> None:
        self.port = restartable_port()

    def _start(self) -> None:
        command = [
            self._bin["server"],
            "--no-defaults",
            f"--datadir={self.data}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.root / 'sock'}",
            f"--pid-file={self.root / 'pid'}",
            *self._user(),
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M",
            # Commits reach the OS, not the disk: tests kill the server, never the machine,
            # and fsyncs would cost the two shared cores (as fsync=off for PostgreSQL).
            "--innodb-flush-log-at-trx-commit=2",
            "--max-connections=60",
            f"--log-error={self.log}",
        ]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + _TIMEOUT
        while not self._ping():
            if not self.running or time.monotonic() > deadline:
                self.stop(crash=True)
                raise RuntimeError(f"mariadbd did not start: {self._log_tail()}")
            time.sleep(0.2)
        if not self._created:
            self.sql(f"CREATE DATABASE IF NOT EXISTS `{DATABASE}` CHARACTER SET utf8mb4")
            self._created = True

    def stop(self, crash: bool = False) -> None:
        """A clean shutdown (SIGTERM: a service restart) or, with ``crash``, SIGKILL."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL if crash else signal.SIGTERM)
            try:
                process.wait(_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(_TIMEOUT)
        self._process = None

    def _ping(self) -> bool:
        ping = [self._bin["admin"], "--no-defaults", *self._tcp(), "--connect-timeout=2", "ping"]
        done = subprocess.run(ping, capture_output=True, text=True, timeout=_TIMEOUT, check=False)
        return done.returncode == 0

    def _tcp(self) -> list[str]:
        return ["-h127.0.0.1", f"-P{self.port}", "-uroot"]

    def sql(self, statement: str) -> str:
        """Run ``statement`` as root through the command-line client; its output, tab-separated."""
        client = [self._bin["client"], "--no-defaults", *self._tcp(), "--batch", "--skip-column-names"]
        command = [*client, "-e", statement]
        done = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"mariadb client failed: {done.stderr.strip()}")
        return done.stdout

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else "(no error log)"

    def cleanup(self) -> None:
        try:
            self.stop(crash=True)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> MariadbInstance:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
