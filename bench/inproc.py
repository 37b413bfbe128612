"""The application's own cost per small request, without sockets: Drive's ASGI app against the ceiling's.

Calls each app's ASGI callable directly (no server, no network, no load generator) with a
1 KiB-blob request, many times, and prints the best per-request CPU time (the process's, all
threads) of several runs. The machine's load and the kernel's scheduling mostly drop out, so a
change to the request path shows up here as a steady number long before wrk can tell it from noise.
Drive runs on fs + SQLite in a temporary directory with ``LOG_LEVEL`` as given (INFO: one
access line per request, written to /dev/null).

    .venv/bin/python bench/inproc.py                     # JSON GET, raw GET, HEAD, 304, POST, PUT
    .venv/bin/python bench/inproc.py --only get-json --profile 20   # and a cProfile of Drive's GET

``--profile N`` prints the N costliest functions (cumulative) for each Drive workload.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

TOKEN = "bench-token-" + "0123456789abcdef"
BLOB = "bench/a"
BODY = os.urandom(1024)

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
App = Callable[[dict[str, Any], Receive, Callable[[Message], Awaitable[None]]], Awaitable[None]]


def scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def call(app: App, request: dict[str, Any], body: bytes = b"") -> int:
    status = 0
    sent = False
    done = asyncio.Event()

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()  # as a server does: a disconnect only once the answer is out
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif not message.get("more_body", False):
            done.set()

    await app(dict(request), receive, send)
    return status


@dataclass(frozen=True)
class Workload:
    name: str
    method: str
    headers: list[tuple[bytes, bytes]]
    body: Callable[[int], bytes]


def workloads(etag: bytes) -> list[Workload]:
    raw = (b"accept", b"application/octet-stream")
    return [
        Workload("get-json", "GET", [], lambda i: b""),
        Workload("get-raw", "GET", [raw], lambda i: b""),
        Workload("head", "HEAD", [], lambda i: b""),
        Workload("304", "GET", [raw, (b"if-none-match", etag)], lambda i: b""),
        Workload("put", "PUT", [(b"content-type", b"application/octet-stream")], lambda i: BODY),
    ]


_fresh = itertools.count()  # a new id for every store, across runs


def flush_logs() -> None:
    from drive.entrypoints.logs import flush_logs as flush

    flush()


async def timed(app: App, workload: Workload, auth: list[tuple[bytes, bytes]], count: int, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.process_time()
        for i in range(count):
            path = f"/v1/blobs/{BLOB}" if workload.method != "PUT" else f"/v1/blobs/w{next(_fresh)}"
            body = workload.body(i)
            headers = [*auth, *workload.headers]
            if body:
                headers.append((b"content-length", str(len(body)).encode()))
            status = await call(app, scope(workload.method, path, headers), body)
            if status >= 400:
                raise SystemExit(f"{workload.name}: status {status}")
        # Access lines wait for a loop timer this loop never reaches: format and write them
        # within the run, or their cost would fall outside it.
        flush_logs()
        best = min(best, (time.process_time() - started) / count)
    return best


async def main_async(opts: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="drive-inproc-"))
    os.environ.update(
        {
            "AUTH_BEARER_TOKEN": TOKEN,
            "STORAGE": "fs",
            "FS_BASE_PATH": str(tmp / "blobs"),
            "DATABASE_URL": f"sqlite:///{tmp / 'metadata.db'}",
            "LOG_LEVEL": opts.log_level,
        }
    )
    if opts.quiet:
        sys.stderr = open(os.devnull, "w")  # noqa: ASYNC230, SIM115 - once, before any request
    from ceiling import app as ceiling_app

    from drive.entrypoints.http.app import create_app

    drive_app = create_app()
    async with drive_app.lifespan():
        auth = [(b"authorization", f"Bearer {TOKEN}".encode())]
        put = scope("PUT", f"/v1/blobs/{BLOB}", [*auth, (b"content-length", b"1024")])
        await call(drive_app, put, BODY)  # type: ignore[arg-type]
        import hashlib

        etag = f'"{hashlib.sha256(BODY).hexdigest()}"'.encode()
        ceiling = await timed(ceiling_app, Workload("ceiling", "GET", [], lambda i: b""), [], opts.count, opts.runs)  # type: ignore[arg-type]
        print(f"ceiling GET: {ceiling * 1e6:.1f} µs per request", file=sys.__stdout__)
        for workload in workloads(etag):
            if opts.only and workload.name not in opts.only.split(","):
                continue
            ours = await timed(drive_app, workload, auth, opts.count, opts.runs)  # type: ignore[arg-type]
            print(
                f"Drive {workload.name}: {ours * 1e6:.1f} µs per request ({ceiling / ours:.0%} of the ceiling's rate)",
                file=sys.__stdout__,
            )
            if opts.profile:
                profiler = cProfile.Profile()
                profiler.enable()
                await timed(drive_app, workload, auth, opts.count, 1)  # type: ignore[arg-type]
                profiler.disable()
                stats = pstats.Stats(profiler, stream=sys.__stdout__)
                stats.sort_stats("cumulative").print_stats(opts.profile)
                if opts.dump:
                    stats.dump_stats(opts.dump)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="requests per run")
    parser.add_argument("--runs", type=int, default=5, help="runs per workload (the best is kept)")
    parser.add_argument("--only", help="comma-separated: get-json,get-raw,head,304,put")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--dump", help="also write the cProfile stats to this file")
    parser.add_argument("--quiet", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--profile", type=int, default=0, help="print this many functions of a cProfile run")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
