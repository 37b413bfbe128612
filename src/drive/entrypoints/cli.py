"""The ``drive`` command line: the same container and use-cases as the HTTP API."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import anyio

from drive.container import Container
from drive.domain.errors import ConfigurationError, DriveError
from drive.settings import Settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = Settings.from_env()  # fail here, in one line, before any worker starts
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    anyio.run(_preflight)
    uvicorn.run(
        "drive.entrypoints.http.asgi:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level.lower(),
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
    parser = argparse.ArgumentParser(prog="drive", description="Drive: put bytes, get bytes.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument(
        "--graceful-timeout", type=float, default=30.0, help="seconds in-flight requests get on shutdown"
    )
    serve.set_defaults(handler=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigurationError as exc:
        print(f"drive: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
