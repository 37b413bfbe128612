"""Faults real disks and databases have, against real processes: a full volume, a PostgreSQL or MariaDB restart.

Each test runs ``drive serve`` as a process on 127.0.0.1, brings the fault about for real
(a small tmpfs or loop-mounted ext4 filled up; a PostgreSQL cluster or MariaDB server of
the test's own stopped and started under load) and checks what clients and operators see: the
contract's 503 while it lasts (never a 500, never a hang), nothing partial left behind,
normal service soon after, and every blob acknowledged before or during it intact.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from tests.integration.cli_helpers import Drive, cli_env
from tests.integration.live import AUTH, ServerProcess, base_env
from tests.integration.servers.mariadb_instance import MariadbInstance, mariadb_binaries
from tests.integration.servers.pg_cluster import PgCluster
from tests.integration.servers.throwaway import unavailable
from tests.integration.steady_load import RAW, REQUEST_BOUND, SteadyLoad, assert_no_errors_logged, fsck_clean

pytestmark = pytest.mark.slow

MiB = 1024 * 1024


# -- helpers ----------------------------------------------------------------------------


def privileged(command: list[str]) -> list[str]:
    """As root, as is; otherwise through password-less sudo (CI runners have it)."""
    if os.geteuid() == 0 or shutil.which("sudo") is None:
        return command
    return ["sudo", "-n", *command]


def _run(command: list[str]) -> None:
    done = subprocess.run(privileged(command), capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip() or done.stdout.strip()}")


@contextlib.contextmanager
def small_volume(mount_point: Path, size_mib: int) -> Iterator[Path]:
    """A file system of ``size_mib`` MiB at ``mount_point``: tmpfs, else a loop-mounted ext4 image.

    Under CI (``CI`` set) failing to make either fails the test; elsewhere it is skipped.
    """
    mount_point.mkdir()
    image = mount_point.with_suffix(".img")
    tried: list[str] = []
    try:
        _run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0777", "tmpfs", str(mount_point)])
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        tried.append(f"tmpfs: {exc}")
        try:
            with image.open("wb") as handle:
                handle.truncate(size_mib * MiB)
            _run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)])  # -m 0: no blocks kept for root
            _run(["mount", "-o", "loop", str(image), str(mount_point)])
            _run(["chmod", "0777", str(mount_point)])
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc2:
            tried.append(f"loop ext4: {exc2}")
    if len(tried) == 2:
        image.unlink(missing_ok=True)
        unavailable("cannot mount a small volume (" + "; ".join(tried) + "): root or password-less sudo")
    try:
        yield mount_point
    finally:
        try:
            _run(["umount", str(mount_point)])
        except RuntimeError:
            _run(["umount", "-l", str(mount_point)])  # something still holds it: detach now, free later
        image.unlink(missing_ok=True)


def fill(directory: Path) -> Path:
    """Take every free byte of ``directory``'s file system, as another program would."""
    filler = directory / "filler"
    block = b"\0" * (64 * 1024)
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(block)
        except OSError:
            pass
        try:  # the last partial block too
            while True:
                handle.write(b"\0" * 512)
        except OSError:
            pass
    return filler


