"""Large transfers against their physical floors, in one run, with curl as the client.

Measures on this machine, right before Drive: the ``dd conv=fsync`` write rate of the file
system Drive stores on, and the single-core SHA-256 rate (hashlib over 1 MiB buffers). Then,
against ``drive serve`` (fs + SQLite in a temporary directory on the same file system):

- raw ``PUT`` of a ``--size-mib`` file (``curl -T``): its rate as a share of dd's;
- raw ``GET`` of it to /dev/null: its rate as a share of SHA-256's (every byte is verified);
- JSON ``GET`` of a ``--json-get-mib`` blob and JSON ``POST`` of a ``--json-post-mib`` one;

each with the server's resident memory sampled from /proc every 20 ms (growth over the
start of the transfer), and for the raw ones the server's CPU time (all its threads). The
Python client is slower than the server; curl is not.
The raw transfers run ``--rounds`` times, each right after its own floors (this machine's disk
and load swing between minutes), and the median of each ratio is reported beside every round's.
The ``PUT`` is bracketed by two dd runs and compared with their mean: what a write costs the
kernel moves with the memory it has free (with little free, every page written is reclaimed
first, and the same dd took four times the system time), so one dd before is not the PUT's
conditions. The free memory (``MemFree``) before the first dd is printed with each round.

    .venv/bin/python bench/large.py                         # 1 GiB raw, 128 MiB JSON GET, 32 MiB JSON POST
    .venv/bin/python bench/large.py --size-mib 256 --json-get-mib 32
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import MIB, TOKEN, PeakRss, free_port, rss_mib, start_server
from compare import cpu_seconds
from floors import sha256_rate

AUTH = f"Authorization: Bearer {TOKEN}"


def dd_rate(directory: Path, size_mib: int) -> float:
    """MiB/s of ``dd if=/dev/zero bs=1M conv=fsync`` into ``directory``."""
    target = directory / "dd.bin"
    started = time.perf_counter()
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={size_mib}", "conv=fsync"],
        check=True,
        capture_output=True,
    )
    elapsed = time.perf_counter() - started
    target.unlink()
    return size_mib / elapsed


def curl(*args: str) -> float:
    """Seconds a curl run took; fails on any HTTP error."""
    started = time.perf_counter()
    subprocess.run(["curl", "-sS", "--fail-with-body", "-o", "/dev/null", "-H", AUTH, *args], check=True)
    return time.perf_counter() - started


def transfer(pid: int, *args: str) -> tuple[float, float]:
    """(seconds, RSS growth in MiB) of one curl run against the server ``pid``."""
    seconds, grown, _ = timed_transfer(pid, *args)
    return seconds, grown


def timed_transfer(pid: int, *args: str) -> tuple[float, float, float]:
    """(seconds, RSS growth in MiB, the server's CPU seconds, all threads) of one curl run."""
    base = rss_mib(pid)
    cpu = cpu_seconds(pid)
    with PeakRss(pid) as peak:
        seconds = curl(*args)
    return seconds, peak.peak - base, cpu_seconds(pid) - cpu


def mem_free_gib() -> float | None:
    """``MemFree`` of /proc/meminfo (Linux), in GiB."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemFree:"):
                    return int(line.split()[1]) / (1024 * 1024)
    except OSError:
        pass
    return None


@dataclass(frozen=True)
class RawRound:
    dd_before: float  # MiB/s
    dd_after: float
    mem_free: float | None  # GiB, before the first dd
    sha: float  # MiB/s
    put: float  # MiB/s
    put_rss: float  # MiB
    get: float  # MiB/s
    get_rss: float  # MiB
    put_cpu: float  # the server's CPU seconds
    get_cpu: float

    @property
    def dd(self) -> float:
        return (self.dd_before + self.dd_after) / 2


def raw_round(tmp: Path, raw: Path, url: str, pid: int, size_mib: int, n: int) -> RawRound:
    """Floors, then a raw PUT (between two dd runs) and GET of ``raw`` under a new id (deleted after)."""
    mem_free = mem_free_gib()
    dd_before = dd_rate(tmp, size_mib)
    blob = f"{url}/v1/blobs/bench/raw-{n}"
    put_s, put_rss, put_cpu = timed_transfer(pid, "-T", str(raw), blob)
    dd_after = dd_rate(tmp, size_mib)
    sha = sha256_rate(size_mib)
    get_s, get_rss, get_cpu = timed_transfer(pid, "-H", "Accept: application/octet-stream", blob)
    curl("-X", "DELETE", blob)
    put, get = size_mib / put_s, size_mib / get_s
    return RawRound(dd_before, dd_after, mem_free, sha, put, put_rss, get, get_rss, put_cpu, get_cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="raw blob size (MiB)")
    parser.add_argument("--json-get-mib", type=int, default=128)
    parser.add_argument("--json-post-mib", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the raw transfers and their floors")
    opts = parser.parse_args()
    if shutil.which("curl") is None:
        raise SystemExit("curl is missing: apt-get install -y curl")
    tmp = Path(tempfile.mkdtemp(prefix="drive-large-"))
    try:
        raw = tmp / "raw.bin"
        with open(raw, "wb") as out:
            for _ in range(opts.size_mib):
                out.write(os.urandom(MIB))
        json_get = os.urandom(opts.json_get_mib * MIB)
        post_body = tmp / "post.json"
        post_body.write_bytes(
            b'{"id":"bench/json-post","data":"' + base64.b64encode(os.urandom(opts.json_post_mib * MIB)) + b'"}'
        )

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        (tmp / "srv").mkdir()
        server = start_server(tmp / "srv", port)
        try:
            pid = server.pid
            rounds = [raw_round(tmp, raw, url, pid, opts.size_mib, n) for n in range(opts.rounds)]
            seed = tmp / "json-get.bin"
            seed.write_bytes(json_get)
            curl("-T", str(seed), f"{url}/v1/blobs/bench/json-get")
            jget_s, jget_rss = transfer(pid, f"{url}/v1/blobs/bench/json-get")
            jpost_s, jpost_rss = transfer(
                pid, "-H", "Content-Type: application/json", "--data-binary", f"@{post_body}", f"{url}/v1/blobs"
            )
        finally:
            server.terminate()
            server.wait(timeout=30)

        size = opts.size_mib
        print(f"Raw {size} MiB, each round after its own floors (dd conv=fsync; SHA-256 on one core):\n")
        columns = ["round", "free memory", "dd MiB/s before / after", "PUT MiB/s", "PUT / dd (mean)"]
        columns += ["SHA-256 MiB/s", "GET MiB/s", "GET / SHA-256", "RSS growth PUT / GET", "server CPU PUT / GET"]
        print("| " + " | ".join(columns) + " |")
        print("|" + "---|" * len(columns))
        for n, r in enumerate(rounds, 1):
            free = "?" if r.mem_free is None else f"{r.mem_free:.1f} GiB"
            print(
                f"| {n} | {free} | {r.dd_before:,.0f} / {r.dd_after:,.0f} | {r.put:,.0f} | {r.put / r.dd:.0%} "
                f"| {r.sha:,.0f} | {r.get:,.0f} "
                f"| {r.get / r.sha:.0%} | {r.put_rss:.1f} / {r.get_rss:.1f} MiB | {r.put_cpu:.2f} / {r.get_cpu:.2f} s |"
            )
        put_ratio = statistics.median(r.put / r.dd for r in rounds)
        get_ratio = statistics.median(r.get / r.sha for r in rounds)
        grown = max(max(r.put_rss, r.get_rss) for r in rounds)
        print(f"\nMedians: raw PUT {put_ratio:.0%} of dd, raw GET {get_ratio:.0%} of SHA-256", end="")
        print(f"; RSS growth at most {grown:.1f} MiB\n")
        print("| transfer | MiB/s | server RSS growth |")
        print("|---|---|---|")
        jget = opts.json_get_mib
        print(f"| JSON GET {jget} MiB | {jget / jget_s:,.0f} | {jget_rss:.1f} MiB |")
        jpost = opts.json_post_mib
        print(
            f"| JSON POST {jpost} MiB | {jpost / jpost_s:,.0f} | {jpost_rss:.1f} MiB "
            f"({jpost_rss / jpost:.1f}x the blob) |"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
