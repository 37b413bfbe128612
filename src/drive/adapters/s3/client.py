"""The aiobotocore client of an S3 repository and every call made through it.

One client per repository (so one per process), opened in ``open`` and reused; its
pool is sized for many concurrent streamed reads. Calls that move no body have a hard
deadline of ``S3_TIMEOUT``; uploads are bounded by a stall watchdog instead.
"""

from __future__ import annotations

import io
import time
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, suppress
from typing import Any

import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import ClientError, InvalidRegionError

from drive.adapters.s3.errors import (
    TRANSPORT_ERRORS,
    S3Unavailable,
    raise_for_client_error,
    raise_unavailable,
    suspect,
)
from drive.domain.errors import StorageUnavailable
from drive.settings import S3Settings

MAX_CONNECTIONS = 64


class PartBody(io.BytesIO):
    """One request body, noting when the HTTP stack last read from it (see ``S3Client.send``)."""

    def __init__(self) -> None:
        super().__init__()
        self.touched = time.monotonic()

    def read(self, size: int | None = -1, /) -> bytes:
        self.touched = time.monotonic()
        return super().read(size)

    def readinto(self, buffer: Any, /) -> int:
        self.touched = time.monotonic()
        return super().readinto(buffer)


class S3Client:
    def __init__(self, settings: S3Settings, name: str) -> None:
        if settings.timeout <= 0:
            raise ValueError("timeout must be positive")
        self._settings = settings
        self._name = name
        self._bucket = settings.bucket
        self.timeout = settings.timeout
        self._client: Any = None
        self._stack: AsyncExitStack | None = None

    @property
    def bucket(self) -> str:
        """The bucket every call goes to (server-side copies name it in their source)."""
        return self._bucket

    async def open(self) -> None:
        """Create the client and check the bucket answers, naming the setting at fault if not."""
        await self.close()
        s = self._settings
        config = AioConfig(
            region_name=s.region,
            signature_version="s3v4",
            connect_timeout=s.timeout,
            read_timeout=s.timeout,
            # Few retries: a dead backend must surface as StorageUnavailable quickly.
            retries={"max_attempts": 2, "mode": "standard"},
            # Each streamed read holds a connection until its client is done; botocore's
            # default of 10 would make other calls queue behind slow downloads.
            max_pool_connections=MAX_CONNECTIONS,
            s3={"addressing_style": "path" if s.force_path_style else "virtual"},
        )
        stack = AsyncExitStack()
        try:
            self._client = await stack.enter_async_context(
                AioSession().create_client(
                    "s3",
                    region_name=s.region,
                    endpoint_url=s.endpoint,
                    aws_access_key_id=s.access_key,
                    aws_secret_access_key=s.secret_key,
                    aws_session_token=s.session_token,
                    config=config,
                )
            )
        except (ValueError, *TRANSPORT_ERRORS) as exc:
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
            await self.call("head_bucket")
        except S3Unavailable as exc:
            await self.close()
            check = suspect(exc.hint, endpoint=s.endpoint, force_path_style=s.force_path_style)
            raise StorageUnavailable(f"S3_BUCKET {s.bucket!r} cannot be reached: {exc.reason}; check {check}") from None

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            with suppress(*TRANSPORT_ERRORS):  # a broken pool is not worth reporting on close
                await stack.aclose()

    def _opened(self) -> Any:
        if self._client is None:
            raise StorageUnavailable(f"S3 backend {self._name!r} is not open")
        return self._client

    async def call(self, operation: str, *, bounded: bool = True, **params: Any) -> Any:
        """Run one S3 operation on the bucket, translating every library failure.

        ``bounded`` calls (no body to move) must finish within ``timeout`` whatever the
        retries do; uploads are bounded by ``send``'s watchdog and the read timeout.
        """
        client = self._opened()
        try:
            with anyio.fail_after(self.timeout if bounded else None):
                return await getattr(client, operation)(Bucket=self._bucket, **params)
        except ClientError as exc:
            raise_for_client_error(operation, self._bucket, exc)
        except TRANSPORT_ERRORS as exc:
            raise_unavailable(operation, self._bucket, exc)

    async def send(self, operation: str, body: PartBody, **params: Any) -> Any:
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
                if idle >= self.timeout:
                    break
                await anyio.sleep(self.timeout - idle + 0.05)
            stalled = True
            scope.cancel()

        failure: Exception | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(watchdog, group.cancel_scope)
            try:
                result = await self.call(operation, bounded=False, Body=body, **params)
            except Exception as exc:  # re-raised below, not wrapped in an ExceptionGroup
                failure = exc
            group.cancel_scope.cancel()
        if failure is not None:
            raise failure
        if stalled:
            raise_unavailable(operation, self._bucket, TimeoutError())
        return result

    async def pages(self, operation: str, **params: Any) -> AsyncGenerator[dict[str, Any], None]:
        """The pages of a listing ``operation``, each fetched within ``timeout``."""
        client = self._opened()
        pages = client.get_paginator(operation).paginate(Bucket=self._bucket, **params).__aiter__()
        while True:
            try:
                with anyio.fail_after(self.timeout):
                    page: dict[str, Any] = await pages.__anext__()
            except StopAsyncIteration:
                return
            except ClientError as exc:
                raise_unavailable(operation, self._bucket, exc)
            except TRANSPORT_ERRORS as exc:
                raise_unavailable(operation, self._bucket, exc)
            yield page

    async def read_body(self, body: Any, size: int) -> bytes:
        """Up to ``size`` bytes of a streamed ``get_object`` body."""
        try:
            chunk: bytes = await body.read(size)
        except TRANSPORT_ERRORS as exc:
            raise_unavailable("get_object", self._bucket, exc)
        return chunk
