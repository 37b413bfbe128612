"""The suite's order: the files of long, mostly waiting tests first, so that xdist starts them first.

With ``--dist loadfile`` each file runs whole on one worker, and workers take files in the
order given (``--no-loadscope-reorder`` in pyproject.toml). xdist's own order puts the files
with the most tests first, which left these two for the end: the backend-outage file (three
steady-load outages of 1-2.5 min each, one after another) and the container file (its image
build alone took 3.7 min here); the suite took 18 min. Started first, they wait beside the
many short files instead of after them. The other slow files (crash, real faults, scale-out)
keep their place: they load the machine, and a 0.5 s lease under recovery five times a second
(test_crash_recovery's storm case) fails most uploads if they all start at once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

FIRST = frozenset({Path("integration/test_backend_outage.py"), Path("integration/test_container.py")})
TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.relative_to(TESTS) not in FIRST)  # stable: each file keeps its order
