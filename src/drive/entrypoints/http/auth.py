"""Who may make a request: a bearer token with a scope (``read`` for GET/HEAD, ``read-write``
for everything), or, on the blob routes, a signed link instead of a token.

Both checks are ASGI middlewares on their routers rather than Litestar guards: a guard is
handed a copy of its route handler on every request, which cost more than everything else a
small read does (bench/inproc.py). Their errors reach the routes' exception handlers like a
handler's own.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping

from litestar.types import ASGIApp, Receive, Send
from litestar.types import Scope as AsgiScope

from drive.application.links import SignedLinks
from drive.domain.errors import DriveError
from drive.entrypoints.http.links import check_link, is_signed
from drive.entrypoints.http.types import header
from drive.settings import Scope

READ_METHODS = frozenset({"GET", "HEAD"})
_AUTHORIZATION = b"authorization"

Middleware = Callable[[ASGIApp], ASGIApp]


class Unauthorized(DriveError):
    code = "unauthorized"


class Forbidden(DriveError):
    code = "forbidden"


class TokenChecker:
    def __init__(self, tokens: Mapping[str, Scope]) -> None:
        self._tokens = [(token.encode(), scope) for token, scope in tokens.items()]

    def scope_of(self, header: str | None) -> Scope | None:
        if not header:
            return None
        scheme, _, credentials = header.partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials:
            return None
        presented = credentials.encode()
        found: Scope | None = None
        # Compare against every token, in constant time each, so timing reveals nothing.
        for token, scope in self._tokens:
            if hmac.compare_digest(presented, token):
                found = scope
        return found

    def require(self, header: str | None) -> Scope:
        scope = self.scope_of(header)
        if scope is None:
            raise Unauthorized("a valid bearer token is required")
        return scope


def authorization(scope: AsgiScope) -> str | None:
    return header(scope, _AUTHORIZATION)


def _checking(check: Callable[[AsgiScope], None]) -> Middleware:
    """A middleware that runs ``check`` (raising ``Unauthorized`` or ``Forbidden``) before the route."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def authenticated(scope: AsgiScope, receive: Receive, send: Send) -> None:
            check(scope)
            await app(scope, receive, send)

        return authenticated

    return wrap


def blob_auth(checker: TokenChecker, links: SignedLinks) -> Middleware:
    """The ``/v1/blobs`` routes: a token whose scope allows the method, or a valid signed link."""

    def check(scope: AsgiScope) -> None:
        header = authorization(scope)
        if header is None and is_signed(scope):
            check_link(scope, links)  # a link instead of a token: for its blob and method only
        elif checker.require(header) != "read-write" and scope.get("method") not in READ_METHODS:
            raise Forbidden("the token does not allow this operation")

    return _checking(check)


def token_auth(checker: TokenChecker) -> Middleware:
    """Any valid token, whatever its scope: the route checks what the scope allows."""

    def check(scope: AsgiScope) -> None:
        checker.require(authorization(scope))

    return _checking(check)


def write_auth(checker: TokenChecker) -> Middleware:
    """A read-write token, whatever the method."""

    def check(scope: AsgiScope) -> None:
        if checker.require(authorization(scope)) != "read-write":
            raise Forbidden("the token does not allow this operation")

    return _checking(check)
