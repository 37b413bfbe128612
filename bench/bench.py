"""Drive benchmark: raw 1 GiB throughput with the server's memory, JSON memory, small-blob rates.

Starts ``drive serve`` on the embedded default (fs + SQLite) in a temporary directory
on 127.0.0.1, drives it with httpx, samples the server's resident memory from /proc,
and prints a Markdown report. Bounded: a fixed number of requests, then it stops.

    .venv/bin/python bench/bench.py [--size-mib 1024] [--small 2000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx

TOKEN = "bench-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MIB = 1024 * 1024


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    """Samples a process's RSS every 20 ms in a thread; ``peak`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self.peak = rss_mib(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def start_server(root: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AUTH_BEARER_TOKEN": TOKEN, "LOG_LEVEL": "WARNING", "MAX_JSON_BLOB_SIZE": str(64 * MIB)}
    process = subprocess.Popen(
        [sys.executable, "-m", "drive", "serve", "--port", str(port)],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("server did not start")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raw_round_trip(url: str, pid: int, size: int) -> list[str]:
    block = os.urandom(MIB)
    blocks = size // MIB

    def body() -> Iterator[bytes]:
        for _ in range(blocks):
            yield block

    expected = hashlib.sha256()
    for _ in range(blocks):
        expected.update(block)
    rows = []
    with httpx.Client(base_url=url, headers=AUTH, timeout=600) as client:
        base = rss_mib(pid)
        with PeakRss(pid) as peak:
            started = time.perf_counter()
            response = client.put("/v1/blobs/bench/raw", content=body())
            elapsed = time.perf_counter() - started
        assert response.status_code == 201, response.text
        assert response.json()["sha256"] == expected.hexdigest()
        rows.append(row(f"raw PUT {size // MIB} MiB", size / MIB / elapsed, elapsed, base, peak.peak))

        base = rss_mib(pid)
        digest = hashlib.sha256()
        with PeakRss(pid) as peak:
            started = time.perf_counter()
            with client.stream("GET", "/v1/blobs/bench/raw", headers={"Accept": "application/octet-stream"}) as r:
                for chunk in r.iter_bytes(MIB):
                    digest.update(chunk)
            elapsed = time.perf_counter() - started
        assert digest.hexdigest() == expected.hexdigest()
        rows.append(row(f"raw GET {size // MIB} MiB", size / MIB / elapsed, elapsed, base, peak.peak))
    return rows


def json_round_trip(url: str, pid: int, size: int) -> list[str]:
    payload = os.urandom(size)
    encoded = base64.b64encode(payload).decode()
    rows = []
    with httpx.Client(base_url=url, headers=AUTH, timeout=600) as client:
        base = rss_mib(pid)
        with PeakRss(pid) as peak:
            started = time.perf_counter()
            response = client.post("/v1/blobs", json={"id": "bench/json", "data": encoded})
            elapsed = time.perf_counter() - started
        assert response.status_code == 201, response.text
        rows.append(row(f"JSON POST {size // MIB} MiB", size / MIB / elapsed, elapsed, base, peak.peak, size))
        base = rss_mib(pid)
        with PeakRss(pid) as peak:
            started = time.perf_counter()
            fetched = client.get("/v1/blobs/bench/json").json()
            elapsed = time.perf_counter() - started
        assert fetched["data"] == encoded
        rows.append(row(f"JSON GET {size // MIB} MiB", size / MIB / elapsed, elapsed, base, peak.peak, size))
    return rows


def row(name: str, mib_s: float, seconds: float, base: float, peak: float, blob: int | None = None) -> str:
    growth = peak - base
    multiple = f" ({growth * MIB / blob:.1f}x blob)" if blob else ""
    return f"| {name} | {mib_s:,.0f} MiB/s | {seconds:.2f} s | {base:.0f} MiB | {growth:+.0f} MiB{multiple} |"


async def small_blobs(url: str, count: int, concurrency: int) -> list[str]:
    data = base64.b64encode(os.urandom(1024)).decode()
    limiter = anyio.CapacityLimiter(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    rows = []
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60, limits=limits) as client:

        async def post(n: int) -> None:
            async with limiter:
                response = await client.post("/v1/blobs", json={"id": f"small/{n}", "data": data})
                assert response.status_code == 201, response.text

        async def get(n: int) -> None:
            async with limiter:
                assert (await client.get(f"/v1/blobs/small/{n}")).status_code == 200

        for name, call in (("POST 1 KiB (JSON)", post), ("GET 1 KiB (JSON)", get)):
            started = time.perf_counter()
            async with anyio.create_task_group() as tasks:
                for n in range(count):
                    tasks.start_soon(call, n)
            elapsed = time.perf_counter() - started
            rows.append(f"| {name} | {count / elapsed:,.0f} req/s | {count} requests, {concurrency} concurrent |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="raw blob size (MiB)")
    parser.add_argument("--json-mib", type=int, default=32, help="JSON blob size (MiB)")
    parser.add_argument("--small", type=int, default=2000, help="small-blob requests per kind")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="drive-bench-") as tmp:
        port = free_port()
        server = start_server(Path(tmp), port)
        url = f"http://127.0.0.1:{port}"
        try:
            print(f"Drive benchmark: fs + SQLite, 1 worker, {os.cpu_count()} cores, Python {sys.version.split()[0]}\n")
            print("| transfer | throughput | time | server RSS before | server RSS growth (peak) |")
            print("|---|---|---|---|---|")
            for line in raw_round_trip(url, server.pid, args.size_mib * MIB):
                print(line)
            for line in json_round_trip(url, server.pid, args.json_mib * MIB):
                print(line)
            print("\n| small blobs | rate | load |\n|---|---|---|")
            for line in anyio.run(small_blobs, url, args.small, args.concurrency):
                print(line)
        finally:
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
