"""The image and the compose file in a real Docker Engine, as a user runs them.

The engine is the machine's if one answers, else Debian's ``dockerd`` started (and stopped)
by the test (tests/integration/servers/docker_engine.py). The base image is the official
``python:3.11-slim`` when it can be pulled, else a local stand-in built from Debian's
packages; the Dockerfile takes it through its ``BASE_IMAGE`` build argument and is built
with the classic builder. In CI (``CI=true``) the test never skips: no engine is a failure.

Compose runs every service that can be built here (``app``, ``ftp``, and the one-shot
``bucket-init``, which is the app's image); the S3 server's place is taken by moto on the
compose network's gateway address. Services whose images cannot be had here (no registry)
stay checked by parsing (tests/unit/test_deploy_files.py); the test names them in a warning.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml
from botocore.config import Config

from tests.integration.live import free_port
from tests.integration.servers.docker_engine import (
    OFFICIAL_BASE,
    DockerUnavailable,
    Engine,
    can_pull,
    compose_command,
    docker_engine,
    python_base_image,
)
from tests.integration.servers.s3 import MotoServer
from tests.integration.servers.throwaway import unavailable

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "drive:local"  # the tag docker-compose.yml gives the app's image
TOKEN = "container-test-token-7f3e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RAW = {**AUTH, "Accept": "application/octet-stream"}
GRACEFUL = 5  # --graceful-timeout for the SIGTERM test (the image's default is 25)
CHUNK = 64 * 1024


def _unavailable(why: DockerUnavailable) -> None:
    unavailable(f"Docker is unavailable: {why}")


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    try:
        with docker_engine() as running:
            yield running
    except DockerUnavailable as why:
        _unavailable(why)


@pytest.fixture(scope="module")
def base_image(engine: Engine) -> str:
    log: list[str] = []
    try:
        return python_base_image(engine, log)
    except DockerUnavailable as why:
        _unavailable(why)
        raise
    finally:
        print("base image:", "; ".join(log))


@pytest.fixture(scope="module")
def compose_cli(engine: Engine) -> list[str]:
    try:
        return list(compose_command(engine))
    except DockerUnavailable as why:
        _unavailable(why)
        raise


@pytest.fixture(scope="module")
def image(engine: Engine, base_image: str) -> Iterator[str]:
    started = time.monotonic()
    engine.docker("build", "--build-arg", f"BASE_IMAGE={base_image}", "-t", IMAGE, str(ROOT), timeout=900)
    print(f"{IMAGE} built on {base_image} in {time.monotonic() - started:.0f}s")
    yield IMAGE
    if engine.owned:  # the cached data root would otherwise grow by one old image per change
        engine.docker("image", "prune", "--force", timeout=120, check=False)


class Container:
    """One ``docker run -d`` of the image, its port published on 127.0.0.1 only."""

    def __init__(self, engine: Engine, image: str, volume: str, *command: str, **env: str) -> None:
        self.engine = engine
        self.name = f"drive-ctest-{uuid.uuid4().hex[:10]}"
        settings = {"AUTH_BEARER_TOKEN": TOKEN, **env}
        env_args = [arg for key, value in settings.items() for arg in ("-e", f"{key}={value}")]
        engine.docker(
            "run", "-d", "--name", self.name, "-p", "127.0.0.1::8000", "-v", f"{volume}:/var/lib/drive",
            *env_args, image, *command,
        )  # fmt: skip
        self.url = ""
        started = time.monotonic()
        self.wait_until_answering()
        print(f"{self.name} answering after {time.monotonic() - started:.1f}s")

    def wait_until_answering(self, timeout: float = 60) -> None:
        port = self.engine.docker("port", self.name, "8000/tcp").stdout.split()[0].rsplit(":", 1)[1]
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.state("Running") == "true", self.logs()
            assert time.monotonic() < deadline, f"/healthz never answered:\n{self.logs()}"
            time.sleep(0.3)

    def state(self, field: str) -> str:
        return self.engine.docker("inspect", "--format", f"{{{{.State.{field}}}}}", self.name).stdout.strip()

    def logs(self) -> str:
        result = self.engine.docker("logs", "--tail", "40", self.name, check=False)
        return (result.stdout + result.stderr)[-4000:]

    def remove(self) -> None:
        self.engine.docker("rm", "-f", self.name, check=False)


@pytest.fixture
def volume(engine: Engine) -> Iterator[str]:
    name = f"drive-ctest-{uuid.uuid4().hex[:10]}"
    engine.docker("volume", "create", name)
    yield name
    engine.docker("volume", "rm", "-f", name, check=False)


@pytest.fixture
def containers(engine: Engine) -> Iterator[list[Container]]:
    started: list[Container] = []
    yield started
    for container in started:
        container.remove()


def test_image_serves_as_uid_10001_becomes_healthy_and_keeps_data_on_its_volume(
    engine: Engine, image: str, volume: str, containers: list[Container]
) -> None:
    config = yaml.safe_load(engine.docker("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    assert config["User"] == "10001:10001"
    assert config["Healthcheck"]["Test"][0] == "CMD"

    app = Container(engine, image, volume)
    containers.append(app)
    assert httpx.get(f"{app.url}/healthz", timeout=5).json() == {"status": "ok"}
    data = os.urandom(300_000)
    assert httpx.put(f"{app.url}/v1/blobs/kept", content=data, headers=AUTH, timeout=30).status_code == 201
    assert httpx.get(f"{app.url}/v1/blobs/kept", headers=RAW, timeout=30).content == data
    assert httpx.get(f"{app.url}/v1/blobs/kept", headers=RAW, timeout=30).status_code == 200
    assert httpx.get(f"{app.url}/v1/blobs/kept", timeout=30).status_code == 401  # no token

    # Every process of the container (server, workers) runs as 10001, none as root.
    top = engine.docker("top", app.name, "-eo", "uid,pid,args").stdout.splitlines()[1:]
    assert len(top) >= 3 and {line.split()[0] for line in top} == {"10001"}, top
    assert engine.docker("exec", app.name, "id", "-u").stdout.strip() == "10001"

    deadline = time.monotonic() + 90  # HEALTHCHECK: every 10 s, 20 s start period
    while (health := app.state("Health.Status")) != "healthy":
        assert health in ("starting", "healthy") and time.monotonic() < deadline, (health, app.logs())
        time.sleep(1)

    engine.docker("restart", app.name, timeout=60)  # the same container again
    app.wait_until_answering()
    assert httpx.get(f"{app.url}/v1/blobs/kept", headers=RAW, timeout=30).content == data

    app.remove()  # a new container on the same named volume
    again = Container(engine, image, volume)
    containers.append(again)
    assert httpx.get(f"{again.url}/v1/blobs/kept", headers=RAW, timeout=30).content == data


def _slow_body(data: bytes, delay: float, after: int, sent: threading.Event, hold: threading.Event) -> Iterator[bytes]:
    """``data`` in chunks ``delay`` apart; after ``after`` chunks sets ``sent`` and waits for ``hold``."""
    for index, start in enumerate(range(0, len(data), CHUNK)):
        if index == after:
            sent.set()
            hold.wait(60)
        time.sleep(delay)
        yield data[start : start + CHUNK]


def test_docker_stop_with_uploads_in_flight_exits_cleanly_and_keeps_only_finished_ones(
    engine: Engine, image: str, volume: str, containers: list[Container]
) -> None:
    command = ["serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--graceful-timeout", str(GRACEFUL)]
    app = Container(engine, image, volume, *command)
    containers.append(app)
    finishing, stalled = os.urandom(40 * CHUNK), os.urandom(40 * CHUNK)
    finishing_sent, stalled_sent, never, go_on = (threading.Event() for _ in range(4))
    outcomes: dict[str, Any] = {}

    def upload(blob_id: str, body: Iterator[bytes]) -> None:
        try:
            outcomes[blob_id] = httpx.put(f"{app.url}/v1/blobs/{blob_id}", content=body, headers=AUTH, timeout=60)
        except httpx.TransportError as error:
            outcomes[blob_id] = error

    threads = [
        # Sends a few chunks, then the rest at 20 per second once SIGTERM is sent: done well in time.
        threading.Thread(target=upload, args=("finishing", _slow_body(finishing, 0.05, 4, finishing_sent, go_on))),
        # Sends a few chunks and then nothing: still in flight when the grace period ends.
        threading.Thread(target=upload, args=("stalled", _slow_body(stalled, 0.05, 4, stalled_sent, never))),
    ]
    for thread in threads:
        thread.start()
    try:
        assert finishing_sent.wait(30) and stalled_sent.wait(30)
        time.sleep(0.5)  # both requests are inside the app, storing
        started = time.monotonic()
        stopper = threading.Thread(
            target=engine.docker, args=("stop", "--time", "30", app.name), kwargs={"timeout": 90}
        )
        stopper.start()
        time.sleep(0.5)
        go_on.set()
        stopper.join(90)
        elapsed = time.monotonic() - started
        print(f"docker stop took {elapsed:.1f}s")
    finally:
        go_on.set()
        never.set()
        for thread in threads:
            thread.join(90)

    # A clean exit (0) after the grace period, long before docker's 30 s SIGKILL.
    assert (app.state("ExitCode"), app.state("OOMKilled")) == ("0", "false"), app.logs()
    assert GRACEFUL - 1 < elapsed < GRACEFUL + 10, elapsed
    assert isinstance(outcomes["finishing"], httpx.Response) and outcomes["finishing"].status_code == 201
    cut = outcomes["stalled"]  # the contract's retryable 503, or a connection closed before the answer
    assert isinstance(cut, httpx.TransportError) or cut.status_code == 503, cut

    after = Container(engine, image, volume)
    containers.append(after)
    assert httpx.get(f"{after.url}/v1/blobs/finishing", headers=RAW, timeout=30).content == finishing
    assert httpx.get(f"{after.url}/v1/blobs/stalled", headers=RAW, timeout=30).status_code == 404
    leftovers = engine.docker("exec", after.name, "find", "/var/lib/drive", "-path", "*staging*", "-type", "f")
    assert leftovers.stdout.strip() == "", leftovers.stdout


# --- compose


class GatewayMoto(MotoServer):
    """moto on the compose network's gateway: reachable from its containers, not from outside."""

    def __init__(self, host: str) -> None:
        super().__init__()
        self.host = host


