"""What the PostgreSQL and MariaDB test-server helpers share: reaching the server, and
fresh databases per use, all dropped at the end."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import NoReturn

import pytest
from sqlalchemy.engine import make_url


def unavailable(message: str) -> NoReturn:
    """A component a test needs is missing: a failure in CI (``CI`` set), a skip elsewhere.

    The one rule for every such check, so that no test can skip in CI for want of a server.
    """
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI must provide it)", pytrace=False)
    pytest.skip(message)


def ensure_reachable(
    name: str, url: str, available: Callable[[], bool], start: Callable[[], None], wait: float, hint: str
) -> None:
    """Return once ``available()``; start the local server outside CI; fail (never skip) otherwise."""
    if available():
        return
    where = make_url(url).render_as_string(hide_password=True)
    if os.environ.get("CI"):
        pytest.fail(f"{name} is not reachable at {where}; CI must provide it ({hint})", pytrace=False)
    start()
    deadline = time.monotonic() + wait
    while not available():
        if time.monotonic() > deadline:
            pytest.fail(f"{name} is not reachable at {where} and could not be started", pytrace=False)
        time.sleep(0.5)


def throwaway_databases(create: Callable[[], str], drop: Callable[[str], None]) -> Iterator[Callable[[], str]]:
    """Yield a maker of fresh databases (URLs); drop every one made when resumed."""
    created: list[str] = []

    def make() -> str:
        url = create()
        created.append(url)
        return url

    yield make
    errors: list[str] = []
    for url in created:
        try:
            drop(url)
        except Exception as exc:
            errors.append(f"{make_url(url).database}: {type(exc).__name__}: {exc}")
    if errors:
        pytest.fail("could not drop test databases: " + "; ".join(errors), pytrace=False)
