"""S3 BlobRepository on aiobotocore: one object per storage key in ``S3_BUCKET``.

Layout: ``<prefix><k[:2]>/<key>``. A PUT or CompleteMultipartUpload is atomic, so an
object under a key is always complete; while a large write is in flight its bytes sit
in a multipart upload, which ``delete`` aborts and ``list_keys`` reports.

One client per repository, opened in ``open`` and reused. Every library failure is
turned into ``StorageUnavailable`` with a short message that never carries credentials
or the endpoint URL; calls that move no body have a hard deadline of ``timeout``.
"""

from __future__ import annotations

import io
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from contextlib import AsyncExitStack, aclosing, suppress
from typing import Any, NoReturn

import aiohttp
import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    HTTPClientError,
    IncompleteReadError,
    InvalidRegionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from drive.domain.errors import StorageUnavailable, StoredBytesMissing
from drive.domain.storage_keys import is_storage_key, shard

READ_CHUNK = 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024  # S3 refuses smaller non-final parts at completion time
MAX_CONNECTIONS = 64

# Everything the HTTP stack can raise for a failed exchange. TimeoutError also covers
# asyncio's and our own ``fail_after`` deadlines; OSError covers raw socket failures.
_TRANSPORT_ERRORS = (BotoCoreError, aiohttp.ClientError, TimeoutError, OSError)
_MISSING_KEY_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


