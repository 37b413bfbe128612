"""A Docker Engine for the container test, and a Python base image even with no registry.

``docker_engine()`` uses a daemon that already answers (``DOCKER_HOST`` or the default
socket); otherwise, as root, it starts Debian's ``dockerd`` with its own data root, exec
root, pid file and socket under ``STATE_DIR``, and stops it afterwards. The data root
stays between runs, so images built once (the base stand-in, layer caches) are reused.
A file lock keeps two test runs from sharing one daemon's state.

``python_base_image()`` pulls the official ``python:3.11-slim``; where registries cannot be
reached it builds a stand-in: ``debootstrap --variant=minbase bookworm``, ``docker import``,
then Debian's python3 on top, trusting the host's CA bundle and pip index settings so pip
in a build reaches the package index the same way the host's pip does.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

STATE_DIR = Path(os.environ.get("DRIVE_DOCKER_TEST_DIR", "/var/tmp/drive-docker-test"))
OFFICIAL_BASE = "python:3.11-slim"
ROOTFS_IMAGE = "drive-base:bookworm"
STANDIN_IMAGE = "drive-base-python:local"
STANDIN_LABEL = "drive.test.standin"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

_STANDIN_DOCKERFILE = """\
# A stand-in for python:3.11-slim, built by tests/integration/servers/docker_engine.py.
FROM {rootfs}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get -o Acquire::Check-Valid-Until=false update -q \\
 && apt-get install -y -q --no-install-recommends \\
      python3 python3-venv python3-pip python-is-python3 ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
# The host's CA bundle (it may hold the CA of a proxy in front of the package index).
COPY host-ca.crt /etc/ssl/certs/ca-certificates.crt
COPY pip.conf /etc/pip.conf
# The official image lets pip install system-wide (docker/ftp does); Debian's python3 needs this.
ENV PIP_BREAK_SYSTEM_PACKAGES=1
"""


class DockerUnavailable(Exception):
    """No Docker Engine could be used or started here; the message says why."""


@dataclass
class Engine:
    host: str  # a DOCKER_HOST value
    owned: bool  # started (and stopped) by this helper

    def env(self, **extra: str) -> dict[str, str]:
        # The classic builder: there is no buildx here (compose v1.29 and v2 honour these too).
        return {
            **os.environ,
            "DOCKER_HOST": self.host,
            "DOCKER_BUILDKIT": "0",
            "COMPOSE_DOCKER_CLI_BUILD": "0",
            **extra,
        }

    def docker(
        self, *args: str, timeout: float = 120, check: bool = True, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["docker", *args],
            env=self.env(),
            input=input.decode() if input is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return result

    def image_label(self, image: str, label: str) -> str | None:
        result = self.docker(
            "image", "inspect", "--format", f'{{{{index .Config.Labels "{label}"}}}}', image, check=False
        )
        return result.stdout.strip() if result.returncode == 0 else None

    def has_image(self, image: str) -> bool:
        return self.docker("image", "inspect", image, check=False).returncode == 0


def _answers(host: str) -> bool:
    try:
        result = subprocess.run(
            ["docker", "-H", host, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            timeout=15,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def _stop_orphan(pidfile: Path) -> None:
    """A daemon left by a run that was killed: ours (same state dir), so stop it."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"dockerd" not in cmdline or str(STATE_DIR).encode() not in cmdline:
        return
    os.kill(pid, 15)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)


@contextlib.contextmanager
def docker_engine() -> Iterator[Engine]:
    if shutil.which("docker") is None:
        raise DockerUnavailable("no docker client on PATH (.ci/run installs Debian's docker.io)")
    existing = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if _answers(existing):
        yield Engine(existing, owned=False)
        return
    if shutil.which("dockerd") is None:
        raise DockerUnavailable("no running Docker daemon and no dockerd (.ci/run installs Debian's docker.io)")
    if os.geteuid() != 0:
        raise DockerUnavailable("no running Docker daemon, and starting dockerd needs root")
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run's daemon: wait for it to finish
        pidfile = STATE_DIR / "dockerd.pid"
        _stop_orphan(pidfile)
        host = f"unix://{STATE_DIR / 'docker.sock'}"
        log_path = STATE_DIR / "dockerd.log"
        with open(log_path, "wb") as log:
            roots = ["--data-root", str(STATE_DIR / "data"), "--exec-root", str(STATE_DIR / "exec")]
            daemon = subprocess.Popen(
                ["dockerd", *roots, "--pidfile", str(pidfile), "-H", host],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # not killed with the test's terminal; stopped below
            )
        try:
            deadline = time.monotonic() + 60
            while not _answers(host):
                if daemon.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    raise DockerUnavailable(f"dockerd did not start (exit {daemon.poll()}):\n{tail}")
                time.sleep(0.3)
            yield Engine(host, owned=True)
        finally:
            daemon.terminate()  # dockerd stops its containers and its containerd, then exits
            try:
                daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(timeout=10)


