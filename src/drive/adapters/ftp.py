"""FTP / explicit-FTPS BlobRepository: one file per storage key under ``FTP_BASE_DIR``.

Layout mirrors the filesystem backend: ``objects/<k[:2]>/<key>`` for published bytes,
``staging/<key>`` while an upload is in flight. An upload is a STOR into staging followed
by RNFR/RNTO, so a file under ``objects/`` is always complete.

TLS is explicit FTPS (RFC 4217): ``AUTH TLS`` upgrades the control connection, then
``PBSZ 0`` + ``PROT P`` make the server require TLS on every data connection too.
aioftp's ``Client.upgrade_to_tls`` sends all three, and from then on opens each passive
data connection with the control connection's SSL context (same CA, hostname checked).

Logged-in clients are pooled; any connection whose protocol state is in doubt (an error,
a cancellation, a cut transfer that did not resynchronise) is closed, never reused.
"""

from __future__ import annotations

import os
import secrets
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TypeVar

import aioftp
import anyio

from drive.domain.errors import StorageUnavailable, StoredBytesMissing
from drive.domain.storage_keys import checked_key, is_shard, is_storage_key, shard

READ_CHUNK = 256 * 1024
# A pooled connection idle longer than this is checked with NOOP before reuse: servers
# and NAT boxes drop quiet control connections, often after sending a 421 we'd misread.
_PING_AFTER_IDLE = 10.0
# Library failures that mean "the backend misbehaved"; anything else is a bug or the caller's.
_LIBRARY_ERRORS = (OSError, EOFError, aioftp.AIOFTPException, ValueError, IndexError)


T = TypeVar("T")


@dataclass
class _Idle:
    client: aioftp.Client
    since: float


@dataclass
class _Lease:
    """The connection one operation holds; ``start`` may swap a dead pooled one for a new one."""

    client: aioftp.Client
    reused: bool


