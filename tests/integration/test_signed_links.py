"""Signed links over real HTTP: issue, use, expire, tamper, rotate keys, constraints, start-up checks."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import httpx
import pytest
from dependency_injector import providers

from drive.container import Container
from tests.integration.live import AUTH, READ_TOKEN, LiveServer, base_env
from tests.integration.test_http_seed_routes import assert_error, url_of

NEW_SECRET = "new-secret-0123456789-0123456789-abcdef"
OLD_SECRET = "old-secret-9876543210-9876543210-fedcba"
BOTH_KEYS = f"new:{NEW_SECRET},old:{OLD_SECRET}"
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
# Frozen at the real time (to the second), so that links made by `drive link` verify too.
START = datetime.now(UTC).replace(microsecond=0)


class FrozenClock:
    """The service's clock, moved by the test: expiry is checked to the second without sleeping."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)


def frozen(clock: FrozenClock) -> object:
    def configure(container: Container) -> None:
        container.clock.override(providers.Object(clock))

    return configure


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("links")


@pytest.fixture(scope="module")
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture(scope="module")
def server(root: Path, clock: FrozenClock) -> Iterator[LiveServer]:
    """Signs with ``new``, still verifies ``old``: the middle of a key rotation."""
    live = LiveServer(base_env(root, SIGNING_KEYS=BOTH_KEYS), frozen(clock)).start()  # type: ignore[arg-type]
    yield live
    live.stop()


@pytest.fixture(scope="module")
def old_server(root: Path, clock: FrozenClock) -> Iterator[LiveServer]:
    """A replica on the same store from before the rotation: it signs with ``old``."""
    live = LiveServer(base_env(root, SIGNING_KEYS=f"old:{OLD_SECRET}"), frozen(clock)).start()  # type: ignore[arg-type]
    yield live
    live.stop()


@pytest.fixture(scope="module")
def rotated_server(root: Path, clock: FrozenClock) -> Iterator[LiveServer]:
    """The same store once ``old`` has been removed: its links are revoked."""
    live = LiveServer(base_env(root, SIGNING_KEYS=f"new:{NEW_SECRET}"), frozen(clock)).start()  # type: ignore[arg-type]
    yield live
    live.stop()


@pytest.fixture(scope="module")
def keyless_server(root: Path) -> Iterator[LiveServer]:
    live = LiveServer(base_env(root)).start()
    yield live
    live.stop()


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


def uid(prefix: str = "link-") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def stored(client: httpx.Client, data: bytes = b"hello, link", prefix: str = "link-") -> str:
    blob_id = uid(prefix)
    assert client.put(url_of(blob_id), content=data, headers=AUTH).status_code == 201
    return blob_id


def make_link(client: httpx.Client, headers: dict[str, str] | None = None, **fields: object) -> str:
    response = client.post("/v1/links", json=fields, headers=AUTH if headers is None else headers)
    assert response.status_code == 201, response.text
    return str(response.json()["url"])


def with_params(url: str, **changes: str | None) -> str:
    """The link with query parameters changed (``None`` removes one)."""
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    for name, value in changes.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    return f"{parts.path}?{urlencode(params, quote_via=quote)}"


def refused(response: httpx.Response, says: str) -> None:
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    assert says in response.json()["error"]["message"], response.json()


# -- issuing ------------------------------------------------------------------------------


