"""S3BlobRepository against an in-process moto server (path-style and virtual-host).

``moto_server`` is the session fixture of ``tests/integration/servers/s3.py``, registered
by ``tests/integration/conftest.py``.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from drive.adapters.s3 import S3BlobRepository
from drive.domain.errors import PayloadTooLarge, StorageUnavailable, StoredBytesMissing
from drive.domain.ports import BlobRepository
from drive.settings import S3Settings
from tests.integration.servers.s3 import (
    FAKE_KEY,
    MotoServer,
    SilentProxy,
    make_s3_repository,
    resolve_localhost_subdomains,
    s3_client,
    scrub_aws_environment,
)

MiB = 1024 * 1024
PART = 5 * MiB  # the S3 minimum part size
# Allowed beyond a repository's timeout before a failure counts as "hanging": covers
# client start-up and a busy CI machine, far below another round of retries.
SLACK = 1.5


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    scrub_aws_environment(monkeypatch)


def new_key() -> str:
    return uuid.uuid4().hex


def new_bucket() -> str:
    return f"drive-{uuid.uuid4().hex[:12]}"


def object_key(key: str, prefix: str = "") -> str:
    return f"{prefix}{key[:2]}/{key}"


async def chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def payload(total: int, chunk: int = 256 * 1024, seed: bytes = b"drive") -> AsyncIterator[bytes]:
    """``total`` deterministic bytes in ``chunk``-sized pieces."""
    block = hashlib.sha256(seed).digest() * (chunk // 32 + 1)
    sent = 0
    while sent < total:
        size = min(chunk, total - sent)
        yield block[:size]
        sent += size


async def digest_of(chunks: AsyncIterator[bytes]) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    async for chunk in chunks:
        sha.update(chunk)
        size += len(chunk)
    return sha.hexdigest(), size


async def read_all(repo: S3BlobRepository, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in repo.read(key, start, end)])


def uploads_in(server: MotoServer, bucket: str) -> list[dict[str, Any]]:
    return list(s3_client(server).list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def objects_in(server: MotoServer, bucket: str) -> list[str]:
    return [o["Key"] for o in s3_client(server).list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.fixture(params=["path", "virtual"])
def addressing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "virtual":
        resolve_localhost_subdomains(monkeypatch)
    return str(request.param)


@pytest.fixture
def bucket() -> str:
    return new_bucket()


@pytest.fixture
async def repo(moto_server: MotoServer, addressing: str, bucket: str) -> AsyncIterator[S3BlobRepository]:
    repository = make_s3_repository(
        moto_server, force_path_style=addressing == "path", bucket=bucket, part_size=PART, timeout=5
    )
    await repository.open()
    try:
        yield repository
    finally:
        await repository.close()


pytestmark = pytest.mark.anyio


async def test_implements_the_port(repo: S3BlobRepository) -> None:
    assert isinstance(repo, BlobRepository)
    assert repo.name == "s3"


async def test_addressing_style_reaches_the_server_as_configured(
    repo: S3BlobRepository, moto_server: MotoServer, addressing: str, bucket: str
) -> None:
    key = new_key()
    await repo.write(key, chunks_of(b"x"))
    if addressing == "virtual":
        assert f"{bucket}.localhost:{moto_server.port}" in moto_server.hosts_seen
    else:
        assert f"127.0.0.1:{moto_server.port}" in moto_server.hosts_seen
    assert objects_in(moto_server, bucket) == [object_key(key)]


@pytest.mark.parametrize("body", [b"", b"hello, drive", os.urandom(300_000)], ids=["empty", "small", "300k"])
async def test_round_trip(repo: S3BlobRepository, body: bytes) -> None:
    key = new_key()
    pieces = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    assert await repo.write(key, chunks_of(*pieces)) == len(body)
    assert await read_all(repo, key) == body


async def test_large_write_is_multipart_and_reads_back(
    repo: S3BlobRepository, moto_server: MotoServer, bucket: str
) -> None:
    key = new_key()
    size = 20 * MiB + 123
    assert await repo.write(key, payload(size, chunk=3 * MiB + 7)) == size
    assert await digest_of(repo.read(key)) == await digest_of(payload(size, chunk=3 * MiB + 7))
    etag = s3_client(moto_server).head_object(Bucket=bucket, Key=object_key(key))["ETag"]
    assert etag.strip('"').endswith("-5")  # 4 full parts and a 123-byte tail
    assert uploads_in(moto_server, bucket) == []


async def test_body_of_exactly_one_part_is_a_single_put(
    repo: S3BlobRepository, moto_server: MotoServer, bucket: str
) -> None:
    key = new_key()
    assert await repo.write(key, payload(PART, chunk=MiB)) == PART
    etag = s3_client(moto_server).head_object(Bucket=bucket, Key=object_key(key))["ETag"]
    assert "-" not in etag


async def test_ranged_reads(repo: S3BlobRepository) -> None:
    key = new_key()
    body = bytes(range(256)) * 40
    await repo.write(key, chunks_of(body))
    assert await read_all(repo, key, 10, 20) == body[10:20]
    assert await read_all(repo, key, 0, 1) == body[:1]
    assert await read_all(repo, key, 100) == body[100:]
    assert await read_all(repo, key, len(body) - 1) == body[-1:]
    assert await read_all(repo, key, 5, 5) == b""
    assert await read_all(repo, key, 0, len(body) + 100) == body
    assert await read_all(repo, key, len(body) + 10) == b""


async def test_empty_range_needs_no_object(repo: S3BlobRepository) -> None:
    assert await read_all(repo, new_key(), 7, 7) == b""


async def test_missing_key_is_stored_bytes_missing(repo: S3BlobRepository) -> None:
    for start, end in [(0, None), (3, 9)]:
        key = new_key()
        with pytest.raises(StoredBytesMissing) as raised:
            await read_all(repo, key, start, end)
        assert key not in str(raised.value)  # the message may reach a client


async def test_delete_is_idempotent(repo: S3BlobRepository) -> None:
    key = new_key()
    await repo.write(key, chunks_of(b"bytes"))
    await repo.delete(key)
    await repo.delete(key)
    await repo.delete(new_key())
    with pytest.raises(StoredBytesMissing):
        await read_all(repo, key)


async def test_delete_aborts_a_dangling_multipart_upload(
    repo: S3BlobRepository, moto_server: MotoServer, bucket: str
) -> None:
    key, other = new_key(), new_key()
    client = s3_client(moto_server)
    for k in (key, other):
        upload = client.create_multipart_upload(Bucket=bucket, Key=object_key(k))
        client.upload_part(Bucket=bucket, Key=object_key(k), UploadId=upload["UploadId"], PartNumber=1, Body=b"x")
    assert {key, other} <= {k async for k in repo.list_keys()}
    await repo.delete(key)
    assert [u["Key"] for u in uploads_in(moto_server, bucket)] == [object_key(other)]
    assert [k async for k in repo.list_keys()] == [other]


async def test_list_keys_reports_each_key_once_and_ignores_foreign_objects(
    repo: S3BlobRepository, moto_server: MotoServer, bucket: str
) -> None:
    keys = sorted(new_key() for _ in range(5))
    for key in keys:
        await repo.write(key, chunks_of(key.encode()))
    client = s3_client(moto_server)
    mismatched = new_key()
    for foreign in ("README.txt", "ab/not-a-key", f"zz/{mismatched}", f"{keys[0][:2]}/{keys[0]}/x"):
        client.put_object(Bucket=bucket, Key=foreign, Body=b"?")
    # A key both published and staged is still reported once.
    client.create_multipart_upload(Bucket=bucket, Key=object_key(keys[1]))
    staged_only = new_key()
    client.create_multipart_upload(Bucket=bucket, Key=object_key(staged_only))
    listed = [k async for k in repo.list_keys()]
    assert sorted(listed) == sorted([*keys, staged_only])
    assert len(listed) == len(set(listed))


async def test_list_keys_pages_through_many_objects(moto_server: MotoServer) -> None:
    bucket = new_bucket()
    repo = make_s3_repository(moto_server, force_path_style=True, bucket=bucket)
    client = s3_client(moto_server)
    keys = {new_key() for _ in range(1100)}  # more than one 1000-key page
    # Straight into moto's in-process store: 1100 HTTP PUTs would take seconds.
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for key in keys:
        backend.put_object(bucket, object_key(key), b"")
    assert client.list_objects_v2(Bucket=bucket)["IsTruncated"]
    await repo.open()
    try:
        assert {k async for k in repo.list_keys()} == keys
    finally:
        await repo.close()


async def test_prefix_scopes_every_operation(moto_server: MotoServer) -> None:
    bucket = new_bucket()
    repo = make_s3_repository(moto_server, force_path_style=True, bucket=bucket, prefix="drive/")
    outsider = new_key()
    s3_client(moto_server).put_object(Bucket=bucket, Key=object_key(outsider), Body=b"not ours")
    await repo.open()
    try:
        key = new_key()
        await repo.write(key, chunks_of(b"ours"))
        assert object_key(key, "drive/") in objects_in(moto_server, bucket)
        assert [k async for k in repo.list_keys()] == [key]
        assert await read_all(repo, key) == b"ours"
        with pytest.raises(StoredBytesMissing):
            await read_all(repo, outsider)
    finally:
        await repo.close()


class Boom(Exception):
    pass


@pytest.mark.parametrize(
    ("error", "after"),
    [(PayloadTooLarge("too large"), 12 * MiB), (Boom("client went away"), 1000), (Boom("at once"), 0)],
    ids=["too-large-after-parts", "boom-within-first-part", "boom-before-any-byte"],
)
async def test_failing_source_propagates_unchanged_and_leaves_nothing(
    repo: S3BlobRepository, moto_server: MotoServer, bucket: str, error: Exception, after: int
) -> None:
    async def source() -> AsyncIterator[bytes]:
        async for chunk in payload(after, chunk=MiB):
            yield chunk
        raise error

    key = new_key()
    with pytest.raises(type(error)) as caught:
        await repo.write(key, source())
    assert caught.value is error
    assert objects_in(moto_server, bucket) == []
    assert uploads_in(moto_server, bucket) == []
    assert [k async for k in repo.list_keys()] == []


async def test_cancelled_write_aborts_its_upload(repo: S3BlobRepository, moto_server: MotoServer, bucket: str) -> None:
    parts_sent = anyio.Event()

    async def source() -> AsyncIterator[bytes]:
        async for chunk in payload(PART + MiB, chunk=MiB):
            yield chunk
        yield b"more"  # makes the first full part ship
        parts_sent.set()
        await anyio.sleep_forever()
        yield b""  # pragma: no cover

    async with anyio.create_task_group() as tg:
        tg.start_soon(repo.write, new_key(), source())
        await parts_sent.wait()
        assert len(uploads_in(moto_server, bucket)) == 1
        tg.cancel_scope.cancel()
    assert uploads_in(moto_server, bucket) == []
    assert objects_in(moto_server, bucket) == []


async def test_invalid_key_is_refused(repo: S3BlobRepository) -> None:
    for bad in ("../etc/passwd", "ABABABABABABABABABABABABABABABAB", "ab"):
        with pytest.raises(ValueError):
            await repo.write(bad, chunks_of(b"x"))
        with pytest.raises(ValueError):
            await read_all(repo, bad)
        with pytest.raises(ValueError):
            await repo.delete(bad)


async def test_unopened_or_closed_repository_is_unavailable(moto_server: MotoServer) -> None:
    repo = make_s3_repository(moto_server, force_path_style=True, bucket=new_bucket())
    with pytest.raises(StorageUnavailable):
        await repo.ping()
    await repo.open()
    await repo.close()
    await repo.close()
    with pytest.raises(StorageUnavailable):
        await read_all(repo, new_key())


async def test_open_names_the_bucket_setting_and_hides_secrets(moto_server: MotoServer) -> None:
    repo = S3BlobRepository(
        S3Settings(
            bucket="no-such-bucket-here",
            endpoint=moto_server.url,
            access_key=FAKE_KEY,
            secret_key="very-secret-value",
            force_path_style=True,
        )
    )
    with pytest.raises(StorageUnavailable) as caught:
        await repo.open()
    message = str(caught.value)
    assert message.startswith("S3_BUCKET 'no-such-bucket-here' cannot be reached")
    assert "check S3_BUCKET" in message
    assert "very-secret-value" not in message and "\n" not in message


@pytest.mark.parametrize(
    ("options", "setting"),
    [({"endpoint": "not a url"}, "S3_ENDPOINT"), ({"region": "no such region!"}, "S3_REGION")],
)
async def test_unusable_settings_are_named(options: dict[str, Any], setting: str) -> None:
    repo = S3BlobRepository(S3Settings(bucket="b", access_key=FAKE_KEY, secret_key="very-secret-value", **options))
    with pytest.raises(StorageUnavailable, match=setting) as caught:
        await repo.open()
    assert "very-secret-value" not in str(caught.value)


def test_parts_smaller_than_s3_allows_are_refused() -> None:
    with pytest.raises(ValueError, match="part_size"):
        S3BlobRepository(S3Settings(bucket="b"), part_size=PART - 1)


async def test_unresolvable_virtual_host_names_the_addressing_setting(moto_server: MotoServer) -> None:
    # Without the resolver patch, <bucket>.localhost does not resolve on this machine.
    repo = make_s3_repository(moto_server, force_path_style=False, bucket=new_bucket(), timeout=2)
    with pytest.raises(StorageUnavailable, match="S3_FORCE_PATH_STYLE"):
        await repo.open()


@pytest.fixture
def restarts(moto_server: MotoServer) -> Iterator[MotoServer]:
    """Hands out the shared server and guarantees it runs again afterwards."""
    try:
        yield moto_server
    finally:
        moto_server.start()


async def failures_within(bound: float, operations: dict[str, Any]) -> dict[str, StorageUnavailable]:
    """Run ``operations`` concurrently; each must raise StorageUnavailable within ``bound`` s."""
    errors: dict[str, StorageUnavailable] = {}
    took: dict[str, float] = {}

    async def run(name: str) -> None:
        began = time.monotonic()
        with anyio.move_on_after(bound + 5):  # a regression fails the test instead of hanging it
            try:
                await operations[name]()
            except StorageUnavailable as exc:
                errors[name] = exc
        took[name] = time.monotonic() - began

    async with anyio.create_task_group() as tg:
        for name in operations:
            tg.start_soon(run, name)
    slow = {name: round(seconds, 2) for name, seconds in took.items() if seconds > bound}
    assert not slow, f"slower than {bound}s: {slow}"
    assert set(errors) == set(operations), f"no StorageUnavailable from {set(operations) - set(errors)}"
    for name, error in errors.items():
        assert FAKE_KEY not in str(error) and "http" not in str(error), (name, str(error))
    return errors


async def test_stopped_server_is_unavailable_then_recovers(restarts: MotoServer, addressing: str, bucket: str) -> None:
    server = restarts
    timeout = 3.0
    repo = make_s3_repository(
        server, force_path_style=addressing == "path", bucket=bucket, part_size=PART, timeout=timeout
    )
    await repo.open()
    try:
        kept = new_key()
        await repo.write(kept, chunks_of(b"survives a restart"))
        port = server.port

        server.stop()
        # Refused connections are retried twice with backoff; all within the timeout.
        await failures_within(
            timeout + SLACK,
            {
                "ping": repo.ping,
                "write": lambda: repo.write(new_key(), chunks_of(b"lost")),
                "multipart write": lambda: repo.write(new_key(), payload(PART + 1, chunk=MiB)),
                "read": lambda: read_all(repo, kept),
                "delete": lambda: repo.delete(kept),
                "list": lambda: anext(aiter(repo.list_keys())),
            },
        )
        fresh = S3BlobRepository(
            S3Settings(
                bucket=bucket, endpoint=server.url, access_key=FAKE_KEY, secret_key=FAKE_KEY, force_path_style=True
            )
        )
        with pytest.raises(StorageUnavailable, match=r"^S3_BUCKET .* cannot be reached: connection failed"):
            await fresh.open()

        server.start()
        assert server.port == port
        await repo.ping()
        assert await read_all(repo, kept) == b"survives a restart"
        assert [k async for k in repo.list_keys()] == [kept]
    finally:
        await repo.close()


async def test_silent_network_gives_up_within_the_timeout(moto_server: MotoServer) -> None:
    """Packets vanish (nothing refused, nothing answered): every call ends near ``timeout``."""
    bucket = new_bucket()
    make_s3_repository(moto_server, force_path_style=True, bucket=bucket)  # creates the bucket
    big = new_key()
    s3_client(moto_server).put_object(Bucket=bucket, Key=object_key(big), Body=os.urandom(48 * MiB))
    proxy = SilentProxy(moto_server.port)
    timeout = 1.0
    repo = S3BlobRepository(
        S3Settings(
            bucket=bucket,
            endpoint=proxy.url,
            access_key=FAKE_KEY,
            secret_key=FAKE_KEY,
            force_path_style=True,
            timeout=timeout,
        ),
        part_size=32 * MiB,
    )
    try:
        await repo.open()
        reading = repo.read(big)
        await anext(reading)  # the body is flowing when the network goes silent

        proxy.freeze()

        async def finish_reading() -> None:
            async for _ in reading:
                pass

        errors = await failures_within(
            timeout + SLACK,
            {
                "ping": repo.ping,
                # A body far bigger than the socket buffers: the upload blocks while writing,
                # where aiohttp has no timeout of its own.
                "part-sized write": lambda: repo.write(new_key(), payload(32 * MiB, chunk=MiB)),
                "small write": lambda: repo.write(new_key(), chunks_of(b"tiny")),
                "read": lambda: read_all(repo, big, 0, 10),
                "read mid-body": finish_reading,
                "list": lambda: anext(aiter(repo.list_keys())),
            },
        )
        assert "timed out" in str(errors["part-sized write"])
    finally:
        proxy.close()
        await repo.close()


async def test_silent_server_times_out_instead_of_hanging() -> None:
    """A peer that accepts connections but never answers: bounded by ``timeout``."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        timeout = 1.0
        repo = S3BlobRepository(
            S3Settings(
                bucket="silent",
                endpoint=f"http://127.0.0.1:{port}",
                access_key=FAKE_KEY,
                secret_key=FAKE_KEY,
                force_path_style=True,
                timeout=timeout,
            )
        )
        began = time.monotonic()
        with pytest.raises(StorageUnavailable, match="timed out"):
            await repo.open()
        assert time.monotonic() - began < timeout + SLACK
        await repo.close()
