"""Bearer tokens with a scope: ``read`` for GET/HEAD, ``read-write`` for everything; or a signed link."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from litestar.handlers.base import BaseRouteHandler

from drive.domain.errors import DriveError
from drive.entrypoints.http.links import check_link, is_signed
from drive.entrypoints.http.types import AnyConnection
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


async def bearer_guard(connection: AnyConnection, _: BaseRouteHandler) -> None:
    # async although it awaits nothing: Litestar runs a sync guard in a worker thread.
    header = connection.headers.get("authorization")
    if header is None and is_signed(connection):
        check_link(connection)  # a link instead of a token: for its blob and method only
        return
    scope = _scope(connection)
    method = connection.scope.get("method")
    if scope != "read-write" and method not in READ_METHODS:
        raise Forbidden("the token does not allow this operation")


async def token_guard(connection: AnyConnection, _: BaseRouteHandler) -> None:
    """Any valid token, whatever its scope: the route checks what the scope allows."""
    _scope(connection)


def _scope(connection: AnyConnection) -> Scope:
    checker: TokenChecker = connection.app.state.tokens
    scope = checker.scope_of(connection.headers.get("authorization"))
    if scope is None:
        raise Unauthorized("a valid bearer token is required")
    return scope
