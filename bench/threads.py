"""Where a server's CPU goes per request, thread by thread, under one small-request workload.

Starts ``drive serve`` (or the ceiling, ``--ceiling``) as bench/compare.py does, loads it with
wrk (bench/headload.c for ``HEAD``), and reads each of the server's threads' user and system
time from ``/proc/PID/task/*/stat`` around ``--seconds`` of the load: µs per request for the
event loop, the access log's writer, the hashing and file workers, the SQLite writer. Unlike
compare.py's one total, it shows which thread a change moved, and what the access line costs
(``--log-level WARNING`` leaves it out). Linux only.

    .venv/bin/python bench/threads.py --workload head                      # Drive, LOG_LEVEL=INFO
    .venv/bin/python bench/threads.py --workload head --ceiling            # the bare app, same load
    .venv/bin/python bench/threads.py --workload put --log-level WARNING   # small durable stores
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import (
    BENCH,
    BLOB,
    RAW,
    TOKEN,
    Result,
    build_headload,
    drive_env,
    free_port,
    parse_wrk,
    running,
    seed,
)
from servers import ceiling_command, drive_command

Times = dict[str, tuple[str, int, int]]  # thread id: (name, user ticks, system ticks)


def thread_times(pid: int) -> Times:
    times: Times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        times[task.name] = (name, int(fields[11]), int(fields[12]))
    return times


def load_command(opts: argparse.Namespace, port: int, tmp: Path) -> list[str]:
    base, path = f"http://127.0.0.1:{port}", f"/v1/blobs/{BLOB}"
    auth = [] if opts.ceiling else [f"Authorization: Bearer {TOKEN}"]
    seconds = str(math.ceil(opts.seconds) + 3)  # the load outlasts the sampling on both sides
    if opts.workload == "head":
        return [str(build_headload(tmp)), "127.0.0.1", str(port), path, str(opts.connections), seconds, *auth]
    command = ["wrk", "-t2", f"-c{opts.connections}", f"-d{seconds}s", "--latency"]
    for header in auth + ([f"Accept: {RAW}"] if opts.workload == "get-raw" else []):
        command += ["-H", header]
    if opts.workload in ("put", "post"):
        return [*command, "-s", str(BENCH / "writes.lua"), base, "--", opts.workload, str(int(time.time()))]
    return [*command, base + path]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=["head", "get-json", "get-raw", "post", "put"], default="head")
    parser.add_argument("--ceiling", action="store_true", help="the bare Litestar app instead of Drive (reads only)")
    parser.add_argument("--log-level", default="INFO", help="Drive's LOG_LEVEL (INFO writes an access line each)")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long the threads are sampled")
    parser.add_argument("--connections", type=int, default=16)
    opts = parser.parse_args()
    if opts.ceiling and opts.workload in ("put", "post"):
        raise SystemExit("the ceiling only reads")
    tick = os.sysconf("SC_CLK_TCK")
    with tempfile.TemporaryDirectory(prefix="drive-threads-") as name:
        tmp = Path(name)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        if opts.ceiling:
            server, ready, env = ceiling_command("uvicorn", port), f"{base}/v1/blobs/{BLOB}", dict(os.environ)
        else:
            server, ready, env = drive_command("uvicorn", port), f"{base}/healthz", drive_env(tmp, None, opts.log_level)
        with running(server, ready, env, tmp, tmp / "server.log") as pid:
            if not opts.ceiling:
                seed(base)
            load = subprocess.Popen(load_command(opts, port, tmp), stdout=subprocess.PIPE, text=True)
            output: list[str] = []
            reader = threading.Thread(target=lambda: output.append(load.communicate()[0]))
            reader.start()
            time.sleep(1.5)  # past connecting and warming up
            before, started = thread_times(pid), time.perf_counter()
            time.sleep(opts.seconds)
            after, elapsed = thread_times(pid), time.perf_counter() - started
            reader.join()
        result: Result = parse_wrk(output[0])
    requests = result.rate * elapsed
    print(f"{'ceiling' if opts.ceiling else 'Drive'} {opts.workload}, LOG_LEVEL={opts.log_level}: ", end="")
    print(f"{result.rate:,.0f} req/s, p99 {result.p99_ms:.1f} ms, {result.bad} bad answers\n")
    print("| thread | user µs/request | system µs/request |\n|---|---|---|")
    total = 0.0
    for task, (name, user, system) in sorted(after.items()):
        if task not in before:
            continue
        user_us = (user - before[task][1]) / tick / requests * 1e6
        system_us = (system - before[task][2]) / tick / requests * 1e6
        total += user_us + system_us
        if user_us + system_us >= 0.5:
            print(f"| {task} ({name}{': the event loop' if task == str(pid) else ''}) "
                  f"| {user_us:.1f} | {system_us:.1f} |")  # fmt: skip
    print(f"\nall threads: {total:.1f} µs per request")


if __name__ == "__main__":
    main()
