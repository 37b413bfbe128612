"""The physical floors under Drive's rates, measured on this machine's disk and CPU.

- 16 threads, each storing 1 KiB files as fs does: write, fsync, rename, directory fsync;
- SQLite in WAL mode with ``synchronous=FULL``: single-row commits per second, and rows
  per second in transactions of 10;
- sequential write with one fsync at the end (as ``dd bs=1M conv=fsync``);
- ``hashlib.sha256`` on one core;
- with ``--metadata postgresql://...``: PostgreSQL single-row commits (16 connections)
  and rows in transactions of 10, on a fresh database dropped afterwards.

    .venv/bin/python bench/floors.py [--dir DIR] [--seconds 3] [--metadata postgresql://postgres@127.0.0.1:5432]

Everything runs in a temporary directory under ``--dir`` (default: the system's), which
should be on the disk Drive stores to.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import postgres_database

KIB = 1024
MIB = 1024 * 1024


def fsynced_files(root: Path, seconds: float, threads: int = 16) -> float:
    """Files per second, stored as the fs backend does (staging write + fsync, rename, dir fsync)."""
    staging, objects = root / "staging", root / "objects"
    staging.mkdir(parents=True)
    objects.mkdir(parents=True)
    payload = os.urandom(KIB)
    counts = [0] * threads
    deadline = time.perf_counter() + seconds

    def worker(n: int) -> None:
        shard = objects / f"{n:02x}"
        shard.mkdir()
        while time.perf_counter() < deadline:
            name = f"{n}-{counts[n]}"
            with open(staging / name, "xb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(staging / name, shard / name)
            fd = os.open(shard, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            counts[n] += 1

    started = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def sqlite_commits(path: Path, seconds: float, batch: int) -> float:
    """Rows per second committed in transactions of ``batch`` rows (WAL, synchronous=FULL)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (id TEXT PRIMARY KEY, size INTEGER, sha256 TEXT)")
    rows = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        conn.execute("BEGIN")
        for _ in range(batch):
            conn.execute("INSERT INTO t VALUES (?, ?, ?)", (f"{batch}-{rows}", 1024, "0" * 64))
            rows += 1
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return rows / elapsed


def sequential_write(path: Path, mib: int) -> float:
    """MB/s (10^6 bytes) writing ``mib`` MiB in 1 MiB blocks with one fsync at the end."""
    block = os.urandom(MIB)
    started = time.perf_counter()
    with open(path, "wb") as handle:
        for _ in range(mib):
            handle.write(block)
        handle.flush()
        os.fsync(handle.fileno())
    elapsed = time.perf_counter() - started
    path.unlink()
    return mib * MIB / elapsed / 1e6


def sha256_rate(mib: int) -> float:
    block = os.urandom(MIB)
    digest = hashlib.sha256()
    started = time.perf_counter()
    for _ in range(mib):
        digest.update(block)
    return mib / (time.perf_counter() - started)


async def postgres_commits(url: str, seconds: float, batch: int, connections: int) -> float:
    import asyncpg

    setup = await asyncpg.connect(url)
    await setup.execute("CREATE TABLE IF NOT EXISTS t (id TEXT PRIMARY KEY, size BIGINT, sha256 TEXT)")
    await setup.close()
    rows = [0] * connections
    deadline = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        conn = await asyncpg.connect(url)
        try:
            insert = await conn.prepare("INSERT INTO t VALUES ($1, $2, $3)")
            while time.perf_counter() < deadline:
                async with conn.transaction():
                    for _ in range(batch):
                        await insert.fetch(f"{batch}-{n}-{rows[n]}", 1024, "0" * 64)
                        rows[n] += 1
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(connections)))
    return sum(rows) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="where to write (default: the system's temporary directory)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per rate measurement")
    parser.add_argument("--write-mib", type=int, default=512, help="size of the sequential write")
    parser.add_argument("--hash-mib", type=int, default=1024, help="bytes to hash")
    parser.add_argument("--metadata", help="postgresql://user@host:port: also measure PostgreSQL commits")
    opts = parser.parse_args()
    print(f"Physical floors: {os.cpu_count()} cores, Python {sys.version.split()[0]}\n")
    print("| floor | rate |\n|---|---|")
    with tempfile.TemporaryDirectory(prefix="drive-floors-", dir=opts.dir) as tmp:
        root = Path(tmp)
        files = fsynced_files(root / "fs", opts.seconds)
        print(f"| 16 threads: write + fsync + rename + dir fsync, 1 KiB files | {files:,.0f} files/s |", flush=True)
        single = sqlite_commits(root / "one.db", opts.seconds, 1)
        print(f"| SQLite WAL, synchronous=FULL, one row per commit | {single:,.0f} commits/s |", flush=True)
        batched = sqlite_commits(root / "ten.db", opts.seconds, 10)
        print(f"| SQLite WAL, synchronous=FULL, 10 rows per commit | {batched:,.0f} rows/s |", flush=True)
        mb_s = sequential_write(root / "big", opts.write_mib)
        print(
            f"| sequential write, 1 MiB blocks, one fsync ({opts.write_mib} MiB, as dd conv=fsync) "
            f"| {mb_s:,.0f} MB/s |",
            flush=True,
        )
    print(f"| hashlib.sha256, one core | {sha256_rate(opts.hash_mib):,.0f} MiB/s |", flush=True)
    if opts.metadata:
        with postgres_database(opts.metadata) as url:
            single = asyncio.run(postgres_commits(url, opts.seconds, 1, 16))
            print(f"| PostgreSQL, 16 connections, one row per commit | {single:,.0f} commits/s |", flush=True)
            batched = asyncio.run(postgres_commits(url, opts.seconds, 10, 16))
            print(f"| PostgreSQL, 16 connections, 10 rows per commit | {batched:,.0f} rows/s |", flush=True)


if __name__ == "__main__":
    main()
