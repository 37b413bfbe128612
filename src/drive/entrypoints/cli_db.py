"""``drive db upgrade`` and ``drive db current``: the SQL stores' schema revisions."""

from __future__ import annotations

import argparse
from typing import Protocol

import anyio
from dependency_injector import providers

from drive.container import Container
from drive.entrypoints.cli_output import print_json
from drive.entrypoints.cli_runtime import ExitCode, load_settings
from drive.settings import Settings


class Migrations(Protocol):
    """What the container's ``schema`` provider gives: revisions per store ("metadata", "blobs")."""

    def heads(self) -> dict[str, str]: ...

    async def upgrade(self) -> None: ...

    async def current(self) -> dict[str, str | None]: ...


def _migrations(settings: Settings) -> Migrations:
    container = Container()
    container.settings.override(providers.Object(settings))
    return container.schema()


def run_upgrade(args: argparse.Namespace) -> int:
    migrations = _migrations(load_settings(args.verbose))
    anyio.run(migrations.upgrade)
    return _report(migrations.heads(), anyio.run(migrations.current), args.json)


def run_current(args: argparse.Namespace) -> int:
    migrations = _migrations(load_settings(args.verbose))
    return _report(migrations.heads(), anyio.run(migrations.current), args.json)


def _report(heads: dict[str, str], current: dict[str, str | None], as_json: bool) -> int:
    if as_json:
        print_json({store: {"revision": revision, "head": heads[store]} for store, revision in current.items()})
    else:
        for store, revision in current.items():
            state = "at head" if revision == heads[store] else f"head is {heads[store]}: run drive db upgrade"
            print(f"{store:<9} {revision or 'none':<6} {state}")
    return ExitCode.OK


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    db = commands.add_parser("db", help="schema of the SQL stores", description=_DB_HELP)
    actions = db.add_subparsers(dest="db_command", required=True)
    for name, handler, text in (
        ("upgrade", run_upgrade, "bring every SQL store's schema to this release's revision"),
        ("current", run_current, "show each SQL store's schema revision"),
    ):
        action = actions.add_parser(name, parents=[common], help=text, description=text)
        action.add_argument("--json", action="store_true", help="print the revisions as JSON")
        action.set_defaults(handler=handler)


_DB_HELP = (
    "The metadata store (DATABASE_URL) and, when the db backend is in use, its tables "
    "(BLOB_DATABASE_URL, or DATABASE_URL) carry a schema revision. Servers upgrade it "
    "themselves when they start, one at a time; `drive db upgrade` does it ahead of a "
    "deployment, `drive db current` shows where each store stands."
)
