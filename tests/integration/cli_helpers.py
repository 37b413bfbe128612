"""Run ``drive`` sub-commands as real processes, and look at the stores behind them."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from dependency_injector import providers

from drive.application.commit_protocol import all_records
from drive.application.service import DriveService
from drive.application.streams import single_chunk
from drive.container import Container
from drive.domain.model import BlobRecord
from drive.settings import Settings
from tests.integration.servers.s3 import FAKE_KEY, FAKE_SECRET, REGION, MotoServer

# Settings the test decides: never inherited from the machine running the tests.
_OWN = (
    *("AUTH_", "STORAGE", "S3_", "FTP_", "DRIVE_BACKENDS", "DATABASE_URL", "BLOB_DATABASE_URL", "FS_BASE_PATH"),
    *("MAX_", "UPLOAD_LEASE", "RECOVERY_", "LOG_LEVEL", "AWS_"),
)


def cli_env(root: Path, **settings: str) -> dict[str, str]:
    """fs + SQLite under ``root`` (no token: the command line needs none), plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN)}
    env.update(
        FS_BASE_PATH=str(root / "blobs"),
        DATABASE_URL=f"sqlite:///{root / 'metadata.db'}",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    env.update(settings)
    return env


def s3_settings(server: MotoServer, bucket: str) -> dict[str, str]:
    return {
        "S3_BUCKET": bucket,
        "S3_ENDPOINT": server.url,
        "S3_REGION": REGION,
        "S3_ACCESS_KEY": FAKE_KEY,
        "S3_SECRET_KEY": FAKE_SECRET,
        "S3_FORCE_PATH_STYLE": "true",
    }


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout.decode()

    def json(self) -> Any:
        return json.loads(self.stdout)

    def ok(self) -> Result:
        assert self.returncode == 0, f"exit {self.returncode}: {self.stderr}"
        assert "Traceback" not in self.stderr, self.stderr
        return self

    def fails(self, code: int, *needles: str) -> Result:
        """Exit ``code`` with exactly one ``drive: ...`` line on stderr containing every needle."""
        assert self.returncode == code, f"exit {self.returncode} (wanted {code}): {self.stderr}"
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1, self.stderr
        assert lines[0].startswith("drive: "), self.stderr
        for needle in needles:
            assert needle in lines[0], self.stderr
        return self


class Drive:
    """``python -m drive`` with a controlled environment, in ``cwd``."""

    def __init__(self, env: Mapping[str, str], cwd: Path) -> None:
        self.env = dict(env)
        self.cwd = cwd

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "drive", *args]

    def __call__(
        self, *args: str, stdin: bytes | None = None, env: Mapping[str, str] | None = None, timeout: float = 120
    ) -> Result:
        """Run to completion; ``env`` adds to (or overrides) this drive's settings."""
        done = subprocess.run(
            self.command(*args),
            env={**self.env, **(env or {})},
            cwd=self.cwd,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
        )
        return Result(done.returncode, done.stdout, done.stderr.decode(errors="replace"))

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.command(*args),
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the store, seen in-process (set-up and inspection only) ----------------------------


def _service(env: Mapping[str, str]) -> DriveService:
    container = Container()
    container.settings.override(
        providers.Object(Settings.from_env({**env, "AUTH_BEARER_TOKEN": "cli-test-token-0123"}))
    )
    return container.service()


def seed(env: Mapping[str, str], blobs: Mapping[str, bytes]) -> None:
    """Store ``blobs`` on the STORAGE backend, quicker than one process per blob."""

    async def main() -> None:
        service = _service(env)
        await service.open()
        try:
            for blob_id, data in blobs.items():
                await service.store(blob_id, single_chunk(data))
        finally:
            await service.close()

    anyio.run(main)


@dataclass(frozen=True)
class Snapshot:
    records: dict[str, BlobRecord]
    hashes: dict[str, str]  # sha256 of the bytes actually read back, per id
    keys: dict[str, set[str]]  # every storage key each backend holds


def snapshot(env: Mapping[str, str]) -> Snapshot:
    """Every record, the SHA-256 of every blob's bytes as read now, and every backend's keys."""

    async def main() -> Snapshot:
        service = _service(env)
        await service.open()
        try:
            records = {r.id: r async for r in all_records(service.metadata)}
            hashes: dict[str, str] = {}
            for blob_id, record in records.items():
                digest = hashlib.sha256()
                async for chunk in service.backends.get(record.backend).read(record.storage_key):
                    digest.update(chunk)
                hashes[blob_id] = digest.hexdigest()
            keys: dict[str, set[str]] = {}
            for backend in service.backends:
                keys[backend.name] = {key async for key in backend.list_keys()}
            return Snapshot(records, hashes, keys)
        finally:
            await service.close()

    return anyio.run(main)
