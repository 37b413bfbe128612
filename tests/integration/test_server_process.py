"""``drive serve`` as a real process: start-up checks and durability across restarts."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.integration.live import AUTH, ServerProcess, base_env


def test_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTH_")}
    result = subprocess.run(
        [sys.executable, "-m", "drive", "serve", "--port", "1"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "AUTH_BEARER_TOKEN" in lines[0]
    assert not (tmp_path / "data").exists()


def test_misconfigured_backend_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    env = {**os.environ, "AUTH_BEARER_TOKEN": "test-token-0123456789", "STORAGE": "s3"}
    env.pop("S3_BUCKET", None)
    result = subprocess.run(
        [sys.executable, "-m", "drive", "serve", "--port", "1"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0
    assert "S3_BUCKET" in result.stderr


def test_unwritable_fs_base_path_fails_at_start_up_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    server = ServerProcess(base_env(tmp_path, FS_BASE_PATH=str(blocker / "blobs")), tmp_path)
    server.start(wait=False)
    assert server.process is not None
    assert server.process.wait(timeout=60) != 0
    log = server.log.read_text()
    assert "FS_BASE_PATH" in log
    assert "Traceback" not in log


def test_embedded_default_keeps_blobs_across_restarts(tmp_path: Path) -> None:
    env = {"AUTH_BEARER_TOKEN": AUTH["Authorization"].removeprefix("Bearer ")}
    data = base64.b64encode(os.urandom(4096)).decode()
    server = ServerProcess(env, tmp_path).start()
    try:
        created = httpx.post(f"{server.url}/v1/blobs", json={"id": "kept", "data": data}, headers=AUTH).json()
    finally:
        assert server.terminate() in (0, -15)  # uvicorn re-raises SIGTERM after a graceful stop
    assert (tmp_path / "data" / "metadata.db").exists()
    assert (tmp_path / "data" / "blobs" / "objects").is_dir()

    server = ServerProcess(env, tmp_path).start()
    try:
        fetched = httpx.get(f"{server.url}/v1/blobs/kept", headers=AUTH).json()
    finally:
        server.terminate()
    assert fetched == {"id": "kept", "data": data, "size": "4096", "created_at": created["created_at"]}