def files_in(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def put(client: httpx.Client, blob_id: str, data: bytes) -> httpx.Response:
    return client.put(f"/v1/blobs/{blob_id}", content=data)


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "storage_unavailable", error
    assert "/" not in error["message"], error  # no directory of the server's in a client's answer


def read_back(client: httpx.Client, blobs: Mapping[str, bytes]) -> None:
    for blob_id, data in blobs.items():
        response = client.get(f"/v1/blobs/{blob_id}", headers=RAW)
        assert response.status_code == 200, (blob_id, response.text)
        assert response.content == data, blob_id


# -- the fs volume full -----------------------------------------------------------------


@pytest.mark.parametrize("metadata", ["elsewhere", "on-the-volume"])
def test_full_volume_refuses_with_503_leaves_nothing_and_recovers_once_space_is_freed(
    tmp_path: Path, metadata: str
) -> None:
    """FS_BASE_PATH on an 8 MiB volume; SQLite metadata on another volume, or on the same (the default layout)."""
    with small_volume(tmp_path / "volume", 8) as volume:
        database = (volume if metadata == "on-the-volume" else tmp_path) / "metadata.db"
        env = base_env(tmp_path, FS_BASE_PATH=str(volume / "blobs"), STORAGE="fs", DATABASE_URL=f"sqlite:///{database}")
        drive = Drive(cli_env(tmp_path, FS_BASE_PATH=env["FS_BASE_PATH"], DATABASE_URL=env["DATABASE_URL"]), tmp_path)
        server = ServerProcess(env, tmp_path).start()
        staging, objects = volume / "blobs" / "staging", volume / "blobs" / "objects"
        acknowledged: dict[str, bytes] = {}
        try:
            with httpx.Client(base_url=server.url, headers=AUTH, timeout=REQUEST_BOUND) as client:
                # Fill it through the service: streamed 1 MiB bodies until one does not fit.
                refused = None
                for n in range(12):
                    data = os.urandom(MiB)
                    response = put(client, f"fill-{n}", data)
                    if response.status_code != 201:
                        refused = (f"fill-{n}", response)
                        break
                    acknowledged[f"fill-{n}"] = data
                assert refused is not None, "8 MiB took 12 MiB of blobs"
                assert 3 <= len(acknowledged) <= 8, len(acknowledged)
                assert_unavailable(refused[1])

                # Then the last bytes taken by someone else: nothing at all fits now.
                filler = fill(volume)
                small = os.urandom(10_000)
                assert_unavailable(put(client, "streamed", os.urandom(300_000)))
                assert_unavailable(put(client, "one-chunk", small))
                body = {"id": "as-json", "data": base64.b64encode(small).decode()}
                assert_unavailable(client.post("/v1/blobs", json=body))

                # Nothing partial: no staged bytes, no record, no object beyond the acknowledged.
                assert files_in(staging) == []
                assert len(files_in(objects)) == len(acknowledged)
                for blob_id in (refused[0], "streamed", "one-chunk", "as-json"):
                    assert client.get(f"/v1/blobs/{blob_id}").status_code == 404
                listed = {item["id"] for item in client.get("/v1/blobs").json()["items"]}
                assert listed == set(acknowledged)
                read_back(client, acknowledged)  # reading needs no space
                assert client.get("/healthz").status_code == 200
                fsck_clean(drive)  # an operator's first look, while the volume is still full

                # Space freed by a delete through the service: a blob that fits is stored again.
                gone = next(iter(acknowledged))
                deleted = client.delete(f"/v1/blobs/{gone}")
                if deleted.status_code != 204:
                    # SQLite on the full volume may not find room even for the delete's intent:
                    # refused as a whole, the blob still there; freeing space elsewhere lets it run.
                    assert metadata == "on-the-volume", deleted.text
                    assert_unavailable(deleted)
                    read_back(client, {gone: acknowledged[gone]})
                    filler.unlink()
                    assert client.delete(f"/v1/blobs/{gone}").status_code == 204
                del acknowledged[gone]
                retry = os.urandom(MiB // 2)
                assert put(client, refused[0], retry).status_code == 201
                acknowledged[refused[0]] = retry
                # And by the other program: what is free now fits (a file system keeps a little).
                filler.unlink(missing_ok=True)
                stats = os.statvfs(volume)
                free = stats.f_bavail * stats.f_frsize
                assert free >= MiB // 2, free
                bigger = os.urandom(free - 128 * 1024)
                assert put(client, "after", bigger).status_code == 201
                acknowledged["after"] = bigger

                read_back(client, acknowledged)
                assert files_in(staging) == []
                assert len(files_in(objects)) == len(acknowledged)
            report = fsck_clean(drive)
            assert report["blobs_checked"] == len(acknowledged)
        finally:
            server.terminate()
        assert_no_errors_logged(server.log)


# -- PostgreSQL restarted under load ----------------------------------------------------


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restart_under_load_gives_503_then_service_and_loses_nothing(tmp_path: Path, mode: str) -> None:
    """A cluster of the test's own (never the shared one) stopped for 3 s and started, mid-load.

    ``fast`` is a service restart (sessions ended, a clean shutdown); ``immediate`` is a
    crash (no shutdown checkpoint: the database replays its WAL when it starts).

    8 clients PUT and GET for about 16 s. A short upload lease and recovery interval let
    the server clean up after requests cut off mid-commit before fsck looks.
    """
    cluster = PgCluster()
    try:
        cluster.start()
        restart_under_load(tmp_path, "postgres", mode, cluster.url, lambda: cluster.stop(mode), cluster.start)
    finally:
        cluster.cleanup()


def restart_under_load(
    tmp_path: Path, name: str, mode: str, url: str, stop: Callable[[], None], start: Callable[[], None]
) -> None:
    """The metadata database stopped for 3 s and started again while 8 clients PUT and GET for ~16 s."""
    settings = {"DATABASE_URL": url, "UPLOAD_LEASE_SECONDS": "5", "RECOVERY_INTERVAL_SECONDS": "2"}
    env = base_env(tmp_path, STORAGE="fs", **settings)
    drive = Drive(cli_env(tmp_path, **settings), tmp_path)
    server = ServerProcess(env, tmp_path).start()
    load = SteadyLoad(server.url, workers=8)
    moments: dict[str, float] = {}

    def restart() -> None:
        time.sleep(5)
        moments["down"] = time.monotonic()
        stop()
        time.sleep(3)
        start()
        moments["up"] = time.monotonic()

    try:
        load.run(16, during=restart)
        summary = load.summary()
        load.assert_honest(within=REQUEST_BOUND)
        down = [o for o in load.unavailable() if moments["down"] <= o.started <= moments["up"]]
        assert down, f"no 503 while {name} was down: {summary}"
        assert load.recovered_after(moments["up"]) < 10, summary
        load.assert_all_read_back()
        fsck_clean(drive, wait=30)
        assert not files_in(tmp_path / "blobs" / "staging")
        print(f"{name} {mode} restart: {summary}, back after {load.recovered_after(moments['up']):.1f} s")
    finally:
        server.terminate()
    assert_no_errors_logged(server.log)


# -- MariaDB restarted under load -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["clean", "kill"])
def test_mariadb_restart_under_load_gives_503_then_service_and_loses_nothing(tmp_path: Path, mode: str) -> None:
    """A MariaDB server of the test's own (never the shared one on 3306) stopped for 3 s and started, mid-load.

    ``clean`` is a service restart (SIGTERM: connections closed, a clean shutdown);
    ``kill`` is a crash (SIGKILL: InnoDB recovers from its redo log when it starts).

    As for PostgreSQL: 8 clients PUT and GET for about 16 s, and the bound on a request
    (REQUEST_BOUND) covers the MariaDB timeouts of sql_engine.py (pool 10 s, connect 10 s,
    read 30 s).
    """
    if mariadb_binaries() is None:
        unavailable("MariaDB binaries (mariadb-install-db, mariadbd, mariadb-admin, mariadb) are missing")
    instance = MariadbInstance()
    try:
        instance.start()
        restart_under_load(
            tmp_path, "mariadb", mode, instance.url, lambda: instance.stop(crash=mode == "kill"), instance.start
        )
    finally:
        instance.cleanup()
