"""FtpBlobRepository against a real pyftpdlib server, plain and explicit FTPS."""

from __future__ import annotations

import random
import socket
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import cast

import anyio
import pytest

import drive.adapters.ftp.pool as ftp_pool
from drive.adapters.ftp import FtpBlobRepository
from drive.domain.errors import PayloadTooLarge, StorageUnavailable, StoredBytesMissing
from drive.domain.ports import BlobRepository
from drive.settings import FtpSettings
from tests.integration.servers.ftp import FtpServer, make_ftp_repository

# The session's ``ftp_server`` / ``ftps_server`` fixtures come from tests/integration/conftest.py.

MIB = 1024 * 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["plain", "tls"])
def server(request: pytest.FixtureRequest) -> FtpServer:
    name = "ftp_server" if request.param == "plain" else "ftps_server"
    server: FtpServer = request.getfixturevalue(name)
    return server


@pytest.fixture
def base_dir() -> str:
    # Each test gets its own tree (two levels, so open() has to create parents).
    return f"/t-{uuid.uuid4().hex[:12]}/drive"


@pytest.fixture
async def repo(server: FtpServer, base_dir: str) -> AsyncIterator[FtpBlobRepository]:
    repository = make_ftp_repository(server, base_dir=base_dir)
    await repository.open()
    try:
        yield repository
    finally:
        await repository.close()


def new_key() -> str:
    return uuid.uuid4().hex


def pattern(size: int, seed: int = 0) -> bytes:
    # Not periodic, so a read from the wrong offset cannot pass for the right one.
    return random.Random(seed).randbytes(size)


async def chunked(data: bytes, size: int = MIB) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def keys_of(repository: FtpBlobRepository) -> list[str]:
    return [key async for key in repository.list_keys()]


def tree(server: FtpServer, base_dir: str) -> Path:
    return server.root / base_dir.lstrip("/")


def files_for(server: FtpServer, base_dir: str, key: str) -> list[Path]:
    root = tree(server, base_dir)
    return [p for p in (root / "staging" / key, root / "objects" / key[:2] / key) if p.exists()]


# --- the port's contract


@pytest.mark.anyio
async def test_is_a_blob_repository(repo: FtpBlobRepository) -> None:
    assert isinstance(repo, BlobRepository)
    assert repo.name == "ftp"


@pytest.mark.anyio
@pytest.mark.parametrize("size", [0, 11, 20 * MIB], ids=["empty", "small", "20MiB"])
async def test_round_trip(repo: FtpBlobRepository, server: FtpServer, base_dir: str, size: int) -> None:
    key = new_key()
    data = pattern(size, seed=size % 7)
    assert await repo.write(key, chunked(data)) == size
    assert await collect(repo.read(key)) == data
    published = tree(server, base_dir) / "objects" / key[:2] / key
    assert published.read_bytes() == data
    assert list((tree(server, base_dir) / "staging").iterdir()) == []


@pytest.mark.anyio
async def test_ranged_reads(repo: FtpBlobRepository, server: FtpServer) -> None:
    key = new_key()
    data = pattern(3 * MIB + 17, seed=3)
    await repo.write(key, chunked(data, 300_000))
    logins = server.logins
    cases = [
        (0, 10),
        (5, 6),
        (100, 2 * MIB),
        (MIB, None),
        (len(data) - 5, None),
        (0, len(data)),
        (0, None),
        (42, 42),
        (len(data), len(data)),
        (len(data), None),
        (len(data) - 3, len(data) + 100),  # an end past the file stops at the file's end
        (len(data) + 10, None),  # a start past the end reads nothing, as from a file
        (len(data) + 10, len(data) + 20),
    ]
    for start, end in cases:
        got = await collect(repo.read(key, start, end))
        assert got == data[start:end], (start, end)
    # Cut-short transfers are resynchronised, not paid for with a new login each.
    assert server.logins == logins


@pytest.mark.anyio
async def test_abandoned_read_does_not_poison_the_pool(repo: FtpBlobRepository) -> None:
    key = new_key()
    data = pattern(4 * MIB, seed=5)
    await repo.write(key, chunked(data))
    reader = cast(AsyncGenerator[bytes, None], repo.read(key))
    first = await reader.__anext__()
    assert data.startswith(first)
    await reader.aclose()  # the consumer went away mid-transfer
    assert await collect(repo.read(key, 10, 20)) == data[10:20]
    await repo.ping()