class FtpBlobRepository:
    def __init__(
        self,
        *,
        host: str,
        port: int = 21,
        user: str = "anonymous",
        password: str = "",
        tls: bool = False,
        base_dir: str = "/",
        timeout: float = 30.0,
        ca_file: str | None = None,
        verify: bool = True,
        pool_size: int = 4,
        name: str = "ftp",
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.name = name
        self._host = host
        self._port = port
        self._user = user
        self._password = password
        self._tls = tls
        self._timeout = timeout
        self._ca_file = ca_file
        self._verify = verify
        self._pool_size = pool_size
        self._base = PurePosixPath(base_dir or "/")
        self._objects = self._base / "objects"
        self._staging = self._base / "staging"
        self._ssl_context: ssl.SSLContext | None = None
        self._slots = anyio.Semaphore(pool_size)
        self._idle: list[_Idle] = []
        self._closed = False

    def __repr__(self) -> str:  # never the password
        return f"FtpBlobRepository(host={self._host!r}, port={self._port}, user={self._user!r}, tls={self._tls})"

    # --- paths

    def _object_path(self, key: str) -> PurePosixPath:
        return self._objects / shard(key) / key

    def _staging_path(self, key: str) -> PurePosixPath:
        return self._staging / checked_key(key)

    # --- lifecycle

    async def open(self) -> None:
        self._closed = False
        client = await self._connect()
        try:
            await self._prepare(client)
        except BaseException:
            client.close()
            raise
        self._checkin(client)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for entry in idle:
            # QUIT is a courtesy; the socket is closed regardless, and waited for so that
            # a loop shutting down right after close() does not leak it.
            with anyio.move_on_after(min(self._timeout, 2.0)), suppress(*_LIBRARY_ERRORS):
                await entry.client.quit()
            entry.client.close()
            with anyio.move_on_after(1.0), suppress(*_LIBRARY_ERRORS):
                await entry.client.stream.writer.wait_closed()

    async def ping(self) -> None:
        with self._translated("check the connection (NOOP)"), anyio.fail_after(self._timeout):
            async with self._lease(bounded=False) as lease:
                await self._start(lease, _noop)

    # --- the port

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        staging = self._staging_path(key)
        final = self._object_path(key)
        async with self._lease() as lease:
            with self._translated("start an upload"), anyio.fail_after(self._timeout):
                stream = await self._start(lease, lambda client: _open_data(client, f"STOR {staging}"))
            client = lease.client
            written = 0
            # Where the control connection stands, for the cleanup if anything fails.
            transfer_open, control_in_sync = True, True
            try:
                async for chunk in chunks:  # the caller's exceptions pass through untouched
                    if chunk:
                        with self._translated("upload"):
                            await stream.write(chunk)  # bounded by socket_timeout
                        written += len(chunk)
                control_in_sync = False
                with self._translated("finish an upload"), anyio.fail_after(self._timeout):
                    await stream.finish()  # closes the data connection, waits for 226
                    transfer_open = False
                    await self._publish(client, staging, final)
            except BaseException:
                stream.close()
                await self._remove_after_failure(client, staging, final, transfer_open, control_in_sync)
                raise
        return written

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self._object_path(key)
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"bad range {start}-{end}")
        if end is not None and end == start:
            # Nothing to transfer, but a missing file must still be reported.
            with self._translated("look up a file"), anyio.fail_after(self._timeout):
                async with self._lease() as lease:
                    size = await self._start(lease, lambda client: _size(client, path))
            if size is None:
                raise StoredBytesMissing(f"no bytes for storage key {key}")
            return
        async with self._lease() as lease:
            with self._translated("start a download"), anyio.fail_after(self._timeout):
                try:
                    stream = await self._start(lease, lambda client: _open_data(client, f"RETR {path}", start))
                except aioftp.StatusCodeError as exc:
                    if exc.received_codes[-1].matches("550"):
                        raise StoredBytesMissing(f"no bytes for storage key {key}") from None
                    if not (start and exc.received_codes[-1].matches("5xx")):
                        raise
                    # Some servers refuse a REST past the end (pyftpdlib: 554) where others
                    # send nothing; answer like a file would: no bytes, unless it is missing.
                    size = await _size(lease.client, path)
                    if size is None:
                        raise StoredBytesMissing(f"no bytes for storage key {key}") from None
                    if start < size:
                        raise
                    return
            client = lease.client
            remaining = None if end is None else end - start
            try:
                at_eof = False
                while remaining is None or remaining > 0:
                    size = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                    with self._translated("download"):
                        chunk = await stream.read(size)  # bounded by socket_timeout
                    if not chunk:
                        at_eof = True
                        break
                    if remaining is not None:
                        remaining -= len(chunk)
                    yield chunk
                if at_eof:
                    # A 4xx/5xx here means the server stopped early: the bytes are incomplete.
                    with self._translated("finish a download"), anyio.fail_after(self._timeout):
                        await stream.finish()
                else:
                    await self._resync_after_cut(client, stream)
            finally:
                stream.close()

    async def delete(self, key: str) -> None:
        paths = (self._object_path(key), self._staging_path(key))
        with self._translated("delete a file"), anyio.fail_after(self._timeout):
            async with self._lease() as lease:
                await self._start(lease, lambda client: _delete_if_present(client, paths[0]))
                await _delete_if_present(lease.client, paths[1])

    async def list_keys(self) -> AsyncIterator[str]:
        found: set[str] = set()
        # Listing is collected before yielding so no connection is held while the caller works;
        # each network step is bounded by socket_timeout rather than the whole listing.
        with self._translated("list files"):
            async with self._lease() as lease:
                top = await self._start(lease, lambda client: _names(client, self._objects))
                client = lease.client
                subdirs = [name for name in top if is_shard(name)]
                for directory in [*(self._objects / sub for sub in subdirs), self._staging]:
                    found.update(name for name in await _names(client, directory) if is_storage_key(name))
        for key in sorted(found):
            yield key

    # --- connection pool

    @asynccontextmanager
    async def _lease(self, *, bounded: bool = True) -> AsyncIterator[_Lease]:
        """A logged-in client for one operation; closed rather than pooled if the operation fails.

        Waiting for a free connection and connecting are bounded by ``timeout`` so a dead
        server or an exhausted pool gives ``StorageUnavailable`` instead of a hang.
        """
        try:
            with anyio.fail_after(self._timeout if bounded else None):
                await self._slots.acquire()
        except TimeoutError:
            raise StorageUnavailable(
                f"all {self._pool_size} FTP connections stayed busy for {self._timeout:g}s (FTP_POOL_SIZE)"
            ) from None
        try:
            lease = await self._checkout()
            try:
                yield lease
            except BaseException:
                lease.client.close()
                raise
            self._checkin(lease.client)
        finally:
            self._slots.release()

    async def _start(self, lease: _Lease, step: Callable[[aioftp.Client], Awaitable[T]]) -> T:
        """Run an operation's first exchange; a pooled connection found dead is replaced once.

        The checks in ``_checkout`` cannot see a hang-up still in flight (a server restarted a
        moment ago). Retrying is safe: nothing has been consumed from the caller yet and each
        first step (NOOP, SIZE, DELE, a transfer's start) can simply be repeated.
        """
        try:
            return await step(lease.client)
        except (ConnectionError, EOFError, aioftp.StatusCodeError) as exc:
            stale = not isinstance(exc, aioftp.StatusCodeError) or exc.received_codes[-1].matches("421")
            if not (lease.reused and stale):
                raise
        lease.client.close()
        lease.client, lease.reused = await self._connect(), False
        return await step(lease.client)

    async def _checkout(self) -> _Lease:
        while self._idle:
            entry = self._idle.pop()  # most recently used first: likeliest to be alive
            if _looks_closed(entry.client):
                entry.client.close()
                continue
            if time.monotonic() - entry.since > _PING_AFTER_IDLE:
                try:
                    with anyio.fail_after(min(self._timeout, 5.0)):
                        await entry.client.command("NOOP", "200")
                except _LIBRARY_ERRORS:
                    entry.client.close()
                    continue
            return _Lease(entry.client, reused=True)
        return _Lease(await self._connect(), reused=False)

    def _checkin(self, client: aioftp.Client) -> None:
        if self._closed or _looks_closed(client) or len(self._idle) >= self._pool_size:
            client.close()
        else:
            self._idle.append(_Idle(client, time.monotonic()))

    async def _connect(self) -> aioftp.Client:
        """A new logged-in client; failures name the setting most likely at fault."""
        context = self._tls_context() if self._tls else None
        client = aioftp.Client(
            socket_timeout=self._timeout,
            connection_timeout=self._timeout,
            path_timeout=self._timeout,
        )
        where = f"{self._host}:{self._port}"
        step = "connect"
        try:
            with anyio.fail_after(self._timeout):
                await client.connect(self._host, self._port)
                if context is not None:
                    step = "tls"
                    await client.upgrade_to_tls(context)
                step = "login"
                await client.login(self._user, self._password)
        except BaseException as exc:
            client.close()
            if not isinstance(exc, (*_LIBRARY_ERRORS, TimeoutError)):
                raise
            raise StorageUnavailable(self._connect_failure(step, where, exc)) from None
        return client

    def _connect_failure(self, step: str, where: str, exc: BaseException) -> str:
        if step == "connect":
            if isinstance(exc, aioftp.StatusCodeError):
                return f"FTP server at {where} did not greet properly ({_code(exc)}); check FTP_HOST/FTP_PORT"
            return f"cannot reach FTP server at {where} ({_reason(exc)}); check FTP_HOST/FTP_PORT"
        if step == "tls":
            if isinstance(exc, ssl.SSLCertVerificationError):
                return (
                    f"FTP server certificate not trusted ({exc.verify_message}); "
                    "check FTP_TLS, FTP_CA_FILE or FTP_TLS_VERIFY"
                )
            if isinstance(exc, aioftp.StatusCodeError):
                return f"FTP server at {where} refused AUTH TLS ({_code(exc)}); check FTP_TLS"
            return f"TLS setup with FTP server at {where} failed ({_reason(exc)}); check FTP_TLS"
        if isinstance(exc, aioftp.StatusCodeError):
            hint = "check FTP_USER/FTP_PASSWORD" if self._tls else "check FTP_USER/FTP_PASSWORD, or FTP_TLS"
            # The server's words help ("TLS required"), but never risk echoing the password.
            text = " ".join(str(line).strip() for line in exc.info)[:80]
            if self._password:
                text = text.replace(self._password, "***")
            return f"FTP server at {where} refused login ({_code(exc)} {text}); {hint}"
        return f"FTP login at {where} failed ({_reason(exc)}); check FTP_USER/FTP_PASSWORD and FTP_TLS"

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            try:
                # With a CA file only that CA is trusted: the documented way for private servers.
                context = ssl.create_default_context(cafile=self._ca_file if self._verify else None)
            except (OSError, ValueError):
                raise StorageUnavailable("FTP_CA_FILE is not a readable PEM CA certificate file") from None
            if not self._verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._ssl_context = context
        return self._ssl_context

    # --- steps

    async def _prepare(self, client: aioftp.Client) -> None:
        """Create the layout and prove a data connection and a write work, naming what fails."""
        try:
            with anyio.fail_after(self._timeout):
                home = await client.get_current_directory()
                for directory in (self._objects, self._staging):
                    await _make_dirs(client, directory)
                    # MKD refused and "already exists" look alike: entering it tells them apart.
                    # Back home each time, as a relative FTP_BASE_DIR is relative to it.
                    await client.command(f"CWD {directory}", "2xx")
                    await client.command(f"CWD {home}", "2xx")
        except (*_LIBRARY_ERRORS, TimeoutError) as exc:
            raise StorageUnavailable(
                f"FTP_BASE_DIR {str(self._base)!r} cannot be created or entered ({_reason(exc)})"
            ) from None
        probe = self._staging / f".probe-{secrets.token_hex(8)}"
        try:
            with anyio.fail_after(self._timeout):
                reader, writer = await client.get_passive_connection("I")
        except (*_LIBRARY_ERRORS, TimeoutError) as exc:
            tls = "FTP_TLS, " if self._tls else ""
            raise StorageUnavailable(
                f"FTP data connection failed ({_reason(exc)}); check {tls}FTP_HOST and the server's passive ports"
            ) from None
        try:
            with anyio.fail_after(self._timeout):
                try:
                    await client.command(f"STOR {probe}", "1xx")
                except BaseException:
                    writer.close()
                    raise
                await aioftp.DataConnectionThrottleStreamIO(client, reader, writer, {}).finish()
                await client.command(f"DELE {probe}", "2xx")
        except (*_LIBRARY_ERRORS, TimeoutError) as exc:
            raise StorageUnavailable(f"FTP_BASE_DIR {str(self._base)!r} is not writable ({_reason(exc)})") from None

    async def _resync_after_cut(self, client: aioftp.Client, stream: aioftp.DataConnectionThrottleStreamIO) -> None:
        """Make a connection whose RETR was cut short reusable, or drop it; never fail the read.

        Closing the data connection makes the server end the RETR with one reply (226 if it
        had sent everything, else 426); NOOP then proves no stray reply is left over.
        """
        stream.close()
        try:
            with anyio.fail_after(min(self._timeout, 5.0)):
                await client.command(None, ("2xx", "4xx", "5xx"), "1xx")
                await client.command("NOOP", "200")
        except (*_LIBRARY_ERRORS, TimeoutError):
            client.close()  # out of step: the pool will not take it back

    async def _publish(self, client: aioftp.Client, staging: PurePosixPath, final: PurePosixPath) -> None:
        try:
            await client.rename(staging, final)
        except aioftp.StatusCodeError as exc:
            if not exc.received_codes[-1].matches("5xx"):
                raise
            # Most likely the first key under this prefix: make objects/<k[:2]> and retry once.
            await _make_dirs(client, final.parent)
            await client.rename(staging, final)

    async def _remove_after_failure(
        self,
        client: aioftp.Client,
        staging: PurePosixPath,
        final: PurePosixPath,
        transfer_open: bool,
        control_in_sync: bool,
    ) -> None:
        """Best effort, shielded and bounded: leave nothing of a failed write behind."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(self._timeout):
            if control_in_sync:
                try:
                    if transfer_open:
                        # The server ends the cut STOR with one reply; read it before DELE.
                        await client.command(None, ("2xx", "4xx", "5xx"), "1xx")
                    await _delete_if_present(client, staging)
                    return
                except _LIBRARY_ERRORS:
                    pass
            # The leased connection is mid-command or broken: one try on a fresh one. The
            # rename may have gone through, so the published name goes too (the key is ours).
            try:
                fresh = await self._connect()
            except StorageUnavailable:
                return
            try:
                for path in (staging, final):
                    await _delete_if_present(fresh, path)
            except _LIBRARY_ERRORS:
                pass
            finally:
                fresh.close()

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        """Turn library, socket, TLS and timeout errors into one-line ``StorageUnavailable``."""
        try:
            yield
        except TimeoutError:
            raise StorageUnavailable(
                f"FTP server did not answer within {self._timeout:g}s while trying to {action}"
            ) from None
        except aioftp.StatusCodeError as exc:
            raise StorageUnavailable(f"FTP server refused to {action} ({_code(exc)})") from None
        except _LIBRARY_ERRORS as exc:
            raise StorageUnavailable(f"FTP connection failed while trying to {action} ({_reason(exc)})") from None


# --- protocol helpers (aioftp's own versions leak the data socket on a refused command)


async def _open_data(client: aioftp.Client, command: str, offset: int = 0) -> aioftp.DataConnectionThrottleStreamIO:
    """Open a passive data connection, then send ``command``; the socket is closed if refused."""
    reader, writer = await client.get_passive_connection("I")
    try:
        if offset:
            await client.command(f"REST {offset}", "350")
        await client.command(command, "1xx")
    except BaseException:
        writer.close()
        raise
    return aioftp.DataConnectionThrottleStreamIO(
        client, reader, writer, {"_": client.throttle}, timeout=client.socket_timeout
    )


async def _names(client: aioftp.Client, directory: PurePosixPath) -> list[str]:
    """Entry names of ``directory`` via NLST (universal, unlike MLSD); missing means empty."""
    try:
        stream = await _open_data(client, f"NLST {directory}")
    except aioftp.StatusCodeError as exc:
        if exc.received_codes[-1].matches("450") or exc.received_codes[-1].matches("550"):
            return []
        raise
    names: list[str] = []
    try:
        async for line in stream.iter_by_line():
            # Some servers answer with paths, not names.
            name = line.decode(client.encoding, "replace").strip().rsplit("/", 1)[-1]
            if name:
                names.append(name)
        await stream.finish()
    finally:
        stream.close()
    return names


async def _noop(client: aioftp.Client) -> None:
    await client.command("NOOP", "200")


async def _size(client: aioftp.Client, path: PurePosixPath) -> int | None:
    """The file's size by SIZE (RFC 3659), or None if there is no such file."""
    await client.command("TYPE I", "200")  # SIZE is refused in ASCII mode by some servers
    try:
        _, info = await client.command(f"SIZE {path}", "213")
    except aioftp.StatusCodeError as exc:
        if exc.received_codes[-1].matches("550"):
            return None
        raise
    return int(info[-1].strip())


