"""The Litestar application: routes, auth, errors, OpenAPI, and the service's lifecycle."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import anyio
import msgspec
from litestar import Litestar, Response, Router, get
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from drive import __version__
from drive.application.service import DriveService
from drive.container import Container
from drive.entrypoints.http.auth import TokenChecker, bearer_guard
from drive.entrypoints.http.blobs import Limits, route_handlers
from drive.entrypoints.http.errors import error_response, exception_handlers

log = logging.getLogger("drive")


@get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", include_in_schema=False)
async def readyz(state: State) -> Response[bytes]:
    service: DriveService = state.service
    checks = await service.readiness()
    if all(v == "ok" for v in checks.values()):
        return Response(msgspec.json.encode({"status": "ok", "checks": checks}), media_type="application/json")
    down = ", ".join(name for name, v in checks.items() if v != "ok")
    return error_response(503, "storage_unavailable", f"unavailable: {down}")


async def _recover_periodically(service: DriveService, interval: float) -> None:
    """Recovery at start-up and then every ``interval`` seconds, never delaying readiness."""
    while True:
        try:
            report = await service.recover()
            if report.interrupted_removed or report.orphans_removed:
                log.info(
                    "recovery removed %d interrupted and %d orphaned",
                    report.interrupted_removed,
                    report.orphans_removed,
                )
        except Exception:
            log.warning("recovery run failed; will retry", exc_info=True)
        await anyio.sleep(interval)


def create_app(container: Container | None = None) -> Litestar:
    container = container or Container()
    settings = container.settings()  # raises ConfigurationError naming the variable

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        service = container.service()
        await service.open()
        app.state.service = service
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_recover_periodically, service, settings.recovery_interval_seconds)
                yield
                tasks.cancel_scope.cancel()
        finally:
            await service.close()

    v1 = Router("/", route_handlers=route_handlers, guards=[bearer_guard])
    app = Litestar(
        route_handlers=[healthz, readyz, v1],
        exception_handlers=exception_handlers,
        lifespan=[lifespan],
        request_max_body_size=None,  # limits are ours, enforced while streaming
        openapi_config=OpenAPIConfig(
            title="Drive",
            version=__version__,
            path="/docs",
            render_plugins=[SwaggerRenderPlugin()],
        ),
        logging_config=None,
        debug=False,
    )
    app.state.tokens = TokenChecker(settings.tokens)
    app.state.limits = Limits(settings.max_blob_size, settings.max_json_blob_size)
    return app
