"""The container is the composition root: the CLI and the HTTP app run what it provides.

Each test swaps the stores for in-memory fakes with ``override`` and drives a real
entrypoint, so a use-case built anywhere but the container would go unnoticed nowhere.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import anyio
import pytest
from dependency_injector import providers
from litestar.testing import TestClient

from drive.adapters.concurrency import bounded_fan_out
from drive.adapters.memory import InMemoryBlobRepository, InMemoryMetadataRepository
from drive.application.streams import single_chunk
from drive.container import Container
from drive.domain.backends import Backends
from drive.domain.errors import StorageUnavailable
from drive.domain.model import PendingKind
from drive.entrypoints import cli, cli_runtime
from drive.entrypoints.http.app import create_app
from drive.settings import Settings
from tests.unit.wiring import TOKEN, container_over

EPOCH = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def stores() -> tuple[InMemoryMetadataRepository, InMemoryBlobRepository, InMemoryBlobRepository, Backends]:
    fs, db = InMemoryBlobRepository("fs"), InMemoryBlobRepository("db")
    return InMemoryMetadataRepository(), fs, db, Backends({"fs": fs, "db": db}, default="fs")


Stores = tuple[InMemoryMetadataRepository, InMemoryBlobRepository, InMemoryBlobRepository, Backends]


@pytest.fixture
def quiet_commands_restored() -> Iterator[None]:
    """Data commands silence logging in their process; give it back to the other tests."""
    yield
    logging.disable(logging.NOTSET)


def test_every_use_case_shares_the_protocol_the_settings_describe(stores: Stores) -> None:
    metadata, _fs, _db, backends = stores
    container = container_over(metadata, backends)
    container.settings.override(
        providers.Object(Settings.from_env({"AUTH_BEARER_TOKEN": TOKEN, "UPLOAD_LEASE_SECONDS": "7"}))
    )
    protocol = container.protocol()
    assert (protocol.metadata, protocol.backends, protocol.lease) == (metadata, backends, timedelta(seconds=7))
    assert container.fan_out() is bounded_fan_out
    service = container.service()
    assert service.store is container.store_blob()
    assert service.migrate is container.migrate_blobs()
    assert service.check is container.check_store()
    assert service.metadata is metadata and service.backends is backends


class StuckDeletes(InMemoryBlobRepository):
    async def delete(self, key: str) -> None:
        raise StorageUnavailable("backend down")


@pytest.mark.anyio
async def test_an_overridden_lease_and_clock_reach_every_intent() -> None:
    metadata, stuck = InMemoryMetadataRepository(), StuckDeletes("fs")
    backends = Backends({"fs": stuck}, default="fs")
    service = container_over(metadata, backends, lease=timedelta(seconds=5), clock=lambda: EPOCH).service()
    stored = await service.store("dated", single_chunk(b"bytes"))
    assert stored.record.created_at == EPOCH
    await service.delete("dated")  # the bytes cannot go now: the DELETE intent waits for recovery
    [intent] = metadata.pending.values()
    assert (intent.blob_id, intent.kind) == ("dated", PendingKind.DELETE)
    assert intent.lease_until == EPOCH + timedelta(seconds=5)


def test_cli_migrate_and_fsck_run_the_containers_use_cases(
    stores: Stores,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    quiet_commands_restored: None,
) -> None:
    metadata, fs, db, backends = stores
    enabled: list[tuple[str, ...]] = []

    def container_for(settings: Settings) -> Container:
        enabled.append(settings.backends)
        return container_over(metadata, backends)

    monkeypatch.setattr(cli_runtime, "container_for", container_for)
    seeded = container_over(metadata, backends).service()

    async def seed() -> None:
        for n in range(5):
            await seeded.store(f"blob-{n}", single_chunk(f"bytes {n}".encode()))

    anyio.run(seed)

    assert cli.main(["migrate", "--to", "db", "--json"]) == 0
    moved = json.loads(capsys.readouterr().out)
    assert (moved["moved"], moved["from"], moved["complete"]) == (5, ["fs"], True)
    assert not fs.objects and len(db.objects) == 5

    db.objects["f" * 32] = b"nobody's"
    assert cli.main(["fsck", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["orphans"] == [{"backend": "db", "storage_key": "f" * 32}]
    assert report["blobs_checked"] == 5
    assert enabled == [("fs", "db"), ("fs",)]  # naming db in --to enabled it, for that run only


def test_http_app_serves_and_probes_through_the_container(stores: Stores) -> None:
    metadata, fs, _db, backends = stores
    container = container_over(metadata, backends)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(container)) as client:
        stored = client.put("/v1/blobs/through-the-container", content=b"hello", headers=auth)
        assert stored.status_code == 201, stored.text
        assert [r.id for r in metadata.records.values()] == ["through-the-container"]
        assert len(fs.objects) == 1
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"metadata": "ok", "fs": "ok", "db": "ok"}
        metadata.available = False
        down = client.get("/readyz")
        assert down.status_code == 503
        assert down.json()["checks"]["metadata"] == "unavailable"


def test_serving_app_leaves_start_up_objects_out_of_garbage_collection(stores: Stores) -> None:
    metadata, _fs, _db, backends = stores
    with TestClient(create_app(container_over(metadata, backends))):
        # Frozen at the first start in this process (this one, or an earlier test's).
        assert gc.get_freeze_count() > 0
