"""``drive migrate`` and ``drive fsck``: whole-store operations for operators."""

from __future__ import annotations

import argparse
import sys

import anyio

from drive.application.fsck import CheckReport
from drive.application.migrate import MigrationReport, MoveOutcome
from drive.domain.errors import ConfigurationError, DriveError
from drive.domain.model import BlobRecord
from drive.entrypoints.cli_output import counted, human_size, pending_json, print_json, quoted, record_json
from drive.entrypoints.cli_progress import TransferBar
from drive.entrypoints.cli_runtime import ExitCode, load_settings, opened_service, stderr_is_terminal
from drive.settings import BACKEND_NAMES, Settings

# -- migrate --------------------------------------------------------------------------


def run_migrate(args: argparse.Namespace) -> int:
    settings = load_settings(args.verbose)
    sources = _backend_list(args.sources) if args.sources else None
    # Naming a backend enables it for this run: its settings suffice, DRIVE_BACKENDS need not list it.
    named = {args.to, *(sources or [])}
    settings = settings.enabling(named)
    return anyio.run(_migrate, args, settings, sources)


async def _migrate(args: argparse.Namespace, settings: Settings, sources: list[str] | None) -> int:
    async with opened_service(settings) as service:
        migrate = service.migrate
        chosen = migrate.sources_for(args.to, sources)
        # Leftovers of an interrupted earlier run (copies, old bytes) whose lease has ended.
        await service.recover(sweep_orphans=False)
        plan = await migrate.plan(args.to, chosen, args.prefix)
        done = 0
        with TransferBar(_label(args.to, 0, plan.blobs), plan.bytes, enabled=stderr_is_terminal()) as bar:

            def on_blob(record: BlobRecord, outcome: MoveOutcome) -> None:
                nonlocal done
                done += 1
                bar.relabel(_label(args.to, done, plan.blobs))

            try:
                report = await migrate(
                    args.to,
                    chosen,
                    prefix=args.prefix,
                    concurrency=args.concurrency,
                    on_bytes=bar.advance,
                    on_blob=on_blob,
                )
            except DriveError as exc:
                raise type(exc)(
                    f"migration stopped after {done} of {plan.blobs} blobs (run it again to resume): {exc.message}"
                ) from None
    _print_migration(report, args.json)
    return ExitCode.OK if report.complete else ExitCode.FAILED


def _label(target: str, done: int, total: int) -> str:
    return f"to {target}: {done}/{total} blobs"


def _print_migration(report: MigrationReport, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "to": report.target,
                "from": report.sources,
                "moved": report.moved,
                "bytes_moved": report.bytes_moved,
                "skipped": report.skipped,
                "corrupt": report.corrupt,
                "missing": report.missing,
                "complete": report.complete,
            }
        )
    else:
        line = (
            f"moved {counted(report.moved, 'blob')} ({human_size(report.bytes_moved)}) "
            f"from {', '.join(report.sources) or 'nowhere'} to {report.target}"
        )
        if report.skipped:
            line += f"; {counted(report.skipped, 'blob')} changed meanwhile and left as they are"
        print(line)
    for blob_id in report.corrupt:
        print(f"drive: {quoted(blob_id)}: stored bytes do not match their checksum; not moved", file=sys.stderr)
    for blob_id in report.missing:
        print(f"drive: {quoted(blob_id)}: stored bytes are missing; not moved", file=sys.stderr)
    if not report.complete:
        print("drive: some blobs could not be moved; see `drive fsck`", file=sys.stderr)


def _backend_list(values: list[str]) -> list[str]:
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    for name in names:
        if name not in BACKEND_NAMES:
            raise ConfigurationError(f"--from names an unknown backend (known: {', '.join(BACKEND_NAMES)})")
    return names


# -- fsck -----------------------------------------------------------------------------


def run_fsck(args: argparse.Namespace) -> int:
    settings = load_settings(args.verbose)
    return anyio.run(_fsck, args, settings)


async def _fsck(args: argparse.Namespace, settings: Settings) -> int:
    async with opened_service(settings) as service:
        check = service.check
        shown = stderr_is_terminal() and not args.quick
        total = (await check.size())[1] if shown else None
        with TransferBar("verifying", total, enabled=shown) as bar:
            report = await check(repair=args.repair, verify=not args.quick, on_bytes=bar.advance)
    if args.json:
        print_json(_check_json(report))
    else:
        print("\n".join(_check_lines(report)))
    if report.unrepaired:
        hint = "" if report.repaired else " (drive fsck --repair fixes them)"
        if report.strangers:  # never removed by fsck: an operator decides
            hint = " (strangers are left alone: look at them, then remove them by hand)"
        print(f"drive: {counted(report.unrepaired, 'problem')} found{hint}", file=sys.stderr)
        return ExitCode.FAILED
    if not report.complete:
        names = ", ".join(report.unreachable_backends)
        print(f"drive: check incomplete: backend unreachable: {names}", file=sys.stderr)
        return ExitCode.UNAVAILABLE
    return ExitCode.OK


