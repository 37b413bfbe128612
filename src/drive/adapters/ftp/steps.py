"""The FTP exchanges the repository is made of, each on one logged-in client.

aioftp's own versions of several of these leak the data socket on a refused command,
hence the small re-implementations.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import suppress
from pathlib import PurePosixPath

import aioftp
import anyio

from drive.adapters.ftp.errors import LIBRARY_ERRORS, missing, reason, refused_with, translated
from drive.domain.errors import StorageUnavailable

DataStream = aioftp.DataConnectionThrottleStreamIO
# ``prepare`` proves staging is writable with a file of this prefix, gone a moment later.
PROBE = ".probe-"
READ_CHUNK = 256 * 1024


async def open_data(client: aioftp.Client, command: str, offset: int = 0) -> DataStream:
    """Open a passive data connection, then send ``command``; the socket is closed if refused."""
    reader, writer = await client.get_passive_connection("I")
    try:
        if offset:
            await client.command(f"REST {offset}", "350")
        await client.command(command, "1xx")
    except BaseException:
        writer.close()
        raise
    return DataStream(client, reader, writer, {"_": client.throttle}, timeout=client.socket_timeout)


async def names(client: aioftp.Client, directory: PurePosixPath) -> list[str]:
    """Entry names of ``directory`` via NLST (universal, unlike MLSD); missing means empty."""
    try:
        stream = await open_data(client, f"NLST {directory}")
    except aioftp.StatusCodeError as exc:
        if refused_with(exc, "450") or refused_with(exc, "550"):
            return []
        raise
    found: list[str] = []
    try:
        async for line in stream.iter_by_line():
            # Some servers answer with paths, not names.
            name = line.decode(client.encoding, "replace").strip().rsplit("/", 1)[-1]
            if name:
                found.append(name)
        await stream.finish()
    finally:
        stream.close()
    return found


async def noop(client: aioftp.Client) -> None:
    await client.command("NOOP", "200")


async def size(client: aioftp.Client, path: PurePosixPath) -> int | None:
    """The file's size by SIZE (RFC 3659), or None if there is no such file."""
    await client.command("TYPE I", "200")  # SIZE is refused in ASCII mode by some servers
    try:
        _, info = await client.command(f"SIZE {path}", "213")
    except aioftp.StatusCodeError as exc:
        if refused_with(exc, "550"):
            return None
        raise
    return int(info[-1].strip())


async def delete_if_present(client: aioftp.Client, path: PurePosixPath) -> None:
    try:
        await client.remove_file(path)
    except aioftp.StatusCodeError as exc:
        if not refused_with(exc, "550"):
            raise


async def make_dirs(client: aioftp.Client, path: PurePosixPath) -> None:
    """MKD each missing level; a refusal is taken as "exists" and checked by the caller's next step."""
    for directory in [*reversed(path.parents), path]:
        if directory.name in ("", "."):
            continue
        try:
            await client.command(f"MKD {directory}", "257")
        except aioftp.StatusCodeError as exc:
            if not refused_with(exc, "5xx"):
                raise


async def publish(client: aioftp.Client, staging: PurePosixPath, final: PurePosixPath) -> None:
    """Rename a complete staged upload to its published name."""
    try:
        await client.rename(staging, final)
    except aioftp.StatusCodeError as exc:
        if not refused_with(exc, "5xx"):
            raise
        # Most likely the first key under this prefix: make objects/<k[:2]> and retry once.
        await make_dirs(client, final.parent)
        await client.rename(staging, final)


async def prepare(
    client: aioftp.Client, *, objects: PurePosixPath, staging: PurePosixPath, within: float, tls: bool
) -> None:
    """Create the layout and prove a data connection and a write (in ``staging``) work, naming what fails.

    Each stage gets ``within`` seconds.
    """
    try:
        with anyio.fail_after(within):
            home = await client.get_current_directory()
            for directory in (objects, staging):
                await make_dirs(client, directory)
                # MKD refused and "already exists" look alike: entering it tells them apart.
                # Back home each time, as a relative FTP_BASE_DIR is relative to it.
                await client.command(f"CWD {directory}", "2xx")
                await client.command(f"CWD {home}", "2xx")
    except (*LIBRARY_ERRORS, TimeoutError) as exc:
        raise StorageUnavailable(f"FTP_BASE_DIR cannot be created or entered ({reason(exc)})") from None
    probe = staging / f"{PROBE}{secrets.token_hex(8)}"
    try:
        with anyio.fail_after(within):
            reader, writer = await client.get_passive_connection("I")
    except (*LIBRARY_ERRORS, TimeoutError) as exc:
        check = "FTP_TLS, FTP_HOST" if tls else "FTP_HOST"
        raise StorageUnavailable(
            f"FTP data connection failed ({reason(exc)}); check {check} and the server's passive ports"
        ) from None
    try:
        with anyio.fail_after(within):
            try:
                await client.command(f"STOR {probe}", "1xx")
            except BaseException:
                writer.close()
                raise
            await DataStream(client, reader, writer, {}).finish()
            await client.command(f"DELE {probe}", "2xx")
    except (*LIBRARY_ERRORS, TimeoutError) as exc:
        raise StorageUnavailable(f"FTP_BASE_DIR is not writable ({reason(exc)})") from None


