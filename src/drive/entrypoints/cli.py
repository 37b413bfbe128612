"""The ``drive`` command line: the same container and use-cases as the HTTP API."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import anyio

from drive.container import Container
from drive.domain.errors import ConfigurationError, DriveError
from drive.entrypoints import cli_blobs, cli_db, cli_links, cli_ops, cli_uploads
from drive.entrypoints.cli_output import escaped
from drive.entrypoints.cli_runtime import ExitCode, exit_code_for
from drive.entrypoints.logs import configure_logging, settings_secrets
from drive.settings import Settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from drive.entrypoints.http.wire import WireLimitedProtocol

    settings = Settings.from_env()  # fail here, in one line, before any worker starts
    configure_logging(settings.log_level, settings_secrets(settings))  # JSON lines here too, as in every worker
    anyio.run(_preflight)
    uvicorn.run(
        "drive.entrypoints.http.asgi:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        # The stdlib loop: uvloop cuts FTPS data streams short (aioftp) and bypasses the
        # resolver hooks tests rely on; the measured gain was not worth either.
        loop="asyncio",
        # httptools, with the header size and time limits and the connection cap; it reads them
        # from the environment in each worker (see entrypoints/http/wire.py).
        http=WireLimitedProtocol,
        ws="none",  # no WebSocket routes: an upgrade is just a request
        timeout_keep_alive=settings.keepalive_timeout_seconds,  # type: ignore[arg-type]
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's loggers propagate to the JSON handler
        access_log=False,  # drive.access logs each request instead
        timeout_graceful_shutdown=args.graceful_timeout,
        proxy_headers=False,
        server_header=False,
    )
    return 0


async def _preflight() -> None:
    """Open the metadata store and every backend once, so a bad setting stops start-up in one line."""
    service = Container().service()
    try:
        await service.open()
    except DriveError as exc:
        raise ConfigurationError(exc.message) from None
    finally:
        await service.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drive",
        description="Drive: put bytes, get bytes. Every command reads the same environment settings as the server.",
        epilog="exit codes: 0 ok, 1 failed (not found, conflict, corrupt, problems found), "
        "2 usage or settings, 3 storage unavailable, 130 interrupted",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument(
        "--graceful-timeout", type=float, default=30.0, help="seconds in-flight requests get on shutdown"
    )
    serve.set_defaults(handler=_serve)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="show the service's log (LOG_LEVEL) on stderr")
    cli_blobs.add_commands(commands, common)
    cli_ops.add_commands(commands, common)
    cli_db.add_commands(commands, common)
    cli_links.add_commands(commands, common)
    cli_uploads.add_commands(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except DriveError as exc:  # expected failures: one line, no traceback
        print(f"drive: {escaped(exc.message)}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (drive get x | head): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.FAILED


if __name__ == "__main__":
    sys.exit(main())