@pytest.mark.anyio
async def test_missing_key(repo: FtpBlobRepository) -> None:
    for start, end in [(0, None), (3, 9), (0, 0)]:
        key = new_key()
        with pytest.raises(StoredBytesMissing) as raised:
            await collect(repo.read(key, start, end))
        assert key not in str(raised.value)  # the message may reach a client
    await repo.ping()


@pytest.mark.anyio
async def test_delete_is_idempotent(repo: FtpBlobRepository, server: FtpServer, base_dir: str) -> None:
    key = new_key()
    await repo.write(key, chunked(b"bytes"))
    (tree(server, base_dir) / "staging" / key).write_bytes(b"left over")
    assert len(files_for(server, base_dir, key)) == 2
    await repo.delete(key)
    assert files_for(server, base_dir, key) == []
    await repo.delete(key)
    await repo.delete(new_key())
    with pytest.raises(StoredBytesMissing):
        await collect(repo.read(key))


@pytest.mark.anyio
async def test_list_keys(repo: FtpBlobRepository, server: FtpServer, base_dir: str) -> None:
    assert [key async for key in repo.list_keys()] == []
    published = sorted(new_key() for _ in range(5))
    for key in published:
        await repo.write(key, chunked(key.encode()))
    root = tree(server, base_dir)
    staged_only = new_key()
    (root / "staging" / staged_only).write_bytes(b"in flight")
    (root / "staging" / published[0]).write_bytes(b"both places")
    (root / "staging" / ".probe-x").write_bytes(b"")
    (root / "objects" / "zz").mkdir()
    (root / "objects" / published[1][:2] / "not-a-key").write_bytes(b"")
    misplaced = "00" + new_key()[2:] if not published[1].startswith("00") else "ff" + new_key()[2:]
    (root / "objects" / published[1][:2] / misplaced).write_bytes(b"a key, in another key's shard")
    keys = [key async for key in repo.list_keys()]
    assert sorted(keys) == sorted([*published, staged_only])
    assert len(keys) == len(set(keys))
    # Everything else is a stranger, except the probe ``open`` writes and unlinks.
    shard = f"objects/{published[1][:2]}"
    strangers = [s async for s in repo.list_strangers()]
    assert strangers == sorted(["objects/zz", f"{shard}/not-a-key", f"{shard}/{misplaced}"])


@pytest.mark.anyio
@pytest.mark.parametrize("error", [PayloadTooLarge("blob too large"), RuntimeError("client went away")])
async def test_failing_chunks_propagate_and_leave_nothing(
    repo: FtpBlobRepository, server: FtpServer, base_dir: str, error: Exception
) -> None:
    key = new_key()

    async def chunks() -> AsyncIterator[bytes]:
        yield pattern(2 * MIB)
        yield pattern(MIB)
        raise error

    with pytest.raises(type(error)) as raised:
        await repo.write(key, chunks())
    assert raised.value is error
    assert files_for(server, base_dir, key) == []
    root = tree(server, base_dir)
    assert list((root / "staging").iterdir()) == []
    # The repository is still fine afterwards.
    await repo.write(key, chunked(b"second try"))
    assert await collect(repo.read(key)) == b"second try"


@pytest.mark.anyio
async def test_cancelled_write_leaves_nothing(repo: FtpBlobRepository, server: FtpServer, base_dir: str) -> None:
    key = new_key()

    async def slow() -> AsyncIterator[bytes]:
        yield pattern(MIB)
        await anyio.sleep(30)
        yield b"never"

    with anyio.move_on_after(0.5):
        await repo.write(key, slow())
    assert files_for(server, base_dir, key) == []
    await repo.ping()


