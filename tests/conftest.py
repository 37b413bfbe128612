"""The suite's order: files with slow tests first, so that pytest-xdist starts them first.

With ``--dist loadfile`` each file runs whole on one worker, and workers take files in the
order given (``--no-loadscope-reorder`` in pyproject.toml; xdist's own order puts the files
with the most tests first, which left the outage and container files, a few tests of minutes
each, for the end on one worker: 18 min in all here). Started first, they run beside the
many short files instead of after them.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    slow_files = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: each file keeps its order
