"""``drive put|get|ls|stat|rm``: one blob at a time, streamed, through the service's use-cases."""

from __future__ import annotations

import argparse
import mimetypes
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from stat import S_ISREG
from typing import IO

import anyio
import anyio.to_thread

from drive.domain.errors import PayloadTooLarge
from drive.domain.ids import validate_id
from drive.domain.media_types import DEFAULT_CONTENT_TYPE, validate_media_type
from drive.entrypoints.cli_output import (
    escaped,
    human_size,
    json_text,
    long_line,
    print_json,
    quoted,
    record_json,
    record_lines,
)
from drive.entrypoints.cli_progress import TransferBar
from drive.entrypoints.cli_runtime import (
    ExitCode,
    LocalFileError,
    about,
    load_settings,
    opened_service,
    stderr_is_terminal,
)
from drive.settings import Settings

CHUNK = 1024 * 1024
LIST_PAGE = 1000


# -- put ------------------------------------------------------------------------------


def run_put(args: argparse.Namespace) -> int:
    with about(args.id):
        validate_id(args.id)
    args.content_type = validate_media_type(args.content_type or guess_content_type(args.file))
    settings = load_settings(args.verbose)
    from_stdin = args.file == "-"
    handle = sys.stdin.buffer if from_stdin else _open_local(args.file)
    try:
        return anyio.run(_put, args, settings, handle)
    finally:
        if not from_stdin:
            handle.close()


async def _put(args: argparse.Namespace, settings: Settings, handle: IO[bytes]) -> int:
    total = _regular_file_size(handle)
    if total is not None and total > settings.max_blob_size:
        raise PayloadTooLarge(f"{args.file} is larger than MAX_BLOB_SIZE ({settings.max_blob_size} bytes)")
    name = "standard input" if args.file == "-" else args.file
    async with opened_service(settings) as service:
        with TransferBar(f"put {escaped(args.id)}", total, enabled=stderr_is_terminal()) as bar, about(args.id):
            chunks = _read_chunks(anyio.wrap_file(handle), name, bar)
            outcome = await service.store(
                args.id, chunks, max_size=settings.max_blob_size, content_type=args.content_type
            )
    record = outcome.record
    if args.json:
        print_json({**record_json(record), "created": outcome.created})
    elif outcome.created:
        print(f"stored {quoted(record.id)}: {human_size(record.size)}, sha256 {record.sha256}")
    else:
        print(f"already stored {quoted(record.id)} with the same bytes")
    return ExitCode.OK


# The standard library's own table only: the system's mime.types differ from machine to machine.
_TYPES = mimetypes.MimeTypes()
# A compressed file's bytes are the compressed form (``x.tar.gz`` is gzip, not tar).
_COMPRESSED = {"gzip": "application/gzip"}


def guess_content_type(path: str) -> str:
    """The content type ``mimetypes`` gives the file name; ``application/octet-stream`` for none or stdin."""
    if path == "-":
        return DEFAULT_CONTENT_TYPE
    guessed, encoding = _TYPES.guess_type(path, strict=False)
    if encoding is not None:
        return _COMPRESSED.get(encoding, DEFAULT_CONTENT_TYPE)
    return guessed or DEFAULT_CONTENT_TYPE


def _open_local(path: str) -> IO[bytes]:
    try:
        return open(path, "rb")  # closed by run_put once the store ends
    except OSError as exc:
        raise LocalFileError(f"cannot open {path}: {exc.strerror}") from None


def _regular_file_size(handle: IO[bytes]) -> int | None:
    """The size of a regular file (known in advance); None for pipes and terminals."""
    try:
        info = os.fstat(handle.fileno())
    except (OSError, ValueError):
        return None
    return info.st_size if S_ISREG(info.st_mode) else None


async def _read_chunks(source: anyio.AsyncFile[bytes], name: str, bar: TransferBar) -> AsyncIterator[bytes]:
    while True:
        try:
            chunk = await source.read(CHUNK)
        except OSError as exc:
            raise LocalFileError(f"cannot read {name}: {exc.strerror}") from None
        if not chunk:
            return
        bar.advance(len(chunk))
        yield chunk


# -- get ------------------------------------------------------------------------------


def run_get(args: argparse.Namespace) -> int:
    with about(args.id):
        validate_id(args.id)
    output = None if args.output in (None, "-") else Path(args.output)
    if output is not None and output.is_dir():
        raise LocalFileError(f"cannot write {output}: it is a directory")
    if output is not None and not output.absolute().parent.is_dir():
        raise LocalFileError(f"cannot write {output}: its directory does not exist")
    settings = load_settings(args.verbose)
    return anyio.run(_get, args, settings, output)


async def _get(args: argparse.Namespace, settings: Settings, output: Path | None) -> int:
    async with opened_service(settings) as service:
        with about(args.id):
            record = await service.retrieve.stat(args.id)
            # A bar on the same terminal as the bytes would garble both.
            shown = stderr_is_terminal() and (output is not None or not sys.stdout.isatty())
            with TransferBar(f"get {escaped(args.id)}", record.size, enabled=shown) as bar:
                chunks = service.retrieve.stream(record)
                if output is None:
                    await _to_stdout(chunks, bar)
                else:
                    await _to_file(chunks, output, bar)
    return ExitCode.OK


