"""Type aliases: Litestar's generic connection types, and what handlers get injected by name."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency

from drive.application.service import DriveService
from drive.settings import Settings

AnyRequest = Request[Any, Any, Any]
AnyConnection = ASGIConnection[Any, Any, Any, Any]

# Provided by ``create_app`` from the container (``dependencies={"service": ..., "settings": ...}``).
Service = NamedDependency[DriveService]
AppSettings = NamedDependency[Settings]
