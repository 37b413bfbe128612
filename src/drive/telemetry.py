"""Every Prometheus metric Drive exports, defined once.

The HTTP layer records requests and the metered backend layer records backend calls;
both sit on the same latency buckets so the two line up on one dashboard. Metrics live
in prometheus_client's default registry (see drive.entrypoints.http.metrics for
multi-worker servers).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)  # seconds

HTTP_REQUESTS = Counter(
    "drive_http_requests",
    "HTTP requests served, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "drive_http_request_duration_seconds",
    "Time from the request's arrival to the last byte of its response.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
HTTP_BYTES_IN = Counter(
    "drive_http_request_body_bytes",
    "Request body bytes received.",
    ["method", "route"],
)
HTTP_BYTES_OUT = Counter(
    "drive_http_response_body_bytes",
    "Response body bytes sent.",
    ["method", "route"],
)

BACKEND_DURATION = Histogram(
    "drive_backend_operation_duration_seconds",
    "Backend operation time (streams: until fully consumed), by backend, operation and outcome.",
    ["backend", "operation", "outcome"],
    buckets=LATENCY_BUCKETS,
)
BACKEND_ERRORS = Counter(
    "drive_backend_operation_errors",
    "Backend operations that failed on the backend's side, by kind: unavailable, missing, unexpected.",
    ["backend", "operation", "error"],
)
BACKEND_BYTES = Counter(
    "drive_backend_bytes",
    "Bytes written to or read from a backend.",
    ["backend", "direction"],
)
