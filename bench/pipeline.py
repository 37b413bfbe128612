"""A large store's stages without HTTP: hashing and the fs write, each alone and together.

Feeds ``--size-mib`` of random 256 KiB chunks (what uvicorn hands a large raw ``PUT``) from
memory through the store's own pieces: ``Digesting`` (the blob's SHA-256 and its per-chunk
SHA-256s, offloaded as ``drive serve`` does), ``FilesystemBlobRepository.write`` (a temporary
directory under ``--dir``), and both chained as ``StoreBlob`` chains them. Beside them, in the
same run, hashlib's single-core SHA-256 rate. The rates tell which stage bounds a raw ``PUT``
once the socket is out of the way; the process CPU seconds tell what it costs the machine.

    .venv/bin/python bench/pipeline.py                      # 1 GiB, 3 rounds
    .venv/bin/python bench/pipeline.py --size-mib 256 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from floors import sha256_rate

from drive.adapters.concurrency import in_worker
from drive.adapters.fs import FilesystemBlobRepository
from drive.application.streams import Digesting
from drive.domain.storage_keys import new_storage_key

CHUNK = 256 * 1024
STAGES = ("hash", "write", "hash + write")


async def chunks(block: bytes, count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield bytes(block)  # a new object each time, as a server hands over
        await asyncio.sleep(0)


async def stage(name: str, directory: Path, size_mib: int) -> tuple[float, float]:
    """(MiB/s, process CPU seconds) of one stage over ``size_mib``."""
    block = os.urandom(CHUNK)
    count = size_mib * 1024 * 1024 // CHUNK
    repo = FilesystemBlobRepository(directory)
    await repo.open()
    started, cpu = time.perf_counter(), time.process_time()
    if name == "hash":
        await Digesting(chunks(block, count), offload=in_worker).drain()
    elif name == "write":
        await repo.write(new_storage_key(), chunks(block, count))
    else:
        await repo.write(new_storage_key(), Digesting(chunks(block, count), offload=in_worker))
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    await repo.close()
    return size_mib / seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the fs backend writes")
    opts = parser.parse_args()
    rates: dict[str, list[float]] = {name: [] for name in ("SHA-256, one core", *STAGES)}
    cpus: dict[str, list[float]] = {name: [] for name in STAGES}
    for _ in range(opts.rounds):
        rates["SHA-256, one core"].append(sha256_rate(opts.size_mib))
        for name in STAGES:
            directory = Path(tempfile.mkdtemp(prefix="drive-pipeline-", dir=opts.dir))
            try:
                rate, cpu = asyncio.run(stage(name, directory, opts.size_mib))
            finally:
                shutil.rmtree(directory, ignore_errors=True)
            rates[name].append(rate)
            cpus[name].append(cpu)
    print(f"{opts.size_mib} MiB in {CHUNK // 1024} KiB chunks, {opts.rounds} rounds, {os.cpu_count()} cores\n")
    print("| stage | MiB/s, median (all rounds) | process CPU s, median |")
    print("|---|---|---|")
    for name, values in rates.items():
        each = ", ".join(f"{v:,.0f}" for v in values)
        cpu = f"{statistics.median(cpus[name]):.2f}" if name in cpus else "—"
        print(f"| {name} | {statistics.median(values):,.0f} ({each}) | {cpu} |")


if __name__ == "__main__":
    main()
