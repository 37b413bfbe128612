"""How the bench starts a server: exactly ``drive serve``'s settings, or granian for comparison.

``drive serve`` runs uvicorn with httptools on the stdlib asyncio loop, one worker, no
access log of uvicorn's own, no ``Server`` header and no proxy headers. The granian
command is the closest match: ASGI, one worker, the stdlib asyncio loop pinned (granian's
``auto`` would take rloop or uvloop when installed), no websockets, no access log.
"""

from __future__ import annotations

import sys
from pathlib import Path

SERVERS = ("uvicorn", "granian")
BENCH_DIR = Path(__file__).resolve().parent


def uvicorn_options() -> dict[str, object]:
    """The keyword arguments ``drive serve`` passes to ``uvicorn.run`` (src/drive/entrypoints/cli.py)."""
    return {
        "workers": 1,
        "loop": "asyncio",
        "http": "httptools",
        "log_config": None,
        "access_log": False,
        "proxy_headers": False,
        "server_header": False,
    }


def granian_command(target: str, port: int, *, factory: bool, working_dir: Path | None = None) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--loop",
        "asyncio",
        "--no-ws",
        "--log-level",
        "warning",
    ]
    if factory:
        command.append("--factory")
    if working_dir is not None:
        command += ["--working-dir", str(working_dir)]
    return [*command, target]


def drive_command(server: str, port: int) -> list[str]:
    """``drive serve`` itself, or the same app factory under granian."""
    if server == "uvicorn":
        return [sys.executable, "-m", "drive", "serve", "--port", str(port)]
    return granian_command("drive.entrypoints.http.asgi:create_app", port, factory=True)


def ceiling_command(server: str, port: int) -> list[str]:
    if server == "uvicorn":
        return [sys.executable, str(BENCH_DIR / "ceiling.py"), "--port", str(port)]
    return granian_command("ceiling:app", port, factory=False, working_dir=BENCH_DIR)
