"""HTTP metrics and the ``/metrics`` route (Prometheus text or OpenMetrics, by ``Accept``).

Metrics live in prometheus_client's default registry. With several uvicorn workers, set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory writable by the server: every worker
then records into files there and ``/metrics`` answers the sum over all workers, whichever
worker serves the scrape (prometheus_client's multiprocess mode; process and GC metrics
are not available in that mode).
"""

from __future__ import annotations

import os

from litestar import Response, get
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from drive import deferred_metrics
from drive.entrypoints.http.types import AnyRequest


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def metrics(request: AnyRequest) -> Response[bytes]:
    deferred_metrics.apply_waiting()  # this process's updates of the last few milliseconds
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(_registry()), media_type=content_type)
