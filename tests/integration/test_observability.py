"""Probes, metrics, request ids and JSON logs, over real HTTP."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from drive.entrypoints.logs import JsonFormatter
from tests.integration.live import AUTH, READ_TOKEN, TOKEN, LiveServer, ServerProcess, base_env
from tests.integration.servers.ftp import FtpServer

HEX_ID = re.compile(r"[0-9a-f]{32}")
BLOB_ROUTE = "/v1/blobs/{blob_path}"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(base_env(tmp_path, LOG_LEVEL="INFO")).start()  # access lines are INFO
    live.root = tmp_path  # type: ignore[attr-defined]
    yield live
    live.stop()


def test_probes_need_no_token_and_every_response_carries_a_request_id(server: LiveServer) -> None:
    with server.client() as client:
        health = client.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ok", "checks": {"metadata": "ok", "fs": "ok"}}

        seen = set()
        for response in (
            health,
            ready,
            client.get("/metrics"),
            client.get("/v1/blobs/x"),  # 401 from the guard
            client.get("/nowhere", headers=AUTH),  # 404 from routing
            client.post("/v1/blobs", headers=AUTH, content=b"not json"),  # 400 from a handler
        ):
            assert HEX_ID.fullmatch(response.headers["x-request-id"]), response
            seen.add(response.headers["x-request-id"])
        assert len(seen) == 6

        kept = client.get("/v1/blobs/x", headers={"X-Request-ID": "lb-7f3a/00:1"})
        assert kept.status_code == 401
        assert kept.headers["x-request-id"] == "lb-7f3a/00:1"
        for unsafe in ("x" * 129, "two words", "tab\there"):
            replaced = client.get("/healthz", headers={"X-Request-ID": unsafe})
            assert HEX_ID.fullmatch(replaced.headers["x-request-id"])


def test_readyz_is_503_naming_the_backend_that_is_down_and_never_hangs(tmp_path: Path) -> None:
    with FtpServer() as ftp:
        env = base_env(
            tmp_path,
            FTP_HOST=ftp.host,
            FTP_PORT=str(ftp.port),
            FTP_USER=ftp.user,
            FTP_PASSWORD=ftp.password,
            FTP_TIMEOUT="30",  # longer than /readyz waits: the probe must bound itself
        )
        live = LiveServer(env).start()  # STORAGE=fs; ftp is configured alongside
        try:
            with live.client() as client:
                ready = client.get("/readyz")
                assert ready.status_code == 200, ready.text
                assert ready.json()["checks"] == {"metadata": "ok", "fs": "ok", "ftp": "ok"}

                ftp.stop()  # refused
                down = client.get("/readyz")
                assert down.status_code == 503
                body = down.json()
                assert body["error"]["code"] == "storage_unavailable"
                assert "ftp" in body["error"]["message"]
                assert "fs" not in body["error"]["message"]
                assert body["checks"] == {"metadata": "ok", "fs": "ok", "ftp": "unavailable"}

                # Accepts connections, never greets: an FTP server that hangs.
                with socket.socket() as silent:
                    silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    silent.bind((ftp.host, ftp.port))
                    silent.listen(16)
                    started = time.monotonic()
                    hung = client.get("/readyz")
                    assert time.monotonic() - started < 10
                assert hung.status_code == 503
                assert hung.json()["checks"]["ftp"] == "timeout"
                assert "ftp" in hung.json()["error"]["message"]

                ftp.start()
                deadline = time.monotonic() + 20
                while (ready := client.get("/readyz")).status_code != 200:
                    assert time.monotonic() < deadline, ready.text
                    time.sleep(0.2)
        finally:
            live.stop()


def test_metrics_count_requests_bytes_and_backend_operations(server: LiveServer) -> None:
    data = os.urandom(300_000)
    with server.client(headers=AUTH) as client:
        before = scrape(client)
        assert client.put("/v1/blobs/metered-blob", content=data).status_code == 201
        got = client.get("/v1/blobs/metered-blob", headers={"Accept": "application/octet-stream"})
        assert got.content == data
        assert client.get("/v1/blobs/never-stored").status_code == 404
        assert client.get("/v1/blobs/metered-blob", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/no/such/route").status_code == 404

        # A committed blob whose bytes vanished from the backend: a backend error.
        assert client.put("/v1/blobs/vanishing", content=b"soon gone").status_code == 201
        objects = Path(server.root, "blobs", "objects")  # type: ignore[attr-defined]
        (gone,) = [p for p in objects.rglob("*") if p.is_file() and p.read_bytes() == b"soon gone"]
        gone.unlink()
        assert client.get("/v1/blobs/vanishing").status_code == 503
        after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("drive_http_requests_total", method="PUT", route=BLOB_ROUTE, status="201") == 2
    assert delta("drive_http_requests_total", method="GET", route=BLOB_ROUTE, status="200") == 1
    assert delta("drive_http_requests_total", method="GET", route=BLOB_ROUTE, status="404") == 1
    assert delta("drive_http_requests_total", method="GET", route=BLOB_ROUTE, status="401") == 1
    assert delta("drive_http_requests_total", method="GET", route=BLOB_ROUTE, status="503") == 1
    assert delta("drive_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert delta("drive_http_request_duration_seconds_count", method="PUT", route=BLOB_ROUTE, status="201") == 2
    assert delta("drive_http_request_duration_seconds_sum", method="PUT", route=BLOB_ROUTE, status="201") > 0
    assert delta("drive_http_request_body_bytes_total", method="PUT", route=BLOB_ROUTE) == len(data) + 9
    assert delta("drive_http_response_body_bytes_total", method="GET", route=BLOB_ROUTE) > len(data)

    ok = {"backend": "fs", "outcome": "ok"}
    assert delta("drive_backend_operation_duration_seconds_count", operation="write", **ok) == 2
    assert delta("drive_backend_operation_duration_seconds_count", operation="read", **ok) == 1
    assert delta("drive_backend_bytes_total", backend="fs", direction="write") == len(data) + 9
    assert delta("drive_backend_bytes_total", backend="fs", direction="read") == len(data)
    assert delta("drive_backend_operation_errors_total", backend="fs", operation="read", error="missing") == 1
    assert delta("drive_backend_operation_duration_seconds_count", backend="fs", operation="read", outcome="error") == 1

    # Route labels are templates: no id ever becomes a label value.
    routes = {dict(labels).get("route") for _, labels in after} - {None}
    assert not any("metered" in route or "vanishing" in route or "no/such" in route for route in routes if route)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_logs_are_json_lines_with_request_ids_and_never_a_token(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    # In-process, the test runner owns the root logger (configure_logging adds no stderr
    # handler beside it): the lines are the records caplog holds, through the JSON formatter.
    caplog.set_level(logging.INFO)
    formatter = JsonFormatter()
    with server.client(headers=AUTH) as client:
        client.put("/v1/blobs/logged", content=b"12345", headers={"X-Request-ID": "req-put-1"})
        client.get("/v1/blobs/logged", headers={"X-Request-ID": "req-get-1", "Accept": "application/octet-stream"})
        client.get(f"/v1/blobs/{TOKEN}", headers={"X-Request-ID": "req-token-path"})
        client.get("/v1/blobs", params={"cursor": READ_TOKEN}, headers={"X-Request-ID": "req-token-query"})
        client.get("/v1/blobs/logged", headers={"Authorization": f"Bearer {READ_TOKEN}x", "X-Request-ID": "req-401"})
        # Different ids must look different in the log: the raw target, never a normalised path.
        client.put("/v1/blobs//abs", content=b"1", headers={"X-Request-ID": "req-abs"})
        client.put("/v1/blobs/abs", content=b"2", headers={"X-Request-ID": "req-rel"})
        client.get("/v1/blobs/a%2Fb", headers={"X-Request-ID": "req-encoded"})

    wanted = {"req-put-1", "req-get-1", "req-token-path", "req-token-query", "req-401", "req-abs", "req-rel"}
    wanted |= {"req-encoded"}
    captured = ""
    access: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 10
    while not wanted <= set(access):  # lines are written just after each response
        assert time.monotonic() < deadline, access
        time.sleep(0.05)
        captured = "\n".join(formatter.format(record) for record in caplog.records)
        access = {line["request_id"]: line for line in json_lines(captured) if line["logger"] == "drive.access"}

    for line in json_lines(captured):  # every line is JSON (json_lines would raise otherwise)
        assert {"ts", "level", "logger", "message"} <= set(line)
    assert TOKEN not in captured
    assert READ_TOKEN not in captured

    put = access["req-put-1"]
    assert put["method"] == "PUT"
    assert put["route"] == BLOB_ROUTE
    assert put["path"] == "/v1/blobs/logged"
    assert put["status"] == 201
    assert put["bytes_in"] == 5
    assert put["duration_ms"] >= 0
    assert put["client"] == "127.0.0.1"
    assert access["req-get-1"]["bytes_out"] == 5
    assert access["req-token-path"]["path"] == "/v1/blobs/[redacted]"
    assert access["req-401"]["status"] == 401
    assert access["req-abs"]["path"] == "/v1/blobs//abs"
    assert access["req-rel"]["path"] == "/v1/blobs/abs"
    assert access["req-encoded"]["path"] == "/v1/blobs/a%2Fb"


def test_several_workers_share_metrics_and_write_only_json(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = base_env(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), LOG_LEVEL="INFO")
    server = ServerProcess(env, tmp_path, workers=2).start()
    try:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as client:
            for _ in range(12):
                # A new connection each time, so both workers take requests.
                assert client.get("/v1/blobs", headers={"Connection": "close"}).status_code == 200
            client.headers["Connection"] = "close"  # scrapes land on either worker too

            def total() -> float:
                return value(scrape(client), "drive_http_requests_total", method="GET", route="/v1/blobs", status="200")

            # A request is counted once its answer is out: the last one may still be on its way.
            deadline = time.monotonic() + 5
            while total() < 12 and time.monotonic() < deadline:
                time.sleep(0.05)
            totals = [total() for _ in range(4)]
    finally:
        assert server.terminate() in (0, -15)
    assert totals == [12.0] * 4  # whichever worker answers the scrape
    lines = json_lines(server.log.read_text())
    assert sum(line["logger"] == "drive.access" for line in lines) == 12  # scrapes log at DEBUG
    assert len({line["message"] for line in lines if "Started server process" in line["message"]}) == 2
    assert TOKEN not in server.log.read_text()
