"""``direct_calls``: request-only handlers are called directly, with Litestar's answer and error handling kept."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Request, Response, get
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromQuery
from litestar.routes.http import HTTPRoute
from litestar.testing import create_test_client

from drive.entrypoints.http import direct


class Teapot(Exception):
    pass


def _deny(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    raise NotAuthorizedException("no")


@get("/plain")
async def plain(request: Request[Any, Any, Any]) -> dict[str, str]:
    return {"path": request.url.path}


@get("/fails")
async def fails(request: Request[Any, Any, Any]) -> None:
    raise Teapot


@get("/guarded", guards=[_deny])
async def guarded(request: Request[Any, Any, Any]) -> str:
    return "never"


@get("/param")
async def with_param(request: Request[Any, Any, Any], q: FromQuery[str]) -> str:
    return q


def test_handlers_are_called_directly_only_when_they_take_just_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    handled: list[str] = []
    original = HTTPRoute.handle

    async def counting(self: HTTPRoute, scope: Any, receive: Any, send: Any) -> None:
        handled.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(HTTPRoute, "handle", counting)
    with create_test_client(
        [plain, fails, guarded, with_param],
        middleware=[direct.direct_calls()],
        exception_handlers={Teapot: lambda request, exc: Response({"error": "teapot"}, status_code=418)},
    ) as client:
        assert client.get("/plain").json() == {"path": "/plain"}
        answer = client.get("/fails")  # the app's exception handlers still answer
        assert (answer.status_code, answer.json()) == (418, {"error": "teapot"})
        assert client.get("/guarded").status_code == 401  # a guard is never skipped
        assert client.get("/param", params={"q": "x"}).text == "x"
        assert client.get("/param").status_code == 400  # validated by Litestar, as without the middleware
        allowed = client.options("/plain")  # Litestar's own OPTIONS handler (a plain HTTPRouteHandler)
        assert allowed.status_code == 204 and "GET" in allowed.headers["allow"]
    assert handled == ["/guarded", "/param", "/param", "/plain"]
