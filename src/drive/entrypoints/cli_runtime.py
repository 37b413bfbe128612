"""What every data sub-command shares: settings, the opened service, exit codes, logging."""

from __future__ import annotations

import contextlib
import enum
import os
import sys
from collections.abc import AsyncIterator, Iterator

import anyio
from dependency_injector import providers

from drive.application.service import DriveService
from drive.container import Container
from drive.domain.errors import (
    ConfigurationError,
    CorruptBlob,
    DriveError,
    InvalidId,
    InvalidRequest,
    StorageUnavailable,
)
from drive.entrypoints.cli_output import quoted
from drive.entrypoints.logs import configure_command_logging
from drive.settings import Settings

# Tokens guard the HTTP API. The command line reads the stores directly, so it needs
# none; this stands in for a missing one so the rest of the settings load as for `serve`.
_NO_TOKEN = "command-line-needs-no-token"  # noqa: S105 - a placeholder, never checked


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1  # not found, conflict, corrupt blob, local file error, problems found
    USAGE = 2  # bad arguments or settings
    UNAVAILABLE = 3  # metadata store or a backend unreachable or failing: retrying may help
    INTERRUPTED = 130


class LocalFileError(DriveError):
    """A file or stream on this machine (not in the store) cannot be read or written."""

    code = "local_file"


def exit_code_for(exc: DriveError) -> ExitCode:
    if isinstance(exc, ConfigurationError | InvalidId | InvalidRequest):
        return ExitCode.USAGE
    if isinstance(exc, CorruptBlob):  # retrying will not help: the stored bytes are bad
        return ExitCode.FAILED
    if isinstance(exc, StorageUnavailable):
        return ExitCode.UNAVAILABLE
    return ExitCode.FAILED


@contextlib.contextmanager
def about(blob_id: str) -> Iterator[None]:
    """Prefix the message of a failure with the id it concerns."""
    try:
        yield
    except DriveError as exc:
        raise type(exc)(f"{quoted(blob_id)}: {exc.message}") from None


def load_settings(verbose: bool = False) -> Settings:
    """The server's settings from the environment (a token is not required here)."""
    env = dict(os.environ)
    if not (env.get("AUTH_BEARER_TOKEN", "").strip() or env.get("AUTH_TOKENS", "").strip()):
        env["AUTH_BEARER_TOKEN"] = _NO_TOKEN
    settings = Settings.from_env(env)
    configure_command_logging(settings, verbose)
    return settings


def container_for(settings: Settings) -> Container:
    container = Container()
    container.settings.override(providers.Object(settings))
    return container


@contextlib.asynccontextmanager
async def opened_service(settings: Settings) -> AsyncIterator[DriveService]:
    """The same container and service as the HTTP API, opened for one command."""
    service = container_for(settings).service()
    try:
        await service.open()
        yield service
    finally:
        with anyio.CancelScope(shield=True):
            await service.close()


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
