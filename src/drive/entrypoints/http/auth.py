"""Bearer tokens with a scope: ``read`` for GET/HEAD, ``read-write`` for everything."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping

from litestar.types import ASGIApp, Receive, Send
from litestar.types import Scope as AsgiScope

from drive.domain.errors import DriveError
from drive.settings import Scope

READ_METHODS = frozenset({"GET", "HEAD"})


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


_AUTHORIZATION = b"authorization"


def bearer_auth(checker: TokenChecker) -> Callable[[ASGIApp], ASGIApp]:
    """Middleware for the ``/v1`` routes: the token's scope must allow the request's method.

    A middleware rather than a Litestar guard: a guard is handed a copy of its route handler
    on every request, which cost more than everything else a small read does (bench/inproc.py).
    Its errors reach the routes' exception handlers like a handler's own.
    """

    def wrap(app: ASGIApp) -> ASGIApp:
        async def authenticated(scope: AsgiScope, receive: Receive, send: Send) -> None:
            header: bytes | None = None
            for name, value in scope["headers"]:
                if name == _AUTHORIZATION:
                    header = value
                    break
            allowed = checker.scope_of(header.decode("latin-1") if header is not None else None)
            if allowed is None:
                raise Unauthorized("a valid bearer token is required")
            if allowed != "read-write" and scope.get("method") not in READ_METHODS:
                raise Forbidden("the token does not allow this operation")
            await app(scope, receive, send)

        return authenticated

    return wrap