class S3BlobRepository:
    def __init__(
        self,
        *,
        bucket: str,
        region: str = "us-east-1",
        endpoint: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        force_path_style: bool = False,
        prefix: str = "",
        timeout: float = 30.0,
        part_size: int = 8 * 1024 * 1024,
        name: str = "s3",
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.name = name
        self._bucket = bucket
        self._region = region
        self._endpoint = endpoint
        self._access_key = access_key
        self._secret_key = secret_key
        self._session_token = session_token
        self._force_path_style = force_path_style
        self._prefix = prefix
        self._timeout = timeout
        self._part_size = part_size
        self._client: Any = None
        self._stack: AsyncExitStack | None = None

    def __repr__(self) -> str:  # never shows credentials
        return f"S3BlobRepository(name={self.name!r}, bucket={self._bucket!r}, prefix={self._prefix!r})"

    def _object_key(self, key: str) -> str:
        return f"{self._prefix}{shard(key)}/{key}"

    def _key_of(self, object_key: str) -> str | None:
        """The storage key behind an object key, or None for anything we did not write."""
        if not object_key.startswith(self._prefix):
            return None
        directory, _, key = object_key[len(self._prefix) :].partition("/")
        return key if is_storage_key(key) and directory == shard(key) else None

    # -- lifecycle ---------------------------------------------------------------

    async def open(self) -> None:
        await self.close()
        config = AioConfig(
            region_name=self._region,
            signature_version="s3v4",
            connect_timeout=self._timeout,
            read_timeout=self._timeout,
            # Few retries: a dead backend must surface as StorageUnavailable quickly.
            retries={"max_attempts": 2, "mode": "standard"},
            # Each streamed read holds a connection until its client is done; botocore's
            # default of 10 would make other calls queue behind slow downloads.
            max_pool_connections=MAX_CONNECTIONS,
            s3={"addressing_style": "path" if self._force_path_style else "virtual"},
        )
        stack = AsyncExitStack()
        try:
            self._client = await stack.enter_async_context(
                AioSession().create_client(
                    "s3",
                    region_name=self._region,
                    endpoint_url=self._endpoint,
                    aws_access_key_id=self._access_key,
                    aws_secret_access_key=self._secret_key,
                    aws_session_token=self._session_token,
                    config=config,
                )
            )
        except (ValueError, *_TRANSPORT_ERRORS) as exc:
            await stack.aclose()
            self._client = None
            # botocore's messages may quote the endpoint; name the setting instead.
            if isinstance(exc, InvalidRegionError):
                setting = "S3_REGION"
            elif isinstance(exc, ValueError):
                setting = "S3_ENDPOINT"
            else:  # e.g. a profile named by the environment that does not exist
                setting = "the AWS_* environment"
            raise StorageUnavailable(f"S3 client cannot be created ({type(exc).__name__}); check {setting}") from None
        self._stack = stack
        try:
            await self._call("head_bucket")
        except S3Unavailable as exc:
            await self.close()
            message = f"S3_BUCKET {self._bucket!r} cannot be reached: {exc.reason}; check {self._suspect(exc.hint)}"
            raise StorageUnavailable(message) from None

    def _suspect(self, hint: str) -> str:
        """The settings to check, given what kind of failure ``open`` met."""
        if hint != "network":
            return hint
        if self._endpoint is None:
            return "S3_REGION and the network path to AWS"
        # With virtual-host addressing the endpoint host gets the bucket as a subdomain,
        # which many self-hosted S3 servers and local names do not resolve.
        return "S3_ENDPOINT" if self._force_path_style else "S3_ENDPOINT and S3_FORCE_PATH_STYLE"

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            with suppress(*_TRANSPORT_ERRORS):  # a broken pool is not worth reporting on close
                await stack.aclose()

    async def ping(self) -> None:
        await self._call("head_bucket")

    # -- bytes -------------------------------------------------------------------

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        object_key = self._object_key(key)
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        buffer = _PartBody()
        written = 0

        async def ship(part: _PartBody) -> None:
            nonlocal upload_id
            if upload_id is None:
                created = await self._call("create_multipart_upload", Key=object_key)
                upload_id = str(created["UploadId"])
            number = len(parts) + 1
            done = await self._send("upload_part", part, Key=object_key, UploadId=upload_id, PartNumber=number)
            parts.append({"ETag": done["ETag"], "PartNumber": number})

        try:
            async for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    # A full buffer is shipped only once more bytes arrive, so the last part
                    # is never empty and a body of at most one part is a plain PUT.
                    if buffer.tell() == self._part_size:
                        await ship(buffer)
                        buffer = _PartBody()
                    piece = view[: self._part_size - buffer.tell()]
                    buffer.write(piece)
                    written += len(piece)
                    view = view[len(piece) :]
            if upload_id is None:
                await self._send("put_object", buffer, Key=object_key)
            else:
                await ship(buffer)
                # Completion of a huge upload can take a while server-side; the read
                # timeout still bounds a silent peer.
                await self._call(
                    "complete_multipart_upload",
                    bounded=False,
                    Key=object_key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            if upload_id is not None:
                with anyio.CancelScope(shield=True):
                    await self._abort_quietly(object_key, upload_id)
            # A failed single PUT or completion may still have landed; recovery removes it.
            raise
        return written

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        object_key = self._object_key(key)
        if start < 0:
            raise ValueError("start must not be negative")
        if end is not None and end <= start:
            return
        params: dict[str, Any] = {"Key": object_key}
        if start or end is not None:
            params["Range"] = f"bytes={start}-" if end is None else f"bytes={start}-{end - 1}"
        try:
            response = await self._call("get_object", **params)
        except _Unsatisfiable:
            return  # the range starts past the end: nothing to yield, as for a file
        body = response["Body"]
        try:
            while True:
                try:
                    chunk: bytes = await body.read(READ_CHUNK)
                except _TRANSPORT_ERRORS as exc:
                    _raise_unavailable("get_object", self._bucket, exc)
                if not chunk:
                    break
                yield chunk
        finally:
            body.close()

    async def delete(self, key: str) -> None:
        object_key = self._object_key(key)
        # Uploads first: an upload completing after this cannot resurrect the object.
        async with aclosing(self._pages("list_multipart_uploads", Prefix=object_key)) as pages:
            async for page in pages:
                for upload in page.get("Uploads", ()):
                    if upload.get("Key") == object_key:
                        await self._abort(object_key, upload["UploadId"])
        await self._call("delete_object", Key=object_key)

    async def list_keys(self) -> AsyncIterator[str]:
        # Uploads in flight are few; remember only those, and stream the (sorted, so
        # duplicate-free) object listing without keeping it.
        staged: set[str] = set()
        async with aclosing(self._pages("list_multipart_uploads", Prefix=self._prefix)) as pages:
            async for page in pages:
                for upload in page.get("Uploads", ()):
                    key = self._key_of(upload.get("Key", ""))
                    if key is not None:
                        staged.add(key)
        async with aclosing(self._pages("list_objects_v2", Prefix=self._prefix)) as pages:
            async for page in pages:
                for item in page.get("Contents", ()):
                    key = self._key_of(item.get("Key", ""))
                    if key is not None:
                        staged.discard(key)
                        yield key
        for key in sorted(staged):
            yield key

    # -- helpers -----------------------------------------------------------------

    async def _call(self, operation: str, *, bounded: bool = True, **params: Any) -> Any:
        """Run one S3 operation on the bucket, translating every library failure.

        ``bounded`` calls (no body to move) must finish within ``timeout`` whatever the
        retries do; uploads are bounded by ``_send``'s watchdog and the read timeout.
        """
        client = self._client
        if client is None:
            raise StorageUnavailable(f"S3 backend {self.name!r} is not open")
        try:
            with anyio.fail_after(self._timeout if bounded else None):
                return await getattr(client, operation)(Bucket=self._bucket, **params)
        except ClientError as exc:
            code = _error_code(exc)
            if operation == "get_object" and code in _MISSING_KEY_CODES:
                raise StoredBytesMissing(f"no bytes for storage key {params['Key'].rpartition('/')[2]}") from None
            if operation == "get_object" and code == "InvalidRange":
                raise _Unsatisfiable("range starts past the end") from None
            _raise_unavailable(operation, self._bucket, exc)
        except _TRANSPORT_ERRORS as exc:
            _raise_unavailable(operation, self._bucket, exc)

    async def _send(self, operation: str, body: _PartBody, **params: Any) -> Any:
        """Upload ``body``, giving up once no byte of it moved for ``timeout`` seconds.

        aiohttp has no write timeout: a peer that stops reading (or a network that drops
        packets) would block the upload forever, and the read timeout only starts once
        the body is sent. So a watchdog cancels the call when the HTTP stack stops
        pulling bytes from the body, which bounds silence without capping slow links.
        """
        body.seek(0)
        body.touched = time.monotonic()
        stalled = False
        result: Any = None

        async def watchdog(scope: anyio.CancelScope) -> None:
            nonlocal stalled
            while True:
                idle = time.monotonic() - body.touched
                if idle >= self._timeout:
                    break
                await anyio.sleep(self._timeout - idle + 0.05)
            stalled = True
            scope.cancel()

        failure: Exception | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(watchdog, group.cancel_scope)
            try:
                result = await self._call(operation, bounded=False, Body=body, **params)
            except Exception as exc:  # re-raised below, not wrapped in an ExceptionGroup
                failure = exc
            group.cancel_scope.cancel()
        if failure is not None:
            raise failure
        if stalled:
            _raise_unavailable(operation, self._bucket, TimeoutError())
        return result

    async def _pages(self, operation: str, **params: Any) -> AsyncGenerator[dict[str, Any], None]:
        client = self._client
        if client is None:
            raise StorageUnavailable(f"S3 backend {self.name!r} is not open")
        pages = client.get_paginator(operation).paginate(Bucket=self._bucket, **params).__aiter__()
        while True:
            try:
                with anyio.fail_after(self._timeout):
                    page: dict[str, Any] = await pages.__anext__()
            except StopAsyncIteration:
                return
            except ClientError as exc:
                _raise_unavailable(operation, self._bucket, exc)
            except _TRANSPORT_ERRORS as exc:
                _raise_unavailable(operation, self._bucket, exc)
            yield page

    async def _abort(self, object_key: str, upload_id: str) -> None:
        try:
            await self._call("abort_multipart_upload", Key=object_key, UploadId=upload_id)
        except S3Unavailable as exc:
            if exc.reason.startswith("NoSuchUpload"):
                return  # already aborted or completed: nothing staged remains
            raise

    async def _abort_quietly(self, object_key: str, upload_id: str) -> None:
        # Best effort, and never longer than one timeout; recovery finds leftovers via list_keys.
        with suppress(StorageUnavailable), anyio.move_on_after(self._timeout):
            await self._abort(object_key, upload_id)


class S3Unavailable(StorageUnavailable):
    """``StorageUnavailable`` that also keeps the cause and the setting most likely wrong.

    ``hint`` names settings, or is ``"network"`` when the endpoint could not be talked to.
    """

    def __init__(self, operation: str, bucket: str, reason: str, hint: str) -> None:
        super().__init__(f"S3 {operation} on bucket {bucket!r} failed: {reason}")
        self.reason = reason
        self.hint = hint


class _PartBody(io.BytesIO):
    """One request body, noting when the HTTP stack last read from it (see ``_send``)."""

    def __init__(self) -> None:
        super().__init__()
        self.touched = time.monotonic()

    def read(self, size: int | None = -1, /) -> bytes:
        self.touched = time.monotonic()
        return super().read(size)

    def readinto(self, buffer: Any, /) -> int:
        self.touched = time.monotonic()
        return super().readinto(buffer)


class _Unsatisfiable(Exception):
    """Internal: a ranged GET that starts past the end of the object."""


def _error_code(exc: ClientError) -> str:
    error: dict[str, Any] = exc.response.get("Error", {})
    return str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "unknown"))