def test_issued_link_is_a_path_with_its_expiry(client: httpx.Client, clock: FrozenClock) -> None:
    blob_id = "shared/report 2030 ü?#%.pdf"
    response = client.post("/v1/links", json={"id": blob_id, "method": "GET", "expires_in": 90}, headers=AUTH)
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"url", "method", "expires_at"}
    assert body["method"] == "GET"
    assert body["expires_at"] == (clock.now + timedelta(seconds=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    path, _, query = body["url"].partition("?")
    assert path == url_of(blob_id)  # the id percent-encoded; no host: links survive proxies
    params = dict(parse_qsl(query))
    assert params["key"] == "new"  # the first key signs
    assert params["expires"] == str(int(clock.now.timestamp()) + 90)
    assert NEW_SECRET not in body["url"] and OLD_SECRET not in body["url"]


def test_default_expiry_is_an_hour(client: httpx.Client, clock: FrozenClock) -> None:
    body = client.post("/v1/links", json={"id": "x", "method": "PUT"}, headers=AUTH).json()
    assert body["expires_at"] == (clock.now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"id": "", "method": "GET"}, "invalid_id"),
        ({"id": "a\x00b", "method": "GET"}, "invalid_id"),
        ({"id": "é" * 600, "method": "GET"}, "invalid_id"),
        ({"method": "GET"}, "invalid_request"),
        ({"id": "x"}, "invalid_request"),
        ({"id": "x", "method": "DELETE"}, "invalid_request"),
        ({"id": "x", "method": "get"}, "invalid_request"),
        ({"id": "x", "method": "GET", "expires_in": 0}, "invalid_request"),
        ({"id": "x", "method": "GET", "expires_in": 604801}, "invalid_request"),
        ({"id": "x", "method": "GET", "expires_in": "60"}, "invalid_request"),
        ({"id": "x", "method": "GET", "expires_in": 1.5}, "invalid_request"),
        ({"id": "x", "method": "GET", "max_size": 10}, "invalid_request"),
        ({"id": "x", "method": "GET", "content_type": "text/plain"}, "invalid_request"),
        ({"id": "x", "method": "PUT", "max_size": -1}, "invalid_request"),
        ({"id": "x", "method": "PUT", "max_size": True}, "invalid_request"),
        ({"id": "x", "method": "PUT", "max_size": None}, "invalid_request"),
        ({"id": "x", "method": "PUT", "content_type": None}, "invalid_request"),
        ({"id": "x", "method": "PUT", "content_type": "text"}, "invalid_request"),
        ({"id": "x", "method": "PUT", "content_type": "text/plain\r\nX: y"}, "invalid_request"),
        ({"id": "x", "method": "PUT", "content_type": "a/" + "b" * 254}, "invalid_request"),
    ],
)
def test_invalid_requests_for_a_link(client: httpx.Client, fields: dict[str, object], code: str) -> None:
    assert_error(client.post("/v1/links", json=fields, headers=AUTH), 400, code)


def test_a_body_that_is_not_json(client: httpx.Client) -> None:
    assert_error(client.post("/v1/links", content=b"{nope", headers=AUTH), 400, "invalid_request")
    assert_error(client.post("/v1/links", content=b"[]", headers=AUTH), 400, "invalid_request")
    invalid_utf8 = b'{"id": "x", "method": "GET", "extra": "\xff"}'
    assert_error(client.post("/v1/links", content=invalid_utf8, headers=AUTH), 400, "invalid_request")
    deep = b'{"id": "x", "method": "GET", "extra": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert_error(client.post("/v1/links", content=deep, headers=AUTH), 400, "invalid_request")
    assert_error(client.post("/v1/links", content=b" " * 20000, headers=AUTH), 413, "payload_too_large")


def test_expires_in_bounds_are_accepted(client: httpx.Client) -> None:
    for seconds in (1, 604800, 60.0):  # JSON Schema's integers include 60.0
        make_link(client, id="x", method="GET", expires_in=seconds)
    make_link(client, id="x", method="PUT", max_size=10.0)


def test_making_a_link_needs_a_token(client: httpx.Client) -> None:
    refused(client.post("/v1/links", json={"id": "x", "method": "GET"}), "bearer token")


def test_read_token_makes_get_links_only(client: httpx.Client) -> None:
    blob_id = stored(client)
    url = make_link(client, READ, id=blob_id, method="GET")
    assert client.get(url).content == b"hello, link"
    response = client.post("/v1/links", json={"id": blob_id, "method": "PUT"}, headers=READ)
    assert_error(response, 403, "forbidden")


