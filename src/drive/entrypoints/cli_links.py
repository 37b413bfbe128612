"""``drive link``: a signed link made from ``SIGNING_KEYS`` alone, with no server and no store."""

from __future__ import annotations

import argparse
import re

from drive.domain.errors import ConfigurationError, InvalidRequest
from drive.entrypoints.cli_output import print_json
from drive.entrypoints.cli_runtime import ExitCode, about, container_for, load_settings
from drive.entrypoints.http.links import issued_body

_DURATION = re.compile(r"([0-9]{1,7})([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> int:
    """Seconds from ``90``, ``90s``, ``15m``, ``1h`` or ``7d``."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidRequest("--expires must look like 90, 90s, 15m, 1h or 7d")
    return int(match[1]) * _UNIT[match[2]]


def run_link(args: argparse.Namespace) -> int:
    settings = load_settings(args.verbose)
    if not settings.signing_keys:
        raise ConfigurationError("SIGNING_KEYS is not set: no key to sign the link with")
    links = container_for(settings).signed_links()
    with about(args.id):
        issued = links.issue(
            args.id,
            "PUT" if args.put else "GET",
            duration(args.expires),
            max_size=args.max_size,
            content_type=args.content_type,
        )
    body = issued_body(issued)
    url = args.base_url.rstrip("/") + body.url if args.base_url else body.url
    if args.json:
        print_json({"url": url, "method": body.method, "expires_at": body.expires_at})
    else:
        print(url)
    return ExitCode.OK


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    link = commands.add_parser(
        "link",
        parents=[common],
        help="print a signed link to GET (or PUT) one blob without a token",
        description=_HELP,
    )
    link.add_argument("id", help="the blob's id")
    link.add_argument("--put", action="store_true", help="a link to upload (PUT) instead of download (GET)")
    link.add_argument("--expires", default="1h", metavar="DURATION", help="90, 90s, 15m, 1h or 7d (default 1h)")
    link.add_argument("--base-url", metavar="URL", help="the service's URL, e.g. https://drive.example.com")
    link.add_argument("--max-size", type=int, metavar="BYTES", help="PUT links: the largest body accepted")
    link.add_argument("--content-type", metavar="TYPE", help="PUT links: the only Content-Type accepted")
    link.add_argument("--json", action="store_true", help="print url, method and expires_at as JSON")
    link.set_defaults(handler=run_link)


_HELP = (
    "Print a link that lets anyone holding it GET (or, with --put, PUT) blob ID until it expires, "
    "signed with the first key of SIGNING_KEYS, exactly as POST /v1/links would make it. Without "
    "--base-url the link is a path: prefix it with the service's URL."
)