@pytest.mark.anyio
async def test_connections_are_reused(server: FtpServer, base_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Also go through the idle check (NOOP before reuse) on every checkout.
    monkeypatch.setattr(ftp_pool, "PING_AFTER_IDLE", 0.0)
    before = server.logins
    repository = make_ftp_repository(server, base_dir=base_dir)
    await repository.open()
    try:
        for i in range(5):
            key = new_key()
            await repository.write(key, chunked(pattern(1000, i)))
            assert await collect(repository.read(key, 1, 5)) == pattern(1000, i)[1:5]
            await repository.ping()
            _ = [k async for k in repository.list_keys()]
            await repository.delete(key)
        assert server.logins == before + 1
    finally:
        await repository.close()
        await repository.close()  # safe twice


@pytest.mark.anyio
async def test_dead_pooled_connection_is_replaced(
    server: FtpServer, base_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pretend the pool cannot see the hang-up yet (a restart a moment ago): the first
    # exchange fails on the pooled connection and is retried once on a new one.
    monkeypatch.setattr(ftp_pool, "looks_closed", lambda client: False)
    repository = make_ftp_repository(server, base_dir=base_dir)
    await repository.open()
    key = new_key()
    try:
        await repository.write(key, chunked(b"first"))
        operations: list[Callable[[], Awaitable[object]]] = [
            lambda: repository.ping(),
            lambda: repository.write(new_key(), chunked(b"x")),
            lambda: collect(repository.read(key)),
            lambda: collect(repository.read(key, 1, 1)),
            lambda: repository.delete(new_key()),
            lambda: keys_of(repository),
        ]
        for operation in operations:
            server.restart()
            before = server.logins
            await operation()
            assert server.logins == before + 1
        assert await collect(repository.read(key)) == b"first"
    finally:
        await repository.close()


@pytest.mark.anyio
async def test_concurrent_writes(server: FtpServer, base_dir: str) -> None:
    before = server.logins
    repository = make_ftp_repository(server, base_dir=base_dir, pool_size=4)
    await repository.open()
    keys = [new_key() for _ in range(16)]
    try:
        async with anyio.create_task_group() as tg:
            for i, key in enumerate(keys):
                tg.start_soon(repository.write, key, chunked(pattern(300_000, i), 64 * 1024))
        for i, key in enumerate(keys):
            assert await collect(repository.read(key)) == pattern(300_000, i)
        assert sorted([k async for k in repository.list_keys()]) == sorted(keys)
        assert server.logins - before <= 4
    finally:
        await repository.close()


@pytest.mark.anyio
async def test_server_stopped_then_restarted(server: FtpServer, base_dir: str) -> None:
    timeout = 2.0
    repository = make_ftp_repository(server, base_dir=base_dir, timeout=timeout)
    await repository.open()
    kept = new_key()
    await repository.write(kept, chunked(b"survives a restart"))
    try:
        server.stop()
        for attempt in (
            repository.ping(),
            repository.write(new_key(), chunked(b"x")),
            collect(repository.read(kept)),
            repository.delete(new_key()),
        ):
            started = time.monotonic()
            with pytest.raises(StorageUnavailable) as raised:
                await attempt
            assert time.monotonic() - started < timeout + 1.0
            assert server.password not in str(raised.value)
        with pytest.raises(StorageUnavailable):
            _ = [k async for k in repository.list_keys()]
    finally:
        server.start()
    await repository.ping()
    assert await collect(repository.read(kept)) == b"survives a restart"
    key = new_key()
    await repository.write(key, chunked(b"after"))
    assert await collect(repository.read(key)) == b"after"
    await repository.close()


@pytest.mark.anyio
async def test_hung_server_times_out(server: FtpServer, base_dir: str) -> None:
    timeout = 1.0
    repository = make_ftp_repository(server, base_dir=base_dir, timeout=timeout)
    await repository.open()
    kept = new_key()
    await repository.write(kept, chunked(b"still here"))
    server.pause()
    try:
        for attempt in (
            repository.ping(),  # on the pooled connection
            repository.write(new_key(), chunked(b"x")),  # on a new one: no greeting
            collect(repository.read(kept)),
            repository.delete(kept),
        ):
            started = time.monotonic()
            with pytest.raises(StorageUnavailable):
                await attempt
            # The write's best-effort cleanup may add one more timeout, never more.
            assert time.monotonic() - started < 2 * timeout + 1.0
    finally:
        server.resume()
    assert await collect(repository.read(kept)) == b"still here"
    await repository.close()


@pytest.mark.anyio
async def test_open_against_stopped_server(server: FtpServer) -> None:
    repository = make_ftp_repository(server, timeout=2.0)
    server.stop()
    try:
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match="FTP_HOST/FTP_PORT") as raised:
            await repository.open()
        assert time.monotonic() - started < 3.0
        assert server.host not in str(raised.value) and str(server.port) not in str(raised.value)
    finally:
        server.start()


@pytest.mark.anyio
async def test_silent_server_times_out() -> None:
    # Accepts TCP (the kernel backlog does) but never says a word.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        port = listener.getsockname()[1]
        repository = FtpBlobRepository(FtpSettings(host="127.0.0.1", port=port, timeout=1.0))
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match="FTP_HOST/FTP_PORT"):
            await repository.open()
        assert time.monotonic() - started < 2.5


