"""Hostile input over real HTTP (issue 12, rows 4-9): a 4xx with the contract's body, never a 500,
and no answer names a storage key, a host or a directory.

Requests go out as raw bytes on a socket, so nothing a client library would refuse or
tidy up (invalid UTF-8, thousands of digits, odd headers) is kept from the server.
"""

from __future__ import annotations

import base64
import json
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.live import AUTH, TOKEN, ServerProcess, base_env
from tests.integration.servers.ftp import FtpServer

AUTH_LINE = f"Authorization: Bearer {TOKEN}\r\n".encode()
RAW = b"Accept: application/octet-stream\r\n"
DEEP_ARRAY = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000


class Answer:
    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}

    def error(self) -> dict[str, Any]:
        assert self.headers.get("content-type", "").startswith("application/json"), (self.status, self.body[:300])
        body = json.loads(self.body)
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
        return dict(body["error"])


def send(server: ServerProcess, request: bytes) -> Answer:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return Answer(received)


def request(
    server: ServerProcess, method: str, target: bytes, headers: bytes = b"", body: bytes | None = None
) -> Answer:
    head = method.encode() + b" " + target + b" HTTP/1.1\r\nHost: drive\r\nConnection: close\r\n" + AUTH_LINE
    if body is not None:
        head += b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    return send(server, head + headers + b"\r\n" + (body or b""))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("hostile")
    process = ServerProcess(base_env(root), cwd=root).start()
    process.root = root  # type: ignore[attr-defined]
    assert request(process, "PUT", b"/v1/blobs/known", body=b"hello world").status == 201
    yield process
    process.terminate()


