"""The Docker files, checked by reading them (tests/integration/test_container.py runs them).

Plus live checks of the compose file's own helpers as plain processes: its FTP server
(docker/ftp/server.py), which the real FTP adapter talks explicit TLS to, trusting only the
CA it publishes; and its one-shot bucket set-up (docker/bucket-init/make_bucket.py) against moto.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from drive.adapters.ftp import FtpBlobRepository
from drive.domain.errors import StorageUnavailable
from drive.settings import FtpSettings
from tests.integration.servers.s3 import MotoServer, s3_client

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"app", "postgres", "seaweedfs", "bucket-init", "ftp", "mariadb"}
OPTIONAL_SERVICES = {"mariadb": ["mariadb"]}  # service: its profiles (not started by a plain `up`)
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
COMPOSE_OWN_SETTINGS = {"COMPOSE_PROJECT_NAME"}  # read by compose itself, not by the file


def dockerfile_args(path: Path) -> dict[str, str]:
    """Global ``ARG name=default`` lines (before the first FROM), defaults expanded in order."""
    args: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.upper().startswith("FROM "):
            break
        if line.upper().startswith("ARG "):
            name, _, default = line[4:].strip().partition("=")
            args[name] = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], default)
    return args


def base_images(path: Path) -> list[str]:
    """Every stage's base image as built by default (build args at their defaults)."""
    args = dockerfile_args(path)
    return [
        re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], instruction(stage, "FROM")[0].split()[0])
        for stage in dockerfile_stages(path)
    ]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def app_service() -> dict[str, Any]:
    service: dict[str, Any] = compose()["services"]["app"]
    return service


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"not KEY=value: {line!r}"
            values[key.strip()] = value.strip()
    return values


