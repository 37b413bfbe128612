"""ASGI factory for servers that import the app by name (``uvicorn --factory``)."""

from __future__ import annotations

from litestar import Litestar

from drive.entrypoints.http.app import create_app as _create_app


def create_app() -> Litestar:
    return _create_app()
