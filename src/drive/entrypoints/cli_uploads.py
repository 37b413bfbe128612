"""``drive uploads`` lists resumable uploads in progress; ``drive uploads rm UPLOAD`` ends one."""

from __future__ import annotations

import argparse
import sys

import anyio

from drive.domain.model import Upload
from drive.entrypoints.cli_output import escaped, json_text, print_json
from drive.entrypoints.cli_runtime import ExitCode, load_settings, opened_service
from drive.settings import Settings


def upload_json(upload: Upload) -> dict[str, object]:
    return {
        "upload": upload.id,
        "id": upload.blob_id,
        "offset": upload.offset,
        "length": upload.length,
        "expires": upload.expires_at.isoformat().replace("+00:00", "Z"),
        "backend": upload.backend,
    }


def upload_line(upload: Upload) -> str:
    expires = upload.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{upload.id}  {upload.offset}/{upload.length}  expires {expires}  {escaped(upload.blob_id)}"


def run_uploads(args: argparse.Namespace) -> int:
    settings = load_settings(args.verbose)
    if args.action == "rm":
        if not args.upload:
            print("drive uploads rm: the UPLOAD to end is required", file=sys.stderr)
            return ExitCode.USAGE
        return anyio.run(_rm, args, settings)
    return anyio.run(_ls, args, settings)


async def _ls(args: argparse.Namespace, settings: Settings) -> int:
    async with opened_service(settings) as service:
        count = 0
        async for upload in service.uploads.all():
            if upload.completed:
                continue  # its blob is committed: the row only waits to expire
            if args.json:  # an array written item by item, as `drive ls --json`
                sys.stdout.write(f"{',' if count else '['}\n  {json_text(upload_json(upload))}")
            else:
                print(upload_line(upload))
            count += 1
        if args.json:
            print("\n]" if count else "[]")
    return ExitCode.OK


async def _rm(args: argparse.Namespace, settings: Settings) -> int:
    async with opened_service(settings) as service:
        await service.uploads.remove(args.upload)
    if args.json:
        print_json({"removed": args.upload})
    else:
        print(f"removed upload {args.upload}")
    return ExitCode.OK


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    uploads = commands.add_parser(
        "uploads",
        parents=[common],
        help="list resumable uploads in progress, or end one (uploads rm UPLOAD)",
        description="Without an action: every resumable (tus) upload with its blob id, offset, length and expiry. "
        "`rm UPLOAD` ends one: its staged bytes are removed (a committed blob stays).",
    )
    uploads.add_argument("action", nargs="?", choices=["rm"], help="rm: end the upload named next")
    uploads.add_argument("upload", nargs="?", help="the upload id (the last part of its URL)")
    uploads.add_argument("--json", action="store_true", help="print JSON")
    uploads.set_defaults(handler=run_uploads)
