"""A PostgreSQL cluster of a test's own, to stop and restart without touching the shared one.

``initdb`` makes it in a fresh directory, trust authentication, listening on a free
loopback port only, its socket in that directory. PostgreSQL refuses to run as root, so
as root every command runs as the ``postgres`` user (the directory is handed to it).
The binaries come from ``PG_BIN`` or ``/usr/lib/postgresql/<newest>/bin``, else ``PATH``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.integration.live import restartable_port, start_on_its_port

_TIMEOUT = 60.0


def postgres_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or None if there is none."""
    if configured := os.environ.get("PG_BIN"):
        return Path(configured)
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if installed:
        return installed[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class PgCluster:
    """``start()``, ``stop()``, ``restart()`` and ``cleanup()``; ``url`` for ``DATABASE_URL``."""

    def __init__(self) -> None:
        binaries = postgres_bin()
        if binaries is None:
            raise RuntimeError("no PostgreSQL binaries (initdb, pg_ctl): install postgresql or set PG_BIN")
        self._bin = binaries
        # Not under pytest's tmp_path: as root that is private to root, and postgres must enter it.
        self.root = Path(tempfile.mkdtemp(prefix="drive-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = restartable_port()
        self._started = False  # once started, the port is the one handed out in ``url``
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self._bin / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT, check=False)
        if done.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args[:2])} failed: {done.stdout}{done.stderr}{tail}")

    def start(self) -> None:
        # The port was free when chosen, seconds before (initdb): another process may have taken
        # it since. Before the first start nobody has the URL yet, so another port will do.
        start_on_its_port(self._start, known=self._started, move=self._move)
        self._started = True

    def _move(self) -> None:
        self.port = restartable_port()

    def _start(self) -> None:
        # fsync off: tests stop the server (even abruptly), never the machine, so every write
        # already reached the OS; and fsyncs would cost the two shared cores.
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: sessions ended, a clean shutdown, as a service restart; ``immediate``: as a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def cleanup(self) -> None:
        try:
            if self.running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