def _raise_unavailable(operation: str, bucket: str, exc: BaseException) -> NoReturn:
    """Raise ``StorageUnavailable`` for ``exc``; the message names causes, never URLs or keys."""
    if isinstance(exc, ClientError):
        code = _error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        reason = f"{code} (HTTP {status})" if status else code
        if code in {"NoSuchBucket", "404", "NotFound"}:
            hint = "S3_BUCKET"
        elif code in {"PermanentRedirect", "301", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}:
            hint = "S3_REGION"
        elif code in {"403", "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
            hint = "S3_ACCESS_KEY and S3_SECRET_KEY"
        else:
            hint = "the S3 service"
    elif isinstance(exc, TimeoutError | ConnectTimeoutError | ReadTimeoutError):
        reason, hint = "timed out", "network"
    elif isinstance(exc, NoCredentialsError | PartialCredentialsError):
        reason, hint = type(exc).__name__, "S3_ACCESS_KEY and S3_SECRET_KEY"
    elif isinstance(exc, BotoConnectionError | HTTPClientError | IncompleteReadError | aiohttp.ClientError | OSError):
        reason, hint = f"connection failed ({type(exc).__name__})", "network"
    else:  # e.g. a setting botocore itself refuses
        reason, hint = type(exc).__name__, "the S3 settings"
    raise S3Unavailable(operation, bucket, reason, hint) from None