def test_without_signing_keys_links_are_refused(keyless_server: LiveServer, client: httpx.Client) -> None:
    blob_id = stored(client)
    link = make_link(client, id=blob_id, method="GET")  # valid on the servers with the keys
    with keyless_server.client() as other:
        response = other.post("/v1/links", json={"id": blob_id, "method": "GET"}, headers=AUTH)
        assert_error(response, 403, "forbidden")
        assert "SIGNING_KEYS" in response.json()["error"]["message"]
        refused(other.get(link), "SIGNING_KEYS")
        assert other.get(url_of(blob_id), headers=AUTH).status_code == 200  # tokens still work


# -- using GET links ----------------------------------------------------------------------


def test_get_link_serves_raw_bytes_head_and_json(client: httpx.Client) -> None:
    blob_id = stored(client, b"raw bytes for a browser")
    url = make_link(client, id=blob_id, method="GET")
    response = client.get(url)  # no Authorization
    assert response.status_code == 200
    assert response.content == b"raw bytes for a browser"
    assert response.headers["content-length"] == "23"
    head = client.head(url)
    assert head.status_code == 200
    assert head.headers["content-length"] == "23"
    assert head.headers["etag"] == response.headers["etag"]
    as_json = client.get(url, headers={"Accept": "application/json"})
    assert as_json.status_code == 200
    assert as_json.json()["id"] == blob_id and as_json.json()["size"] == "23"
    ranged = client.get(url, headers={"Range": "bytes=4-8"})
    assert ranged.status_code == 206 and ranged.content == b"bytes"
    assert client.get(url, headers={"If-None-Match": response.headers["etag"]}).status_code == 304


def test_get_link_for_a_missing_blob_is_not_found(client: httpx.Client) -> None:
    url = make_link(client, id=uid(), method="GET")
    assert_error(client.get(url), 404, "not_found")


def test_link_expires_to_the_second(client: httpx.Client, clock: FrozenClock) -> None:
    blob_id = stored(client)
    url = make_link(client, id=blob_id, method="GET", expires_in=60)
    start = clock.now
    try:
        clock.advance(59)
        assert client.get(url).status_code == 200
        clock.advance(1)  # expires_at itself: no longer valid
        refused(client.get(url), "expired")
        assert client.head(url).status_code == 401
    finally:
        clock.now = start


def test_tampering_with_each_signed_part(client: httpx.Client) -> None:
    blob_id = stored(client)
    url = make_link(client, id=blob_id, method="PUT", max_size=100, content_type="text/plain")
    params = dict(parse_qsl(urlsplit(url).query))
    body = {"content": b"x", "headers": {"Content-Type": "text/plain"}}
    later = str(int(params["expires"]) + 3600)
    tampered = {
        "method": with_params(url, method="GET"),
        "expires": with_params(url, expires=later),
        "max_size": with_params(url, max_size="1000000"),
        "max_size removed": with_params(url, max_size=None),
        "content_type": with_params(url, content_type="text/html"),
        "content_type removed": with_params(url, content_type=None),
        "key (another known key)": with_params(url, key="old"),
        "signature": with_params(
            url, signature=params["signature"][:-2] + ("AA" if params["signature"][-2:] != "AA" else "BB")
        ),
        "signature removed": with_params(url, signature=None),
        "id digest": with_params(url, id_sha256="A" * 43),
        "expires not a number": with_params(url, expires="soon"),
        "duplicated parameter": f"{url}&expires={later}",
    }
    for what, bad in tampered.items():
        response = client.put(bad, **body)  # type: ignore[arg-type]
        assert response.status_code == 401, what
        assert "tampered" in response.json()["error"]["message"], what
    refused(client.put(with_params(url, key="gone"), **body), "unknown or revoked key")  # type: ignore[arg-type]
    # The id is signed too: the same query on another path is a link for another id.
    other = url.replace(url_of(blob_id), url_of(blob_id + "x"), 1)
    refused(client.put(other, **body), "another id")  # type: ignore[arg-type]
    assert client.get(url_of(blob_id), headers=AUTH).json()["size"] == "11"  # nothing was stored