def _check_json(report: CheckReport) -> dict[str, object]:
    return {
        "blobs_checked": report.blobs_checked,
        "bytes_verified": report.bytes_verified,
        "interrupted": [pending_json(op) for op in report.interrupted],
        "orphans": [{"backend": b, "storage_key": k} for b, k in report.orphans],
        "missing": [record_json(r) for r in report.missing],
        "corrupt": [record_json(r) for r in report.corrupt],
        "damaged_chunks": {blob_id: list(chunks) for blob_id, chunks in report.damaged_chunks.items()},
        "without_digests": report.without_digests,
        "uploads_in_progress": [
            {"upload": u.id, "id": u.blob_id, "offset": u.offset, "length": u.length, "backend": u.backend}
            for u in report.uploads_in_progress
        ],
        "strangers": [{"backend": b, "name": n} for b, n in report.strangers],
        "unreachable_backends": report.unreachable_backends,
        "problems": report.problems,
        "repaired": report.repaired,
        "repairs": {
            "interrupted_removed": report.interrupted_removed,
            "orphans_removed": report.orphans_removed,
            "records_removed": report.records_removed,
            "digests_added": report.digests_added,
        },
        "unrepaired": report.unrepaired,
    }


def _chunks(report: CheckReport, blob_id: str) -> str:
    damaged = report.damaged_chunks.get(blob_id)
    if not damaged:
        return ""
    shown = ", ".join(str(i) for i in damaged[:10]) + (", ..." if len(damaged) > 10 else "")
    return f": damaged {'chunk' if len(damaged) == 1 else 'chunks'} {shown}"


def _check_lines(report: CheckReport) -> list[str]:
    lines = [f"checked {counted(report.blobs_checked, 'blob')} ({human_size(report.bytes_verified)} verified)"]
    lines += [
        f"interrupted {op.kind.value} of {quoted(op.blob_id)} on {op.backend} (key {op.storage_key})"
        for op in report.interrupted
    ]
    lines += [f"orphaned bytes on {backend} (key {key})" for backend, key in report.orphans]
    lines += [f"missing bytes of {quoted(r.id)} on {r.backend} (key {r.storage_key})" for r in report.missing]
    lines += [
        f"corrupt bytes of {quoted(r.id)} on {r.backend} (key {r.storage_key}){_chunks(report, r.id)}"
        for r in report.corrupt
    ]
    lines += [
        f"stranger on {backend}: {quoted(name)} (not made by drive; left alone)" for backend, name in report.strangers
    ]
    lines += [f"backend unreachable: {name}" for name in report.unreachable_backends]
    if report.uploads_in_progress:  # not a problem: their intents are live until they expire
        lines.append(
            f"{counted(len(report.uploads_in_progress), 'resumable upload')} in progress (drive uploads lists them)"
        )
    if report.digests_added:
        lines.append(f"added chunk digests to {counted(report.digests_added, 'blob')} stored before them")
    elif report.without_digests:
        hint = "" if report.repaired else " (drive fsck --repair adds them)"
        lines.append(f"{counted(report.without_digests, 'blob')} without chunk digests: ranges read them whole{hint}")
    if not report.problems:
        lines.append("no problems found")
    elif report.repaired:
        lines.append(
            f"repaired: {counted(report.interrupted_removed, 'interrupted operation')} finished, "
            f"{counted(report.orphans_removed, 'orphan')} removed, "
            f"{counted(len(report.records_removed), 'broken blob')} forgotten"
        )
    return lines


# -- parsers --------------------------------------------------------------------------


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    migrate = commands.add_parser(
        "migrate", parents=[common], help="move blobs between backends", description=_MIGRATE_HELP
    )
    migrate.add_argument("--to", required=True, choices=BACKEND_NAMES, help="backend to move blobs to")
    migrate.add_argument(
        "--from",
        dest="sources",
        action="append",
        metavar="BACKEND",
        help="backend to move blobs from (repeat or comma-separate; default: every other configured backend)",
    )
    migrate.add_argument("--prefix", default="", help="only blobs whose id starts with PREFIX")
    migrate.add_argument(
        "--concurrency", type=_positive, default=4, metavar="N", help="blobs moved at the same time (default 4)"
    )
    migrate.add_argument("--json", action="store_true", help="print the outcome as JSON")
    migrate.set_defaults(handler=run_migrate)

    fsck = commands.add_parser(
        "fsck", parents=[common], help="check metadata against stored bytes", description=_FSCK_HELP
    )
    fsck.add_argument("--repair", action="store_true", help="fix what is found (see the description)")
    fsck.add_argument("--quick", action="store_true", help="do not read blobs: skip checksum verification")
    fsck.add_argument("--json", action="store_true", help="print the report as JSON")
    fsck.set_defaults(handler=run_fsck)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


_MIGRATE_HELP = (
    "Move blobs to another backend. A backend named with --to or --from is enabled for the run "
    "(its settings must be set; DRIVE_BACKENDS need not list it). Each move copies the bytes, "
    "verifies their SHA-256, switches the metadata, then deletes the old bytes, so a crash never "
    "loses a blob; run the command again to resume an interrupted migration."
)
_FSCK_HELP = (
    "Report interrupted operations, orphaned bytes, missing bytes, checksum mismatches and strangers; "
    "exit 1 if any is left unrepaired. --repair finishes interrupted operations, removes "
    "orphans, and forgets blobs whose bytes are missing or corrupt (their ids then answer "
    "not found and can be stored again). Strangers (names drive could not have made) are "
    "reported and never touched: remove them by hand."
)
