"""The Docker files, checked by reading them (no Docker engine runs where the tests do).

Plus one live check: the compose file's FTP server (docker/ftp/server.py) is started as a
process and the real FTP adapter talks explicit TLS to it, trusting only the CA it publishes.
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
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from drive.adapters.ftp import FtpBlobRepository
from drive.domain.errors import StorageUnavailable
from drive.settings import FtpSettings

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"app", "postgres", "minio", "bucket-init", "ftp"}
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


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
        (base,) = instruction(stage, "FROM")
        assert "-slim" in base or "alpine" in base, base
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
        "minio": {"condition": "service_healthy"},
        "ftp": {"condition": "service_healthy"},
        "bucket-init": {"condition": "service_completed_successfully"},
    }
    for name in ("postgres", "minio", "ftp"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    init = services["bucket-init"]
    assert init["depends_on"] == {"minio": {"condition": "service_healthy"}}
    assert init["restart"] == "no"
    assert init["command"] == ["mb", "--ignore-existing", "local/${MINIO_BUCKET}"]
    assert init["environment"]["MC_HOST_local"] == "http://${MINIO_ROOT_USER}:${MINIO_ROOT_PASSWORD}@minio:9000"
    assert services["minio"]["environment"] == {
        "MINIO_ROOT_USER": "${MINIO_ROOT_USER}",
        "MINIO_ROOT_PASSWORD": "${MINIO_ROOT_PASSWORD}",
    }


def test_compose_keeps_data_in_named_volumes() -> None:
    declared = set(compose()["volumes"])
    mounts = {
        name: {m.split(":")[1]: m.split(":")[0] for m in service.get("volumes", [])}
        for name, service in compose()["services"].items()
    }
    assert mounts["postgres"]["/var/lib/postgresql/data"] in declared
    assert mounts["minio"]["/data"] in declared
    assert mounts["ftp"]["/srv/ftp"] in declared
    assert mounts["app"]["/var/lib/drive"] in declared
    used = {source for service in mounts.values() for source in service.values()}
    assert used == declared, "every mount is a named volume, and every volume is used"
    # The FTP CA certificate reaches the app read-only; the FTP server's key does not.
    assert "ftp-ca:/run/ftp-ca:ro" in app_service()["volumes"]
    assert not any(m.startswith("ftp-tls:") for m in app_service()["volumes"])


def test_app_service_runs_the_image_with_the_documented_settings() -> None:
    app = app_service()
    assert app["build"] == "."  # the Dockerfile at the root: the same image
    assert "command" not in app and "entrypoint" not in app  # the image's own `drive serve`
    assert app["ports"] == ["127.0.0.1:8000:8000"]
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
    assert example["S3_ENDPOINT"] == "http://minio:9000"
    assert example["S3_FORCE_PATH_STYLE"] == "true"
    assert (example["S3_ACCESS_KEY"], example["S3_SECRET_KEY"], example["S3_BUCKET"]) == (
        example["MINIO_ROOT_USER"],
        example["MINIO_ROOT_PASSWORD"],
        example["MINIO_BUCKET"],
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
    assert set(example) <= referenced, "no unused settings in .env.example"
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
