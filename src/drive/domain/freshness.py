"""How fresh a metadata read must be: it reflects every commit completed before it was asked for.

A read is asked for when its request arrived, not when the lookup runs: an entrypoint that
knows that moment (the HTTP server: when the request's headers had been read) sets
``read_asked_at`` for the request's task, in ``time.perf_counter()`` seconds. A metadata
adapter that remembers when it last looked for commits may then answer without looking
again if that look began after the read was asked for: every commit the read must reflect
had completed by then (the SQLite record cache, adapters/sql_point_reads.py). Under load,
requests that arrived together share one look. Unset, a read is asked for as it runs.
"""

from __future__ import annotations

from contextvars import ContextVar

read_asked_at: ContextVar[float | None] = ContextVar("drive_read_asked_at", default=None)
