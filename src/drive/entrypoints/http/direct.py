"""Route handlers that take only the request, called without Litestar's per-request parameter machinery.

For every request ``HTTPRoute.handle`` builds the handler's keyword arguments (a kwargs model,
a signature model converting them, a dependency batch, an exit stack for cleanups), then runs
guards and hooks. A handler of ours that takes only ``request`` needs none of it, and on a small
read that machinery was a fifth of the server's time (bench/spy.py). ``direct_calls``, a route
middleware, calls such a handler with the request and turns its result into the answer through
the handler's own ``to_response``, as ``handle`` does. Routing, the host check and exception
handling stay Litestar's (they are outside this middleware). A handler with anything ``handle``
would have to do for it (another parameter, guards, hooks, caching, a sync function) goes
through ``handle`` unchanged.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from litestar import Request
from litestar.handlers import HTTPRouteHandler
from litestar.types import ASGIApp, Receive, Scope, Send


def eligible(handler: HTTPRouteHandler) -> bool:
    """Whether ``HTTPRoute.handle`` would do nothing for ``handler`` but call it with the request."""
    return (
        list(inspect.signature(handler.fn).parameters) == ["request"]
        and not handler.has_sync_callable
        and handler.resolve_request_class() is Request
        and not handler.resolve_guards()
        and handler.resolve_before_request() is None
        and handler.resolve_after_response() is None
        and not handler.cache
    )


def direct_calls() -> Callable[[ASGIApp], ASGIApp]:
    """A route middleware: a request-only handler is called directly; any other goes to the route.

    One per app (``create_app`` makes them): its decisions, per handler on its first request,
    live as long as that app does.
    """
    decided: dict[HTTPRouteHandler, bool] = {}

    def wrap(app: ASGIApp) -> ASGIApp:
        async def call(scope: Scope, receive: Receive, send: Send) -> None:
            handler: Any = scope.get("route_handler")
            if not isinstance(handler, HTTPRouteHandler):
                await app(scope, receive, send)
                return
            direct = decided.get(handler)
            if direct is None:
                direct = decided[handler] = eligible(handler)
            if not direct:
                await app(scope, receive, send)
                return
            request: Request[Any, Any, Any] = Request(scope, receive, send)
            data = await handler.fn(request)
            answer = await handler.to_response(app=scope["litestar_app"], data=data, request=request)
            await answer(scope, receive, send)

        return call

    return wrap
