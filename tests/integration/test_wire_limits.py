"""Limits on the wire, tried with raw sockets against a real ``drive serve`` process.

Every limit is set short here (seconds, not tens of seconds) so that each test is quick;
every socket has a timeout and every wait a deadline. Loopback only.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.live import AUTH, ServerProcess, base_env

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
KEEPALIVE_TIMEOUT = 1.0
MAX_HEADER_BYTES = 16 * 1024
SLACK = 2.5  # seconds a busy 2-core machine may add to a timer


def limits_env(tmp: Path, **extra: str) -> dict[str, str]:
    settings = {
        "HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
        "KEEPALIVE_TIMEOUT_SECONDS": str(KEEPALIVE_TIMEOUT),
        "MAX_CONNECTIONS": "200",
        "LOG_LEVEL": "WARNING",
    }
    return base_env(tmp, **{**settings, **extra})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("wire")
    process = ServerProcess(limits_env(tmp), tmp).start()
    try:
        yield process
    finally:
        process.kill()


def connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def error_code(self) -> str:
        assert self.headers["content-type"] == "application/json"
        code: str = json.loads(self.body)["error"]["code"]
        return code


def read_answer(sock: socket.socket, within: float = 10) -> Answer:
    """One HTTP/1.1 answer with a Content-Length body, read within ``within`` seconds."""
    (answer,) = read_answers(sock, 1, within)
    return answer


def read_answers(sock: socket.socket, count: int, within: float = 10) -> list[Answer]:
    """``count`` answers in a row (to pipelined requests), each with a Content-Length body."""
    sock.settimeout(within)
    data = b""
    answers: list[Answer] = []

    def more() -> bytes:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(answers)} answers: {data[:200]!r}"
        return chunk

    while len(answers) < count:
        while b"\r\n\r\n" not in data:
            data += more()
        head, _, data = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        length = int(headers.get("content-length", "0"))
        while len(data) < length:
            data += more()
        answers.append(Answer(int(status_line.split()[1]), headers, data[:length]))
        data = data[length:]
    return answers


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True once the server closes ``sock`` (EOF or reset) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], left)
        if readable:
            try:
                if not sock.recv(65536):
                    return True
            except (ConnectionResetError, BrokenPipeError):
                return True
    return False


def head_of(size: int, target: bytes = b"/healthz") -> bytes:
    """A ``GET`` whose request line and headers are exactly ``size`` bytes, final blank line included."""
    start = b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: "
    pad = size - len(start) - len(b"\r\n\r\n")
    assert pad >= 0
    return start + b"a" * pad + b"\r\n\r\n"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_64_mib_header_is_refused_at_once_without_memory(server: ServerProcess) -> None:
    assert server.process is not None
    before = rss_kib(server.process.pid)
    sock = connect(server)
    sent = [0]

    def send_forever() -> None:
        block = b"a" * (1024 * 1024)
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
            for _ in range(64):
                sock.sendall(block)
                sent[0] += len(block)
        except OSError:
            pass  # the server stopped listening to us, as it should

    sender = threading.Thread(target=send_forever, daemon=True)
    started = time.monotonic()
    sender.start()
    try:
        answer = read_answer(sock, within=10)
        took = time.monotonic() - started
        sender.join(timeout=20)
    finally:
        sock.close()
    assert answer.status == 431
    assert answer.error_code() == "headers_too_large"
    assert answer.headers["connection"] == "close"
    assert took < 5
    assert not sender.is_alive()
    grown = rss_kib(server.process.pid) - before
    assert grown < 4 * 1024, f"the server grew by {grown} KiB"
    # The server still serves.
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200


def test_a_64_mib_trailer_is_refused_without_memory(server: ServerProcess) -> None:
    assert server.process is not None
    before = rss_kib(server.process.pid)
    token = AUTH["Authorization"].encode()
    sock = connect(server)

    def send_forever() -> None:
        block = b"t" * (1024 * 1024)
        try:
            sock.sendall(
                b"PUT /v1/blobs/trailer HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + token + b"\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: "
            )
            for _ in range(64):
                sock.sendall(block)
        except OSError:
            pass

    sender = threading.Thread(target=send_forever, daemon=True)
    sender.start()
    try:
        sock.settimeout(10)
        try:
            answer = sock.recv(65536)  # a 431, or nothing (the request in flight sees a disconnect)
        except ConnectionResetError:
            answer = b""
        sender.join(timeout=20)
    finally:
        sock.close()
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert not sender.is_alive()
    grown = rss_kib(server.process.pid) - before
    assert grown < 4 * 1024, f"the server grew by {grown} KiB"
    assert httpx.get(f"{server.url}/v1/blobs/trailer", headers=AUTH, timeout=10).status_code == 404


def test_a_chunked_body_with_small_trailers_is_stored_whole(server: ServerProcess) -> None:
    token = AUTH["Authorization"].encode()
    data = bytes(range(256)) * 4096  # 1 MiB
    parts = (data[i : i + 3000] for i in range(0, len(data), 3000))
    chunks = b"".join(b"%x\r\n" % len(part) + part + b"\r\n" for part in parts)
    with connect(server) as sock:
        sock.sendall(
            b"PUT /v1/blobs/chunked HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + token + b"\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\nX-Trailer: " + b"t" * 8000 + b"\r\n\r\n"
        )
        assert read_answer(sock).status == 201
    stored = httpx.get(f"{server.url}/v1/blobs/chunked", headers={**AUTH, "Accept": "application/octet-stream"})
    assert stored.content == data


@pytest.mark.parametrize(
    ("size", "status"),
    [(15 * 1024, 200), (MAX_HEADER_BYTES, 200), (MAX_HEADER_BYTES + 1, 431), (17 * 1024, 431)],
)
def test_the_head_limit_is_exact(server: ServerProcess, size: int, status: int) -> None:
    with connect(server) as sock:
        sock.sendall(head_of(size))
        answer = read_answer(sock)
    assert answer.status == status
    if status == 431:
        assert answer.error_code() == "headers_too_large"


def test_the_head_limit_holds_when_the_head_trickles_in(server: ServerProcess) -> None:
    request = head_of(MAX_HEADER_BYTES + 1)
    with connect(server) as sock:
        for offset in range(0, len(request), 1000):
            sock.sendall(request[offset : offset + 1000])
        answer = read_answer(sock)
    assert answer.status == 431


def test_a_second_request_on_a_connection_gets_its_own_limit(server: ServerProcess) -> None:
    with connect(server) as sock:
        for _ in range(3):  # each head under the limit, together far over it
            sock.sendall(head_of(MAX_HEADER_BYTES - 100))
            assert read_answer(sock).status == 200
        sock.sendall(head_of(MAX_HEADER_BYTES + 100))
        assert read_answer(sock).status == 431


def test_a_pipelined_head_is_counted_too(server: ServerProcess) -> None:
    token = AUTH["Authorization"].encode()
    body = b"p" * 65536
    put = (
        b"PUT /v1/blobs/pipelined HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + token + b"\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body
    with connect(server) as sock:
        sock.sendall(head_of(200) + head_of(MAX_HEADER_BYTES - 100) + put + head_of(MAX_HEADER_BYTES + 4096))
        answers = read_answers(sock, 4)
        assert [answer.status for answer in answers] == [200, 200, 201, 431]
        answer = answers[-1]
        assert answer.error_code() == "headers_too_large"
        assert closed_by_server(sock, within=SLACK + 2)


def test_slowloris_connections_are_closed_after_the_header_timeout(server: ServerProcess) -> None:
    socks = [connect(server) for _ in range(50)]
    started = time.monotonic()
    closed_at: dict[int, float] = {}
    try:
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            sock.setblocking(False)
        next_line = started + 0.5
        while len(closed_at) < len(socks) and time.monotonic() - started < HEADER_TIMEOUT + SLACK + 2:
            now = time.monotonic()
            if now >= next_line:  # one more header line on every open connection
                for i, sock in enumerate(socks):
                    if i not in closed_at:
                        try:
                            sock.send(b"X-Slow: 1\r\n")
                        except OSError:
                            closed_at[i] = now - started
                next_line += 0.5
            open_socks = [sock for i, sock in enumerate(socks) if i not in closed_at]
            readable, _, _ = select.select(open_socks, [], [], max(0.0, min(0.1, next_line - now)))
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                assert not data, f"an answer to a head never finished: {data!r}"
                closed_at[socks.index(sock)] = time.monotonic() - started
    finally:
        for sock in socks:
            sock.close()
    assert len(closed_at) == len(socks), f"{len(socks) - len(closed_at)} still open"
    assert min(closed_at.values()) >= HEADER_TIMEOUT * 0.8  # held until the timeout, not refused at once
    assert max(closed_at.values()) < HEADER_TIMEOUT + SLACK


def test_a_connection_that_sends_nothing_is_closed(server: ServerProcess) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        assert closed_by_server(sock, within=HEADER_TIMEOUT + SLACK)
        assert time.monotonic() - started >= HEADER_TIMEOUT * 0.8


def test_an_idle_keep_alive_connection_is_closed(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = read_answer(sock)
        assert answer.status == 200 and "connection" not in answer.headers  # kept alive
        idle_since = time.monotonic()
        assert closed_by_server(sock, within=KEEPALIVE_TIMEOUT + SLACK)
        assert time.monotonic() - idle_since >= KEEPALIVE_TIMEOUT * 0.8


def test_a_later_head_that_never_ends_is_closed_too(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_answer(sock).status == 200
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        for _ in range(int((HEADER_TIMEOUT + SLACK) / 0.3)):  # fast enough to keep keep-alive away
            if closed_by_server(sock, within=0.3):
                return
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except OSError:
                return
    raise AssertionError("the connection stayed open")


def test_a_stalled_body_is_abandoned_and_nothing_is_kept(server: ServerProcess) -> None:
    staging = Path(base_env(server.cwd)["FS_BASE_PATH"]) / "staging"
    token = AUTH["Authorization"].encode()
    with connect(server) as sock:
        sock.sendall(
            b"PUT /v1/blobs/stalled HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + token + b"\r\n"
            b"Content-Length: 100000\r\n\r\n" + b"x" * 70000
        )
        started = time.monotonic()
        answer = read_answer(sock, within=BODY_TIMEOUT + SLACK + 5)
        took = time.monotonic() - started
        assert answer.status == 408
        assert answer.error_code() == "request_timeout"
        assert answer.headers["connection"] == "close"
        assert closed_by_server(sock, within=SLACK)
    assert BODY_TIMEOUT * 0.8 <= took < BODY_TIMEOUT + SLACK + 5
    assert httpx.get(f"{server.url}/v1/blobs/stalled", headers=AUTH, timeout=10).status_code == 404
    assert [path for path in staging.rglob("*") if path.is_file()] == []


def test_a_body_nobody_reads_any_more_cannot_hold_the_connection(server: ServerProcess) -> None:
    with connect(server) as sock:  # no token: answered at once, the body left unread
        sock.sendall(b"PUT /v1/blobs/unread HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\nxx")
        assert read_answer(sock).status == 401
        time.sleep(KEEPALIVE_TIMEOUT / 2)
        sock.sendall(b"x")  # one more byte, then nothing
        started = time.monotonic()
        assert closed_by_server(sock, within=BODY_TIMEOUT + SLACK)
        assert time.monotonic() - started >= min(BODY_TIMEOUT, KEEPALIVE_TIMEOUT) * 0.8


def test_a_connection_idle_after_the_rest_of_an_unread_body_is_closed(server: ServerProcess) -> None:
    with connect(server) as sock:  # no token: answered at once, the body left unread
        sock.sendall(b"PUT /v1/blobs/unread HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\n\r\nxx")
        assert read_answer(sock).status == 401
        sock.sendall(b"xx")  # the body ends: the connection is idle, between requests
        started = time.monotonic()
        assert closed_by_server(sock, within=KEEPALIVE_TIMEOUT + SLACK)
        assert time.monotonic() - started >= KEEPALIVE_TIMEOUT * 0.8


def test_a_body_that_keeps_coming_is_not_cut(server: ServerProcess) -> None:
    token = AUTH["Authorization"].encode()
    with connect(server) as sock:
        sock.sendall(
            b"PUT /v1/blobs/slow-but-steady HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + token + b"\r\n"
            b"Content-Length: 5\r\n\r\n"
        )
        for byte in b"abcde":  # 2.5 s in all, each byte well within the body timeout
            time.sleep(BODY_TIMEOUT / 2)
            sock.sendall(bytes([byte]))
        assert read_answer(sock).status == 201


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /v1/blobs/\xff\xfe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /healthz\x01 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "PUT /v1/blobs/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ²\r\n\r\n".encode(),
        b"PUT /v1/blobs/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
    ],
    ids=["non-ascii-target", "control-in-target", "superscript-length", "length-over-2**64", "garbage"],
)
def test_a_request_the_parser_refuses_gets_the_json_400(server: ServerProcess, request_bytes: bytes) -> None:
    with connect(server) as sock:
        sock.sendall(request_bytes)
        answer = read_answer(sock)
    assert answer.status == 400
    assert answer.error_code() == "invalid_request"


def test_connections_beyond_the_cap_get_503(tmp_path: Path) -> None:
    server = ServerProcess(limits_env(tmp_path, MAX_CONNECTIONS="4", HEADER_TIMEOUT_SECONDS="10"), tmp_path).start()
    try:
        time.sleep(0.5)  # the readiness probe's connection is gone
        held = [connect(server) for _ in range(4)]
        time.sleep(0.5)  # all four accepted
        with connect(server) as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = read_answer(extra)
            assert answer.status == 503
            assert answer.error_code() == "storage_unavailable"
            assert json.loads(answer.body)["error"]["message"] == "server busy; retry"
            assert answer.headers["retry-after"] == "1"
            assert closed_by_server(extra, within=SLACK)
        # The four held connections are served as usual.
        held[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_answer(held[0]).status == 200
        for sock in held:
            sock.close()
        time.sleep(0.5)
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200  # room again
    finally:
        server.kill()


def test_the_limits_hold_in_every_worker(tmp_path: Path) -> None:
    server = ServerProcess(limits_env(tmp_path, MAX_HEADER_BYTES="1024"), tmp_path, workers=2).start()
    try:
        for _ in range(6):  # connections spread over both workers
            with connect(server) as sock:
                sock.sendall(head_of(2048))
                answer = read_answer(sock)
            assert answer.status == 431
            with connect(server) as sock:
                sock.sendall(head_of(1000))
                assert read_answer(sock).status == 200
    finally:
        server.terminate(timeout=30)  # SIGTERM: uvicorn stops its workers too