async def _delete_if_present(client: aioftp.Client, path: PurePosixPath) -> None:
    try:
        await client.remove_file(path)
    except aioftp.StatusCodeError as exc:
        if not exc.received_codes[-1].matches("550"):
            raise


async def _make_dirs(client: aioftp.Client, path: PurePosixPath) -> None:
    """MKD each missing level; a refusal is taken as "exists" and checked by the caller's next step."""
    for directory in [*reversed(path.parents), path]:
        if directory.name in ("", "."):
            continue
        try:
            await client.command(f"MKD {directory}", "257")
        except aioftp.StatusCodeError as exc:
            if not exc.received_codes[-1].matches("5xx"):
                raise


def _looks_closed(client: aioftp.Client) -> bool:
    """The server hung up (or the socket is gone) while the connection sat in the pool."""
    try:
        stream = client.stream
    except ConnectionError:
        return True
    return stream.reader.at_eof() or stream.writer.transport.is_closing()


def _code(exc: aioftp.StatusCodeError) -> str:
    return "/".join(str(code) for code in exc.received_codes) or "no reply"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aioftp.StatusCodeError):
        return f"reply {_code(exc)}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or type(exc).__name__}"
    if isinstance(exc, OSError):
        if exc.errno:
            return os.strerror(exc.errno)
        return exc.strerror or str(exc)[:120] or type(exc).__name__
    return type(exc).__name__
