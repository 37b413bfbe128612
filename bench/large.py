"""Large transfers against their physical floors, in one run, with curl as the client.

Measures on this machine, right before Drive: the ``dd conv=fsync`` write rate of the file
system Drive stores on, and the single-core SHA-256 rate (hashlib over 1 MiB buffers). Then,
against ``drive serve`` (fs + SQLite in a temporary directory on the same file system):

- raw ``PUT`` of a ``--size-mib`` file (``curl -T``): its rate as a share of dd's;
- raw ``GET`` of it to /dev/null: its rate as a share of SHA-256's (every byte is verified);
- JSON ``GET`` of a ``--json-get-mib`` blob and JSON ``POST`` of a ``--json-post-mib`` one;

each with the server's resident memory sampled from /proc every 20 ms (growth over the
start of the transfer). The Python client is slower than the server; curl is not.

    .venv/bin/python bench/large.py                         # 1 GiB raw, 128 MiB JSON GET, 32 MiB JSON POST
    .venv/bin/python bench/large.py --size-mib 256 --json-get-mib 32
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import MIB, TOKEN, PeakRss, free_port, rss_mib, start_server
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
    base = rss_mib(pid)
    with PeakRss(pid) as peak:
        seconds = curl(*args)
    return seconds, peak.peak - base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="raw blob size (MiB)")
    parser.add_argument("--json-get-mib", type=int, default=128)
    parser.add_argument("--json-post-mib", type=int, default=32)
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

        dd = dd_rate(tmp, opts.size_mib)
        sha = sha256_rate(opts.size_mib)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        (tmp / "srv").mkdir()
        server = start_server(tmp / "srv", port)
        try:
            pid = server.pid
            put_s, put_rss = transfer(pid, "-T", str(raw), f"{url}/v1/blobs/bench/raw")
            get_s, get_rss = transfer(pid, "-H", "Accept: application/octet-stream", f"{url}/v1/blobs/bench/raw")
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
        print(f"Floors: dd conv=fsync {dd:,.0f} MiB/s, SHA-256 one core {sha:,.0f} MiB/s\n")
        print("| transfer | MiB/s | share of its floor | server RSS growth |")
        print("|---|---|---|---|")
        print(f"| raw PUT {size} MiB | {size / put_s:,.0f} | {size / put_s / dd:.0%} of dd | {put_rss:.1f} MiB |")
        print(f"| raw GET {size} MiB | {size / get_s:,.0f} | {size / get_s / sha:.0%} of SHA-256 | {get_rss:.1f} MiB |")
        jget = opts.json_get_mib
        print(f"| JSON GET {jget} MiB | {jget / jget_s:,.0f} | — | {jget_rss:.1f} MiB |")
        jpost = opts.json_post_mib
        print(
            f"| JSON POST {jpost} MiB | {jpost / jpost_s:,.0f} | — | {jpost_rss:.1f} MiB "
            f"({jpost_rss / jpost:.1f}x the blob) |"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