async def resync_after_cut(client: aioftp.Client, stream: DataStream, within: float) -> None:
    """Make a connection whose RETR was cut short reusable, or drop it; never fail the read.

    Closing the data connection makes the server end the RETR with one reply (226 if it
    had sent everything, else 426); NOOP then proves no stray reply is left over.
    """
    stream.close()
    try:
        with anyio.fail_after(min(within, 5.0)):
            await client.command(None, ("2xx", "4xx", "5xx"), "1xx")
            await client.command("NOOP", "200")
    except (*LIBRARY_ERRORS, TimeoutError):
        client.close()  # out of step: the pool will not take it back


async def remove_after_failure(
    client: aioftp.Client,
    paths: tuple[PurePosixPath, PurePosixPath],
    *,
    transfer_open: bool,
    control_in_sync: bool,
    connect: Callable[[], Awaitable[aioftp.Client]],
    within: float,
) -> None:
    """Best effort, shielded and bounded: leave nothing of a failed write (``paths``: staged, published)."""
    staging = paths[0]
    with anyio.CancelScope(shield=True), anyio.move_on_after(within):
        if control_in_sync:
            try:
                if transfer_open:
                    # The server ends the cut STOR with one reply; read it before DELE.
                    await client.command(None, ("2xx", "4xx", "5xx"), "1xx")
                await delete_if_present(client, staging)
                return
            except LIBRARY_ERRORS:
                pass
        # The leased connection is mid-command or broken: one try on a fresh one. The
        # rename may have gone through, so the published name goes too (the key is ours).
        try:
            fresh = await connect()
        except StorageUnavailable:
            return
        try:
            for path in paths:
                await delete_if_present(fresh, path)
        except LIBRARY_ERRORS:
            pass
        finally:
            fresh.close()


async def make_dir(client: aioftp.Client, path: PurePosixPath) -> None:
    """MKD one level; a refusal is taken as "exists" and checked by the caller's next step."""
    try:
        await client.command(f"MKD {path}", "257")
    except aioftp.StatusCodeError as exc:
        if not refused_with(exc, "5xx"):
            raise


async def remove_dir(client: aioftp.Client, directory: PurePosixPath) -> None:
    """Delete ``directory``'s files, then the directory itself; missing is fine."""
    for name in await names(client, directory):
        await delete_if_present(client, directory / name)
    try:
        await client.command(f"RMD {directory}", "250")
    except aioftp.StatusCodeError as exc:
        if not refused_with(exc, "550"):
            raise


async def retrieve(
    client: aioftp.Client, path: PurePosixPath, count: int, within: float
) -> AsyncGenerator[bytes, None]:
    """The first ``count`` bytes of ``path``; ``StoredBytesMissing`` if it is missing or shorter.

    Failures are ``StorageUnavailable``; the client is left reusable or closed.
    """
    with translated("start a download", within), anyio.fail_after(within):
        try:
            stream = await open_data(client, f"RETR {path}")
        except aioftp.StatusCodeError as exc:
            if refused_with(exc, "550"):
                raise missing() from None
            raise
    remaining = count
    try:
        while remaining:
            with translated("download", within):
                chunk = await stream.read(min(READ_CHUNK, remaining))  # bounded by socket_timeout
            if not chunk:
                client.close()  # the RETR's reply is still to come: out of step
                raise missing()
            remaining -= len(chunk)
            yield chunk
        # The server may or may not have sent everything: one reply either way.
        await resync_after_cut(client, stream, within)
    finally:
        stream.close()


async def abandon_upload(client: aioftp.Client, stream: DataStream, within: float) -> None:
    """After a failed STOR/APPE: close its data connection and wait (bounded) for the server to end it.

    The server then has written what it received, so a later SIZE sees the leftover
    bytes rather than racing them. Shielded; never raises. The caller drops the client.
    """
    stream.close()
    with anyio.CancelScope(shield=True), anyio.move_on_after(min(within, 5.0)), suppress(*LIBRARY_ERRORS):
        await client.command(None, ("2xx", "4xx", "5xx"), "1xx")