def _env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


class Compose:
    def __init__(self, engine: Engine, cli: list[str], settings: dict[str, str], env_file: Path) -> None:
        self.engine = engine
        self.settings = settings
        self.env_file = env_file
        self.project = settings["COMPOSE_PROJECT_NAME"]
        self.command = [*cli, "-p", self.project, "--env-file", str(env_file)]
        self.command += ["-f", str(ROOT / "docker-compose.yml")]
        self.write()

    def write(self, **changes: str) -> None:
        self.settings.update(changes)
        self.env_file.write_text("".join(f"{key}={value}\n" for key, value in self.settings.items()))

    def __call__(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        # Only the env file decides: a variable of the same name in this process would win.
        env = {key: value for key, value in self.engine.env().items() if key not in self.settings}
        result = subprocess.run(
            [*self.command, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"compose {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
        return result

    def container(self, service: str) -> str:
        return self("ps", "-q", service).stdout.strip()

    def wait_healthy(self, service: str, timeout: float = 90) -> None:
        container = self.container(service)
        deadline = time.monotonic() + timeout
        while True:
            health = self.engine.docker("inspect", "--format", "{{.State.Health.Status}}", container).stdout.strip()
            if health == "healthy":
                return
            assert time.monotonic() < deadline, (service, health, self("logs", "--tail", "30", service).stdout)
            time.sleep(1)

    def wait_answering(self, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, self("logs", "--tail", "40", "app").stdout
            time.sleep(0.3)


def up_app(compose: Compose, attempts: int = 3) -> str:
    """``up -d --no-deps app`` on a free port; its URL. Another process (a parallel test's
    server) may take the chosen port before Docker binds it: then again on a new one."""
    for attempt in range(attempts):
        if attempt:
            compose.write(DRIVE_PORT=str(free_port()))
        result = compose("up", "-d", "--no-deps", "app", check=False)
        if result.returncode == 0:
            return f"http://127.0.0.1:{compose.settings['DRIVE_PORT']}"
        if "address already in use" not in result.stdout + result.stderr:
            break
    raise AssertionError(f"compose up -d --no-deps app failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")


def test_compose_runs_app_ftp_and_bucket_init_and_switches_storage(
    engine: Engine, image: str, base_image: str, compose_cli: list[str], tmp_path: Path
) -> None:
    services: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    built = sorted(name for name, service in services.items() if "build" in service)
    assert built == ["app", "bucket-init", "ftp"]
    registry = base_image == OFFICIAL_BASE  # the official image came from a registry (or was there)
    parsed_only = sorted(
        name for name in set(services) - set(built) if not (registry and can_pull(engine, services[name]["image"]))
    )
    note = f"compose services checked by parsing only (image unavailable here): {', '.join(parsed_only) or 'none'}"
    print(note)
    if parsed_only:
        warnings.warn(note, stacklevel=1)

    version = subprocess.run([*compose_cli, "version", "--short"], capture_output=True, text=True, check=False)
    print(f"compose: {' '.join(compose_cli)} {version.stdout.strip()}")
    settings = {
        **_env_example(),
        "COMPOSE_PROJECT_NAME": f"drive-ctest-{uuid.uuid4().hex[:8]}",
        "DRIVE_PORT": str(free_port()),
        "BASE_IMAGE": base_image,
        "AUTH_BEARER_TOKEN": TOKEN,
        "STORAGE": "ftp",
        "DRIVE_BACKENDS": "fs,db,s3,ftp",
        "DATABASE_URL": "sqlite:////var/lib/drive/metadata.db",  # postgres: parsed only
    }
    compose = Compose(engine, compose_cli, settings, tmp_path / "compose.env")
    moto: GatewayMoto | None = None
    try:
        # Valid for this compose (v2, or Debian's v1.29), with and without the MariaDB profile.
        # (v1.29 lists services of inactive profiles too; v2 leaves them out.)
        assert set(compose("config", "--services").stdout.split()) >= set(services) - {"mariadb"}
        resolved = yaml.safe_load(compose("--profile", "mariadb", "config").stdout)["services"]
        assert set(resolved) == set(services) and resolved["mariadb"]["profiles"] == ["mariadb"]
        compose("build", "ftp", "app", timeout=900)

        compose("up", "-d", "ftp")
        compose.wait_healthy("ftp")
        network = f"{compose.project}_default"
        gateway = engine.docker(
            "network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}}", network
        ).stdout.strip()
        moto = GatewayMoto(gateway)
        moto.start()

        # The one-shot bucket set-up as compose defines it (image, entrypoint, script mount).
        made = compose("run", "--rm", "--no-deps", "-T", "-e", f"S3_INIT_ENDPOINT={moto.url}", "bucket-init")
        assert f"created bucket {settings['SEAWEEDFS_BUCKET']}" in made.stdout, made
        again = compose("run", "--rm", "--no-deps", "-T", "-e", f"S3_INIT_ENDPOINT={moto.url}", "bucket-init")
        assert "already exists" in again.stdout, again

        compose.write(S3_ENDPOINT=moto.url)
        url = up_app(compose)
        compose.wait_answering(url)
        ready = httpx.get(f"{url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        over_ftp = os.urandom(200_000)
        assert httpx.put(f"{url}/v1/blobs/over-ftp", content=over_ftp, headers=AUTH, timeout=30).status_code == 201
        assert httpx.get(f"{url}/v1/blobs/over-ftp", headers=RAW, timeout=30).content == over_ftp
        on_ftp = compose("exec", "-T", "ftp", "find", "/srv/ftp/objects", "-type", "f").stdout.split()
        assert len(on_ftp) == 1, on_ftp  # stored by the ftp service, over FTPS with its own CA

        compose.write(STORAGE="s3")
        url = up_app(compose)  # recreated with the new setting, same volume
        compose.wait_answering(url)
        over_s3 = os.urandom(100_000)
        assert httpx.put(f"{url}/v1/blobs/over-s3", content=over_s3, headers=AUTH, timeout=30).status_code == 201
        assert httpx.get(f"{url}/v1/blobs/over-s3", headers=RAW, timeout=30).content == over_s3
        assert httpx.get(f"{url}/v1/blobs/over-ftp", headers=RAW, timeout=30).content == over_ftp
        s3 = boto3.client(
            "s3",
            endpoint_url=moto.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(s3={"addressing_style": "path"}),
        )
        assert s3.list_objects_v2(Bucket=settings["S3_BUCKET"])["KeyCount"] == 1
    finally:
        compose("down", "-v", "--remove-orphans", "--timeout", "30", timeout=180, check=False)
        if moto is not None:
            moto.stop()
    assert compose("ps", "-q").stdout.strip() == ""
