"""Memory and hash catch-up of resumable uploads (tus), on a real ``drive serve`` process.

1. Memory: a ``--size`` upload (default 1 GiB) in ``--piece`` PATCHes (default 8 MiB), the
   body streamed from a generator (the client never holds a piece either). Reports the
   server's resident memory before the upload and its peak (``VmHWM``) during it: the
   growth must stay under 100 MiB.
2. Catch-up: the server is restarted halfway, so the next PATCH lands on a process that
   has not seen the earlier pieces and must rebuild the whole-blob SHA-256 by reading
   them back (``read_pieces``). Reports that PATCH's time against an ordinary one.

    .venv/bin/python bench/tus_memory.py [--size-mib 1024] [--piece-mib 8] [--dir DIR] [--storage fs|db]

Runs fs (or db) with SQLite metadata in a temporary directory under ``--dir``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

MIB = 1024 * 1024
TOKEN = "bench-token-0123456789abcdef"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Tus-Resumable": "1.0.0"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class Server:
    def __init__(self, root: Path, storage: str) -> None:
        self.root = root
        self.env = {
            **os.environ,
            "AUTH_BEARER_TOKEN": TOKEN,
            "STORAGE": storage,
            "FS_BASE_PATH": str(root / "blobs"),
            "DATABASE_URL": f"sqlite:///{root / 'metadata.db'}",
            "MAX_BLOB_SIZE": str(64 * 1024 * MIB),
            "LOG_LEVEL": "WARNING",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "drive", "serve", "--port", str(port)]
        log = (self.root / "server.log").open("ab")
        self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


def piece(seed: int, size: int, block: int = MIB) -> Iterator[bytes]:
    """Deterministic bytes, a block at a time (so the client holds one block, not a piece)."""
    for n in range(0, size, block):
        yield hashlib.sha256(f"{seed}-{n}".encode()).digest() * (min(block, size - n) // 32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--piece-mib", type=int, default=8)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--storage", default="fs", choices=["fs", "db"])
    args = parser.parse_args()
    size, step = args.size_mib * MIB, args.piece_mib * MIB
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        server = Server(Path(tmp), args.storage)
        server.start()
        with httpx.Client(headers=HEADERS, timeout=600) as client:
            # Warm-up: one small upload, so imports and pools are in the baseline.
            blob_id = base64.b64encode(b"warm-up").decode()
            warm = client.post(
                f"{server.url}/v1/uploads", headers={"Upload-Length": "1", "Upload-Metadata": f"id {blob_id}"}
            )
            client.patch(
                f"{server.url}{warm.headers['location']}",
                content=b"x",
                headers={"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"},
            ).raise_for_status()
            baseline = status_kib(server.pid, "VmRSS")
            blob_id = base64.b64encode(b"bench/big").decode()
            created = client.post(
                f"{server.url}/v1/uploads", headers={"Upload-Length": str(size), "Upload-Metadata": f"id {blob_id}"}
            )
            where = created.headers["location"]
            times: list[float] = []
            peak = baseline
            offset, seed, restarted_at, catch_up = 0, 0, size // 2, 0.0
            started = time.perf_counter()
            while offset < size:
                if offset >= restarted_at and not catch_up:
                    peak = max(peak, status_kib(server.pid, "VmHWM"))
                    server.stop()
                    server.start()
                length = min(step, size - offset)
                began = time.perf_counter()
                response = client.patch(
                    f"{server.url}{where}",
                    content=piece(seed, length),
                    headers={
                        "Content-Type": "application/offset+octet-stream",
                        "Upload-Offset": str(offset),
                        "Content-Length": str(length),
                    },
                )
                response.raise_for_status()
                took = time.perf_counter() - began
                if offset >= restarted_at and not catch_up:
                    catch_up = took
                else:
                    times.append(took)
                offset, seed = int(response.headers["upload-offset"]), seed + 1
            elapsed = time.perf_counter() - started
            peak = max(peak, status_kib(server.pid, "VmHWM"))
        server.stop()
    ordinary = sorted(times)[len(times) // 2]
    print(f"storage {args.storage}: {args.size_mib} MiB in {args.piece_mib} MiB pieces, {elapsed:.1f} s")
    growth = (peak - baseline) / 1024
    print(f"server RSS before {baseline / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB: growth {growth:.1f} MiB")
    print(
        f"PATCH median {ordinary * 1000:.0f} ms; first PATCH after a restart at {restarted_at // MIB} MiB "
        f"(rebuilding the SHA-256 from the staged bytes) {catch_up * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