def test_get_link_never_authorizes_another_method_id_or_route(client: httpx.Client) -> None:
    blob_id = stored(client)
    url = make_link(client, id=blob_id, method="GET")
    query = urlsplit(url).query
    refused(client.put(url, content=b"overwrite?"), "for GET, not PUT")
    refused(client.delete(url), "for GET, not DELETE")
    refused(client.get(f"{url_of(stored(client))}?{query}"), "another id")
    refused(client.get(f"/v1/blobs?{query}"), "only on the blob")
    refused(client.post(f"/v1/blobs?{query}", json={"id": blob_id, "data": ""}), "only on the blob")
    refused(client.post(f"/v1/links?{query}", json={"id": blob_id, "method": "PUT"}), "bearer token")
    assert client.get(url_of(blob_id), headers=AUTH).status_code == 200  # still there, unchanged


def test_put_link_never_reads(client: httpx.Client) -> None:
    blob_id = stored(client)
    url = make_link(client, id=blob_id, method="PUT")
    refused(client.get(url), "for PUT, not GET")
    assert client.head(url).status_code == 401


# -- using PUT links ----------------------------------------------------------------------


def test_put_link_stores_with_the_same_outcomes_as_a_token(client: httpx.Client) -> None:
    blob_id = uid()
    url = make_link(client, id=blob_id, method="PUT")
    created = client.put(url, content=b"uploaded without a token")
    assert created.status_code == 201, created.text
    assert created.json()["id"] == blob_id
    assert client.put(url, content=b"uploaded without a token").status_code == 200  # same bytes: a safe retry
    assert_error(client.put(url, content=b"other bytes"), 409, "conflict")
    assert client.get(url_of(blob_id), headers={**AUTH, "Accept": "application/octet-stream"}).content == (
        b"uploaded without a token"
    )