def _pip_settings() -> str:
    """The host's pip index settings that make sense inside a container (no file:// paths)."""
    lines = ["[global]", f"cert = {HOST_CA_BUNDLE}"]
    found: dict[str, str] = {}
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False, timeout=60
    )
    for line in listing.stdout.splitlines():
        key, _, value = line.partition("=")
        found[key.split(".")[-1]] = value.strip().strip("'\"")
    for name in ("index-url", "extra-index-url", "trusted-host"):
        env_value = os.environ.get("PIP_" + name.upper().replace("-", "_"))
        value = env_value or found.get(name, "")
        usable = [v for v in value.split() if not v.startswith("file:") and not v.startswith("/")]
        if usable:
            lines.append(f"{name} = {' '.join(usable)}")
    return "\n".join(lines) + "\n"


def _build_standin(engine: Engine, log: list[str]) -> None:
    dockerfile = _STANDIN_DOCKERFILE.format(rootfs=ROOTFS_IMAGE)
    pip_conf = _pip_settings()
    ca_bundle = HOST_CA_BUNDLE.read_bytes()
    recipe = hashlib.sha256(dockerfile.encode() + pip_conf.encode() + ca_bundle).hexdigest()[:16]
    if engine.image_label(STANDIN_IMAGE, STANDIN_LABEL) == recipe:
        log.append(f"{STANDIN_IMAGE}: cached")
        return
    if not engine.has_image(ROOTFS_IMAGE):
        if shutil.which("debootstrap") is None:
            raise DockerUnavailable("no python base image and no debootstrap (.ci/run installs it)")
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        for stale in STATE_DIR.glob("rootfs-*"):  # left by a run killed while bootstrapping
            if time.time() - stale.stat().st_mtime > 3600:
                shutil.rmtree(stale, ignore_errors=True)
        with tempfile.TemporaryDirectory(dir=STATE_DIR, prefix="rootfs-") as rootfs:
            started = time.monotonic()
            subprocess.run(
                ["debootstrap", "--variant=minbase", "bookworm", rootfs],
                capture_output=True,
                check=True,
                timeout=900,
            )
            with subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE) as tar:
                imported = subprocess.run(
                    ["docker", "import", "-", ROOTFS_IMAGE],
                    stdin=tar.stdout,
                    env=engine.env(),
                    capture_output=True,
                    check=False,
                    timeout=300,
                )
            assert tar.returncode == 0 and imported.returncode == 0, imported.stderr
            log.append(f"{ROOTFS_IMAGE}: debootstrap + import in {time.monotonic() - started:.0f}s")
    with tempfile.TemporaryDirectory() as context:
        Path(context, "Dockerfile").write_text(dockerfile)
        Path(context, "pip.conf").write_text(pip_conf)
        Path(context, "host-ca.crt").write_bytes(ca_bundle)
        started = time.monotonic()
        engine.docker("build", "--label", f"{STANDIN_LABEL}={recipe}", "-t", STANDIN_IMAGE, context, timeout=900)
        log.append(f"{STANDIN_IMAGE}: built in {time.monotonic() - started:.0f}s")


def python_base_image(engine: Engine, log: list[str]) -> str:
    """``python:3.11-slim`` if it can be had, else the local stand-in; notes what it did in ``log``."""
    if engine.has_image(OFFICIAL_BASE) and engine.image_label(OFFICIAL_BASE, STANDIN_LABEL) == "":
        log.append(f"{OFFICIAL_BASE}: present")
        return OFFICIAL_BASE
    try:
        pulled = engine.docker("pull", OFFICIAL_BASE, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        pulled = None
    if pulled is not None and pulled.returncode == 0:
        log.append(f"{OFFICIAL_BASE}: pulled")
        return OFFICIAL_BASE
    log.append(f"{OFFICIAL_BASE}: cannot be pulled here; using the local stand-in")
    _build_standin(engine, log)
    return STANDIN_IMAGE


def can_pull(engine: Engine, image: str, timeout: float = 30) -> bool:
    if engine.has_image(image):
        return True
    try:
        return engine.docker("pull", image, timeout=timeout, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def compose_command(engine: Engine) -> Sequence[str]:
    """Compose v2 (``docker compose``) if present, else Debian's ``docker-compose`` (v1.29)."""
    v2 = subprocess.run(["docker", "compose", "version"], capture_output=True, env=engine.env(), check=False)
    if v2.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise DockerUnavailable("neither `docker compose` nor `docker-compose` (.ci/run installs docker-compose)")
