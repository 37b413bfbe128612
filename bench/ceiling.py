"""The ceiling: a bare Litestar app on exactly the server and settings ``drive serve`` uses.

It answers ``GET /v1/blobs/{id}`` (and ``HEAD``) with a fixed JSON body shaped like
Drive's answer for a 1 KiB blob, with no auth, storage, observer, metrics or log: the
fastest a Drive read could be on this framework and server. ``bench/compare.py`` reports
Drive's rates as a ratio to it.

    .venv/bin/python bench/ceiling.py --port 8790
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path
from typing import cast

import msgspec
import uvicorn
from litestar import Litestar, Response, get, head

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import uvicorn_options

BODY = msgspec.json.encode(
    {
        "id": "bench/a",
        "data": base64.b64encode(bytes(range(256)) * 4).decode(),  # 1 KiB of data
        "size": "1024",
        "created_at": "2026-11-26T00:00:00Z",
    }
)


@get("/v1/blobs/{blob_path:path}")
async def blob(blob_path: str) -> Response[bytes]:
    return Response(BODY, media_type="application/json", headers={"ETag": '"fixed"'})


@head("/v1/blobs/{blob_path:path}")
async def blob_head(blob_path: str) -> Response[None]:
    headers = {"ETag": '"fixed"', "Content-Length": str(len(BODY))}
    return cast("Response[None]", Response(b"", media_type="application/json", headers=headers))


app = Litestar(route_handlers=[blob, blob_head], logging_config=None, debug=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8790)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", **uvicorn_options())  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