def assert_4xx(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.error()["code"] == code


# Row 4 and kin: cursors that are not ones the service issued.
@pytest.mark.parametrize(
    "query",
    [b"cursor=%C3%A9", b"cursor=%FF", b"cursor=0", b"cursor=AAAA", b"cursor=" + b"A" * 5000, b"cursor=a%0Ab"],
)
def test_cursor(server: ServerProcess, query: bytes) -> None:
    assert_4xx(request(server, "GET", b"/v1/blobs?" + query), 400, "invalid_request")


# Row 5 and kin: ASCII digits only, bounded before converting.
@pytest.mark.parametrize(
    "value", [b"%C2%B2", b"%D9%A3", b"9" * 5000, b"0" * 5000 + b"1", b"1_0", b"+5", b"%201", b"0", b"1001", b"%FF"]
)
def test_limit(server: ServerProcess, value: bytes) -> None:
    assert_4xx(request(server, "GET", b"/v1/blobs?limit=" + value), 400, "invalid_request")


@pytest.mark.parametrize(
    "query", [b"limit=1&limit=2", b"limit=false&limit=", b"cursor=&cursor=YQ", b"prefix=a&prefix=b"]
)
def test_repeated_list_parameters(server: ServerProcess, query: bytes) -> None:
    assert_4xx(request(server, "GET", b"/v1/blobs?" + query), 400, "invalid_request")


def test_limit_with_leading_zeros_is_still_a_number(server: ServerProcess) -> None:
    answer = request(server, "GET", b"/v1/blobs?limit=0001")
    assert answer.status == 200
    assert len(json.loads(answer.body)["items"]) == 1


# Row 6 and kin: Range numbers of any length.
@pytest.mark.parametrize(
    ("range_", "status"),
    [
        (b"bytes=" + b"9" * 5000 + b"-", 416),
        (b"bytes=0-" + b"9" * 5000, 206),
        (b"bytes=-" + b"9" * 5000, 206),
        (b"bytes=" + b"0" * 5000 + b"1-", 206),
        (b"bytes=\xc2\xb2-", 200),  # not a range we serve: the whole blob, as the RFC allows
        (b"bytes=\xd9\xa3-", 200),
        (b"bytes=0-1,3-4", 200),
    ],
)
def test_range(server: ServerProcess, range_: bytes, status: int) -> None:
    answer = request(server, "GET", b"/v1/blobs/known", RAW + b"Range: " + range_ + b"\r\n")
    assert answer.status == status, answer.body[:300]
    if status == 416:
        assert answer.error()["code"] == "range_not_satisfiable"
        assert answer.headers["content-range"] == "bytes */11"
    else:
        assert answer.body in (b"hello world", b"ello world")


@pytest.mark.parametrize("value", [b"\xff\xfe", b'"a",' * 3000, b"W/", b",,,", b'"' * 5000])
def test_if_none_match_is_never_an_error(server: ServerProcess, value: bytes) -> None:
    answer = request(server, "GET", b"/v1/blobs/known", RAW + b"If-None-Match: " + value + b"\r\n")
    assert answer.status == 200 and answer.body == b"hello world"


@pytest.mark.parametrize(
    "value",
    [
        b"sha-256=:\xff:",
        b"sha-256=:" + b"A" * 5000 + b":",
        b"sha-256=:AAAA:",
        b"sha-256=AAAA",
        b"sha-256=:" + b"=" * 44 + b":",
        b"x" * 6000 + b", sha-256=:" + base64.b64encode(b"\0" * 32) + b":",
    ],
)
def test_content_digest(server: ServerProcess, value: bytes) -> None:
    answer = request(server, "PUT", b"/v1/blobs/digest", b"Content-Digest: " + value + b"\r\n", body=b"abc")
    assert_4xx(answer, 400, "invalid_request")


# Row 7: invalid UTF-8 in any part of a JSON body.
@pytest.mark.parametrize(
    "body",
    [
        b'{"id":"\xff","data":""}',
        b'{"id":"a","data":"\xff"}',
        b'{"id":"a\xc3","data":""}',
        b'{"id":"a","data":"","extra":"\xed\xa0\x80"}',  # an encoded surrogate
        b'{"id":"\\ud800","data":""}',  # a lone surrogate, escaped
        b"\xff",
    ],
)
def test_json_body_with_invalid_utf8(server: ServerProcess, body: bytes) -> None:
    answer = request(server, "POST", b"/v1/blobs", b"Content-Type: application/json\r\n", body)
    assert_4xx(answer, 400, "invalid_request")


# Row 8: absurd nesting, also where the field is ignored.
@pytest.mark.parametrize(
    "body",
    [
        b'{"id":"a","data":"","x":' + DEEP_ARRAY + b"}",
        b'{"id":"a","data":"","x":' + DEEP_OBJECT + b"}",
        DEEP_ARRAY,
        b'{"id":' + DEEP_ARRAY + b',"data":""}',
    ],
)
def test_deeply_nested_json(server: ServerProcess, body: bytes) -> None:
    answer = request(server, "POST", b"/v1/blobs", b"Content-Type: application/json\r\n", body)
    assert_4xx(answer, 400, "invalid_request")


# Ids: decoded once from the raw path, any malformed one is 400 invalid_id.
@pytest.mark.parametrize(
    "path", [b"/v1/blobs/%FF", b"/v1/blobs/%00", b"/v1/blobs/a%0Ab", b"/v1/blobs/%7F", b"/v1/blobs/" + b"a" * 5000]
)
@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE", "PUT"])
def test_malformed_ids(server: ServerProcess, path: bytes, method: str) -> None:
    answer = request(server, method, path, body=b"x" if method == "PUT" else None)
    assert answer.status == 400, answer.body[:300]
    if method != "HEAD":
        assert answer.error()["code"] == "invalid_id"


def test_declared_length_over_the_limit_is_413(server: ServerProcess) -> None:
    head = b"PUT /v1/blobs/big HTTP/1.1\r\nHost: drive\r\nConnection: close\r\n" + AUTH_LINE
    answer = send(server, head + b"Content-Length: 99999999999999\r\n\r\nabc")
    assert_4xx(answer, 413, "payload_too_large")


def test_no_request_above_gets_a_500(server: ServerProcess) -> None:
    """Runs last in this module: the server logged no error for any request above."""
    log = server.log.read_text()
    assert '"level":"ERROR"' not in log, log[-3000:]
    assert "Traceback" not in log


def _metadata_storage_key(root: Path, blob_id: str) -> str:
    with sqlite3.connect(root / "metadata.db", timeout=30) as conn:
        row = conn.execute("SELECT storage_key FROM drive_blobs WHERE id = ?", (blob_id,)).fetchone()
    assert row is not None
    return str(row[0])


def _log_lines(server: ServerProcess) -> list[dict[str, Any]]:
    lines = []
    for line in server.log.read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


# Row 9: bytes missing behind the service's back.
def test_missing_bytes_answer_names_no_storage_key_and_log_has_it(tmp_path: Path) -> None:
    server = ServerProcess(base_env(tmp_path), cwd=tmp_path).start()
    try:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as client:
            assert client.put("/v1/blobs/gone", content=b"soon missing").status_code == 201
            key = _metadata_storage_key(tmp_path, "gone")
            (tmp_path / "blobs" / "objects" / key[:2] / key).unlink()
            for headers in ({}, {"Accept": "application/octet-stream"}, {"Range": "bytes=0-3"}):
                answer = client.get("/v1/blobs/gone", headers={**headers, "X-Request-Id": "hostile-row-9"})
                assert answer.status_code == 503, answer.text
                assert answer.json()["error"]["code"] == "storage_unavailable"
                for secret in (key, str(tmp_path), "objects", "blobs/"):
                    assert secret not in answer.text, (secret, answer.text)
        # The operator still learns which key is missing, tied to the request.
        logged = [
            line for line in _log_lines(server) if line.get("request_id") == "hostile-row-9" and key in line["message"]
        ]
        assert logged, server.log.read_text()[-3000:]
    finally:
        server.terminate()


def test_ftp_failure_answer_names_no_host_or_directory(tmp_path: Path) -> None:
    with FtpServer() as ftp:
        base_dir = "/drive-secret-base"
        env = base_env(
            tmp_path,
            STORAGE="ftp",
            FTP_HOST=ftp.host,
            FTP_PORT=str(ftp.port),
            FTP_USER=ftp.user,
            FTP_PASSWORD=ftp.password,
            FTP_BASE_DIR=base_dir,
            FTP_TIMEOUT="5",
        )
        server = ServerProcess(env, cwd=tmp_path).start()
        try:
            with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as client:
                assert client.put("/v1/blobs/on-ftp", content=b"bytes").status_code == 201
                ftp.stop()
                answers = [
                    client.put("/v1/blobs/later", content=b"more"),
                    client.get("/v1/blobs/on-ftp"),
                    client.get("/v1/blobs/on-ftp", headers={"Accept": "application/octet-stream"}),
                ]
                for answer in answers:
                    assert answer.status_code == 503, answer.text
                    assert answer.json()["error"]["code"] == "storage_unavailable"
                    for secret in (ftp.host, str(ftp.port), base_dir, "FTP_", str(tmp_path)):
                        assert secret not in answer.text, (secret, answer.text)
        finally:
            server.terminate()


@pytest.mark.parametrize(
    ("target", "methods"),
    [
        (b"/v1/blobs/x", {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}),
        (b"/v1/blobs/a/b", {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}),
        (b"/v1/blobs", {"GET", "POST", "OPTIONS"}),
    ],
)
def test_options_lists_every_method_of_the_route(server: ServerProcess, target: bytes, methods: set[str]) -> None:
    """Row 12: the blob route once answered ``Allow: OPTIONS, PUT`` although it also has GET, HEAD, DELETE."""
    answer = request(server, "OPTIONS", target)
    assert answer.status in (200, 204), (answer.status, answer.body[:300])
    assert {m.strip() for m in answer.headers["allow"].split(",")} == methods