async def _to_stdout(chunks: AsyncIterator[bytes], bar: TransferBar) -> None:
    # Bytes are written as they arrive; a corrupt blob is detected at its end, so a
    # reader of standard output learns of it from the exit code only.
    out = anyio.wrap_file(sys.stdout.buffer)
    async for chunk in chunks:
        await out.write(chunk)
        bar.advance(len(chunk))
    await out.flush()


async def _to_file(chunks: AsyncIterator[bytes], output: Path, bar: TransferBar) -> None:
    """Into a hidden file next to ``output``, renamed over it only once the checksum matched."""
    partial = output.with_name(f".{output.name}.{uuid.uuid4().hex[:12]}.part")
    try:
        try:
            async with await anyio.open_file(partial, "xb") as out:
                async for chunk in chunks:
                    await out.write(chunk)
                    bar.advance(len(chunk))
            await anyio.to_thread.run_sync(os.replace, partial, output)
        except OSError as exc:
            raise LocalFileError(f"cannot write {output}: {exc.strerror}") from None
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(lambda: partial.unlink(missing_ok=True))
        raise


# -- ls, stat, rm ---------------------------------------------------------------------


def run_ls(args: argparse.Namespace) -> int:
    settings = load_settings(args.verbose)
    return anyio.run(_ls, args, settings)


async def _ls(args: argparse.Namespace, settings: Settings) -> int:
    async with opened_service(settings) as service:
        cursor: str | None = None
        count = 0
        while True:
            page = await service.list(args.prefix, LIST_PAGE, cursor)
            for record in page.items:
                if args.json:  # an array written item by item: a huge listing never sits in memory
                    item = json_text(record_json(record))
                    sys.stdout.write(f"{',' if count else '['}\n  {item}")
                else:
                    print(long_line(record) if args.long else escaped(record.id))
                count += 1
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        if args.json:
            print("\n]" if count else "[]")
    return ExitCode.OK


def run_stat(args: argparse.Namespace) -> int:
    settings = load_settings(args.verbose)
    return anyio.run(_stat, args, settings)


async def _stat(args: argparse.Namespace, settings: Settings) -> int:
    async with opened_service(settings) as service:
        with about(args.id):
            record = await service.retrieve.stat(args.id)
    if args.json:
        print_json(record_json(record))
    else:
        print("\n".join(record_lines(record)))
    return ExitCode.OK


def run_rm(args: argparse.Namespace) -> int:
    settings = load_settings(args.verbose)
    return anyio.run(_rm, args, settings)


async def _rm(args: argparse.Namespace, settings: Settings) -> int:
    async with opened_service(settings) as service:
        with about(args.id):
            record = await service.delete(args.id)
    if args.json:
        print_json(record_json(record))
    else:
        print(f"removed {quoted(record.id)}")
    return ExitCode.OK


# -- parsers --------------------------------------------------------------------------


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    put = commands.add_parser(
        "put", parents=[common], help="store a file or standard input as a blob", description=_PUT_HELP
    )
    put.add_argument("id", help="the blob's id")
    put.add_argument("file", help="file to store, or - for standard input")
    put.add_argument(
        "--content-type",
        metavar="TYPE",
        help="the blob's media type, served back on raw reads (default: guessed from FILE's name as mimetypes does;"
        " application/octet-stream for standard input or an unknown extension)",
    )
    _json_flag(put, "print the stored record as JSON")
    put.set_defaults(handler=run_put)

    get = commands.add_parser("get", parents=[common], help="write a blob to standard output or a file")
    get.add_argument("id", help="the blob's id")
    get.add_argument("-o", "--output", metavar="FILE", help="write to FILE (replaced only once the checksum matched)")
    get.set_defaults(handler=run_get)

    ls = commands.add_parser("ls", parents=[common], help="list blob ids in byte order")
    ls.add_argument("--prefix", default="", help="only ids starting with PREFIX")
    ls.add_argument(
        "-l", "--long", action="store_true", help="size, created_at, backend and content type before each id"
    )
    _json_flag(ls, "print a JSON array of records")
    ls.set_defaults(handler=run_ls)

    stat = commands.add_parser(
        "stat", parents=[common], help="size, SHA-256, created_at, backend and content type of a blob"
    )
    stat.add_argument("id", help="the blob's id")
    _json_flag(stat, "print the record as JSON")
    stat.set_defaults(handler=run_stat)

    rm = commands.add_parser("rm", parents=[common], help="delete a blob")
    rm.add_argument("id", help="the blob's id")
    _json_flag(rm, "print the removed record as JSON")
    rm.set_defaults(handler=run_rm)


def _json_flag(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--json", action="store_true", help=text)


_PUT_HELP = (
    "Store FILE (or standard input, with -) as blob ID, streamed to the STORAGE backend. "
    "Storing the same bytes (and content type) again under the same id succeeds; different bytes, or another"
    " content type, are refused."
)