def test_put_link_enforces_max_size(client: httpx.Client) -> None:
    blob_id = uid()
    url = make_link(client, id=blob_id, method="PUT", max_size=10)
    assert_error(client.put(url, content=b"x" * 11), 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        yield b"x" * 6
        yield b"x" * 6

    assert_error(client.put(url, content=chunks()), 413, "payload_too_large")
    assert_error(client.get(url_of(blob_id), headers=AUTH), 404, "not_found")  # nothing stored
    assert client.put(url, content=b"x" * 10).status_code == 201


def test_put_link_enforces_content_type(client: httpx.Client) -> None:
    blob_id = uid()
    url = make_link(client, id=blob_id, method="PUT", content_type="image/png")
    assert_error(client.put(url, content=b"png", headers={"Content-Type": "text/html"}), 400, "invalid_request")
    assert_error(client.put(url, content=b"png", headers={"Content-Type": "image/png; x=1"}), 400, "invalid_request")
    assert_error(client.put(url, content=b"png"), 400, "invalid_request")  # none sent
    assert_error(client.get(url_of(blob_id), headers=AUTH), 404, "not_found")
    assert client.put(url, content=b"png", headers={"Content-Type": "Image/PNG"}).status_code == 201


def test_put_link_with_parameters_in_its_content_type(client: httpx.Client) -> None:
    url = make_link(client, id=uid(), method="PUT", content_type='text/plain; charset="utf-8"')
    headers = {"Content-Type": 'text/plain; charset="utf-8"'}
    assert client.put(url, content=b"text", headers=headers).status_code == 201


def test_an_authorization_header_wins_over_link_parameters(client: httpx.Client) -> None:
    blob_id = stored(client)
    url = make_link(client, id=blob_id, method="GET")
    assert client.get(url, headers=READ).status_code == 200
    refused(client.get(url, headers={"Authorization": "Bearer wrong-token-000000000"}), "bearer token")


# -- key rotation -------------------------------------------------------------------------


def test_key_rotation_and_revocation(client: httpx.Client, old_server: LiveServer, rotated_server: LiveServer) -> None:
    blob_id = stored(client)
    with old_server.client() as old, rotated_server.client() as rotated:
        old_link = make_link(old, id=blob_id, method="GET")
        assert dict(parse_qsl(urlsplit(old_link).query))["key"] == "old"
        new_link = make_link(client, id=blob_id, method="GET")
        # Any replica that lists the key honours the link: nothing about it is stored.
        assert old.get(old_link).status_code == 200
        assert client.get(old_link).status_code == 200  # old key still listed
        assert client.get(new_link).status_code == 200
        assert rotated.get(new_link).status_code == 200
        refused(rotated.get(old_link), "unknown or revoked key")  # old key removed: revoked
        refused(old.get(new_link), "unknown or revoked key")  # a replica not yet given the new key


# -- the command line ---------------------------------------------------------------------


def drive(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AUTH_", "SIGNING_"))}
    return subprocess.run(
        [sys.executable, "-m", "drive", *args], env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def test_drive_link_makes_links_the_server_honours(server: LiveServer, client: httpx.Client) -> None:
    """Without the server: only the keys are shared."""
    blob_id = "cli/linked file"
    env = {"SIGNING_KEYS": BOTH_KEYS}
    put = drive(
        "link", blob_id, "--put", "--expires", "10m", "--base-url", server.url + "/", "--max-size", "5", env=env
    )
    assert put.returncode == 0, put.stderr
    url = put.stdout.strip()
    assert url.startswith(f"{server.url}{url_of(blob_id)}?")
    assert_error(httpx.put(url, content=b"123456"), 413, "payload_too_large")
    assert httpx.put(url, content=b"12345").status_code == 201
    got = drive("link", blob_id, "--json", env=env)
    assert got.returncode == 0, got.stderr
    body = json.loads(got.stdout)
    assert body["method"] == "GET" and body["url"].startswith(url_of(blob_id) + "?")
    assert client.get(body["url"]).content == b"12345"
    typed = drive("link", "x", "--put", "--content-type", "text/csv", env=env)
    assert "content_type=text%2Fcsv" in typed.stdout


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["x"], {}, "SIGNING_KEYS"),
        (["x"], {"SIGNING_KEYS": "k:short"}, "SIGNING_KEYS"),
        (["x", "--expires", "8d"], {"SIGNING_KEYS": BOTH_KEYS}, "604800"),
        (["x", "--expires", "soon"], {"SIGNING_KEYS": BOTH_KEYS}, "--expires"),
        (["x", "--max-size", "3"], {"SIGNING_KEYS": BOTH_KEYS}, "PUT links only"),
        (["", "--put"], {"SIGNING_KEYS": BOTH_KEYS}, "id"),
    ],
)
def test_drive_link_refuses_in_one_line(args: list[str], env: dict[str, str], says: str) -> None:
    result = drive("link", *args, env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and says in result.stderr, result.stderr


# -- settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [f"k1:{'s' * 31}", "no-secret-here", f":{NEW_SECRET}", f"bad id:{NEW_SECRET}", f"a:{NEW_SECRET},a:{OLD_SECRET}"],
)
def test_bad_signing_keys_refuse_start_up_in_one_line(tmp_path: Path, value: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTH_", "SIGNING_"))}
    env.update(base_env(tmp_path, SIGNING_KEYS=value))
    result = subprocess.run(
        [sys.executable, "-m", "drive", "serve", "--port", "1"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "SIGNING_KEYS" in lines[0]
    for secret in ("s" * 31, NEW_SECRET, OLD_SECRET):
        assert secret not in result.stderr + result.stdout


def linked_paths(caplog: pytest.LogCaptureFixture) -> list[str]:
    logged = [str(getattr(record, "path", "")) for record in caplog.records if record.name == "drive.access"]
    return [path for path in logged if "?" in path]


def test_signatures_never_reach_the_log(client: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    blob_id = stored(client)
    url = make_link(client, id=blob_id, method="GET")
    signature = dict(parse_qsl(urlsplit(url).query))["signature"]
    with caplog.at_level(logging.INFO, logger="drive.access"):
        assert client.get(url).status_code == 200
        refused(client.get(with_params(url, expires="1")), "tampered")
        deadline = time.monotonic() + 10  # the access line is written just after the answer is sent
        while len(paths := linked_paths(caplog)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(paths) == 2 and all("signature=[redacted]" in path for path in paths), paths
    served = [record for record in caplog.records if record.name.startswith("drive")]  # not the test's httpx
    assert all(signature not in f"{record.getMessage()} {vars(record)}" for record in served)