def dockerfile_stages(path: Path) -> list[list[tuple[str, str]]]:
    """Instructions (keyword, arguments) per build stage; continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, arguments.strip()))
    return stages


def instruction(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [arguments for kw, arguments in stage if kw == keyword]


def serve_command() -> list[str]:
    final = dockerfile_stages(ROOT / "Dockerfile")[-1]
    (entrypoint,) = instruction(final, "ENTRYPOINT")
    (cmd,) = instruction(final, "CMD")
    return [*json.loads(entrypoint), *json.loads(cmd)]


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return float(match.group(1))


def test_dockerfile_is_multi_stage_slim_and_runs_drive_as_a_non_root_user() -> None:
    stages = dockerfile_stages(ROOT / "Dockerfile")
    assert len(stages) >= 2
    for stage in stages:
        assert len(instruction(stage, "FROM")) == 1
    # By default the official slim image; BASE_IMAGE swaps it (the container test's local stand-in).
    assert base_images(ROOT / "Dockerfile") == ["python:3.11-slim"] * len(stages)
    assert base_images(ROOT / "docker" / "ftp" / "Dockerfile") == ["python:3.11-slim"]
    for path in (ROOT / "Dockerfile", ROOT / "docker" / "ftp" / "Dockerfile"):
        assert "BASE_IMAGE" in dockerfile_args(path)
        # The classic builder (no BuildKit) reads only a `# syntax=` it may ignore, nothing newer.
        assert "RUN --mount" not in path.read_text() and "<<" not in path.read_text()
    build_name = instruction(stages[0], "FROM")[0].split()[-1]
    final = stages[-1]
    copies = instruction(final, "COPY")
    assert copies and all(c.startswith(f"--from={build_name} ") for c in copies), "runtime gets only the build output"
    (user,) = instruction(final, "USER")
    assert user.split(":")[0] not in ("root", "0")
    (healthcheck,) = instruction(final, "HEALTHCHECK")
    assert "CMD" in healthcheck and "/healthz" in healthcheck
    assert instruction(final, "EXPOSE") == ["8000"]

    command = serve_command()
    assert command[:2] == ["drive", "serve"]
    options = dict(zip(command[2::2], command[3::2], strict=True))
    assert options["--host"] == "0.0.0.0"
    assert options["--port"] == "8000"
    assert int(options["--workers"]) >= 2
    assert float(options["--graceful-timeout"]) > 0
    # Several workers share metrics only through prometheus_client's multiprocess directory.
    assert any("PROMETHEUS_MULTIPROC_DIR=" in env for env in instruction(final, "ENV"))


def test_build_context_keeps_env_files_and_local_state_out() -> None:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    assert patterns[0] == "*", "allow-list: everything is excluded unless named"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "src"}


def test_env_file_is_git_ignored_and_the_example_is_not() -> None:
    def ignored(path: str) -> bool:
        result = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
        assert result.returncode in (0, 1)
        return result.returncode == 0

    assert ignored(".env")
    assert not ignored(".env.example")


def test_compose_names_every_service_and_starts_the_app_only_once_they_are_healthy() -> None:
    services = compose()["services"]
    assert set(services) == SERVICES
    assert app_service()["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "seaweedfs": {"condition": "service_healthy"},
        "ftp": {"condition": "service_healthy"},
        "bucket-init": {"condition": "service_completed_successfully"},
    }
    for name in ("postgres", "seaweedfs", "ftp", "mariadb"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    init = services["bucket-init"]
    assert init["depends_on"] == {"seaweedfs": {"condition": "service_healthy"}}
    assert init["restart"] == "no"
    assert init["image"] == app_service()["image"] and init["build"] == app_service()["build"]
    assert init["entrypoint"] == ["python", "/opt/bucket-init/make_bucket.py"]
    assert init["volumes"] == ["./docker/bucket-init:/opt/bucket-init:ro"]
    assert init["environment"] == {
        "S3_INIT_ENDPOINT": "http://seaweedfs:8333",
        "S3_INIT_ACCESS_KEY": "${SEAWEEDFS_ACCESS_KEY}",
        "S3_INIT_SECRET_KEY": "${SEAWEEDFS_SECRET_KEY}",
        "S3_INIT_BUCKET": "${SEAWEEDFS_BUCKET}",
    }
    # The S3 gateway's one admin identity comes from the environment, no config file.
    assert services["seaweedfs"]["environment"] == {
        "AWS_ACCESS_KEY_ID": "${SEAWEEDFS_ACCESS_KEY}",
        "AWS_SECRET_ACCESS_KEY": "${SEAWEEDFS_SECRET_KEY}",
    }
    assert services["seaweedfs"]["command"][0] == "server" and "-s3" in services["seaweedfs"]["command"]
    assert "8333" in services["seaweedfs"]["healthcheck"]["test"][-1]


def test_compose_images_are_maintained_and_pinned() -> None:
    services = compose()["services"]
    images = {name: service["image"] for name, service in services.items()}
    assert not any("minio" in image for image in images.values()), "MinIO's community edition is archived"
    assert images["seaweedfs"].startswith("chrislusf/seaweedfs:") and not images["seaweedfs"].endswith(":latest")
    assert images["postgres"].startswith("postgres:") and images["mariadb"] == "mariadb:11"
    for name, service in services.items():  # the rest are built from this repository
        if "build" not in service:
            assert re.fullmatch(r"[\w./-]+:[\w.-]+", images[name]) and not images[name].endswith(":latest"), name


def test_compose_mariadb_runs_only_under_its_profile() -> None:
    services = compose()["services"]
    for name, service in services.items():
        assert service.get("profiles") == OPTIONAL_SERVICES.get(name), name
    mariadb = services["mariadb"]
    assert mariadb["environment"] == {
        "MARIADB_DATABASE": "${MARIADB_DATABASE}",
        "MARIADB_USER": "${MARIADB_USER}",
        "MARIADB_PASSWORD": "${MARIADB_PASSWORD}",
        "MARIADB_ROOT_PASSWORD": "${MARIADB_ROOT_PASSWORD}",
    }
    assert mariadb["healthcheck"]["test"] == ["CMD", "healthcheck.sh", "--connect", "--innodb_initialized"]
    assert "ports" not in mariadb  # reachable from the app's network only
    # No default service may need it: a plain `docker compose up` must not depend on a profile.
    for name, service in services.items():
        assert "mariadb" not in service.get("depends_on", {}), name


def test_compose_file_suits_compose_v2_and_v1_29() -> None:
    loaded = compose()
    assert "name" not in loaded, "docker-compose 1.29 rejects a top-level name (use COMPOSE_PROJECT_NAME)"
    assert "version" not in loaded, "the Compose Specification has no version; v2 warns about it"
    assert set(loaded) - {"services", "volumes"} <= {key for key in loaded if key.startswith("x-")}
    assert env_example()["COMPOSE_PROJECT_NAME"] == "drive"
    for service in loaded["services"].values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), port  # never on every interface


def test_compose_keeps_data_in_named_volumes() -> None:
    declared = set(compose()["volumes"])
    mounts = {
        name: {m.split(":")[1]: m.split(":")[0] for m in service.get("volumes", [])}
        for name, service in compose()["services"].items()
    }
    assert mounts["postgres"]["/var/lib/postgresql/data"] in declared
    assert mounts["seaweedfs"]["/data"] in declared
    assert mounts["mariadb"]["/var/lib/mysql"] in declared
    assert mounts["ftp"]["/srv/ftp"] in declared
    assert mounts["app"]["/var/lib/drive"] in declared
    # The one bind mount: the bucket set-up script, read-only, from this repository.
    assert mounts["bucket-init"].pop("/opt/bucket-init") == "./docker/bucket-init"
    used = {source for service in mounts.values() for source in service.values()}
    assert used == declared, "every data mount is a named volume, and every volume is used"
    # The FTP CA certificate reaches the app read-only; the FTP server's key does not.
    assert "ftp-ca:/run/ftp-ca:ro" in app_service()["volumes"]
    assert not any(m.startswith("ftp-tls:") for m in app_service()["volumes"])


def test_app_service_runs_the_image_with_the_documented_settings() -> None:
    app = app_service()
    assert app["build"]["context"] == "."  # the Dockerfile at the root: the same image
    assert app["build"]["args"] == {"BASE_IMAGE": "${BASE_IMAGE:-python:3.11-slim}"}
    assert "command" not in app and "entrypoint" not in app  # the image's own `drive serve`
    assert app["ports"] == ["127.0.0.1:${DRIVE_PORT:-8000}:8000"]
    assert env_example()["DRIVE_PORT"] == "8000"
    graceful = float(serve_command()[serve_command().index("--graceful-timeout") + 1])
    assert seconds(app["stop_grace_period"]) > graceful, "Docker must not SIGKILL before uploads drain"

    readme = (ROOT / "README.md").read_text()
    environment: dict[str, str] = app["environment"]
    for key in environment:
        assert f"`{key}`" in readme, f"{key} is not documented in the README"
    assert environment["FS_BASE_PATH"].startswith("/var/lib/drive/")  # on the drive-data volume
    assert set(env_example()["DRIVE_BACKENDS"].split(",")) == {"fs", "db", "s3", "ftp"}


def test_env_example_points_drive_at_the_local_services_with_their_own_credentials() -> None:
    example = env_example()
    ftp = compose()["services"]["ftp"]["environment"]
    assert example["DATABASE_URL"] == (
        f"postgresql://{example['POSTGRES_USER']}:{example['POSTGRES_PASSWORD']}@postgres:5432/{example['POSTGRES_DB']}"
    )
    assert example["S3_ENDPOINT"] == compose()["services"]["bucket-init"]["environment"]["S3_INIT_ENDPOINT"]
    assert example["S3_FORCE_PATH_STYLE"] == "true"
    assert (example["S3_ACCESS_KEY"], example["S3_SECRET_KEY"], example["S3_BUCKET"]) == (
        example["SEAWEEDFS_ACCESS_KEY"],
        example["SEAWEEDFS_SECRET_KEY"],
        example["SEAWEEDFS_BUCKET"],
    )
    assert example["FTP_HOST"] == "ftp" and "ftp" in ftp["FTP_TLS_NAMES"].split(",")  # the certificate's name
    assert example["FTP_PORT"] == ftp["FTP_LISTEN_PORT"]
    assert example["FTP_TLS"] == "true"
    assert (example["FTP_USER"], example["FTP_PASSWORD"]) == (example["FTPD_USER"], example["FTPD_PASSWORD"])
    assert example["FTP_CA_FILE"].startswith("/run/ftp-ca/")  # where the app mounts the ftp-ca volume


def test_env_example_defines_every_variable_compose_reads() -> None:
    referenced = set(_VARIABLE.findall((ROOT / "docker-compose.yml").read_text()))
    example = env_example()
    assert referenced <= set(example), referenced - set(example)
    assert set(example) - COMPOSE_OWN_SETTINGS <= referenced, "no unused settings in .env.example"
    for key, value in app_service()["environment"].items():
        assert value.startswith("${" + key) or key == "FS_BASE_PATH", f"{key} should come from .env"


def test_readme_gives_the_compose_command_and_the_image_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "cp .env.example .env" in readme
    assert "docker compose up" in readme
    assert " ".join(serve_command()) in readme
    assert "PROMETHEUS_MULTIPROC_DIR" in readme


def _committed_deploy_files() -> Iterator[Path]:
    yield from (ROOT / name for name in ("Dockerfile", ".dockerignore", "docker-compose.yml", ".env.example"))
    yield from (p for p in (ROOT / "docker").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    yield ROOT / "docs" / "DEPLOYMENT.md"


def test_no_deploy_file_holds_anything_that_looks_like_a_real_secret() -> None:
    for path in _committed_deploy_files():
        text = path.read_text()
        assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", text), path  # AWS access key ids
        assert "PRIVATE KEY-----" not in text, path
        assert not re.search(r"\b[A-Za-z0-9+/]{40}\b", text), path  # AWS-style secret keys
    for key, value in env_example().items():
        if re.search(r"TOKEN|PASSWORD|SECRET|ACCESS_KEY|ROOT_USER", key):
            assert "dev" in value, f"{key} must be an obviously local value"
    for line in (ROOT / ".env.example").read_text().splitlines():  # commented examples too
        key, sep, value = line.lstrip("# ").partition("=")
        if sep and re.search(r"URL$", key) and "@" in value:
            assert "dev" in value, f"{key} must be an obviously local value"


# --- the compose FTP server, live


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def compose_ftp(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "FTP_USER": "drive",
        "FTP_PASSWORD": "drive-dev-ftp-secret",
        "FTP_ROOT": str(tmp_path / "root"),
        "FTP_LISTEN_PORT": str(_free_port()),
        "FTP_TLS_DIR": str(tmp_path / "tls"),
        "FTP_CA_EXPORT": str(tmp_path / "ca" / "ca.pem"),
        "FTP_TLS_NAMES": "ftp,localhost,127.0.0.1",
    }
    script = str(ROOT / "docker" / "ftp" / "server.py")

    def healthy() -> bool:
        return subprocess.run([sys.executable, script, "check"], env=env, check=False).returncode == 0

    assert not healthy()
    process = subprocess.Popen([sys.executable, script], env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not healthy():
            assert process.poll() is None and time.monotonic() < deadline, "ftp server did not come up"
            time.sleep(0.1)
        yield env
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def _repository(env: dict[str, str], **overrides: Any) -> FtpBlobRepository:
    options: dict[str, Any] = {
        "host": "localhost",
        "port": int(env["FTP_LISTEN_PORT"]),
        "user": env["FTP_USER"],
        "password": env["FTP_PASSWORD"],
        "tls": True,
        "ca_file": env["FTP_CA_EXPORT"],
        "timeout": 5.0,
    }
    options.update(overrides)
    return FtpBlobRepository(FtpSettings(**options))


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.mark.anyio
async def test_compose_ftp_server_requires_tls_and_is_trusted_through_its_published_ca(
    compose_ftp: dict[str, str],
) -> None:
    exported = Path(compose_ftp["FTP_CA_EXPORT"])
    assert exported.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert list(exported.parent.iterdir()) == [exported]  # only the CA certificate is shared

    repository = _repository(compose_ftp)
    await repository.open()
    try:
        key = "0123456789abcdef0123456789abcdef"
        assert await repository.write(key, _chunks(b"over ", b"tls")) == 8
        assert b"".join([chunk async for chunk in repository.read(key)]) == b"over tls"
        await repository.delete(key)
    finally:
        await repository.close()

    for refused in (_repository(compose_ftp, tls=False), _repository(compose_ftp, ca_file=None)):
        with pytest.raises(StorageUnavailable):  # plain FTP, or a CA the client does not know
            await refused.open()
        await refused.close()


# --- the compose bucket set-up, live against moto


def test_bucket_init_makes_the_bucket_and_a_rerun_is_harmless() -> None:
    script = str(ROOT / "docker" / "bucket-init" / "make_bucket.py")
    bucket = f"bucket-init-{uuid.uuid4().hex[:12]}"
    server = MotoServer()
    server.start()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "S3_INIT_ENDPOINT": server.url,
        "S3_INIT_ACCESS_KEY": "drive-dev-s3",
        "S3_INIT_SECRET_KEY": "drive-dev-s3-secret",
        "S3_INIT_BUCKET": bucket,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }

    def run(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, script], env={**env, **extra}, capture_output=True, text=True, timeout=60, check=False
        )

    try:
        first, again = run(), run()
        assert (first.returncode, first.stdout.strip()) == (0, f"bucket-init: created bucket {bucket}"), first
        assert (again.returncode, again.stdout.strip()) == (0, f"bucket-init: bucket {bucket} already exists"), again
        assert bucket in [b["Name"] for b in s3_client(server).list_buckets()["Buckets"]]
        refused = run(S3_INIT_BUCKET="ab")  # too short: 400 InvalidBucketName  # any other answer fails the service
        assert refused.returncode == 1 and "cannot create bucket ab: InvalidBucketName" in refused.stderr, refused
    finally:
        server.stop()
    started = time.monotonic()
    gone = run(S3_INIT_WAIT="2")  # nothing listens any more: retried, then given up
    assert gone.returncode == 1 and "does not answer" in gone.stderr, gone
    assert 2 <= time.monotonic() - started < 30
    empty = run(S3_INIT_BUCKET="")
    del env["S3_INIT_BUCKET"]
    for unset in (empty, run()):
        assert unset.returncode == 2 and "S3_INIT_BUCKET must be set" in unset.stderr, unset
