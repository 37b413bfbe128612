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

# Provided by ``create_app`` from the container (``dependencies={"service": ...}``).
Service = NamedDependency[DriveService]


def settings_of(connection: AnyConnection) -> Settings:
    """The settings ``create_app`` keeps in the app's state.

    Not a second injected dependency: Litestar resolves two dependencies of a handler in a
    task group of their own, which cost a small store more than its metadata read.
    """
    settings: Settings = connection.app.state.settings
    return settings