@pytest.mark.anyio
async def test_wrong_password(server: FtpServer) -> None:
    wrong = "not-the-password-" + uuid.uuid4().hex
    repository = make_ftp_repository(server, password=wrong)
    with pytest.raises(StorageUnavailable, match="FTP_USER/FTP_PASSWORD") as raised:
        await repository.open()
    assert wrong not in str(raised.value)
    assert wrong not in repr(repository)


@pytest.mark.anyio
async def test_base_dir_that_is_a_file(server: FtpServer) -> None:
    name = f"file-{uuid.uuid4().hex[:8]}"
    (server.root / name).write_bytes(b"")
    repository = make_ftp_repository(server, base_dir=f"/{name}")
    with pytest.raises(StorageUnavailable, match="FTP_BASE_DIR") as raised:
        await repository.open()
    assert name not in str(raised.value)


@pytest.mark.anyio
async def test_relative_base_dir(server: FtpServer) -> None:
    name = f"rel-{uuid.uuid4().hex[:8]}"
    repository = make_ftp_repository(server, base_dir=f"{name}/x")
    await repository.open()
    try:
        key = new_key()
        await repository.write(key, chunked(b"relative"))
        assert (server.root / name / "x" / "objects" / key[:2] / key).read_bytes() == b"relative"
    finally:
        await repository.close()


# --- explicit FTPS specifics


@pytest.mark.anyio
async def test_tls_data_channel_is_protected(ftps_server: FtpServer, base_dir: str) -> None:
    repository = make_ftp_repository(ftps_server, base_dir=base_dir)
    await repository.open()
    key = new_key()
    try:
        await repository.write(key, chunked(pattern(MIB)))
        assert await collect(repository.read(key)) == pattern(MIB)
        assert await collect(repository.read(key, 10, 20)) == pattern(MIB)[10:20]
    finally:
        await repository.close()
    ours = [t for t in ftps_server.transfers if key in t.path]
    assert {t.command for t in ours} == {"STOR", "RETR"}
    assert all(t.tls for t in ours)  # TLS handshake done on every data connection
    # The server refuses PASV/EPSV without PROT P, so a plain data channel could not even open.
    assert ftps_server.handler_class.tls_data_required


@pytest.mark.anyio
async def test_plain_data_channel_is_recorded_as_plain(ftp_server: FtpServer, base_dir: str) -> None:
    # The recording in the TLS test means something only if plain transfers show up as plain.
    repository = make_ftp_repository(ftp_server, base_dir=base_dir)
    await repository.open()
    key = new_key()
    try:
        await repository.write(key, chunked(b"clear"))
    finally:
        await repository.close()
    assert [t.tls for t in ftp_server.transfers if key in t.path] == [False]


@pytest.mark.anyio
async def test_tls_without_the_ca_fails_verification(ftps_server: FtpServer) -> None:
    repository = make_ftp_repository(ftps_server, ca_file=None)
    with pytest.raises(StorageUnavailable, match="certificate") as raised:
        await repository.open()
    assert "FTP_TLS" in str(raised.value)


@pytest.mark.anyio
async def test_tls_verify_false_connects(ftps_server: FtpServer, base_dir: str) -> None:
    repository = make_ftp_repository(ftps_server, ca_file=None, verify=False, base_dir=base_dir)
    await repository.open()
    try:
        key = new_key()
        await repository.write(key, chunked(b"unverified but encrypted"))
        assert await collect(repository.read(key)) == b"unverified but encrypted"
    finally:
        await repository.close()


@pytest.mark.anyio
async def test_plain_client_against_tls_only_server(ftps_server: FtpServer) -> None:
    repository = make_ftp_repository(ftps_server, tls=False, ca_file=None)
    with pytest.raises(StorageUnavailable, match="FTP_TLS"):
        await repository.open()


@pytest.mark.anyio
async def test_unreadable_ca_file(ftps_server: FtpServer, tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")
    repository = make_ftp_repository(ftps_server, ca_file=str(bogus))
    with pytest.raises(StorageUnavailable, match="FTP_CA_FILE"):
        await repository.open()
