"""Where a Drive worker's event-loop time goes under small-GET load (py-spy, sampled).

Starts ``drive serve`` as bench/compare.py does, loads it with wrk, records the server
with py-spy (``pip install py-spy``) in raw (collapsed-stack) form for ``--seconds``,
and prints the share of the event-loop thread's busy samples spent in each function
(inclusive) and in each function's own code (self). Samples of idle threads (aiosqlite
and anyio workers waiting on their queues) are dropped.

    .venv/bin/python bench/spy.py [--accept application/octet-stream] [--not-modified] [--seconds 10]
    .venv/bin/python bench/spy.py --metadata postgresql://postgres@127.0.0.1:5432   # fs + PostgreSQL
    .venv/bin/python bench/spy.py --writes put      # small stores under new ids (bench/writes.lua)
    .venv/bin/python bench/spy.py --head            # HEADs, from bench/headload.c (wrk hangs on HEAD)
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import BLOB, TOKEN, build_headload, contextmanager_or_none, drive_env, free_port, running, seed
from servers import ceiling_command, drive_command

# Leaf frames of threads that wait (py-spy counts a thread blocked in C as active).
_IDLE = (
    "_connection_worker_thread (aiosqlite/core.py:59)",
    "Condition.wait (threading.py",
    "_worker (concurrent/futures/thread.py:81)",
    "EpollSelector.select",
)


def summarise(raw: Path, seconds: float, rate: int, top: int) -> None:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    loop_samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r":\d+\)", ")", f) for f in stack.split(";")]
        if any(stack.rsplit(";", 1)[-1].startswith(i) for i in _IDLE) or "_run_once" not in stack:
            continue
        n = int(count)
        loop_samples += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    busy = loop_samples / (seconds * rate)
    print(f"event-loop thread busy in {busy:.0%} of samples ({loop_samples} samples)\n")
    print("| inclusive | function |\n|---|---|")
    for frame, n in inclusive.most_common(top):
        print(f"| {n / loop_samples:.1%} | `{frame}` |")
    print("\n| self | function |\n|---|---|")
    for frame, n in own.most_common(top // 2):
        print(f"| {n / loop_samples:.1%} | `{frame}` |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accept", default="", help="Accept header (default: JSON GET)")
    parser.add_argument("--not-modified", action="store_true", help="send If-None-Match with the blob's ETag (304s)")
    parser.add_argument("--metadata", help="postgresql://user@host:port: fs + PostgreSQL (a fresh database)")
    parser.add_argument("--writes", choices=("post", "put"), help="profile small stores under new ids instead of GETs")
    parser.add_argument("--head", action="store_true", help="profile HEADs (bench/headload.c) instead of GETs")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=60)
    parser.add_argument("--ceiling", action="store_true", help="profile the ceiling app instead, for comparison")
    opts = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    tmp = Path(tempfile.mkdtemp(prefix="drive-profile-"))
    try:
        with contextmanager_or_none(opts.metadata) as metadata:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            env = drive_env(tmp, metadata, "INFO")
            command = ceiling_command("uvicorn", port) if opts.ceiling else drive_command("uvicorn", port)
            probe = f"{base}/v1/blobs/{BLOB}" if opts.ceiling else f"{base}/healthz"
            with running(command, probe, env, tmp, tmp / "drive.log") as pid:
                etag = None if opts.ceiling else seed(base)
                headers = ["-H", f"Authorization: Bearer {TOKEN}"]
                if opts.accept:
                    headers += ["-H", f"Accept: {opts.accept}"]
                if opts.not_modified and etag is not None:
                    headers += ["-H", f"If-None-Match: {etag}"]
                duration = int(opts.seconds) + 4
                target = [f"{base}/v1/blobs/{BLOB}"]
                if opts.writes:
                    script = str(Path(__file__).resolve().parent / "writes.lua")
                    target = ["-s", script, base, "--", opts.writes, tmp.name]
                command = ["wrk", "-t2", "-c16", f"-d{duration}s", *headers, *target]
                if opts.head:
                    path = f"/v1/blobs/{BLOB}"
                    sent = [value for flag, value in zip(headers[::2], headers[1::2], strict=True) if flag == "-H"]
                    command = [str(build_headload(tmp)), "127.0.0.1", str(port), path, "16", str(duration), *sent]
                load = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
                raw = tmp / "profile.txt"
                record = [py_spy, "record", "-p", str(pid), "-d", str(int(opts.seconds)), "-r", str(opts.rate)]
                subprocess.run([*record, "--format", "raw", "-o", str(raw)], check=True, capture_output=True)
                output, _ = load.communicate()
                rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
                print(f"under py-spy: {rate.group(1) if rate else '?'} req/s\n")
                summarise(raw, opts.seconds, opts.rate, opts.top)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
