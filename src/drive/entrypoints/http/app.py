"""The Litestar application: routes, auth, errors, OpenAPI, observability and the service's lifecycle."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import msgspec
from litestar import Litestar, Response, Router, get
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from drive import __version__, deferred_metrics
from drive.application.service import DriveService
from drive.container import Container
from drive.entrypoints.http.auth import TokenChecker, blob_auth, token_auth
from drive.entrypoints.http.blobs import route_handlers
from drive.entrypoints.http.cors import Cors
from drive.entrypoints.http.direct import direct_calls
from drive.entrypoints.http.errors import ErrorDetail, exception_handlers
from drive.entrypoints.http.links import make_link
from drive.entrypoints.http.metrics import metrics
from drive.entrypoints.http.observability import RequestObserver
from drive.entrypoints.http.openapi import BEARER, COMPONENTS
from drive.entrypoints.http.uploads import uploads_router
from drive.entrypoints.logs import configure_logging, flush_logs, settings_secrets

log = logging.getLogger("drive")

# On shutdown, how long requests still unwinding get before the stores are closed.
SHUTDOWN_DRAIN_SECONDS = 10.0


class NotReady(msgspec.Struct):
    """The contract's error body, plus every check so operators see what is down."""

    error: ErrorDetail
    checks: dict[str, str]


@get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", include_in_schema=False)
async def readyz(state: State) -> Response[bytes]:
    readiness: Callable[[], Awaitable[dict[str, str]]] = state.readiness
    checks = await readiness()
    down = [name for name, result in checks.items() if result != "ok"]
    if not down:
        return Response(msgspec.json.encode({"status": "ok", "checks": checks}), media_type="application/json")
    body = NotReady(ErrorDetail("storage_unavailable", f"unavailable: {', '.join(down)}"), checks)
    return Response(
        msgspec.json.encode(body), status_code=503, media_type="application/json", headers={"Retry-After": "1"}
    )


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


def _freeze_startup_objects() -> None:
    """Leave what start-up built (modules, the app, engines, clients) out of every later collection.

    Python's full collection walks every tracked object: about 130,000 once the app is up, 50-70 ms
    on the build machine, during which no request moves; one or two per few seconds of small
    writes set their p99 (bench/compare.py). These objects live as long as the process does, so
    they are moved once to the permanent generation (``gc.freeze``) after one last collection;
    once per process (a process hosting several apps, a test run, freezes at the first).
    """
    global _frozen
    if _frozen:
        return
    _frozen = True
    gc.collect()
    gc.freeze()


_frozen = False


def create_app(container: Container | None = None) -> Litestar:
    container = container or Container()
    settings = container.settings()  # raises ConfigurationError naming the variable
    configure_logging(settings.log_level, settings_secrets(settings))

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        service = container.service()
        await service.open()
        app.state.service = service
        app.state.readiness = container.readiness()
        _freeze_startup_objects()
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_recover_periodically, service, settings.recovery_interval_seconds)
                yield
                tasks.cancel_scope.cancel()
        finally:
            # uvicorn has let in-flight requests finish (or cancelled them at --graceful-timeout);
            # cancelled uploads still undoing their staged bytes get to finish before stores close.
            requests: RequestObserver = app.state.requests
            with anyio.move_on_after(SHUTDOWN_DRAIN_SECONDS):
                await requests.wait_idle()
            if requests.in_flight:
                log.warning("closing with %d request(s) still in progress", requests.in_flight)
            await service.close()
            flush_logs()  # uvicorn ends the process on its signal: no exit handler would write them
            deferred_metrics.apply_waiting()  # a multi-worker server's metric files outlive this worker

    tokens = TokenChecker(settings.tokens)
    signed_links = container.signed_links()
    v1_middleware = [blob_auth(tokens, signed_links), direct_calls()]
    v1 = Router("/", route_handlers=route_handlers, middleware=v1_middleware, security=[BEARER])
    # A read token may make GET links: the handler checks the scope against the method asked for.
    links = Router("/", route_handlers=[make_link], middleware=[token_auth(tokens)], security=[BEARER])
    app = Litestar(
        route_handlers=[healthz, readyz, metrics, v1, links, uploads_router(tokens)],
        exception_handlers=exception_handlers,
        lifespan=[lifespan],
        request_max_body_size=None,  # limits are ours, enforced while streaming
        openapi_config=OpenAPIConfig(
            title="Drive",
            version=__version__,
            description="Blobs over HTTP on fs, db, S3 or FTP storage. Reference: docs/API.md in the repository.",
            path="/docs",
            render_plugins=[SwaggerRenderPlugin()],
            security=[BEARER],
            components=COMPONENTS,
        ),
        logging_config=None,
        debug=False,
    )
    app.state.tokens = tokens
    app.state.settings = settings
    app.state.links = signed_links
    # CORS around routing and errors (preflights need no token, errors get the headers too);
    # RequestObserver outermost: it sees every response.
    handler = Cors(app.asgi_handler, settings.cors_allow_origins) if settings.cors_allow_origins else app.asgi_handler
    app.asgi_handler = app.state.requests = RequestObserver(handler)
    return app
