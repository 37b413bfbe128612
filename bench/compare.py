"""Drive against the ceiling, in one run: each small-request workload's rate, p99 and ratio.

Starts the ceiling (bench/ceiling.py: a bare Litestar app on ``drive serve``'s server and
settings) and Drive (``drive serve`` on fs + SQLite in a temporary directory, or fs +
PostgreSQL with ``--metadata``), each on a free 127.0.0.1 port, seeds a 1 KiB blob, then
runs wrk (the Debian package) against them alternately: the ceiling's ``GET``, then one
Drive workload, and so on, so both see the same machine load. Prints a Markdown table.

    .venv/bin/python bench/compare.py                       # fs + SQLite, uvicorn
    .venv/bin/python bench/compare.py --metadata postgresql://postgres@127.0.0.1:5432
    .venv/bin/python bench/compare.py --server granian      # both apps under granian
    .venv/bin/python bench/compare.py --only get-json,head --duration 5

Ratios are to the ceiling measured just before (its ``GET``; its ``HEAD`` for ``HEAD``,
through bench/headload.c since wrk cannot do HEAD); they are what to compare
between runs on a shared machine, not the absolute rates.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import SERVERS, ceiling_command, drive_command

BENCH = Path(__file__).resolve().parent
TOKEN = "bench-token-" + "0123456789abcdef"  # 16+ characters, as the contract wants
BLOB = "bench/a"
RAW = "application/octet-stream"


@dataclass(frozen=True)
class Workload:
    name: str
    label: str
    args: tuple[str, ...]  # wrk arguments before the URL; {etag} and {run} are filled in
    path: str = f"/v1/blobs/{BLOB}"
    script_args: tuple[str, ...] = ()


WORKLOADS = (
    Workload("get-json", "`GET` 1 KiB, JSON", ()),
    Workload("get-raw", "`GET` 1 KiB, raw", ("-H", f"Accept: {RAW}")),
    Workload("head", "`HEAD` (C client; ceiling `HEAD`)", ()),
    Workload("304", "`GET` + `If-None-Match` (304)", ("-H", f"Accept: {RAW}", "-H", "If-None-Match: {etag}")),
    Workload("post", "`POST` 1 KiB JSON, new id each", ("-s", str(BENCH / "writes.lua")), "", ("post", "{run}")),
    Workload("put", "`PUT` 1 KiB raw, new id each", ("-s", str(BENCH / "writes.lua")), "", ("put", "{run}")),
)


@dataclass(frozen=True)
class Result:
    rate: float
    p99_ms: float
    bad: int  # non-2xx/3xx answers plus socket errors
    requests: int = 0
    cpu_us: float = 0.0  # the server's CPU time (user + system, all its processes) per request


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its children (uvicorn's workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat.parent.name) == pid or int(fields[1]) == pid:  # fields[1] is the parent's pid
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def measured(pid: int, run: Callable[[], Result]) -> Result:
    """``run``'s result with the server's CPU time per request: steadier than rates on a shared machine."""
    before = cpu_seconds(pid)
    result = run()
    used = cpu_seconds(pid) - before
    return replace(result, cpu_us=used / max(result.requests, 1) * 1e6)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}: {' '.join(map(str, process.args))}")  # type: ignore[arg-type]
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer in {seconds:.0f} s")


@contextmanager
def running(command: list[str], ready_url: str, env: dict[str, str], cwd: Path, log: Path) -> Iterator[int]:
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=out)
        try:
            wait_ready(ready_url, process)
            yield process.pid
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


TABLE_HEAD = (
    "| workload | ceiling req/s | ceiling p99 | Drive req/s | Drive p99 | ratio"
    " | CPU per request: ceiling / Drive | bad answers |\n|---|---|---|---|---|---|---|---|"
)

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> Result:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    if rate is None or p99 is None:
        raise SystemExit(f"cannot read wrk's output:\n{output}")
    bad = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if errors:
        bad += sum(int(n) for n in errors.groups())
    total = re.search(r"(\d+) requests in", output)
    requests = int(total.group(1)) if total else 0
    return Result(float(rate.group(1)), float(p99.group(1)) * _UNITS[p99.group(2)], bad, requests)


def build_headload(tmp: Path) -> Path:
    """bench/headload.c: wrk hangs on HEAD answers (it waits for the announced body)."""
    binary = tmp / "headload"
    subprocess.run(["cc", "-O2", "-pthread", "-o", str(binary), str(BENCH / "headload.c")], check=True)
    return binary


def headload(binary: Path, url: str, headers: list[str], opts: argparse.Namespace) -> Result:
    parts = urlsplit(url)
    command = [str(binary), "127.0.0.1", str(parts.port), parts.path, str(opts.connections), str(opts.duration)]
    done = subprocess.run([*command, *headers], capture_output=True, text=True, check=True)
    return parse_wrk(done.stdout)


def wrk(url: str, args: list[str], script_args: list[str], opts: argparse.Namespace) -> Result:
    command = ["wrk", f"-t{opts.threads}", f"-c{opts.connections}", f"-d{opts.duration}s", "--latency", *args, url]
    if script_args:
        command += ["--", *script_args]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return parse_wrk(done.stdout)


def row(label: str, top: Result, ours: Result) -> str:
    return (
        f"| {label} | {top.rate:,.0f} | {top.p99_ms:.1f} ms | {ours.rate:,.0f} | "
        f"{ours.p99_ms:.1f} ms | {ours.rate / top.rate:.0%} | {top.cpu_us:.0f} / {ours.cpu_us:.0f} µs "
        f"({top.cpu_us / max(ours.cpu_us, 1e-9):.0%}) | {ours.bad + top.bad} |"
    )


def seed(base: str) -> str:
    """Store the 1 KiB blob every read workload fetches; returns its ETag."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": RAW}
    response = httpx.put(f"{base}/v1/blobs/{BLOB}", content=os.urandom(1024), headers=headers, timeout=30)
    response.raise_for_status()
    return response.headers["etag"]


@contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A fresh database on the server named by ``server_url``, dropped afterwards."""
    import asyncpg

    name = f"drive_bench_{secrets.token_hex(4)}"
    admin = re.sub(r"^postgres(ql)?(\+asyncpg)?://", "postgresql://", server_url)
    admin = re.sub(r"(//[^/]*)(/.*)?$", r"\1/postgres", admin)

    async def run(statement: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield re.sub(r"/postgres$", f"/{name}", admin)
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def drive_env(tmp: Path, metadata: str | None, log_level: str) -> dict[str, str]:
    env = {
        **os.environ,
        "AUTH_BEARER_TOKEN": TOKEN,
        "LOG_LEVEL": log_level,
        "FS_BASE_PATH": str(tmp / "blobs"),
        "DATABASE_URL": metadata or f"sqlite:///{tmp / 'metadata.db'}",
    }
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=SERVERS, default="uvicorn", help="serve both apps with this server")
    parser.add_argument("--metadata", help="postgresql://user@host:port: fs + PostgreSQL (a fresh database)")
    parser.add_argument("--only", help="comma-separated workloads: " + ",".join(w.name for w in WORKLOADS))
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1, help="repeat the whole alternation")
    parser.add_argument("--log-level", default="INFO", help="Drive's LOG_LEVEL (INFO, the default, logs each request)")
    parser.add_argument("--keep", action="store_true", help="leave the temporary directory (server logs)")
    opts = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    chosen = [w for w in WORKLOADS if opts.only is None or w.name in opts.only.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="drive-compare-"))
    try:
        head_client = build_headload(tmp)
        with contextmanager_or_none(opts.metadata) as metadata:
            ceiling_port, drive_port = free_port(), free_port()
            ceiling = f"http://127.0.0.1:{ceiling_port}"
            drive = f"http://127.0.0.1:{drive_port}"
            env = drive_env(tmp, metadata, opts.log_level)
            with (
                running(
                    ceiling_command(opts.server, ceiling_port), ceiling, dict(os.environ), tmp, tmp / "ceiling.log"
                ) as ceiling_pid,
                running(
                    drive_command(opts.server, drive_port), f"{drive}/healthz", env, tmp, tmp / "drive.log"
                ) as drive_pid,
            ):
                etag = seed(drive)
                store = "fs + PostgreSQL" if opts.metadata else "fs + SQLite"
                print(
                    f"Drive vs ceiling: {opts.server}, 1 worker, {store}, LOG_LEVEL={opts.log_level}, "
                    f"wrk -t{opts.threads} -c{opts.connections} -d{opts.duration}s, {os.cpu_count()} cores, "
                    f"Python {sys.version.split()[0]}\n"
                )
                print(TABLE_HEAD)
                auth = ["-H", f"Authorization: Bearer {TOKEN}"]
                results: dict[str, list[tuple[Result, Result]]] = {w.name: [] for w in chosen}
                for round_no in range(opts.rounds):
                    for workload in chosen:
                        if workload.name == "head":
                            top = measured(
                                ceiling_pid, partial(headload, head_client, f"{ceiling}/v1/blobs/{BLOB}", [], opts)
                            )
                            ours = measured(
                                drive_pid, partial(headload, head_client, f"{drive}{workload.path}", [auth[1]], opts)
                            )
                        else:
                            top = measured(ceiling_pid, partial(wrk, f"{ceiling}/v1/blobs/{BLOB}", [], [], opts))
                            args = [a.replace("{etag}", etag) for a in workload.args]
                            run = f"{os.getpid()}r{round_no}"
                            script_args = [a.replace("{run}", run) for a in workload.script_args]
                            path = f"{drive}{workload.path}"
                            ours = measured(drive_pid, partial(wrk, path, [*auth, *args], script_args, opts))
                        results[workload.name].append((top, ours))
                        print(row(workload.label, top, ours), flush=True)
                if opts.rounds > 1:
                    print(f"\nMedian of {opts.rounds} rounds (by ratio):\n")
                    print(TABLE_HEAD)
                    for workload in chosen:
                        pairs = sorted(results[workload.name], key=lambda pair: pair[1].rate / pair[0].rate)
                        print(row(workload.label, *pairs[len(pairs) // 2]))
    finally:
        if opts.keep:
            print(f"\nlogs and data kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def contextmanager_or_none(metadata: str | None) -> Iterator[str | None]:
    if metadata is None:
        yield None
        return
    with postgres_database(metadata) as url:
        yield url


if __name__ == "__main__":
    main()
